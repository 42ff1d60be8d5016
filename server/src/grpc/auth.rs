//! Authentication of gRPC calls: a tower layer in front of every service reads the key from
//! the call's metadata (`authorization: Bearer KEY` or `api-key: KEY`), answers
//! `UNAUTHENTICATED` without one that matches, and puts the call's [`Principal`] in its
//! extensions, where each `engram.v1.Engram` method checks the grant its memory space needs
//! ([`principal`]). `grpc.health.v1.Health` stays open to probes; reflection needs a key.

use crate::api_error::{ApiError, Refusal};
use crate::auth::{Action, Auth, Principal};
use engram_telemetry::events::{GrpcEvents, Transport};
use futures::future::{Either, Ready, ready};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tonic::transport::server::TcpConnectInfo;

/// The action of a call to `path` (`/package.Service/Method`), for the audit line of a refusal;
/// the grant in the memory space is checked by the method itself.
fn action(path: &str) -> Action {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Action::Probe;
    }
    match path.strip_prefix("/engram.v1.Engram/") {
        Some("StreamObservations") => Action::WriteObservations,
        Some("Recall") => Action::Recall,
        Some("CreateSpace") => Action::CreateSpace,
        Some("GetSpace") => Action::GetSpace,
        Some("ListSpaces") => Action::ListSpaces,
        Some("DropSpace") => Action::DropSpace,
        Some("DeleteObservations") => Action::DeleteObservations,
        _ => Action::Describe,
    }
}

/// The layer's service: authenticates, then calls `inner`.
#[derive(Clone)]
pub(crate) struct Authenticate<S> {
    inner: S,
    auth: Auth,
    events: GrpcEvents,
}

impl<S> Authenticate<S> {
    pub(crate) fn new(inner: S, auth: Auth, events: GrpcEvents) -> Self {
        Self { inner, auth, events }
    }
}

impl<S, B> tower::Service<axum::http::Request<B>> for Authenticate<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<tonic::body::Body>, Error = Infallible>,
{
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Self::Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        let action = action(req.uri().path());
        let peer = req.extensions().get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr);
        match self.auth.authenticate(req.headers(), Transport::Grpc, peer, action, None) {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                Either::Right(self.inner.call(req))
            }
            Err(e) => {
                self.events.refused(Refusal::Unauthenticated);
                Either::Left(ready(Ok(tonic::Status::from(e).into_http())))
            }
        }
    }
}

/// The principal the layer put in `req`'s extensions.
///
/// # Errors
/// `INTERNAL` when the layer did not run (a server built without [`crate::layers::grpc`]).
pub(crate) fn principal<T>(req: &tonic::Request<T>) -> Result<Principal, ApiError> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ApiError::internal("the gRPC authentication layer did not run"))
}
