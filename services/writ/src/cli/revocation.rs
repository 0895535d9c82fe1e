//! `writ revoke` and `writ watch`: revoking through the admin API, and following the feed.

use clap::Args;
use serde_json::json;
use tonic::Request;
use writ_client::{ClientCredentials, TokenSource};
use writ_proto::admin::{self as pb_admin};
use writ_vocabulary::names::{REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE};

use super::admin::admin_client;
use super::support::{CliError, Result, channel, channel_to, print};
use super::{AdminConn, ClientSecret, Conn};

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub conn: AdminConn,
    /// What the value names.
    #[arg(long, value_parser = ["token_id", "grant_id", "subject", "client", "biscuit_revocation_id", "key_id"])]
    pub kind: String,
    /// The token id, grant id, subject, client id, Biscuit revocation id or key id.
    #[arg(long, allow_hyphen_values = true)]
    pub value: String,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Seconds until everything this revokes has expired (default: a day, the longest a token
    /// can live).
    #[arg(long, default_value_t = 86_400)]
    pub expires_in: i64,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The revocation service's gRPC URL.
    #[arg(
        long,
        env = "WRIT_REVOCATION_SERVER",
        default_value = "https://127.0.0.1:7420"
    )]
    pub revocation_server: String,
    /// The authorization server to get a watch token from, and where to find the CA.
    #[command(flatten)]
    pub conn: Conn,
    /// A client allowed the scope writ.revocation.watch for the audience writ-revocation.
    #[arg(long, env = "WRIT_CLIENT_ID", allow_hyphen_values = true)]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub secret: ClientSecret,
    /// A bearer token to present instead of getting one with the client's credentials.
    #[arg(
        long,
        env = "WRIT_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub token: Option<String>,
    /// Resume after this sequence (0: from the beginning).
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Exit once caught up (at the first checkpoint) instead of following the feed.
    #[arg(long)]
    pub until_caught_up: bool,
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
        issuer: String::new(),
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
