//! Whether a subject or actor token is revoked: the revocation feed (a `RevocationSet` kept
//! current by a `Watcher`), failing closed when it is staler than its bound, and under `writ up`
//! also the authorization server's own revocation index, which knows a revocation the moment
//! it is acknowledged.

use std::sync::Arc;

use tonic::Status;
use tonic::transport::Channel;
use writ_proto::authz::TokenRequest;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_revocation_client::{RevocationFeed, TokenProvider};
use writ_token::{RevocationCheck, RevocationKind, TokenFacts, Unvouched};

use writ_vocabulary::grant_type;
use writ_vocabulary::names::{REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE as WATCH_SCOPE};

/// The revocation feed (failing closed when stale), then any other index the STS may consult
/// (under `writ up`, the authorization server's own, which knows a revocation the moment it is
/// acknowledged).
#[derive(Debug)]
pub struct FeedCheck {
    feed: RevocationFeed,
    also: Option<Arc<dyn RevocationCheck>>,
}

impl FeedCheck {
    pub fn new(feed: RevocationFeed, also: Option<Arc<dyn RevocationCheck>>) -> Self {
        FeedCheck { feed, also }
    }
}

impl RevocationCheck for FeedCheck {
    fn revoked(&self, token: &TokenFacts<'_>) -> Result<Option<RevocationKind>, Unvouched> {
        if let Some(kind) = self.feed.revoked(token)? {
            return Ok(Some(kind));
        }
        match &self.also {
            Some(index) => index.revoked(token),
            None => Ok(None),
        }
    }
}

/// Watch tokens from the authorization server by `client_credentials` (`writ serve sts`): a
/// client an administrator allowed `writ.revocation.watch` for the audience `writ-revocation`.
#[derive(Clone)]
pub struct ClientCredentialsTokens {
    authz: AuthorizationServiceClient<Channel>,
    client_id: String,
    client_secret: String,
}

impl std::fmt::Debug for ClientCredentialsTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentialsTokens")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ClientCredentialsTokens {
    pub fn new(authz: Channel, client_id: String, client_secret: String) -> Self {
        ClientCredentialsTokens {
            authz: AuthorizationServiceClient::new(authz),
            client_id,
            client_secret,
        }
    }
}

impl TokenProvider for ClientCredentialsTokens {
    fn token(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, Status>> + Send + '_>>
    {
        Box::pin(async move {
            let mut authz = self.authz.clone();
            let r = authz
                .token(TokenRequest {
                    grant_type: grant_type::CLIENT_CREDENTIALS.into(),
                    client_id: self.client_id.clone(),
                    client_secret: self.client_secret.clone(),
                    scope: WATCH_SCOPE.into(),
                    audience: vec![REVOCATION_AUDIENCE.into()],
                    ..Default::default()
                })
                .await?;
            Ok(r.into_inner().access_token)
        })
    }
}
