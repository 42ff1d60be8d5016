//! `engram-tools otlp-sink`: an OTLP/gRPC trace receiver that counts what it is sent and keeps
//! nothing, for measuring the cost of trace export against a live endpoint (and for trying
//! `[tracing]` without Jaeger). On SIGTERM or Ctrl-C it writes its counts as JSON.

use anyhow::Context;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Arguments of `engram-tools otlp-sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Address to listen on (OTLP/gRPC's port is 4317).
    #[arg(long, default_value = "127.0.0.1:4317")]
    pub addr: SocketAddr,
    /// Where to write `{"exports", "spans", "traces"}` at exit (default: stdout only).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Default)]
struct Counts {
    exports: AtomicU64,
    spans: AtomicU64,
    traces: parking_lot::Mutex<HashSet<Vec<u8>>>,
}

#[derive(Clone, Default)]
struct Sink(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.exports.fetch_add(1, Ordering::Relaxed);
        let mut traces = self.0.traces.lock();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                self.0.spans.fetch_add(ss.spans.len() as u64, Ordering::Relaxed);
                for s in ss.spans {
                    traces.insert(s.trace_id);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// Receives until SIGTERM or Ctrl-C, then reports.
///
/// # Errors
/// An address that cannot be bound, or a report that cannot be written.
pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
    eprintln!("otlp-sink: receiving OTLP/gRPC traces on {}", args.addr);
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink.clone()))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), stop)
        .await?;
    let c = &sink.0;
    let report = serde_json::json!({
        "exports": c.exports.load(Ordering::Relaxed),
        "spans": c.spans.load(Ordering::Relaxed),
        "traces": c.traces.lock().len(),
    });
    println!("{report}");
    if let Some(path) = args.report {
        std::fs::write(&path, format!("{report}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
