//! The load over gRPC: one `engram.v1.Engram/StreamObservations` stream with INDEXED acks, and
//! unary `Recall`.

use super::drive::{Event, Transport};
use super::{Data, LoadArgs, Wait};
use anyhow::{Context, bail};
use engram_engine::SpaceParams;
use engram_server::proto::{self, engram_client::EngramClient};
use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Sends `authorization: Bearer KEY` with every call (`--api-key`).
#[derive(Clone)]
pub(super) struct ApiKey(Option<MetadataValue<Ascii>>);

impl ApiKey {
    fn new(key: Option<&str>) -> anyhow::Result<Self> {
        let value =
            key.map(|k| format!("Bearer {k}").parse()).transpose().context("--api-key: not a valid header value")?;
        Ok(Self(value))
    }
}

impl tonic::service::Interceptor for ApiKey {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

const PRIORITIES: [proto::Priority; 3] = [proto::Priority::High, proto::Priority::Normal, proto::Priority::Low];

/// A gRPC client with its observation stream open.
pub(super) struct Grpc<'a> {
    data: &'a Data,
    space: String,
    client: EngramClient<InterceptedService<Channel, ApiKey>>,
    requests: mpsc::Sender<proto::ObservationBatch>,
    replies: tonic::Streaming<proto::StreamReply>,
    /// Batch of each sequence number in flight.
    batch_of: HashMap<u64, usize>,
    sequence: u64,
    /// The last ack each batch asks for.
    wait: proto::WaitFor,
    /// Send a `traceparent` with each batch (`--trace`).
    trace: bool,
}

impl<'a> Grpc<'a> {
    /// Connects to `server`, drops and re-creates `space` with `params`, and opens the
    /// observation stream (`concurrency` batches in flight).
    pub(super) async fn connect(
        args: &LoadArgs,
        data: &'a Data,
        space: &str,
        params: &SpaceParams,
    ) -> anyhow::Result<Self> {
        let (server, concurrency, wait, trace) = (&args.server, args.concurrency, args.wait, args.trace);
        let mut endpoint =
            tonic::transport::Endpoint::from_shared(server.to_owned()).context("--server: not a valid URL")?;
        if let Some(path) = &args.cacert {
            let pem = std::fs::read(path).with_context(|| format!("--cacert: reading {}", path.display()))?;
            let tls =
                tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
            endpoint = endpoint.tls_config(tls).context("--cacert")?;
        }
        let channel = endpoint.connect().await.with_context(|| format!("connecting to {server}"))?;
        let key = ApiKey::new(args.api_key.as_deref())?;
        let mut client = EngramClient::with_interceptor(channel, key)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        match client.drop_space(proto::DropSpaceRequest { memory_space: space.to_owned() }).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => bail!("dropping space {space}: {s}"),
        }
        client
            .create_space(proto::CreateSpaceRequest {
                memory_space: space.to_owned(),
                params: Some(proto::SpaceParams {
                    dim: params.dim as u32,
                    metric: proto::Metric::Cosine as i32,
                    max_elements: params.max_elements as u64,
                    index: params.index.map_or(0, |i| proto::IndexBackend::from(i) as i32),
                    quantization: params.quantization.map_or(0, |q| proto::Quantization::from(q) as i32),
                    rescore_factor: params.rescore_factor as u32,
                    ..Default::default()
                }),
            })
            .await
            .context("creating the space")?;
        let (requests, rx) = mpsc::channel(concurrency * 2);
        let replies =
            client.stream_observations(ReceiverStream::new(rx)).await.context("opening the stream")?.into_inner();
        let wait = match wait {
            Wait::Accepted => proto::WaitFor::Accepted,
            Wait::Durable => proto::WaitFor::Durable,
            Wait::Indexed => proto::WaitFor::Indexed,
        };
        Ok(Self {
            data,
            space: space.to_owned(),
            client,
            requests,
            replies,
            batch_of: HashMap::new(),
            sequence: 0,
            wait,
            trace,
        })
    }
}

impl Transport for Grpc<'_> {
    async fn send(&mut self, batch: usize, rows: Range<usize>, priority: usize) -> anyhow::Result<()> {
        self.sequence += 1;
        self.batch_of.insert(self.sequence, batch);
        let message = proto::ObservationBatch {
            sequence: self.sequence,
            memory_space: self.space.clone(),
            priority: PRIORITIES[priority] as i32,
            want_indexed: false,
            wait: self.wait as i32,
            upsert: false,
            traceparent: if self.trace { super::traceparent_logged(batch) } else { String::new() },
            tracestate: String::new(),
            observations: rows
                .map(|i| proto::Observation {
                    id: i as u64,
                    embedding: self.data.base.row(i).to_vec(),
                    content: self.data.content.as_ref().map(|c| c[i].clone()),
                })
                .collect(),
        };
        self.requests.send(message).await.context("the server closed the stream")
    }

    async fn next_event(&mut self) -> anyhow::Result<Event> {
        loop {
            let reply =
                self.replies.message().await.context("stream failed")?.context("the server ended the stream early")?;
            let Some(proto::stream_reply::Reply::Ack(ack)) = reply.reply else { continue };
            let Some(&batch) = self.batch_of.get(&ack.sequence) else {
                bail!("ack for unknown sequence {}", ack.sequence)
            };
            return match proto::AckStatus::try_from(ack.status) {
                Ok(proto::AckStatus::Durable) => {
                    if self.wait == proto::WaitFor::Durable {
                        self.batch_of.remove(&ack.sequence);
                    }
                    Ok(Event::Durable { batch })
                }
                Ok(proto::AckStatus::Accepted) => {
                    if self.wait == proto::WaitFor::Accepted {
                        self.batch_of.remove(&ack.sequence);
                    }
                    Ok(Event::Accepted {
                        batch,
                        accepted: u64::from(ack.accepted),
                        duplicates: u64::from(ack.duplicates),
                    })
                }
                Ok(proto::AckStatus::Indexed) => {
                    self.batch_of.remove(&ack.sequence);
                    if ack.failed > 0 {
                        bail!("batch {} reports {} observations failed to index", ack.sequence, ack.failed);
                    }
                    Ok(Event::Indexed { batch, indexed: u64::from(ack.indexed) })
                }
                Ok(proto::AckStatus::Rejected) => {
                    self.batch_of.remove(&ack.sequence);
                    let retry_after = Duration::from_millis(ack.retry_after_ms.max(1));
                    Ok(Event::Rejected { batch, reason: ack.reason, retry_after })
                }
                _ => bail!("batch {} refused: {} ({})", ack.sequence, ack.message, ack.grpc_code),
            };
        }
    }

    async fn space_vectors(&mut self) -> anyhow::Result<u64> {
        let info = self.client.get_space(proto::GetSpaceRequest { memory_space: self.space.clone() }).await?;
        Ok(info.into_inner().vectors)
    }

    async fn recall(&mut self, embedding: &[f32], k: usize, ef_search: Option<usize>) -> anyhow::Result<Vec<u64>> {
        let req = proto::RecallRequest {
            memory_space: self.space.clone(),
            embedding: embedding.to_vec(),
            k: k as u32,
            ef_search: ef_search.unwrap_or(0) as u32,
            with_content: None,
        };
        let resp = self.client.recall(req).await.context("recall")?.into_inner();
        Ok(resp.hits.iter().map(|h| h.id).collect())
    }
}
