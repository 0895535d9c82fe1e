//! The keys a verifier trusts, and where an issuer's keys come from.

use std::collections::HashMap;
use std::sync::Arc;

use super::{BiscuitPublicKey, BiscuitRootKey, SigningKey, VerificationKey};

/// The keys a verifier trusts: JWT keys by `kid`, Biscuit root keys by id. Nothing else is ever
/// consulted, in particular no key named by a token.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    jwt: HashMap<String, VerificationKey>,
    biscuit: HashMap<u32, BiscuitPublicKey>,
}

impl KeySet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert_jwt(&mut self, key: VerificationKey) {
        self.jwt.insert(key.kid().to_owned(), key);
    }

    pub fn insert_biscuit(&mut self, key: BiscuitPublicKey) {
        self.biscuit.insert(key.id(), key);
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: &KeySet) {
        for k in other.jwt.values() {
            self.insert_jwt(k.clone());
        }
        for k in other.biscuit.values() {
            self.insert_biscuit(*k);
        }
    }

    pub fn jwt_key(&self, kid: &str) -> Option<&VerificationKey> {
        self.jwt.get(kid)
    }

    pub fn biscuit_key(&self, id: u32) -> Option<&BiscuitPublicKey> {
        self.biscuit.get(&id)
    }

    pub fn jwt_keys(&self) -> impl Iterator<Item = &VerificationKey> {
        self.jwt.values()
    }

    pub fn biscuit_keys(&self) -> impl Iterator<Item = &BiscuitPublicKey> {
        self.biscuit.values()
    }

    pub fn is_empty(&self) -> bool {
        self.jwt.is_empty() && self.biscuit.is_empty()
    }
}

/// A boxed future, as the object-safe [`KeySource`] returns.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The keys of one trusted issuer, wherever they come from (in-process, fetched, a file). The
/// one abstraction every verifier uses (the guard, the revocation service, the STS); fetching
/// lives with the implementations (`writ-trust`, the STS), not here.
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// The keys now. The same `Arc` until they change, so callers can tell cheaply.
    fn keys(&self) -> Arc<KeySet>;
    /// A token named a key not in [`KeySource::keys`]: fetch again if allowed. Never blocks.
    fn request_refresh(&self) {}
    /// A token named a key not in `seen` (what the caller verified against): fetch again and
    /// return the keys after. One fetch at a time, and at most one per rate-limit window: a
    /// caller arriving inside the window waits for it rather than being refused, so a key
    /// rotation costs the first request a fetch, not a failure. Keys already newer than `seen`
    /// are returned at once. By default: [`KeySource::request_refresh`], then the keys now.
    fn refresh_now<'a>(&'a self, seen: &'a Arc<KeySet>) -> BoxFuture<'a, Arc<KeySet>> {
        let _ = seen;
        self.request_refresh();
        Box::pin(async move { self.keys() })
    }
}

/// A shared key source is one too (`Arc<RemoteKeys>`, `Arc<dyn KeySource>`).
impl<T: KeySource + ?Sized> KeySource for Arc<T> {
    fn keys(&self) -> Arc<KeySet> {
        (**self).keys()
    }
    fn request_refresh(&self) {
        (**self).request_refresh()
    }
    fn refresh_now<'a>(&'a self, seen: &'a Arc<KeySet>) -> BoxFuture<'a, Arc<KeySet>> {
        (**self).refresh_now(seen)
    }
}

/// An issuer's own keys: the ones that sign now, and (as a [`KeySource`]) the public keys that
/// verify what it signed, active and retired alike. Signing keys live with their store
/// (`writ-keyring`); what signs only asks for them here.
pub trait IssuerKeys: KeySource {
    /// The active JWT signing key and Biscuit root key.
    fn signing(&self) -> (Arc<SigningKey>, Arc<BiscuitRootKey>);
}

/// Keys that do not change (a JWK Set read once, a CLI's one-off fetch, tests).
#[derive(Debug, Clone)]
pub struct FixedKeys(pub Arc<KeySet>);

impl FixedKeys {
    pub fn new(keys: KeySet) -> Self {
        FixedKeys(Arc::new(keys))
    }
}

impl KeySource for FixedKeys {
    fn keys(&self) -> Arc<KeySet> {
        self.0.clone()
    }
}
