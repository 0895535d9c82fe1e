//! Whether a subject or actor token is revoked: the revocation feed (a [`RevocationSet`] kept
//! current by a `Watcher`), failing closed when it is staler than its bound, and under `writ up`
//! also the authorization server's own revocation index, which knows a revocation the moment
//! it is acknowledged.

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;
use tonic::transport::Channel;
use writ_exchange::{ExchangeError, Result, RevocationCheck};
use writ_oauth::AuthorizationServer;
use writ_proto::authz::TokenRequest;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_revocation_client::{RevocationSet, TokenProvider};
use writ_token::{RevocationKind, TokenFacts};

use writ_vocabulary::grant_type;
use writ_vocabulary::names::{REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE as WATCH_SCOPE};

/// The revocation feed, with a staleness bound, plus optionally the in-process authorization
/// server's index.
#[derive(Debug)]
pub struct FeedCheck {
    set: Arc<RevocationSet>,
    max_staleness: Duration,
    local: Option<Arc<AuthorizationServer>>,
}

impl FeedCheck {
    pub fn new(
        set: Arc<RevocationSet>,
        max_staleness: Duration,
        local: Option<Arc<AuthorizationServer>>,
    ) -> Self {
        FeedCheck {
            set,
            max_staleness,
            local,
        }
    }

    pub fn set(&self) -> &Arc<RevocationSet> {
        &self.set
    }
}

impl RevocationCheck for FeedCheck {
    fn revoked(&self, token: &TokenFacts<'_>) -> Result<Option<RevocationKind>> {
        match self.set.staleness() {
            None => {
                return Err(ExchangeError::Unavailable(
                    "the revocation feed has not synced yet",
                ));
            }
            Some(s) if s > self.max_staleness => {
                tracing::warn!(
                    staleness_ms = s.as_millis() as u64,
                    "revocation feed too stale: refusing exchanges"
                );
                return Err(ExchangeError::Unavailable(
                    "the revocation feed is too stale to vouch for the token",
                ));
            }
            Some(_) => {}
        }
        if let Some(kind) = self.set.check(token) {
            return Ok(Some(kind));
        }
        if let Some(engine) = &self.local {
            for (kind, value) in token.targets() {
                match engine.is_revoked(kind, value, token.iat) {
                    Ok(true) => return Ok(Some(kind)),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "the authorization server's revocation index failed");
                        return Err(ExchangeError::Unavailable(
                            "the revocation index is unavailable",
                        ));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// Watch tokens the in-process authorization server mints for the STS (`writ up`).
#[derive(Debug, Clone)]
pub struct EngineTokens(pub Arc<AuthorizationServer>);

impl TokenProvider for EngineTokens {
    fn token(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, Status>> + Send + '_>>
    {
        let minted = self
            .0
            .service_token(REVOCATION_AUDIENCE, WATCH_SCOPE)
            .map(|(t, _)| t)
            .map_err(|e| Status::internal(e.to_string()));
        Box::pin(async move { minted })
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use writ_proto::revocation::{
        Checkpoint, RevocationEntry, RevocationEvent, WatchResponse, watch_response::Event,
    };

    fn facts() -> TokenFacts<'static> {
        TokenFacts {
            jti: "j1",
            gid: Some("g1"),
            sub: "alice",
            client_id: "orders",
            iat: 100,
            key_id: "k1",
            biscuit_revocation_ids: &[],
        }
    }

    fn message(event: Event) -> WatchResponse {
        WatchResponse { event: Some(event) }
    }

    #[test]
    fn a_feed_that_never_synced_or_went_stale_fails_closed() {
        let set = Arc::new(RevocationSet::new());
        let check = FeedCheck::new(set.clone(), Duration::from_millis(50), None);
        assert!(matches!(
            check.revoked(&facts()),
            Err(ExchangeError::Unavailable(_))
        ));
        set.apply(&message(Event::Checkpoint(Checkpoint {
            sequence: 0,
            ..Default::default()
        })))
        .unwrap();
        assert_eq!(check.revoked(&facts()).unwrap(), None);
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(
            check.revoked(&facts()),
            Err(ExchangeError::Unavailable(_))
        ));
    }

    #[test]
    fn an_entry_in_the_feed_revokes_the_token() {
        let set = Arc::new(RevocationSet::new());
        let check = FeedCheck::new(set.clone(), Duration::from_secs(60), None);
        set.apply(&message(Event::Revocation(RevocationEvent {
            sequence: 1,
            entry: Some(RevocationEntry {
                kind: RevocationKind::GrantId as i32,
                value: "g1".into(),
                expires_at: i64::from(u32::MAX),
                reason: String::new(),
                not_before: 0,
            }),
        })))
        .unwrap();
        set.apply(&message(Event::Checkpoint(Checkpoint {
            sequence: 1,
            ..Default::default()
        })))
        .unwrap();
        assert_eq!(
            check.revoked(&facts()).unwrap(),
            Some(RevocationKind::GrantId)
        );
    }
}
