//! The rules against fakes: an in-memory directory and revocation list, an authorization server
//! reduced to its keys, and a manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use writ_token::{
    AccessClaims, Actor, Algorithm, Attenuation, BiscuitRootKey, Clock, FixedKeys, IssuerKeys,
    KeySet, KeySource, ManualClock, RevocationCheck, RevocationKind, SigningKey, TokenFacts,
    TokenFormat, TokenVerifier, Unvouched, VerifiedToken, VerifierConfig, attenuate,
    encode_access_token, mint_biscuit,
};

use writ_vocabulary::grant_type::TOKEN_EXCHANGE as GRANT_TYPE;
use writ_vocabulary::token_type;

use crate::*;

const AS: &str = "https://as.test";
const STS: &str = "https://sts.test";
const T0: i64 = 1_800_000_000;

#[derive(Debug, Default)]
struct Fakes {
    secrets: HashMap<String, String>,
    policies: Mutex<Vec<ExchangePolicy>>,
    revoked: Mutex<HashSet<(RevocationKind, String)>>,
    stale: AtomicBool,
}

#[derive(Debug)]
struct Dir(Arc<Fakes>);

impl Directory for Dir {
    fn authenticate<'a>(&'a self, c: Credentials<'a>) -> BoxFuture<'a, Result<()>> {
        // The fake knows secrets only: an assertion never authenticates here.
        let ok = c.client_assertion.is_empty()
            && self
                .0
                .secrets
                .get(c.client_id)
                .is_some_and(|s| s == c.client_secret);
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(ExchangeError::InvalidClient)
            }
        })
    }

    fn policies<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Vec<ExchangePolicy>>> {
        let found = self
            .0
            .policies
            .lock()
            .iter()
            .filter(|p| p.client_id == id)
            .cloned()
            .collect();
        Box::pin(async move { Ok(found) })
    }
}

#[derive(Debug)]
struct Revoked(Arc<Fakes>);

impl RevocationCheck for Revoked {
    fn revoked(&self, t: &TokenFacts<'_>) -> Result<Option<RevocationKind>, Unvouched> {
        if self.0.stale.load(Ordering::Relaxed) {
            return Err(Unvouched("the revocation feed is stale"));
        }
        let set = self.0.revoked.lock();
        Ok(t.targets()
            .find(|(k, v)| set.contains(&(*k, (*v).to_owned())))
            .map(|(k, _)| k))
    }
}

struct World {
    fakes: Arc<Fakes>,
    clock: ManualClock,
    as_jwt: SigningKey,
    as_root: BiscuitRootKey,
    external: SigningKey,
    sts_keys: Arc<StsKeys>,
    sts: TokenExchange,
}

/// The STS's own keys, fixed for a test (a keyring in its store in the service).
#[derive(Debug)]
struct StsKeys {
    jwt: Arc<SigningKey>,
    root: Arc<BiscuitRootKey>,
    public: Arc<KeySet>,
}

impl StsKeys {
    fn generate() -> Self {
        let jwt = SigningKey::generate(Algorithm::EdDSA, "sts-1").unwrap();
        let root = BiscuitRootKey::generate(1_000_000);
        let mut public = KeySet::new();
        public.insert_jwt(jwt.verification_key());
        public.insert_biscuit(root.public());
        StsKeys {
            jwt: Arc::new(jwt),
            root: Arc::new(root),
            public: Arc::new(public),
        }
    }
}

impl KeySource for StsKeys {
    fn keys(&self) -> Arc<KeySet> {
        self.public.clone()
    }
}

impl IssuerKeys for StsKeys {
    fn signing(&self) -> (Arc<SigningKey>, Arc<BiscuitRootKey>) {
        (self.jwt.clone(), self.root.clone())
    }
}

fn policy(id: &str, client: &str, audience: &[&str]) -> ExchangePolicy {
    ExchangePolicy {
        policy_id: id.into(),
        client_id: client.into(),
        audience: audience.iter().map(|s| (*s).to_owned()).collect(),
        ..ExchangePolicy::default()
    }
}

async fn world() -> World {
    let mut fakes = Fakes::default();
    for c in ["orders", "inventory", "billing"] {
        fakes.secrets.insert(c.into(), format!("{c}-secret"));
    }
    *fakes.policies.lock() = vec![
        policy("p-orders", "orders", &["inventory", "billing"]),
        policy("p-inventory", "inventory", &["billing"]),
    ];
    let fakes = Arc::new(fakes);
    let clock = ManualClock::new(T0);
    let as_jwt = SigningKey::generate(Algorithm::EdDSA, "as-1").unwrap();
    let as_root = BiscuitRootKey::generate(1);
    let external = SigningKey::generate(Algorithm::ES256, "ext-1").unwrap();
    let mut as_keys = KeySet::new();
    as_keys.insert_jwt(as_jwt.verification_key());
    as_keys.insert_biscuit(as_root.public());
    let mut ext_keys = KeySet::new();
    ext_keys.insert_jwt(external.verification_key());
    let sts_keys = Arc::new(StsKeys::generate());
    let sts = TokenExchange::new(
        Config::new(STS),
        Arc::new(clock.clone()),
        sts_keys.clone(),
        Arc::new(Dir(fakes.clone())),
        Arc::new(Revoked(fakes.clone())),
        vec![
            TrustedIssuer {
                issuer: AS.into(),
                keys: Arc::new(FixedKeys::new(as_keys)),
                biscuits: true,
            },
            TrustedIssuer {
                issuer: "https://idp.test".into(),
                keys: Arc::new(FixedKeys::new(ext_keys)),
                biscuits: false,
            },
        ],
        writ_audit::Auditor::disabled("sts"),
    )
    .unwrap();
    World {
        fakes,
        clock,
        as_jwt,
        as_root,
        external,
        sts_keys,
        sts,
    }
}

impl World {
    /// Claims of an authorization server token for `aud`, issued to `client`.
    fn claims(&self, client: &str, aud: &[&str], scope: &str) -> AccessClaims {
        let now = self.clock.now();
        AccessClaims {
            iss: AS.into(),
            sub: "alice".into(),
            aud: aud.iter().map(|s| (*s).to_owned()).collect(),
            exp: now + 300,
            iat: now,
            nbf: Some(now),
            jti: writ_token::random_id(),
            client_id: client.into(),
            scope: scope.into(),
            gid: Some("grant-1".into()),
            act: None,
            may_act: None,
            cnf: None,
        }
    }

    fn jwt(&self, claims: &AccessClaims) -> String {
        encode_access_token(&self.as_jwt, claims).unwrap()
    }

    fn request(&self, client: &str, subject: &str, aud: &[&str]) -> ExchangeRequest {
        ExchangeRequest {
            grant_type: GRANT_TYPE.into(),
            client_id: client.into(),
            client_secret: format!("{client}-secret"),
            audience: aud.iter().map(|s| (*s).to_owned()).collect(),
            subject_token: subject.into(),
            subject_token_type: token_type::ACCESS_TOKEN.into(),
            ..ExchangeRequest::default()
        }
    }

    /// `client` exchanges `subject` for `aud`.
    async fn exchange(
        &self,
        client: &str,
        subject: &str,
        aud: &[&str],
    ) -> Result<ExchangeResponse> {
        self.sts.exchange(self.request(client, subject, aud)).await
    }

    /// Verifies an issued token as a service named `aud` trusting the STS alone.
    fn verify_issued(&self, token: &str, aud: &str) -> VerifiedToken {
        TokenVerifier::new(
            VerifierConfig::new(vec![STS.into()], Some(aud.into())),
            (*self.sts_keys.public).clone(),
            Arc::new(self.clock.clone()),
        )
        .verify(token)
        .unwrap()
    }

    fn set_policy(&self, p: ExchangePolicy) {
        let mut all = self.fakes.policies.lock();
        all.retain(|q| q.policy_id != p.policy_id);
        all.push(p);
    }
}

#[track_caller]
fn refused(r: Result<ExchangeResponse>, code: &str, cause: Option<&str>) {
    let e = r.expect_err("refused");
    assert_eq!(e.oauth_code(), code, "{e}");
    assert_eq!(e.cause(), cause, "{e}");
}

#[tokio::test]
async fn delegation_records_the_caller_and_keeps_subject_scope_and_lineage() {
    let w = world().await;
    let subject = w.jwt(&w.claims("frontend", &["orders"], "read write"));
    let mut req = w.request("orders", &subject, &["inventory"]);
    req.scope = "read".into();
    let r = w.sts.exchange(req).await.unwrap();
    assert_eq!(r.issued_token_type, token_type::JWT);
    assert_eq!(r.scope, "read");
    assert_eq!(r.expires_in, 300);
    let v = w.verify_issued(&r.access_token, "inventory");
    assert_eq!(v.claims.iss, STS);
    assert_eq!(v.claims.sub, "alice");
    assert_eq!(v.claims.client_id, "orders");
    assert_eq!(v.claims.gid.as_deref(), Some("grant-1"));
    assert_eq!(
        v.claims.act,
        Some(Actor {
            sub: "orders".into(),
            client_id: Some("orders".into()),
            act: None
        })
    );

    // The next hop nests the chain; the depth limit then stops a third.
    let second = w
        .exchange("inventory", &r.access_token, &["billing"])
        .await
        .unwrap();
    let v = w.verify_issued(&second.access_token, "billing");
    assert_eq!(v.claims.act.as_ref().unwrap().depth(), 2);
    assert_eq!(v.claims.act.as_ref().unwrap().sub, "inventory");
    assert_eq!(v.claims.gid.as_deref(), Some("grant-1"));
    w.set_policy(ExchangePolicy {
        max_chain_depth: 1,
        ..policy("p-inventory", "inventory", &["billing"])
    });
    refused(
        w.exchange("inventory", &r.access_token, &["billing"]).await,
        "invalid_request",
        Some("chain_too_deep"),
    );
}

#[tokio::test]
async fn impersonation_only_where_the_policy_allows_it_and_no_actor_is_named() {
    let w = world().await;
    let subject = w.jwt(&w.claims("frontend", &["orders"], "read"));
    w.set_policy(ExchangePolicy {
        allow_impersonation: true,
        ..policy("p-orders", "orders", &["inventory"])
    });
    let r = w
        .exchange("orders", &subject, &["inventory"])
        .await
        .unwrap();
    assert_eq!(
        w.verify_issued(&r.access_token, "inventory").claims.act,
        None
    );

    // An actor token always means delegation, and must be the caller's own.
    let actor = w.jwt(&AccessClaims {
        sub: "orders-workload".into(),
        ..w.claims("orders", &["writ-sts"], "")
    });
    let mut req = w.request("orders", &subject, &["inventory"]);
    req.actor_token = actor.clone();
    req.actor_token_type = token_type::JWT.into();
    let r = w.sts.exchange(req.clone()).await.unwrap();
    let act = w.verify_issued(&r.access_token, "inventory").claims.act;
    assert_eq!(act.unwrap().sub, "orders-workload");

    req.actor_token = w.jwt(&w.claims("billing", &["orders"], ""));
    refused(
        w.sts.exchange(req).await,
        "invalid_request",
        Some("actor_not_caller"),
    );
}

#[tokio::test]
async fn may_act_must_name_the_actor() {
    let w = world().await;
    let mut claims = w.claims("frontend", &["orders"], "read");
    claims.may_act = Some(Actor {
        sub: "orders".into(),
        client_id: None,
        act: None,
    });
    let subject = w.jwt(&claims);
    w.exchange("orders", &subject, &["inventory"])
        .await
        .unwrap();
    claims.may_act.as_mut().unwrap().sub = "someone-else".into();
    refused(
        w.exchange("orders", &w.jwt(&claims), &["inventory"]).await,
        "invalid_request",
        Some("may_act"),
    );
}

#[tokio::test]
async fn audience_moves_only_for_the_service_the_token_is_addressed_to() {
    let w = world().await;
    // A token addressed to inventory cannot be exchanged by orders.
    let for_inventory = w.jwt(&w.claims("frontend", &["inventory"], "read"));
    refused(
        w.exchange("orders", &for_inventory, &["billing"]).await,
        "invalid_request",
        Some("not_for_caller"),
    );
    // Orders' exchanged token (for inventory) can be narrowed by orders but not widened, even
    // within orders' policy.
    let subject = w.jwt(&w.claims("frontend", &["orders"], "read"));
    let first = w
        .exchange("orders", &subject, &["inventory"])
        .await
        .unwrap();
    refused(
        w.exchange("orders", &first.access_token, &["billing", "inventory"])
            .await,
        "invalid_target",
        None,
    );
    w.exchange("orders", &first.access_token, &["inventory"])
        .await
        .unwrap();
    // Outside every policy.
    refused(
        w.exchange("orders", &subject, &["payroll"]).await,
        "invalid_target",
        None,
    );
}

#[tokio::test]
async fn scope_only_narrows_within_subject_and_policy() {
    let w = world().await;
    let subject = w.jwt(&w.claims("frontend", &["orders"], "read write"));
    let mut req = w.request("orders", &subject, &["inventory"]);
    req.scope = "read admin".into();
    refused(w.sts.exchange(req.clone()).await, "invalid_scope", None);
    w.set_policy(ExchangePolicy {
        scope: "read".into(),
        ..policy("p-orders", "orders", &["inventory"])
    });
    req.scope = "write".into();
    refused(w.sts.exchange(req.clone()).await, "invalid_scope", None);
    req.scope = String::new();
    assert_eq!(w.sts.exchange(req).await.unwrap().scope, "read");
}

#[tokio::test]
async fn lifetime_never_outlasts_the_subject() {
    let w = world().await;
    let subject = w.jwt(&w.claims("frontend", &["orders"], "read"));
    w.clock.advance(200);
    let r = w
        .exchange("orders", &subject, &["inventory"])
        .await
        .unwrap();
    assert_eq!(r.expires_in, 100);
    // Within the verifier's leeway but past its expiry (nothing left to hand on), then past
    // the leeway too.
    for seconds in [110, 30] {
        w.clock.advance(seconds);
        refused(
            w.exchange("orders", &subject, &["inventory"]).await,
            "invalid_request",
            Some("expired"),
        );
    }
}

#[tokio::test]
async fn revoked_subjects_are_refused_and_a_stale_feed_fails_closed() {
    let w = world().await;
    let subject = w.jwt(&w.claims("frontend", &["orders"], "read"));
    w.fakes.stale.store(true, Ordering::Relaxed);
    refused(
        w.exchange("orders", &subject, &["inventory"]).await,
        "temporarily_unavailable",
        None,
    );
    w.fakes.stale.store(false, Ordering::Relaxed);
    w.fakes
        .revoked
        .lock()
        .insert((RevocationKind::GrantId, "grant-1".into()));
    refused(
        w.exchange("orders", &subject, &["inventory"]).await,
        "invalid_request",
        Some("revoked"),
    );
}

#[tokio::test]
async fn biscuits_are_attenuated_where_that_suffices_and_reminted_otherwise() {
    let w = world().await;
    let claims = w.claims("orders", &["orders", "inventory"], "read write");
    let biscuit = mint_biscuit(&w.as_root, &claims).unwrap();
    let mut req = w.request("orders", &biscuit, &["inventory"]);
    req.requested_token_type = token_type::BISCUIT.into();
    req.scope = "read".into();

    // Delegation: re-minted under the STS's root key, with the actor.
    let r = w.sts.exchange(req.clone()).await.unwrap();
    assert_eq!(r.issued_token_type, token_type::BISCUIT);
    let v = w.verify_issued(&r.access_token, "inventory");
    assert_eq!(v.format, TokenFormat::Biscuit);
    assert_eq!(v.key_id, w.sts_keys.root.id().to_string());
    assert!(v.key_id.parse::<u32>().unwrap() >= 1_000_000);
    assert_eq!(v.claims.act.unwrap().sub, "orders");
    assert_eq!(v.claims.scope, "read");

    // Impersonation for an audience it names: the same Biscuit with one more block.
    w.set_policy(ExchangePolicy {
        allow_impersonation: true,
        ..policy("p-orders", "orders", &["inventory"])
    });
    let r = w.sts.exchange(req.clone()).await.unwrap();
    assert!(r.access_token.len() > biscuit.len());
    let view = writ_token::decode_unverified(&r.access_token).unwrap();
    assert_eq!(view.root_key_id, Some(1));
    assert_eq!(view.blocks.len(), 2);

    // An attenuated Biscuit is never re-minted (its checks would be lost).
    let narrowed = attenuate(
        &biscuit,
        &Attenuation {
            methods: Some(vec!["/inventory.v1.Inventory/Get".into()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let mut to_jwt = w.request("orders", &narrowed, &["inventory"]);
    to_jwt.subject_token_type = token_type::BISCUIT.into();
    refused(
        w.sts.exchange(to_jwt).await,
        "invalid_request",
        Some("attenuated"),
    );
}

#[tokio::test]
async fn external_issuers_sign_only_for_themselves_and_get_a_derived_lineage() {
    let w = world().await;
    let now = w.clock.now();
    let mut claims = AccessClaims {
        iss: "https://idp.test".into(),
        gid: None,
        ..w.claims("frontend", &["orders"], "read")
    };
    claims.iat = now;
    let token = encode_access_token(&w.external, &claims).unwrap();
    // What an external token may carry is what the policy names.
    assert!(w.exchange("orders", &token, &["inventory"]).await.is_err());
    w.set_policy(ExchangePolicy {
        scope: "read".into(),
        ..policy("p-orders", "orders", &["inventory", "billing"])
    });
    let r = w.exchange("orders", &token, &["inventory"]).await.unwrap();
    let gid = w
        .verify_issued(&r.access_token, "inventory")
        .claims
        .gid
        .unwrap();
    assert!(gid.starts_with("x-"));
    // Twice the same token: the same lineage.
    let again = w.exchange("orders", &token, &["inventory"]).await.unwrap();
    let gid2 = w.verify_issued(&again.access_token, "inventory").claims.gid;
    assert_eq!(gid2.as_deref(), Some(gid.as_str()));

    // The external key cannot vouch for the authorization server, nor for an unknown issuer.
    for iss in [AS, "https://unknown.test"] {
        let forged = encode_access_token(
            &w.external,
            &AccessClaims {
                iss: iss.into(),
                ..claims.clone()
            },
        )
        .unwrap();
        refused(
            w.exchange("orders", &forged, &["inventory"]).await,
            "invalid_request",
            Some("untrusted_issuer"),
        );
    }
}

#[tokio::test]
async fn malformed_requests_are_refused_before_any_token_is_looked_at() {
    let w = world().await;
    let subject = w.jwt(&w.claims("frontend", &["orders"], "read"));
    let base = w.request("orders", &subject, &["inventory"]);
    type Change = fn(&mut ExchangeRequest);
    let cases: &[(Change, &str, Option<&str>)] = &[
        (|r| r.client_secret = "wrong".into(), "invalid_client", None),
        (
            |r| {
                r.client_id.clear();
                r.client_secret.clear();
            },
            "invalid_client",
            None,
        ),
        (
            |r| r.grant_type = "client_credentials".into(),
            "unsupported_grant_type",
            None,
        ),
        (|r| r.subject_token.clear(), "invalid_request", None),
        (
            |r| r.actor_token = r.subject_token.clone(),
            "invalid_request",
            None,
        ),
        (
            |r| r.actor_token_type = token_type::JWT.into(),
            "invalid_request",
            None,
        ),
        (
            |r| r.subject_token_type = token_type::BISCUIT.into(),
            "invalid_request",
            Some("type_mismatch"),
        ),
        (
            |r| r.subject_token_type = token_type::REFRESH_TOKEN.into(),
            "invalid_request",
            Some("unsupported_token_type"),
        ),
        (|r| r.audience.clear(), "invalid_request", None),
    ];
    for &(change, code, cause) in cases {
        let mut r = base.clone();
        change(&mut r);
        refused(w.sts.exchange(r).await, code, cause);
    }
    // A client without any policy.
    let r = w.request("billing", &subject, &["inventory"]);
    refused(w.sts.exchange(r).await, "unauthorized_client", None);
}

/// SECURITY.md item 22: nested `act` entries are history and grant nothing. A token that
/// `orders` delegated to `inventory` carries `act: orders`; when `inventory` exchanges it, only
/// `inventory`'s own policy counts (not `orders`'s wider one, not its impersonation right), and
/// the new `act` names `inventory` with the history nested below.
#[tokio::test]
async fn nested_act_is_history_and_grants_nothing() {
    let w = world().await;
    let subject = w.jwt(&w.claims("frontend", &["orders"], "read write"));
    let hop = w
        .exchange("orders", &subject, &["inventory"])
        .await
        .unwrap();
    // From now on `orders` may reach more, and impersonate.
    w.set_policy(ExchangePolicy {
        allow_impersonation: true,
        ..policy("p-orders", "orders", &["inventory", "billing", "shipping"])
    });
    let held = w.verify_issued(&hop.access_token, "inventory");
    assert_eq!(held.claims.act.as_ref().unwrap().sub, "orders");

    // `orders` may reach shipping; `inventory` may not, history or not.
    let r = w
        .exchange("inventory", &hop.access_token, &["shipping"])
        .await;
    assert!(r.is_err(), "{r:?}");
    // Nor does `orders`'s impersonation right pass to `inventory` through the chain.
    let r = w
        .exchange("inventory", &hop.access_token, &["billing"])
        .await
        .unwrap();
    let v = w.verify_issued(&r.access_token, "billing");
    let act = v.claims.act.expect("delegation, never impersonation");
    assert_eq!(
        (act.sub.as_str(), act.client_id.as_deref()),
        ("inventory", Some("inventory"))
    );
    assert_eq!(
        act.act.as_ref().unwrap().sub,
        "orders",
        "history nested below"
    );
    assert_eq!(v.claims.sub, "alice");
}

#[tokio::test]
async fn a_dpop_bound_subject_token_is_not_exchanged_into_a_bearer_token() {
    let w = world().await;
    let bound = AccessClaims {
        cnf: Some(writ_token::Confirmation {
            jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
            x5t_s256: None,
        }),
        ..w.claims("frontend", &["orders"], "read")
    };
    refused(
        w.exchange("orders", &w.jwt(&bound), &["inventory"]).await,
        "invalid_request",
        Some("dpop_bound"),
    );
    // The same token unbound is exchanged.
    let plain = w.jwt(&w.claims("frontend", &["orders"], "read"));
    assert!(w.exchange("orders", &plain, &["inventory"]).await.is_ok());
}
