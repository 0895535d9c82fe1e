//! A repeated Biscuit is a cache hit, as a JWT is, and never outlives its verdict: not its
//! expiry, not an attenuation's earlier expiry, not a date in the service's own policy, not a
//! revocation. A request the verdict was not reached for is verified again.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use writ_token::biscuit_auth::builder::AuthorizerBuilder;
use writ_token::{
    AccessClaims, Attenuation, BiscuitRootKey, FixedKeys, KeySet, ManualClock, RevocationCheck,
    RevocationKind, TokenFacts, TrustedIssuer, Unvouched, attenuate, mint_biscuit,
};

use super::*;

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://as.example";
const GET: &str = "/writ.demo.v1.InventoryService/GetStock";
const PUT: &str = "/writ.demo.v1.InventoryService/PutStock";

/// Revocations by Biscuit block id, set by the test.
#[derive(Debug, Default)]
struct Blocks(Mutex<HashSet<String>>);

impl RevocationCheck for Blocks {
    fn revoked(&self, t: &TokenFacts<'_>) -> Result<Option<RevocationKind>, Unvouched> {
        let revoked = self.0.lock();
        Ok(t.biscuit_revocation_ids
            .iter()
            .any(|id| revoked.contains(id))
            .then_some(RevocationKind::BiscuitRevocationId))
    }
}

struct Fixture {
    guard: Guard,
    clock: Arc<ManualClock>,
    revoked: Arc<Blocks>,
    root: BiscuitRootKey,
}

fn fixture(policies: Option<AuthorizerBuilder>) -> Fixture {
    let root = BiscuitRootKey::generate(7);
    let mut keys = KeySet::new();
    keys.insert_biscuit(root.public());
    let clock = Arc::new(ManualClock::new(NOW));
    let revoked = Arc::new(Blocks::default());
    let mut config = GuardConfig::without_revocations(
        "inventory",
        vec![TrustedIssuer::new(ISSUER, Arc::new(FixedKeys::new(keys)))],
        MethodPolicy::new()
            .method(GET, Rule::scopes(&["inventory.read"]))
            .method(PUT, Rule::scopes(&["inventory.write"])),
    );
    config.revocations = Revocations::Checked {
        check: revoked.clone(),
        fail_open: false,
    };
    config.biscuit_policies = policies;
    config.clock = clock.clone();
    Fixture {
        guard: Guard::new(config),
        clock,
        revoked,
        root,
    }
}

impl Fixture {
    fn biscuit(&self) -> String {
        let claims = AccessClaims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: vec!["inventory".into()],
            iat: NOW,
            nbf: None,
            exp: NOW + 300,
            jti: "t1".into(),
            client_id: "orders".into(),
            scope: "inventory.read inventory.write".into(),
            gid: Some("g1".into()),
            act: None,
            may_act: None,
            cnf: None,
        };
        mint_biscuit(&self.root, &claims).unwrap()
    }

    async fn call(&self, method: &str, token: &str) -> Result<Arc<Verified>, GuardError> {
        let header = format!("Bearer {token}");
        self.guard
            .check(method, Some(header.as_bytes()))
            .await
            .map(|v| v.unwrap())
    }
}

#[tokio::test]
async fn a_repeated_biscuit_is_a_cache_hit_per_method() {
    let f = fixture(None);
    let token = f.biscuit();
    let first = f.call(GET, &token).await.unwrap();
    assert_eq!(f.guard.cached(), 1);
    let again = f.call(GET, &token).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second call is served from the cache"
    );
    // Another method is another request: verified on its own, and cached on its own.
    let put = f.call(PUT, &token).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &put));
    assert_eq!(f.guard.cached(), 2);

    // A holder's narrowing makes a new token, judged afresh: denied for PUT, from the cache or not.
    let read_only = attenuate(
        &token,
        &Attenuation {
            scopes: Some(vec!["inventory.read".into()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            f.call(PUT, &read_only).await,
            Err(GuardError::Denied(_))
        ));
        f.call(GET, &read_only).await.unwrap();
    }
}

#[tokio::test]
async fn a_cached_biscuit_verdict_ends_at_an_attenuations_earlier_expiry() {
    let f = fixture(None);
    let short = attenuate(
        &f.biscuit(),
        &Attenuation {
            expires_at: Some(NOW + 10),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let leeway = VerifierConfig::new(Vec::new(), None).leeway;
    // Past the date of issue (which a policy may compare against too, so it also ends a verdict).
    f.clock.set(NOW + leeway + 1);
    let first = f.call(GET, &short).await.unwrap();
    assert_eq!(first.token.holds_until, NOW + 10 + leeway);
    f.clock.set(NOW + 10 + leeway - 1);
    let cached = f.call(GET, &short).await.unwrap();
    assert!(Arc::ptr_eq(&first, &cached));
    // At the attenuation's date the cached verdict is dropped and the token judged again (its
    // `$t <= date` still holds for this second)...
    f.clock.set(NOW + 10 + leeway);
    let fresh = f.call(GET, &short).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &fresh));
    // ...and refused the second after, though the token's own `exp` is 289 s away.
    f.clock.set(NOW + 10 + leeway + 1);
    assert!(matches!(
        f.call(GET, &short).await,
        Err(GuardError::Denied(_) | GuardError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn a_cached_biscuit_verdict_ends_at_a_date_in_the_services_policy() {
    let policies = AuthorizerBuilder::new()
        .code_with_params(
            "check if time($t), $t < {deadline};\nallow if true;",
            std::collections::HashMap::from([(
                "deadline".to_owned(),
                writ_token::biscuit_auth::builder::Term::Date((NOW + 60) as u64),
            )]),
            std::collections::HashMap::new(),
        )
        .unwrap();
    let f = fixture(Some(policies));
    let token = f.biscuit();
    let leeway = VerifierConfig::new(Vec::new(), None).leeway;
    f.clock.set(NOW + leeway + 1);
    let first = f.call(GET, &token).await.unwrap();
    assert_eq!(first.token.holds_until, NOW + 60 + leeway);
    f.clock.set(NOW + 60 + leeway);
    assert!(
        f.call(GET, &token).await.is_err(),
        "the policy's date has passed"
    );
}

#[tokio::test]
async fn a_cached_biscuit_is_refused_once_revoked_and_foreign_functions_disable_the_cache() {
    let f = fixture(None);
    let token = f.biscuit();
    let v = f.call(GET, &token).await.unwrap();
    f.revoked.0.lock().insert(v.token.revocation_ids[0].clone());
    assert!(matches!(
        f.call(GET, &token).await,
        Err(GuardError::Revoked(RevocationKind::BiscuitRevocationId))
    ));

    // A service whose policy calls a foreign function gets a fresh verdict on every call.
    let probe = writ_token::biscuit_auth::datalog::ExternFunc::new(Arc::new(|t, _| Ok(t)));
    let policies = AuthorizerBuilder::new()
        .code("check if service($s), $s.extern::probe() == $s;\nallow if true;")
        .unwrap()
        .register_extern_funcs(std::collections::HashMap::from([(
            "probe".to_owned(),
            probe,
        )]));
    let f = fixture(Some(policies));
    let token = f.biscuit();
    let first = f.call(GET, &token).await.unwrap();
    let second = f.call(GET, &token).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(f.guard.cached(), 0);
}
