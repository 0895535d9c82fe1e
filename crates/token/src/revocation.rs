//! What a revocation names, shared by every producer and consumer of the revocation log.

use crate::claims::MAX_NUMERIC_DATE;
use crate::verify::VerifiedToken;

/// The facts of a token that revocations can name.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    /// Its issuer: an entry scoped to an issuer revokes only that issuer's tokens.
    pub iss: &'a str,
    pub jti: &'a str,
    pub gid: Option<&'a str>,
    pub sub: &'a str,
    pub client_id: &'a str,
    pub iat: i64,
    pub key_id: &'a str,
    pub biscuit_revocation_ids: &'a [String],
}

impl<'a> TokenFacts<'a> {
    pub fn of(t: &'a VerifiedToken) -> Self {
        TokenFacts {
            iss: &t.claims.iss,
            jti: &t.claims.jti,
            gid: t.claims.gid.as_deref(),
            sub: &t.claims.sub,
            client_id: &t.claims.client_id,
            iat: t.claims.iat,
            key_id: &t.key_id,
            biscuit_revocation_ids: &t.revocation_ids,
        }
    }

    /// Every (kind, value) an entry could name to revoke this token. For subject and client
    /// entries the token is revoked only if its `iat` is at or before the entry's `not_before`.
    pub fn targets(&self) -> impl Iterator<Item = (RevocationKind, &'a str)> + '_ {
        [
            (RevocationKind::TokenId, self.jti),
            (RevocationKind::Subject, self.sub),
            (RevocationKind::Client, self.client_id),
            (RevocationKind::KeyId, self.key_id),
        ]
        .into_iter()
        .chain(self.gid.map(|g| (RevocationKind::GrantId, g)))
        .chain(
            self.biscuit_revocation_ids
                .iter()
                .map(|id| (RevocationKind::BiscuitRevocationId, id.as_str())),
        )
    }

    /// The issuer scopes an entry may have to apply to this token: every issuer (`""`), or its own.
    pub fn issuer_scopes(&self) -> [&'a str; 2] {
        ["", self.iss]
    }

    /// Whether an entry of `kind` with cut-off `not_before` revokes this token.
    pub fn cut_off_by(&self, kind: RevocationKind, not_before: i64) -> bool {
        !kind.uses_not_before() || self.iat <= not_before
    }
}

/// Whether a token is revoked, as every verifier asks it (the guard, the STS, the revocation
/// service about its own callers): at once, without waiting on the network.
pub trait RevocationCheck: Send + Sync + std::fmt::Debug {
    /// The kind of revocation that applies to `token`, if any. An error when the answer cannot
    /// be trusted now (a revocation feed staler than its bound, a store that failed): the caller
    /// fails closed.
    fn revoked(&self, token: &TokenFacts<'_>) -> Result<Option<RevocationKind>, Unvouched>;
}

/// [`RevocationCheck`] for an index that may have to wait (a store over the network: the
/// authorization server's own index, the revocation service's log). The STS and the revocation
/// service's own guard await it; every in-memory check is one as well, answering at once.
pub trait AsyncRevocationCheck: Send + Sync + std::fmt::Debug {
    fn revoked_async<'a>(
        &'a self,
        token: &'a TokenFacts<'a>,
    ) -> crate::BoxFuture<'a, Result<Option<RevocationKind>, Unvouched>>;
}

impl<T: RevocationCheck + ?Sized> AsyncRevocationCheck for T {
    fn revoked_async<'a>(
        &'a self,
        token: &'a TokenFacts<'a>,
    ) -> crate::BoxFuture<'a, Result<Option<RevocationKind>, Unvouched>> {
        Box::pin(std::future::ready(self.revoked(token)))
    }
}

/// A revocation check that cannot vouch for its answer now, and why (a fixed description, for
/// the caller and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unvouched(pub &'static str);

/// What an entry revokes (the numbering is `writ.revocation.v1.RevocationKind`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RevocationKind {
    /// One token, by `jti`.
    TokenId = 1,
    /// Every token of a grant (refresh family, exchange lineage), by `gid`.
    GrantId = 2,
    /// Every token of a subject issued at or before `not_before`.
    Subject = 3,
    /// Every token of a client issued at or before `not_before`.
    Client = 4,
    /// A Biscuit block, by its revocation id (hex).
    BiscuitRevocationId = 5,
    /// Every token signed by a key, by key id.
    KeyId = 6,
}

impl RevocationKind {
    pub const ALL: [RevocationKind; 6] = [
        RevocationKind::TokenId,
        RevocationKind::GrantId,
        RevocationKind::Subject,
        RevocationKind::Client,
        RevocationKind::BiscuitRevocationId,
        RevocationKind::KeyId,
    ];

    pub fn from_i32(v: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as i32 == v)
    }

    /// Whether entries of this kind cut tokens by issue time (`not_before`).
    pub fn uses_not_before(self) -> bool {
        matches!(self, RevocationKind::Subject | RevocationKind::Client)
    }

    pub fn name(self) -> &'static str {
        match self {
            RevocationKind::TokenId => "token_id",
            RevocationKind::GrantId => "grant_id",
            RevocationKind::Subject => "subject",
            RevocationKind::Client => "client",
            RevocationKind::BiscuitRevocationId => "biscuit_revocation_id",
            RevocationKind::KeyId => "key_id",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Longest value accepted (Biscuit revocation ids are 128 hex characters).
pub const MAX_REVOCATION_VALUE_LEN: usize = 256;
/// Longest reason accepted.
pub const MAX_REVOCATION_REASON_LEN: usize = 256;

/// How far ahead of now a subject or client cut-off may reach: clock skew between the producer
/// and the service, no more. (A cut-off in the future would lock a principal out until then.)
pub const MAX_CUT_OFF_AHEAD: i64 = 60;

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEntry {
    pub kind: RevocationKind,
    pub value: String,
    /// The issuer whose tokens it revokes; empty for every issuer (the administrator's entries,
    /// published by the authorization server). A producer may only publish entries scoped to the
    /// issuer it is registered for.
    pub issuer: String,
    /// After this NumericDate everything the entry revokes has expired: it may be forgotten.
    pub expires_at: i64,
    /// For subject and client entries: tokens with `iat <= not_before` are revoked.
    pub not_before: i64,
    pub reason: String,
}

/// Why an entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    #[error("unknown revocation kind")]
    UnknownKind,
    #[error("the value is empty, too long or has control characters")]
    Value,
    #[error("a Biscuit revocation id is lowercase hex")]
    NotHex,
    #[error("expires_at must be after now and within a year")]
    ExpiresAt,
    #[error("not_before is out of range")]
    NotBefore,
    #[error("the reason is too long or has control characters")]
    Reason,
    #[error("the issuer is too long or has control characters")]
    Issuer,
    #[error("Writ's own identities cannot be revoked")]
    Reserved,
}

impl RevocationEntry {
    /// Checks the entry against `now`. Entries that fail change nothing anywhere.
    pub fn validate(&self, now: i64) -> Result<(), RevocationError> {
        let plain = |s: &str| !s.chars().any(char::is_control);
        if self.value.is_empty()
            || self.value.len() > MAX_REVOCATION_VALUE_LEN
            || !plain(&self.value)
        {
            return Err(RevocationError::Value);
        }
        if self.kind == RevocationKind::BiscuitRevocationId
            && !self
                .value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(RevocationError::NotHex);
        }
        if self.expires_at <= now || self.expires_at > now + 366 * 24 * 3600 {
            return Err(RevocationError::ExpiresAt);
        }
        if !(0..=MAX_NUMERIC_DATE.min(now.saturating_add(MAX_CUT_OFF_AHEAD)))
            .contains(&self.not_before)
        {
            return Err(RevocationError::NotBefore);
        }
        if self.issuer.len() > MAX_REVOCATION_VALUE_LEN || !plain(&self.issuer) {
            return Err(RevocationError::Issuer);
        }
        if matches!(self.kind, RevocationKind::Subject | RevocationKind::Client)
            && writ_vocabulary::names::is_reserved(&self.value)
        {
            return Err(RevocationError::Reserved);
        }
        if self.reason.len() > MAX_REVOCATION_REASON_LEN || !plain(&self.reason) {
            return Err(RevocationError::Reason);
        }
        Ok(())
    }

    /// Whether `self` revokes at least everything `other` does (so `other` adds nothing).
    pub fn covers(&self, other: &RevocationEntry) -> bool {
        self.kind == other.kind
            && self.value == other.value
            && self.issuer == other.issuer
            && self.expires_at >= other.expires_at
            && (!self.kind.uses_not_before() || self.not_before >= other.not_before)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(kind: RevocationKind, value: &str) -> RevocationEntry {
        RevocationEntry {
            kind,
            value: value.into(),
            issuer: String::new(),
            expires_at: 200,
            not_before: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn validation_refuses_bad_values_and_times() {
        assert!(entry(RevocationKind::TokenId, "j1").validate(100).is_ok());
        assert_eq!(
            entry(RevocationKind::TokenId, "").validate(100),
            Err(RevocationError::Value)
        );
        assert_eq!(
            entry(RevocationKind::TokenId, &"x".repeat(300)).validate(100),
            Err(RevocationError::Value)
        );
        assert_eq!(
            entry(RevocationKind::TokenId, "a\nb").validate(100),
            Err(RevocationError::Value)
        );
        assert_eq!(
            entry(RevocationKind::BiscuitRevocationId, "XYZ").validate(100),
            Err(RevocationError::NotHex)
        );
        assert_eq!(
            entry(RevocationKind::TokenId, "j").validate(200),
            Err(RevocationError::ExpiresAt)
        );
    }

    #[test]
    fn a_cut_off_cannot_reach_into_the_future_nor_name_writ_itself() {
        let mut cut = entry(RevocationKind::Subject, "alice");
        cut.not_before = 100 + MAX_CUT_OFF_AHEAD;
        assert!(cut.validate(100).is_ok(), "clock skew is tolerated");
        cut.not_before += 1;
        assert_eq!(cut.validate(100), Err(RevocationError::NotBefore));
        cut.not_before = 253_402_300_799; // 9999-12-31
        assert_eq!(cut.validate(100), Err(RevocationError::NotBefore));
        for id in writ_vocabulary::names::RESERVED_IDENTITIES {
            for kind in [RevocationKind::Subject, RevocationKind::Client] {
                assert_eq!(
                    entry(kind, id).validate(100),
                    Err(RevocationError::Reserved)
                );
            }
        }
        let mut scoped = entry(RevocationKind::TokenId, "j");
        scoped.issuer = "https://idp.example\r\n".into();
        assert_eq!(scoped.validate(100), Err(RevocationError::Issuer));
    }

    #[test]
    fn an_entry_covers_only_its_own_issuer_scope() {
        let mut scoped = entry(RevocationKind::TokenId, "j");
        scoped.issuer = "https://idp.example".into();
        assert!(!scoped.covers(&entry(RevocationKind::TokenId, "j")));
        assert!(!entry(RevocationKind::TokenId, "j").covers(&scoped));
    }

    #[test]
    fn a_later_not_before_covers_an_earlier_one() {
        let mut a = entry(RevocationKind::Subject, "alice");
        let mut b = a.clone();
        a.not_before = 50;
        b.not_before = 40;
        assert!(a.covers(&b));
        assert!(!b.covers(&a));
        assert!(!a.covers(&entry(RevocationKind::Subject, "bob")));
    }
}
