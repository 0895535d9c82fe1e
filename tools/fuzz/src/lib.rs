//! Fuzz targets for what Writ parses from strangers. Each target takes arbitrary bytes and must
//! neither panic, nor hang, nor accept what it should refuse: besides crashes, the targets assert
//! the properties a verifier promises (an accepted token has the trusted issuer, the audience, a
//! live lifetime; a revocation entry that validates round-trips; a feed's cursor never goes
//! back).
//!
//! `tools/fuzz/run` drives them with libFuzzer (coverage-guided, on the stable toolchain); the
//! workspace's tests replay every committed corpus and regression input through the same
//! functions (`tests/replay.rs`), so an input that once crashed stays a test.
//!
//! Everything is deterministic: fixed keys and a fixed clock, so a saved input reproduces.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use biscuit_auth::builder::BlockBuilder;
use biscuit_auth::{AuthorizerBuilder, KeyPair, PrivateKey, UnverifiedBiscuit};
use prost::Message as _;
use writ_proto::revocation::{RevocationEntry as EntryMessage, WatchResponse};
use writ_revocation_client::RevocationSet;
use writ_token::{
    AccessClaims, Algorithm, BiscuitRequest, BiscuitRootKey, KeySet, ManualClock, SigningKey,
    TokenFacts, TokenVerifier, VerifiedToken, VerifierConfig, encode_access_token, mint_biscuit,
};

/// The fixed clock every target runs at.
pub const NOW: i64 = 1_900_000_000;
pub const ISSUER: &str = "https://writ.fuzz";
pub const AUDIENCE: &str = "inventory";
pub const ED_KID: &str = "fuzz-ed";
pub const ES_KID: &str = "fuzz-es";
const ED_SECRET: [u8; 32] = [0x11; 32];
const ES_SECRET: [u8; 32] = [0x22; 32];
const ROOT_SECRET: [u8; 32] = [0x33; 32];
/// The key of the block `biscuit_block` appends: fixed, so an input reproduces byte for byte.
const HOLDER_SECRET: [u8; 32] = [0x44; 32];
/// The method and scope a Biscuit is authorized for, and the service's own Datalog.
pub const METHOD: &str = "/inventory.v1.Stock/Get";
pub const SCOPE: &str = "inventory.read";
const SERVICE_POLICY: &str = r#"
    check if method($m), ["/inventory.v1.Stock/Get", "/inventory.v1.Stock/List"].contains($m);
    allow if scope("inventory.read");
    deny if true;
"#;

/// Keys, a verifier and sample tokens, built once per process.
pub struct Fixture {
    pub verifier: TokenVerifier,
    pub ed: SigningKey,
    pub es: SigningKey,
    pub root: BiscuitRootKey,
    /// A valid Biscuit for [`AUDIENCE`] with [`SCOPE`], base64url.
    pub biscuit: String,
    holder: KeyPair,
    policy: AuthorizerBuilder,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture").finish_non_exhaustive()
    }
}

/// The claims of the fixture's sample tokens.
pub fn sample_claims() -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: vec![AUDIENCE.into()],
        iat: NOW - 10,
        nbf: Some(NOW - 10),
        exp: NOW + 290,
        jti: "jti-1".into(),
        client_id: "orders".into(),
        scope: "inventory.read inventory.write".into(),
        gid: Some("gid-1".into()),
        act: None,
        may_act: None,
        cnf: None,
    }
}

#[allow(clippy::expect_used)] // fixed inputs: a failure here is a bug in the harness itself
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ed = SigningKey::from_secret(Algorithm::EdDSA, ED_KID.into(), &ED_SECRET)
            .expect("an Ed25519 secret");
        let es = SigningKey::from_secret(Algorithm::ES256, ES_KID.into(), &ES_SECRET)
            .expect("a P-256 scalar");
        let root = BiscuitRootKey::from_secret(1, &ROOT_SECRET).expect("a Biscuit root secret");
        let mut keys = KeySet::new();
        keys.insert_jwt(ed.verification_key());
        keys.insert_jwt(es.verification_key());
        keys.insert_biscuit(root.public());
        let verifier = TokenVerifier::new(
            VerifierConfig::new(vec![ISSUER.into()], Some(AUDIENCE.into())),
            keys,
            Arc::new(ManualClock::new(NOW)),
        );
        let biscuit = mint_biscuit(&root, &sample_claims()).expect("a Biscuit");
        let holder = KeyPair::from(
            &PrivateKey::from_bytes(&HOLDER_SECRET, biscuit_auth::Algorithm::Ed25519)
                .expect("an Ed25519 secret"),
        );
        let policy = AuthorizerBuilder::new()
            .code(SERVICE_POLICY)
            .expect("the service policy parses");
        Fixture {
            verifier,
            ed,
            es,
            root,
            biscuit,
            holder,
            policy,
        }
    })
}

/// What every accepted token must satisfy, whatever its form.
fn assert_acceptable(v: &VerifiedToken) {
    let c = &v.claims;
    let leeway = fixture().verifier.config().leeway;
    assert_eq!(c.iss, ISSUER, "accepted a token of another issuer");
    assert!(
        c.aud.iter().any(|a| a == AUDIENCE),
        "accepted a token for another audience"
    );
    assert!(
        c.exp > c.iat,
        "accepted a token that expires before it was issued"
    );
    assert!(NOW < c.exp + leeway, "accepted an expired token");
    assert!(
        c.nbf.is_none_or(|n| n <= NOW + leeway),
        "accepted a token before its nbf"
    );
    assert!(
        !c.sub.is_empty() && !c.jti.is_empty() && !c.client_id.is_empty(),
        "accepted a token without sub, jti or client_id"
    );
    assert!(v.holds_until <= c.exp, "a verdict outlives its token");
}

/// Any string as a token of either form (`TokenVerifier::verify`, the guard's and the STS's
/// entry point).
pub fn jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = fixture().verifier.verify(token) {
        assert_acceptable(&v);
    }
}

/// A JOSE header and a claim set (split at the first NUL), signed with the trusted Ed25519 key:
/// reaches the header policy and the claim checks that a forged signature never gets past.
pub fn jwt_signed(data: &[u8]) {
    use ed25519_dalek::Signer as _;
    let (header, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = ed25519_dalek::SigningKey::from_bytes(&ED_SECRET);
    let signature = key.sign(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    );
    if let Ok(v) = fixture().verifier.verify_jwt(&token) {
        assert_acceptable(&v);
        // The header that passed names the key and algorithm it was signed with, the access
        // token type, and nothing that points at other keys.
        let header: serde_json_lite::Header = serde_json_lite::parse(header);
        assert_eq!(header.alg.as_deref(), Some("EdDSA"), "accepted another alg");
        assert_eq!(header.kid.as_deref(), Some(ED_KID), "accepted another kid");
        assert!(
            header.typ.as_deref().is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            }),
            "accepted a JWT that is not an access token"
        );
        assert!(!header.names_keys, "accepted a header naming keys");
    }
}

/// The handful of header fields `jwt_signed` checks, read with the same JSON parser the
/// verifier's dependencies use.
mod serde_json_lite {
    #[derive(Default)]
    pub struct Header {
        pub alg: Option<String>,
        pub kid: Option<String>,
        pub typ: Option<String>,
        pub names_keys: bool,
    }

    pub fn parse(header: &[u8]) -> Header {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(header) else {
            return Header::default();
        };
        let text = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Header {
            alg: text("alg"),
            kid: text("kid"),
            typ: text("typ"),
            names_keys: ["jku", "jwk", "x5u", "x5c", "crit"]
                .iter()
                .any(|k| map.contains_key(*k)),
        }
    }
}

/// A Biscuit's bytes, verified on their own and then authorized for one request with the
/// service's Datalog (the guard's path).
pub fn biscuit(data: &[u8]) {
    let f = fixture();
    let token = URL_SAFE.encode(data);
    if let Ok(v) = f.verifier.verify_biscuit(&token) {
        assert_acceptable(&v);
    }
    if let Ok(v) = f.verifier.verify_biscuit_for(&token, &request(f)) {
        assert_acceptable(&v);
        assert!(
            v.claims.scope.split(' ').any(|s| s == SCOPE),
            "authorized without the required scope"
        );
    }
}

fn request(f: &Fixture) -> BiscuitRequest {
    BiscuitRequest {
        service: Some(AUDIENCE.into()),
        method: Some(METHOD.into()),
        required_scopes: vec![SCOPE.into()],
        policies: Some(f.policy.clone()),
    }
}

/// Datalog a holder appends to a valid Biscuit (as a block's source): the work any holder can
/// make a verifier do. libFuzzer's `-timeout` catches a block that stalls verification.
pub fn biscuit_block(data: &[u8]) {
    let f = fixture();
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    // biscuit-parser (nom) backtracks exponentially on chains of unary operators and
    // parentheses: one 300-byte source took 72 s to parse. That parser runs on the holder's
    // side only (Writ parses no Datalog source but its own, with parameters), and a block
    // built any other way reaches the verifier through the `biscuit` target: such sources are
    // not what this target measures (a block's work at the verifier).
    if source
        .bytes()
        .filter(|b| matches!(b, b'!' | b'(' | b'-'))
        .count()
        > 8
    {
        return;
    }
    let Ok(block) = BlockBuilder::new().code(source) else {
        return;
    };
    #[allow(clippy::expect_used)]
    let base = UnverifiedBiscuit::from_base64(&f.biscuit).expect("the fixture's Biscuit");
    let Ok(token) = base
        .append_with_keypair(&f.holder, block)
        .and_then(|b| b.to_base64())
    else {
        return;
    };
    if let Ok(v) = f.verifier.verify_biscuit(&token) {
        assert_acceptable(&v);
        // A block only narrows: the usable scopes are a subset of the authority's.
        let authority = sample_claims().scope;
        assert!(
            v.claims
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .all(|s| authority.split(' ').any(|a| a == s)),
            "a holder's block widened the scopes"
        );
    }
    if let Ok(v) = f.verifier.verify_biscuit_for(&token, &request(f)) {
        assert_acceptable(&v);
    }
}

/// An HTTP facade's token request: the first line is the `Authorization` header, the rest the
/// form body (`writ_server::form`, shared by the authorization server and the STS).
pub fn form(data: &[u8]) {
    use writ_server::form::Form;
    let (auth, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if !auth.is_empty()
        && let Ok(v) = http::HeaderValue::from_bytes(auth)
    {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let Ok((form, client)) = Form::parse_with_client(&headers, body) else {
        return;
    };
    assert!(
        std::str::from_utf8(body).is_ok(),
        "accepted a body that is not UTF-8"
    );
    if let Ok(grant_type) = form.one("grant_type") {
        assert!(
            form.many("grant_type").len() <= 1,
            "a repeated parameter read as one"
        );
        let _ = grant_type;
    }
    let _ = form.many("audience");
    // Both methods at once is refused, so a secret came from exactly one place. (Another
    // scheme in `Authorization` is not client authentication.)
    let basic = auth
        .split(|b| *b == b' ')
        .next()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"basic"))
        && auth.contains(&b' ');
    if basic
        && headers.contains_key(http::header::AUTHORIZATION)
        && !client.client_secret.is_empty()
    {
        assert!(
            form.one("client_secret").is_ok_and(|s| s.is_empty()),
            "accepted client_secret_basic and client_secret_post together"
        );
    }
}

/// Revocation feed bytes: the input as one `RevocationEntry` (decoded, converted and validated as
/// the revocation service does for a producer), then as a stream of length-delimited
/// `WatchResponse`s applied to a guard's revocation set.
pub fn revocation_entry(data: &[u8]) {
    if let Ok(message) = EntryMessage::decode(data)
        && let Ok(entry) = writ_proto::convert::revocation_entry(message, NOW)
        && entry.validate(NOW).is_ok()
    {
        let again = writ_proto::convert::revocation_entry(
            writ_proto::convert::revocation_message(&entry),
            NOW,
        );
        assert_eq!(
            again.as_ref(),
            Ok(&entry),
            "a valid entry does not round-trip"
        );
    }

    let set = RevocationSet::new();
    let mut rest = data;
    let mut cursor = set.cursor();
    // Bounded: every successful decode consumes at least one byte.
    while !rest.is_empty() {
        let Ok(message) = WatchResponse::decode_length_delimited(&mut rest) else {
            break;
        };
        let _ = set.apply(&message);
        assert!(set.cursor() >= cursor, "the feed's cursor went back");
        cursor = set.cursor();
    }
    let claims = sample_claims();
    let ids = vec!["rev-1".to_owned()];
    let facts = TokenFacts {
        iss: ISSUER,
        jti: &claims.jti,
        gid: claims.gid.as_deref(),
        sub: &claims.sub,
        client_id: &claims.client_id,
        iat: claims.iat,
        key_id: ED_KID,
        biscuit_revocation_ids: &ids,
    };
    let _ = set.check(&facts);
}

/// Sample inputs that reach deep into each target (valid tokens, forms and feed messages): the
/// seed corpus `tools/fuzz/run` starts from (written by the `writ-fuzz-seeds` binary; Biscuits
/// carry a random next key, so seeds are made, not committed).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let f = fixture();
    let mut out = Vec::new();
    let claims = sample_claims();
    #[allow(clippy::expect_used)]
    {
        let ed = encode_access_token(&f.ed, &claims).expect("a JWT");
        let es = encode_access_token(&f.es, &claims).expect("a JWT");
        out.push(("jwt", "valid-eddsa".into(), ed.into_bytes()));
        out.push(("jwt", "valid-es256".into(), es.into_bytes()));
        out.push((
            "jwt",
            "valid-biscuit".into(),
            f.biscuit.clone().into_bytes(),
        ));
    }
    let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{ED_KID}"}}"#);
    #[allow(clippy::expect_used)]
    let payload = serde_json::to_vec(&claims).expect("claims serialize");
    let mut signed = header.into_bytes();
    signed.push(0);
    signed.extend_from_slice(&payload);
    out.push(("jwt_signed", "valid".into(), signed));
    #[allow(clippy::expect_used)]
    let raw = URL_SAFE
        .decode(&f.biscuit)
        .expect("the fixture's Biscuit is base64url");
    out.push(("biscuit", "valid".into(), raw));
    for (name, block) in [
        ("time", r#"check if time($t), $t < 2030-01-01T00:00:00Z;"#),
        ("scope", r#"check if scope("inventory.read");"#),
        (
            "method",
            r#"check if method($m), $m.starts_with("/inventory.v1.");"#,
        ),
        (
            "set",
            r#"check if method($m), ["/inventory.v1.Stock/Get", "/a"].contains($m);"#,
        ),
        (
            "arith",
            r#"check if time($t), $t > 2020-01-01T00:00:00Z, 1 + 2 * 3 == 7;"#,
        ),
    ] {
        out.push(("biscuit_block", name.into(), block.as_bytes().to_vec()));
    }
    out.push((
        "form",
        "basic".into(),
        b"Basic b3JkZXJzOnNlY3JldA==\ngrant_type=client_credentials&scope=inventory.read&audience=a&audience=b".to_vec(),
    ));
    out.push((
        "form",
        "post".into(),
        b"\ngrant_type=refresh_token&refresh_token=abc%20def&client_id=orders&client_secret=s"
            .to_vec(),
    ));
    out.push(("revocation_entry", "stream".into(), feed_sample()));
    out
}

/// A snapshot and two live revocations, as a Watch stream carries them.
fn feed_sample() -> Vec<u8> {
    use writ_proto::revocation::{
        Checkpoint, RevocationEvent, SnapshotBegin, SnapshotEnd, watch_response::Event,
    };
    let entry = |kind: i32, value: &str, issuer: &str| EntryMessage {
        kind,
        value: value.into(),
        expires_at: NOW + 3600,
        reason: "fuzz".into(),
        not_before: if kind == 2 { NOW } else { 0 },
        issuer: issuer.into(),
    };
    let messages = [
        Event::SnapshotBegin(SnapshotBegin {
            sequence: 1,
            entry_count: 1,
        }),
        Event::Revocation(RevocationEvent {
            sequence: 1,
            entry: Some(entry(1, "jti-1", "")),
        }),
        Event::SnapshotEnd(SnapshotEnd { sequence: 1 }),
        Event::Revocation(RevocationEvent {
            sequence: 2,
            entry: Some(entry(2, "alice", ISSUER)),
        }),
        Event::Checkpoint(Checkpoint {
            sequence: 2,
            server_time: None,
        }),
    ];
    let mut out = Vec::new();
    for event in messages {
        let message = WatchResponse { event: Some(event) };
        out.extend_from_slice(&message.encode_length_delimited_to_vec());
    }
    out
}
