//! The gRPC API `engram.v1.Engram` (tonic), plus `grpc.health.v1` and server reflection.
//!
//! `StreamObservations` reads batches, answers each with an ack (ACCEPTED, then DURABLE and
//! INDEXED as requested by the batch's `wait`, or FAILED when the log could not record it;
//! REJECTED with reason and retry-after; INVALID naming the field), and pushes a
//! `BackpressureStatus` whenever the level of a space the stream writes to changes (checked
//! after every batch and every second).

pub(crate) mod auth;
pub mod codec;
mod convert;

/// Decodes a protobuf `ObservationBatch` and converts it as the stream does (for the fuzz
/// targets).
///
/// # Errors
/// A message that does not decode, or a field the conversion refuses, as text.
#[cfg(feature = "fuzzing")]
pub fn decode_batch(bytes: &[u8]) -> Result<engram_engine::Batch, String> {
    let b = proto::ObservationBatch::decode(bytes).map_err(|e| e.to_string())?;
    convert::batch(b).map_err(|e| e.to_string())
}

/// Decodes a protobuf `CreateSpaceRequest` and converts its parameters (for the fuzz targets).
///
/// # Errors
/// As [`decode_batch`].
#[cfg(feature = "fuzzing")]
pub fn decode_space_params(bytes: &[u8]) -> Result<engram_engine::SpaceParams, String> {
    let r = proto::CreateSpaceRequest::decode(bytes).map_err(|e| e.to_string())?;
    convert::space_params(r.params.unwrap_or_default()).map_err(|e| e.to_string())
}

use crate::api_error::{ApiError, Refusal, code_name};
use crate::auth::{Action, Principal};
use crate::proto::{self, engram_server::Engram};
use crate::session::{self, IngestSession};
use crate::trace::{Trace, Tracer, context};
use engram_engine::{AckLevel, Engine};
use engram_telemetry::events::GrpcEvents;
use futures::Stream;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, SpanKind};
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::Instrument;

/// Method names (label values of the gRPC request metrics), indexed by the `M_*` constants.
pub const METHODS: &[&str] =
    &["StreamObservations", "Recall", "CreateSpace", "GetSpace", "ListSpaces", "DropSpace", "DeleteObservations"];
const M_STREAM: usize = 0;
const M_RECALL: usize = 1;
const M_CREATE: usize = 2;
const M_GET: usize = 3;
const M_LIST: usize = 4;
const M_DROP: usize = 5;
const M_DELETE: usize = 6;
/// What each method asks to do (for rate-limit audit lines), indexed like [`METHODS`].
const ACTIONS: [Action; 7] = [
    Action::WriteObservations,
    Action::Recall,
    Action::CreateSpace,
    Action::GetSpace,
    Action::ListSpaces,
    Action::DropSpace,
    Action::DeleteObservations,
];

/// The service's full name (`rpc.service`).
const SERVICE: &str = "engram.v1.Engram";
/// Server span names, `{rpc.service}/{rpc.method}` as the RPC semantic conventions ask.
const STREAM_SPAN: &str = "engram.v1.Engram/StreamObservations";
const RECALL_SPAN: &str = "engram.v1.Engram/Recall";

/// Replies buffered per stream before the reader waits for the client to read.
const REPLY_BUFFER: usize = 1024;
/// How often an idle stream re-checks backpressure levels to push changes.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// The `engram.v1.Engram` service.
#[derive(Clone)]
pub struct EngramService {
    engine: Arc<Engine>,
    events: GrpcEvents,
    closing: watch::Receiver<bool>,
    tracer: Tracer,
}

impl EngramService {
    /// A service over `engine`, registering its request metrics. When `closing` turns true
    /// (the server drained its queue and is closing), open observation streams flush their
    /// acks and end with `UNAVAILABLE`. Each batch and recall is traced through `tracer`.
    pub fn new(engine: Arc<Engine>, closing: watch::Receiver<bool>, tracer: Tracer) -> Self {
        let events = GrpcEvents::register(engine.telemetry(), METHODS);
        Self { engine, events, closing, tracer }
    }

    /// The service's request metrics, for the layer that counts requests refused before a
    /// handler runs ([`codec::fix_unary_status`]).
    pub fn events(&self) -> GrpcEvents {
        self.events.clone()
    }

    /// Runs a unary call body with the call's principal, recording its metrics.
    async fn unary<Req: Message, Resp: Message>(
        &self,
        method: usize,
        req: Request<Req>,
        body: impl AsyncFnOnce(Principal, Req) -> Result<Resp, ApiError>,
    ) -> Result<Response<Resp>, Status> {
        let started = Instant::now();
        self.events.started(method);
        let principal = auth::principal(&req);
        let req = req.into_inner();
        self.events.request_message(method, req.encoded_len());
        let result = match principal.and_then(|p| p.admit_request(ACTIONS[method], "").map(|()| p)) {
            Ok(p) => body(p, req).await,
            Err(e) => Err(e),
        };
        let code = match &result {
            Ok(resp) => {
                self.events.response_message(method, resp.encoded_len());
                Code::Ok
            }
            Err(e) => {
                count_refusal(&self.events, e);
                e.code
            }
        };
        self.events.finished(method, code as i32, started.elapsed());
        result.map(Response::new).map_err(Status::from)
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<proto::StreamReply, Status>> + Send>>;

/// Sends one reply, recording its size. Returns false when the client is gone.
async fn send(
    tx: &mpsc::Sender<Result<proto::StreamReply, Status>>,
    events: &GrpcEvents,
    reply: proto::StreamReply,
) -> bool {
    events.response_message(M_STREAM, reply.encoded_len());
    tx.send(Ok(reply)).await.is_ok()
}

/// Sends a batch's last ack (the `ack` stage) and finishes its trace.
async fn send_traced(
    tx: &mpsc::Sender<Result<proto::StreamReply, Status>>,
    events: &GrpcEvents,
    reply: proto::StreamReply,
    tracer: &Tracer,
    trace: Option<Trace>,
) -> bool {
    let Some(mut trace) = trace else { return send(tx, events, reply).await };
    let sending = Instant::now();
    let sent = send(tx, events, reply).await;
    let ended = Instant::now();
    trace.stage("ack", sending, ended);
    tracer.finish(trace, ended);
    sent
}

/// A `tracing` span carrying `trace`'s id, so log lines written while its batch's acks are
/// awaited name the trace; no span while tracing is off.
fn log_span(trace: Option<&Trace>) -> tracing::Span {
    match trace {
        Some(t) => tracing::info_span!("batch", trace_id = %format_args!("{:032x}", t.trace_id())),
        None => tracing::Span::none(),
    }
}

/// The RPC semantic-convention attributes of a server span of `method`.
fn rpc_attributes(t: &mut Trace, method: &'static str) {
    t.attribute(KeyValue::new("rpc.system", "grpc"));
    t.attribute(KeyValue::new("rpc.service", SERVICE));
    t.attribute(KeyValue::new("rpc.method", method));
}

fn ack_reply(ack: proto::BatchAck) -> proto::StreamReply {
    proto::StreamReply { reply: Some(proto::stream_reply::Reply::Ack(ack)) }
}

/// Counts `e` in `engram_api_requests_rejected_total` when it is a refusal.
fn count_refusal(events: &GrpcEvents, e: &ApiError) {
    if let Some(refusal) = e.refusal {
        events.refused(refusal);
    }
}

/// The last ack a batch asks for: its `wait`, or, unspecified, DURABLE (INDEXED with the older
/// `want_indexed`).
///
/// # Errors
/// Invalid argument on `wait` for a value outside the enum.
fn wait_level(batch: &proto::ObservationBatch) -> Result<AckLevel, ApiError> {
    let asked = wait_for(batch.wait)?;
    Ok(if batch.want_indexed { AckLevel::Indexed } else { asked })
}

/// The ack level of a `WaitFor` value (unspecified: DURABLE).
///
/// # Errors
/// Invalid argument on `wait` for a value outside the enum.
fn wait_for(wait: i32) -> Result<AckLevel, ApiError> {
    Ok(match proto::WaitFor::try_from(wait) {
        Ok(proto::WaitFor::Unspecified) => AckLevel::Durable,
        Ok(proto::WaitFor::Accepted) => AckLevel::Accepted,
        Ok(proto::WaitFor::Durable) => AckLevel::Durable,
        Ok(proto::WaitFor::Indexed) => AckLevel::Indexed,
        Err(_) => return Err(ApiError::invalid("wait", format!("unknown value {wait}"))),
    })
}

/// The ack for a batch that admission refused or that was invalid.
fn error_ack(sequence: u64, e: ApiError) -> proto::BatchAck {
    let rejected = matches!(e.code, Code::ResourceExhausted | Code::Unavailable);
    proto::BatchAck {
        sequence,
        status: if rejected { proto::AckStatus::Rejected } else { proto::AckStatus::Invalid } as i32,
        reason: e.reason.unwrap_or_default().to_owned(),
        retry_after_ms: e.retry_after.map_or(0, |d| d.as_millis() as u64),
        level: e.level.map_or(0, convert::level),
        message: e.message,
        grpc_code: code_name(e.code).to_owned(),
        ..Default::default()
    }
}

struct StreamSession {
    /// The transport-neutral part: submission and level tracking.
    ingest: IngestSession,
    events: GrpcEvents,
    tx: mpsc::Sender<Result<proto::StreamReply, Status>>,
    /// DURABLE and INDEXED acks waiting for their batch.
    acks: JoinSet<()>,
    /// Turns true when the server has drained and is closing.
    closing: watch::Receiver<bool>,
    tracer: Tracer,
    /// The client's span from the stream's metadata (invalid when none): the parent of each
    /// batch's trace that names none of its own.
    parent: SpanContext,
    /// The stream's key: each batch needs `write` in its space.
    principal: Principal,
}

impl StreamSession {
    /// Handles one batch; returns false when the client is gone.
    async fn batch(&mut self, mut batch: proto::ObservationBatch) -> bool {
        let received = Instant::now();
        self.events.request_message(M_STREAM, batch.encoded_len());
        let sequence = batch.sequence;
        let space = std::mem::take(&mut batch.memory_space);
        let mut trace = self.trace(&batch, received);
        if let Err(e) = self.principal.require(Action::WriteObservations, &space) {
            count_refusal(&self.events, &e);
            let mut ack = error_ack(sequence, e.clone());
            ack.status = proto::AckStatus::Denied as i32;
            return self.refuse(ack, trace, &e).await;
        }
        let n = batch.observations.len();
        let admitted = self
            .principal
            .admit_request(Action::WriteObservations, &space)
            .and_then(|()| self.principal.admit_observations(n, &space));
        if let Err(e) = admitted {
            count_refusal(&self.events, &e);
            return self.refuse(error_ack(sequence, e.clone()), trace, &e).await;
        }
        let wait = match wait_level(&batch) {
            Ok(w) => w,
            Err(e) => {
                count_refusal(&self.events, &e);
                return self.refuse(error_ack(sequence, e.clone()), trace, &e).await;
            }
        };
        let converted = convert::batch(batch).map_err(ApiError::from);
        let parsed = Instant::now();
        if let Some(t) = &mut trace {
            t.parsed(parsed);
            if let Ok(b) = &converted {
                t.batch(&space, b.observations.len(), b.priority, wait);
            }
        }
        let a = match self.ingest.submit(&space, converted, wait) {
            Ok(a) => a,
            Err(e) => {
                count_refusal(&self.events, &e);
                // A refusal may follow a level change: tell the stream, as after an admission.
                return self.refuse(error_ack(sequence, e.clone()), trace, &e).await && self.push_levels().await;
            }
        };
        let mut ack = proto::BatchAck {
            sequence,
            status: proto::AckStatus::Accepted as i32,
            accepted: a.accepted as u32,
            duplicates: a.duplicates as u32,
            replaced: a.replaced as u32,
            level: convert::level(a.level),
            ..Default::default()
        };
        if let Some(t) = &mut trace {
            t.admitted(parsed, &a);
            t.attribute(KeyValue::new("rpc.grpc.status_code", Code::Ok as i64));
            ack.traceresponse = t.traceresponse();
        }
        if a.durable.is_some() || a.indexed.is_some() {
            // ACCEPTED goes into the stream before the task that sends DURABLE and INDEXED
            // exists: spawned first, that task could run on the other runtime thread and send
            // both ahead of it when they are already due (an insert deferred by a checkpoint's
            // copy is indexed, and acknowledged, at once), and a client would see a batch's
            // INDEXED before its ACCEPTED.
            let level = ack.level;
            let sending = Instant::now();
            if !send(&self.tx, &self.events, ack_reply(ack)).await {
                // The client is gone: the batch was admitted and is still logged and indexed,
                // but no later ack can reach anyone, so its trace ends here, at the failed send.
                if let Some(mut t) = trace {
                    let ended = Instant::now();
                    t.stage("ack", sending, ended);
                    self.tracer.finish(t, ended);
                }
                return false;
            }
            let (tx, events, tracer) = (self.tx.clone(), self.events.clone(), self.tracer.clone());
            let (durable, indexed, times) = (a.durable, a.indexed, a.times);
            let logs = log_span(trace.as_ref());
            self.acks.spawn(
                async move {
                    if let Some(durable) = durable {
                        let synced = durable.wait().await;
                        if let Some(t) = &mut trace {
                            t.synced(times.appended, Instant::now());
                        }
                        let reply = match synced {
                            Ok(()) => proto::BatchAck {
                                sequence,
                                status: proto::AckStatus::Durable as i32,
                                level,
                                ..Default::default()
                            },
                            Err(e) => {
                                let e = ApiError::from(e);
                                if let Some(t) = &mut trace {
                                    t.refused(&e);
                                }
                                let mut failed = error_ack(sequence, e);
                                failed.status = proto::AckStatus::Failed as i32;
                                // INDEXED implies DURABLE: no INDEXED ack after a failed record.
                                send_traced(&tx, &events, ack_reply(failed), &tracer, trace).await;
                                return;
                            }
                        };
                        if indexed.is_none() {
                            send_traced(&tx, &events, ack_reply(reply), &tracer, trace).await;
                            return;
                        }
                        if !send(&tx, &events, ack_reply(reply)).await {
                            return;
                        }
                    }
                    if let Some(waiter) = indexed {
                        let outcome = waiter.wait().await;
                        if let Some(t) = &mut trace {
                            t.indexed(times.queued, &outcome);
                        }
                        let indexed = proto::BatchAck {
                            sequence,
                            status: proto::AckStatus::Indexed as i32,
                            indexed: outcome.indexed as u32,
                            failed: outcome.failed.min(u32::MAX as usize) as u32,
                            level,
                            ..Default::default()
                        };
                        send_traced(&tx, &events, ack_reply(indexed), &tracer, trace).await;
                    }
                }
                .instrument(logs),
            );
        } else if !send_traced(&self.tx, &self.events, ack_reply(ack), &self.tracer, trace).await {
            return false;
        }
        self.push_levels().await
    }

    /// The trace of a batch received at `received`: under its own `traceparent`, else the
    /// stream's. `None` while tracing is off.
    fn trace(&self, batch: &proto::ObservationBatch, received: Instant) -> Option<Trace> {
        if !self.tracer.is_on() {
            return None;
        }
        let own = context::extract(&context::Fields { traceparent: &batch.traceparent, tracestate: &batch.tracestate });
        let parent = if own.is_valid() { own } else { self.parent.clone() };
        let mut t = self.tracer.begin(STREAM_SPAN, SpanKind::Server, parent, received)?;
        rpc_attributes(&mut t, "StreamObservations");
        t.attribute(KeyValue::new("engram.batch.sequence", batch.sequence as i64));
        Some(t)
    }

    /// Sends the ack of a refused batch and finishes its (forced) trace.
    async fn refuse(&mut self, ack: proto::BatchAck, mut trace: Option<Trace>, e: &ApiError) -> bool {
        let mut ack = ack;
        if let Some(t) = &mut trace {
            t.refused(e);
            t.attribute(KeyValue::new("rpc.grpc.status_code", e.code as i64));
            ack.traceresponse = t.traceresponse();
        }
        send_traced(&self.tx, &self.events, ack_reply(ack), &self.tracer, trace).await
    }

    /// Waits until every INDEXED ack of this stream was sent (or its client went away).
    async fn finish_acks(&mut self) {
        while self.acks.join_next().await.is_some() {}
    }

    /// Pushes a BackpressureStatus for every space whose level changed since the last push.
    async fn push_levels(&mut self) -> bool {
        for change in self.ingest.level_changes() {
            let status = proto::BackpressureStatus {
                memory_space: change.space,
                level: convert::level(change.level),
                queue_utilization: change.queue_utilization,
                retry_after_ms: change.retry_after.map_or(0, |d| d.as_millis() as u64),
            };
            let reply = proto::StreamReply { reply: Some(proto::stream_reply::Reply::Backpressure(status)) };
            if !send(&self.tx, &self.events, reply).await {
                return false;
            }
        }
        true
    }

    async fn run(mut self, mut inbound: Streaming<proto::ObservationBatch>) -> Code {
        let mut closing = self.closing.clone();
        let mut tick = tokio::time::interval(STATUS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(batch)) => {
                        if !self.batch(batch).await {
                            return Code::Cancelled;
                        }
                    }
                    Ok(None) => {
                        self.finish_acks().await;
                        return Code::Ok;
                    }
                    Err(status) => {
                        // A malformed message ends the stream with INVALID_ARGUMENT (from our
                        // codec), one over the size limit with RESOURCE_EXHAUSTED; a client that
                        // went away is CANCELLED.
                        let (status, too_large) = codec::stream_decode_error(status);
                        let code = status.code();
                        if too_large {
                            self.events.refused(Refusal::PayloadTooLarge);
                        } else if code == Code::InvalidArgument {
                            self.events.refused(Refusal::Malformed);
                        }
                        self.finish_acks().await;
                        let _ = self.tx.send(Err(status)).await;
                        return code;
                    }
                },
                () = async { let _ = closing.wait_for(|c| *c).await; } => {
                    // The server drained the queue and is closing: flush the INDEXED acks still
                    // on their way, then end the stream so the client reconnects elsewhere.
                    self.finish_acks().await;
                    let status = Status::unavailable(
                        "server shutting down: every accepted batch was indexed and acknowledged; reconnect and resend what was not acknowledged",
                    );
                    let _ = self.tx.send(Err(status)).await;
                    return Code::Unavailable;
                }
                _ = tick.tick() => {
                    while self.acks.try_join_next().is_some() {}
                    if !self.push_levels().await {
                        return Code::Cancelled;
                    }
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Engram for EngramService {
    type StreamObservationsStream = ReplyStream;

    async fn stream_observations(
        &self,
        request: Request<Streaming<proto::ObservationBatch>>,
    ) -> Result<Response<Self::StreamObservationsStream>, Status> {
        let started = Instant::now();
        self.events.started(M_STREAM);
        self.events.session_opened();
        let principal = match auth::principal(&request) {
            Ok(p) => p,
            Err(e) => {
                self.events.finished(M_STREAM, e.code as i32, started.elapsed());
                self.events.session_closed();
                return Err(e.into());
            }
        };
        let (tx, rx) = mpsc::channel(REPLY_BUFFER);
        let parent = if self.tracer.is_on() {
            context::extract(&context::Metadata(request.metadata()))
        } else {
            SpanContext::empty_context()
        };
        let session = StreamSession {
            ingest: IngestSession::new(self.engine.clone()),
            events: self.events.clone(),
            tx,
            acks: JoinSet::new(),
            closing: self.closing.clone(),
            tracer: self.tracer.clone(),
            parent,
            principal,
        };
        let events = self.events.clone();
        let inbound = request.into_inner();
        tokio::spawn(async move {
            let code = session.run(inbound).await;
            events.session_closed();
            events.finished(M_STREAM, code as i32, started.elapsed());
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn recall(&self, request: Request<proto::RecallRequest>) -> Result<Response<proto::RecallResponse>, Status> {
        let received = Instant::now();
        let engine = self.engine.clone();
        let mut trace =
            self.tracer.is_on().then(|| context::extract(&context::Metadata(request.metadata()))).and_then(|parent| {
                let mut t = self.tracer.begin(RECALL_SPAN, SpanKind::Server, parent, received)?;
                rpc_attributes(&mut t, "Recall");
                Some(t)
            });
        let traced = &mut trace;
        let result = self
            .unary(M_RECALL, request, async move |p: Principal, r: proto::RecallRequest| {
                p.require(Action::Recall, &r.memory_space)?;
                let parsed = Instant::now();
                if let Some(t) = traced.as_mut() {
                    t.parsed(parsed);
                    t.attribute(KeyValue::new("engram.memory_space", r.memory_space.clone()));
                }
                let k = (r.k > 0).then_some(r.k as usize);
                let ef = (r.ef_search > 0).then_some(r.ef_search as usize);
                let (hits, times) =
                    session::recall(&engine, r.memory_space, r.embedding, k, ef, r.with_content.unwrap_or(true))
                        .await
                        .inspect_err(|e| {
                            if let Some(t) = traced.as_mut() {
                                t.refused(e);
                            }
                        })?;
                if let Some(t) = traced.as_mut() {
                    t.recalled(parsed, &times, hits.len());
                }
                Ok(proto::RecallResponse {
                    hits: hits
                        .into_iter()
                        .map(|h| proto::RecallHit { id: h.id, score: h.score, content: h.content })
                        .collect(),
                })
            })
            .await;
        let Some(mut t) = trace else { return result };
        let code = result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
        t.attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
        if code != Code::Ok {
            t.force();
        }
        let header = t.traceresponse();
        self.tracer.finish(t, Instant::now());
        result.map(|mut r| {
            if let Ok(v) = header.parse() {
                r.metadata_mut().insert(context::TRACERESPONSE, v);
            }
            r
        })
    }

    async fn create_space(
        &self,
        request: Request<proto::CreateSpaceRequest>,
    ) -> Result<Response<proto::SpaceInfo>, Status> {
        self.unary(M_CREATE, request, async |p: Principal, r: proto::CreateSpaceRequest| {
            p.require(Action::CreateSpace, &r.memory_space)?;
            let created = convert::space_params(r.params.unwrap_or_default())
                .map_err(ApiError::from)
                .and_then(|params| self.engine.create_space(&r.memory_space, params).map_err(ApiError::from));
            p.audit(Action::CreateSpace, &r.memory_space, &created);
            Ok(convert::space_info(created?.0))
        })
        .await
    }

    async fn get_space(&self, request: Request<proto::GetSpaceRequest>) -> Result<Response<proto::SpaceInfo>, Status> {
        self.unary(M_GET, request, async |p: Principal, r: proto::GetSpaceRequest| {
            p.require(Action::GetSpace, &r.memory_space)?;
            Ok(convert::space_info(self.engine.describe_space(&r.memory_space)?))
        })
        .await
    }

    async fn list_spaces(
        &self,
        request: Request<proto::ListSpacesRequest>,
    ) -> Result<Response<proto::ListSpacesResponse>, Status> {
        self.unary(M_LIST, request, async |p: Principal, _| {
            // Only the spaces the key may read: a key never learns of the others.
            let spaces = self.engine.list_spaces().into_iter().filter(|s| p.may(Action::GetSpace, &s.name));
            Ok(proto::ListSpacesResponse { spaces: spaces.map(convert::space_info).collect() })
        })
        .await
    }

    async fn drop_space(
        &self,
        request: Request<proto::DropSpaceRequest>,
    ) -> Result<Response<proto::DropSpaceResponse>, Status> {
        self.unary(M_DROP, request, async |p: Principal, r: proto::DropSpaceRequest| {
            p.require(Action::DropSpace, &r.memory_space)?;
            let dropped = self.engine.drop_space(&r.memory_space).map_err(ApiError::from);
            p.audit(Action::DropSpace, &r.memory_space, &dropped);
            dropped?;
            Ok(proto::DropSpaceResponse {})
        })
        .await
    }

    async fn delete_observations(
        &self,
        request: Request<proto::DeleteObservationsRequest>,
    ) -> Result<Response<proto::DeleteObservationsResponse>, Status> {
        self.unary(M_DELETE, request, async |p: Principal, r: proto::DeleteObservationsRequest| {
            p.require(Action::DeleteObservations, &r.memory_space)?;
            let wait = wait_for(r.wait)?;
            let d = session::delete(&self.engine, &r.memory_space, r.ids, wait).await?;
            let status = match d.status {
                AckLevel::Accepted => proto::AckStatus::Accepted,
                AckLevel::Durable => proto::AckStatus::Durable,
                AckLevel::Indexed => proto::AckStatus::Indexed,
            };
            Ok(proto::DeleteObservationsResponse {
                status: status as i32,
                deleted: d.deleted as u32,
                not_found: d.not_found as u32,
                level: convert::level(d.level),
            })
        })
        .await
    }
}
