//! The prost codec with one change: a request that is not valid protobuf is answered with
//! `INVALID_ARGUMENT` (the client sent bad input), where tonic-prost answers `INTERNAL`.
//!
//! The status carries the [`MALFORMED_MARKER`] metadata key, so that [`fix_unary_status`]
//! can count a unary request the codec refused before any handler ran; the key is removed
//! before the response leaves the server.

use engram_telemetry::events::GrpcEvents;
use prost::Message;
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::http;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic_prost::ProstEncoder;

/// Codec of the generated `engram.v1` service (set by `build.rs`).
#[derive(Debug, Clone)]
pub struct EngramCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for EngramCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for EngramCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = InvalidArgumentDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        InvalidArgumentDecoder(PhantomData)
    }
}

/// Decodes protobuf, mapping parse errors to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct InvalidArgumentDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for InvalidArgumentDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            let mut marker = MetadataMap::new();
            marker.insert(MALFORMED_MARKER, MetadataValue::from_static("1"));
            Status::with_metadata(tonic::Code::InvalidArgument, format!("malformed protobuf message: {e}"), marker)
        })
    }
}

/// Metadata key the decoder puts on the status of a message that is not valid protobuf.
pub const MALFORMED_MARKER: &str = "x-engram-malformed";

/// Counts, as `engram_api_requests_rejected_total{protocol="grpc",reason="malformed"}`, each
/// response that carries [`MALFORMED_MARKER`] in its headers, and removes the key; answers a
/// message over the size limit with `RESOURCE_EXHAUSTED` (the gRPC status code guide's code for
/// it) where tonic answers `OUT_OF_RANGE`, counting it as `payload_too_large`. For use as a
/// `tower::util::MapResponseLayer` around the gRPC server.
///
/// Only a unary call refused before its handler answers with the status in its headers
/// ("trailers-only"), before any handler could count it; a stream's decode error arrives in
/// the trailers of an already started response and is mapped and counted by the stream
/// handler ([`stream_decode_error`]), so it is not counted twice.
pub fn fix_unary_status<B>(events: &GrpcEvents, mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    if headers.remove(MALFORMED_MARKER).is_some() {
        events.refused(crate::api_error::Refusal::Malformed);
    }
    let out_of_range = headers.get("grpc-status").is_some_and(|v| v.as_bytes() == b"11");
    if out_of_range && headers.get("grpc-message").is_some_and(|m| is_too_large(m.as_bytes())) {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        events.refused(crate::api_error::Refusal::PayloadTooLarge);
    }
    response
}

/// tonic's message for a message over `max_decoding_message_size` (percent-encoded in the
/// `grpc-message` header): "Error, decoded message length too large: found N bytes, the limit
/// is: M bytes".
fn is_too_large(message: &[u8]) -> bool {
    let needle = b"message length too large";
    let encoded = b"message%20length%20too%20large";
    message.windows(needle.len()).any(|w| w == needle) || message.windows(encoded.len()).any(|w| w == encoded)
}

/// The status a stream ends with when its next message could not be decoded: a message over
/// the size limit becomes `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`), anything else is
/// returned as it is. The second value says whether the refusal is `payload_too_large`.
pub fn stream_decode_error(status: tonic::Status) -> (tonic::Status, bool) {
    if status.code() == tonic::Code::OutOfRange && is_too_large(status.message().as_bytes()) {
        (tonic::Status::resource_exhausted(status.message().to_owned()), true)
    } else {
        (status, false)
    }
}
