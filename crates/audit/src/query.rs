//! Finding records: by grant id, client or subject through their indexes, otherwise in order
//! of sequence from the first record at or after a time; every other filter applied to what
//! is read. Pages are in order of sequence; the cursor is the last sequence examined.

use writ_store::{AsyncStore, Tree, decode};

use crate::AuditError;
use crate::record::{
    AuditRecord, HEAD_KEY, HeadRecord, Indexed, RECORD_PREFIX, index_prefix, record_key, seq_of,
};

/// The most records one page returns.
pub const MAX_PAGE: usize = 1000;
/// A page examines at most this many records per record it may return, so a filter matching
/// little cannot make one call read the whole log (the cursor continues where it stopped).
const EXAMINED_PER_RESULT: usize = 20;
/// Records are chained in nearly the order they were made: a time bound is widened by this
/// much when it picks where to start or stop, and applied exactly to each record.
const TIME_SLACK_MS: i64 = 60_000;

#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<i64>,
    pub kind: Option<String>,
    pub outcome: Option<String>,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    pub gid: Option<String>,
}

impl Filter {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.since_ms.is_none_or(|t| r.time_ms >= t)
            && self.until_ms.is_none_or(|t| r.time_ms < t)
            && eq(&self.kind, &r.kind)
            && eq(&self.outcome, &r.outcome)
            && eq(&self.client_id, &r.client_id)
            && eq(&self.subject, &r.subject)
            && eq(&self.gid, &r.gid)
    }

    /// The most selective index the filter names.
    fn index(&self) -> Option<(Indexed, &str)> {
        [
            (Indexed::Gid, &self.gid),
            (Indexed::Client, &self.client_id),
            (Indexed::Subject, &self.subject),
        ]
        .into_iter()
        .find_map(|(field, value)| value.as_deref().map(|v| (field, v)))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<AuditRecord>,
    /// Where the next page starts (pass it as `after`); `None` at the end.
    pub next: Option<u64>,
}

/// Up to `limit` (at most [`MAX_PAGE`]) records matching `filter` with sequence above `after`.
pub async fn list(
    store: &dyn AsyncStore,
    filter: &Filter,
    after: u64,
    limit: usize,
) -> Result<Page, AuditError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let budget = limit * EXAMINED_PER_RESULT;
    let mut page = Page::default();
    let mut examined = 0;
    let mut last = after;
    let chunk = limit.min(256) + 1;
    match filter.index() {
        Some((field, value)) => {
            let prefix = index_prefix(field, value);
            let mut cursor =
                (after > 0).then(|| [prefix.as_slice(), &after.to_be_bytes()].concat());
            loop {
                let entries = store
                    .scan(Tree::Audit, &prefix, cursor.as_deref(), chunk)
                    .await?;
                let Some((tail, _)) = entries.last() else {
                    return Ok(page);
                };
                cursor = Some(tail.clone());
                let keys: Vec<Vec<u8>> = entries
                    .iter()
                    .filter_map(|(k, _)| seq_of(k))
                    .map(record_key)
                    .collect();
                let values = store.get_many(Tree::Audit, &keys).await?;
                for (key, value) in keys.iter().zip(values) {
                    let seq = seq_of(key).unwrap_or(0);
                    // An index entry whose record was pruned meanwhile is skipped.
                    if let Some(v) = value {
                        let r = decode::<AuditRecord>(&v)?;
                        if past_until(filter, &r) {
                            return Ok(page);
                        }
                        if filter.matches(&r) {
                            page.records.push(r);
                        }
                    }
                    last = seq;
                    examined += 1;
                    if page.records.len() >= limit || examined >= budget {
                        page.next = Some(last);
                        return Ok(page);
                    }
                }
            }
        }
        None => {
            let start = match (after, filter.since_ms) {
                (0, Some(since)) => start_at(store, since.saturating_sub(TIME_SLACK_MS)).await?,
                _ => after,
            };
            let mut cursor = (start > 0).then(|| record_key(start));
            loop {
                let entries = store
                    .scan(Tree::Audit, RECORD_PREFIX, cursor.as_deref(), chunk)
                    .await?;
                let Some((tail, _)) = entries.last() else {
                    return Ok(page);
                };
                cursor = Some(tail.clone());
                for (key, value) in &entries {
                    let r = decode::<AuditRecord>(value)?;
                    if past_until(filter, &r) {
                        return Ok(page);
                    }
                    if filter.matches(&r) {
                        page.records.push(r);
                    }
                    last = seq_of(key).unwrap_or(last);
                    examined += 1;
                    if page.records.len() >= limit || examined >= budget {
                        page.next = Some(last);
                        return Ok(page);
                    }
                }
            }
        }
    }
}

fn past_until(filter: &Filter, r: &AuditRecord) -> bool {
    filter
        .until_ms
        .is_some_and(|until| r.time_ms >= until.saturating_add(TIME_SLACK_MS))
}

/// The sequence to start after so that the first record read is the first made at or after
/// `time_ms` (a binary search over the records, whose times nearly rise with their sequence).
async fn start_at(store: &dyn AsyncStore, time_ms: i64) -> Result<u64, AuditError> {
    let Some(first) = crate::appender::first_seq(store).await? else {
        return Ok(0);
    };
    let head = match store.get(Tree::Audit, HEAD_KEY).await? {
        Some(b) => decode::<HeadRecord>(&b)?.seq,
        None => return Ok(0),
    };
    // The first record in [lo, hi] with time >= time_ms; records between first and head exist.
    let (mut lo, mut hi) = (first, head + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let time = match store.get(Tree::Audit, &record_key(mid)).await? {
            Some(v) => decode::<AuditRecord>(&v)?.time_ms,
            // Pruned meanwhile: everything that old is gone.
            None => i64::MIN,
        };
        if time >= time_ms {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo.saturating_sub(1))
}
