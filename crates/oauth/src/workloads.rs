//! The JWT-bearer grant (RFC 7523 section 2.1) for workloads that already have a platform
//! identity: a Kubernetes service-account token, a SPIFFE JWT-SVID. The workload presents that
//! token as `assertion`; Writ verifies it with the keys of an issuer an administrator trusts, and
//! a policy of that issuer says which subjects get tokens as which client, with what scope and
//! audiences at most. No secret is involved.
//!
//! One record per trusted issuer in [`Tree::Workloads`], its policies inside it (at most
//! [`MAX_WORKLOAD_POLICIES`]): a grant reads one record. A policy's subject is exact, or a
//! prefix ending in `*` (`system:serviceaccount:prod:*`); a bare `*` is refused, so trusting an
//! issuer never hands all its subjects a client by accident. When several policies name a
//! subject, the most specific decides alone (exact, then the longest prefix), whatever client
//! the request names: limits are never combined across policies, and one policy per subject
//! and client.
//!
//! The issued token's `sub` is the workload's (`system:serviceaccount:prod:orders`), its
//! `client_id` the policy's client; no refresh token (the workload presents its platform token
//! again, RFC 7521 section 4.1). Tokens whose issuer says they are single-use have their `jti`
//! spent like client assertions'; Kubernetes' projected tokens are reused by the pod until the
//! kubelet refreshes them, so an issuer may allow reuse within the token's (bounded) lifetime.

use writ_audit::{Event, Outcome};
use writ_store::{AsyncStoreExt, Batch, Tree, encode};
use writ_token::{Scopes, TokenError, WorkloadRules, random_id};

use crate::error::{Error, Result};
use crate::records::{ClientRecord, WorkloadIssuerRecord, WorkloadPolicyRecord};
use crate::types::{Page, TokenRequest, TokenResponse};
use crate::{AuthorizationServer, MAX_AUDIENCES, grant_type, valid_id};

/// What an issuer's update may name in its mask.
pub const ISSUER_UPDATE_FIELDS: [&str; 5] = [
    "jwks",
    "jwks_uri",
    "audience",
    "max_token_lifetime",
    "single_use",
];

/// Most policies one issuer holds (what one grant reads at most).
pub const MAX_WORKLOAD_POLICIES: usize = 256;

/// Lifetime of an issuer's tokens accepted when its record sets none, in seconds (Kubernetes'
/// projected tokens default to an hour).
pub const DEFAULT_WORKLOAD_TOKEN_LIFETIME: i64 = 3600;

/// Longest lifetime an issuer's tokens may be trusted with: a stolen reusable token works until
/// it expires.
pub const MAX_WORKLOAD_TOKEN_LIFETIME: i64 = 24 * 3600;

/// Largest JWK Set an issuer may be registered with, and most keys in it (RSA keys are large,
/// and a cluster keeps old keys published while its tokens live).
const MAX_ISSUER_JWKS_LEN: usize = 64 * 1024;
const MAX_ISSUER_KEYS: usize = 20;

/// Longest issuer identifier and policy subject.
const MAX_ISSUER_LEN: usize = 512;
const MAX_SUBJECT_LEN: usize = 256;

/// A trusted workload identity issuer, as the admin API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadIssuer {
    /// The tokens' `iss`, exactly.
    pub issuer: String,
    /// Its public keys, a JWK Set (EdDSA, ES256, RS256 or PS256); or
    pub jwks: String,
    /// where it publishes them (https, fetched under the rules for clients' `jwks_uri`).
    pub jwks_uri: String,
    /// What the tokens' `aud` must contain; empty: this server's issuer identifier.
    pub audience: String,
    /// Latest `exp` accepted, in seconds from now; 0: [`DEFAULT_WORKLOAD_TOKEN_LIFETIME`].
    pub max_token_lifetime: i64,
    /// Each token carries a `jti` and is used once.
    pub single_use: bool,
    pub policies: Vec<WorkloadPolicy>,
    pub created_at: i64,
}

/// Which subjects of an issuer get tokens as which client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadPolicy {
    /// Assigned when empty.
    pub policy_id: String,
    /// Exact, or a prefix ending in `*`.
    pub subject: String,
    /// The client the tokens are issued to; it must allow the JWT-bearer grant.
    pub client_id: String,
    /// Most scope granted (within the client's own); empty: the client's.
    pub scope: String,
    /// Audiences allowed (within the client's own); empty: the client's.
    pub audience: Vec<String>,
}

impl WorkloadPolicy {
    fn matches(&self, subject: &str) -> bool {
        match self.subject.strip_suffix('*') {
            Some(prefix) => subject.starts_with(prefix),
            None => subject == self.subject,
        }
    }
}

impl AuthorizationServer {
    /// Trusts a workload issuer, with its policies.
    pub async fn create_workload_issuer(&self, spec: WorkloadIssuer) -> Result<WorkloadIssuer> {
        let mut record = issuer_record(spec);
        record.created_at = self.now();
        validate_issuer(&record)?;
        let key = record.issuer.as_bytes().to_vec();
        let intent = self.audit.intent(
            Event::new("workload_issuer_created", Outcome::Success)
                .detail("issuer", &record.issuer)
                .detail("after", describe(&record)),
        );
        let batch = Batch::new()
            .expect(key.clone(), None)
            .put(key, encode(&record));
        if !self
            .store
            .commit(Tree::Workloads, intent.attach(batch))
            .await?
        {
            return Err(Error::AlreadyExists("this issuer is already trusted"));
        }
        self.audit.written(intent);
        self.store.durable().await?;
        Ok(issuer(record))
    }

    pub async fn get_workload_issuer(&self, iss: &str) -> Result<WorkloadIssuer> {
        Ok(issuer(self.workload_record(iss).await?.0))
    }

    pub async fn list_workload_issuers(
        &self,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<WorkloadIssuer>> {
        let page = crate::clients::list_page::<WorkloadIssuerRecord>(
            self,
            page_size,
            page_token,
            None,
            |r| r.issuer.clone(),
        )
        .await?;
        Ok(page.map(issuer))
    }

    /// Replaces what is trusted of an issuer: its keys, audience, lifetime, single use, or only
    /// the ones `mask` names ([`ISSUER_UPDATE_FIELDS`]; empty: all), the rest kept as stored
    /// when the change commits. Its policies are kept (changed with
    /// [`Self::add_workload_policy`] and [`Self::remove_workload_policy`]).
    pub async fn update_workload_issuer(
        &self,
        spec: WorkloadIssuer,
        mask: &[String],
    ) -> Result<WorkloadIssuer> {
        if mask
            .iter()
            .any(|p| !ISSUER_UPDATE_FIELDS.contains(&p.as_str()))
        {
            return Err(Error::InvalidRequest(
                "update_mask names a field that cannot be updated",
            ));
        }
        let names = |field: &str| mask.is_empty() || mask.iter().any(|p| p == field);
        let iss = spec.issuer.clone();
        let wanted = issuer_record(spec);
        self.modify_workload(&iss, "workload_issuer_updated", |r| {
            if names("jwks") {
                r.jwks = wanted.jwks.clone();
            }
            if names("jwks_uri") {
                r.jwks_uri = wanted.jwks_uri.clone();
            }
            if names("audience") {
                r.audience = wanted.audience.clone();
            }
            if names("max_token_lifetime") {
                r.max_token_lifetime = wanted.max_token_lifetime;
            }
            if names("single_use") {
                r.single_use = wanted.single_use;
            }
            Ok(())
        })
        .await
    }

    /// Adds a policy to an issuer; returns it with its id.
    pub async fn add_workload_policy(
        &self,
        iss: &str,
        mut policy: WorkloadPolicy,
    ) -> Result<WorkloadPolicy> {
        if policy.policy_id.is_empty() {
            policy.policy_id = random_id();
        }
        let added = policy_record(&policy);
        self.modify_workload(iss, "workload_policy_added", |r| {
            if r.policies.iter().any(|p| p.policy_id == added.policy_id) {
                return Err(Error::AlreadyExists("a policy with this policy_id exists"));
            }
            r.policies.push(added.clone());
            Ok(())
        })
        .await?;
        Ok(policy)
    }

    pub async fn remove_workload_policy(&self, iss: &str, policy_id: &str) -> Result<()> {
        self.modify_workload(iss, "workload_policy_removed", |r| {
            let before = r.policies.len();
            r.policies.retain(|p| p.policy_id != policy_id);
            if r.policies.len() == before {
                return Err(Error::NotFound("no such workload policy"));
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Stops trusting an issuer. Tokens already issued on its word live until they expire (a
    /// client or subject revocation ends them sooner).
    pub async fn delete_workload_issuer(&self, iss: &str) -> Result<()> {
        let (record, bytes) = self.workload_record(iss).await?;
        let key = record.issuer.as_bytes().to_vec();
        let intent = self.audit.intent(
            Event::new("workload_issuer_deleted", Outcome::Success)
                .detail("issuer", &record.issuer)
                .detail("before", describe(&record)),
        );
        let batch = Batch::new().expect(key.clone(), Some(bytes)).remove(key);
        if !self
            .store
            .commit(Tree::Workloads, intent.attach(batch))
            .await?
        {
            return Err(Error::Conflict("the issuer changed meanwhile; retry"));
        }
        self.audit.written(intent);
        self.store.durable().await?;
        self.workload_keys.forget(iss);
        Ok(())
    }

    async fn workload_record(&self, iss: &str) -> Result<(WorkloadIssuerRecord, Vec<u8>)> {
        if !valid_issuer(iss) {
            return Err(Error::InvalidRequest("issuer is malformed"));
        }
        let bytes = self
            .store
            .get(Tree::Workloads, iss.as_bytes())
            .await?
            .ok_or(Error::NotFound("no such workload issuer"))?;
        Ok((writ_store::decode(&bytes)?, bytes))
    }

    /// Read, change, validate, write if unchanged meanwhile (a few tries), with its audit
    /// record in the batch.
    async fn modify_workload(
        &self,
        iss: &str,
        event: &'static str,
        change: impl Fn(&mut WorkloadIssuerRecord) -> Result<()>,
    ) -> Result<WorkloadIssuer> {
        for _ in 0..8 {
            let (before, bytes) = self.workload_record(iss).await?;
            let mut after = before.clone();
            change(&mut after)?;
            validate_issuer(&after)?;
            let key = iss.as_bytes().to_vec();
            let intent = self.audit.intent(
                Event::new(event, Outcome::Success)
                    .detail("issuer", iss)
                    .detail("before", describe(&before))
                    .detail("after", describe(&after)),
            );
            let batch = Batch::new()
                .expect(key.clone(), Some(bytes))
                .put(key, encode(&after));
            if self
                .store
                .commit(Tree::Workloads, intent.attach(batch))
                .await?
            {
                self.audit.written(intent);
                self.store.durable().await?;
                self.workload_keys.forget(iss);
                return Ok(issuer(after));
            }
        }
        Err(Error::Conflict("the issuer kept changing; retry"))
    }

    /// RFC 7523 section 2.1: the workload's token verified against its issuer's keys, a policy
    /// of that issuer naming its subject, then an access token for the policy's client.
    /// A token that does not verify, from an issuer not trusted, or whose subject no policy
    /// names is `invalid_grant` (RFC 7523 section 3.1).
    pub(crate) async fn jwt_bearer(&self, req: &TokenRequest) -> Result<TokenResponse> {
        if req.assertion.is_empty() {
            return Err(Error::InvalidRequest("assertion is required"));
        }
        let iss = writ_token::assertion_issuer(&req.assertion)
            .filter(|i| valid_issuer(i))
            .ok_or(Error::InvalidGrant(
                "the assertion is not a JWT with an iss",
            ))?;
        let Some(record) = self
            .store
            .get_record::<WorkloadIssuerRecord>(iss.as_bytes())
            .await?
        else {
            return Err(Error::InvalidGrant("the assertion's issuer is not trusted"));
        };
        let audience = if record.audience.is_empty() {
            self.config.issuer.as_str()
        } else {
            record.audience.as_str()
        };
        let rules = WorkloadRules {
            issuer: &record.issuer,
            audience,
            now: self.now(),
            leeway: self.config.leeway,
            max_lifetime: lifetime(&record),
            require_jti: record.single_use,
        };
        let verified = match self.verify_workload(&record, &req.assertion, &rules).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(issuer = %record.issuer, reason = e.reason(), "workload token refused");
                return Err(Error::InvalidGrant(workload_refusal(&e)));
            }
        };
        if !valid_subject(&verified.subject) {
            return Err(Error::InvalidGrant("the assertion's sub is not usable"));
        }

        // One policy decides, the most specific naming this subject (an exact subject, then the
        // longest prefix), whatever client the request names: limits are never combined across
        // policies, and a narrower policy is never escaped through a broader one. At that level
        // (one policy per client, validated), the request's client_id picks when there are
        // several.
        let matching: Vec<&WorkloadPolicyRecord> = record
            .policies
            .iter()
            .filter(|p| policy(p).matches(&verified.subject))
            .collect();
        let Some(top) = matching.iter().map(|p| specificity(p)).max() else {
            return Err(Error::InvalidGrant(
                "no policy of the issuer allows this subject",
            ));
        };
        let decisive: Vec<&WorkloadPolicyRecord> = matching
            .into_iter()
            .filter(|p| specificity(p) == top)
            .collect();
        let chosen = if req.client_id.is_empty() {
            match decisive.as_slice() {
                [one] => *one,
                _ => {
                    return Err(Error::InvalidRequest(
                        "several clients may be used with this assertion: name one with \
                         client_id",
                    ));
                }
            }
        } else {
            decisive
                .iter()
                .copied()
                .find(|p| p.client_id == req.client_id)
                .ok_or(Error::InvalidGrant(
                    "the policy for this subject names another client",
                ))?
        };
        let client = self.workload_client(req, &chosen.client_id).await?;

        // Within the client's own scope and audiences, and within the policy's.
        let client_scope =
            Scopes::parse(&client.scope).map_err(|_| Error::Internal("stored scope"))?;
        let ceiling = if chosen.scope.is_empty() {
            client_scope
        } else {
            Scopes::parse(&chosen.scope)
                .map_err(|_| Error::Internal("stored scope"))?
                .intersection(&client_scope)
        };
        let scope = crate::grants::narrow_scope(&req.scope, &ceiling)?;
        let audience = if chosen.audience.is_empty() {
            crate::grants::resolve_audience(&client, &req.audience, &req.resource)?
        } else if req.audience.is_empty() && req.resource.is_empty() {
            // None asked for: the client's first audience the policy allows.
            let first = client
                .audience
                .iter()
                .find(|a| chosen.audience.contains(a))
                .ok_or(Error::InvalidTarget(
                    "the policy allows none of the client's audiences",
                ))?;
            vec![first.clone()]
        } else {
            let wanted = crate::grants::resolve_audience(&client, &req.audience, &req.resource)?;
            if wanted.iter().any(|a| !chosen.audience.contains(a)) {
                return Err(Error::InvalidTarget(
                    "the requested audience is not allowed for this workload",
                ));
            }
            wanted
        };
        let m = crate::grants::Minting {
            jkt: &req.dpop_jkt,
            x5t: &req.cert_x5t,
            proof_jti: &req.dpop_jti,
            client: &client,
            subject: verified.subject.clone(),
            scope,
            audience,
            gid: random_id(),
            format: crate::grants::resolve_format(&client, req.token_format)?,
        };
        // Apart from client assertions' marks: a client id is printable, never \x01.
        let mark_scope: [&[u8]; 2] = [b"\x01workload", record.issuer.as_bytes()];
        // A replay is refused before a token is minted for nothing ...
        if record.single_use && self.jti_spent(&mark_scope, &verified.jti).await? {
            return Err(Error::InvalidGrant("the assertion was already used"));
        }
        let (response, event) = self.issue_for(&m, grant_type::JWT_BEARER)?;
        // ... and spent last, once everything else has been decided (a refused request burns
        // nothing); the conditional insert settles a race between two uses.
        if record.single_use
            && !self
                .spend_jti(&mark_scope, &verified.jti, verified.exp)
                .await?
        {
            return Err(Error::InvalidGrant("the assertion was already used"));
        }
        let event = event
            .detail("issuer", &record.issuer)
            .detail("policy_id", &chosen.policy_id)
            .detail("assertion_kid", &verified.key_id)
            .detail("assertion_jti", &verified.jti);
        self.audit.record(event).await?;
        Ok(response)
    }

    /// The policy's client: enabled, allowed the grant; when the request also authenticates a
    /// client, that one.
    async fn workload_client(&self, req: &TokenRequest, client_id: &str) -> Result<ClientRecord> {
        let authenticates = !req.client_secret.is_empty()
            || !req.client_assertion.is_empty()
            || !req.client_assertion_type.is_empty();
        let client = if authenticates {
            let c = self
                .authenticate_client_from(req.into(), req.source)
                .await?;
            if c.client_id != client_id {
                return Err(Error::InvalidGrant(
                    "the policy names another client than the one authenticated",
                ));
            }
            c
        } else {
            self.store
                .get_record::<ClientRecord>(client_id.as_bytes())
                .await?
                .ok_or(Error::InvalidGrant("the policy's client does not exist"))?
        };
        if client.disabled {
            return Err(Error::InvalidGrant("the policy's client is disabled"));
        }
        if !client.allows_grant(grant_type::JWT_BEARER) {
            return Err(Error::UnauthorizedClient(
                "the client may not use the jwt-bearer grant",
            ));
        }
        Ok(client)
    }

    async fn verify_workload(
        &self,
        record: &WorkloadIssuerRecord,
        token: &str,
        rules: &WorkloadRules<'_>,
    ) -> std::result::Result<writ_token::VerifiedWorkload, TokenError> {
        if record.jwks_uri.is_empty() {
            let keys = writ_token::workload_key_set(&record.jwks)?;
            return writ_token::verify_workload_token(token, &keys, rules);
        }
        self.verify_with_url_keys(
            &self.workload_keys,
            &record.issuer,
            &record.jwks_uri,
            |keys| writ_token::verify_workload_token(token, keys, rules),
        )
        .await
    }
}

/// What the token endpoint says of a refused workload token: the class of fault, never the
/// token's contents.
fn workload_refusal(e: &TokenError) -> &'static str {
    match e {
        TokenError::Expired => "the assertion has expired",
        TokenError::LifetimeTooLong => "the assertion lives longer than its issuer is trusted for",
        TokenError::WrongAudience => "the assertion is not addressed to this server",
        TokenError::WrongIssuer => "the assertion's issuer is not trusted",
        TokenError::NotYetValid => "the assertion is not valid yet",
        TokenError::UnknownKey | TokenError::BadSignature | TokenError::AlgorithmNotAllowed => {
            "the assertion is not signed by a key of its issuer"
        }
        _ => "the assertion is malformed",
    }
}

/// How closely a policy names a subject: exact beats any prefix, a longer prefix a shorter.
fn specificity(p: &WorkloadPolicyRecord) -> (bool, usize) {
    match p.subject.strip_suffix('*') {
        Some(prefix) => (false, prefix.len()),
        None => (true, p.subject.len()),
    }
}

fn lifetime(r: &WorkloadIssuerRecord) -> i64 {
    match r.max_token_lifetime {
        0 => DEFAULT_WORKLOAD_TOKEN_LIFETIME,
        n => n,
    }
}

/// Printable, no spaces, bounded: an issuer identifier is a URL or a plain name (SPIFFE).
fn valid_issuer(s: &str) -> bool {
    crate::printable_within(s, MAX_ISSUER_LEN)
}

/// A subject goes into tokens, logs and audit records: printable, no spaces, bounded.
fn valid_subject(s: &str) -> bool {
    crate::printable_within(s, MAX_SUBJECT_LEN)
}

fn validate_issuer(r: &WorkloadIssuerRecord) -> Result<()> {
    if !valid_issuer(&r.issuer) {
        return Err(Error::InvalidRequest(
            "issuer is 1-512 printable characters without spaces",
        ));
    }
    match (r.jwks.is_empty(), r.jwks_uri.is_empty()) {
        (false, true) => validate_issuer_jwks(&r.jwks)?,
        (true, false) => crate::client_auth::validate_jwks_uri(&r.jwks_uri)?,
        _ => {
            return Err(Error::InvalidRequest(
                "a workload issuer has jwks or jwks_uri, one of them",
            ));
        }
    }
    if !r.audience.is_empty() && !valid_issuer(&r.audience) {
        return Err(Error::InvalidRequest("audience is malformed"));
    }
    // Every token a Kubernetes cluster gives a pod by default names the cluster's API server
    // (its issuer, or the conventional in-cluster URL): trusting that audience would hand
    // Writ tokens to every pod that has not asked for one addressed here.
    let bare = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    if bare(&r.audience) == bare(&r.issuer)
        || bare(&r.audience).starts_with("https://kubernetes.default.svc")
    {
        return Err(Error::InvalidRequest(
            "audience must name this server, not the issuer itself (for Kubernetes, a \
             projected token's own audience, such as \"writ\")",
        ));
    }
    if !(0..=MAX_WORKLOAD_TOKEN_LIFETIME).contains(&r.max_token_lifetime) {
        return Err(Error::InvalidRequest(
            "max_token_lifetime is 0 (an hour) to 86400 seconds",
        ));
    }
    if r.policies.len() > MAX_WORKLOAD_POLICIES {
        return Err(Error::InvalidRequest(
            "a workload issuer has at most 256 policies",
        ));
    }
    let mut ids: Vec<&str> = r.policies.iter().map(|p| p.policy_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != r.policies.len() {
        return Err(Error::InvalidRequest("policy ids are distinct"));
    }
    // One policy per subject and client: which of two would decide must not depend on order.
    let mut pairs: Vec<(&str, &str)> = r
        .policies
        .iter()
        .map(|p| (p.subject.as_str(), p.client_id.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    if pairs.len() != r.policies.len() {
        return Err(Error::AlreadyExists(
            "a policy for this subject and client exists",
        ));
    }
    for p in &r.policies {
        validate_policy(p)?;
    }
    Ok(())
}

fn validate_policy(p: &WorkloadPolicyRecord) -> Result<()> {
    if !valid_id(&p.policy_id) || !valid_id(&p.client_id) {
        return Err(Error::InvalidRequest(
            "policy_id and client_id must be 1-128 printable characters",
        ));
    }
    let prefix = p.subject.strip_suffix('*').unwrap_or(&p.subject);
    if !valid_subject(&p.subject) || prefix.is_empty() {
        return Err(Error::InvalidRequest(
            "subject is exact, or a non-empty prefix ending in *, at most 256 printable \
             characters",
        ));
    }
    Scopes::parse(&p.scope).map_err(|_| Error::InvalidRequest("scope is malformed"))?;
    if p.audience.len() > MAX_AUDIENCES || p.audience.iter().any(|a| !valid_id(a)) {
        return Err(Error::InvalidRequest("a policy names at most 16 audiences"));
    }
    Ok(())
}

/// Public signature keys only, each with a distinct kid, of an algorithm workload tokens may
/// use, at most [`MAX_ISSUER_KEYS`].
fn validate_issuer_jwks(jwks: &str) -> Result<()> {
    const BAD: &str = "jwks is a JWK Set of 1 to 20 public EdDSA, ES256, RS256 or PS256 \
                       signature keys (RSA of 2048 bits or more), each with a distinct kid";
    if jwks.len() > MAX_ISSUER_JWKS_LEN {
        return Err(Error::InvalidRequest("jwks is larger than 64 KiB"));
    }
    let listed = crate::client_auth::public_keys_listed(jwks, BAD)?;
    let keys = writ_token::parse_jwk_set_for(jwks, &writ_token::Algorithm::WORKLOAD)
        .map_err(|_| Error::InvalidRequest(BAD))?;
    let mut kids: Vec<&str> = keys.iter().map(|k| k.kid()).collect();
    kids.sort_unstable();
    kids.dedup();
    if keys.is_empty()
        || keys.len() != listed
        || keys.len() > MAX_ISSUER_KEYS
        || kids.len() != keys.len()
    {
        return Err(Error::InvalidRequest(BAD));
    }
    Ok(())
}

/// What an audit record says of an issuer: never key material, only key ids and the rules.
fn describe(r: &WorkloadIssuerRecord) -> String {
    let kids = crate::client_auth::jwks_kids(&r.jwks);
    let policies: Vec<String> = r
        .policies
        .iter()
        .map(|p| {
            format!(
                "{}: {} -> {} [{}] {:?}",
                p.policy_id, p.subject, p.client_id, p.scope, p.audience
            )
        })
        .collect();
    format!(
        "kids={kids:?} jwks_uri={:?} audience={:?} max_token_lifetime={} single_use={} \
         policies={policies:?}",
        r.jwks_uri, r.audience, r.max_token_lifetime, r.single_use
    )
}

fn issuer_record(s: WorkloadIssuer) -> WorkloadIssuerRecord {
    WorkloadIssuerRecord {
        issuer: s.issuer,
        jwks: s.jwks,
        jwks_uri: s.jwks_uri,
        audience: s.audience,
        max_token_lifetime: s.max_token_lifetime,
        single_use: s.single_use,
        policies: s
            .policies
            .into_iter()
            .map(|mut p| {
                if p.policy_id.is_empty() {
                    p.policy_id = random_id();
                }
                policy_record(&p)
            })
            .collect(),
        created_at: s.created_at,
    }
}

fn policy_record(p: &WorkloadPolicy) -> WorkloadPolicyRecord {
    WorkloadPolicyRecord {
        policy_id: p.policy_id.clone(),
        subject: p.subject.clone(),
        client_id: p.client_id.clone(),
        scope: p.scope.clone(),
        audience: p.audience.clone(),
    }
}

fn policy(p: &WorkloadPolicyRecord) -> WorkloadPolicy {
    WorkloadPolicy {
        policy_id: p.policy_id.clone(),
        subject: p.subject.clone(),
        client_id: p.client_id.clone(),
        scope: p.scope.clone(),
        audience: p.audience.clone(),
    }
}

fn issuer(r: WorkloadIssuerRecord) -> WorkloadIssuer {
    WorkloadIssuer {
        policies: r.policies.iter().map(policy).collect(),
        issuer: r.issuer,
        jwks: r.jwks,
        jwks_uri: r.jwks_uri,
        audience: r.audience,
        max_token_lifetime: r.max_token_lifetime,
        single_use: r.single_use,
        created_at: r.created_at,
    }
}
