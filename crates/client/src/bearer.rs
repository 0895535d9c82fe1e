//! Bearer credentials: the header value, a fixed credential, and what supplies one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};

/// `Bearer <token>` as a header value, marked sensitive (never indexed by HPACK, hidden from
/// `Debug`). Fails for a token with characters a header cannot carry.
pub fn bearer_value(token: &str) -> Result<MetadataValue<Ascii>, Status> {
    let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
        .parse()
        .map_err(|_| Status::invalid_argument("the token has characters a header cannot carry"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Supplies the bearer token to present, when one is needed (the revocation watcher asks for
/// its watch token at every (re)connection).
pub trait BearerSource: Send + Sync {
    fn bearer(&self) -> Pin<Box<dyn Future<Output = Result<Arc<str>, Status>> + Send + '_>>;

    /// The token last given was refused (UNAUTHENTICATED): do not give it again (a source that
    /// caches fetches a new one next time).
    fn refused(&self) {}
}

/// A fixed bearer credential: as a tonic interceptor, it goes on every call; as a
/// [`BearerSource`], it is always the answer.
#[derive(Clone)]
pub struct StaticBearer {
    token: Arc<str>,
    value: MetadataValue<Ascii>,
}

impl std::fmt::Debug for StaticBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticBearer(..)")
    }
}

impl StaticBearer {
    pub fn new(token: &str) -> Result<Self, Status> {
        Ok(StaticBearer {
            value: bearer_value(token)?,
            token: Arc::from(token),
        })
    }
}

impl tonic::service::Interceptor for StaticBearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.value.clone());
        writ_telemetry::inject_metadata(request.metadata_mut());
        Ok(request)
    }
}

impl BearerSource for StaticBearer {
    fn bearer(&self) -> Pin<Box<dyn Future<Output = Result<Arc<str>, Status>> + Send + '_>> {
        let token = self.token.clone();
        Box::pin(async move { Ok(token) })
    }
}

/// The bearer token a call came with, as the guard attached it to the request, for propagation
/// (see [`crate::Exchanger`]). It is a credential: never log it.
#[derive(Clone)]
pub struct BearerToken(pub Arc<str>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&BearerToken> {
        request.extensions().get::<BearerToken>()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[tokio::test]
    async fn a_static_bearer_goes_on_every_call_marked_sensitive() {
        let mut bearer = StaticBearer::new("t0k3n").unwrap();
        let request = bearer.call(tonic::Request::new(())).unwrap();
        let value = request.metadata().get("authorization").unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer t0k3n");
        assert!(value.is_sensitive());
        assert!(!format!("{bearer:?}").contains("t0k3n"));
        assert_eq!(&*bearer.bearer().await.unwrap(), "t0k3n");
        assert!(StaticBearer::new("bad\ntoken").is_err());
    }
}
