//! Administration that is neither clients, users nor exchange policies: signing keys and
//! revocations.

use writ_keyring::{KeyInfo, KeyPurpose};
use writ_token::{Algorithm, RevocationEntry, RevocationKind};

use crate::AuthorizationServer;
use crate::error::{Error, Result};
use crate::revocations::Revocation;

/// Most entries in one admin revocation.
pub const MAX_REVOCATIONS: usize = 1000;

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
        // The keyring's own batch is not this crate's: the record is queued right after it,
        // durable before the caller hears of the new key.
        self.audit
            .record(
                writ_audit::Event::new("signing_key_rotated", writ_audit::Outcome::Success)
                    .detail("kid", &record.kid)
                    .detail("purpose", purpose.name())
                    .detail("alg", &record.alg),
            )
            .await?;
        Ok(record)
    }

    /// A page of the audit trail (see `writ_audit::query`).
    pub async fn audit_events(
        &self,
        filter: &writ_audit::query::Filter,
        after: u64,
        limit: usize,
    ) -> Result<writ_audit::query::Page> {
        let store = self
            .audit
            .store()
            .ok_or(Error::Unavailable("the audit log is off (--audit off)"))?;
        Ok(writ_audit::query::list(&*store, filter, after, limit).await?)
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
}
