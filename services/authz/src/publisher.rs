//! Drains the engine's revocation outbox into the revocation service: at least once (the service
//! is idempotent), in order, retrying with backoff while the service is away.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use writ_oauth::AuthorizationServer;
use writ_proto::convert::revocation_message as entry_to_pb;
use writ_proto::revocation::RevokeRequest;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_server::ShutdownSignal;

use writ_vocabulary::names::{REVOCATION_AUDIENCE, REVOCATION_PUBLISH_SCOPE as PUBLISH_SCOPE};

const BATCH: usize = 500;

/// Runs until `shutdown`.
pub async fn run(engine: Arc<AuthorizationServer>, channel: Channel, shutdown: ShutdownSignal) {
    let mut client = RevocationServiceClient::new(channel);
    let mut token: Option<(String, i64)> = None;
    let mut backoff = Duration::from_millis(100);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let pending = match engine.outbox(BATCH).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the revocation outbox");
                Vec::new()
            }
        };
        if pending.is_empty() {
            tokio::select! {
                _ = &mut stop => return,
                _ = engine.outbox_ready() => {}
                // Also look now and then: a notification can race with the read above.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        match publish(&engine, &mut client, &mut token, &pending).await {
            Ok(done) => {
                if let Err(e) = engine.outbox_done(&done).await {
                    tracing::error!(error = %e, "cannot clear published revocations");
                }
                backoff = Duration::from_millis(100);
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = %status.message(), queued = pending.len(), "revocation service unavailable; will retry");
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Publishes `pending`; returns the outbox keys that are done with (published, or refused as
/// invalid one by one, which retrying would not change).
async fn publish(
    engine: &AuthorizationServer,
    client: &mut RevocationServiceClient<Channel>,
    token: &mut Option<(String, i64)>,
    pending: &[(Vec<u8>, writ_token::RevocationEntry)],
) -> Result<Vec<Vec<u8>>, Status> {
    let entries: Vec<_> = pending.iter().map(|(_, e)| entry_to_pb(e)).collect();
    match send(engine, client, token, entries).await {
        Ok(sequence) => {
            tracing::debug!(count = pending.len(), sequence, "published revocations");
            Ok(pending.iter().map(|(k, _)| k.clone()).collect())
        }
        Err(s) if s.code() == Code::InvalidArgument => {
            let mut done = Vec::new();
            for (key, entry) in pending {
                match send(engine, client, token, vec![entry_to_pb(entry)]).await {
                    Ok(_) => done.push(key.clone()),
                    Err(s) if s.code() == Code::InvalidArgument => {
                        tracing::error!(kind = entry.kind.name(), value = %entry.value, message = %s.message(), "the revocation service refused a revocation; dropping it");
                        done.push(key.clone());
                    }
                    Err(s) => return Err(s),
                }
            }
            Ok(done)
        }
        Err(s) => Err(s),
    }
}

async fn send(
    engine: &AuthorizationServer,
    client: &mut RevocationServiceClient<Channel>,
    token: &mut Option<(String, i64)>,
    entries: Vec<writ_proto::revocation::RevocationEntry>,
) -> Result<u64, Status> {
    let now = engine.now();
    let bearer = match token {
        Some((t, exp)) if *exp > now + 60 => t.clone(),
        _ => {
            let minted = engine
                .service_token(REVOCATION_AUDIENCE, PUBLISH_SCOPE)
                .map_err(|e| Status::internal(e.to_string()))?;
            *token = Some(minted.clone());
            minted.0
        }
    };
    let mut request = Request::new(RevokeRequest { entries });
    request
        .metadata_mut()
        .insert("authorization", writ_client::bearer_value(&bearer)?);
    match client.revoke(request).await {
        Ok(r) => Ok(r.into_inner().sequence),
        Err(s) => {
            // Fix: a refused token (its signing key was revoked or rotated out, or the service
            // trusts other keys now) is minted afresh on the retry; keeping it until it expires
            // stalled every revocation for minutes.
            if s.code() == Code::Unauthenticated {
                *token = None;
            }
            Err(s)
        }
    }
}
