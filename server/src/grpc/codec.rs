//! The prost codec with one change: a request that is not valid protobuf is answered with
//! `INVALID_ARGUMENT` (the client sent bad input), where tonic-prost answers `INTERNAL`.
//!
//! The status carries the [`MALFORMED_MARKER`] metadata key, so that [`count_malformed_unary`]
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
/// response that carries [`MALFORMED_MARKER`] in its headers, and removes the key. For use as
/// a `tower::util::MapResponseLayer` around the gRPC server.
///
/// Only a unary call refused by the codec answers with the status in its headers
/// ("trailers-only"), before any handler could count it; a stream's decode error arrives in
/// the trailers of an already started response and is counted by the stream handler, so it is
/// not counted twice.
pub fn count_malformed_unary<B>(events: &GrpcEvents, mut response: http::Response<B>) -> http::Response<B> {
    if response.headers_mut().remove(MALFORMED_MARKER).is_some() {
        events.refused(crate::api_error::Refusal::Malformed as usize);
    }
    response
}
