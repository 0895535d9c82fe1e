//! `writ.admin.v1.AdminService`. Every call passes [`AdminAuth`] first: the master admin
//! credential, or an admin token scoped to what the call needs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::{Request, Response, Status};
use writ_audit::{Event, Outcome};
use writ_oauth::{AdminCaller, AdminPermission, AuthorizationServer, Error};
use writ_proto::admin::admin_service_server::AdminService;
use writ_proto::admin::*;
use writ_token::Algorithm;
use writ_vocabulary::names::ADMIN_AUDIENCE;

use crate::convert;
use writ_proto::refusal::status;

/// Which permission each `AdminService` method needs. A method not listed (and any added later
/// until it is) needs the master credential.
pub fn permission(method: &str) -> AdminPermission {
    match method {
        "AuthenticateClient" => AdminPermission::AuthenticateClient,
        "GetClient"
        | "ListClients"
        | "ListSigningKeys"
        | "GetExchangePolicy"
        | "ListExchangePolicies"
        | "ListAuditEvents"
        | "ListUserSessions"
        | "GetWorkloadIssuer"
        | "ListWorkloadIssuers" => AdminPermission::Read,
        "CreateClient"
        | "UpdateClient"
        | "DeleteClient"
        | "RotateClientSecret"
        | "CreateUser"
        | "DeleteUser"
        | "SetUserPassword"
        | "EndUserSessions"
        | "RotateSigningKey"
        | "CreateExchangePolicy"
        | "DeleteExchangePolicy"
        | "CreateWorkloadIssuer"
        | "UpdateWorkloadIssuer"
        | "DeleteWorkloadIssuer"
        | "AddWorkloadPolicy"
        | "RemoveWorkloadPolicy" => AdminPermission::Write,
        "Revoke" => AdminPermission::Revoke,
        _ => AdminPermission::Master,
    }
}

/// Checks `authorization: Bearer <credential>` for the method called before the call reaches
/// the service: the master admin credential, or an admin token with the method's scope
/// ([`AuthorizationServer::authorize_admin`]). The caller goes into the request's extensions.
#[derive(Debug, Clone)]
pub struct AdminAuth<S> {
    engine: Arc<AuthorizationServer>,
    inner: S,
}

impl<S> AdminAuth<S> {
    pub fn new(engine: Arc<AuthorizationServer>, inner: S) -> Self {
        AdminAuth { engine, inner }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for AdminAuth<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for AdminAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: Default + Send,
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
        let engine = self.engine.clone();
        Box::pin(async move {
            let method = request
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned();
            let needs = permission(&method);
            let credential = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("")
                .to_owned();
            match engine.authorize_admin(&credential, needs).await {
                Ok(caller) => {
                    let actor = caller.name().to_owned();
                    // A change is recorded by the engine with what changed (as this actor); a
                    // read only here, before it is answered.
                    if needs == AdminPermission::Read {
                        let event = Event::new("admin_read", Outcome::Success)
                            .actor(&actor)
                            .detail("method", &method);
                        if let Err(e) = engine.auditor().record(event).await {
                            return Ok(status(Error::from(e)).into_http());
                        }
                    }
                    request.extensions_mut().insert(caller);
                    let response = writ_audit::acting_as(&actor, inner.call(request)).await?;
                    // A change the engine refused (bad input, a missing or existing record)
                    // changed nothing and left no record of its own: it is recorded here.
                    let status = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("0")
                        .to_owned();
                    // (AuthenticateClient records its own answer, either way.)
                    if needs != AdminPermission::Read
                        && needs != AdminPermission::AuthenticateClient
                        && status != "0"
                    {
                        let event = Event::new("admin_call_refused", Outcome::Refused)
                            .actor(&actor)
                            .reason(&format!("grpc-status {status}"))
                            .detail("method", &method);
                        if let Err(e) = engine.auditor().record(event).await {
                            tracing::error!(error = %e, "a refused admin call could not be recorded in the audit log");
                        }
                    }
                    Ok(response)
                }
                Err(e) => Ok(status(e).into_http()),
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct AdminGrpc {
    engine: Arc<AuthorizationServer>,
}

impl AdminGrpc {
    pub fn new(engine: Arc<AuthorizationServer>) -> Self {
        AdminGrpc { engine }
    }
}

/// Whether a client may hold admin tokens: any `writ.admin.*` scope, or the admin audience.
fn holds_admin(client: &writ_oauth::Client) -> bool {
    client
        .scope
        .split(' ')
        .any(|s| s.starts_with("writ.admin."))
        || client.audience.iter().any(|a| a == ADMIN_AUDIENCE)
}

/// Clients that may hold admin tokens are created, changed, re-keyed and deleted with the master
/// credential only: otherwise `writ.admin.write` could grant itself every other admin scope, or
/// take over another admin client (the STS's).
fn master_only_for<T>(request: &Request<T>, clients: &[&writ_oauth::Client]) -> Result<(), Status> {
    let master = request
        .extensions()
        .get::<AdminCaller>()
        .is_some_and(AdminCaller::is_master);
    if !master && clients.iter().any(|c| holds_admin(c)) {
        return Err(status(Error::AdminForbidden(
            "only the admin credential manages clients that hold admin scopes",
        )));
    }
    Ok(())
}

fn required<T>(v: Option<T>, what: &'static str) -> Result<T, Status> {
    v.ok_or_else(|| status(Error::InvalidRequest(what)))
}

fn page_size(n: i32) -> Result<usize, Status> {
    usize::try_from(n).map_err(|_| status(Error::InvalidRequest("page_size must not be negative")))
}

#[tonic::async_trait]
impl AdminService for AdminGrpc {
    async fn create_client(
        &self,
        request: Request<CreateClientRequest>,
    ) -> Result<Response<CreateClientResponse>, Status> {
        let spec = convert::client_spec(required(
            request.get_ref().client.clone(),
            "client is required",
        )?)?;
        master_only_for(&request, &[&spec])?;
        let (client, secret) = self.engine.create_client(spec).await.map_err(status)?;
        Ok(Response::new(CreateClientResponse {
            client: Some(convert::client(client)),
            client_secret: secret.unwrap_or_default(),
        }))
    }

    async fn get_client(
        &self,
        request: Request<GetClientRequest>,
    ) -> Result<Response<GetClientResponse>, Status> {
        let client = self
            .engine
            .get_client(&request.into_inner().client_id)
            .await
            .map_err(status)?;
        Ok(Response::new(GetClientResponse {
            client: Some(convert::client(client)),
        }))
    }

    async fn list_clients(
        &self,
        request: Request<ListClientsRequest>,
    ) -> Result<Response<ListClientsResponse>, Status> {
        let r = request.into_inner();
        let page = self
            .engine
            .list_clients(page_size(r.page_size)?, &r.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(ListClientsResponse {
            clients: page.items.into_iter().map(convert::client).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_client(
        &self,
        request: Request<UpdateClientRequest>,
    ) -> Result<Response<UpdateClientResponse>, Status> {
        let spec = convert::client_spec(required(
            request.get_ref().client.clone(),
            "client is required",
        )?)?;
        let current = self
            .engine
            .get_client(&spec.client_id)
            .await
            .map_err(status)?;
        master_only_for(&request, &[&spec, &current])?;
        let mask = request
            .into_inner()
            .update_mask
            .map(|m| m.paths)
            .unwrap_or_default();
        let client = self
            .engine
            .update_client(spec, &mask)
            .await
            .map_err(status)?;
        Ok(Response::new(UpdateClientResponse {
            client: Some(convert::client(client)),
        }))
    }

    async fn delete_client(
        &self,
        request: Request<DeleteClientRequest>,
    ) -> Result<Response<DeleteClientResponse>, Status> {
        let current = self
            .engine
            .get_client(&request.get_ref().client_id)
            .await
            .map_err(status)?;
        master_only_for(&request, &[&current])?;
        self.engine
            .delete_client(&request.into_inner().client_id)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteClientResponse {}))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let r = request.into_inner();
        let after = match r.page_token.as_str() {
            "" => 0,
            token => token.parse::<u64>().map_err(|_| {
                status(Error::InvalidRequest(
                    "page_token is not one this server gave",
                ))
            })?,
        };
        let ms = |t: Option<prost_types::Timestamp>| {
            t.map(|t| {
                t.seconds
                    .saturating_mul(1000)
                    .saturating_add(i64::from(t.nanos / 1_000_000))
            })
        };
        let given = |s: String| (!s.is_empty()).then_some(s);
        let filter = writ_audit::query::Filter {
            since_ms: ms(r.since),
            until_ms: ms(r.until),
            kind: given(r.event_type),
            outcome: given(r.outcome),
            client_id: given(r.client_id),
            subject: given(r.subject),
            gid: given(r.gid),
        };
        let size = usize::try_from(r.page_size)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(100);
        let page = self
            .engine
            .audit_events(&filter, after, size)
            .await
            .map_err(status)?;
        Ok(Response::new(ListAuditEventsResponse {
            events: page.records.iter().map(convert::audit_event).collect(),
            next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn rotate_admin_credential(
        &self,
        _: Request<RotateAdminCredentialRequest>,
    ) -> Result<Response<RotateAdminCredentialResponse>, Status> {
        let admin_credential = self
            .engine
            .rotate_admin_credential()
            .await
            .map_err(status)?;
        Ok(Response::new(RotateAdminCredentialResponse {
            admin_credential,
        }))
    }

    async fn rotate_client_secret(
        &self,
        request: Request<RotateClientSecretRequest>,
    ) -> Result<Response<RotateClientSecretResponse>, Status> {
        let current = self
            .engine
            .get_client(&request.get_ref().client_id)
            .await
            .map_err(status)?;
        master_only_for(&request, &[&current])?;
        let request = request.into_inner();
        let secret = self
            .engine
            .rotate_client_secret(&request.client_id, request.grace_seconds)
            .await
            .map_err(status)?;
        Ok(Response::new(RotateClientSecretResponse {
            client_secret: secret,
        }))
    }

    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<CreateUserResponse>, Status> {
        let r = request.into_inner();
        let user = self
            .engine
            .create_user(&r.username, &r.password, &r.scope)
            .await
            .map_err(status)?;
        Ok(Response::new(CreateUserResponse {
            user: Some(convert::user(user)),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let notices = self
            .engine
            .delete_user(&request.into_inner().username)
            .await
            .map_err(status)?;
        crate::backchannel::deliver(notices);
        Ok(Response::new(DeleteUserResponse {}))
    }

    async fn set_user_password(
        &self,
        request: Request<SetUserPasswordRequest>,
    ) -> Result<Response<SetUserPasswordResponse>, Status> {
        let r = request.into_inner();
        let notices = self
            .engine
            .set_user_password(&r.username, &r.password)
            .await
            .map_err(status)?;
        crate::backchannel::deliver(notices);
        Ok(Response::new(SetUserPasswordResponse {}))
    }

    async fn list_user_sessions(
        &self,
        request: Request<ListUserSessionsRequest>,
    ) -> Result<Response<ListUserSessionsResponse>, Status> {
        let sessions = self
            .engine
            .user_sessions(&request.into_inner().username)
            .await
            .map_err(status)?;
        Ok(Response::new(ListUserSessionsResponse {
            sessions: sessions.into_iter().map(convert::session).collect(),
        }))
    }

    async fn end_user_sessions(
        &self,
        request: Request<EndUserSessionsRequest>,
    ) -> Result<Response<EndUserSessionsResponse>, Status> {
        let r = request.into_inner();
        let ended = self
            .engine
            .end_user_sessions(&r.username, &r.sid)
            .await
            .map_err(status)?;
        // The sessions that did end are announced even if another could not be.
        crate::backchannel::deliver(ended.notices);
        if let Some(e) = ended.failed {
            return Err(status(e));
        }
        Ok(Response::new(EndUserSessionsResponse {
            ended: u32::try_from(ended.ended).unwrap_or(u32::MAX),
        }))
    }

    async fn list_signing_keys(
        &self,
        _: Request<ListSigningKeysRequest>,
    ) -> Result<Response<ListSigningKeysResponse>, Status> {
        Ok(Response::new(ListSigningKeysResponse {
            keys: self
                .engine
                .list_signing_keys()
                .into_iter()
                .map(convert::signing_key)
                .collect(),
        }))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        let r = request.into_inner();
        let purpose = match KeyPurpose::try_from(r.purpose) {
            Ok(KeyPurpose::Unspecified) | Ok(KeyPurpose::Jwt) => writ_keyring::KeyPurpose::Jwt,
            Ok(KeyPurpose::Biscuit) => writ_keyring::KeyPurpose::Biscuit,
            Err(_) => return Err(status(Error::InvalidRequest("unknown key purpose"))),
        };
        let alg = match r.alg.as_str() {
            "" => None,
            name => Some(
                Algorithm::from_name(name)
                    .filter(|a| Algorithm::ALL.contains(a))
                    .ok_or_else(|| status(Error::InvalidRequest("alg must be EdDSA or ES256")))?,
            ),
        };
        let key = self
            .engine
            .rotate_signing_key(purpose, alg)
            .await
            .map_err(status)?;
        Ok(Response::new(RotateSigningKeyResponse {
            key: Some(convert::signing_key(key)),
        }))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let now = self.engine.now();
        let entries = request
            .into_inner()
            .entries
            .into_iter()
            .map(|e| {
                writ_proto::convert::revocation_entry(e, now)
                    .map_err(|_| status(Error::InvalidRequest("unknown revocation kind")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.engine.admin_revoke(entries).await.map_err(status)?;
        Ok(Response::new(RevokeResponse {}))
    }

    async fn create_exchange_policy(
        &self,
        request: Request<CreateExchangePolicyRequest>,
    ) -> Result<Response<CreateExchangePolicyResponse>, Status> {
        let spec = required(request.into_inner().policy, "policy is required")?;
        let policy = self
            .engine
            .create_exchange_policy(
                writ_proto::convert::exchange_policy_from(spec)
                    .map_err(|m| status(Error::InvalidRequest(m)))?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(CreateExchangePolicyResponse {
            policy: Some(writ_proto::convert::exchange_policy(&policy)),
        }))
    }

    async fn get_exchange_policy(
        &self,
        request: Request<GetExchangePolicyRequest>,
    ) -> Result<Response<GetExchangePolicyResponse>, Status> {
        let policy = self
            .engine
            .get_exchange_policy(&request.into_inner().policy_id)
            .await
            .map_err(status)?;
        Ok(Response::new(GetExchangePolicyResponse {
            policy: Some(writ_proto::convert::exchange_policy(&policy)),
        }))
    }

    async fn list_exchange_policies(
        &self,
        request: Request<ListExchangePoliciesRequest>,
    ) -> Result<Response<ListExchangePoliciesResponse>, Status> {
        let r = request.into_inner();
        if !r.client_id.is_empty() {
            let policies = self
                .engine
                .exchange_policies_of(&r.client_id)
                .await
                .map_err(status)?;
            return Ok(Response::new(ListExchangePoliciesResponse {
                policies: policies
                    .iter()
                    .map(writ_proto::convert::exchange_policy)
                    .collect(),
                next_page_token: String::new(),
            }));
        }
        let page = self
            .engine
            .list_exchange_policies(page_size(r.page_size)?, &r.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(ListExchangePoliciesResponse {
            policies: page
                .items
                .iter()
                .map(writ_proto::convert::exchange_policy)
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn delete_exchange_policy(
        &self,
        request: Request<DeleteExchangePolicyRequest>,
    ) -> Result<Response<DeleteExchangePolicyResponse>, Status> {
        self.engine
            .delete_exchange_policy(&request.into_inner().policy_id)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteExchangePolicyResponse {}))
    }

    async fn create_workload_issuer(
        &self,
        request: Request<CreateWorkloadIssuerRequest>,
    ) -> Result<Response<CreateWorkloadIssuerResponse>, Status> {
        let spec = required(request.into_inner().issuer, "issuer is required")?;
        let issuer = self
            .engine
            .create_workload_issuer(convert::workload_issuer_from(spec))
            .await
            .map_err(status)?;
        Ok(Response::new(CreateWorkloadIssuerResponse {
            issuer: Some(convert::workload_issuer(issuer)),
        }))
    }

    async fn get_workload_issuer(
        &self,
        request: Request<GetWorkloadIssuerRequest>,
    ) -> Result<Response<GetWorkloadIssuerResponse>, Status> {
        let issuer = self
            .engine
            .get_workload_issuer(&request.into_inner().issuer)
            .await
            .map_err(status)?;
        Ok(Response::new(GetWorkloadIssuerResponse {
            issuer: Some(convert::workload_issuer(issuer)),
        }))
    }

    async fn list_workload_issuers(
        &self,
        request: Request<ListWorkloadIssuersRequest>,
    ) -> Result<Response<ListWorkloadIssuersResponse>, Status> {
        let r = request.into_inner();
        let page = self
            .engine
            .list_workload_issuers(page_size(r.page_size)?, &r.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(ListWorkloadIssuersResponse {
            issuers: page
                .items
                .into_iter()
                .map(convert::workload_issuer)
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_workload_issuer(
        &self,
        request: Request<UpdateWorkloadIssuerRequest>,
    ) -> Result<Response<UpdateWorkloadIssuerResponse>, Status> {
        let r = request.into_inner();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let spec = required(r.issuer, "issuer is required")?;
        let issuer = self
            .engine
            .update_workload_issuer(convert::workload_issuer_from(spec), &mask)
            .await
            .map_err(status)?;
        Ok(Response::new(UpdateWorkloadIssuerResponse {
            issuer: Some(convert::workload_issuer(issuer)),
        }))
    }

    async fn delete_workload_issuer(
        &self,
        request: Request<DeleteWorkloadIssuerRequest>,
    ) -> Result<Response<DeleteWorkloadIssuerResponse>, Status> {
        self.engine
            .delete_workload_issuer(&request.into_inner().issuer)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteWorkloadIssuerResponse {}))
    }

    async fn add_workload_policy(
        &self,
        request: Request<AddWorkloadPolicyRequest>,
    ) -> Result<Response<AddWorkloadPolicyResponse>, Status> {
        let r = request.into_inner();
        let spec = required(r.policy, "policy is required")?;
        let policy = self
            .engine
            .add_workload_policy(&r.issuer, convert::workload_policy_from(spec))
            .await
            .map_err(status)?;
        Ok(Response::new(AddWorkloadPolicyResponse {
            policy: Some(convert::workload_policy(policy)),
        }))
    }

    async fn remove_workload_policy(
        &self,
        request: Request<RemoveWorkloadPolicyRequest>,
    ) -> Result<Response<RemoveWorkloadPolicyResponse>, Status> {
        let r = request.into_inner();
        self.engine
            .remove_workload_policy(&r.issuer, &r.policy_id)
            .await
            .map_err(status)?;
        Ok(Response::new(RemoveWorkloadPolicyResponse {}))
    }

    async fn authenticate_client(
        &self,
        request: Request<AuthenticateClientRequest>,
    ) -> Result<Response<AuthenticateClientResponse>, Status> {
        let r = request.into_inner();
        let presented = writ_oauth::ClientCredentials {
            client_id: r.client_id,
            client_secret: r.client_secret,
            client_assertion_type: r.client_assertion_type,
            client_assertion: r.client_assertion,
            client_certificate: None,
        };
        self.engine
            .authenticate_remote_exchange_client(&presented, &r.audience)
            .await
            .map_err(status)?;
        Ok(Response::new(AuthenticateClientResponse {}))
    }
}
