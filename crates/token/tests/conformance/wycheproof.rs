//! Project Wycheproof (`tests/vectors/wycheproof`, commit dac1dd4) against Writ's verifier,
//! for the two algorithms it accepts, EdDSA and ES256.
//!
//! - `json_web_signature_test.json`: every compact JWS through [`TokenVerifier::verify_jws`]
//!   with a key set holding the group's public key, read the way Writ reads another issuer's
//!   JWKS ([`parse_jwk_set`]). `valid` must verify and `invalid` must not; groups whose key
//!   Writ does not allow (HS*, RS*, PS*, ES512) must be refused in full. The file has ES256
//!   groups but no EdDSA one; Ed25519 is covered by `ed25519_test.json` below.
//! - `json_web_key_test.json`: the same, with the group's whole key set.
//! - `ed25519_test.json` and `ecdsa_secp256r1_sha256_p1363_test.json`: every signature through
//!   [`VerificationKey::verify_signature`], the primitive the JWT path calls.
//!
//! None of these files has `acceptable` cases at this commit; each test asserts so, and would
//! have to record the behaviour chosen for them if an update brought some.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use writ_token::{
    Algorithm, KeySet, ManualClock, SigningKey, TokenError, TokenVerifier, VerificationKey,
    VerifierConfig, parse_jwk_set,
};

use super::support::{NOW, b64, read_vector_json};

const DIR: &str = "wycheproof";

/// Outcomes of one file, by Wycheproof's expected result.
#[derive(Debug, Default)]
struct Tally {
    /// (expected result, accepted?) -> count
    counts: BTreeMap<(String, bool), usize>,
    /// Cases refused because their key or algorithm is not on Writ's allow-list.
    refused_by_policy: usize,
    /// How many of those Wycheproof expects a verifier of that algorithm to accept.
    refused_valid: usize,
    /// Wycheproof ids whose outcome disagrees with the expected result.
    disagreements: Vec<String>,
}

impl Tally {
    fn record(&mut self, expected: &str, accepted: bool, id: String) {
        *self
            .counts
            .entry((expected.to_owned(), accepted))
            .or_default() += 1;
        let agrees = match expected {
            "valid" => accepted,
            "invalid" => !accepted,
            _ => true, // "acceptable": counted, asserted separately
        };
        if !agrees {
            self.disagreements.push(id);
        }
    }

    fn count(&self, expected: &str, accepted: bool) -> usize {
        self.counts
            .get(&(expected.to_owned(), accepted))
            .copied()
            .unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.counts.values().sum::<usize>() + self.refused_by_policy
    }

    /// Prints the summary and fails on any disagreement or `acceptable` case.
    fn finish(&self, file: &str, declared: &Value) {
        eprintln!(
            "wycheproof {file}: {} cases; valid accepted {}, valid rejected {}, invalid \
             rejected {}, invalid accepted {}, acceptable {}; refused in full by Writ's \
             allow-list {} ({} of them valid for their own algorithm)",
            self.total(),
            self.count("valid", true),
            self.count("valid", false),
            self.count("invalid", false),
            self.count("invalid", true),
            self.count("acceptable", true) + self.count("acceptable", false),
            self.refused_by_policy,
            self.refused_valid,
        );
        assert_eq!(
            Some(self.total() as u64),
            declared.as_u64(),
            "{file}: every declared test case must run"
        );
        assert!(
            self.disagreements.is_empty(),
            "{file}: outcome differs from Wycheproof for {:?}",
            self.disagreements
        );
        assert_eq!(
            self.count("acceptable", true) + self.count("acceptable", false),
            0,
            "{file}: `acceptable` cases appeared; decide and document Writ's behaviour for them"
        );
    }
}

fn array<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not an array"))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string"))
}

/// A verifier trusting `keys`, for `verify_jws` (no claims are involved).
fn verifier(keys: KeySet) -> TokenVerifier {
    TokenVerifier::new(
        VerifierConfig::new(vec![], None),
        keys,
        Arc::new(ManualClock::new(NOW)),
    )
}

/// The keys Writ trusts from a JWK Set document. `VerificationKey::from_jwk` (the reader for
/// Writ's own JWKs) must never trust a key `parse_jwk_set` refuses.
fn trusted_keys(jwks: &Value) -> Vec<VerificationKey> {
    let keys = parse_jwk_set(&jwks.to_string()).unwrap_or_default();
    for jwk in array(jwks, "keys") {
        if let Ok(jwk) = serde_json::from_value::<writ_token::Jwk>(jwk.clone())
            && let Ok(key) = VerificationKey::from_jwk(&jwk)
        {
            assert!(
                keys.iter().any(|k| k.to_jwk() == key.to_jwk()),
                "from_jwk trusts a key parse_jwk_set refuses: {jwk:?}"
            );
        }
    }
    keys
}

/// Every JWK of a JWK Set, or the one JWK given.
fn jwks_of(jwk_or_set: &Value) -> Vec<&Value> {
    match jwk_or_set.get("keys") {
        Some(keys) => keys.as_array().into_iter().flatten().collect(),
        None => vec![jwk_or_set],
    }
}

/// Whether a group's keys are of a kind Writ verifies with at all (a P-256 or an Ed25519 public
/// key), whatever else is wrong with them. Groups with none are outside Writ's allow-list.
fn in_scope(key_material: &Value) -> bool {
    jwks_of(key_material).iter().any(|jwk| {
        matches!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("EC"), Some("P-256")) | (Some("OKP"), Some("Ed25519"))
        )
    })
}

/// The key set a verifier holds for a group: the keys Writ trusts from the group's JWK Set. For
/// a group outside the allow-list, decoys of both allowed algorithms sit under the group's key
/// ids, so that its refusal shows the algorithm policy at work, not merely a missing key.
fn group_keys(jwks: Option<&Value>, key_material: &Value) -> KeySet {
    let mut set = KeySet::new();
    for key in jwks.map(trusted_keys).unwrap_or_default() {
        set.insert_jwt(key);
    }
    if !in_scope(key_material) {
        let kids = jwks_of(key_material)
            .into_iter()
            .filter_map(|jwk| jwk["kid"].as_str());
        for (i, kid) in kids.enumerate() {
            // Key ids Writ cannot hold (e.g. with '@') need no decoy: nothing can match them.
            if let Ok(decoy) = SigningKey::generate(Algorithm::ALL[i % 2], kid) {
                set.insert_jwt(decoy.verification_key());
            }
        }
    }
    set
}

/// Verifies every case of a group: in scope, each must agree with Wycheproof; outside, each
/// must be refused.
fn run_group(tally: &mut Tally, file: &str, group: &Value, keys: KeySet, key_material: &Value) {
    let verifier = verifier(keys);
    let scoped = in_scope(key_material);
    for case in array(group, "tests") {
        let id = format!(
            "tcId {} ({}, group {})",
            case["tcId"],
            text(case, "comment"),
            text(group, "comment")
        );
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            verifier.verify_jws(&jws_text(case))
        }))
        .unwrap_or_else(|_| panic!("{file} {id}: the verifier panicked"));
        if scoped {
            tally.record(text(case, "result"), outcome.is_ok(), id);
        } else {
            assert!(
                outcome.is_err(),
                "{file} {id}: accepted outside the allow-list"
            );
            tally.refused_by_policy += 1;
            tally.refused_valid += usize::from(text(case, "result") == "valid");
        }
    }
}

/// A Wycheproof `jws`: compact text, or an object for the JSON serialization, which Writ must
/// refuse as it would any other text.
fn jws_text(case: &Value) -> String {
    match &case["jws"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn json_web_signature_vectors() {
    let file = "json_web_signature_test.json";
    let doc = read_vector_json(&format!("{DIR}/{file}"));
    let mut tally = Tally::default();
    for group in array(&doc, "testGroups") {
        let public = group.get("public").filter(|p| !p.is_null());
        let key_material = public.or(group.get("private")).unwrap_or(&Value::Null);
        let jwks = public.map(|p| json!({ "keys": [p] }));
        let keys = group_keys(jwks.as_ref(), key_material);
        run_group(&mut tally, file, group, keys, key_material);
    }
    tally.finish(file, &doc["numberOfTests"]);
    // Both ES256 groups (the only algorithm of the file Writ allows) actually ran.
    assert!(tally.count("valid", true) >= 2);
}

#[test]
fn json_web_key_vectors() {
    // Each group is a JWK Set (`public`, or `private` when the keys are symmetric) and JWSs a
    // verifier holding that set must accept (`valid`) or refuse (`invalid`). Most `valid` cases
    // are HMAC or RSA, which Writ refuses in full; the ES256 groups are all `invalid` because the
    // key itself is wrong (an algorithm or curve that disagrees with the key, `use: enc`, a point
    // off the curve, the wrong `kty`): for those the key must not become trusted, and nothing
    // may verify.
    let file = "json_web_key_test.json";
    let doc = read_vector_json(&format!("{DIR}/{file}"));
    let mut tally = Tally::default();
    for group in array(&doc, "testGroups") {
        let set = [group.get("public"), group.get("private")]
            .into_iter()
            .flatten()
            .find(|s| !s.is_null())
            .unwrap_or_else(|| panic!("a group without keys"));
        run_group(&mut tally, file, group, group_keys(Some(set), set), set);
    }
    tally.finish(file, &doc["numberOfTests"]);
}

/// Runs a signature-verification file (`msg`, `sig` in hex) through `verify_signature` with the
/// key `key_of` builds from each group.
fn signature_file(file: &str, key_of: impl Fn(&Value) -> Result<VerificationKey, TokenError>) {
    let doc = read_vector_json(&format!("{DIR}/{file}"));
    let mut tally = Tally::default();
    for group in array(&doc, "testGroups") {
        let key = key_of(group).unwrap_or_else(|e| {
            panic!(
                "{file}: a group's public key was refused ({e}): {}",
                group["publicKey"]
            )
        });
        for case in array(group, "tests") {
            let id = format!("tcId {} ({})", case["tcId"], text(case, "comment"));
            let message = hex::decode(text(case, "msg")).unwrap();
            let signature = hex::decode(text(case, "sig")).unwrap();
            let accepted = key.verify_signature(&message, &b64(signature));
            tally.record(text(case, "result"), accepted, id);
        }
    }
    tally.finish(file, &doc["numberOfTests"]);
}

#[test]
fn ed25519_vectors() {
    signature_file("ed25519_test.json", |group| {
        let pk = hex::decode(text(&group["publicKey"], "pk")).unwrap();
        VerificationKey::from_components("wycheproof".into(), Algorithm::EdDSA, &pk, &[])
    });
}

#[test]
fn ecdsa_p256_p1363_vectors() {
    signature_file("ecdsa_secp256r1_sha256_p1363_test.json", |group| {
        assert_eq!(text(group, "sha"), "SHA-256");
        let point = hex::decode(text(&group["publicKey"], "uncompressed")).unwrap();
        assert_eq!(
            (point.len(), point[0]),
            (65, 4),
            "an uncompressed P-256 point"
        );
        VerificationKey::from_components(
            "wycheproof".into(),
            Algorithm::ES256,
            &point[1..33],
            &point[33..],
        )
    });
}
