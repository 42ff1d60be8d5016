//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) in and out: the client's
//! `traceparent` / `tracestate` read from HTTP headers, gRPC metadata or an observation batch's
//! own fields (one trace per batch on a long stream), with the OpenTelemetry SDK's
//! `TraceContextPropagator`; the server's trace returned in a `traceresponse` header
//! (Trace Context Level 2, <https://w3c.github.io/trace-context/#traceresponse-header>).

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// Name of the response header (and gRPC response metadata key) that carries the server's
/// trace: `00-{trace-id}-{span-id}-{flags}` of the request's server span.
pub const TRACERESPONSE: &str = "traceresponse";

/// The client's span context from `carrier`; invalid (`SpanContext::empty_context()`) when it
/// sent none or a malformed one, so the request starts a trace of its own.
pub fn extract(carrier: &dyn Extractor) -> SpanContext {
    let cx = TraceContextPropagator::new().extract(carrier);
    cx.span().span_context().clone()
}

/// HTTP request headers as a propagation carrier.
pub struct Headers<'a>(pub &'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// gRPC request metadata as a propagation carrier.
pub struct Metadata<'a>(pub &'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The `traceparent` and `tracestate` fields of one `ObservationBatch`.
pub struct Fields<'a> {
    /// `traceparent`, empty when unset.
    pub traceparent: &'a str,
    /// `tracestate`, empty when unset.
    pub tracestate: &'a str,
}

impl Extractor for Fields<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let v = match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => return None,
        };
        (!v.is_empty()).then_some(v)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn a_valid_traceparent_is_the_parent_and_a_malformed_one_is_ignored() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        h.insert("tracestate", HeaderValue::from_static("vendor=x"));
        let sc = extract(&Headers(&h));
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(format!("{:032x}", sc.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.trace_state().get("vendor"), Some("x"));
        h.insert("traceparent", HeaderValue::from_static("00-zz-00f067aa0ba902b7-01"));
        assert!(!extract(&Headers(&h)).is_valid());
        let f = Fields { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", tracestate: "" };
        let sc = extract(&f);
        assert!(sc.is_valid() && !sc.is_sampled());
        assert!(!extract(&Fields { traceparent: "", tracestate: "" }).is_valid());
    }
}
