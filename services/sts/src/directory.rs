//! Where the STS learns who its callers are and what they may exchange: the authorization
//! server, in this process ([`LocalDirectory`], `writ up`) or over gRPC ([`RemoteDirectory`],
//! `writ serve sts`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use writ_exchange::{BoxFuture, Directory, ExchangeError, ExchangePolicy, Result};
use writ_oauth::AuthorizationServer;
use writ_oauth::records::ExchangePolicyRecord;
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::{self as pb, AuthenticateClientRequest, ListExchangePoliciesRequest};

fn policy(p: ExchangePolicyRecord) -> ExchangePolicy {
    ExchangePolicy {
        policy_id: p.policy_id,
        client_id: p.client_id,
        audience: p.audience,
        scope: p.scope,
        max_lifetime: p.max_lifetime,
        allow_impersonation: p.allow_impersonation,
        // Validated at creation (0..=8); a negative value could only come from corruption.
        max_chain_depth: u32::try_from(p.max_chain_depth).unwrap_or(1),
    }
}

/// A policy as `AdminService` lists it, read back as the authorization server stores it.
fn from_pb(p: pb::ExchangePolicy) -> ExchangePolicy {
    policy(writ_authz::convert::policy_record(p))
}

/// The authorization server engine in this process: its clients and policies, read directly.
#[derive(Debug, Clone)]
pub struct LocalDirectory(pub Arc<AuthorizationServer>);

fn engine_error(e: writ_oauth::Error) -> ExchangeError {
    match e {
        writ_oauth::Error::InvalidClient => ExchangeError::InvalidClient,
        other => {
            tracing::error!(error = %other, "the client directory failed");
            ExchangeError::Unavailable("the client directory is unavailable")
        }
    }
}

impl Directory for LocalDirectory {
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        let result = self
            .0
            .authenticate_exchange_client(client_id, secret)
            .map_err(engine_error);
        Box::pin(async move { result })
    }

    fn policies<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Vec<ExchangePolicy>>> {
        let result = self
            .0
            .exchange_policies_of(client_id)
            .map(|ps| ps.into_iter().map(policy).collect())
            .map_err(engine_error);
        Box::pin(async move { result })
    }
}

/// Adds the admin credential to every call.
#[derive(Clone)]
pub struct AdminBearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl std::fmt::Debug for AdminBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminBearer")
    }
}

impl tonic::service::Interceptor for AdminBearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type AdminClient = AdminServiceClient<InterceptedService<Channel, AdminBearer>>;

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
        let bearer = format!("Bearer {admin_credential}")
            .parse()
            .map_err(|_| ExchangeError::Internal("the admin credential is not a header value"))?;
        Ok(RemoteDirectory {
            client: AdminServiceClient::with_interceptor(channel, AdminBearer(bearer)),
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
            let policies: Vec<ExchangePolicy> = client
                .list_exchange_policies(ListExchangePoliciesRequest {
                    client_id: client_id.to_owned(),
                    ..Default::default()
                })
                .await
                .map_err(remote_error)?
                .into_inner()
                .policies
                .into_iter()
                .map(from_pb)
                .collect();
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
