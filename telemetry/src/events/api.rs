//! HTTP and gRPC request events, and open observation streams.
//!
//! Routes and methods are fixed lists given at registration (route templates such as
//! `/v1/spaces/{space}`, never raw paths). Status-code series are registered on first use of each
//! code (a one-time allocation) and cached, so steady-state recording is atomic only.

use crate::Telemetry;
use crate::catalog;
use crate::labels::{REFUSAL_REASONS, Refusal};
use crate::primitives::{Counter, Gauge, Histogram};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// HTTP status codes that get their own `status` label value; any other is exported as `other`.
pub const HTTP_STATUSES: [u16; 16] = [200, 201, 202, 204, 400, 404, 405, 408, 409, 413, 415, 422, 429, 500, 503, 504];
const HTTP_STATUS_LABELS: [&str; 17] = [
    "200", "201", "202", "204", "400", "404", "405", "408", "409", "413", "415", "422", "429", "500", "503", "504",
    "other",
];

/// `protocol` label values of refused requests.
pub const PROTOCOLS: [&str; 2] = ["http", "grpc"];

/// Refused-request counters of one protocol, every reason registered up front.
#[derive(Debug, Clone)]
struct Refusals([Arc<Counter>; REFUSAL_REASONS.len()]);

impl Refusals {
    fn register(t: &Telemetry, protocol: &str) -> Self {
        Self(REFUSAL_REASONS.map(|r| t.counter(&catalog::API_REJECTED, &[protocol, r])))
    }
}

/// gRPC status code names, indexed by code number (see the gRPC status codes spec,
/// <https://grpc.github.io/grpc/core/md_doc_statuscodes.html>).
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

#[derive(Debug)]
struct RouteSeries {
    method: &'static str,
    route: &'static str,
    by_status: [OnceLock<Arc<Counter>>; HTTP_STATUS_LABELS.len()],
    duration: Arc<Histogram>,
    request_size: Arc<Histogram>,
    response_size: Arc<Histogram>,
    in_flight: Arc<Gauge>,
}

/// Request metrics of the HTTP API, one set of series per (method, route template).
#[derive(Debug, Clone)]
pub struct HttpEvents {
    refusals: Refusals,
    telemetry: Arc<Telemetry>,
    routes: Arc<[RouteSeries]>,
}

/// A registered (method, route) pair, found with [`HttpEvents::route`].
#[derive(Debug, Clone, Copy)]
pub struct HttpRoute<'a> {
    events: &'a HttpEvents,
    series: &'a RouteSeries,
}

impl HttpEvents {
    /// Registers series for each `(method, route template)`.
    pub fn register(t: &Arc<Telemetry>, routes: &[(&'static str, &'static str)]) -> Self {
        let routes = routes
            .iter()
            .map(|&(method, route)| RouteSeries {
                method,
                route,
                by_status: std::array::from_fn(|_| OnceLock::new()),
                duration: t.histogram(&catalog::HTTP_REQUEST_DURATION, &[method, route]),
                request_size: t.histogram(&catalog::HTTP_REQUEST_SIZE, &[method, route]),
                response_size: t.histogram(&catalog::HTTP_RESPONSE_SIZE, &[method, route]),
                in_flight: t.gauge(&catalog::HTTP_IN_FLIGHT, &[method, route]),
            })
            .collect();
        Self { refusals: Refusals::register(t, PROTOCOLS[0]), telemetry: Arc::clone(t), routes }
    }

    /// A request was refused for `reason`.
    #[inline]
    pub fn refused(&self, reason: Refusal) {
        if !super::RECORDING {
            return;
        }
        self.refusals.0[reason as usize].inc();
    }

    /// The series of a registered (method, route template), or `None` for any other pair.
    pub fn route(&self, method: &str, route: &str) -> Option<HttpRoute<'_>> {
        self.routes
            .iter()
            .find(|r| r.method == method && r.route == route)
            .map(|series| HttpRoute { events: self, series })
    }
}

impl HttpRoute<'_> {
    /// A request on this route started.
    #[inline]
    pub fn started(&self) {
        if !super::RECORDING {
            return;
        }
        self.series.in_flight.add(1.0);
    }

    /// A request on this route finished with `status` after `elapsed`, having read
    /// `request_bytes` and written `response_bytes` of body.
    pub fn finished(&self, status: u16, elapsed: Duration, request_bytes: u64, response_bytes: u64) {
        if !super::RECORDING {
            return;
        }
        let s = self.series;
        s.in_flight.sub(1.0);
        let i = HTTP_STATUSES.iter().position(|&c| c == status).unwrap_or(HTTP_STATUSES.len());
        s.by_status[i]
            .get_or_init(|| {
                self.events.telemetry.counter(&catalog::HTTP_REQUESTS, &[s.method, s.route, HTTP_STATUS_LABELS[i]])
            })
            .add(1);
        s.duration.record(elapsed.as_secs_f64());
        s.request_size.record(request_bytes as f64);
        s.response_size.record(response_bytes as f64);
    }
}

#[derive(Debug)]
struct MethodSeries {
    method: &'static str,
    by_code: [OnceLock<Arc<Counter>>; GRPC_CODES.len()],
    duration: Arc<Histogram>,
    request_size: Arc<Histogram>,
    response_size: Arc<Histogram>,
    in_flight: Arc<Gauge>,
}

/// Request metrics of the gRPC API, one set of series per method, plus open streams.
#[derive(Debug, Clone)]
pub struct GrpcEvents {
    refusals: Refusals,
    telemetry: Arc<Telemetry>,
    methods: Arc<[MethodSeries]>,
    active_sessions: Arc<Gauge>,
}

impl GrpcEvents {
    /// Registers series for each method name (e.g. `Recall`). Index `i` of `methods` is the
    /// `method` argument of the recording calls.
    pub fn register(t: &Arc<Telemetry>, methods: &[&'static str]) -> Self {
        let methods = methods
            .iter()
            .map(|&method| MethodSeries {
                method,
                by_code: std::array::from_fn(|_| OnceLock::new()),
                duration: t.histogram(&catalog::GRPC_REQUEST_DURATION, &[method]),
                request_size: t.histogram(&catalog::GRPC_REQUEST_SIZE, &[method]),
                response_size: t.histogram(&catalog::GRPC_RESPONSE_SIZE, &[method]),
                in_flight: t.gauge(&catalog::GRPC_IN_FLIGHT, &[method]),
            })
            .collect();
        Self {
            refusals: Refusals::register(t, PROTOCOLS[1]),
            telemetry: Arc::clone(t),
            methods,
            active_sessions: t.gauge(&catalog::ACTIVE_SESSIONS, &[]),
        }
    }

    /// A call or stream batch was refused for `reason`.
    #[inline]
    pub fn refused(&self, reason: Refusal) {
        self.refusals.0[reason as usize].inc();
    }

    /// A call of method index `method` started.
    #[inline]
    pub fn started(&self, method: usize) {
        self.methods[method].in_flight.add(1.0);
    }

    /// A request message of `bytes` (encoded) arrived for method index `method`.
    #[inline]
    pub fn request_message(&self, method: usize, bytes: usize) {
        if !super::RECORDING {
            return;
        }
        self.methods[method].request_size.record(bytes as f64);
    }

    /// A response message of `bytes` (encoded) was sent for method index `method`.
    #[inline]
    pub fn response_message(&self, method: usize, bytes: usize) {
        if !super::RECORDING {
            return;
        }
        self.methods[method].response_size.record(bytes as f64);
    }

    /// A call of method index `method` ended with gRPC status code `code` after `elapsed`.
    pub fn finished(&self, method: usize, code: i32, elapsed: Duration) {
        let m = &self.methods[method];
        m.in_flight.sub(1.0);
        let c = usize::try_from(code).ok().filter(|&c| c < GRPC_CODES.len()).unwrap_or(2);
        m.by_code[c].get_or_init(|| self.telemetry.counter(&catalog::GRPC_REQUESTS, &[m.method, GRPC_CODES[c]])).add(1);
        m.duration.record(elapsed.as_secs_f64());
    }

    /// An observation stream opened (`+1`) or closed (`-1`).
    #[inline]
    pub fn session_opened(&self) {
        if !super::RECORDING {
            return;
        }
        self.active_sessions.add(1.0);
    }

    /// An observation stream closed.
    #[inline]
    pub fn session_closed(&self) {
        if !super::RECORDING {
            return;
        }
        self.active_sessions.sub(1.0);
    }
}

/// Connection metrics of one listener (`protocol` = `http` or `grpc`).
#[derive(Debug, Clone)]
pub struct ConnectionEvents {
    open: Arc<Gauge>,
    refused: Arc<Counter>,
    timed_out: Arc<Counter>,
}

impl ConnectionEvents {
    /// Registers the connection series of `protocol` (index into [`PROTOCOLS`]: 0 http, 1 grpc).
    pub fn register(t: &Telemetry, protocol: usize) -> Self {
        let p = PROTOCOLS[protocol];
        Self {
            open: t.gauge(&catalog::CONNECTIONS_OPEN, &[p]),
            refused: t.counter(&catalog::CONNECTIONS_REFUSED, &[p]),
            timed_out: t.counter(&catalog::CONNECTIONS_TIMED_OUT, &[p]),
        }
    }

    /// A connection was admitted.
    pub fn opened(&self) {
        self.open.add(1.0);
    }

    /// An admitted connection closed.
    pub fn closed(&self) {
        self.open.sub(1.0);
    }

    /// A connection was refused at the cap.
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// A connection was closed by a timeout.
    pub fn timed_out(&self) {
        self.timed_out.inc();
    }
}
