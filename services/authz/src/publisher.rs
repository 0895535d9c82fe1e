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
/// Most bytes of entries in one Revoke call: half the revocation service's message limit. 500
/// entries of the largest size (value and reason of 256 bytes each) are larger than the limit,
/// and a call refused for its size would be retried forever, stalling every revocation behind it.
const MAX_CALL_BYTES: usize = writ_server::MAX_GRPC_MESSAGE / 2;

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
        let mut failed = None;
        for call in calls(&pending) {
            match publish(&engine, &mut client, &mut token, call).await {
                Ok(done) => {
                    if let Err(e) = engine.outbox_done(&done).await {
                        tracing::error!(error = %e, "cannot clear published revocations");
                    }
                }
                Err(status) => {
                    failed = Some(status);
                    break;
                }
            }
        }
        match failed {
            None => backoff = Duration::from_millis(100),
            Some(status) => {
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

type Pending = (Vec<u8>, writ_token::RevocationEntry);

/// `pending` cut into runs that each fit one call ([`MAX_CALL_BYTES`]), in order.
fn calls(pending: &[Pending]) -> Vec<&[Pending]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, e)) in pending.iter().enumerate() {
        // The entry's encoding, and its field tag and length prefix in the request.
        let size = prost::Message::encoded_len(&entry_to_pb(e)) + 4;
        if i > start && bytes + size > MAX_CALL_BYTES {
            out.push(&pending[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < pending.len() {
        out.push(&pending[start..]);
    }
    out
}

/// Publishes `pending`; returns the outbox keys that are done with (published, or refused as
/// invalid one by one, which retrying would not change).
async fn publish(
    engine: &AuthorizationServer,
    client: &mut RevocationServiceClient<Channel>,
    token: &mut Option<(String, i64)>,
    pending: &[Pending],
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

#[cfg(test)]
mod tests {
    use super::*;
    use writ_token::{MAX_REVOCATION_REASON_LEN, MAX_REVOCATION_VALUE_LEN, RevocationKind};

    fn pending(n: usize, len: usize) -> Vec<Pending> {
        (0..n)
            .map(|i| {
                let value = format!("{i:0>len$}");
                let entry = writ_token::RevocationEntry {
                    kind: RevocationKind::TokenId,
                    value,
                    issuer: String::new(),
                    expires_at: i64::MAX,
                    not_before: i64::MAX,
                    reason: "r".repeat(len.min(MAX_REVOCATION_REASON_LEN)),
                };
                (i.to_be_bytes().to_vec(), entry)
            })
            .collect()
    }

    #[test]
    fn a_batch_of_the_largest_entries_is_cut_into_calls_the_service_accepts() {
        let all = pending(BATCH, MAX_REVOCATION_VALUE_LEN);
        let request = |run: &[Pending]| RevokeRequest {
            entries: run.iter().map(|(_, e)| entry_to_pb(e)).collect(),
        };
        assert!(
            prost::Message::encoded_len(&request(&all)) > writ_server::MAX_GRPC_MESSAGE,
            "one call would be refused"
        );
        let runs = calls(&all);
        assert!(runs.len() > 1);
        for run in &runs {
            assert!(prost::Message::encoded_len(&request(run)) <= MAX_CALL_BYTES);
        }
        // Every entry once, in order.
        let keys: Vec<&Vec<u8>> = runs.iter().flat_map(|r| r.iter().map(|(k, _)| k)).collect();
        assert_eq!(keys, all.iter().map(|(k, _)| k).collect::<Vec<_>>());
    }

    #[test]
    fn small_entries_go_in_one_call() {
        let all = pending(BATCH, 22);
        assert_eq!(calls(&all).len(), 1);
        assert!(calls(&[]).is_empty());
    }
}
