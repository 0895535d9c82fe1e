//! Where the STS learns who its callers are and what they may exchange when it runs apart from
//! the authorization server (`writ serve sts`): [`RemoteDirectory`], its `AdminService` over gRPC.
//! (Under `writ up` the platform wires the authorization server's engine in directly.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::Channel;
use writ_client::{AttachTokenService, TokenSource};
use writ_exchange::{BoxFuture, Credentials, Directory, ExchangeError, ExchangePolicy, Result};
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::{AuthenticateClientRequest, ListExchangePoliciesRequest};

type AdminClient = AdminServiceClient<AttachTokenService<Channel>>;

/// The authorization server over gRPC: `AdminService.AuthenticateClient` for every exchange
/// (secrets are never cached), and `ListExchangePolicies` for the caller's policies, cached for
/// `ttl` (a deleted policy may keep allowing exchanges that long).
///
/// It presents an admin token of its own client (audience `writ-admin`, scopes
/// `writ.admin.authenticate_client` and `writ.admin.read`), never the master admin credential:
/// a compromised STS can check secrets and read the directory, not change it.
pub struct RemoteDirectory {
    client: AdminClient,
    source: TokenSource,
    ttl: Duration,
    cache: quick_cache::sync::Cache<String, Arc<(Instant, Vec<ExchangePolicy>)>>,
}

impl std::fmt::Debug for RemoteDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteDirectory")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Most clients whose policies are cached (past it, the least used are evicted); only
/// authenticated clients are ever looked up.
const MAX_CACHED: usize = 10_000;

impl RemoteDirectory {
    /// `source` supplies the admin tokens (a client credentials source for `writ-admin`).
    pub fn new(channel: Channel, source: TokenSource, ttl: Duration) -> Self {
        let client = AdminServiceClient::new(tower::Layer::layer(&source.layer(), channel));
        RemoteDirectory {
            client,
            source,
            ttl,
            cache: quick_cache::sync::Cache::new(MAX_CACHED),
        }
    }

    fn remote_error(&self, s: tonic::Status) -> ExchangeError {
        // Our own token refused (expired, revoked, its key withdrawn): fetch a new one next time.
        if s.code() == Code::Unauthenticated {
            writ_client::BearerSource::refused(&self.source);
        }
        tracing::warn!(code = ?s.code(), message = %s.message(), "the authorization server's directory refused or failed");
        ExchangeError::Unavailable("the client directory is unavailable")
    }
}

impl Directory for RemoteDirectory {
    fn authenticate<'a>(&'a self, c: Credentials<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Our own token first: a failure to get one (our client's secret rotated, our
            // client disabled) answers `invalid_client` about *our* client, and must not read as
            // the caller's.
            if let Err(s) = self.source.token().await {
                return Err(self.remote_error(s));
            }
            let mut client = self.client.clone();
            let request = AuthenticateClientRequest {
                client_id: c.client_id.to_owned(),
                client_secret: c.client_secret.to_owned(),
                client_assertion_type: c.client_assertion_type.to_owned(),
                client_assertion: c.client_assertion.to_owned(),
                audience: c.audiences.to_vec(),
            };
            match client.authenticate_client(request).await {
                Ok(_) => Ok(()),
                // The client failed; anything else (our own admin token refused, the
                // server away) is not the caller's fault and must not read as invalid_client.
                Err(s) if s.code() == Code::Unauthenticated && reason(&s) == "invalid_client" => {
                    Err(ExchangeError::InvalidClient)
                }
                // The client may not exchange (its tokens must be bound, which an exchange
                // cannot do): the authorization server's answer about it, passed on.
                Err(s)
                    if s.code() == Code::PermissionDenied
                        && reason(&s) == "unauthorized_client" =>
                {
                    Err(ExchangeError::UnauthorizedClient(
                        "this client's tokens must be bound (to a TLS client certificate or a \
                         DPoP key), which token exchange does not do",
                    ))
                }
                Err(s) => Err(self.remote_error(s)),
            }
        })
    }

    fn policies<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Vec<ExchangePolicy>>> {
        Box::pin(async move {
            if let Some(cached) = self.cache.get(client_id)
                && cached.0.elapsed() < self.ttl
            {
                return Ok(cached.1.clone());
            }
            let mut client = self.client.clone();
            let policies = client
                .list_exchange_policies(ListExchangePoliciesRequest {
                    client_id: client_id.to_owned(),
                    ..Default::default()
                })
                .await
                .map_err(|s| self.remote_error(s))?
                .into_inner()
                .policies
                .into_iter()
                .map(writ_proto::convert::exchange_policy_from)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| ExchangeError::Unavailable("the client directory is unavailable"))?;
            self.cache.insert(
                client_id.to_owned(),
                Arc::new((Instant::now(), policies.clone())),
            );
            Ok(policies)
        })
    }
}

fn reason(s: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}
