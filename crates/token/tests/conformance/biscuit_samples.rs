//! The Biscuit specification samples (`tests/vectors/biscuit-samples`: `samples.json` and the
//! `test*.bc` tokens, as shipped with biscuit-auth 6.0.0), run through [`authorize_biscuit`], the
//! Biscuit core [`writ_token::TokenVerifier`] itself uses, with Writ's default run limits (but
//! for time, see below).
//!
//! For every sample and every validation in it, the sample's authorizer code runs against the
//! token and the outcome must match the spec's: success or failure, the kind of failure, and the
//! revocation ids. Writ adds one rule of its own on top of this core, for its access tokens only:
//! [`inspect_biscuit`]. The samples that rule refuses are listed below with the reason,
//! and the test keeps that list exact.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use writ_token::biscuit_auth::builder::Term;
use writ_token::biscuit_auth::datalog::ExternFunc;
use writ_token::biscuit_auth::{AuthorizerBuilder, PublicKey};
use writ_token::{BiscuitLimits, TokenError, authorize_biscuit, inspect_biscuit};

use super::support::{read_vector, read_vector_json};

const DIR: &str = "biscuit-samples";

/// Samples a Writ verifier refuses although their signatures hold: Writ's attenuation blocks
/// carry only checks on one predicate each ([`inspect_biscuit`]), because facts, rules
/// and joins in a block any holder can append let that holder make a verifier work without
/// bound. The core path still runs these to the specification's result.
const REFUSED_BY_WRIT: [(&str, &str); 13] = [
    ("test001_basic.bc", "a check joining three predicates"),
    (
        "test007_scoped_rules.bc",
        "a rule, a fact and a three-predicate check",
    ),
    (
        "test008_scoped_checks.bc",
        "a three-predicate check and a fact",
    ),
    ("test010_authorizer_scope.bc", "a fact"),
    ("test013_block_rules.bc", "rules"),
    ("test016_caveat_head_name.bc", "a fact"),
    ("test019_generating_ambient_from_variables.bc", "a rule"),
    ("test020_sealed.bc", "a check joining three predicates"),
    ("test023_execution_scope.bc", "a fact"),
    ("test024_third_party.bc", "a fact in a third-party block"),
    (
        "test026_public_keys_interning.bc",
        "facts, a rule and two-predicate checks",
    ),
    ("test036_secp256r1.bc", "a check joining three predicates"),
    (
        "test037_secp256r1_third_party.bc",
        "a fact and a three-predicate check",
    ),
];

/// The foreign functions a sample's authorizer provides (test035): the same `extern::test` as
/// the specification's generator, registered the way a service would, through its policies.
fn sample_functions(file: &str) -> HashMap<String, ExternFunc> {
    if file != "test035_ffi.bc" {
        return HashMap::new();
    }
    let test = ExternFunc::new(Arc::new(|left, right| match (left, right) {
        (t, None) => Ok(t),
        (Term::Str(l), Some(Term::Str(r))) if l == r => Ok(Term::Str("equal strings".into())),
        (Term::Str(_), Some(Term::Str(_))) => Ok(Term::Str("different strings".into())),
        _ => Err("unsupported operands".into()),
    }));
    HashMap::from([("test".to_owned(), test)])
}

/// What a spec result (`{"Ok": n}` or `{"Err": {...}}`) means for Writ's error type.
fn expected_outcome(result: &Value) -> Result<(), fn(&TokenError) -> bool> {
    let Some(err) = result.get("Err") else {
        assert!(result.get("Ok").is_some(), "unknown result {result}");
        return Ok(());
    };
    let kind = err
        .as_object()
        .and_then(|o| o.keys().next())
        .map(String::as_str);
    Err(match kind {
        Some("Format") if err["Format"].get("Signature").is_some() => {
            |e| *e == TokenError::BadSignature
        }
        Some("Format") => |e| matches!(e, TokenError::Malformed(_)),
        Some("FailedLogic" | "Execution") => |e| *e == TokenError::Denied,
        Some("RunLimit") => |e| *e == TokenError::RunLimit,
        _ => panic!("unknown error kind in {result}"),
    })
}

#[test]
fn biscuit_samples_agree_with_the_specification() {
    let samples = read_vector_json(&format!("{DIR}/samples.json"));
    let root = PublicKey::from_bytes_hex(
        samples["root_public_key"].as_str().unwrap(),
        writ_token::biscuit_auth::Algorithm::Ed25519,
    )
    .unwrap();
    let cases = samples["testcases"].as_array().unwrap();
    // Writ's limits, except time: it is wall-clock, and a loaded CI machine running a debug
    // build could turn a logic result into RunLimit. The time limit has tests of its own.
    let limits = BiscuitLimits {
        max_time: std::time::Duration::from_secs(1),
        ..BiscuitLimits::default()
    };
    let (mut validations, mut ran) = (0, BTreeSet::new());
    let mut refused_by_writ = BTreeSet::new();
    for case in cases {
        let file = case["filename"].as_str().unwrap();
        let token = read_vector(&format!("{DIR}/{file}"));
        for (name, validation) in case["validations"].as_object().unwrap() {
            let what = format!("{file} validation {name:?}");
            let code = validation["authorizer_code"].as_str().unwrap();
            let policies = AuthorizerBuilder::new()
                .code(code)
                .unwrap_or_else(|e| panic!("{what}: authorizer code does not parse: {e}"))
                .register_extern_funcs(sample_functions(file));
            let mut revocation_ids = None;
            let outcome = authorize_biscuit(&token, root, policies, limits, |biscuit, _| {
                revocation_ids = Some(
                    biscuit
                        .revocation_identifiers()
                        .iter()
                        .map(hex::encode)
                        .collect::<Vec<_>>(),
                );
                Ok(())
            });
            match (expected_outcome(&validation["result"]), &outcome) {
                (Ok(()), Ok(_)) => {}
                (Err(kind), Err(e)) => assert!(kind(e), "{what}: failed with {e:?}"),
                (_, got) => panic!(
                    "{what}: expected {}, got {:?}",
                    validation["result"],
                    got.as_ref().map(|_| ())
                ),
            }
            // Whenever the signatures held, the ids are the spec's, block by block, and Writ's
            // own rule for holders' blocks (which a verifier applies first) is recorded.
            if let Some(ids) = revocation_ids {
                if inspect_biscuit(&token, usize::MAX).is_err() {
                    refused_by_writ.insert(file);
                }
                let expected: Vec<String> =
                    serde_json::from_value(validation["revocation_ids"].clone()).unwrap();
                assert_eq!(ids, expected, "{what}: revocation ids");
            }
            validations += 1;
        }
        ran.insert(file);
    }
    eprintln!(
        "biscuit samples: {} of {} samples ({validations} validations) agree with the \
         specification; a Writ verifier refuses the attenuation blocks of {}",
        ran.len(),
        cases.len(),
        refused_by_writ.len()
    );
    assert_eq!(ran.len(), cases.len());
    assert_eq!(
        refused_by_writ,
        REFUSED_BY_WRIT.iter().map(|(file, _)| *file).collect(),
        "the samples Writ's attenuation rule refuses changed: update REFUSED_BY_WRIT"
    );
}
