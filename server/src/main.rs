//! `engram-stream`: `serve` (the default) runs the server; `load` streams a benchmark data set
//! into a running server and writes a JSON report; `capacity` sizes a deployment from reports.

use clap::{Args, Parser, Subcommand};
use engram_server::capacity::CapacityArgs;
use engram_server::config::{LogFormat, ServerConfig};
use engram_server::load::LoadArgs;
use engram_server::server::{Server, shutdown_signal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "engram-stream",
    version,
    about = "Streaming ingest of embeddings into per-space HNSW indexes, with telemetry"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Stream a TEXMEX data set into a running server, then score recall@10.
    Load(LoadArgs),
    /// Size a deployment (workers, queue, memory, nodes, scrape cost) from `load` reports.
    Capacity(CapacityArgs),
    /// Print the metric catalog (every exported metric) as JSON or Markdown.
    Catalog {
        /// Output format.
        #[arg(long, value_enum, default_value_t = CatalogFormat::Json)]
        format: CatalogFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CatalogFormat {
    Json,
    Markdown,
}

fn print_catalog(format: CatalogFormat) {
    use engram_telemetry::catalog::CATALOG;
    match format {
        CatalogFormat::Json => {
            let rows: Vec<serde_json::Value> = CATALOG
                .iter()
                .map(|m| {
                    serde_json::json!({"name": m.name, "type": m.kind.as_str(), "labels": m.labels, "help": m.help, "buckets": m.buckets})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows).expect("catalog serialises"));
        }
        CatalogFormat::Markdown => print!("{}", engram_telemetry::catalog::markdown_table()),
    }
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// TOML config file; `ENGRAM_*` environment variables override it, flags override both.
    #[arg(long)]
    config: Option<PathBuf>,
    /// HTTP listen address (REST, health, /metrics) [default: 0.0.0.0:8080].
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// gRPC listen address [default: 0.0.0.0:50051].
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,hnsw_rs=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig::load(args.config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    if let Some(a) = args.http_addr {
        config.http_addr = a;
    }
    if let Some(a) = args.grpc_addr {
        config.grpc_addr = a;
    }
    init_logs(config.log_format);
    let server = Server::bind(config).await?;
    let report = server.run(shutdown_signal()).await?;
    if !report.drained {
        anyhow::bail!("{} accepted observations were not indexed before the shutdown timeout", report.remaining);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => serve(cli.serve).await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Catalog { format }) => {
                print_catalog(format);
                Ok(())
            }
            Some(Command::Capacity(args)) => engram_server::capacity::run(&args),
            Some(Command::Load(args)) => {
                init_logs(LogFormat::Text);
                engram_server::load::run(args).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
