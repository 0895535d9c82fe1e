//! Messages to and from Writ's domain types, written once for every service and client: keys
//! and key sets (`GetJwks` of the authorization server and the STS), revocation entries, the
//! delegation chain, token formats.

use writ_token::{
    Actor, BiscuitPublicKey, Jwk, KeySet, RevocationEntry, RevocationError, RevocationKind,
    TokenError, TokenFormat, VerificationKey,
};

use writ_exchange::ExchangePolicy;

use crate::{admin, common, revocation};

/// A JWT verification key as published.
pub fn jwk(key: &VerificationKey) -> common::Jwk {
    let k = key.to_jwk();
    common::Jwk {
        kty: k.kty,
        crv: k.crv,
        x: k.x,
        y: k.y.unwrap_or_default(),
        kid: k.kid,
        alg: k.alg,
        r#use: k.key_use,
    }
}

/// A Biscuit root key as published, with the time it stops being trusted.
pub fn biscuit_root_key(key: &BiscuitPublicKey, expires_at: i64) -> common::BiscuitRootKey {
    common::BiscuitRootKey {
        root_key_id: key.id(),
        algorithm: "ed25519".to_owned(),
        public_key: key.to_hex(),
        expires_at,
    }
}

/// What an issuer publishes through `GetJwks` (the authorization server's and the STS's carry
/// the same two fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishedKeys {
    pub keys: Vec<common::Jwk>,
    pub biscuit_root_keys: Vec<common::BiscuitRootKey>,
}

impl PublishedKeys {
    pub fn new(jwt: &[VerificationKey], biscuit: &[(BiscuitPublicKey, i64)]) -> Self {
        PublishedKeys {
            keys: jwt.iter().map(jwk).collect(),
            biscuit_root_keys: biscuit
                .iter()
                .map(|(k, exp)| biscuit_root_key(k, *exp))
                .collect(),
        }
    }

    /// The published keys as trusted keys: every one must be usable (an issuer publishing a key
    /// Writ cannot use is misconfigured, and nothing it publishes is trusted).
    pub fn key_set(&self) -> Result<KeySet, TokenError> {
        let mut keys = KeySet::new();
        for k in &self.keys {
            keys.insert_jwt(VerificationKey::from_jwk(&Jwk {
                kty: k.kty.clone(),
                crv: k.crv.clone(),
                x: k.x.clone(),
                y: (!k.y.is_empty()).then(|| k.y.clone()),
                kid: k.kid.clone(),
                alg: k.alg.clone(),
                key_use: k.r#use.clone(),
                ..Jwk::default()
            })?);
        }
        for k in &self.biscuit_root_keys {
            keys.insert_biscuit(BiscuitPublicKey::from_hex(k.root_key_id, &k.public_key)?);
        }
        Ok(keys)
    }
}

impl From<crate::authz::GetJwksResponse> for PublishedKeys {
    fn from(r: crate::authz::GetJwksResponse) -> Self {
        PublishedKeys {
            keys: r.keys,
            biscuit_root_keys: r.biscuit_root_keys,
        }
    }
}

impl From<crate::sts::GetJwksResponse> for PublishedKeys {
    fn from(r: crate::sts::GetJwksResponse) -> Self {
        PublishedKeys {
            keys: r.keys,
            biscuit_root_keys: r.biscuit_root_keys,
        }
    }
}

impl From<PublishedKeys> for crate::authz::GetJwksResponse {
    fn from(p: PublishedKeys) -> Self {
        crate::authz::GetJwksResponse {
            keys: p.keys,
            biscuit_root_keys: p.biscuit_root_keys,
        }
    }
}

impl From<PublishedKeys> for crate::sts::GetJwksResponse {
    fn from(p: PublishedKeys) -> Self {
        crate::sts::GetJwksResponse {
            keys: p.keys,
            biscuit_root_keys: p.biscuit_root_keys,
        }
    }
}

/// A revocation entry from a message. Unknown kinds are refused; `not_before` only means
/// something for subject and client entries, where zero means `now`. (The entry is validated
/// where it is used: `RevocationEntry::validate`.)
pub fn revocation_entry(
    e: revocation::RevocationEntry,
    now: i64,
) -> Result<RevocationEntry, RevocationError> {
    let kind = RevocationKind::from_i32(e.kind).ok_or(RevocationError::UnknownKind)?;
    let not_before = match (kind.uses_not_before(), e.not_before) {
        (true, 0) => now,
        (true, n) => n,
        (false, _) => 0,
    };
    Ok(RevocationEntry {
        kind,
        value: e.value,
        issuer: e.issuer,
        expires_at: e.expires_at,
        not_before,
        reason: e.reason,
    })
}

/// A revocation entry as a message.
pub fn revocation_message(e: &RevocationEntry) -> revocation::RevocationEntry {
    revocation::RevocationEntry {
        kind: e.kind as i32,
        value: e.value.clone(),
        expires_at: e.expires_at,
        reason: e.reason.clone(),
        not_before: e.not_before,
        issuer: e.issuer.clone(),
    }
}

/// A delegation chain (`act`) as a message.
pub fn actor(a: &Actor) -> common::Actor {
    common::Actor {
        sub: a.sub.clone(),
        client_id: a.client_id.clone().unwrap_or_default(),
        act: a.act.as_deref().map(|n| Box::new(actor(n))),
    }
}

/// An exchange policy as a message.
pub fn exchange_policy(p: &ExchangePolicy) -> admin::ExchangePolicy {
    admin::ExchangePolicy {
        policy_id: p.policy_id.clone(),
        client_id: p.client_id.clone(),
        audience: p.audience.clone(),
        scope: p.scope.clone(),
        max_lifetime: p.max_lifetime,
        allow_impersonation: p.allow_impersonation,
        max_chain_depth: i32::try_from(p.max_chain_depth).unwrap_or(i32::MAX),
    }
}

/// An exchange policy from a message; a negative `max_chain_depth` is refused.
pub fn exchange_policy_from(p: admin::ExchangePolicy) -> Result<ExchangePolicy, &'static str> {
    Ok(ExchangePolicy {
        max_chain_depth: u32::try_from(p.max_chain_depth)
            .map_err(|_| "max_chain_depth must not be negative")?,
        policy_id: p.policy_id,
        client_id: p.client_id,
        audience: p.audience,
        scope: p.scope,
        max_lifetime: p.max_lifetime,
        allow_impersonation: p.allow_impersonation,
    })
}

/// A token's form as the `TokenFormat` enum value.
pub fn token_format(f: TokenFormat) -> common::TokenFormat {
    match f {
        TokenFormat::Jwt => common::TokenFormat::Jwt,
        TokenFormat::Biscuit => common::TokenFormat::Biscuit,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use writ_token::{Algorithm, BiscuitRootKey, SigningKey};

    #[test]
    fn published_keys_round_trip_into_a_key_set() {
        let ed = SigningKey::generate(Algorithm::EdDSA, "ed").unwrap();
        let ec = SigningKey::generate(Algorithm::ES256, "ec").unwrap();
        let root = BiscuitRootKey::generate(7);
        let published = PublishedKeys::new(
            &[ed.verification_key(), ec.verification_key()],
            &[(root.public(), 99)],
        );
        let keys = published.key_set().unwrap();
        assert!(keys.jwt_key("ed").is_some() && keys.jwt_key("ec").is_some());
        assert_eq!(
            keys.biscuit_key(7).unwrap().to_hex(),
            root.public().to_hex()
        );

        let mut bad = published.clone();
        bad.keys[0].alg = "HS256".into();
        assert!(bad.key_set().is_err(), "one unusable key distrusts the set");
    }

    #[test]
    fn revocation_entries_round_trip_and_unknown_kinds_are_refused() {
        let e = RevocationEntry {
            kind: RevocationKind::Subject,
            value: "alice".into(),
            issuer: "https://idp.example".into(),
            expires_at: 100,
            not_before: 0,
            reason: "r".into(),
        };
        let back = revocation_entry(revocation_message(&e), 42).unwrap();
        assert_eq!(back.not_before, 42, "zero means now for a subject cut-off");
        assert_eq!(back.value, "alice");
        assert_eq!(back.issuer, e.issuer);
        let mut unknown = revocation_message(&e);
        unknown.kind = 99;
        assert_eq!(
            revocation_entry(unknown, 42),
            Err(RevocationError::UnknownKind)
        );
    }
}
