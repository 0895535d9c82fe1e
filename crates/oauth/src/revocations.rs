//! Revocations the authorization server makes: recorded in its local index (introspection and
//! refresh consult it) and queued in an outbox for the revocation service, in one atomic,
//! durable batch. A publisher drains the outbox (at least once; the service is idempotent), so
//! an acknowledged revocation reaches resource services even if the service was down.

use std::collections::HashSet;
use std::sync::Arc;

use writ_store::{AsyncStoreExt, Batch, ExpiryOrder, Tree, decode, encode};
use writ_token::{
    AccessClaims, RevocationEntry, RevocationKind, TokenFacts, encode_access_token, random_id,
};

use writ_vocabulary::names::SELF_CLIENT_ID;

use crate::AuthorizationServer;
use crate::error::{Error, Result};
use crate::records::{GrantRecord, RevocationRecord};

const LOCAL: &[u8] = b"r/";
const OUTBOX: &[u8] = b"o/";
/// The local index by expiry: pruning reads only what has expired.
const EXPIRY: ExpiryOrder = ExpiryOrder {
    prefix: b"x/",
    chunks: b"e/",
    entries: LOCAL,
};
/// Set in the `meta` tree once every local entry has its expiry key.
const EXPIRY_INDEXED: &[u8] = b"revocations_expiry_indexed";
/// Rows read per step of pruning and indexing.
const PRUNE_PAGE: usize = 1000;
/// Steps of one prune (each removes a page, or ends it): later ones wait for the next prune.
const MAX_PRUNE_STEPS: usize = 10_000;
/// Entries left to the log and not yet delivered past which a recording waits (about 50 bytes
/// of memory each, and an outbox key each in the store).
const MAX_UNDELIVERED: usize = 20_000;
/// Longest a recording waits for the backlog to shrink.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Keys read per step of loading the revocation filter.
const FILTER_PAGE: usize = 4096;

/// A revocation to record: `entry` is what is published; locally it is kept until
/// `keep_until` (later for a refresh family, whose refresh tokens outlive its access tokens).
#[derive(Debug, Clone)]
pub struct Revocation {
    pub entry: RevocationEntry,
    pub keep_until: i64,
}

impl Revocation {
    pub fn new(entry: RevocationEntry) -> Self {
        Revocation {
            keep_until: entry.expires_at,
            entry,
        }
    }
}

fn local_key(kind: RevocationKind, value: &str) -> Vec<u8> {
    let mut k = LOCAL.to_vec();
    k.push(kind as u8);
    k.extend_from_slice(value.as_bytes());
    k
}

/// An outbox key unique across every replica sharing the store, roughly in time order: the
/// wall clock in nanoseconds, then random bytes. (The publisher drains oldest first; the
/// revocation service is idempotent, so the order is only fairness, never correctness.)
fn outbox_key() -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut k = OUTBOX.to_vec();
    k.extend_from_slice(&nanos.to_be_bytes());
    k.extend_from_slice(&writ_token::random_bytes::<8>());
    k
}

/// Kinds whose entries the local index may leave to a revocation log in this process (see
/// [`AuthorizationServer::follow_log`]): one per token, the bulk of any index. Cut-offs
/// (subject, client), grants (their refresh tokens outlive the published entry) and key ids
/// (read back by key trust) always stay.
fn left_to_log(kind: RevocationKind) -> bool {
    matches!(
        kind,
        RevocationKind::TokenId | RevocationKind::BiscuitRevocationId
    )
}

/// The 16 bytes after the prefix of an outbox key (the clock, then random bytes): what
/// [`Undelivered`](crate::undelivered::Undelivered) knows an outbox entry by.
fn outbox_id(key: &[u8]) -> Result<u128> {
    key.strip_prefix(OUTBOX)
        .and_then(|id| <[u8; 16]>::try_from(id).ok())
        .map(u128::from_be_bytes)
        .ok_or(Error::Internal("an outbox key of another format"))
}

fn record(e: &RevocationEntry, expires_at: i64, now: i64) -> RevocationRecord {
    RevocationRecord {
        kind: e.kind as i32,
        value: e.value.clone(),
        expires_at,
        not_before: e.not_before,
        reason: e.reason.clone(),
        revoked_at: now,
    }
}

fn entry(r: &RevocationRecord) -> Result<RevocationEntry> {
    Ok(RevocationEntry {
        kind: RevocationKind::from_i32(r.kind).ok_or(Error::Internal("stored revocation kind"))?,
        value: r.value.clone(),
        // The authorization server's own entries are its administrator's: every issuer.
        issuer: String::new(),
        expires_at: r.expires_at,
        not_before: r.not_before,
        reason: r.reason.clone(),
    })
}

impl AuthorizationServer {
    /// Records revocations locally and queues them for the revocation service, atomically; durable
    /// on return. Wakes the publisher.
    pub async fn record_revocations(&self, revocations: &[Revocation], by: &str) -> Result<()> {
        let now = self.now();
        for r in revocations {
            r.entry.validate(now).map_err(|e| {
                Error::InvalidRequest(match e {
                    writ_token::RevocationError::Reserved => {
                        "Writ's own identities cannot be revoked"
                    }
                    writ_token::RevocationError::NotBefore => "not_before may not be in the future",
                    _ => "a revocation entry is invalid",
                })
            })?;
            // The administrator's entries apply to every issuer; an issuer's own are its
            // producer's to publish, at the revocation service.
            if !r.entry.issuer.is_empty() {
                return Err(Error::InvalidRequest(
                    "an entry scoped to one issuer is published by that issuer's producer",
                ));
            }
        }
        // One record per entry, written with the index and the outbox.
        let intents: Vec<writ_audit::Intent> = revocations
            .iter()
            .map(|r| self.audit.intent(revoked_event(&r.entry, by)))
            .collect();
        // Merged with what the local index holds, as a compare-and-swap on every key read, so
        // replicas recording the same target at once cannot lose either's cut-off.
        let mut written = false;
        let leave_to_log = self.leave_to_log.load(std::sync::atomic::Ordering::Acquire)
            && self.room_for_undelivered(revocations.len()).await;
        for _ in 0..MAX_ATTEMPTS {
            let mut batch = Batch::new();
            // (outbox key, target) of entries left to the log.
            let mut queued: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut merged_here: std::collections::HashMap<Vec<u8>, RevocationRecord> =
                std::collections::HashMap::new();
            // Each key's expiry as stored, for the expiry order.
            let mut stored_expiry: std::collections::HashMap<Vec<u8>, Option<i64>> =
                std::collections::HashMap::new();
            for r in revocations {
                let key = local_key(r.entry.kind, &r.entry.value);
                let mut keep = r.keep_until.max(r.entry.expires_at);
                if r.entry.kind.uses_not_before() {
                    // A subject or client cut-off ends the grants made before it too (refresh
                    // families): kept here as long as any of them can live.
                    keep = keep.max(now + self.grant_horizon());
                }
                if leave_to_log && left_to_log(r.entry.kind) && keep == r.entry.expires_at {
                    let outbox = outbox_key();
                    batch = batch.put(
                        outbox.clone(),
                        encode(&record(&r.entry, r.entry.expires_at, now)),
                    );
                    queued.push((outbox, key));
                    continue;
                }
                let old = match merged_here.get(&key) {
                    Some(m) => Some(m.clone()),
                    None => {
                        let bytes = self.store.get(Tree::Revocations, &key).await?;
                        batch = batch.expect(key.clone(), bytes.clone());
                        let old = bytes
                            .as_deref()
                            .map(decode::<RevocationRecord>)
                            .transpose()?;
                        stored_expiry.insert(key.clone(), old.as_ref().map(|o| o.expires_at));
                        old
                    }
                };
                let merged = match old {
                    Some(old) => RevocationRecord {
                        expires_at: old.expires_at.max(keep),
                        not_before: old.not_before.max(r.entry.not_before),
                        ..record(&r.entry, keep, now)
                    },
                    None => record(&r.entry, keep, now),
                };
                batch = batch.put(key.clone(), encode(&merged)).put(
                    outbox_key(),
                    encode(&record(&r.entry, r.entry.expires_at, now)),
                );
                merged_here.insert(key, merged);
            }
            // Listed in expiry order where the expiry changed (an earlier listing stays:
            // pruning checks the entry itself).
            let listed = merged_here
                .iter()
                .filter(|(key, merged)| {
                    stored_expiry.get(*key).copied().flatten() != Some(merged.expires_at)
                })
                .map(|(key, merged)| (key.as_slice(), merged.expires_at));
            for (k, v) in EXPIRY.chunks(listed, &writ_token::random_bytes::<8>()) {
                batch = batch.put(k, v);
            }
            // Keys new to the index are counted before they are written, so no check misses them.
            let new_keys: Vec<&[u8]> = stored_expiry
                .iter()
                .filter(|(_, stored)| stored.is_none())
                .map(|(key, _)| key.as_slice())
                .collect();
            if let Some(f) = &self.revocation_filter {
                f.add(new_keys.iter().copied());
            }
            // Likewise the entries left to the log: answered before they are acknowledged.
            if let Some(u) = &self.undelivered {
                for (outbox, target) in &queued {
                    u.add(outbox_id(outbox)?, target);
                }
            }
            let batch = intents.iter().fold(batch, |b, i| i.attach(b));
            let committed = self.store.commit(Tree::Revocations, batch).await;
            if matches!(committed, Ok(true)) {
                written = true;
                break;
            }
            // Not written (a conflict to retry, or an error): taken back from both.
            if let Some(f) = &self.revocation_filter {
                f.take_back(new_keys.iter().copied());
            }
            if let Some(u) = &self.undelivered {
                u.remove(
                    queued
                        .iter()
                        .filter_map(|(outbox, _)| outbox_id(outbox).ok()),
                );
            }
            committed?;
        }
        if !written {
            return Err(Error::Conflict(
                "the revocation index changed concurrently; retry",
            ));
        }
        if revocations
            .iter()
            .any(|r| r.entry.kind == RevocationKind::KeyId)
        {
            // `trusted_keys` must look again.
            self.reload_revoked_key_ids().await?;
        }
        for intent in intents {
            self.audit.written(intent);
        }
        self.store.durable().await?;
        self.outbox_ready.notify_one();
        Ok(())
    }

    /// Whether a grant (a refresh family) has ended: its own id revoked, or its subject or its
    /// client cut off at or after the grant was made. Every token of a grant derives its
    /// authority from the grant, so a cut-off is judged by when the grant began, not by when a
    /// token of it was minted (a refresh after a cut-off mints tokens newer than it).
    pub(crate) async fn grant_revoked(&self, grant: &GrantRecord) -> Result<bool> {
        Ok(self
            .first_revoked(&[
                (RevocationKind::GrantId, &grant.gid, 0),
                (RevocationKind::Subject, &grant.subject, grant.created_at),
                (RevocationKind::Client, &grant.client_id, grant.created_at),
            ])
            .await?
            .is_some())
    }

    /// The first of `targets` (kind, value, and for subject and client cut-offs the `iat` to
    /// judge) that the local index revokes, read in one go.
    pub(crate) async fn first_revoked(
        &self,
        targets: &[(RevocationKind, &str, i64)],
    ) -> Result<Option<RevocationKind>> {
        // Entries left to the log and not yet delivered to it (the log answers for the rest).
        if let Some(u) = &self.undelivered {
            for (kind, value, _) in targets {
                if left_to_log(*kind) && u.holds(&local_key(*kind, value)) {
                    return Ok(Some(*kind));
                }
            }
        }
        // Only the targets the index may hold are read: usually none.
        let (targets, keys): (Vec<_>, Vec<Vec<u8>>) = targets
            .iter()
            .map(|t| (t, local_key(t.0, t.1)))
            .filter(|(_, key)| self.local_may_hold(key))
            .unzip();
        if keys.is_empty() {
            return Ok(None);
        }
        let now = self.now();
        let found = self.store.get_many(Tree::Revocations, &keys).await?;
        for ((kind, _, iat), value) in targets.into_iter().zip(found) {
            if let Some(bytes) = value {
                let r = decode::<RevocationRecord>(&bytes)?;
                if r.expires_at >= now && (!kind.uses_not_before() || iat <= r.not_before) {
                    return Ok(Some(kind));
                }
            }
        }
        Ok(None)
    }

    /// How long a grant made now can live: cut-offs that end grants are kept that long.
    pub(crate) fn grant_horizon(&self) -> i64 {
        self.config.max_grant_lifetime + self.config.leeway
    }

    /// Cuts, now, every token and grant of a subject (a user deleted, a password reset) or of a
    /// client (`kind` `Client`: deleted or disabled).
    pub(crate) async fn cut_off(
        &self,
        kind: RevocationKind,
        value: &str,
        reason: &str,
    ) -> Result<()> {
        let now = self.now();
        let entry = RevocationEntry {
            kind,
            value: value.to_owned(),
            issuer: String::new(),
            expires_at: now + self.access_horizon(),
            not_before: now,
            reason: reason.to_owned(),
        };
        self.record_revocations(&[Revocation::new(entry)], "authorization server")
            .await
    }

    /// Whether the local index revokes `value` of `kind` (for subject and client: a token issued
    /// at `iat`).
    pub async fn is_revoked(&self, kind: RevocationKind, value: &str, iat: i64) -> Result<bool> {
        Ok(self.first_revoked(&[(kind, value, iat)]).await?.is_some())
    }

    /// Whether the local index may hold `key` (certainly not, if the filter says so).
    fn local_may_hold(&self, key: &[u8]) -> bool {
        self.revocation_filter
            .as_ref()
            .is_none_or(|f| f.may_hold(key))
    }

    /// The first revocation in the local index that applies to `token`, if any.
    pub async fn revokes(&self, token: &TokenFacts<'_>) -> Result<Option<RevocationKind>> {
        let targets: Vec<_> = token
            .targets()
            .map(|(kind, value)| (kind, value, token.iat))
            .collect();
        self.first_revoked(&targets).await
    }

    /// Up to `limit` queued revocations, oldest first, with their outbox keys.
    pub async fn outbox(&self, limit: usize) -> Result<Vec<(Vec<u8>, RevocationEntry)>> {
        self.store
            .scan_records::<RevocationRecord>(OUTBOX, None, limit)
            .await?
            .into_iter()
            .map(|(k, r)| Ok((k, entry(&r)?)))
            .collect()
    }

    /// Removes acknowledged (or no longer useful) revocations from the outbox.
    pub async fn outbox_done(&self, keys: &[Vec<u8>]) -> Result<()> {
        let batch = keys.iter().fold(Batch::new(), |b, k| b.remove(k.clone()));
        self.store.commit(Tree::Revocations, batch).await?;
        self.store.durable().await?;
        // Delivered: the log answers for them now.
        if let Some(u) = &self.undelivered {
            u.remove(keys.iter().filter_map(|k| outbox_id(k).ok()));
            self.backlog_stalled
                .store(false, std::sync::atomic::Ordering::Release);
            self.outbox_drained.notify_waiters();
        }
        Ok(())
    }

    /// Outbox entries the revocation service refused as invalid: done with there, but one not
    /// yet expired stays in force here, in the local index, since an entry left to the log has
    /// no other copy. (The service validates as this server did when it recorded the entry, so
    /// this is for the unforeseen: an expiry raised past the service's bound, say.)
    pub async fn outbox_refused(&self, keys: &[Vec<u8>]) -> Result<()> {
        let now = self.now();
        let queued = self.store.get_many(Tree::Revocations, keys).await?;
        let mut kept: std::collections::HashMap<Vec<u8>, RevocationRecord> =
            std::collections::HashMap::new();
        for value in queued.into_iter().flatten() {
            let r = decode::<RevocationRecord>(&value)?;
            if r.expires_at < now {
                continue;
            }
            let kind = RevocationKind::from_i32(r.kind)
                .ok_or(Error::Internal("stored revocation kind"))?;
            let key = local_key(kind, &r.value);
            let merged = match kept.remove(&key) {
                Some(o) => RevocationRecord {
                    expires_at: o.expires_at.max(r.expires_at),
                    not_before: o.not_before.max(r.not_before),
                    ..r
                },
                None => r,
            };
            kept.insert(key, merged);
        }
        let keys_kept: Vec<Vec<u8>> = kept.keys().cloned().collect();
        let stored = self.store.get_many(Tree::Revocations, &keys_kept).await?;
        let mut batch = keys.iter().fold(Batch::new(), |b, k| b.remove(k.clone()));
        let mut listed = Vec::new();
        let mut new_keys = Vec::new();
        for (key, old) in keys_kept.iter().zip(stored) {
            let mut merged = kept[key].clone();
            match old.as_deref().map(decode::<RevocationRecord>).transpose()? {
                Some(o) => {
                    merged.expires_at = merged.expires_at.max(o.expires_at);
                    merged.not_before = merged.not_before.max(o.not_before);
                }
                None => new_keys.push(key.as_slice()),
            }
            listed.push((key.as_slice(), merged.expires_at));
            batch = batch
                .expect(key.clone(), old)
                .put(key.clone(), encode(&merged));
        }
        for (k, v) in EXPIRY.chunks(listed, &writ_token::random_bytes::<8>()) {
            batch = batch.put(k, v);
        }
        if let Some(f) = &self.revocation_filter {
            f.add(new_keys.iter().copied());
        }
        let committed = self.store.commit(Tree::Revocations, batch).await;
        if !matches!(committed, Ok(true)) {
            if let Some(f) = &self.revocation_filter {
                f.take_back(new_keys.iter().copied());
            }
            committed?;
            // Changed meanwhile: the entries stay queued, and the publisher offers them again.
            return Err(Error::Conflict(
                "the revocation index changed concurrently; retry",
            ));
        }
        self.store.durable().await?;
        if let Some(u) = &self.undelivered {
            u.remove(keys.iter().filter_map(|k| outbox_id(k).ok()));
        }
        if !kept.is_empty() {
            tracing::warn!(
                kept = kept.len(),
                "refused by the revocation service; kept in force in the local index"
            );
        }
        Ok(())
    }

    /// Resolves when something was queued since the last call.
    pub async fn outbox_ready(&self) {
        self.outbox_ready.notified().await;
    }

    /// A short-lived token the server mints for itself, to call another Writ service.
    pub fn service_token(&self, audience: &str, scope: &str) -> Result<(String, i64)> {
        let now = self.now();
        let exp = now + 300;
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: SELF_CLIENT_ID.to_owned(),
            aud: vec![audience.to_owned()],
            exp,
            iat: now,
            nbf: Some(now),
            jti: random_id(),
            client_id: SELF_CLIENT_ID.to_owned(),
            scope: scope.to_owned(),
            gid: Some(random_id()),
            act: None,
            may_act: None,
            cnf: None,
        };
        Ok((encode_access_token(&self.keys.state().jwt, &claims)?, exp))
    }

    /// Drops expired revocations from the local index and from the outbox (an entry whose tokens
    /// have all expired is no longer worth publishing).
    pub(crate) async fn prune_revocations(&self, now: i64, margin: i64) -> Result<usize> {
        let mut removed = 0;
        // The local index in expiry order, from the oldest: only what has expired is read.
        let cutoff = now - margin;
        for _ in 0..MAX_PRUNE_STEPS {
            let due = EXPIRY
                .due(&*self.store, Tree::Revocations, cutoff, PRUNE_PAGE)
                .await?;
            if due.is_empty() {
                break;
            }
            let keys: Vec<Vec<u8>> = due.iter().flat_map(|d| d.entries.clone()).collect();
            let records = self.store.get_many(Tree::Revocations, &keys).await?;
            let mut batch = Batch::new();
            for d in &due {
                batch = batch.remove(d.key.clone());
            }
            let mut expired: HashSet<&[u8]> = HashSet::new();
            for (local, record) in keys.iter().zip(records) {
                // Only if still expired: a target revoked again meanwhile lives on, listed
                // again later.
                if let Some(v) = record
                    && decode::<RevocationRecord>(&v).is_ok_and(|r| r.expires_at < cutoff)
                    && expired.insert(local)
                {
                    batch = batch.expect(local.clone(), Some(v)).remove(local.clone());
                }
            }
            if !self.store.commit(Tree::Revocations, batch).await? {
                // Changed meanwhile: the next prune sees it.
                break;
            }
            if let Some(f) = &self.revocation_filter {
                f.removed(expired.iter().copied());
            }
            removed += expired.len();
        }
        // The outbox holds only what the publisher has not delivered yet.
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(Tree::Revocations, OUTBOX, after.as_deref(), PRUNE_PAGE)
                .await?;
            let Some((k, _)) = page.last() else { break };
            after = Some(k.clone());
            for (k, v) in page {
                if decode::<RevocationRecord>(&v).is_ok_and(|r| r.expires_at + margin < now) {
                    let batch = Batch::new().expect(k.clone(), Some(v)).remove(k.clone());
                    if self.store.commit(Tree::Revocations, batch).await? {
                        removed += 1;
                        if let (Some(u), Ok(id)) = (&self.undelivered, outbox_id(&k)) {
                            u.remove([id]);
                        }
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Backpressure on entries left to the log: past [`MAX_UNDELIVERED`] queued, a recording
    /// waits for the publisher to deliver, up to [`BACKLOG_WAIT`]. Whether `n` more may be left
    /// to the log; if not (the log is slower than the burst for that long, or away), they are
    /// recorded in the local index as on a shared store, so neither memory nor safety depends
    /// on how long the backlog lasts.
    async fn room_for_undelivered(&self, n: usize) -> bool {
        let Some(u) = &self.undelivered else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + BACKLOG_WAIT;
        loop {
            let drained = self.outbox_drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so a delivery in between is not missed.
            drained.as_mut().enable();
            let queued = u.len();
            if queued == 0 || queued + n <= MAX_UNDELIVERED {
                return true;
            }
            if self
                .backlog_stalled
                .load(std::sync::atomic::Ordering::Acquire)
            {
                return false;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                self.backlog_stalled
                    .store(true, std::sync::atomic::Ordering::Release);
                tracing::warn!(
                    queued,
                    "revocations wait for the revocation log; recording them in the local index"
                );
                return false;
            }
        }
    }

    /// Reads the outbox's undelivered entries left to the log into memory (this process is the
    /// store's only writer): those written before a restart are answered from the start.
    /// Entries of the same kinds also in the local index are counted too, harmlessly.
    pub(crate) async fn load_undelivered(&self) -> Result<()> {
        let Some(u) = &self.undelivered else {
            return Ok(());
        };
        let mut after: Option<Vec<u8>> = None;
        let mut loaded = 0usize;
        loop {
            let page = self
                .store
                .scan_records::<RevocationRecord>(OUTBOX, after.as_deref(), PRUNE_PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let full = page.len() == PRUNE_PAGE;
            for (k, r) in page {
                let kind = RevocationKind::from_i32(r.kind)
                    .ok_or(Error::Internal("stored revocation kind"))?;
                if left_to_log(kind) {
                    // An outbox key this build cannot track fails the open: never fail open.
                    u.add(outbox_id(&k)?, &local_key(kind, &r.value));
                    loaded += 1;
                }
            }
            if !full {
                break;
            }
        }
        if loaded > 0 {
            tracing::info!(loaded, "undelivered revocations read from the outbox");
        }
        Ok(())
    }

    /// Counts every key of the local index into the filter, in the background; it holds the
    /// store a page at a time, so a platform stopping meanwhile is not kept waiting.
    pub(crate) fn load_revocation_filter(&self) {
        let Some(filter) = &self.revocation_filter else {
            return;
        };
        let (store, filter) = (Arc::downgrade(&self.store), Arc::downgrade(filter));
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut after: Option<Vec<u8>> = None;
            let mut counted = 0usize;
            loop {
                let (Some(store), Some(filter)) = (store.upgrade(), filter.upgrade()) else {
                    return;
                };
                let page = match store
                    .scan(Tree::Revocations, LOCAL, after.as_deref(), FILTER_PAGE)
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        // Incomplete, the filter answers "may hold": every check reads the store.
                        tracing::warn!(error = %e, "the revocation filter could not be loaded");
                        return;
                    }
                };
                filter.add(page.iter().map(|(k, _)| k.as_slice()));
                counted += page.len();
                let full = page.len() == FILTER_PAGE;
                match page.into_iter().last() {
                    Some((last, _)) if full => after = Some(last),
                    _ => {
                        filter.complete();
                        tracing::info!(
                            entries = counted,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "revocation filter loaded"
                        );
                        return;
                    }
                }
                // A page at a time, between requests.
                tokio::task::yield_now().await;
            }
        });
    }

    /// Lists every local entry in expiry order, once per store (then marked in `meta`), for a
    /// store written before the expiry order existed (replicas doing it at once write the same);
    /// then packs an earlier build's one-key-per-entry listings into chunks.
    pub(crate) async fn index_revocation_expiries(&self) -> Result<()> {
        if self.store.get(Tree::Meta, EXPIRY_INDEXED).await?.is_none() {
            EXPIRY
                .list_all(&*self.store, Tree::Revocations, |v| {
                    decode::<RevocationRecord>(v).ok().map(|r| r.expires_at)
                })
                .await?;
            self.store
                .insert(Tree::Meta, EXPIRY_INDEXED, vec![1])
                .await?;
            self.store.durable().await?;
        }
        // Listings of an earlier build, one key per entry, into chunks.
        let packed = EXPIRY.pack_legacy(&*self.store, Tree::Revocations).await?;
        if packed > 0 {
            tracing::info!(
                packed,
                "packed the revocation index's expiry order into chunks"
            );
        }
        Ok(())
    }

    /// Which of `ids` the local index revokes now (one read of them all).
    pub(crate) async fn key_ids_revoked(&self, ids: &[String]) -> Result<HashSet<String>> {
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| local_key(RevocationKind::KeyId, id))
            .collect();
        let now = self.now();
        let mut revoked = HashSet::new();
        for (id, value) in ids
            .iter()
            .zip(self.store.get_many(Tree::Revocations, &keys).await?)
        {
            if let Some(bytes) = value
                && decode::<RevocationRecord>(&bytes)?.expires_at >= now
            {
                revoked.insert(id.clone());
            }
        }
        Ok(revoked)
    }

    /// The key ids the local index revokes now.
    pub(crate) async fn revoked_key_ids_in_store(&self) -> Result<HashSet<String>> {
        let prefix = local_key(RevocationKind::KeyId, "");
        let now = self.now();
        let mut ids = HashSet::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan_records::<RevocationRecord>(&prefix, after.as_deref(), 1000)
                .await?;
            let Some((k, _)) = page.last() else { break };
            after = Some(k.clone());
            ids.extend(
                page.into_iter()
                    .filter(|(_, r)| r.expires_at >= now)
                    .map(|(_, r)| r.value),
            );
        }
        Ok(ids)
    }
}

/// Attempts at a compare-and-swap on the local index before giving up (`Conflict`).
const MAX_ATTEMPTS: usize = 16;

/// The local index knows a revocation the moment it is acknowledged: another service in the
/// same process (the STS under `writ up`) consults it besides the feed.
impl writ_token::AsyncRevocationCheck for AuthorizationServer {
    fn revoked_async<'a>(
        &'a self,
        token: &'a TokenFacts<'a>,
    ) -> writ_token::BoxFuture<'a, std::result::Result<Option<RevocationKind>, writ_token::Unvouched>>
    {
        Box::pin(async move {
            if self.index_incomplete() {
                return Err(writ_token::Unvouched(
                    "the revocation log is not followed yet",
                ));
            }
            self.revokes(token).await.map_err(|e| {
                tracing::error!(error = %e, "the authorization server's revocation index failed");
                writ_token::Unvouched("the revocation index is unavailable")
            })
        })
    }
}

/// The audit record of a revocation: the target in the field it names (a grant id, a subject,
/// a client), so a query by that field finds it; `by` is the actor unless an administrator's
/// call set one.
fn revoked_event(entry: &RevocationEntry, by: &str) -> writ_audit::Event {
    let mut event = writ_audit::Event::new("revoked", writ_audit::Outcome::Success)
        .reason(&entry.reason)
        .detail("kind", entry.kind.name())
        .detail("value", &entry.value)
        .detail("expires_at", entry.expires_at)
        .detail("not_before", entry.not_before);
    event = if event.record().actor.is_empty() {
        event.actor(by)
    } else {
        event.detail("by", by)
    };
    match entry.kind {
        RevocationKind::GrantId => event.gid(&entry.value),
        RevocationKind::Subject => event.subject(&entry.value),
        RevocationKind::Client => event.client(&entry.value),
        _ => event,
    }
}
