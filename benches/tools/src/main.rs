//! `engram-tools`: `load` streams a benchmark data set into a running server and writes a JSON
//! report; `capacity` sizes a deployment from reports; `otlp-sink` counts the traces a server
//! exports. `engram-stream load|capacity` runs this.

use clap::{Parser, Subcommand};
use engram_tools::capacity::CapacityArgs;
use engram_tools::load::LoadArgs;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "engram-tools",
    version,
    about = "Benchmark tooling for Engram Stream: load generator, capacity planner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stream a TEXMEX data set into a running server, then score recall@10.
    Load(LoadArgs),
    /// Size a deployment (workers, queue, memory, nodes, scrape cost) from `load` reports.
    Capacity(CapacityArgs),
    /// Receive OTLP/gRPC traces and count them (spans, traces), keeping nothing.
    OtlpSink(engram_tools::otlp_sink::SinkArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Capacity(args) => engram_tools::capacity::run(&args),
        Command::OtlpSink(args) => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt.block_on(engram_tools::otlp_sink::run(args)),
            Err(e) => Err(anyhow::anyhow!("cannot start the async runtime: {e}")),
        },
        Command::Load(args) => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
            match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt.block_on(engram_tools::load::run(args)),
                Err(e) => Err(anyhow::anyhow!("cannot start the async runtime: {e}")),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
