//! `writ token`, `writ inspect`, `writ attenuate`: getting, verifying and narrowing tokens.

use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tonic::transport::Channel;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::sts::security_token_service_client::SecurityTokenServiceClient;
use writ_proto::{authz, common};
use writ_token::{Attenuation, TokenFormat, VerifierConfig};
use writ_vocabulary::grant_type;

use super::support::{
    CliError, Result, channel, channel_to, print, read_arg_or_stdin, read_stdin_line,
};
use super::{ClientSecret, Conn, PrivateKey};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Grant {
    #[value(name = "client_credentials")]
    ClientCredentials,
    /// For clients that sign people in through a browser (`writ admin client create`); the
    /// token command cannot use it.
    #[value(name = "authorization_code")]
    AuthorizationCode,
    /// The device grant (RFC 8628), for `writ login` and other command-line clients; the token
    /// command cannot use it.
    #[value(name = "device_code")]
    DeviceCode,
    #[value(name = "refresh_token")]
    RefreshToken,
    #[value(name = "password")]
    Password,
    /// A workload's platform token (RFC 7523 section 2.1) from --assertion-file.
    #[value(name = "jwt-bearer")]
    JwtBearer,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Jwt,
    Biscuit,
    #[value(name = "jwt+biscuit")]
    JwtAndBiscuit,
    /// An opaque reference token, which a gateway trades for the JWT.
    Reference,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[arg(long, value_enum, default_value = "client_credentials")]
    pub grant: Grant,
    #[arg(long, env = "WRIT_CLIENT_ID", allow_hyphen_values = true)]
    pub client_id: String,
    #[command(flatten)]
    pub secret: ClientSecret,
    /// Space-delimited scopes (default: all the client may get).
    #[arg(long, default_value = "")]
    pub scope: String,
    #[arg(long)]
    pub audience: Vec<String>,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// For --grant refresh_token.
    #[arg(
        long,
        env = "WRIT_REFRESH_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub refresh_token: Option<String>,
    /// For --grant password.
    #[arg(long)]
    pub username: Option<String>,
    /// For --grant password: read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// For --grant jwt-bearer: the file holding the workload's token (a Kubernetes projected
    /// service-account token, a SPIFFE JWT-SVID), read now.
    #[arg(long)]
    pub assertion_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub key: PrivateKey,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// A client registered for the device grant (urn:ietf:params:oauth:grant-type:device_code),
    /// usually public.
    #[arg(long, env = "WRIT_CLIENT_ID", allow_hyphen_values = true)]
    pub client_id: String,
    #[command(flatten)]
    pub secret: ClientSecret,
    /// Space-delimited scopes (by default `openid`: who signed in, and no more).
    #[arg(long, default_value = "openid")]
    pub scope: String,
    #[arg(long)]
    pub audience: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// The STS's gRPC URL: tokens it issued are verified against its published keys (skipped,
    /// with a note, when it is not reachable).
    #[arg(long, env = "WRIT_STS", default_value = "https://127.0.0.1:7410")]
    pub sts: String,
    /// The token (or "-" to read it from standard input).
    pub token: String,
    /// Also require this audience.
    #[arg(long)]
    pub audience: Option<String>,
    /// Only decode; do not contact the server or verify.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct AttenuateArgs {
    /// The Biscuit (or "-" to read it from standard input).
    pub token: String,
    /// Scopes the narrowed token keeps (repeatable).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// gRPC methods it may still call, as /package.Service/Method (repeatable).
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Services (audiences) it may still be presented to (repeatable).
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// Expire this many seconds from now (never later than the token already expires).
    #[arg(long)]
    pub ttl: Option<i64>,
}

pub(super) fn format_value(f: Format) -> i32 {
    match f {
        Format::Jwt => common::TokenFormat::Jwt as i32,
        Format::Biscuit => common::TokenFormat::Biscuit as i32,
        Format::JwtAndBiscuit => common::TokenFormat::JwtAndBiscuit as i32,
        Format::Reference => common::TokenFormat::Reference as i32,
    }
}

pub(super) fn grant_name(g: Grant) -> &'static str {
    match g {
        Grant::ClientCredentials => grant_type::CLIENT_CREDENTIALS,
        Grant::AuthorizationCode => grant_type::AUTHORIZATION_CODE,
        Grant::DeviceCode => grant_type::DEVICE_CODE,
        Grant::RefreshToken => grant_type::REFRESH_TOKEN,
        Grant::Password => grant_type::PASSWORD,
        Grant::JwtBearer => grant_type::JWT_BEARER,
    }
}

pub async fn token(args: TokenArgs) -> Result<()> {
    if args.grant == Grant::AuthorizationCode {
        return Err(CliError::Invalid(
            "authorization_code is redeemed by the client a browser was sent back to".into(),
        ));
    }
    if args.grant == Grant::DeviceCode {
        return Err(CliError::Invalid(
            "for the device grant, use writ login".into(),
        ));
    }
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
    let assertion = match (&args.assertion_file, args.grant == Grant::JwtBearer) {
        (Some(f), true) => super::support::read_text(f)?.trim().to_owned(),
        (None, true) => {
            return Err(CliError::Invalid(
                "--grant jwt-bearer needs --assertion-file".into(),
            ));
        }
        (Some(_), false) => {
            return Err(CliError::Invalid(
                "--assertion-file is for --grant jwt-bearer".into(),
            ));
        }
        (None, false) => String::new(),
    };
    let mut client = AuthorizationServiceClient::new(channel(&args.conn).await?);
    // The assertion's audience is the server's issuer identifier, from its metadata.
    let mut metadata = client.clone();
    let (client_assertion_type, client_assertion) = args
        .key
        .assertion(&args.client_id, &args.secret, async move {
            Ok(metadata
                .get_server_metadata(authz::GetServerMetadataRequest {})
                .await?
                .into_inner()
                .issuer)
        })
        .await?;
    let r = client
        .token(authz::TokenRequest {
            grant_type: grant_name(args.grant).to_owned(),
            client_id: args.client_id,
            client_secret: args.secret.client_secret,
            client_assertion_type,
            client_assertion,
            scope: args.scope,
            refresh_token: args.refresh_token.unwrap_or_default(),
            username: args.username.unwrap_or_default(),
            password,
            audience: args.audience,
            resource: Vec::new(),
            token_format: args.format.map(format_value).unwrap_or(0),
            assertion,
            ..Default::default()
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

/// `writ login`: RFC 8628 from the device's side. The link and code go to standard error (for
/// the person), the tokens to standard output (for a script). Waits no longer than the device
/// code lives, polling at the server's interval (longer after a `slow_down`).
pub async fn login(args: LoginArgs) -> Result<()> {
    let mut client = AuthorizationServiceClient::new(channel(&args.conn).await?);
    let d = client
        .device_authorization(authz::DeviceAuthorizationRequest {
            client_id: args.client_id.clone(),
            client_secret: args.secret.client_secret.clone(),
            scope: args.scope,
            audience: args.audience,
            resource: Vec::new(),
            ..Default::default()
        })
        .await?
        .into_inner();
    eprintln!(
        "To sign in, open {}\nand check that it shows the code {} (or open {} and enter it).",
        d.verification_uri_complete, d.user_code, d.verification_uri
    );
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_secs(d.expires_in.clamp(1, 3600) as u64);
    let mut interval = d.interval.clamp(1, 60);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(interval as u64)).await;
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Invalid(
                "the code expired before it was confirmed; run writ login again".into(),
            ));
        }
        let answer = client
            .token(authz::TokenRequest {
                grant_type: grant_type::DEVICE_CODE.to_owned(),
                client_id: args.client_id.clone(),
                client_secret: args.secret.client_secret.clone(),
                device_code: d.device_code.clone(),
                ..Default::default()
            })
            .await;
        let r = match answer {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let reason = tonic_types::StatusExt::get_error_details(&status)
                    .error_info()
                    .map(|i| i.reason.clone())
                    .unwrap_or_default();
                match reason.as_str() {
                    "authorization_pending" => continue,
                    "slow_down" => {
                        interval += 5;
                        continue;
                    }
                    _ => return Err(status.into()),
                }
            }
        };
        let mut out = json!({
            "access_token": r.access_token,
            "token_type": r.token_type,
            "expires_in": r.expires_in,
            "scope": r.scope,
        });
        if !r.refresh_token.is_empty() {
            out["refresh_token"] = Value::String(r.refresh_token);
        }
        if !r.id_token.is_empty() {
            out["id_token"] = Value::String(r.id_token);
        }
        print(&out);
        return Ok(());
    }
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
    let sts = match channel_to(&args.sts, &args.conn).await {
        Ok(channel) => fetch_issuer(channel, true).await,
        Err(e) => Err(e),
    };
    match sts {
        Ok(issuer) => trusted.push(issuer),
        Err(e) => {
            eprintln!("note: the STS did not answer, its tokens are not trusted here ({e})")
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
