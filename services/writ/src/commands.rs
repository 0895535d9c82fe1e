//! The client-side commands: token, inspect, attenuate, exchange, admin.

use std::io::Read;

use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use writ_client::{ClientCredentials, StaticBearer, TokenSource};
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::{self as pb_admin};
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::sts::security_token_service_client::SecurityTokenServiceClient;
use writ_proto::{authz, common};
use writ_token::{Attenuation, TokenFormat, VerifierConfig};
use writ_vocabulary::names::{REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE};
use writ_vocabulary::{grant_type, token_type};

use crate::cli::*;
use crate::platform::ADMIN_TOKEN_FILE;

/// Why a command failed; each maps to a documented exit code.
#[derive(Debug)]
pub enum CliError {
    /// The server refused the request (exit 1) or the caller's credentials (exit 4).
    Refused(Status),
    /// The server could not be reached (exit 3).
    Unreachable(String),
    /// Bad input or an invalid token (exit 1).
    Invalid(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Refused(s) => {
                let reason = tonic_types::StatusExt::get_error_details(s)
                    .error_info()
                    .map(|i| i.reason.clone())
                    .unwrap_or_default();
                if reason.is_empty() {
                    write!(f, "{:?}: {}", s.code(), s.message())
                } else {
                    write!(f, "{reason}: {} ({:?})", s.message(), s.code())
                }
            }
            CliError::Unreachable(m) => write!(f, "cannot reach the server: {m}"),
            CliError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            // Only a rejected caller credential (invalid_client, a bad admin credential) is
            // Unauthenticated. PermissionDenied carries OAuth refusals of an authenticated caller
            // (invalid_grant, invalid_scope, unauthorized_client, invalid_target): those are
            // "refused" (1), as the documented exit codes say, not "authentication failed" (4).
            CliError::Refused(s) if s.code() == Code::Unauthenticated => 4,
            CliError::Refused(s) if s.code() == Code::Unavailable => 3,
            CliError::Refused(_) | CliError::Invalid(_) => 1,
            CliError::Unreachable(_) => 3,
        }
    }
}

impl From<Status> for CliError {
    fn from(s: Status) -> Self {
        CliError::Refused(s)
    }
}

type Result<T> = std::result::Result<T, CliError>;

fn print(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// The CA to trust for `https://` servers: `--ca`, or the data directory's development CA.
pub fn ca_pem(conn: &Conn) -> Result<String> {
    let path = conn
        .files
        .ca
        .clone()
        .unwrap_or_else(|| conn.files.data_dir.join(writ_tls::CA_CERT_FILE));
    std::fs::read_to_string(&path).map_err(|e| {
        CliError::Invalid(format!(
            "cannot read the CA certificate {} ({e}); pass --ca or --data-dir",
            path.display()
        ))
    })
}

/// A channel to `url`, trusting the CA `conn` names.
pub async fn channel_to(url: &str, conn: &Conn) -> Result<Channel> {
    let ca = if url.starts_with("https://") {
        Some(ca_pem(conn)?)
    } else {
        None
    };
    writ_server::endpoint(url, ca.as_deref())
        .map_err(|e| CliError::Invalid(format!("{url}: {e}")))?
        .connect()
        .await
        .map_err(|e| CliError::Unreachable(format!("{url}: {e}")))
}

/// A channel to the authorization server.
pub async fn channel(conn: &Conn) -> Result<Channel> {
    channel_to(&conn.server, conn).await
}

fn read_arg_or_stdin(value: &str) -> Result<String> {
    if value != "-" {
        return Ok(value.trim().to_owned());
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::Invalid(format!("reading standard input: {e}")))?;
    Ok(s.trim().to_owned())
}

fn read_stdin_line(what: &str) -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_line(&mut s)
        .map_err(|e| CliError::Invalid(format!("reading {what} from standard input: {e}")))?;
    let s = s.trim_end_matches(['\r', '\n']).to_owned();
    if s.is_empty() {
        return Err(CliError::Invalid(format!("no {what} on standard input")));
    }
    Ok(s)
}

fn format_value(f: Format) -> i32 {
    match f {
        Format::Jwt => common::TokenFormat::Jwt as i32,
        Format::Biscuit => common::TokenFormat::Biscuit as i32,
        Format::JwtAndBiscuit => common::TokenFormat::JwtAndBiscuit as i32,
    }
}

fn grant_name(g: Grant) -> &'static str {
    match g {
        Grant::ClientCredentials => grant_type::CLIENT_CREDENTIALS,
        Grant::RefreshToken => grant_type::REFRESH_TOKEN,
        Grant::Password => grant_type::PASSWORD,
    }
}

pub async fn token(args: TokenArgs) -> Result<()> {
    let password = if args.grant == Grant::Password {
        if !args.password_stdin {
            return Err(CliError::Invalid(
                "--grant password needs --password-stdin".into(),
            ));
        }
        read_stdin_line("the password")?
    } else {
        String::new()
    };
    let mut client = AuthorizationServiceClient::new(channel(&args.conn).await?);
    let r = client
        .token(authz::TokenRequest {
            grant_type: grant_name(args.grant).to_owned(),
            client_id: args.client_id,
            client_secret: args.secret.client_secret,
            scope: args.scope,
            refresh_token: args.refresh_token.unwrap_or_default(),
            username: args.username.unwrap_or_default(),
            password,
            audience: args.audience,
            resource: Vec::new(),
            token_format: args.format.map(format_value).unwrap_or(0),
        })
        .await?
        .into_inner();
    let mut out = json!({
        "access_token": r.access_token,
        "token_type": r.token_type,
        "expires_in": r.expires_in,
        "scope": r.scope,
        "issued_token_type": r.issued_token_type,
    });
    if !r.refresh_token.is_empty() {
        out["refresh_token"] = Value::String(r.refresh_token);
    }
    if !r.biscuit.is_empty() {
        out["biscuit"] = Value::String(r.biscuit);
    }
    print(&out);
    Ok(())
}

pub async fn inspect(args: InspectArgs) -> Result<()> {
    let token = read_arg_or_stdin(&args.token)?;
    let view = writ_token::decode_unverified(&token)
        .map_err(|e| CliError::Invalid(format!("cannot decode the token: {e}")))?;
    let mut out = match view.format {
        TokenFormat::Jwt => {
            json!({ "format": "jwt", "header": view.header, "claims": view.claims })
        }
        TokenFormat::Biscuit => json!({
            "format": "biscuit",
            "root_key_id": view.root_key_id,
            "blocks": view.blocks,
        }),
    };
    if args.offline {
        out["verified"] = Value::Bool(false);
        print(&out);
        return Ok(());
    }
    // The authorization server's keys, and the STS's when it answers: each trusted only for
    // its own issuer (writ_token::TrustedIssuers), fetched from the URLs given here, never from
    // anything the token names.
    let authz = channel(&args.conn).await?;
    let mut trusted = vec![fetch_issuer(authz, false).await?];
    match channel_to(&args.sts, &args.conn).await {
        Ok(sts) => trusted.push(fetch_issuer(sts, true).await?),
        Err(e) => {
            eprintln!("note: the STS is not reachable, its tokens are not trusted here ({e})")
        }
    }
    let verifier = writ_token::TrustedIssuers::new(
        trusted,
        VerifierConfig::new(Vec::new(), args.audience),
        writ_token::system_clock(),
    );
    match verifier.verify(&token, None) {
        Ok(v) => {
            out["verified"] = Value::Bool(true);
            out["issuer"] = Value::String(v.claims.iss);
            out["effective_scope"] = Value::String(v.claims.scope);
            if !v.revocation_ids.is_empty() {
                out["revocation_ids"] = json!(v.revocation_ids);
            }
            print(&out);
            Ok(())
        }
        Err(e) => {
            out["verified"] = Value::Bool(false);
            out["reason"] = Value::String(e.reason().to_owned());
            print(&out);
            Err(CliError::Invalid(format!("the token does not verify: {e}")))
        }
    }
}

/// An issuer's name and published keys, from the authorization server's (or the STS's)
/// metadata and `GetJwks`.
async fn fetch_issuer(channel: Channel, sts: bool) -> Result<writ_token::TrustedIssuer> {
    use writ_proto::convert::PublishedKeys;
    let (issuer, published): (String, PublishedKeys) = if sts {
        let mut c = SecurityTokenServiceClient::new(channel);
        let meta = c
            .get_server_metadata(writ_proto::sts::GetServerMetadataRequest {})
            .await?;
        let keys = c.get_jwks(writ_proto::sts::GetJwksRequest {}).await?;
        (meta.into_inner().issuer, keys.into_inner().into())
    } else {
        let mut c = AuthorizationServiceClient::new(channel);
        let meta = c
            .get_server_metadata(authz::GetServerMetadataRequest {})
            .await?;
        let keys = c.get_jwks(authz::GetJwksRequest {}).await?;
        (meta.into_inner().issuer, keys.into_inner().into())
    };
    let keys = published
        .key_set()
        .map_err(|e| CliError::Invalid(format!("{issuer} published an unusable key: {e}")))?;
    Ok(writ_token::TrustedIssuer::new(
        issuer,
        std::sync::Arc::new(writ_token::FixedKeys::new(keys)),
    ))
}

pub fn attenuate(args: AttenuateArgs) -> Result<()> {
    let token = read_arg_or_stdin(&args.token)?;
    let split = |v: Vec<String>| -> Option<Vec<String>> {
        let items: Vec<String> = v
            .iter()
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (!items.is_empty()).then_some(items)
    };
    let attenuation = Attenuation {
        scopes: split(args.scopes),
        methods: split(args.methods),
        services: split(args.services),
        expires_at: args
            .ttl
            .map(|t| writ_token::system_clock().now() + t.max(0)),
    };
    let narrowed = writ_token::attenuate(&token, &attenuation)
        .map_err(|e| CliError::Invalid(format!("cannot attenuate: {e}")))?;
    println!("{narrowed}");
    Ok(())
}

fn admin_credential(conn: &AdminConn) -> Result<String> {
    if let Some(t) = &conn.admin.admin_token {
        return Ok(t.trim().to_owned());
    }
    let path = conn.conn.files.data_dir.join(ADMIN_TOKEN_FILE);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| {
            CliError::Invalid(format!(
                "no admin credential: pass --admin-token or --data-dir ({}: {e})",
                path.display()
            ))
        })
}

fn client_json(c: &pb_admin::Client) -> Value {
    let formats: Vec<&str> = c
        .token_formats
        .iter()
        .map(|f| match common::TokenFormat::try_from(*f) {
            Ok(common::TokenFormat::Jwt) => "jwt",
            Ok(common::TokenFormat::Biscuit) => "biscuit",
            Ok(common::TokenFormat::JwtAndBiscuit) => "jwt+biscuit",
            _ => "unknown",
        })
        .collect();
    json!({
        "client_id": c.client_id,
        "client_name": c.client_name,
        "client_type": if c.client_type == pb_admin::ClientType::Public as i32 { "public" } else { "confidential" },
        "grant_types": c.grant_types,
        "scope": c.scope,
        "audience": c.audience,
        "access_token_lifetime": c.access_token_lifetime,
        "refresh_token_lifetime": c.refresh_token_lifetime,
        "token_formats": formats,
        "may_introspect": c.may_introspect,
        "disabled": c.disabled,
    })
}

type AdminClient =
    AdminServiceClient<tonic::service::interceptor::InterceptedService<Channel, StaticBearer>>;

/// An admin client presenting the admin credential on every call.
async fn admin_client(conn: &AdminConn) -> Result<AdminClient> {
    let bearer = StaticBearer::new(&admin_credential(conn)?)
        .map_err(|_| CliError::Invalid("the admin credential has invalid characters".into()))?;
    let channel = channel(&conn.conn).await?;
    Ok(AdminServiceClient::with_interceptor(channel, bearer))
}

pub async fn admin(command: AdminCommand, conn: AdminConn) -> Result<()> {
    let mut admin = admin_client(&conn).await?;
    match command {
        AdminCommand::Client { command } => match command {
            ClientCommand::Create(c) => {
                let grants = if c.grants.is_empty() {
                    vec![grant_type::CLIENT_CREDENTIALS.to_owned()]
                } else {
                    c.grants
                        .into_iter()
                        .map(|g| grant_name(g).to_owned())
                        .collect()
                };
                let spec = pb_admin::Client {
                    client_id: c.id.unwrap_or_default(),
                    client_name: c.name,
                    client_type: if c.public {
                        pb_admin::ClientType::Public as i32
                    } else {
                        pb_admin::ClientType::Confidential as i32
                    },
                    grant_types: grants,
                    scope: c.scopes.join(" "),
                    audience: c.audiences,
                    access_token_lifetime: c.access_token_lifetime.unwrap_or(0),
                    refresh_token_lifetime: c.refresh_token_lifetime.unwrap_or(0),
                    token_formats: c.formats.into_iter().map(format_value).collect(),
                    default_token_format: 0,
                    may_introspect: c.may_introspect,
                    disabled: false,
                    create_time: None,
                };
                let r = admin
                    .create_client(pb_admin::CreateClientRequest { client: Some(spec) })
                    .await?
                    .into_inner();
                let mut out = r.client.as_ref().map(client_json).unwrap_or(Value::Null);
                if !r.client_secret.is_empty() {
                    out["client_secret"] = Value::String(r.client_secret);
                }
                print(&out);
            }
            ClientCommand::Get { client_id } => {
                let r = admin
                    .get_client(pb_admin::GetClientRequest { client_id })
                    .await?
                    .into_inner();
                print(&r.client.as_ref().map(client_json).unwrap_or(Value::Null));
            }
            ClientCommand::List => {
                let mut all = Vec::new();
                let mut page_token = String::new();
                // Bounded: at most 1000 pages of 1000.
                for _ in 0..1000 {
                    let r = admin
                        .list_clients(pb_admin::ListClientsRequest {
                            page_size: 1000,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    all.extend(r.clients.iter().map(client_json));
                    if r.next_page_token.is_empty() {
                        break;
                    }
                    page_token = r.next_page_token;
                }
                print(&Value::Array(all));
            }
            ClientCommand::Delete { client_id } => {
                admin
                    .delete_client(pb_admin::DeleteClientRequest {
                        client_id: client_id.clone(),
                    })
                    .await?;
                print(&json!({ "deleted": client_id }));
            }
            ClientCommand::RotateSecret { client_id } => {
                let r = admin
                    .rotate_client_secret(pb_admin::RotateClientSecretRequest {
                        client_id: client_id.clone(),
                    })
                    .await?
                    .into_inner();
                print(&json!({ "client_id": client_id, "client_secret": r.client_secret }));
            }
            ClientCommand::SetDisabled {
                client_id,
                disabled,
            } => {
                let r = admin
                    .update_client(pb_admin::UpdateClientRequest {
                        client: Some(pb_admin::Client {
                            client_id,
                            disabled,
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["disabled".into()],
                        }),
                    })
                    .await?
                    .into_inner();
                print(&r.client.as_ref().map(client_json).unwrap_or(Value::Null));
            }
        },
        AdminCommand::User { command } => match command {
            UserCommand::Create {
                username,
                password,
                scope,
            } => {
                let password = match password {
                    Some(p) => p,
                    None => read_stdin_line("the password")?,
                };
                let r = admin
                    .create_user(pb_admin::CreateUserRequest {
                        username,
                        password,
                        scope,
                    })
                    .await?
                    .into_inner();
                let u = r.user.unwrap_or_default();
                print(&json!({ "username": u.username, "subject": u.subject, "scope": u.scope }));
            }
            UserCommand::Delete { username } => {
                admin
                    .delete_user(pb_admin::DeleteUserRequest {
                        username: username.clone(),
                    })
                    .await?;
                print(&json!({ "deleted": username }));
            }
            UserCommand::SetPassword { username } => {
                let password = read_stdin_line("the password")?;
                admin
                    .set_user_password(pb_admin::SetUserPasswordRequest {
                        username: username.clone(),
                        password,
                    })
                    .await?;
                print(&json!({ "username": username, "password": "set" }));
            }
        },
        AdminCommand::Policy { command } => policy(&mut admin, command).await?,
        AdminCommand::Key { command } => match command {
            KeyCommand::List => {
                let r = admin
                    .list_signing_keys(pb_admin::ListSigningKeysRequest {})
                    .await?
                    .into_inner();
                print(&Value::Array(r.keys.iter().map(key_json).collect()));
            }
            KeyCommand::Rotate { purpose, alg } => {
                let purpose = match purpose {
                    KeyPurposeArg::Jwt => pb_admin::KeyPurpose::Jwt,
                    KeyPurposeArg::Biscuit => pb_admin::KeyPurpose::Biscuit,
                } as i32;
                let r = admin
                    .rotate_signing_key(pb_admin::RotateSigningKeyRequest {
                        purpose,
                        alg: alg.unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                print(&r.key.as_ref().map(key_json).unwrap_or(Value::Null));
            }
        },
    }
    Ok(())
}

fn policy_json(p: &pb_admin::ExchangePolicy) -> Value {
    json!({
        "policy_id": p.policy_id,
        "client_id": p.client_id,
        "audience": p.audience,
        "scope": p.scope,
        "max_lifetime": p.max_lifetime,
        "allow_impersonation": p.allow_impersonation,
        "max_chain_depth": p.max_chain_depth,
    })
}

async fn policy(admin: &mut AdminClient, command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Create(p) => {
            let spec = pb_admin::ExchangePolicy {
                policy_id: p.id.unwrap_or_default(),
                client_id: p.client_id,
                audience: p.audiences,
                scope: p.scopes.join(" "),
                max_lifetime: p.max_lifetime.unwrap_or(0),
                allow_impersonation: p.allow_impersonation,
                max_chain_depth: p.max_chain_depth.unwrap_or(0),
            };
            let r = admin
                .create_exchange_policy(pb_admin::CreateExchangePolicyRequest {
                    policy: Some(spec),
                })
                .await?
                .into_inner();
            print(&r.policy.as_ref().map(policy_json).unwrap_or(Value::Null));
        }
        PolicyCommand::Get { policy_id } => {
            let r = admin
                .get_exchange_policy(pb_admin::GetExchangePolicyRequest { policy_id })
                .await?
                .into_inner();
            print(&r.policy.as_ref().map(policy_json).unwrap_or(Value::Null));
        }
        PolicyCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            // Bounded: at most 1000 pages of 1000.
            for _ in 0..1000 {
                let r = admin
                    .list_exchange_policies(pb_admin::ListExchangePoliciesRequest {
                        page_size: 1000,
                        page_token,
                        client_id: String::new(),
                    })
                    .await?
                    .into_inner();
                all.extend(r.policies.iter().map(policy_json));
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            print(&Value::Array(all));
        }
        PolicyCommand::Delete { policy_id } => {
            admin
                .delete_exchange_policy(pb_admin::DeleteExchangePolicyRequest {
                    policy_id: policy_id.clone(),
                })
                .await?;
            print(&json!({ "deleted": policy_id }));
        }
    }
    Ok(())
}

fn token_type_uri(t: TokenTypeArg) -> &'static str {
    match t {
        TokenTypeArg::Jwt => token_type::JWT,
        TokenTypeArg::AccessToken => token_type::ACCESS_TOKEN,
        TokenTypeArg::Biscuit => token_type::BISCUIT,
    }
}

/// The type a token's shape says it is: a JWT has dots, a Biscuit none.
fn type_by_shape(token: &str) -> TokenTypeArg {
    match TokenFormat::detect(token) {
        TokenFormat::Jwt => TokenTypeArg::Jwt,
        TokenFormat::Biscuit => TokenTypeArg::Biscuit,
    }
}

pub async fn exchange(args: ExchangeArgs) -> Result<()> {
    let subject = read_arg_or_stdin(&args.subject_token)?;
    let subject_type = args
        .subject_token_type
        .unwrap_or_else(|| type_by_shape(&subject));
    // The server refuses a type without a token (or the reverse): passed on as given.
    let (actor_token, actor_type) = match args.actor_token {
        Some(t) => {
            let t = t.trim().to_owned();
            let ty = args.actor_token_type.unwrap_or_else(|| type_by_shape(&t));
            (t, token_type_uri(ty).to_owned())
        }
        None => (
            String::new(),
            args.actor_token_type
                .map(|t| token_type_uri(t).to_owned())
                .unwrap_or_default(),
        ),
    };
    let conn = Conn {
        server: args.sts.clone(),
        files: args.files,
    };
    let mut sts = SecurityTokenServiceClient::new(channel_to(&args.sts, &conn).await?);
    let r = sts
        .exchange(writ_proto::sts::ExchangeRequest {
            grant_type: grant_type::TOKEN_EXCHANGE.into(),
            client_id: args.client_id,
            client_secret: args.secret.client_secret,
            audience: args.audiences,
            resource: args.resources,
            scope: args.scope,
            requested_token_type: token_type_uri(args.requested_token_type).into(),
            subject_token: subject,
            subject_token_type: token_type_uri(subject_type).into(),
            actor_token,
            actor_token_type: actor_type,
        })
        .await?
        .into_inner();
    print(&json!({
        "access_token": r.access_token,
        "issued_token_type": r.issued_token_type,
        "token_type": r.token_type,
        "expires_in": r.expires_in,
        "scope": r.scope,
    }));
    Ok(())
}

fn key_json(k: &pb_admin::SigningKey) -> Value {
    json!({
        "kid": k.kid,
        "purpose": if k.purpose == pb_admin::KeyPurpose::Biscuit as i32 { "biscuit" } else { "jwt" },
        "alg": k.alg,
        "status": if k.status == pb_admin::KeyStatus::Active as i32 { "active" } else { "retired" },
        "create_time": k.create_time.as_ref().map(|t| t.seconds),
        "expire_time": k.expire_time.as_ref().map(|t| t.seconds),
    })
}

pub async fn revoke(args: RevokeArgs) -> Result<()> {
    let kind = writ_token::RevocationKind::from_name(&args.kind)
        .ok_or_else(|| CliError::Invalid(format!("unknown kind {}", args.kind)))?;
    let now = writ_token::system_clock().now();
    let entry = writ_proto::revocation::RevocationEntry {
        kind: kind as i32,
        value: args.value.clone(),
        expires_at: now + args.expires_in,
        reason: args.reason,
        not_before: 0,
    };
    let mut admin = admin_client(&args.conn).await?;
    admin
        .revoke(pb_admin::RevokeRequest {
            entries: vec![entry],
        })
        .await?;
    print(&json!({ "revoked": { "kind": kind.name(), "value": args.value } }));
    Ok(())
}

pub async fn watch(args: WatchArgs) -> Result<()> {
    use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
    use writ_proto::revocation::{WatchRequest, watch_response::Event};
    let token: std::sync::Arc<str> = match (args.token, args.client_id) {
        (Some(t), _) => t.into(),
        (None, Some(client_id)) => {
            let credentials = ClientCredentials::new(client_id, args.secret.client_secret)
                .for_audience(REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE);
            TokenSource::new(channel(&args.conn).await?, credentials)
                .token()
                .await?
        }
        (None, None) => {
            return Err(CliError::Invalid(
                "pass --token, or --client-id and --client-secret".into(),
            ));
        }
    };
    let mut client =
        RevocationServiceClient::new(channel_to(&args.revocation_server, &args.conn).await?);
    let mut request = Request::new(WatchRequest {
        from_sequence: args.from,
    });
    let bearer = writ_client::bearer_value(&token)
        .map_err(|_| CliError::Invalid("the token has invalid characters".into()))?;
    request.metadata_mut().insert("authorization", bearer);
    let mut stream = client.watch(request).await?.into_inner();
    while let Some(message) = stream.message().await? {
        let line = match message.event {
            Some(Event::Revocation(ev)) => {
                let e = ev.entry.unwrap_or_default();
                json!({
                    "sequence": ev.sequence,
                    "kind": writ_token::RevocationKind::from_i32(e.kind).map(|k| k.name()).unwrap_or("unknown"),
                    "value": e.value,
                    "expires_at": e.expires_at,
                    "not_before": e.not_before,
                    "reason": e.reason,
                })
            }
            Some(Event::SnapshotBegin(b)) => {
                json!({ "snapshot_begin": b.sequence, "entries": b.entry_count })
            }
            Some(Event::SnapshotEnd(e)) => json!({ "snapshot_end": e.sequence }),
            Some(Event::Checkpoint(c)) => json!({ "checkpoint": c.sequence }),
            None => continue,
        };
        println!("{line}");
        if args.until_caught_up && line.get("checkpoint").is_some() {
            break;
        }
    }
    Ok(())
}
