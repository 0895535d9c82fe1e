//! Refusals recorded one by one up to a rate. The log is bounded by size, so a flood of
//! refusals (a botnet trying secrets, a scanner sending garbage) would otherwise push out the
//! records an investigator needs, at the flooder's pace. Past
//! [`Settings::max_refusals_per_second`](crate::Settings) in a second, refusals are counted by
//! service, kind and reason, and each count becomes one `refusals_unrecorded` record (with the
//! first and last time) on the appender's next tick. Successes are never counted away: each is
//! work Writ did, and bounded by it.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::record::AuditRecord;

/// Distinct (service, kind, reason) counts kept between summaries; past it, counts go to one
/// group without kind or reason (reasons come from callers' inputs).
const MAX_GROUPS: usize = 64;

#[derive(Debug)]
pub(crate) struct RefusalBudget {
    per_second: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    second: i64,
    used: u32,
    unrecorded: BTreeMap<(String, String, String), Tally>,
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    count: u64,
    first_ms: i64,
    last_ms: i64,
}

impl RefusalBudget {
    /// `per_second == 0`: no bound.
    pub(crate) fn new(per_second: u32) -> Self {
        RefusalBudget {
            per_second,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether `r` is recorded on its own; if not, it is counted.
    pub(crate) fn admit(&self, r: &AuditRecord) -> bool {
        if self.per_second == 0 || r.outcome == crate::Outcome::Success.name() {
            return true;
        }
        let mut s = self.state.lock();
        let second = r.time_ms.div_euclid(1000);
        if second != s.second {
            s.second = second;
            s.used = 0;
        }
        if s.used < self.per_second {
            s.used += 1;
            return true;
        }
        let mut key = (r.service.clone(), r.kind.clone(), r.reason.clone());
        if !s.unrecorded.contains_key(&key) && s.unrecorded.len() >= MAX_GROUPS {
            key = (r.service.clone(), String::new(), String::new());
        }
        let tally = s.unrecorded.entry(key).or_insert(Tally {
            count: 0,
            first_ms: r.time_ms,
            last_ms: r.time_ms,
        });
        tally.count += 1;
        tally.first_ms = tally.first_ms.min(r.time_ms);
        tally.last_ms = tally.last_ms.max(r.time_ms);
        false
    }

    /// The counts so far, as records (by `system`), and a fresh start.
    pub(crate) fn take(&self) -> Vec<AuditRecord> {
        let unrecorded = std::mem::take(&mut self.state.lock().unrecorded);
        unrecorded
            .into_iter()
            .map(|((service, kind, reason), t)| {
                let mut r = crate::Event::new("refusals_unrecorded", crate::Outcome::Refused)
                    .actor("system")
                    .reason(&reason)
                    .detail("kind", &kind)
                    .detail("count", t.count)
                    .detail("first_ms", t.first_ms)
                    .detail("last_ms", t.last_ms)
                    .detail("per_second", self.per_second)
                    .0;
                r.service = service;
                r
            })
            .collect()
    }
}
