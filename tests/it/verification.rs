//! The server's verifier over the network: hostile tokens presented to introspection are
//! inactive. Tokens are crafted with the server's real signing key (read from its keyring), so
//! only the property under test is wrong; a well-formed control token proves the crafting works.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer;
use hmac::Mac;
use serde_json::{Value, json};
use writ_tests::*;

struct Forge {
    kid: String,
    key: ed25519_dalek::SigningKey,
    issuer: String,
    now: i64,
}

impl Forge {
    fn new(server: &TestServer) -> Forge {
        let active = server.engine.key_state().jwt.clone();
        let secret: [u8; 32] = active.secret_bytes().as_slice().try_into().unwrap();
        Forge {
            key: ed25519_dalek::SigningKey::from_bytes(&secret),
            kid: active.kid().to_owned(),
            issuer: server.issuer.clone(),
            now: writ_token::system_clock().now(),
        }
    }

    fn header(&self) -> Value {
        json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": self.kid })
    }

    fn claims(&self) -> Value {
        json!({
            "iss": self.issuer, "sub": "svc", "aud": "x", "client_id": "svc",
            "iat": self.now - 10, "nbf": self.now - 10, "exp": self.now + 300,
            "jti": "forged-1", "scope": "read", "gid": "g1"
        })
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// The control token, signed, but with header field `name` set to `value`.
    fn with_header(&self, name: &str, value: Value) -> String {
        let mut h = self.header();
        h[name] = value;
        self.sign(&h, &self.claims())
    }

    /// The control token, signed, but with claim `name` set to `value`.
    fn with_claim(&self, name: &str, value: Value) -> String {
        let mut c = self.claims();
        c[name] = value;
        self.sign(&self.header(), &c)
    }
}

async fn active(server: &TestServer, secret: &str, token: &str) -> bool {
    let r = server.introspect(token, "svc", secret).await;
    if !r.active {
        assert_eq!(
            r,
            Default::default(),
            "an inactive answer carries nothing else"
        );
    }
    r.active
}

async fn setup() -> (TestServer, String, Forge) {
    let server = TestServer::start().await;
    let (_, secret) = server.service_client("svc", "read", &["x"]).await;
    let forge = Forge::new(&server);
    (server, secret, forge)
}

#[tokio::test]
async fn a_well_formed_token_signed_by_the_server_key_is_active() {
    let (server, secret, f) = setup().await;
    assert!(active(&server, &secret, &f.sign(&f.header(), &f.claims())).await);
}

#[tokio::test]
async fn alg_none_in_any_spelling_is_inactive() {
    let (server, secret, f) = setup().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let signed = f.with_header("alg", json!(alg));
        let unsigned = format!("{}.", signed.rsplit_once('.').unwrap().0);
        assert!(!active(&server, &secret, &unsigned).await, "{alg} unsigned");
        assert!(
            !active(&server, &secret, &signed).await,
            "{alg} with a signature"
        );
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_inactive() {
    let (server, secret, f) = setup().await;
    let public = f.key.verifying_key().to_bytes();
    let jwk_x = URL_SAFE_NO_PAD.encode(public);
    for secret_bytes in [public.to_vec(), jwk_x.as_bytes().to_vec()] {
        let mut h = f.header();
        h["alg"] = json!("HS256");
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            URL_SAFE_NO_PAD.encode(f.claims().to_string())
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret_bytes).unwrap();
        mac.update(input.as_bytes());
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert!(!active(&server, &secret, &token).await);
    }
}

#[tokio::test]
async fn a_wrong_or_missing_typ_is_inactive() {
    let (server, secret, f) = setup().await;
    for typ in [
        json!("JWT"),
        json!("at+jwt+x"),
        json!(null),
        json!("id_token"),
    ] {
        assert!(
            !active(&server, &secret, &f.with_header("typ", typ.clone())).await,
            "typ {typ}"
        );
    }
    assert!(
        active(
            &server,
            &secret,
            &f.with_header("typ", json!("application/at+jwt"))
        )
        .await,
        "the long form is RFC 9068's too"
    );
}

#[tokio::test]
async fn a_wrong_issuer_or_missing_audience_is_inactive() {
    let (server, secret, f) = setup().await;
    let evil = f.with_claim("iss", json!("https://evil.example"));
    assert!(!active(&server, &secret, &evil).await);
    for aud in [json!(null), json!([]), json!(""), json!(42)] {
        assert!(
            !active(&server, &secret, &f.with_claim("aud", aud.clone())).await,
            "aud {aud}"
        );
    }
}

#[tokio::test]
async fn an_expired_token_is_inactive_on_both_sides_of_the_leeway() {
    let (server, secret, f) = setup().await;
    let mut c = f.claims();
    c["iat"] = json!(f.now - 400);
    c["nbf"] = json!(f.now - 400);
    c["exp"] = json!(f.now - 100);
    assert!(
        !active(&server, &secret, &f.sign(&f.header(), &c)).await,
        "past the 30 s leeway"
    );
    c["exp"] = json!(f.now - 10);
    assert!(
        active(&server, &secret, &f.sign(&f.header(), &c)).await,
        "within the leeway"
    );
}

#[tokio::test]
async fn a_token_not_yet_valid_is_inactive() {
    let (server, secret, f) = setup().await;
    let early = f.with_claim("nbf", json!(f.now + 120));
    assert!(!active(&server, &secret, &early).await);
    let mut c = f.claims();
    c["iat"] = json!(f.now + 120);
    c["exp"] = json!(f.now + 400);
    assert!(!active(&server, &secret, &f.sign(&f.header(), &c)).await);
}

#[tokio::test]
async fn exp_given_as_a_string_float_or_negative_is_inactive() {
    let (server, secret, f) = setup().await;
    let exp = f.now + 300;
    for bad in [
        json!(exp.to_string()),
        json!(exp as f64 + 0.5),
        json!(-1),
        json!(1e300),
        json!(null),
    ] {
        assert!(
            !active(&server, &secret, &f.with_claim("exp", bad.clone())).await,
            "exp {bad}"
        );
    }
}

#[tokio::test]
async fn keys_named_by_the_token_are_never_trusted() {
    let (server, secret, f) = setup().await;
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(f.key.verifying_key().to_bytes())});
    for (k, v) in [
        ("jku", json!("https://127.0.0.1:1/jwks.json")),
        ("jwk", jwk),
        ("x5u", json!("https://127.0.0.1:1/c.pem")),
        ("crit", json!(["exp"])),
    ] {
        assert!(!active(&server, &secret, &f.with_header(k, v)).await, "{k}");
    }
    let unknown_kid = f.with_header("kid", json!("../../etc/passwd"));
    assert!(!active(&server, &secret, &unknown_kid).await, "unknown kid");
}

#[tokio::test]
async fn garbage_biscuit_bytes_are_inactive() {
    let (server, secret, _) = setup().await;
    for token in [
        "CAESIAoFaGVsbG8",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "%%%",
        "En0KEwoEMTIzNBgDIgkKBwgKEgMYgAgSJAgAEiD",
    ] {
        assert!(!active(&server, &secret, token).await, "{token}");
    }
}
