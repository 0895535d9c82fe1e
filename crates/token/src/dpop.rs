//! DPoP (RFC 9449): proofs of possession, and the key thumbprints tokens are bound to.
//!
//! A proof is a JWS whose header carries the public key that signed it (`jwk`): the one place
//! Writ takes a key from a token, because the proof is only ever asked to show that its
//! presenter holds the private half of a key, never that anyone trusts that key. What the key
//! may do is decided elsewhere: a token bound to it (`cnf.jkt`, the key's RFC 7638 thumbprint)
//! is to be honoured only with a fresh proof by it (resource servers that cannot check one
//! refuse bound tokens).

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::keys::{Algorithm, VerificationKey, parse_jwk_set_for};

/// A proof's `typ` header (RFC 9449 section 4.2).
pub const DPOP_TYP: &str = "dpop+jwt";
/// The longest proof taken (an ES256 proof with a nonce and `ath` is under 1 KiB).
pub const MAX_PROOF_LEN: usize = 4 * 1024;
/// Signature algorithms a proof may use: asymmetric (RFC 9449 section 4.2) and cheap to check,
/// since a proof is checked before its client is authenticated (no RSA: a key of 8,192 bits
/// would cost the server a hundred times an Ed25519 check).
pub const DPOP_ALGORITHMS: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::ES256];
/// Longest `jti` taken (it is remembered until the proof is too old).
const MAX_JTI_LEN: usize = 256;
/// How old a proof may be, in seconds (besides the leeway): at the token endpoint and at a guard.
pub const DPOP_MAX_AGE: i64 = 120;
/// The `htm` of every gRPC call: gRPC is carried by HTTP/2 `POST`s.
pub const GRPC_HTM: &str = "POST";

/// The URL a gRPC call is made to, as its DPoP proof's `htu` names it in Writ's gRPC profile
/// (`docs/dpop-grpc.md`): `<scheme>://<:authority><:path>`, for example
/// `https://orders.internal:7443/shop.v1.Orders/Place`. The scheme is `https` unless the URI
/// says otherwise. `None` without an authority (a URI of a path alone).
pub fn grpc_htu(uri: &http::Uri) -> Option<String> {
    let authority = uri.authority()?;
    let scheme = uri.scheme_str().unwrap_or("https");
    Some(format!("{scheme}://{authority}{}", uri.path()))
}

/// Why a proof was refused: a fixed description, never the proof's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// `invalid_dpop_proof`.
    #[error("{0}")]
    Invalid(&'static str),
    /// `use_dpop_nonce`: the server's nonce is required and was missing or stale.
    #[error("a fresh DPoP nonce from this server is required")]
    UseNonce,
}

/// What a proof must show, besides its own form and signature.
#[derive(Clone, Copy)]
pub struct ProofRules<'a> {
    /// The request's method (`POST`), compared exactly.
    pub htm: &'a str,
    /// The request's URI; its query and fragment are ignored, as in the proof's `htu`.
    pub htu: &'a str,
    pub now: i64,
    /// How old a proof may be (its `iat`), and how far ahead of this clock.
    pub max_age: i64,
    pub leeway: i64,
    /// At a resource: the access token presented with the proof (its hash is `ath`).
    pub access_token: Option<&'a str>,
    /// Whether a nonce is required, and which ones this server accepts.
    pub nonce: Option<&'a dyn Fn(&str) -> bool>,
}

impl std::fmt::Debug for ProofRules<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofRules")
            .field("htm", &self.htm)
            .field("htu", &self.htu)
            .field("nonce", &self.nonce.is_some())
            .finish_non_exhaustive()
    }
}

/// A proof that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key, base64url: what `cnf.jkt` holds.
    pub jkt: String,
    /// To be remembered until `iat + max_age + leeway` and refused a second time.
    pub jti: String,
    pub iat: i64,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// Members of a JWK that only a private key has (RFC 7518 section 6), and `oct`'s `k`.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK given as JSON members: the
/// required members of its key type, as strings, in lexicographic order, no whitespace.
pub fn jwk_thumbprint(jwk: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let required: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        _ => return None,
    };
    // serde_json's map is ordered by key: the canonical order of RFC 7638 section 3.3.
    let mut canonical = serde_json::Map::new();
    for member in required {
        let value = jwk.get(*member)?.as_str()?;
        canonical.insert((*member).to_owned(), value.into());
    }
    let json = serde_json::Value::Object(canonical).to_string();
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes())))
}

/// `ath` (RFC 9449 section 4.2): base64url of the SHA-256 of the access token.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// The scheme, authority and path of an absolute URI, normalized (scheme and host lower case,
/// a default port dropped), without query or fragment: how `htu` is compared.
fn target(uri: &str) -> Option<(String, String, String)> {
    let uri: http::Uri = uri.split(['?', '#']).next()?.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    // No userinfo; a port, if written, is a number (the `http` crate takes `host:abc`).
    let port = authority.as_str().get(authority.host().len()..)?;
    let digits = port.strip_prefix(':').unwrap_or(port);
    if authority.as_str().contains('@')
        || !(port.is_empty() || port.starts_with(':'))
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (!digits.is_empty() && authority.port_u16().is_none())
    {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    let host = match (authority.port_u16(), scheme.as_str()) {
        (Some(443), "https") | (Some(80), "http") | (None, _) => host,
        (Some(port), _) => format!("{host}:{port}"),
    };
    let path = match uri.path() {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    Some((scheme, host, path))
}

/// Verifies a DPoP proof against `rules`. The caller must then refuse its `jti` a second time
/// for as long as the proof could pass ([`ProofRules::max_age`] and the leeway).
pub fn verify_proof(proof: &str, rules: &ProofRules<'_>) -> Result<VerifiedProof, DpopError> {
    use DpopError::Invalid;
    if proof.len() > MAX_PROOF_LEN {
        return Err(Invalid("the DPoP proof is too large"));
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid("the DPoP proof is not a compact JWS"));
    };
    let decode = |seg: &str| URL_SAFE_NO_PAD.decode(seg).ok();
    let header: serde_json::Map<String, serde_json::Value> = decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Invalid("the DPoP proof's header is malformed"))?;
    if header.get("typ").and_then(|t| t.as_str()) != Some(DPOP_TYP) {
        return Err(Invalid("the DPoP proof's typ is not dpop+jwt"));
    }
    // Keys are taken from the header's `jwk` alone; no other way of naming one, no extension.
    if ["jku", "x5u", "x5c", "crit", "cty", "enc", "zip", "b64"]
        .iter()
        .any(|m| header.contains_key(*m))
    {
        return Err(Invalid(
            "the DPoP proof's header has a member Writ does not accept",
        ));
    }
    let alg = header
        .get("alg")
        .and_then(|a| a.as_str())
        .and_then(Algorithm::from_name)
        .filter(|a| DPOP_ALGORITHMS.contains(a))
        .ok_or(Invalid("the DPoP proof's algorithm is not allowed"))?;
    let Some(serde_json::Value::Object(jwk)) = header.get("jwk") else {
        return Err(Invalid("the DPoP proof has no jwk"));
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(Invalid("the DPoP proof's jwk holds private key material"));
    }
    let key =
        proof_key(jwk, alg).ok_or(Invalid("the DPoP proof's jwk is not a key for its alg"))?;
    let signed = &proof.as_bytes()[..h.len() + 1 + p.len()];
    if !key.verify_signature(signed, s) {
        return Err(Invalid("the DPoP proof's signature does not verify"));
    }
    let jkt = jwk_thumbprint(jwk).ok_or(Invalid("the DPoP proof's jwk is malformed"))?;
    let claims: ProofClaims = decode(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Invalid("the DPoP proof's claims are malformed"))?;
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(Invalid("the DPoP proof's jti is missing or too long"));
    }
    if claims.htm != rules.htm {
        return Err(Invalid("the DPoP proof is for another method"));
    }
    match (target(&claims.htu), target(rules.htu)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(Invalid("the DPoP proof is for another URI")),
    }
    if claims.iat > rules.now + rules.leeway {
        return Err(Invalid("the DPoP proof is issued in the future"));
    }
    if claims.iat < rules.now - rules.max_age - rules.leeway {
        return Err(Invalid("the DPoP proof is too old"));
    }
    if let Some(token) = rules.access_token {
        // Constant time is not needed: the hash is of a token the presenter holds.
        if claims.ath.as_deref() != Some(access_token_hash(token).as_str()) {
            return Err(Invalid("the DPoP proof is not for this access token"));
        }
    }
    if let Some(accepts) = rules.nonce
        && !claims.nonce.as_deref().is_some_and(accepts)
    {
        return Err(DpopError::UseNonce);
    }
    Ok(VerifiedProof {
        jkt,
        jti: claims.jti,
        iat: claims.iat,
    })
}

/// The verification key of a proof's `jwk`, for the header's algorithm, with the checks every
/// JWK Writ reads gets (key type and curve, `use`, `key_ops`, `alg` if given).
fn proof_key(
    jwk: &serde_json::Map<String, serde_json::Value>,
    alg: Algorithm,
) -> Option<VerificationKey> {
    let mut jwk = jwk.clone();
    match jwk.get("alg") {
        Some(a) if a.as_str() != Some(alg.name()) => return None,
        Some(_) => {}
        None => {
            jwk.insert("alg".into(), alg.name().into());
        }
    }
    jwk.insert("kid".into(), "dpop".into());
    let set = serde_json::json!({ "keys": [jwk] }).to_string();
    let mut keys = parse_jwk_set_for(&set, &[alg]).ok()?;
    (keys.len() == 1).then(|| keys.remove(0))
}

/// What a client puts in a proof.
#[derive(Debug, Clone, Copy)]
pub struct ProofClaimsOut<'a> {
    pub htm: &'a str,
    pub htu: &'a str,
    pub iat: i64,
    /// At a resource: the access token the proof goes with.
    pub access_token: Option<&'a str>,
    /// The server's latest `DPoP-Nonce`, if it asked for one.
    pub nonce: Option<&'a str>,
}

/// Signs a DPoP proof with `key` (a fresh `jti` each time): the client's side.
pub fn sign_proof(key: &crate::SigningKey, claims: &ProofClaimsOut<'_>) -> String {
    let jwk = key.verification_key().to_jwk();
    let mut jwk = serde_json::to_value(jwk).unwrap_or_default();
    if let Some(o) = jwk.as_object_mut() {
        // The proof's key is its own: no key id, no use, nothing a thumbprint leaves out.
        o.retain(|k, _| matches!(k.as_str(), "kty" | "crv" | "x" | "y"));
    }
    let header = serde_json::json!({ "typ": DPOP_TYP, "alg": key.alg().name(), "jwk": jwk });
    let mut payload = serde_json::json!({
        "jti": crate::random_id(),
        "htm": claims.htm,
        "htu": claims.htu,
        "iat": claims.iat,
    });
    if let Some(token) = claims.access_token {
        payload["ath"] = access_token_hash(token).into();
    }
    if let Some(nonce) = claims.nonce {
        payload["nonce"] = nonce.into();
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// The thumbprint a proof signed by `key` carries ([`VerifiedProof::jkt`]).
pub fn key_thumbprint(key: &crate::SigningKey) -> Option<String> {
    let jwk = serde_json::to_value(key.verification_key().to_jwk()).ok()?;
    jwk_thumbprint(jwk.as_object()?)
}

/// Proof ids seen, in two generations.
#[derive(Default)]
struct Seen {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    /// When `current` began.
    since: i64,
}

/// Why [`SeenProofs::spend`] refused a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// This key's proof with this `jti` was spent before: `invalid_dpop_proof`.
    Replayed,
    /// A generation is full: nothing is forgotten early, so the proof is refused (try again).
    Full,
}

/// The `jti`s of proofs spent, in bounded memory, for as long as a proof could pass: two
/// generations of at most `capacity` keyed 128-bit hashes (of the key's thumbprint and the
/// `jti`; about 36 MiB for a full generation of a million), the older dropped when the newer is
/// a proof's lifetime old. Memory stays bounded whatever the load: a full generation refuses
/// proofs ([`Replay::Full`]) rather than forget one. One process's memory: another process (a
/// replica, or this one after a restart) does not know what this one spent.
pub struct SeenProofs {
    seen: std::sync::Mutex<Seen>,
    hash_keys: (u64, u64),
    capacity: usize,
}

impl std::fmt::Debug for SeenProofs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenProofs")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SeenProofs {
    /// At most `capacity` proofs per generation.
    pub fn new(capacity: usize) -> Self {
        let k = crate::random_bytes::<16>();
        let (a, b) = k.split_at(8);
        SeenProofs {
            seen: std::sync::Mutex::new(Seen::default()),
            hash_keys: (
                u64::from_le_bytes(a.try_into().unwrap_or_default()),
                u64::from_le_bytes(b.try_into().unwrap_or_default()),
            ),
            capacity,
        }
    }

    /// Remembers a proof's id for `window` seconds at least (its lifetime: the maximum age and
    /// twice the leeway); a second time, or with no room left, it is refused.
    pub fn spend(&self, jkt: &str, jti: &str, now: i64, window: i64) -> Result<(), Replay> {
        use siphasher::sip128::{Hasher128, SipHasher13};
        use std::hash::Hasher;
        let mut h = SipHasher13::new_with_keys(self.hash_keys.0, self.hash_keys.1);
        h.write(jkt.as_bytes());
        h.write_u8(0);
        h.write(jti.as_bytes());
        let id = h.finish128().as_u128();
        // A panic elsewhere while holding the lock leaves the sets whole: keep using them.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if now - seen.since >= window {
            // Everything in `previous` is older than a proof can be: forget it.
            seen.previous = std::mem::take(&mut seen.current);
            seen.since = now;
        }
        if seen.previous.contains(&id) || seen.current.contains(&id) {
            return Err(Replay::Replayed);
        }
        if seen.current.len() >= self.capacity {
            return Err(Replay::Full);
        }
        seen.current.insert(id);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::SigningKey;

    #[test]
    fn a_proof_id_is_spent_once_and_forgotten_only_when_too_old() {
        let seen = SeenProofs::new(100);
        assert!(seen.spend("thumb", "a", 1000, 180).is_ok());
        assert_eq!(seen.spend("thumb", "a", 1001, 180), Err(Replay::Replayed));
        // Another key's proof with the same jti is another proof.
        assert!(seen.spend("other", "a", 1001, 180).is_ok());
        // One generation later it is still remembered; two later it is gone (and too old).
        assert!(seen.spend("thumb", "b", 1000 + 180, 180).is_ok());
        assert!(seen.spend("thumb", "a", 1000 + 200, 180).is_err());
        assert!(seen.spend("thumb", "c", 1000 + 360, 180).is_ok());
        assert!(seen.spend("thumb", "a", 1000 + 370, 180).is_ok());
        // A full generation refuses rather than forgets.
        let small = SeenProofs::new(2);
        assert!(small.spend("k", "1", 0, 180).is_ok());
        assert!(small.spend("k", "2", 1, 180).is_ok());
        assert_eq!(small.spend("k", "3", 2, 180), Err(Replay::Full));
        assert_eq!(small.spend("k", "1", 3, 180), Err(Replay::Replayed));
    }

    #[test]
    fn a_grpc_calls_htu_is_its_scheme_authority_and_path() {
        let uri: http::Uri = "https://orders.internal:7443/shop.v1.Orders/Place"
            .parse()
            .unwrap();
        assert_eq!(
            grpc_htu(&uri).unwrap(),
            "https://orders.internal:7443/shop.v1.Orders/Place"
        );
        let no_scheme = http::Uri::builder()
            .authority("127.0.0.1:9")
            .path_and_query("/a.B/C")
            .build();
        // http::Uri needs a scheme with an authority; a path alone has no htu.
        assert!(no_scheme.is_err());
        assert_eq!(grpc_htu(&"/a.B/C".parse().unwrap()), None);
        let plain: http::Uri = "http://127.0.0.1:9/a.B/C".parse().unwrap();
        assert_eq!(grpc_htu(&plain).unwrap(), "http://127.0.0.1:9/a.B/C");
    }

    const HTU: &str = "https://writ.example/oauth2/token";
    const NOW: i64 = 1_700_000_000;

    fn rules() -> ProofRules<'static> {
        ProofRules {
            htm: "POST",
            htu: HTU,
            now: NOW,
            max_age: 120,
            leeway: 30,
            access_token: None,
            nonce: None,
        }
    }

    fn out() -> ProofClaimsOut<'static> {
        ProofClaimsOut {
            htm: "POST",
            htu: HTU,
            iat: NOW,
            access_token: None,
            nonce: None,
        }
    }

    /// A proof with its header and claims edited (then signed by `key` all the same).
    fn edited(
        key: &SigningKey,
        header: impl Fn(&mut serde_json::Value),
        claims: impl Fn(&mut serde_json::Value),
    ) -> String {
        let proof = sign_proof(key, &out());
        let mut parts = proof.split('.');
        let mut h: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
                .unwrap();
        let mut c: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
                .unwrap();
        header(&mut h);
        claims(&mut c);
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            URL_SAFE_NO_PAD.encode(c.to_string())
        );
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()))
        )
    }

    #[test]
    fn a_proof_verifies_and_names_its_keys_thumbprint() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            let key = SigningKey::generate(alg, "k").unwrap();
            let proof = sign_proof(&key, &out());
            let v = verify_proof(&proof, &rules()).unwrap();
            assert_eq!(Some(v.jkt.clone()), key_thumbprint(&key));
            assert_eq!(v.iat, NOW);
            // Another proof by the same key: same thumbprint, another jti.
            let again = verify_proof(&sign_proof(&key, &out()), &rules()).unwrap();
            assert_eq!(again.jkt, v.jkt);
            assert_ne!(again.jti, v.jti);
            // The query and fragment are not compared; scheme and host case and a default
            // port do not matter.
            for htu in [
                "https://writ.example/oauth2/token?x=1",
                "HTTPS://Writ.Example:443/oauth2/token#f",
            ] {
                let r = ProofRules { htu, ..rules() };
                assert!(verify_proof(&proof, &r).is_ok(), "{htu}");
            }
        }
    }

    #[test]
    fn rfc_7638s_example_thumbprint() {
        // RFC 7638 section 3.1.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(jwk.as_object().unwrap()).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rfc_8037s_ed25519_thumbprint() {
        // RFC 8037 appendix A.3.
        let jwk = serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        });
        assert_eq!(
            jwk_thumbprint(jwk.as_object().unwrap()).unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn an_ipv6_htu_keeps_its_port() {
        let key = SigningKey::generate(Algorithm::EdDSA, "k").unwrap();
        let htu = "https://[::1]:8443/oauth2/token";
        let proof = sign_proof(&key, &ProofClaimsOut { htu, ..out() });
        for (expected, ok) in [
            (htu, true),
            ("https://[::1]/oauth2/token", false),
            ("https://[::1]:9443/oauth2/token", false),
        ] {
            let r = ProofRules {
                htu: expected,
                ..rules()
            };
            assert_eq!(verify_proof(&proof, &r).is_ok(), ok, "{expected}");
        }
    }

    #[test]
    fn htu_is_compared_as_a_uri_without_query_or_fragment() {
        let key = SigningKey::generate(Algorithm::EdDSA, "k").unwrap();
        let proof = sign_proof(&key, &out());
        for (htu, ok) in [
            ("https://writ.example/oauth2/token", true),
            ("https://writ.example:443/oauth2/token", true),
            ("https://writ.example:8443/oauth2/token", false),
            ("https://writ.example:abc/oauth2/token", false),
            ("https://writ.example:/oauth2/token", true),
            ("https://[::1]:8443/oauth2/token", false),
            ("http://writ.example/oauth2/token", false),
            ("https://writ.example/OAuth2/token", false),
            ("https://writ.example/oauth2/token/", false),
            ("/oauth2/token", false),
        ] {
            let r = ProofRules { htu, ..rules() };
            assert_eq!(verify_proof(&proof, &r).is_ok(), ok, "{htu}");
        }
    }

    #[test]
    fn every_bad_proof_is_refused() {
        use serde_json::json;
        let key = SigningKey::generate(Algorithm::ES256, "k").unwrap();
        let other = SigningKey::generate(Algorithm::ES256, "o").unwrap();
        let other_jwk = serde_json::to_value(other.verification_key().to_jwk()).unwrap();
        let invalid = |proof: &str, r: &ProofRules<'_>, why: &str| {
            assert!(
                matches!(verify_proof(proof, r), Err(DpopError::Invalid(_))),
                "{why}"
            );
        };
        let none = |_: &mut serde_json::Value| {};
        invalid(
            &edited(&key, |h| h["typ"] = json!("JWT"), none),
            &rules(),
            "typ",
        );
        invalid(
            &edited(&key, |h| h["alg"] = json!("HS256"), none),
            &rules(),
            "alg",
        );
        invalid(
            &edited(&key, |h| h["alg"] = json!("none"), none),
            &rules(),
            "alg none",
        );
        invalid(
            &edited(&key, |h| h["alg"] = json!("EdDSA"), none),
            &rules(),
            "alg of another key type",
        );
        invalid(
            &edited(
                &key,
                |h| {
                    h.as_object_mut().unwrap().remove("jwk");
                },
                none,
            ),
            &rules(),
            "no jwk",
        );
        invalid(
            &edited(&key, |h| h["jwk"] = other_jwk.clone(), none),
            &rules(),
            "signed by another key",
        );
        invalid(
            &edited(&key, |h| h["jwk"]["d"] = json!("AAAA"), none),
            &rules(),
            "private key",
        );
        invalid(
            &edited(
                &key,
                |h| h["jku"] = json!("https://evil.example/jwks"),
                none,
            ),
            &rules(),
            "jku",
        );
        invalid(
            &edited(&key, |h| h["jwk"]["kty"] = json!("oct"), none),
            &rules(),
            "oct",
        );
        invalid(
            &edited(&key, none, |c| c["htm"] = json!("GET")),
            &rules(),
            "method",
        );
        invalid(
            &edited(&key, none, |c| {
                c["htu"] = json!("https://writ.example/oauth2/revoke")
            }),
            &rules(),
            "uri",
        );
        invalid(
            &edited(&key, none, |c| {
                c["htu"] = json!("https://other.example/oauth2/token")
            }),
            &rules(),
            "host",
        );
        invalid(
            &edited(&key, none, |c| {
                c["htu"] = json!("https://writ.example@evil/oauth2/token")
            }),
            &rules(),
            "userinfo",
        );
        invalid(
            &edited(&key, none, |c| c["iat"] = json!(NOW - 151)),
            &rules(),
            "too old",
        );
        invalid(
            &edited(&key, none, |c| c["iat"] = json!(NOW + 31)),
            &rules(),
            "future",
        );
        invalid(
            &edited(&key, none, |c| c["iat"] = json!("1700000000")),
            &rules(),
            "iat as a string",
        );
        invalid(
            &edited(&key, none, |c| c["jti"] = json!("")),
            &rules(),
            "empty jti",
        );
        invalid(
            &edited(&key, none, |c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            &rules(),
            "no jti",
        );
        // A changed byte anywhere.
        let proof = sign_proof(&key, &out());
        let mut tampered = proof.clone().into_bytes();
        let at = proof.find('.').unwrap() + 5;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        invalid(
            std::str::from_utf8(&tampered).unwrap(),
            &rules(),
            "tampered",
        );
        invalid(&"a".repeat(MAX_PROOF_LEN + 1), &rules(), "too large");
        invalid("a.b", &rules(), "two segments");
        // At a resource: the access token's hash.
        let token_rules = ProofRules {
            access_token: Some("the-token"),
            ..rules()
        };
        invalid(&proof, &token_rules, "no ath");
        let with_ath = sign_proof(
            &key,
            &ProofClaimsOut {
                access_token: Some("the-token"),
                ..out()
            },
        );
        assert!(verify_proof(&with_ath, &token_rules).is_ok());
        let other_token = ProofRules {
            access_token: Some("another-token"),
            ..rules()
        };
        invalid(&with_ath, &other_token, "another token");
        // Nonces: required and missing, or not accepted.
        let accepts = |n: &str| n == "fresh";
        let nonce_rules = ProofRules {
            nonce: Some(&accepts),
            ..rules()
        };
        assert_eq!(verify_proof(&proof, &nonce_rules), Err(DpopError::UseNonce));
        let stale = sign_proof(
            &key,
            &ProofClaimsOut {
                nonce: Some("stale"),
                ..out()
            },
        );
        assert_eq!(verify_proof(&stale, &nonce_rules), Err(DpopError::UseNonce));
        let fresh = sign_proof(
            &key,
            &ProofClaimsOut {
                nonce: Some("fresh"),
                ..out()
            },
        );
        assert!(verify_proof(&fresh, &nonce_rules).is_ok());
    }
}
