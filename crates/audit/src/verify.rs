//! Checking a log offline, and pruning it without breaking what can be checked.
//!
//! A [`Verifier`] is fed checkpoints first, then records in order, then the head; it reports
//! every break with the position it was found at: a record altered (its successor, a
//! checkpoint or the head holds another hash), records missing (a gap, a truncated tail, a
//! pruned range no checkpoint carries), a record moved (its key and its sequence disagree), a
//! checkpoint whose signature does not hold or whose key is not trusted.

use std::collections::{BTreeMap, BTreeSet};

use writ_store::{AsyncStore, AsyncStoreExt, Batch, Tree, decode};

use crate::appender::{checkpoints_upto, first_seq};
use crate::chain;
use crate::record::{
    AuditRecord, CheckpointRecord, GENESIS, HEAD_KEY, HeadRecord, KEY_KEY, KeyRecord, Pages,
    RECORD_PREFIX, checkpoint_key, index_keys, seq_of,
};
use crate::{AuditError, Settings};

/// A break in the log, at a record's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: u64,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}: {}", self.seq, self.what)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub records: u64,
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub checkpoints: u64,
    /// The last record a valid checkpoint signed: records after it are protected by the chain
    /// only (a truncated tail after it would show only against the head).
    pub signed_to: u64,
    /// Fingerprints of the keys that signed the checkpoints.
    pub keys: BTreeSet<String>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a log fed to it in order (see the module's documentation).
#[derive(Debug)]
pub struct Verifier {
    /// Public keys checkpoints must be signed with; `None`: any (each is reported).
    trusted: Option<Vec<Vec<u8>>>,
    checkpoints: BTreeMap<u64, Vec<u8>>,
    last: Option<(u64, Vec<u8>)>,
    report: Report,
}

impl Verifier {
    pub fn new(trusted: Option<Vec<Vec<u8>>>) -> Self {
        Verifier {
            trusted,
            checkpoints: BTreeMap::new(),
            last: None,
            report: Report::default(),
        }
    }

    fn problem(&mut self, seq: u64, what: impl Into<String>) {
        self.report.problems.push(Problem {
            seq,
            what: what.into(),
        });
    }

    pub fn checkpoint(&mut self, c: CheckpointRecord) {
        self.report.checkpoints += 1;
        let fingerprint = chain::fingerprint(&c.public_key);
        if !chain::signature_holds(&c) {
            return self.problem(c.seq, "the checkpoint's signature does not hold");
        }
        if let Some(trusted) = &self.trusted
            && !trusted.contains(&c.public_key)
        {
            return self.problem(
                c.seq,
                format!("the checkpoint is signed by key {fingerprint}, which is not trusted"),
            );
        }
        self.report.keys.insert(fingerprint);
        self.checkpoints.insert(c.seq, c.hash);
    }

    /// The record stored under `key_seq`, as stored.
    pub fn record(&mut self, key_seq: u64, stored: &[u8]) {
        if key_seq == 0 {
            return self.problem(0, "a record at position 0, where none is ever written");
        }
        self.report.records += 1;
        self.report.first.get_or_insert(key_seq);
        self.report.last = Some(key_seq);
        let hash = chain::hash(stored);
        let record = match decode::<AuditRecord>(stored) {
            Ok(r) => r,
            Err(_) => {
                self.problem(key_seq, "the record is unreadable");
                self.last = Some((key_seq, hash));
                return;
            }
        };
        if record.seq != key_seq {
            self.problem(
                key_seq,
                format!("holds record {} (records were moved)", record.seq),
            );
        }
        match self.last.take() {
            None if key_seq == 1 => {
                if record.prev != GENESIS {
                    self.problem(1, "the first record does not start a chain");
                }
            }
            None => match self.checkpoints.get(&(key_seq - 1)) {
                Some(anchor) if *anchor == record.prev => {
                    // A prune removes every checkpoint below its anchor: one left there means
                    // records were cut off by other means.
                    if let Some((older, _)) = self.checkpoints.range(..key_seq - 1).next() {
                        let older = *older;
                        self.problem(
                            older,
                            format!(
                                "records {} to {} are missing: a checkpoint below them remains, which pruning would have removed",
                                older + 1,
                                key_seq - 1
                            ),
                        );
                    }
                }
                Some(_) => self.problem(
                    key_seq,
                    "the record does not follow the checkpoint before it (altered)",
                ),
                None => self.problem(
                    key_seq,
                    format!(
                        "records before {key_seq} are missing, and no checkpoint carries the chain to it"
                    ),
                ),
            },
            Some((last_seq, last_hash)) => {
                if key_seq > last_seq + 1 {
                    self.problem(
                        last_seq + 1,
                        format!("records {} to {} are missing", last_seq + 1, key_seq - 1),
                    );
                } else if record.prev != last_hash {
                    self.problem(
                        last_seq,
                        format!(
                            "record {last_seq} was altered: record {key_seq} was chained to another"
                        ),
                    );
                }
            }
        }
        if let Some(signed) = self.checkpoints.get(&key_seq) {
            if *signed == hash {
                self.report.signed_to = key_seq;
            } else {
                self.problem(
                    key_seq,
                    format!("record {key_seq} was altered: a checkpoint signed another hash"),
                );
            }
        }
        self.last = Some((key_seq, hash));
    }

    /// Ends the check against the head (`None`: an empty log, or an export without one).
    pub fn finish(mut self, head: Option<HeadRecord>) -> Report {
        let last = self.last.clone();
        let head_seq = head.as_ref().map(|h| h.seq);
        if let Some(head) = head {
            match &last {
                Some((seq, hash)) if head.seq == *seq && head.hash != *hash => {
                    self.problem(
                        *seq,
                        format!("record {seq} was altered: the head holds another hash"),
                    );
                }
                Some((seq, _)) if head.seq == *seq => {}
                Some((seq, _)) if head.seq > *seq => self.problem(
                    seq + 1,
                    format!(
                        "records {} to {} are missing (the log was truncated)",
                        seq + 1,
                        head.seq
                    ),
                ),
                Some((seq, _)) => {
                    self.problem(head.seq, format!("the head is behind record {seq}"))
                }
                None if head.seq > 0 && !self.checkpoints.contains_key(&head.seq) => self.problem(
                    1,
                    format!(
                        "records up to {} are missing (the log was emptied)",
                        head.seq
                    ),
                ),
                None => {}
            }
        }
        // Pruned to its anchor: no record left, the head's checkpoint still stands.
        let last_seq = match (last, head_seq) {
            (Some((s, _)), _) => s,
            (None, Some(h)) if self.checkpoints.contains_key(&h) => h,
            (None, _) => 0,
        };
        let beyond: Vec<u64> = self
            .checkpoints
            .range(last_seq + 1..)
            .map(|(s, _)| *s)
            .collect();
        for seq in beyond {
            self.problem(
                seq,
                format!("a checkpoint signs record {seq}, which is missing"),
            );
        }
        self.report
    }
}

/// Verifies the log in `store` against `trusted` keys (`None`: the key the store names).
pub async fn verify(
    store: &dyn AsyncStore,
    trusted: Option<Vec<Vec<u8>>>,
) -> Result<Report, AuditError> {
    let trusted = match trusted {
        Some(t) => Some(t),
        None => store
            .get_record::<KeyRecord>(KEY_KEY)
            .await?
            .map(|k| vec![k.public_key]),
    };
    let mut verifier = Verifier::new(trusted);
    // The head first: a log still being appended to is checked up to it (what comes after was
    // written during the check).
    let head = match store.get(Tree::Audit, HEAD_KEY).await? {
        Some(b) => Some(decode::<HeadRecord>(&b)?),
        None => None,
    };
    let upto = head.as_ref().map_or(0, |h| h.seq);
    for c in checkpoints_upto(store, upto).await? {
        verifier.checkpoint(c);
    }
    let mut pages = Pages::new(store, RECORD_PREFIX, 1024);
    'read: loop {
        let page = pages.next().await?;
        if page.is_empty() {
            break;
        }
        for (key, value) in &page {
            match seq_of(key) {
                Some(seq) if seq > upto => break 'read,
                Some(seq) if key.len() == RECORD_PREFIX.len() + 8 => verifier.record(seq, value),
                _ => verifier.problem(0, format!("a stray key {}", hex::encode(key))),
            }
        }
    }
    Ok(verifier.finish(head))
}

/// Prunes records older than the retention or beyond the size bound, but only up to a
/// checkpoint (it stays, and carries the chain to the first record kept). Returns how many
/// records went.
pub async fn prune(
    store: &dyn AsyncStore,
    settings: &Settings,
    now_ms: i64,
) -> Result<u64, AuditError> {
    let Some(head) = store.get(Tree::Audit, HEAD_KEY).await? else {
        return Ok(0);
    };
    let head = decode::<HeadRecord>(&head)?;
    let Some(first) = first_seq(store).await? else {
        return Ok(0);
    };
    let mut upto = 0;
    if head.seq - first + 1 > settings.max_events {
        upto = head.seq - settings.max_events;
    }
    // Old records: in order of sequence, which is nearly the order of time.
    let cutoff =
        now_ms.saturating_sub(i64::try_from(settings.retention.as_millis()).unwrap_or(i64::MAX));
    let mut pages = Pages::new(store, RECORD_PREFIX, 256);
    'old: loop {
        let page = pages.next().await?;
        if page.is_empty() {
            break;
        }
        for (key, value) in &page {
            let r = decode::<AuditRecord>(value)?;
            if r.time_ms >= cutoff {
                break 'old;
            }
            upto = upto.max(seq_of(key).unwrap_or(0));
        }
    }
    if upto < first {
        return Ok(0);
    }
    let checkpoints = checkpoints_upto(store, upto).await?;
    let Some(anchor) = checkpoints.last() else {
        return Ok(0);
    };
    let anchor = anchor.seq;
    if let Some(files) = crate::files::of(store) {
        // The anchor's checkpoint is durable before the records it carries go.
        store.durable().await?;
        let pruned = files.log.drop_through(anchor)?;
        drop_checkpoints_below(store, &checkpoints, anchor).await?;
        return Ok(pruned);
    }
    let mut pruned = 0;
    let mut pages = Pages::new(store, RECORD_PREFIX, 512);
    loop {
        let page: Vec<_> = pages
            .next()
            .await?
            .into_iter()
            .take_while(|(k, _)| seq_of(k).is_some_and(|s| s <= anchor))
            .collect();
        if page.is_empty() {
            break;
        }
        let mut batch = Batch::new();
        for (key, value) in &page {
            if let Ok(r) = decode::<AuditRecord>(value) {
                for index in index_keys(&r) {
                    batch = batch.remove(index);
                }
            }
            batch = batch.remove(key.clone());
            pruned += 1;
        }
        store.commit(Tree::Audit, batch).await?;
        tokio::task::yield_now().await;
    }
    drop_checkpoints_below(store, &checkpoints, anchor).await?;
    Ok(pruned)
}

/// Removes the checkpoints a prune to `anchor` left behind (the anchor's own stays).
async fn drop_checkpoints_below(
    store: &dyn AsyncStore,
    checkpoints: &[CheckpointRecord],
    anchor: u64,
) -> Result<(), AuditError> {
    let mut batch = Batch::new();
    for c in checkpoints.iter().filter(|c| c.seq < anchor) {
        batch = batch.remove(checkpoint_key(c.seq));
    }
    if !batch.write.is_empty() {
        store.commit(Tree::Audit, batch).await?;
    }
    store.durable().await?;
    Ok(())
}
