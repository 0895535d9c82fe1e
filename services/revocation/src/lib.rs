//! The Writ revocation service: `writ.revocation.v1.RevocationService` over the durable
//! revocation log. `Revoke` answers once entries are durable; `Watch` streams every committed
//! event after a cursor, with checkpoints on idle streams and snapshots for cursors the log no
//! longer retains; `GetStatus` reports the log's state.
//!
//! Callers present a bearer JWT from the authorization server with the audience
//! `writ-revocation`: producers need the scope `writ.revocation.publish`, subscribers
//! `writ.revocation.watch` (`writ_vocabulary::names`).

mod convert;
mod subscriber;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};
use tower::Layer;
use writ_guard::{Guard, GuardConfig, MethodPolicy, Principal, Revocations, Rule};
use writ_proto::refusal::status;
use writ_proto::revocation::revocation_service_server::{
    RevocationService, RevocationServiceServer,
};
use writ_proto::revocation::{
    GetStatusRequest, GetStatusResponse, RevokeRequest, RevokeResponse, WatchRequest,
};
use writ_revocation_log::{LogError, RevocationLog};
pub use writ_server::Running;
use writ_server::{MAX_GRPC_MESSAGE, ServerError, ServiceSpec, ShutdownSignal};
use writ_tls::TlsMaterial;
use writ_token::{SharedClock, TrustedIssuer};
use writ_vocabulary::Kind;
use writ_vocabulary::names::{
    REVOCATION_AUDIENCE, REVOCATION_PUBLISH_SCOPE as SCOPE_PUBLISH,
    REVOCATION_WATCH_SCOPE as SCOPE_WATCH, SELF_CLIENT_ID,
};

pub use subscriber::SubscriberConfig;
pub use writ_revocation_log::ERROR_DOMAIN;

/// How the service behaves.
#[derive(Debug, Clone)]
pub struct Config {
    pub subscriber: SubscriberConfig,
    /// How often expired entries are pruned (and stray pending events committed).
    pub prune_interval: Duration,
    /// Producers besides the authorization server, by client id: the issuer whose tokens each
    /// may revoke (its namespace; empty for the authorization server's own tokens). The
    /// authorization server's own publisher (`writ-authz`, relaying its administrator and its
    /// grants) publishes for every issuer; a client with the publish scope but no namespace here
    /// publishes nothing.
    pub producers: BTreeMap<String, String>,
    /// The least an entry lives past its cut-off (its `not_before`, or now): the longest token
    /// it can match, plus leeway. A shorter `expires_at` is raised to it, so no revoked token
    /// outlives its revocation.
    pub min_entry_lifetime: Duration,
    /// Where its decisions are recorded. The platform always sets it (the process's log); the
    /// default only logs them.
    pub audit: writ_audit::Auditor,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            producers: BTreeMap::new(),
            // Writ's longest-lived tokens (an hour, access or exchanged) and the 30 s leeway.
            min_entry_lifetime: Duration::from_secs(3600 + 30),
            subscriber: SubscriberConfig {
                checkpoint_interval: Duration::from_secs(1),
                buffer: 1024,
                slow_timeout: Duration::from_secs(5),
                max_subscribers: 10_000,
                max_subscribers_per_caller: 64,
            },
            prune_interval: Duration::from_secs(60),
            audit: writ_audit::Auditor::disabled("revocation"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RevocationGrpc {
    log: Arc<RevocationLog>,
    clock: SharedClock,
    config: Config,
    /// The authorization server's issuer: its `writ-authz` tokens publish for every issuer.
    admin_issuer: String,
    subscribers: Arc<AtomicU32>,
    per_caller: Arc<parking_lot::Mutex<std::collections::HashMap<String, u32>>>,
    shutdown: ShutdownSignal,
}

/// Who called: the guard in front of the service authenticated the caller and checked its
/// scope before the call got here.
fn principal<T>(request: &Request<T>) -> Result<&Principal, Status> {
    Principal::of(request).ok_or_else(|| Status::internal("the guard attached no principal"))
}

fn caller<T>(request: &Request<T>) -> Result<String, Status> {
    principal(request).map(|p| p.client_id.clone())
}

/// Whose tokens a producer may revoke.
enum Namespace {
    /// Every issuer's: the authorization server.
    Every,
    /// One issuer's.
    Issuer(String),
}

impl RevocationGrpc {
    fn namespace(&self, p: &Principal) -> Result<Namespace, Status> {
        if p.client_id == SELF_CLIENT_ID && p.issuer == self.admin_issuer {
            return Ok(Namespace::Every);
        }
        match self.config.producers.get(&p.client_id) {
            Some(issuer) => Ok(Namespace::Issuer(issuer.clone())),
            None => Err(convert::refused(
                Kind::PermissionDenied,
                "not_a_producer",
                "this client is not registered as a revocation producer",
            )),
        }
    }
}

/// Puts `entry` in `namespace`: an entry of a namespaced producer is scoped to its issuer
/// (filled in when left empty); naming another issuer, or every issuer, is refused.
fn in_namespace(
    namespace: &Namespace,
    mut entry: writ_token::RevocationEntry,
) -> Result<writ_token::RevocationEntry, Status> {
    if let Namespace::Issuer(own) = namespace {
        if entry.issuer.is_empty() {
            entry.issuer = own.clone();
        } else if &entry.issuer != own {
            return Err(convert::refused(
                Kind::PermissionDenied,
                "outside_namespace",
                "a producer may only revoke tokens of the issuer it is registered for",
            ));
        }
    }
    Ok(entry)
}

/// The service's own guard: callers present a token of a trusted issuer (the authorization
/// server) for the audience `writ-revocation`; producers need `writ.revocation.publish`,
/// subscribers `writ.revocation.watch` (either one reads the status). A caller whose token this
/// very log revokes is refused at once: the service checks its own index, it does not wait for
/// a feed of its own entries.
pub fn guard(log: Arc<RevocationLog>, issuers: Vec<TrustedIssuer>, clock: SharedClock) -> Guard {
    type Service = RevocationServiceServer<RevocationGrpc>;
    let policy = MethodPolicy::new()
        .method_of::<Service>("Revoke", Rule::scopes(&[SCOPE_PUBLISH]))
        .method_of::<Service>("Watch", Rule::scopes(&[SCOPE_WATCH]))
        .method_of::<Service>("GetStatus", Rule::any_scope(&[SCOPE_WATCH, SCOPE_PUBLISH]));
    Guard::new(GuardConfig {
        revocations: Revocations::Awaited { check: log },
        clock,
        ..GuardConfig::without_revocations(REVOCATION_AUDIENCE, issuers, policy)
    })
}

#[tonic::async_trait]
impl RevocationService for RevocationGrpc {
    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let principal = principal(&request)?;
        let caller = principal.client_id.clone();
        let namespace = self.namespace(principal)?;
        let now = self.clock.now();
        let min_lifetime = i64::try_from(self.config.min_entry_lifetime.as_secs()).unwrap_or(0);
        let entries = request
            .into_inner()
            .entries
            .into_iter()
            .map(|e| {
                let entry = writ_proto::convert::revocation_entry(e, now)
                    .map_err(|e| status(LogError::Invalid(e)))?;
                // The authorization server's own entries are already as long as its tokens (it
                // knows them); another producer's are raised to the longest token they can match
                // (by the log, which judges a repeat on the entry as given: the raise depends on
                // the time, and a retry must still append nothing).
                let floor = match namespace {
                    Namespace::Issuer(_) if entry.expires_at > now => {
                        entry.not_before.max(now).saturating_add(min_lifetime)
                    }
                    _ => 0,
                };
                Ok((in_namespace(&namespace, entry)?, floor))
            })
            .collect::<Result<Vec<_>, Status>>()?;
        // Appended on a task of its own: a caller that goes away mid-append (cancelled, timed
        // out) must not leave entries written but never flushed and committed.
        let log = self.log.clone();
        let appended = {
            let entries = entries.clone();
            tokio::spawn(async move { log.append_raised(&entries, now).await })
        };
        let sequence = appended
            .await
            .map_err(|_| Status::internal("the append did not finish"))?
            .map_err(status)?;
        // The log's append is its own batch (another store, under `writ up`): each entry's
        // record is queued after it, all durable before the producer hears the sequence.
        let mut events = Vec::with_capacity(entries.len());
        for (e, _) in &entries {
            let mut event =
                writ_audit::Event::new("revocation_recorded", writ_audit::Outcome::Success)
                    .actor(&caller)
                    .reason(&e.reason)
                    .detail("kind", e.kind.name())
                    .detail("value", &e.value)
                    .detail("issuer", &e.issuer)
                    .detail("sequence", sequence);
            event = match e.kind {
                writ_token::RevocationKind::GrantId => event.gid(&e.value),
                writ_token::RevocationKind::Subject => event.subject(&e.value),
                writ_token::RevocationKind::Client => event.client(&e.value),
                _ => event,
            };
            events.push(event);
        }
        self.config
            .audit
            .record_all(events)
            .await
            .map_err(|e| Status::unavailable(format!("{e}: retry the revocation")))?;
        Ok(Response::new(RevokeResponse { sequence }))
    }

    type WatchStream = subscriber::SubscriberStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = caller(&request)?;
        let verified = request
            .extensions()
            .get::<Arc<writ_guard::Verified>>()
            .cloned()
            .ok_or_else(|| Status::internal("the guard attached no verified token"))?;
        let cursor = request.into_inner().from_sequence;
        let registration = subscriber::Registration::take(
            &self.subscribers,
            &self.per_caller,
            &caller,
            self.config.subscriber.max_subscribers,
            self.config.subscriber.max_subscribers_per_caller,
        )?;
        // A cursor from a replica ahead of this one (a subscriber failing over): catch up with
        // the shared store before calling it ahead.
        if cursor > self.log.head() && cursor > self.log.refresh().await.map_err(status)? {
            return Err(status(LogError::CursorAhead));
        }
        self.config
            .audit
            .record(
                writ_audit::Event::new("watch_started", writ_audit::Outcome::Success)
                    .actor(&caller)
                    .client(&caller)
                    .detail("cursor", cursor),
            )
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let clock = self.clock.clone();
        let recheck = {
            let (log, clock, audit) = (
                self.log.clone(),
                self.clock.clone(),
                self.config.audit.clone(),
            );
            let leeway = writ_token::VerifierConfig::new(Vec::new(), None).leeway;
            Box::new(move || {
                let (log, clock, verified, audit) =
                    (log.clone(), clock.clone(), verified.clone(), audit.clone());
                Box::pin(async move {
                    let token = &verified.token;
                    let lapsed = |why: &'static str| async move {
                        let event =
                            writ_audit::Event::new("watch_ended", writ_audit::Outcome::Refused)
                                .actor(&token.claims.client_id)
                                .client(&token.claims.client_id)
                                .reason(why);
                        if let Err(e) = audit.record(event).await {
                            tracing::error!(error = %e, "a watch's end could not be recorded in the audit log");
                        }
                        convert::refused(
                            Kind::Unauthenticated,
                            "caller_lapsed",
                            format!("{why}: reconnect with a valid token"),
                        )
                    };
                    if clock.now() >= token.claims.exp + leeway {
                        return Err(lapsed("the caller's token expired").await);
                    }
                    match writ_token::AsyncRevocationCheck::revoked_async(
                        &*log,
                        &writ_token::TokenFacts::of(token),
                    )
                    .await
                    {
                        Ok(None) => Ok(()),
                        Ok(Some(_)) => Err(lapsed("the caller's token was revoked").await),
                        Err(_) => Err(convert::refused(
                            Kind::Unavailable,
                            "log_unavailable",
                            "the revocation log cannot vouch for the caller; resume from your cursor",
                        )),
                    }
                }) as writ_token::BoxFuture<'static, Result<(), Status>>
            }) as subscriber::CallerCheck
        };
        Ok(Response::new(subscriber::spawn(
            self.log.clone(),
            cursor,
            self.config.subscriber,
            registration,
            move || clock.now(),
            recheck,
            self.shutdown.clone(),
        )))
    }

    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        Ok(Response::new(GetStatusResponse {
            head_sequence: self.log.head(),
            live_entries: self.log.live_count(),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            oldest_sequence: self.log.low(),
        }))
    }
}

/// What the revocation service serves: `RevocationService` behind its own guard, and the
/// periodic sync and pruning of the log.
pub fn spec(
    log: Arc<RevocationLog>,
    issuers: Vec<TrustedIssuer>,
    clock: SharedClock,
    config: Config,
    shutdown: ShutdownSignal,
) -> ServiceSpec {
    // The first trusted issuer is the authorization server (the one whose `writ-authz` tokens
    // publish for every issuer).
    let admin_issuer = issuers
        .first()
        .map(|i| i.issuer.clone())
        .unwrap_or_default();
    let mut config = config;
    for namespace in config.producers.values_mut() {
        if namespace.is_empty() {
            namespace.clone_from(&admin_issuer);
        }
    }
    let guard = guard(log.clone(), issuers, clock.clone());
    let prune_interval = config.prune_interval;
    let service = RevocationServiceServer::new(RevocationGrpc {
        log: log.clone(),
        clock: clock.clone(),
        admin_issuer,
        config,
        subscribers: Arc::new(AtomicU32::new(0)),
        per_caller: Arc::default(),
        shutdown,
    })
    .max_decoding_message_size(MAX_GRPC_MESSAGE);
    ServiceSpec::new("revocation service")
        .grpc(guard.layer().layer(service))
        .every("sync and prune", prune_interval, move || {
            let (log, now) = (log.clone(), clock.now());
            async move {
                if let Err(e) = log.sync().await {
                    tracing::warn!(error = %e, "revocation log sync failed");
                }
                if let Err(e) = log.prune(now).await {
                    tracing::warn!(error = %e, "revocation log pruning failed");
                }
            }
        })
}

/// Serves the revocation service on `listener` until `shutdown`.
pub async fn start(
    log: Arc<RevocationLog>,
    issuers: Vec<TrustedIssuer>,
    clock: SharedClock,
    config: Config,
    listener: TcpListener,
    tls: Option<&TlsMaterial>,
    shutdown: ShutdownSignal,
) -> Result<Running, ServerError> {
    writ_server::serve(
        spec(log, issuers, clock, config, shutdown.clone()),
        listener,
        None,
        tls,
        shutdown,
    )
    .await
}

/// Maps a refused Watch stream's status to whether the subscriber should resume right away.
pub fn resumable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::ResourceExhausted | Code::Unavailable | Code::Cancelled
    )
}
