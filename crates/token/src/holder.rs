//! What a Biscuit's holder may append, judged from the token's bytes before any signature is
//! checked or any Datalog runs.
//!
//! Anyone holding a Biscuit can append a block, so a block after the authority block is bounded
//! by what a verifier can afford to evaluate, not by trust. biscuit-auth enforces its time limit
//! only between two rule iterations and between two check queries: whatever a single query
//! costs runs to its end. Writ therefore accepts, in a holder's block, only queries whose cost is
//! linear in the facts they read and in their own size:
//!
//! - checks only (no facts, no rules: they would grant nothing, since Writ reads claims from the
//!   authority block alone, and rules iterate);
//! - each query on at most one predicate (a join of several runs for their cross product);
//! - no closures over collections (`.all`, `.any`: nested over arrays they run for minutes;
//!   `&&` and `||` are fine), no regular
//!   expressions (compiled on every evaluation, at a cost their length does not bound), no
//!   foreign functions;
//! - at most [`MAX_OPS_PER_QUERY`] operations and [`MAX_ELEMENTS_PER_QUERY`] collection elements
//!   per query, and [`MAX_QUERIES_PER_BLOCK`] queries per block.
//!
//! One query then costs at most (facts matching its predicate) × (its operations) × (the
//! collections it builds), all bounded, and the time limit between queries bounds their sum.
//! The same walk records every date the token compares against ([`BiscuitShape::dates`]): a
//! verdict on a Biscuit can only change at one of them or at its expiry, which is what lets a
//! verifier cache it.

use biscuit_auth::format::schema::{self, op, term};
use biscuit_prost::Message;

use crate::error::TokenError;

/// Queries (of checks, each `or` branch counted) a block after the authority block may hold.
pub const MAX_QUERIES_PER_BLOCK: usize = 32;
/// Operations one query of a holder's block may hold.
pub const MAX_OPS_PER_QUERY: usize = 64;
/// Collection elements (sets, arrays, maps, nested ones counted) one query of a holder's block
/// may hold.
pub const MAX_ELEMENTS_PER_QUERY: usize = 256;

/// What Writ read from a Biscuit before verifying it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BiscuitShape {
    /// Blocks, the authority block included.
    pub blocks: usize,
    /// Every date (seconds) any block states or compares against, sorted and deduplicated.
    pub dates: Vec<u64>,
}

impl BiscuitShape {
    /// The earliest of its dates at or after `t` (seconds), if any. A verdict reached when the
    /// Datalog clock read `t` stands while the clock stays before it: every comparison with an
    /// earlier date is settled for good once the clock has passed that date.
    pub fn first_date_from(&self, t: i64) -> Option<i64> {
        first_date_from(&self.dates, t)
    }
}

/// The earliest of sorted `dates` at or after `t`.
pub fn first_date_from(dates: &[u64], t: i64) -> Option<i64> {
    let t = u64::try_from(t).unwrap_or(0);
    let i = dates.partition_point(|d| *d < t);
    dates.get(i).map(|d| i64::try_from(*d).unwrap_or(i64::MAX))
}

/// Reads `token` (a Biscuit's bytes, decoded from base64) without verifying it: refuses more
/// than `max_blocks` blocks and any block after the authority block that holds more than the
/// module's rules allow; returns its shape.
pub fn inspect_biscuit(token: &[u8], max_blocks: usize) -> Result<BiscuitShape, TokenError> {
    const MALFORMED: TokenError = TokenError::Malformed("not a Biscuit");
    let biscuit = schema::Biscuit::decode(token).map_err(|_| MALFORMED)?;
    let blocks = 1 + biscuit.blocks.len();
    if blocks > max_blocks {
        return Err(TokenError::TooLarge);
    }
    let mut dates = Vec::new();
    let authority =
        schema::Block::decode(biscuit.authority.block.as_slice()).map_err(|_| MALFORMED)?;
    block_dates(&authority, &mut dates);
    for signed in &biscuit.blocks {
        let block = schema::Block::decode(signed.block.as_slice()).map_err(|_| MALFORMED)?;
        check_holder_block(&block)?;
        block_dates(&block, &mut dates);
    }
    dates.sort_unstable();
    dates.dedup();
    Ok(BiscuitShape { blocks, dates })
}

/// What a verifier's own Datalog (its facts, rules, checks and policies, from
/// [`biscuit_auth::AuthorizerBuilder::snapshot`]) adds to the instants at which a verdict can
/// change: its dates, and whether it calls foreign functions (whose answers may change at any
/// time, so its verdicts cannot be cached).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyShape {
    pub dates: Vec<u64>,
    pub calls_foreign_functions: bool,
}

/// The [`PolicyShape`] of a verifier's Datalog.
pub fn inspect_policies(policies: &biscuit_auth::AuthorizerBuilder) -> PolicyShape {
    let Ok(snapshot) = policies.snapshot() else {
        // Cannot be read: assume the worst.
        return PolicyShape {
            dates: Vec::new(),
            calls_foreign_functions: true,
        };
    };
    let world = snapshot.world;
    let mut walk = Walk::default();
    let block = &world.authorizer_block;
    block
        .facts
        .iter()
        .for_each(|f| walk.predicate(&f.predicate));
    let rules = block
        .rules
        .iter()
        .chain(block.checks.iter().flat_map(|c| c.queries.iter()))
        .chain(
            world
                .authorizer_policies
                .iter()
                .flat_map(|p| p.queries.iter()),
        );
    rules.for_each(|r| walk.rule(r));
    walk.dates.sort_unstable();
    walk.dates.dedup();
    PolicyShape {
        dates: walk.dates,
        calls_foreign_functions: walk.foreign,
    }
}

fn check_holder_block(block: &schema::Block) -> Result<(), TokenError> {
    use TokenError::InvalidAttenuation as Refused;
    if !block.facts.is_empty() || !block.rules.is_empty() {
        return Err(Refused("a block may only add checks"));
    }
    let queries: Vec<&schema::Rule> = block.checks.iter().flat_map(|c| &c.queries).collect();
    if queries.len() > MAX_QUERIES_PER_BLOCK {
        return Err(Refused("a block holds too many checks"));
    }
    for query in queries {
        if query.body.len() > 1 {
            return Err(Refused("a check may read one predicate only"));
        }
        let mut walk = Walk::default();
        walk.rule(query);
        if walk.closures > 0 {
            return Err(Refused("a check may not use closures"));
        }
        if walk.regex {
            return Err(Refused("a check may not use regular expressions"));
        }
        if walk.foreign {
            return Err(Refused("a check may not call foreign functions"));
        }
        if walk.ops > MAX_OPS_PER_QUERY || walk.elements > MAX_ELEMENTS_PER_QUERY {
            return Err(Refused("a check is too large"));
        }
    }
    Ok(())
}

fn block_dates(block: &schema::Block, dates: &mut Vec<u64>) {
    let mut walk = Walk::default();
    block
        .facts
        .iter()
        .for_each(|f| walk.predicate(&f.predicate));
    block
        .rules
        .iter()
        .chain(block.checks.iter().flat_map(|c| c.queries.iter()))
        .for_each(|r| walk.rule(r));
    dates.append(&mut walk.dates);
}

/// Counts what a rule or query holds.
#[derive(Default)]
struct Walk {
    ops: usize,
    elements: usize,
    closures: usize,
    regex: bool,
    foreign: bool,
    dates: Vec<u64>,
}

impl Walk {
    fn rule(&mut self, rule: &schema::Rule) {
        self.predicate(&rule.head);
        rule.body.iter().for_each(|p| self.predicate(p));
        for e in &rule.expressions {
            self.ops(&e.ops);
        }
    }

    fn predicate(&mut self, p: &schema::Predicate) {
        p.terms.iter().for_each(|t| self.term(t));
    }

    fn ops(&mut self, ops: &[schema::Op]) {
        use schema::op_binary::Kind as Binary;
        use schema::op_unary::Kind as Unary;
        for o in ops {
            self.ops += 1;
            match &o.content {
                Some(op::Content::Value(t)) => self.term(t),
                Some(op::Content::Unary(u)) => {
                    self.foreign |= u.kind == Unary::Ffi as i32;
                }
                Some(op::Content::Binary(b)) => {
                    self.foreign |= b.kind == Binary::Ffi as i32;
                    self.regex |= b.kind == Binary::Regex as i32;
                }
                Some(op::Content::Closure(c)) => {
                    // A closure without parameters is the lazy side of `&&` or `||`: run at
                    // most once. With parameters it is the body of `.all` or `.any`: run once
                    // per element, and nested, once per combination.
                    if !c.params.is_empty() {
                        self.closures += 1;
                    }
                    self.ops(&c.ops);
                }
                None => {}
            }
        }
    }

    fn term(&mut self, t: &schema::Term) {
        match &t.content {
            Some(term::Content::Date(d)) => self.dates.push(*d),
            Some(term::Content::Set(s)) => self.elements(&s.set),
            Some(term::Content::Array(a)) => self.elements(&a.array),
            Some(term::Content::Map(m)) => {
                self.elements += m.entries.len();
                m.entries.iter().for_each(|e| self.term(&e.value));
            }
            _ => {}
        }
    }

    fn elements(&mut self, terms: &[schema::Term]) {
        self.elements += terms.len();
        terms.iter().for_each(|t| self.term(t));
    }
}
