//! `engram-stream`: `serve` (the default) runs the server; `keys new` makes an API key;
//! `catalog` prints the metric catalog.
//! `load` (stream a benchmark data set into a running server, write a JSON report) and
//! `capacity` (size a deployment from reports) are the `engram-tools` binary's
//! (`benches/tools`), run with the same arguments, so the server carries no client code.

use clap::{Args, Parser, Subcommand};
use engram_server::config::{LogFormat, ServerConfig};
use engram_server::server::{Server, shutdown_signal};
use std::ffi::OsString;
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
    /// Stream a TEXMEX data set into a running server, then score recall@10 (runs
    /// `engram-tools load`; `engram-stream load --help` lists its options).
    #[command(disable_help_flag = true)]
    Load(Forwarded),
    /// Size a deployment (workers, queue, memory, nodes, scrape cost) from `load` reports (runs
    /// `engram-tools capacity`).
    #[command(disable_help_flag = true)]
    Capacity(Forwarded),
    /// API keys (docs/security.md).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the metric catalog (every exported metric) as JSON or Markdown.
    Catalog {
        /// Output format.
        #[arg(long, value_enum, default_value_t = CatalogFormat::Json)]
        format: CatalogFormat,
    },
    /// Print the REST API's OpenAPI 3.1 document (as `GET /openapi.json` serves it).
    Openapi,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a fresh random key: prints the key on the first line, then the `[[auth.keys]]`
    /// entry (name, SHA-256, grants) to add to the config or the keys file.
    New {
        /// The key's name (in the audit log and metrics; never the key itself).
        #[arg(long)]
        name: String,
        /// What it may do: `PATTERN=ROLE` (ROLE `read`, `write` or `admin`; PATTERN a memory
        /// space or a glob such as `tenant-42-*`), `metrics`, or `admin`. Repeatable.
        #[arg(long = "grant", required = true)]
        grants: Vec<String>,
    },
}

/// The arguments of a subcommand another binary runs, passed through unparsed.
#[derive(Args)]
struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// The `engram-tools` binary: `$ENGRAM_TOOLS`, else the one beside this executable (cargo
/// builds both into `target/<profile>/`), else `engram-tools` on `PATH`.
fn tools_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ENGRAM_TOOLS") {
        return path.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(format!("engram-tools{}", std::env::consts::EXE_SUFFIX))))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "engram-tools".into())
}

/// Runs `engram-tools <command> <args>` and exits as it does.
fn run_tool(command: &str, args: &[OsString]) -> ExitCode {
    let tools = tools_binary();
    match std::process::Command::new(&tools).arg(command).args(args).status() {
        Ok(status) => status.code().and_then(|c| u8::try_from(c).ok()).map_or(ExitCode::FAILURE, ExitCode::from),
        Err(e) => {
            eprintln!(
                "error: `engram-stream {command}` runs `{}`, which could not start: {e} (build it with `cargo build --release -p engram-tools`, or set ENGRAM_TOOLS)",
                tools.display()
            );
            ExitCode::FAILURE
        }
    }
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
    /// Data directory of the durable log (`storage.data_dir`) [default: ./engram-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
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
    if let Some(d) = args.data_dir {
        config.storage.data_dir = d;
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
    let serve_args = match cli.command {
        Some(Command::Load(f)) => return run_tool("load", &f.args),
        Some(Command::Capacity(f)) => return run_tool("capacity", &f.args),
        Some(Command::Catalog { format }) => {
            print_catalog(format);
            return ExitCode::SUCCESS;
        }
        Some(Command::Openapi) => {
            println!("{}", engram_server::http::openapi::json());
            return ExitCode::SUCCESS;
        }
        Some(Command::Keys(KeysCommand::New { name, grants })) => {
            return match engram_server::auth::keys::new_key_entry(&name, &grants) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(serve_args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
