//! A guard in a few lines: [`Guard::builder`] hides the key sources, the revocation set and its
//! watcher, and hands back the guard and what keeps it current ([`GuardUpkeep`]).

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;
use tonic::transport::Channel;
use writ_client::{ClientCredentials, TokenSource};
use writ_revocation_client::{
    DEFAULT_MAX_STALENESS, RevocationFeed, RevocationSet, WatchConfig, Watcher,
};
use writ_token::biscuit_auth::builder::AuthorizerBuilder;
use writ_token::{SharedClock, TrustedIssuer};
use writ_trust::RemoteKeys;
use writ_vocabulary::names::{REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE};

use crate::policy::MethodPolicy;
use crate::server::{Guard, GuardConfig, Revocations};

/// How often a Writ issuer's published keys are fetched in the background.
pub const KEY_REFRESH_EVERY: Duration = Duration::from_secs(300);
/// At most one fetch per this window when tokens name a key not yet known.
pub const KEY_MIN_REFRESH: Duration = Duration::from_secs(1);

/// Why a guard could not be built. It is built fail closed: every part it was asked for must
/// be there before it guards anything.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the guard trusts no issuer: name the authorization server (or an issuer)")]
    NoIssuer,
    #[error(
        "the revocation feed is not configured: call revocation_feed(..), or \
         without_revocation_checks() to opt out explicitly"
    )]
    NoRevocationFeed,
    #[error("following the revocation feed needs the authorization server, for the watch token")]
    FeedNeedsAuthorizationServer,
    #[error("fetching the keys of {what}: {status}")]
    Keys { what: &'static str, status: Status },
}

/// Keeps a guard current: the revocation watcher (the issuers' key refreshes live as long as
/// the guard). Keep it as long as the guard serves; dropping it stops the watcher, and the
/// guard then fails closed once the feed goes stale.
#[derive(Debug)]
pub struct GuardUpkeep {
    watcher: Option<Watcher>,
    revocations: Option<Arc<RevocationSet>>,
}

impl GuardUpkeep {
    /// The revocation set the guard checks, kept current by the watcher.
    pub fn revocations(&self) -> Option<&Arc<RevocationSet>> {
        self.revocations.as_ref()
    }

    /// Whether the revocation feed has synced once (until then the guard refuses every call
    /// that needs a token); true without a feed.
    pub fn synced(&self) -> bool {
        self.revocations
            .as_ref()
            .is_none_or(|s| s.staleness().is_some())
    }

    /// Stops the watcher.
    pub fn stop(self) {
        if let Some(w) = self.watcher {
            w.stop();
        }
    }
}

/// Builds a [`Guard`]; see [`Guard::builder`].
#[derive(Debug)]
pub struct GuardBuilder {
    audience: String,
    authorization_server: Option<Channel>,
    sts: Option<Channel>,
    issuers: Vec<TrustedIssuer>,
    feed: Option<(Vec<Channel>, ClientCredentials)>,
    unchecked: bool,
    max_staleness: Duration,
    fail_open: bool,
    policy: MethodPolicy,
    biscuit_policies: Option<AuthorizerBuilder>,
    cache_capacity: Option<usize>,
    dpop_proofs_remembered: Option<usize>,
    clock: Option<SharedClock>,
    key_refresh: (Duration, Duration),
    watch: WatchConfig,
}

impl Guard {
    /// A guard for the service whose audience is `audience`:
    ///
    /// ```no_run
    /// # async fn f(authz: tonic::transport::Channel, sts: tonic::transport::Channel,
    /// #            revocation: tonic::transport::Channel) -> Result<(), Box<dyn std::error::Error>> {
    /// use writ_guard::{ClientCredentials, Guard, MethodPolicy, Rule};
    /// let (guard, _upkeep) = Guard::builder("inventory")
    ///     .authorization_server(authz)
    ///     .sts(sts)
    ///     .revocation_feed(revocation, ClientCredentials::new("inventory", "its secret"))
    ///     .policy(MethodPolicy::new().method("/shop.Inventory/Reserve", Rule::scopes(&["reserve"])))
    ///     .build()
    ///     .await?;
    /// // tonic::transport::Server::builder().layer(guard.layer()).add_service(..)
    /// # Ok(()) }
    /// ```
    pub fn builder(audience: impl Into<String>) -> GuardBuilder {
        GuardBuilder {
            audience: audience.into(),
            authorization_server: None,
            sts: None,
            issuers: Vec::new(),
            feed: None,
            unchecked: false,
            max_staleness: DEFAULT_MAX_STALENESS,
            fail_open: false,
            policy: MethodPolicy::new(),
            biscuit_policies: None,
            cache_capacity: None,
            dpop_proofs_remembered: None,
            clock: None,
            key_refresh: (KEY_REFRESH_EVERY, KEY_MIN_REFRESH),
            watch: WatchConfig::default(),
        }
    }
}

impl GuardBuilder {
    /// Trusts the authorization server at `channel`: its issuer name and keys are fetched at
    /// build, the keys refreshed in the background and when a token names a key not yet known.
    pub fn authorization_server(mut self, channel: Channel) -> Self {
        self.authorization_server = Some(channel);
        self
    }

    /// Trusts the STS at `channel` the same way (tokens exchanged for this service).
    pub fn sts(mut self, channel: Channel) -> Self {
        self.sts = Some(channel);
        self
    }

    /// Trusts another issuer (an external one, with keys from its JWKS; or keys in-process).
    pub fn issuer(mut self, issuer: TrustedIssuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Follows the revocation feed at `channel`, watching it with a token the authorization
    /// server issues to `credentials` (a client allowed `writ.revocation.watch` for the
    /// audience `writ-revocation`). Calls fail closed (UNAVAILABLE) while the feed is staler
    /// than 30 s.
    pub fn revocation_feed(self, channel: Channel, credentials: ClientCredentials) -> Self {
        self.revocation_feeds(vec![channel], credentials)
    }

    /// [`GuardBuilder::revocation_feed`] over several replicas of the revocation service: the
    /// watcher fails over between them, resuming from its cursor (no gap, no duplicate).
    pub fn revocation_feeds(
        mut self,
        channels: Vec<Channel>,
        credentials: ClientCredentials,
    ) -> Self {
        self.feed = Some((channels, credentials));
        self
    }

    /// How stale the feed may grow before calls fail (30 s by default).
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// Lets calls through unchecked against revocations while the feed is stale (logged at
    /// each call). Fail closed is the default; say why you opt out.
    pub fn fail_open(mut self) -> Self {
        self.fail_open = true;
        self
    }

    /// No revocation checks at all: for tests and tools only.
    pub fn without_revocation_checks(mut self) -> Self {
        self.unchecked = true;
        self
    }

    /// Which methods need what (everything else is denied; health checks are public).
    pub fn policy(mut self, policy: MethodPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The service's own Datalog checks and policies for Biscuits.
    pub fn biscuit_policies(mut self, policies: AuthorizerBuilder) -> Self {
        self.biscuit_policies = Some(policies);
        self
    }

    /// Verified JWTs kept (100,000 by default; 0: none).
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = Some(n);
        self
    }

    /// DPoP proofs remembered per generation ([`crate::DPOP_PROOFS_REMEMBERED`] by default):
    /// the guard takes at most this many DPoP calls per proof lifetime (two minutes), about
    /// 8,300 a second sustained for a million; past that, calls with proofs get UNAVAILABLE.
    pub fn dpop_proofs_remembered(mut self, n: usize) -> Self {
        self.dpop_proofs_remembered = Some(n);
        self
    }

    /// The clock tokens are checked against (the system's by default).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Background key refresh period, and the least time between fetches on unknown keys.
    pub fn key_refresh(mut self, every: Duration, min_refresh: Duration) -> Self {
        self.key_refresh = (every, min_refresh);
        self
    }

    /// Reconnection and pruning of the revocation watcher.
    pub fn watch_config(mut self, config: WatchConfig) -> Self {
        self.watch = config;
        self
    }

    /// Fetches the issuers' keys, starts following the feed, and returns the guard with what
    /// keeps it current. Fails if an issuer cannot be reached or a part is missing.
    pub async fn build(self) -> Result<(Guard, GuardUpkeep), BuildError> {
        let (every, min_refresh) = self.key_refresh;
        let mut issuers = Vec::new();
        if let Some(channel) = &self.authorization_server {
            let keys = RemoteKeys::connect(channel.clone(), every, min_refresh)
                .await
                .map_err(|status| BuildError::Keys {
                    what: "the authorization server",
                    status,
                })?;
            issuers.push(TrustedIssuer::new(keys.issuer().to_owned(), keys));
        }
        if let Some(channel) = &self.sts {
            let keys = RemoteKeys::connect_sts(channel.clone(), every, min_refresh)
                .await
                .map_err(|status| BuildError::Keys {
                    what: "the STS",
                    status,
                })?;
            issuers.push(TrustedIssuer::new(keys.issuer().to_owned(), keys));
        }
        issuers.extend(self.issuers);
        if issuers.is_empty() {
            return Err(BuildError::NoIssuer);
        }
        let (revocations, upkeep) = match (self.feed, self.unchecked) {
            (Some((channels, credentials)), _) => {
                let authz = self
                    .authorization_server
                    .ok_or(BuildError::FeedNeedsAuthorizationServer)?;
                let tokens = TokenSource::new(
                    authz,
                    credentials.for_audience(REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE),
                );
                let set = Arc::new(RevocationSet::new());
                let watcher =
                    Watcher::spawn_failover(channels, Arc::new(tokens), set.clone(), self.watch);
                let check = Arc::new(RevocationFeed::new(set.clone(), self.max_staleness));
                (
                    Revocations::Checked {
                        check,
                        fail_open: self.fail_open,
                    },
                    GuardUpkeep {
                        watcher: Some(watcher),
                        revocations: Some(set),
                    },
                )
            }
            (None, true) => (
                Revocations::Unchecked,
                GuardUpkeep {
                    watcher: None,
                    revocations: None,
                },
            ),
            (None, false) => return Err(BuildError::NoRevocationFeed),
        };
        let mut config = GuardConfig::without_revocations(self.audience, issuers, self.policy);
        config.revocations = revocations;
        config.biscuit_policies = self.biscuit_policies;
        if let Some(n) = self.cache_capacity {
            config.cache_capacity = n;
        }
        if let Some(n) = self.dpop_proofs_remembered {
            config.dpop_proofs_remembered = n;
        }
        if let Some(clock) = self.clock {
            config.clock = clock;
        }
        Ok((Guard::new(config), upkeep))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use writ_token::{FixedKeys, KeySet};

    #[tokio::test]
    async fn a_guard_is_not_built_without_an_issuer_or_a_decision_about_revocations() {
        let issuer = || TrustedIssuer::new("https://as", Arc::new(FixedKeys::new(KeySet::new())));
        assert!(matches!(
            Guard::builder("inventory").build().await,
            Err(BuildError::NoIssuer)
        ));
        assert!(matches!(
            Guard::builder("inventory").issuer(issuer()).build().await,
            Err(BuildError::NoRevocationFeed)
        ));
        let (_, upkeep) = Guard::builder("inventory")
            .issuer(issuer())
            .without_revocation_checks()
            .build()
            .await
            .unwrap();
        assert!(upkeep.synced() && upkeep.revocations().is_none());
    }
}
