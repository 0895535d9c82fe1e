//! Refusals recorded one by one up to a rate. The log is bounded by size, so a flood of
//! refusals (a botnet trying secrets, a scanner sending garbage) would otherwise push out the
//! records an investigator needs, at the flooder's pace. Each (service, kind) has its own
//! [`Settings::max_refusals_per_second`](crate::Settings), so a flood of one kind (bad client
//! secrets) does not turn another (failed admin logins) into counts. Past it, refusals are
//! counted by service, kind, outcome and reason, with the first few clients and actors seen,
//! and each count becomes one `refusals_unrecorded` record on the appender's next tick.
//! Successes are never counted away: each is work Writ did, and bounded by it.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::record::AuditRecord;

/// Distinct (service, kind, outcome, reason) counts kept between summaries; past it, counts go
/// to one group per service without kind or reason (reasons may come from callers' inputs).
const MAX_GROUPS: usize = 64;
/// Distinct (service, kind) allowances tracked (kinds are Writ's own closed set).
const MAX_ALLOWANCES: usize = 256;
/// Client ids and actors kept as examples in each count.
const SAMPLES: usize = 4;
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct RefusalBudget {
    per_second: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// (service, kind) -> (window start, admitted in it). Monotonic time: a clock stepped back
    /// neither grants nor withholds a window.
    allowances: Vec<((String, String), (Instant, u32))>,
    unrecorded: Vec<(Group, Tally)>,
}

#[derive(Debug, PartialEq, Eq)]
struct Group {
    service: String,
    kind: String,
    outcome: String,
    reason: String,
}

#[derive(Debug)]
struct Tally {
    count: u64,
    first_ms: i64,
    last_ms: i64,
    clients: Vec<String>,
    actors: Vec<String>,
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
        let now = Instant::now();
        let mut s = self.state.lock();
        let found = s
            .allowances
            .iter()
            .position(|((service, kind), _)| *service == r.service && *kind == r.kind);
        match found {
            Some(at) => {
                let (start, used) = &mut s.allowances[at].1;
                if now.duration_since(*start) >= WINDOW {
                    (*start, *used) = (now, 0);
                }
                if *used < self.per_second {
                    *used += 1;
                    return true;
                }
            }
            None if s.allowances.len() < MAX_ALLOWANCES => {
                s.allowances
                    .push(((r.service.clone(), r.kind.clone()), (now, 1)));
                return true;
            }
            None => {}
        }
        let full = s.unrecorded.len() >= MAX_GROUPS;
        let at = s.unrecorded.iter().position(|(g, _)| {
            g.service == r.service
                && ((g.kind == r.kind && g.outcome == r.outcome && g.reason == r.reason)
                    || (full && g.kind.is_empty()))
        });
        let at = match at {
            Some(at) => at,
            None => {
                let (kind, outcome, reason) = if full {
                    Default::default()
                } else {
                    (r.kind.clone(), r.outcome.clone(), r.reason.clone())
                };
                let group = Group {
                    service: r.service.clone(),
                    kind,
                    outcome,
                    reason,
                };
                let tally = Tally {
                    count: 0,
                    first_ms: r.time_ms,
                    last_ms: r.time_ms,
                    clients: Vec::new(),
                    actors: Vec::new(),
                };
                s.unrecorded.push((group, tally));
                s.unrecorded.len() - 1
            }
        };
        let tally = &mut s.unrecorded[at].1;
        tally.count += 1;
        tally.first_ms = tally.first_ms.min(r.time_ms);
        tally.last_ms = tally.last_ms.max(r.time_ms);
        sample(&mut tally.clients, &r.client_id);
        sample(&mut tally.actors, &r.actor);
        false
    }

    /// The counts so far, as records (by `system`), and a fresh start.
    pub(crate) fn take(&self) -> Vec<AuditRecord> {
        let unrecorded = std::mem::take(&mut self.state.lock().unrecorded);
        unrecorded
            .into_iter()
            .map(|(g, t)| {
                let outcome = if g.outcome == crate::Outcome::Failed.name() {
                    crate::Outcome::Failed
                } else {
                    crate::Outcome::Refused
                };
                let mut r = crate::Event::new("refusals_unrecorded", outcome)
                    .actor("system")
                    .reason(&g.reason)
                    .detail("kind", &g.kind)
                    .detail("count", t.count)
                    .detail("first_ms", t.first_ms)
                    .detail("last_ms", t.last_ms)
                    .detail("per_second", self.per_second)
                    .0;
                // Examples, each its own field: never joined into one string a value could forge.
                for (i, c) in t.clients.iter().enumerate() {
                    r.details.insert(format!("client_{i}"), c.clone());
                }
                for (i, a) in t.actors.iter().enumerate() {
                    r.details.insert(format!("actor_{i}"), a.clone());
                }
                r.service = g.service;
                r
            })
            .collect()
    }

    /// Counts that could not be recorded (the log refused their records): kept for the next
    /// summary.
    pub(crate) fn restore(&self, records: Vec<AuditRecord>) {
        let mut s = self.state.lock();
        for r in records {
            let count = r.details.get("count").and_then(|c| c.parse().ok());
            let time = |k: &str| r.details.get(k).and_then(|v| v.parse().ok());
            let (Some(count), Some(first_ms), Some(last_ms)) =
                (count, time("first_ms"), time("last_ms"))
            else {
                continue;
            };
            let group = Group {
                service: r.service.clone(),
                kind: r.details.get("kind").cloned().unwrap_or_default(),
                outcome: r.outcome.clone(),
                reason: r.reason.clone(),
            };
            let samples = |prefix: &str| {
                (0..SAMPLES)
                    .filter_map(|i| r.details.get(&format!("{prefix}_{i}")).cloned())
                    .collect()
            };
            let tally = Tally {
                count,
                first_ms,
                last_ms,
                clients: samples("client"),
                actors: samples("actor"),
            };
            match s.unrecorded.iter_mut().find(|(g, _)| *g == group) {
                Some((_, t)) => {
                    t.count += tally.count;
                    t.first_ms = t.first_ms.min(tally.first_ms);
                    t.last_ms = t.last_ms.max(tally.last_ms);
                }
                None => s.unrecorded.push((group, tally)),
            }
        }
    }
}

fn sample(kept: &mut Vec<String>, v: &str) {
    if !v.is_empty() && kept.len() < SAMPLES && !kept.iter().any(|k| k == v) {
        kept.push(v.to_owned());
    }
}
