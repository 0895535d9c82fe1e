//! Drains the engine's revocation outbox into the revocation service: at least once (the service
//! is idempotent), oldest first, a few calls in flight (the service's group commit writes them
//! together, so a burst of revocations does not queue up behind one call per flush), retrying
//! with backoff while the service is away.

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

/// Most entries in one Revoke call.
const BATCH: usize = 500;
/// Calls in flight at once.
const IN_FLIGHT: usize = 4;
/// Most bytes of entries in one Revoke call: half the revocation service's message limit. 500
/// entries of the largest size (value and reason of 256 bytes each) are larger than the limit,
/// and a call refused for its size would be retried forever, stalling every revocation behind it.
const MAX_CALL_BYTES: usize = writ_server::MAX_GRPC_MESSAGE / 2;

/// Runs until `shutdown`.
pub async fn run(engine: Arc<AuthorizationServer>, channel: Channel, shutdown: ShutdownSignal) {
    let client = RevocationServiceClient::new(channel);
    let mut token: Option<(String, i64)> = None;
    let mut backoff = Duration::from_millis(100);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let pending = match engine.outbox(BATCH * IN_FLIGHT).await {
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
        let mut done = Vec::new();
        let mut refused = Vec::new();
        match bearer(&engine, &mut token) {
            Ok(bearer) => {
                for group in calls(&pending).chunks(IN_FLIGHT) {
                    let sent = futures::future::join_all(
                        group
                            .iter()
                            .map(|call| publish(&engine, client.clone(), &bearer, call)),
                    )
                    .await;
                    for result in sent {
                        match result {
                            Ok((published, dropped)) => {
                                done.extend(published);
                                refused.extend(dropped);
                            }
                            Err(status) => {
                                // Fix: a refused token (its signing key was revoked or rotated
                                // out, or the service trusts other keys now) is minted afresh on
                                // the retry; keeping it until it expires stalled every
                                // revocation for minutes.
                                if status.code() == Code::Unauthenticated {
                                    token = None;
                                }
                                failed.get_or_insert(status);
                            }
                        }
                    }
                    if failed.is_some() {
                        break;
                    }
                }
            }
            Err(status) => failed = Some(status),
        }
        if !done.is_empty()
            && let Err(e) = engine.outbox_done(&done).await
        {
            tracing::error!(error = %e, "cannot clear published revocations");
        }
        if !refused.is_empty()
            && let Err(e) = engine.outbox_refused(&refused).await
        {
            tracing::error!(error = %e, "cannot keep refused revocations");
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

/// `pending` cut into runs that each fit one call ([`BATCH`] entries, [`MAX_CALL_BYTES`]), in
/// order.
fn calls(pending: &[Pending]) -> Vec<&[Pending]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, e)) in pending.iter().enumerate() {
        // The entry's encoding, and its field tag and length prefix in the request.
        let size = prost::Message::encoded_len(&entry_to_pb(e)) + 4;
        if i > start && (bytes + size > MAX_CALL_BYTES || i - start == BATCH) {
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

/// Publishes `pending`; returns the outbox keys published, and those refused as invalid one by
/// one (which retrying would not change: the engine keeps them in force itself).
async fn publish(
    engine: &AuthorizationServer,
    mut client: RevocationServiceClient<Channel>,
    bearer: &str,
    pending: &[Pending],
) -> Result<(Vec<Vec<u8>>, Vec<Vec<u8>>), Status> {
    let entries: Vec<_> = pending.iter().map(|(_, e)| entry_to_pb(e)).collect();
    match send(&mut client, bearer, entries).await {
        Ok(sequence) => {
            tracing::debug!(count = pending.len(), sequence, "published revocations");
            Ok((pending.iter().map(|(k, _)| k.clone()).collect(), Vec::new()))
        }
        Err(s) if s.code() == Code::InvalidArgument => {
            let (mut done, mut refused) = (Vec::new(), Vec::new());
            for (key, entry) in pending {
                match send(&mut client, bearer, vec![entry_to_pb(entry)]).await {
                    Ok(_) => done.push(key.clone()),
                    Err(s) if s.code() == Code::InvalidArgument => {
                        tracing::error!(kind = entry.kind.name(), value = %entry.value, expires_at = entry.expires_at, now = engine.now(), message = %s.message(), "the revocation service refused a revocation");
                        refused.push(key.clone());
                    }
                    Err(s) => return Err(s),
                }
            }
            Ok((done, refused))
        }
        Err(s) => Err(s),
    }
}

/// The server's token for the revocation service: the one held while it has a minute left,
/// else a fresh one.
fn bearer(
    engine: &AuthorizationServer,
    token: &mut Option<(String, i64)>,
) -> Result<String, Status> {
    let now = engine.now();
    match token {
        Some((t, exp)) if *exp > now + 60 => Ok(t.clone()),
        _ => {
            let minted = engine
                .service_token(REVOCATION_AUDIENCE, PUBLISH_SCOPE)
                .map_err(|e| Status::internal(e.to_string()))?;
            *token = Some(minted.clone());
            Ok(minted.0)
        }
    }
}

async fn send(
    client: &mut RevocationServiceClient<Channel>,
    bearer: &str,
    entries: Vec<writ_proto::revocation::RevocationEntry>,
) -> Result<u64, Status> {
    let mut request = Request::new(RevokeRequest { entries });
    request
        .metadata_mut()
        .insert("authorization", writ_client::bearer_value(bearer)?);
    Ok(client.revoke(request).await?.into_inner().sequence)
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
    fn small_entries_go_in_one_call_of_at_most_a_batch() {
        let all = pending(BATCH, 22);
        assert_eq!(calls(&all).len(), 1);
        assert!(calls(&[]).is_empty());
        let more = pending(BATCH * IN_FLIGHT + 1, 22);
        let runs = calls(&more);
        assert_eq!(
            runs.iter().map(|r| r.len()).collect::<Vec<_>>(),
            [vec![BATCH; IN_FLIGHT], vec![1]].concat()
        );
    }
}
