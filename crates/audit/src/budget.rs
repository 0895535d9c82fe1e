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
/// to one group per service and outcome without kind or reason (reasons may come from callers'
/// inputs).
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

/// The summary's event name.
pub(crate) const SUMMARY_KIND: &str = "refusals_unrecorded";

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
        // A flood lands in a group it already has: counted there without copying a string.
        if let Some((_, tally)) = s.unrecorded.iter_mut().find(|(g, _)| {
            g.service == r.service
                && g.kind == r.kind
                && g.outcome == r.outcome
                && g.reason == r.reason
        }) {
            tally.count_one(r);
            return false;
        }
        let group = Group {
            service: r.service.clone(),
            kind: r.kind.clone(),
            outcome: r.outcome.clone(),
            reason: r.reason.clone(),
        };
        s.add(
            group,
            Tally {
                count: 1,
                first_ms: r.time_ms,
                last_ms: r.time_ms,
                clients: vec![r.client_id.clone()],
                actors: vec![r.actor.clone()],
            },
        );
        false
    }

    /// The counts so far, as records (by `system`), and a fresh start.
    pub(crate) fn take(&self) -> Vec<AuditRecord> {
        let unrecorded = std::mem::take(&mut self.state.lock().unrecorded);
        // The catch-all keeps the outcome: a record says `failed` only of the server's own
        // failures.
        unrecorded
            .into_iter()
            .map(|(g, t)| {
                let outcome = if g.outcome == crate::Outcome::Failed.name() {
                    crate::Outcome::Failed
                } else {
                    crate::Outcome::Refused
                };
                let mut r = crate::Event::new(SUMMARY_KIND, outcome)
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
            s.add(group, tally);
        }
    }
}

impl State {
    /// Adds `tally` to its group's count; past [`MAX_GROUPS`] groups, to its service's and
    /// outcome's group without kind or reason.
    fn add(&mut self, mut group: Group, tally: Tally) {
        let mut at = self.unrecorded.iter().position(|(g, _)| *g == group);
        if at.is_none() && self.unrecorded.len() >= MAX_GROUPS {
            (group.kind, group.reason) = (String::new(), String::new());
            at = self.unrecorded.iter().position(|(g, _)| *g == group);
        }
        let Some(at) = at else {
            let mut fresh = Tally {
                count: 0,
                first_ms: tally.first_ms,
                last_ms: tally.last_ms,
                clients: Vec::new(),
                actors: Vec::new(),
            };
            fresh.merge(tally);
            self.unrecorded.push((group, fresh));
            return;
        };
        self.unrecorded[at].1.merge(tally);
    }
}

impl Tally {
    fn count_one(&mut self, r: &AuditRecord) {
        self.count += 1;
        self.first_ms = self.first_ms.min(r.time_ms);
        self.last_ms = self.last_ms.max(r.time_ms);
        sample(&mut self.clients, &r.client_id);
        sample(&mut self.actors, &r.actor);
    }

    fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.first_ms = self.first_ms.min(other.first_ms);
        self.last_ms = self.last_ms.max(other.last_ms);
        for c in &other.clients {
            sample(&mut self.clients, c);
        }
        for a in &other.actors {
            sample(&mut self.actors, a);
        }
    }
}

fn sample(kept: &mut Vec<String>, v: &str) {
    if !v.is_empty() && kept.len() < SAMPLES && !kept.iter().any(|k| k == v) {
        kept.push(v.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Outcome};

    fn refusal(kind: &'static str, outcome: Outcome, reason: &str, client: &str) -> AuditRecord {
        let mut r = Event::new(kind, outcome).reason(reason).client(client).0;
        r.service = "authz".into();
        r
    }

    fn counts(records: &[AuditRecord]) -> u64 {
        records
            .iter()
            .map(|r| r.details["count"].parse::<u64>().unwrap())
            .sum()
    }

    #[test]
    fn past_the_allowance_refusals_are_counted_by_group_and_successes_never() {
        let b = RefusalBudget::new(2);
        let r = refusal("token_refused", Outcome::Refused, "invalid_client", "a");
        let admitted = (0..10).filter(|_| b.admit(&r)).count();
        assert_eq!(admitted, 2, "the window is a second; this took far less");
        // Another kind has its own allowance; successes are always recorded.
        assert!(b.admit(&refusal("sign_in_refused", Outcome::Refused, "", "")));
        assert!((0..10).all(|_| b.admit(&Event::new("token_issued", Outcome::Success).0)));
        let failed = refusal("token_refused", Outcome::Failed, "server_error", "b");
        assert!(!b.admit(&failed));
        let taken = b.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(counts(&taken), 9);
        let by_outcome: Vec<_> = taken
            .iter()
            .map(|r| (r.outcome.as_str(), r.reason.as_str()))
            .collect();
        assert!(
            by_outcome.contains(&("failed", "server_error")),
            "{by_outcome:?}"
        );
        assert!(
            by_outcome.contains(&("refused", "invalid_client")),
            "{by_outcome:?}"
        );
        assert!(b.take().is_empty(), "taken once");
    }

    #[test]
    fn groups_are_bounded_and_a_restored_count_merges_with_its_examples() {
        let b = RefusalBudget::new(1);
        assert!(b.admit(&refusal("token_refused", Outcome::Refused, "r", "first")));
        // Reasons may come from inputs: past the bound they share one group.
        for i in 0..(MAX_GROUPS + 20) {
            assert!(!b.admit(&refusal(
                "token_refused",
                Outcome::Refused,
                &format!("r{i}"),
                &format!("c{i}")
            )));
        }
        let taken = b.take();
        assert_eq!(taken.len(), MAX_GROUPS + 1);
        assert_eq!(counts(&taken), (MAX_GROUPS + 20) as u64);
        let catch_all = taken
            .iter()
            .find(|r| !r.details.contains_key("kind"))
            .unwrap();
        assert_eq!(
            (catch_all.outcome.as_str(), catch_all.reason.as_str()),
            ("refused", "")
        );
        assert_eq!(catch_all.details["count"], "20");

        // A count the log did not take comes back, merged with what was counted meanwhile.
        assert!(!b.admit(&refusal("token_refused", Outcome::Refused, "r0", "later")));
        b.restore(taken);
        let again = b.take();
        assert_eq!(again.len(), MAX_GROUPS + 1);
        assert_eq!(counts(&again), (MAX_GROUPS + 21) as u64);
        let r0 = again.iter().find(|r| r.reason == "r0").unwrap();
        assert_eq!(
            (
                r0.details["count"].as_str(),
                r0.details["client_0"].as_str(),
                r0.details["client_1"].as_str()
            ),
            ("2", "later", "c0")
        );
    }
}
