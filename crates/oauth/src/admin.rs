//! Administration that is neither clients nor users: signing keys and exchange policies.

use writ_exchange::ExchangePolicy;
use writ_keyring::{KeyInfo, KeyPurpose};
use writ_store::{AsyncStoreExt, Tree};
use writ_token::{Algorithm, RevocationEntry, RevocationKind, Scopes, random_id};

use crate::error::{Error, Result};
use crate::records::ExchangePolicyRecord;
use crate::revocations::Revocation;
use crate::types::Page;
use crate::{AuthorizationServer, MAX_AUDIENCES, valid_id};

/// Most entries in one admin revocation.
pub const MAX_REVOCATIONS: usize = 1000;

/// Longest delegation chain an exchange policy may allow.
pub const MAX_CHAIN_DEPTH: u32 = 8;

impl AuthorizationServer {
    /// Every stored key, without secrets.
    pub fn list_signing_keys(&self) -> Vec<KeyInfo> {
        self.keys.state().keys()
    }

    /// Makes a new key active. The old one stays published (and trusted) until the longest-lived
    /// token it may have signed has expired.
    pub async fn rotate_signing_key(
        &self,
        purpose: KeyPurpose,
        alg: Option<Algorithm>,
    ) -> Result<KeyInfo> {
        if purpose == KeyPurpose::Biscuit && alg.is_some() {
            return Err(Error::InvalidRequest(
                "Biscuit root keys are always ed25519",
            ));
        }
        let alg = alg.unwrap_or(self.config.jwt_algorithm);
        let retire_for = self.config.max_access_token_lifetime + self.config.leeway;
        let record = self
            .keys
            .rotate(purpose, alg, self.now(), retire_for)
            .await?;
        tracing::warn!(target: "writ::audit", event = "signing_key_rotated", kid = %record.kid, purpose = purpose.name(), alg = %record.alg);
        Ok(record)
    }

    /// Revocations an administrator asks for (tokens, grants, subjects, clients, Biscuit blocks,
    /// keys): recorded here and published. Revoking the active signing key rotates it first, so
    /// the server never signs with a revoked key.
    pub async fn admin_revoke(&self, mut entries: Vec<RevocationEntry>) -> Result<()> {
        if entries.is_empty() || entries.len() > MAX_REVOCATIONS {
            return Err(Error::InvalidRequest("give 1 to 1000 revocation entries"));
        }
        let now = self.now();
        for e in &mut entries {
            e.validate(now)
                .map_err(|_| Error::InvalidRequest("a revocation entry is invalid"))?;
            // No entry expires before the tokens it can match: at least the longest access
            // token's lifetime (and leeway) past its cut-off.
            e.expires_at = e
                .expires_at
                .max(e.not_before.max(now).saturating_add(self.access_horizon()));
        }
        for e in entries.iter().filter(|e| e.kind == RevocationKind::KeyId) {
            let state = self.keys.state();
            if state.jwt.kid() == e.value {
                self.rotate_signing_key(KeyPurpose::Jwt, None).await?;
            } else if state.biscuit.id().to_string() == e.value {
                self.rotate_signing_key(KeyPurpose::Biscuit, None).await?;
            }
        }
        let revocations: Vec<Revocation> = entries.into_iter().map(Revocation::new).collect();
        self.record_revocations(&revocations, "admin").await
    }

    pub async fn create_exchange_policy(
        &self,
        mut policy: ExchangePolicy,
    ) -> Result<ExchangePolicy> {
        if policy.policy_id.is_empty() {
            policy.policy_id = random_id();
        }
        validate_policy(&policy)?;
        if !self
            .store
            .insert_new(policy.policy_id.as_bytes(), &policy_record(&policy))
            .await?
        {
            return Err(Error::AlreadyExists("a policy with this policy_id exists"));
        }
        self.store.durable().await?;
        tracing::info!(target: "writ::audit", event = "exchange_policy_created", policy_id = %policy.policy_id, client_id = %policy.client_id);
        Ok(policy)
    }

    pub async fn get_exchange_policy(&self, policy_id: &str) -> Result<ExchangePolicy> {
        if !valid_id(policy_id) {
            return Err(Error::InvalidRequest("policy_id is malformed"));
        }
        self.store
            .get_record::<ExchangePolicyRecord>(policy_id.as_bytes())
            .await?
            .map(policy)
            .ok_or(Error::NotFound("no such exchange policy"))
    }

    pub async fn list_exchange_policies(
        &self,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<ExchangePolicy>> {
        let page =
            crate::clients::list_page::<ExchangePolicyRecord>(self, page_size, page_token, |p| {
                p.policy_id.clone()
            })
            .await?;
        Ok(page.map(policy))
    }

    /// Every exchange policy of one client (what the STS consults on each exchange).
    pub async fn exchange_policies_of(&self, client_id: &str) -> Result<Vec<ExchangePolicy>> {
        if !valid_id(client_id) {
            return Err(Error::InvalidRequest("client_id is malformed"));
        }
        // Policies are few and small: a scan is cheaper than keeping an index by client in step.
        Ok(self
            .store
            .scan_records::<ExchangePolicyRecord>(b"", None, usize::MAX)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| p.client_id == client_id)
            .map(policy)
            .collect())
    }

    pub async fn delete_exchange_policy(&self, policy_id: &str) -> Result<()> {
        self.get_exchange_policy(policy_id).await?;
        self.store
            .remove(Tree::ExchangePolicies, policy_id.as_bytes())
            .await?;
        self.store.durable().await?;
        tracing::info!(target: "writ::audit", event = "exchange_policy_deleted", policy_id = %policy_id);
        Ok(())
    }
}

fn policy(p: ExchangePolicyRecord) -> ExchangePolicy {
    ExchangePolicy {
        policy_id: p.policy_id,
        client_id: p.client_id,
        audience: p.audience,
        scope: p.scope,
        max_lifetime: p.max_lifetime,
        allow_impersonation: p.allow_impersonation,
        // Validated at creation (0..=8); a negative value could only come from corruption.
        max_chain_depth: u32::try_from(p.max_chain_depth).unwrap_or(1),
    }
}

fn policy_record(p: &ExchangePolicy) -> ExchangePolicyRecord {
    ExchangePolicyRecord {
        policy_id: p.policy_id.clone(),
        client_id: p.client_id.clone(),
        audience: p.audience.clone(),
        scope: p.scope.clone(),
        max_lifetime: p.max_lifetime,
        allow_impersonation: p.allow_impersonation,
        // At most MAX_CHAIN_DEPTH, validated.
        max_chain_depth: i32::try_from(p.max_chain_depth).unwrap_or(i32::MAX),
    }
}

fn validate_policy(p: &ExchangePolicy) -> Result<()> {
    if !valid_id(&p.policy_id) || !valid_id(&p.client_id) {
        return Err(Error::InvalidRequest(
            "policy_id and client_id must be 1-128 printable characters",
        ));
    }
    if p.audience.is_empty()
        || p.audience.len() > MAX_AUDIENCES
        || p.audience.iter().any(|a| !valid_id(a))
    {
        return Err(Error::InvalidRequest("a policy names 1 to 16 audiences"));
    }
    Scopes::parse(&p.scope).map_err(|_| Error::InvalidRequest("scope is malformed"))?;
    if p.max_lifetime < 0 || p.max_chain_depth > MAX_CHAIN_DEPTH {
        return Err(Error::InvalidRequest(
            "max_lifetime or max_chain_depth is out of range",
        ));
    }
    Ok(())
}
