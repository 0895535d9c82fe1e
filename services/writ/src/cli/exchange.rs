//! `writ exchange`: RFC 8693 token exchange at the STS.

use clap::{Args, ValueEnum};
use serde_json::json;
use writ_proto::sts::security_token_service_client::SecurityTokenServiceClient;
use writ_token::TokenFormat;
use writ_vocabulary::{grant_type, token_type};

use super::support::{Result, channel_to, print, read_arg_or_stdin};
use super::{ClientSecret, Conn, LocalFiles, PrivateKey};

/// The RFC 8693 token types, by short name.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TokenTypeArg {
    /// urn:ietf:params:oauth:token-type:jwt
    Jwt,
    /// urn:ietf:params:oauth:token-type:access_token
    #[value(name = "access_token")]
    AccessToken,
    /// urn:writ:params:oauth:token-type:biscuit
    Biscuit,
}

#[derive(Debug, Args)]
pub struct ExchangeArgs {
    /// The STS's gRPC URL.
    #[arg(long, env = "WRIT_STS", default_value = "https://127.0.0.1:7410")]
    pub sts: String,
    #[command(flatten)]
    pub files: LocalFiles,
    /// The calling client (the service exchanging a token it received).
    #[arg(long, env = "WRIT_CLIENT_ID", allow_hyphen_values = true)]
    pub client_id: String,
    #[command(flatten)]
    pub secret: ClientSecret,
    #[command(flatten)]
    pub key: PrivateKey,
    /// The token to exchange (or "-" to read it from standard input).
    #[arg(long, allow_hyphen_values = true)]
    pub subject_token: String,
    /// Its type (default: jwt or biscuit, by its shape).
    #[arg(long, value_enum)]
    pub subject_token_type: Option<TokenTypeArg>,
    /// Audiences of the new token (repeatable).
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// Resource indicators (RFC 8707) of the new token (repeatable).
    #[arg(long = "resource")]
    pub resources: Vec<String>,
    /// Space-delimited scopes (default: all the subject token has that the policy allows).
    #[arg(long, default_value = "")]
    pub scope: String,
    /// The new token's type.
    #[arg(long, value_enum, default_value = "jwt")]
    pub requested_token_type: TokenTypeArg,
    /// A token naming the actor to record in `act` (issued to the calling client).
    #[arg(long, allow_hyphen_values = true)]
    pub actor_token: Option<String>,
    /// Its type (default: by its shape).
    #[arg(long, value_enum)]
    pub actor_token_type: Option<TokenTypeArg>,
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
    // The assertion's audience is the server's issuer identifier, from its metadata.
    let mut metadata = sts.clone();
    let (client_assertion_type, client_assertion) = args
        .key
        .assertion(&args.client_id, &args.secret, async move {
            Ok(metadata
                .get_server_metadata(writ_proto::sts::GetServerMetadataRequest {})
                .await?
                .into_inner()
                .issuer)
        })
        .await?;
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
            client_assertion_type,
            client_assertion,
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
