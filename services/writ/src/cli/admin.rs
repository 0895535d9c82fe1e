//! `writ admin`: clients, users, signing keys, exchange policies and trusted workload issuers,
//! through the admin API.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tonic::transport::Channel;
use writ_client::StaticBearer;
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::{self as pb_admin};
use writ_proto::common;
use writ_vocabulary::grant_type;

use super::AdminConn;

/// Most pages a listing follows (of 1,000 entries: a billion).
const MAX_PAGES: usize = 1_000_000;
use super::support::{
    ArrayPrinter, CliError, Result, admin_credential, channel_to, print, read_stdin_line, read_text,
};
use super::token::{Format, Grant, format_value, grant_name};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Clients: create, get, list, delete, rotate-secret.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Users (resource owners) for the password grant.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Signing keys: list, rotate.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Token exchange policies: which client may exchange tokens for which audiences.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Trusted workload identity issuers (Kubernetes service-account tokens, SPIFFE JWT-SVIDs)
    /// and which of their subjects get tokens as which client (the jwt-bearer grant).
    Workload {
        #[command(subcommand)]
        command: WorkloadCommand,
    },
    /// The admin credential itself.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Replace the admin credential: the old one stops working at once. The new one replaces
    /// <data-dir>/admin.token when that is where the old one was read from; otherwise it is
    /// printed (once).
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Allow a client to exchange tokens for some audiences.
    Create(PolicyCreate),
    Get {
        #[arg(allow_hyphen_values = true)]
        policy_id: String,
    },
    List,
    Delete {
        #[arg(allow_hyphen_values = true)]
        policy_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Trust an issuer's tokens (no subject gets anything until `allow` names it).
    Create(WorkloadIssuerArgs),
    /// Change an issuer's keys, audience, lifetime or single use: what is not given stays (its
    /// policies too).
    Update(WorkloadIssuerArgs),
    Get {
        issuer: String,
    },
    List,
    /// Stop trusting an issuer (with its policies).
    Delete {
        issuer: String,
    },
    /// Let subjects of an issuer get tokens as a client.
    Allow(WorkloadAllow),
    /// Remove one of an issuer's policies.
    Disallow {
        issuer: String,
        #[arg(allow_hyphen_values = true)]
        policy_id: String,
    },
}

#[derive(Debug, Args)]
pub struct WorkloadIssuerArgs {
    /// The tokens' `iss` (for Kubernetes: `kubectl get --raw /.well-known/openid-configuration`
    /// shows it).
    #[arg(long)]
    pub issuer: String,
    /// Its public keys, a JWK Set file (for Kubernetes: `kubectl get --raw /openid/v1/jwks`).
    #[arg(long)]
    pub jwks_file: Option<std::path::PathBuf>,
    /// Or where it publishes them (https).
    #[arg(long, conflicts_with = "jwks_file")]
    pub jwks_uri: Option<String>,
    /// What the tokens' `aud` must contain (default: this server's issuer identifier; for
    /// Kubernetes, the audience of the pod's projected token, such as `writ`).
    #[arg(long)]
    pub audience: Option<String>,
    /// Latest expiry accepted, in seconds from now (default 3600, at most 86400).
    #[arg(long)]
    pub max_token_lifetime: Option<i64>,
    /// Each token must carry a `jti` and is accepted once (not for Kubernetes' projected
    /// tokens, which a pod presents again until they are refreshed): `--single-use` or
    /// `--single-use false`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub single_use: Option<bool>,
}

#[derive(Debug, Args)]
pub struct WorkloadAllow {
    pub issuer: String,
    /// The tokens' `sub`, exactly, or a prefix ending in `*` (`system:serviceaccount:prod:*`).
    #[arg(long)]
    pub subject: String,
    /// The client the tokens are issued to (it must allow the jwt-bearer grant).
    #[arg(long, allow_hyphen_values = true)]
    pub client_id: String,
    /// Scopes at most (repeatable, or space-delimited; default: the client's).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Audiences allowed (repeatable; default: the client's).
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// The policy_id (default: generated).
    #[arg(long, allow_hyphen_values = true)]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyCreate {
    /// The policy_id (default: generated).
    #[arg(long, allow_hyphen_values = true)]
    pub id: Option<String>,
    /// The client allowed to exchange under this policy.
    #[arg(long, allow_hyphen_values = true)]
    pub client_id: String,
    /// Audiences the exchanged tokens may name (repeatable; at least one).
    #[arg(long = "audience", required = true)]
    pub audiences: Vec<String>,
    /// Scopes the exchanged tokens may carry at most (repeatable, or space-delimited; default: no
    /// limit beyond the subject token's).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Longest lifetime of exchanged tokens, in seconds (default: the STS's, 300).
    #[arg(long)]
    pub max_lifetime: Option<i64>,
    /// Exchanges without an actor token impersonate the subject (no `act`) instead of recording
    /// the client as the actor.
    #[arg(long)]
    pub allow_impersonation: bool,
    /// Longest delegation chain (`act` nesting) an exchanged token may carry (default: 4).
    #[arg(long)]
    pub max_chain_depth: Option<i32>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client. Prints it with its secret, shown this once.
    Create(Box<ClientCreate>),
    Get {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    List,
    Delete {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Replace a confidential client's secret.
    RotateSecret {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// How long the previous secret keeps working beside the new one, in seconds (0: it
        /// stops at once; at most 604800).
        #[arg(long, default_value_t = 0)]
        grace: i64,
    },
    /// Replace the public keys of a client that authenticates with private_key_jwt (list the
    /// old key beside the new one while the client switches).
    SetKeys {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// A JWK Set file (`writ admin client keygen` prints one).
        #[arg(long)]
        jwks_file: std::path::PathBuf,
    },
    /// Generate a key pair for private_key_jwt: writes the private key (PKCS#8 PEM, mode 0600)
    /// to --out and prints the public JWK Set to register with --jwks-file.
    Keygen {
        /// The key id the client's assertions name.
        #[arg(long)]
        kid: String,
        #[arg(long, value_enum, default_value = "eddsa")]
        alg: KeyAlg,
        /// Where the private key goes (refused if it exists).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print the public JWK Set of a PKCS#8 PEM private key (Ed25519 or P-256), e.g. one made
    /// with openssl, to register with --jwks-file.
    Jwks {
        #[arg(long)]
        kid: String,
        #[arg(long)]
        key_file: std::path::PathBuf,
    },
    /// Enable or disable a client.
    SetDisabled {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[arg(action = clap::ArgAction::Set)]
        disabled: bool,
    },
}

#[derive(Debug, Args)]
pub struct ClientCreate {
    /// The client_id (default: generated).
    #[arg(long, allow_hyphen_values = true)]
    pub id: Option<String>,
    #[arg(long, default_value = "")]
    pub name: String,
    /// A public client (no secret; never client_credentials).
    #[arg(long)]
    pub public: bool,
    /// Grant types (repeatable; default: client_credentials).
    #[arg(long = "grant", value_enum)]
    pub grants: Vec<Grant>,
    /// Scopes the client may get (repeatable, or space-delimited).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Audiences the client may ask for (repeatable; the first is the default).
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// Token formats allowed (repeatable; the first is what the client gets when it asks for
    /// none; default: jwt). `reference`: opaque tokens a gateway trades for the JWT.
    #[arg(long = "format", value_enum)]
    pub formats: Vec<Format>,
    /// Where authorization responses may be sent (repeatable; needed by --grant
    /// authorization_code): compared exactly.
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// Where the browser may return after signing out (repeatable): compared exactly.
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Where a logout token is POSTed when a session that signed in to the client ends
    /// (OpenID Connect Back-Channel Logout).
    #[arg(long)]
    pub backchannel_logout_uri: Option<String>,
    #[arg(long)]
    pub access_token_lifetime: Option<i64>,
    #[arg(long)]
    pub refresh_token_lifetime: Option<i64>,
    /// May introspect tokens of other clients (a resource server).
    #[arg(long)]
    pub may_introspect: bool,
    /// Authenticate with private_key_jwt (RFC 7523) against the public keys in this JWK Set
    /// file, instead of a secret (none is issued).
    #[arg(long, conflicts_with = "public")]
    pub jwks_file: Option<std::path::PathBuf>,
    /// Authenticate with private_key_jwt against the JWK Set the client publishes at this https
    /// URL (fetched by the server when needed) instead of a secret.
    #[arg(long, conflicts_with_all = ["public", "jwks_file"])]
    pub jwks_uri: Option<String>,
    /// Authenticate with the TLS client certificate in this PEM file (RFC 8705
    /// self_signed_tls_client_auth; repeatable, each file's first certificate) instead of a
    /// secret: the gRPC endpoints take it.
    #[arg(long = "tls-client-certificate", conflicts_with_all = ["public", "jwks_file", "jwks_uri"])]
    pub tls_client_certificates: Vec<std::path::PathBuf>,
    /// Bind the client's access tokens to the TLS client certificate it presents (RFC 8705
    /// `cnf.x5t#S256`): guards take them only over a connection presenting it.
    #[arg(long, conflicts_with = "public")]
    pub certificate_bound: bool,
    /// Require a DPoP proof with every token request (RFC 9449 dpop_bound_access_tokens): its
    /// access tokens, and a public client's refresh tokens, are bound to the proven key.
    #[arg(long)]
    pub dpop_bound: bool,
    /// Authenticate with a certificate from a CA the server trusts for clients
    /// (--tls-client-ca) whose subject alternative names include this URI (RFC 8705
    /// tls_client_auth; a SPIFFE ID, say) instead of a secret.
    #[arg(long, conflicts_with_all = ["public", "jwks_file", "jwks_uri", "tls_client_certificates", "tls_client_auth_san_dns"])]
    pub tls_client_auth_san_uri: Option<String>,
    /// The same, with this DNS name.
    #[arg(long, conflicts_with_all = ["public", "jwks_file", "jwks_uri", "tls_client_certificates"])]
    pub tls_client_auth_san_dns: Option<String>,
    /// The same, by the certificate's subject (an RFC 4514 string: "CN=orders,O=Shop").
    #[arg(long, conflicts_with_all = ["public", "jwks_file", "jwks_uri", "tls_client_certificates", "tls_client_auth_san_uri", "tls_client_auth_san_dns"])]
    pub tls_client_auth_subject_dn: Option<String>,
}

/// Algorithms of a client's private_key_jwt key.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyAlg {
    /// Ed25519.
    Eddsa,
    /// ECDSA on P-256.
    Es256,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input unless --password is given.
    Create {
        username: String,
        #[arg(long, hide = true, env = "WRIT_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long, default_value = "")]
        scope: String,
    },
    Delete {
        username: String,
    },
    /// Set a user's password, read from standard input (every session of theirs ends).
    SetPassword {
        username: String,
    },
    /// List a person's live sign-in sessions, newest first.
    Sessions {
        username: String,
    },
    /// End a person's session (--sid) or every one of them (--all): their grants are revoked
    /// through the revocation feed and their clients sent back-channel logout tokens.
    EndSessions {
        username: String,
        #[arg(
            long,
            required_unless_present = "all",
            conflicts_with = "all",
            value_parser = clap::builder::NonEmptyStringValueParser::new(),
            allow_hyphen_values = true
        )]
        sid: Option<String>,
        /// Every session of the person (said explicitly: an empty --sid is refused).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    List,
    /// Make a new signing key active; the old one stays published until its tokens expire.
    Rotate {
        #[arg(long, value_enum, default_value = "jwt")]
        purpose: KeyPurposeArg,
        /// EdDSA or ES256 (JWT keys only).
        #[arg(long)]
        alg: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyPurposeArg {
    Jwt,
    Biscuit,
}

fn client_json(c: &pb_admin::Client) -> Value {
    let formats: Vec<&str> = c
        .token_formats
        .iter()
        .map(|f| match common::TokenFormat::try_from(*f) {
            Ok(common::TokenFormat::Jwt) => "jwt",
            Ok(common::TokenFormat::Biscuit) => "biscuit",
            Ok(common::TokenFormat::JwtAndBiscuit) => "jwt+biscuit",
            Ok(common::TokenFormat::Reference) => "reference",
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
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "token_endpoint_auth_method": c.token_endpoint_auth_method,
        "jwks": serde_json::from_str::<Value>(&c.jwks).unwrap_or(Value::Null),
        "jwks_uri": c.jwks_uri,
        "tls_client_certificate_bound_access_tokens": c.tls_client_certificate_bound_access_tokens,
        "dpop_bound_access_tokens": c.dpop_bound_access_tokens,
    })
}

/// The JWK Set registering TLS client certificates (RFC 8705 section 2.2.2): one key per
/// certificate in the PEM files, its `x5c` that certificate (base64 DER).
fn certificates_jwks(files: &[std::path::PathBuf]) -> Result<String> {
    use base64::Engine as _;
    let mut keys = Vec::new();
    for path in files {
        let pem = read_text(path)?;
        let certs = writ_tls::certificates_der(&pem)
            .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(CliError::Invalid(format!(
                "{}: no certificate",
                path.display()
            )));
        }
        // The leaf alone: the server compares it with the connection's.
        keys.push(serde_json::json!({
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&certs[0])]
        }));
    }
    Ok(serde_json::json!({ "keys": keys }).to_string())
}

/// `writ admin client keygen` and `jwks`: local, no server involved.
pub fn client_keys(command: &ClientCommand) -> Option<Result<()>> {
    let public_set =
        |key: &writ_token::SigningKey| json!({ "keys": [key.verification_key().to_jwk()] });
    match command {
        ClientCommand::Keygen { kid, alg, out } => Some((|| {
            let alg = match alg {
                KeyAlg::Eddsa => writ_token::Algorithm::EdDSA,
                KeyAlg::Es256 => writ_token::Algorithm::ES256,
            };
            let key = writ_token::SigningKey::generate(alg, kid.clone())
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            let pem = key
                .to_pkcs8_pem()
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            write_private(out, pem.as_bytes())?;
            print(&public_set(&key));
            Ok(())
        })()),
        ClientCommand::Jwks { kid, key_file } => Some((|| {
            let pem = zeroize::Zeroizing::new(read_text(key_file)?);
            let key = writ_token::SigningKey::from_pkcs8_pem(kid.clone(), &pem)
                .map_err(|e| CliError::Invalid(format!("{}: {e}", key_file.display())))?;
            print(&public_set(&key));
            Ok(())
        })()),
        _ => None,
    }
}

/// Creates `path` (never overwrites), readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))
}

type AdminClient =
    AdminServiceClient<tonic::service::interceptor::InterceptedService<Channel, StaticBearer>>;

/// An admin client presenting the admin credential on every call.
pub(super) async fn admin_client(conn: &AdminConn) -> Result<AdminClient> {
    let bearer = StaticBearer::new(&admin_credential(conn)?)
        .map_err(|_| CliError::Invalid("the admin credential has invalid characters".into()))?;
    let channel = channel_to(&conn.admin_server, &conn.conn).await?;
    Ok(AdminServiceClient::with_interceptor(channel, bearer))
}

pub async fn admin(command: AdminCommand, conn: AdminConn) -> Result<()> {
    // Key generation is local: no server, no credential.
    if let AdminCommand::Client { command } = &command
        && let Some(done) = client_keys(command)
    {
        return done;
    }
    let mut admin = admin_client(&conn).await?;
    match command {
        AdminCommand::Client { command } => match command {
            ClientCommand::Create(c) => {
                let c = *c;
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
                    default_token_format: c.formats.first().map_or(0, |f| format_value(*f)),
                    token_formats: c.formats.into_iter().map(format_value).collect(),
                    may_introspect: c.may_introspect,
                    disabled: false,
                    create_time: None,
                    redirect_uris: c.redirect_uris,
                    post_logout_redirect_uris: c.post_logout_redirect_uris,
                    require_pushed_authorization_requests: false,
                    backchannel_logout_uri: c.backchannel_logout_uri.unwrap_or_default(),
                    token_endpoint_auth_method: if c.jwks_file.is_some() || c.jwks_uri.is_some() {
                        "private_key_jwt".into()
                    } else if !c.tls_client_certificates.is_empty() {
                        "self_signed_tls_client_auth".into()
                    } else if c.tls_client_auth_san_uri.is_some()
                        || c.tls_client_auth_san_dns.is_some()
                        || c.tls_client_auth_subject_dn.is_some()
                    {
                        "tls_client_auth".into()
                    } else {
                        String::new()
                    },
                    jwks: match &c.jwks_file {
                        Some(path) => read_text(path)?,
                        None if !c.tls_client_certificates.is_empty() => {
                            certificates_jwks(&c.tls_client_certificates)?
                        }
                        None => String::new(),
                    },
                    jwks_uri: c.jwks_uri.clone().unwrap_or_default(),
                    tls_client_certificate_bound_access_tokens: c.certificate_bound,
                    dpop_bound_access_tokens: c.dpop_bound,
                    tls_client_auth_san_uri: c.tls_client_auth_san_uri.clone().unwrap_or_default(),
                    tls_client_auth_san_dns: c.tls_client_auth_san_dns.clone().unwrap_or_default(),
                    tls_client_auth_san_ip: String::new(),
                    tls_client_auth_san_email: String::new(),
                    tls_client_auth_subject_dn: c
                        .tls_client_auth_subject_dn
                        .clone()
                        .unwrap_or_default(),
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
                let mut out = ArrayPrinter::new();
                let mut page_token = String::new();
                // Page by page, printed as it comes: one page in memory, never the whole list.
                for _ in 0..MAX_PAGES {
                    let previous = page_token.clone();
                    let r = admin
                        .list_clients(pb_admin::ListClientsRequest {
                            page_size: 1000,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    for c in &r.clients {
                        out.push(&client_json(c))?;
                    }
                    // Every page moves on: a server repeating itself is not followed.
                    if r.next_page_token.is_empty()
                        || r.clients.is_empty()
                        || r.next_page_token == previous
                    {
                        break;
                    }
                    page_token = r.next_page_token;
                }
                out.finish()?;
            }
            ClientCommand::Delete { client_id } => {
                admin
                    .delete_client(pb_admin::DeleteClientRequest {
                        client_id: client_id.clone(),
                    })
                    .await?;
                print(&json!({ "deleted": client_id }));
            }
            ClientCommand::RotateSecret { client_id, grace } => {
                let r = admin
                    .rotate_client_secret(pb_admin::RotateClientSecretRequest {
                        client_id: client_id.clone(),
                        grace_seconds: grace,
                    })
                    .await?
                    .into_inner();
                print(&json!({ "client_id": client_id, "client_secret": r.client_secret }));
            }
            ClientCommand::SetKeys {
                client_id,
                jwks_file,
            } => {
                let r = admin
                    .update_client(pb_admin::UpdateClientRequest {
                        client: Some(pb_admin::Client {
                            client_id,
                            jwks: read_text(&jwks_file)?,
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["jwks".into()],
                        }),
                    })
                    .await?
                    .into_inner();
                print(&r.client.as_ref().map(client_json).unwrap_or(Value::Null));
            }
            local @ (ClientCommand::Keygen { .. } | ClientCommand::Jwks { .. }) => {
                client_keys(&local).unwrap_or(Ok(()))?
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
            UserCommand::Sessions { username } => {
                let r = admin
                    .list_user_sessions(pb_admin::ListUserSessionsRequest { username })
                    .await?
                    .into_inner();
                let seconds = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| t.seconds);
                let sessions: Vec<Value> = r
                    .sessions
                    .iter()
                    .map(|s| {
                        json!({
                            "sid": s.sid,
                            "auth_time": seconds(&s.auth_time),
                            "create_time": seconds(&s.create_time),
                            "expire_time": seconds(&s.expire_time),
                            "amr": s.amr,
                            "client_ids": s.client_ids,
                        })
                    })
                    .collect();
                print(&json!({ "sessions": sessions }));
            }
            UserCommand::EndSessions { username, sid, .. } => {
                // None only with --all (clap requires one of them; --sid is never empty).
                let sid = sid.unwrap_or_default();
                let r = admin
                    .end_user_sessions(pb_admin::EndUserSessionsRequest {
                        username: username.clone(),
                        sid,
                    })
                    .await?
                    .into_inner();
                print(&json!({ "username": username, "ended": r.ended }));
            }
        },
        AdminCommand::Policy { command } => policy(&mut admin, command).await?,
        AdminCommand::Workload { command } => workload(&mut admin, command).await?,
        AdminCommand::Credential {
            command: CredentialCommand::Rotate,
        } => {
            let new = admin
                .rotate_admin_credential(pb_admin::RotateAdminCredentialRequest {})
                .await?
                .into_inner()
                .admin_credential;
            if conn.admin.admin_token.is_none() {
                let dir = &conn.conn.files.data_dir;
                writ_tls::write(dir, crate::platform::ADMIN_TOKEN_FILE, &new, true).map_err(
                    |e| {
                        CliError::Invalid(format!(
                            "the credential was rotated but not saved ({e}); the new one is {new}"
                        ))
                    },
                )?;
                print(&json!({
                    "rotated": true,
                    "admin_token_file": dir.join(crate::platform::ADMIN_TOKEN_FILE).display().to_string(),
                }));
            } else {
                print(&json!({ "rotated": true, "admin_credential": new }));
            }
        }
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
            let mut out = ArrayPrinter::new();
            let mut page_token = String::new();
            // Page by page, printed as it comes: one page in memory, never the whole list.
            for _ in 0..MAX_PAGES {
                let previous = page_token.clone();
                let r = admin
                    .list_exchange_policies(pb_admin::ListExchangePoliciesRequest {
                        page_size: 1000,
                        page_token,
                        client_id: String::new(),
                    })
                    .await?
                    .into_inner();
                for p in &r.policies {
                    out.push(&policy_json(p))?;
                }
                // Every page moves on: a server repeating itself is not followed.
                if r.next_page_token.is_empty()
                    || r.policies.is_empty()
                    || r.next_page_token == previous
                {
                    break;
                }
                page_token = r.next_page_token;
            }
            out.finish()?;
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

fn workload_policy_json(p: &pb_admin::WorkloadPolicy) -> Value {
    json!({
        "policy_id": p.policy_id,
        "subject": p.subject,
        "client_id": p.client_id,
        "scope": p.scope,
        "audience": p.audience,
    })
}

/// An issuer as printed: key ids, never the whole key set.
fn workload_issuer_json(i: &pb_admin::WorkloadIssuer) -> Value {
    let kids: Vec<String> =
        writ_token::parse_jwk_set_for(&i.jwks, &writ_token::Algorithm::WORKLOAD)
            .map(|keys| keys.iter().map(|k| k.kid().to_owned()).collect())
            .unwrap_or_default();
    json!({
        "issuer": i.issuer,
        "kids": kids,
        "jwks_uri": i.jwks_uri,
        "audience": i.audience,
        "max_token_lifetime": i.max_token_lifetime,
        "single_use": i.single_use,
        "policies": i.policies.iter().map(workload_policy_json).collect::<Vec<_>>(),
        "create_time": i.create_time.as_ref().map(|t| t.seconds),
    })
}

/// `base` with what the arguments give (for a new issuer, `base` is empty).
fn workload_issuer_spec(
    mut base: pb_admin::WorkloadIssuer,
    a: WorkloadIssuerArgs,
) -> Result<pb_admin::WorkloadIssuer> {
    base.issuer = a.issuer;
    if let Some(f) = &a.jwks_file {
        base.jwks = read_text(f)?;
        base.jwks_uri.clear();
    }
    if let Some(uri) = a.jwks_uri {
        base.jwks_uri = uri;
        base.jwks.clear();
    }
    if let Some(audience) = a.audience {
        base.audience = audience;
    }
    if let Some(lifetime) = a.max_token_lifetime {
        base.max_token_lifetime = lifetime;
    }
    if let Some(single_use) = a.single_use {
        base.single_use = single_use;
    }
    Ok(base)
}

async fn workload(admin: &mut AdminClient, command: WorkloadCommand) -> Result<()> {
    let shown = |i: Option<pb_admin::WorkloadIssuer>| {
        print(&i.as_ref().map(workload_issuer_json).unwrap_or(Value::Null));
    };
    match command {
        WorkloadCommand::Create(a) => {
            let issuer = Some(workload_issuer_spec(Default::default(), a)?);
            let r = admin
                .create_workload_issuer(pb_admin::CreateWorkloadIssuerRequest { issuer })
                .await?;
            shown(r.into_inner().issuer);
        }
        WorkloadCommand::Update(a) => {
            // What is given, named in the mask: the server keeps the rest as it is when the
            // change commits (a concurrent update of another field is not lost).
            let mut paths: Vec<String> = Vec::new();
            if a.jwks_file.is_some() || a.jwks_uri.is_some() {
                paths.extend(["jwks".into(), "jwks_uri".into()]);
            }
            for (given, field) in [
                (a.audience.is_some(), "audience"),
                (a.max_token_lifetime.is_some(), "max_token_lifetime"),
                (a.single_use.is_some(), "single_use"),
            ] {
                if given {
                    paths.push(field.into());
                }
            }
            if paths.is_empty() {
                return Err(CliError::Invalid(
                    "nothing to update: give --jwks-file, --jwks-uri, --audience, \
                     --max-token-lifetime or --single-use"
                        .into(),
                ));
            }
            // The fields it does not name are sent as they are now, so a server that predates
            // the mask (and replaces them all) keeps them too.
            let current = admin
                .get_workload_issuer(pb_admin::GetWorkloadIssuerRequest {
                    issuer: a.issuer.clone(),
                })
                .await?
                .into_inner()
                .issuer
                .unwrap_or_default();
            let issuer = Some(workload_issuer_spec(current, a)?);
            let r = admin
                .update_workload_issuer(pb_admin::UpdateWorkloadIssuerRequest {
                    issuer,
                    update_mask: Some(prost_types::FieldMask { paths }),
                })
                .await?;
            shown(r.into_inner().issuer);
        }
        WorkloadCommand::Get { issuer } => {
            let r = admin
                .get_workload_issuer(pb_admin::GetWorkloadIssuerRequest { issuer })
                .await?;
            shown(r.into_inner().issuer);
        }
        WorkloadCommand::List => {
            let mut out = ArrayPrinter::new();
            let mut page_token = String::new();
            for _ in 0..MAX_PAGES {
                let previous = page_token.clone();
                let r = admin
                    .list_workload_issuers(pb_admin::ListWorkloadIssuersRequest {
                        page_size: 1000,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for i in &r.issuers {
                    out.push(&workload_issuer_json(i))?;
                }
                if r.next_page_token.is_empty()
                    || r.issuers.is_empty()
                    || r.next_page_token == previous
                {
                    break;
                }
                page_token = r.next_page_token;
            }
            out.finish()?;
        }
        WorkloadCommand::Delete { issuer } => {
            admin
                .delete_workload_issuer(pb_admin::DeleteWorkloadIssuerRequest {
                    issuer: issuer.clone(),
                })
                .await?;
            print(&json!({ "deleted": issuer }));
        }
        WorkloadCommand::Allow(a) => {
            let policy = pb_admin::WorkloadPolicy {
                policy_id: a.id.unwrap_or_default(),
                subject: a.subject,
                client_id: a.client_id,
                scope: a.scopes.join(" "),
                audience: a.audiences,
            };
            let r = admin
                .add_workload_policy(pb_admin::AddWorkloadPolicyRequest {
                    issuer: a.issuer,
                    policy: Some(policy),
                })
                .await?
                .into_inner();
            print(
                &r.policy
                    .as_ref()
                    .map(workload_policy_json)
                    .unwrap_or(Value::Null),
            );
        }
        WorkloadCommand::Disallow { issuer, policy_id } => {
            admin
                .remove_workload_policy(pb_admin::RemoveWorkloadPolicyRequest {
                    issuer,
                    policy_id: policy_id.clone(),
                })
                .await?;
            print(&json!({ "removed": policy_id }));
        }
    }
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
