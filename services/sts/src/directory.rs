//! Where the STS learns who its callers are and what they may exchange when it runs apart from
//! the authorization server (`writ serve sts`): [`RemoteDirectory`], its `AdminService` over gRPC.
//! (Under `writ up` the platform wires the authorization server's engine in directly.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use writ_client::StaticBearer;
use writ_exchange::{BoxFuture, Directory, ExchangeError, ExchangePolicy, Result};
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::{AuthenticateClientRequest, ListExchangePoliciesRequest};

type AdminClient = AdminServiceClient<InterceptedService<Channel, StaticBearer>>;

/// The authorization server over gRPC: `AdminService.AuthenticateClient` for every exchange
/// (secrets are never cached), and `ListExchangePolicies` for the caller's policies, cached for
/// `ttl` (a deleted policy may keep allowing exchanges that long).
///
/// It needs the admin credential: the STS deployed apart is as trusted as the authorization
/// server's own administration (see ARCHITECTURE.md).
pub struct RemoteDirectory {
    client: AdminClient,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Vec<ExchangePolicy>)>>,
}

impl std::fmt::Debug for RemoteDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteDirectory")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Most clients whose policies are cached; only authenticated clients are ever looked up.
const MAX_CACHED: usize = 10_000;

impl RemoteDirectory {
    pub fn new(channel: Channel, admin_credential: &str, ttl: Duration) -> Result<Self> {
        let bearer = StaticBearer::new(admin_credential)
            .map_err(|_| ExchangeError::Internal("the admin credential is not a header value"))?;
        Ok(RemoteDirectory {
            client: AdminServiceClient::with_interceptor(channel, bearer),
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }
}

fn remote_error(s: tonic::Status) -> ExchangeError {
    tracing::warn!(code = ?s.code(), message = %s.message(), "the authorization server's directory refused or failed");
    ExchangeError::Unavailable("the client directory is unavailable")
}

impl Directory for RemoteDirectory {
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            let request = AuthenticateClientRequest {
                client_id: client_id.to_owned(),
                client_secret: secret.to_owned(),
            };
            match client.authenticate_client(request).await {
                Ok(_) => Ok(()),
                // The client failed; anything else (our own admin credential refused, the
                // server away) is not the caller's fault and must not read as invalid_client.
                Err(s) if s.code() == Code::Unauthenticated && reason(&s) == "invalid_client" => {
                    Err(ExchangeError::InvalidClient)
                }
                Err(s) => Err(remote_error(s)),
            }
        })
    }

    fn policies<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Vec<ExchangePolicy>>> {
        Box::pin(async move {
            if let Some((at, policies)) = self.cache.lock().get(client_id)
                && at.elapsed() < self.ttl
            {
                return Ok(policies.clone());
            }
            let mut client = self.client.clone();
            let policies = client
                .list_exchange_policies(ListExchangePoliciesRequest {
                    client_id: client_id.to_owned(),
                    ..Default::default()
                })
                .await
                .map_err(remote_error)?
                .into_inner()
                .policies
                .into_iter()
                .map(writ_proto::convert::exchange_policy_from)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| ExchangeError::Unavailable("the client directory is unavailable"))?;
            let mut cache = self.cache.lock();
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(client_id.to_owned(), (Instant::now(), policies.clone()));
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
