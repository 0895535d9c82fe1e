//! The tower layer: sees the gRPC path, so each method gets its own rule, and may wait for a key
//! fetch.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Guard, Presented};

/// Tower layer: see [`Guard::layer`].
#[derive(Debug, Clone)]
pub struct GuardLayer(pub(super) Guard);

impl<S> tower::Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            guard: self.0.clone(),
            inner,
        }
    }
}

/// The guarded service: refused calls never reach `inner`. A guarded gRPC service keeps its
/// name, so it is added to a server like the service itself (`add_service(guard.layer().layer(svc))`).
#[derive(Debug, Clone)]
pub struct GuardService<S> {
    guard: Guard,
    inner: S,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for GuardService<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for GuardService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            // Built only for a call with a proof (a bearer call pays for neither).
            let htu = request
                .headers()
                .contains_key("dpop")
                .then(|| writ_token::grpc_htu(request.uri()))
                .flatten();
            let certs = super::client_certificates(request.extensions());
            let presented = Presented::of(request.headers(), htu.as_deref(), super::leaf(&certs));
            let decision = guard.check_call(request.uri().path(), &presented).await;
            match decision {
                Ok(Some(v)) => {
                    request.extensions_mut().insert(v.principal.clone());
                    request.extensions_mut().insert(v.bearer.clone());
                    request.extensions_mut().insert(v.clone());
                    inner.call(request).await
                }
                Ok(None) => inner.call(request).await,
                Err(e) => Ok(e.to_status().into_http()),
            }
        })
    }
}
