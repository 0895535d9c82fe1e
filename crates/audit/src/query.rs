//! Finding records: by grant id, client or subject through their indexes, otherwise in order
//! of sequence from the first record at or after a time; every other filter applied to what
//! is read. Pages are in order of sequence; the cursor is the last sequence examined.

use writ_store::{AsyncStore, Tree, decode};

use crate::AuditError;
use crate::record::{
    AuditRecord, Blocks, HEAD_KEY, HeadRecord, Indexed, block_key, index_prefix, seq_of, stored_at,
    unpack,
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
    let mut pager = Pager {
        filter,
        after,
        limit,
        budget: limit * EXAMINED_PER_RESULT,
        examined: 0,
        page: Page::default(),
    };
    let chunk = limit.min(256) + 1;
    match filter.index() {
        Some((field, value)) => {
            // An index entry names a block holding a record with the value.
            let prefix = index_prefix(field, value);
            let mut cursor =
                (after > 0).then(|| [prefix.as_slice(), &after.to_be_bytes()].concat());
            loop {
                let entries = store
                    .scan(Tree::Audit, &prefix, cursor.as_deref(), chunk)
                    .await?;
                let Some((tail, _)) = entries.last() else {
                    return Ok(pager.page);
                };
                cursor = Some(tail.clone());
                let keys: Vec<Vec<u8>> = entries
                    .iter()
                    .filter_map(|(k, _)| seq_of(k))
                    .map(block_key)
                    .collect();
                let values = store.get_many(Tree::Audit, &keys).await?;
                for (key, value) in keys.iter().zip(values) {
                    // An index entry whose block was pruned meanwhile is skipped.
                    let Some(records) = value.and_then(|v| unpack(key, &v)) else {
                        continue;
                    };
                    for (seq, stored) in &records {
                        if pager.take(*seq, stored)? {
                            return Ok(pager.page);
                        }
                    }
                }
            }
        }
        None => {
            let start = match (after, filter.since_ms) {
                (0, Some(since)) => start_at(store, since.saturating_sub(TIME_SLACK_MS)).await?,
                _ => after,
            };
            let mut blocks = Blocks::new(store, start, chunk.div_ceil(8).max(2));
            loop {
                let read = blocks.next().await?;
                if read.is_empty() {
                    return Ok(pager.page);
                }
                for block in read {
                    for (seq, stored) in block.records.iter().flatten() {
                        if *seq > start && pager.take(*seq, stored)? {
                            return Ok(pager.page);
                        }
                    }
                }
            }
        }
    }
}

/// A page being filled from records read in order.
struct Pager<'a> {
    filter: &'a Filter,
    after: u64,
    limit: usize,
    /// Records a page may examine (see [`EXAMINED_PER_RESULT`]).
    budget: usize,
    examined: usize,
    page: Page,
}

impl Pager<'_> {
    /// Looks at the record at `seq`; `true`: the page is done.
    fn take(&mut self, seq: u64, stored: &[u8]) -> Result<bool, AuditError> {
        if seq <= self.after {
            return Ok(false);
        }
        let r = decode::<AuditRecord>(stored)?;
        if past_until(self.filter, &r) {
            return Ok(true);
        }
        self.examined += 1;
        if self.filter.matches(&r) {
            self.page.records.push(r);
        }
        if self.page.records.len() >= self.limit || self.examined >= self.budget {
            self.page.next = Some(seq);
            return Ok(true);
        }
        Ok(false)
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
        let time = match stored_at(store, mid).await? {
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
