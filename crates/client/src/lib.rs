//! The calling side of a Writ-protected service.
//!
//! - [`TokenSource`]: a client-credentials token for outgoing calls, cached, renewed before it
//!   expires, one fetch at a time however many callers ask; attached by [`AttachTokenLayer`] (a
//!   tower layer that waits for a token when it must) or [`AttachToken`] (a tonic interceptor
//!   that uses the token kept ready by [`TokenSource::spawn_refresher`]).
//! - [`Exchanger`]: trades the token a call came with at the STS (RFC 8693) for one naming the
//!   next service, instead of passing it on as it is.
//! - [`DpopKey`]: with [`TokenSource::with_dpop`], tokens bound to a key the client holds
//!   (RFC 9449 over gRPC, `docs/dpop-grpc.md`): each call carries a fresh proof by it.
//! - [`StaticBearer`]: a fixed bearer credential on every call (an admin credential, a token a
//!   tool was given).
//! - [`BearerSource`]: what supplies a bearer token when one is needed (the revocation watcher
//!   asks one for its watch token).
//!
//! Every bearer header value is marked sensitive, so HTTP/2 never indexes it (HPACK) and
//! debugging output hides it.
//!
//! ```no_run
//! # async fn f(authz: tonic::transport::Channel, inventory: tonic::transport::Channel) {
//! use writ_client::{ClientCredentials, TokenSource};
//! let tokens = TokenSource::new(authz, ClientCredentials::new("orders", "its secret"));
//! let channel = tower::ServiceBuilder::new()
//!     .layer(tokens.layer())
//!     .service(inventory);
//! // InventoryServiceClient::new(channel): every call carries a fresh token.
//! # }
//! ```

mod bearer;
mod dpop;
mod exchange;
mod source;

pub use bearer::{BearerSource, BearerToken, StaticBearer, bearer_value};
pub use dpop::DpopKey;
pub use exchange::Exchanger;
pub use source::{
    AttachToken, AttachTokenLayer, AttachTokenService, ClientCredentials, PrivateKeyJwt,
    TokenSource,
};
