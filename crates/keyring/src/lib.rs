//! An issuer's signing keys: generated on first start, persisted in the `signing_keys` tree of
//! the issuer's store, rotated through an admin API.
//!
//! Rotation makes a new key active and retires the old one; a retired key stays published and
//! trusted until every token it signed has expired, so no token in flight breaks.
//!
//! Every issuer (the authorization server, the STS) keeps its own store, so the trees never mix;
//! Biscuit root key ids start where [`KeyringConfig::first_biscuit_id`] says, so that a verifier
//! trusting several issuers can tell their Biscuits apart by root key id alone.

mod error;
mod record;
mod sealing;

use std::sync::{Arc, RwLock};

use writ_store::{AsyncStore, AsyncStoreExt, Batch, Tree, encode};
use writ_token::{
    Algorithm, BiscuitPublicKey, BiscuitRootKey, KeySet, SigningKey, UnixTime, VerificationKey,
    random_id,
};

pub use error::{KeyringError, Result};
use record::{KEY_ACTIVE, KEY_RETIRED, PURPOSE_BISCUIT, PURPOSE_JWT, SigningKeyRecord};
pub use sealing::KeyEncryptionKey;

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// JWT access tokens.
    Jwt,
    /// Biscuits (a root key).
    Biscuit,
}

impl KeyPurpose {
    fn stored(self) -> i32 {
        match self {
            KeyPurpose::Jwt => PURPOSE_JWT,
            KeyPurpose::Biscuit => PURPOSE_BISCUIT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyPurpose::Jwt => "jwt",
            KeyPurpose::Biscuit => "biscuit",
        }
    }
}

/// Whether a key signs new tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Signs new tokens.
    Active,
    /// Signs nothing new; published and trusted until `expires_at`.
    Retired,
}

/// A stored signing key, as an administrator sees it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The JWT `kid`, or the Biscuit root key id in decimal.
    pub kid: String,
    pub purpose: KeyPurpose,
    /// `EdDSA`, `ES256`, or `ed25519` for Biscuit root keys.
    pub alg: String,
    pub status: KeyStatus,
    pub created_at: UnixTime,
    /// 0 while active.
    pub retired_at: UnixTime,
    /// When a retired key can no longer verify a live token; 0 while active.
    pub expires_at: UnixTime,
}

impl KeyInfo {
    fn of(r: &SigningKeyRecord) -> Self {
        KeyInfo {
            kid: r.kid.clone(),
            purpose: if r.purpose == PURPOSE_BISCUIT {
                KeyPurpose::Biscuit
            } else {
                KeyPurpose::Jwt
            },
            alg: r.alg.clone(),
            status: if r.status == KEY_ACTIVE {
                KeyStatus::Active
            } else {
                KeyStatus::Retired
            },
            created_at: r.created_at,
            retired_at: r.retired_at,
            expires_at: r.expires_at,
        }
    }
}

type Error = KeyringError;

/// How an issuer's keys are made.
#[derive(Debug, Clone, Copy)]
pub struct KeyringConfig {
    /// Algorithm of generated JWT keys.
    pub jwt_algorithm: Algorithm,
    /// The id of the issuer's first Biscuit root key; later ones count up from it.
    pub first_biscuit_id: u32,
}

impl KeyringConfig {
    /// The authorization server's: EdDSA, Biscuit root keys from 1.
    pub const AUTHORIZATION_SERVER: KeyringConfig = KeyringConfig {
        jwt_algorithm: Algorithm::EdDSA,
        first_biscuit_id: 1,
    };
    /// The STS's: EdDSA, Biscuit root keys from 1,000,000 (far above the authorization server's).
    pub const STS: KeyringConfig = KeyringConfig {
        jwt_algorithm: Algorithm::EdDSA,
        first_biscuit_id: 1_000_000,
    };
}

/// The keys in use now.
#[derive(Debug)]
pub struct KeyState {
    pub jwt: Arc<SigningKey>,
    pub biscuit: Arc<BiscuitRootKey>,
    /// Every stored key, without its secret.
    records: Vec<SigningKeyRecord>,
    /// Public keys of the active and retired-but-unexpired keys.
    pub public: Arc<KeySet>,
}

impl KeyState {
    /// Every stored key, as an administrator sees it.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.records.iter().map(KeyInfo::of).collect()
    }

    /// JWT keys to publish at `now`: active, and retired ones that may still verify live tokens.
    pub fn published_jwt_keys(&self, now: UnixTime) -> Vec<VerificationKey> {
        let mut keys: Vec<_> = self
            .records
            .iter()
            .filter(|r| r.purpose == PURPOSE_JWT && is_live(r, now))
            .filter_map(|r| self.public.jwt_key(&r.kid).cloned())
            .collect();
        keys.sort_by(|a, b| a.kid().cmp(b.kid()));
        keys
    }

    /// Biscuit root keys to publish at `now`, with the time after which each is useless (0 for
    /// the active key).
    pub fn published_biscuit_keys(&self, now: UnixTime) -> Vec<(BiscuitPublicKey, UnixTime)> {
        self.records
            .iter()
            .filter(|r| r.purpose == PURPOSE_BISCUIT && is_live(r, now))
            .filter_map(|r| {
                let id = r.kid.parse::<u32>().ok()?;
                let exp = if r.status == KEY_ACTIVE {
                    0
                } else {
                    r.expires_at
                };
                self.public.biscuit_key(id).map(|k| (*k, exp))
            })
            .collect()
    }
}

fn is_live(r: &SigningKeyRecord, now: UnixTime) -> bool {
    r.status == KEY_ACTIVE || (r.status == KEY_RETIRED && r.expires_at > now)
}

fn storage_key(purpose: i32, kid: &str) -> Vec<u8> {
    match purpose {
        PURPOSE_JWT => format!("jwt/{kid}").into_bytes(),
        // Zero-padded so keys sort by id.
        _ => format!("biscuit/{:0>10}", kid).into_bytes(),
    }
}

/// The signing keys, loaded from and persisted to the store.
#[derive(Debug)]
pub struct Keyring {
    store: Arc<dyn AsyncStore>,
    config: KeyringConfig,
    kek: Arc<KeyEncryptionKey>,
    state: RwLock<Arc<KeyState>>,
    rotation: tokio::sync::Mutex<()>,
    /// The records `state` was built from, in key order: what [`Keyring::refresh_if_changed`]
    /// compares the store with.
    loaded: std::sync::Mutex<Vec<SigningKeyRecord>>,
    /// What [`Keyring::load`] changed, for the owner to put in its audit log (this crate is
    /// below the audit log's), taken once.
    at_load: std::sync::Mutex<Option<LoadEvents>>,
}

/// What loading the keyring did: keys created on a first start (or after every key of a purpose
/// was gone), and private keys sealed that a build from before sealing had stored in the clear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadEvents {
    pub created: Vec<KeyInfo>,
    pub sealed: usize,
}

/// The keyring's public keys are its issuer's key source: what verifies the tokens it signs.
impl writ_token::IssuerKeys for Keyring {
    fn signing(&self) -> (Arc<SigningKey>, Arc<BiscuitRootKey>) {
        let state = self.state();
        (state.jwt.clone(), state.biscuit.clone())
    }
}

impl writ_token::KeySource for Keyring {
    fn keys(&self) -> Arc<KeySet> {
        self.state().public.clone()
    }
}

impl Keyring {
    /// Loads the stored keys, generating (and durably storing) the first ones if there are none.
    /// Private keys are sealed under `kek` (records from before sealing are sealed now); a `kek`
    /// that does not open them is refused.
    pub async fn load(
        store: Arc<dyn AsyncStore>,
        now: UnixTime,
        config: KeyringConfig,
        kek: Arc<KeyEncryptionKey>,
    ) -> Result<Self> {
        let mut records = load_records(&*store).await?;
        let mut events = LoadEvents {
            sealed: seal_clear_records(&*store, &kek, &mut records).await?,
            ..LoadEvents::default()
        };
        let mut changed = events.sealed > 0;
        if !records
            .iter()
            .any(|r| r.purpose == PURPOSE_JWT && r.status == KEY_ACTIVE)
        {
            let rec = new_jwt_record(config.jwt_algorithm, now, &kek)?;
            create_record(&*store, &rec).await?;
            events.created.push(KeyInfo::of(&rec));
            records.push(rec);
            changed = true;
        }
        if !records
            .iter()
            .any(|r| r.purpose == PURPOSE_BISCUIT && r.status == KEY_ACTIVE)
        {
            let rec = new_biscuit_record(&records, config.first_biscuit_id, now, &kek)?;
            create_record(&*store, &rec).await?;
            events.created.push(KeyInfo::of(&rec));
            records.push(rec);
            changed = true;
        }
        if changed {
            store.durable().await?;
        }
        let loaded = in_key_order(records.clone());
        let state = build_state(records, now, &kek)?;
        Ok(Keyring {
            store,
            config,
            kek,
            state: RwLock::new(Arc::new(state)),
            rotation: tokio::sync::Mutex::new(()),
            loaded: std::sync::Mutex::new(loaded),
            at_load: std::sync::Mutex::new(Some(events)),
        })
    }

    /// What [`Keyring::load`] changed (keys created, keys sealed), once: the owner records it
    /// in its audit log. Empty the second time.
    pub fn take_load_events(&self) -> LoadEvents {
        self.at_load
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default()
    }

    pub fn state(&self) -> Arc<KeyState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes a new key active for `purpose`; the old one is retired and stays published for
    /// `retire_for` seconds (the longest a token it signed can live, plus leeway).
    pub async fn rotate(
        &self,
        purpose: KeyPurpose,
        alg: Algorithm,
        now: UnixTime,
        retire_for: i64,
    ) -> Result<KeyInfo> {
        let purpose = purpose.stored();
        let _serialized = self.rotation.lock().await;
        let mut records = load_records(&*self.store).await?;
        let new = match purpose {
            PURPOSE_JWT => new_jwt_record(alg, now, &self.kek)?,
            PURPOSE_BISCUIT => {
                new_biscuit_record(&records, self.config.first_biscuit_id, now, &self.kek)?
            }
            _ => return Err(Error::InvalidRequest("unknown key purpose")),
        };
        // Retire the active key(s) and add the new one atomically: a concurrent rotation by
        // another process makes the expectation fail instead of leaving two active keys.
        let mut batch = Batch::new();
        for old in records
            .iter_mut()
            .filter(|r| r.purpose == purpose && r.status == KEY_ACTIVE)
        {
            let key = storage_key(purpose, &old.kid);
            batch = batch.expect(key.clone(), Some(encode(old)));
            old.status = KEY_RETIRED;
            old.retired_at = now;
            old.expires_at = now + retire_for;
            batch = batch.put(key, encode(old));
        }
        let new_key = storage_key(purpose, &new.kid);
        batch = batch
            .expect(new_key.clone(), None)
            .put(new_key, encode(&new));
        if !self.store.commit(Tree::SigningKeys, batch).await? {
            return Err(Error::Conflict("signing keys changed concurrently; retry"));
        }
        self.store.durable().await?;
        records.push(new.clone());
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = in_key_order(records.clone());
        let state = build_state(records, now, &self.kek)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        Ok(KeyInfo::of(&new))
    }

    /// Rotates every purpose whose active key was created `max_age` seconds or more before
    /// `now` (the JWT key keeps its algorithm); the keys rotated. For issuers whose keys no
    /// administrator rotates (the STS), so that no key signs for ever.
    pub async fn rotate_when_older(
        &self,
        max_age: i64,
        now: UnixTime,
        retire_for: i64,
    ) -> Result<Vec<KeyInfo>> {
        let state = self.state();
        let mut rotated = Vec::new();
        for (purpose, stored) in [
            (KeyPurpose::Jwt, PURPOSE_JWT),
            (KeyPurpose::Biscuit, PURPOSE_BISCUIT),
        ] {
            let due = state.records.iter().any(|r| {
                r.purpose == stored && r.status == KEY_ACTIVE && r.created_at + max_age <= now
            });
            if due {
                let info = self
                    .rotate(purpose, state.jwt.alg(), now, retire_for)
                    .await?;
                rotated.push(info);
            }
        }
        Ok(rotated)
    }

    /// Reloads the keys from the store, dropping retired keys that have expired at `now`.
    pub async fn refresh(&self, now: UnixTime) -> Result<Arc<KeyState>> {
        let records = load_records(&*self.store).await?;
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = in_key_order(records.clone());
        let state = Arc::new(build_state(records, now, &self.kek)?);
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state.clone();
        Ok(state)
    }

    /// [`Self::refresh`], only if the stored keys changed since they were last loaded (another
    /// replica rotated one): one read of a small tree, cheap enough to run every few seconds,
    /// and the key set stays the same `Arc` (its caches stay warm) while nothing changed.
    /// Whether it changed.
    pub async fn refresh_if_changed(&self, now: UnixTime) -> Result<bool> {
        let records = in_key_order(load_records(&*self.store).await?);
        if *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) == records {
            return Ok(false);
        }
        self.refresh(now).await?;
        Ok(true)
    }
}

fn in_key_order(mut records: Vec<SigningKeyRecord>) -> Vec<SigningKeyRecord> {
    records.sort_by(|a, b| (a.purpose, &a.kid).cmp(&(b.purpose, &b.kid)));
    records
}

async fn load_records(store: &dyn AsyncStore) -> Result<Vec<SigningKeyRecord>> {
    Ok(store
        .scan_records::<SigningKeyRecord>(b"", None, usize::MAX)
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Seals the private keys of records written in clear (before keys were sealed), in one
/// atomic batch. Whether anything changed.
async fn seal_clear_records(
    store: &dyn AsyncStore,
    kek: &KeyEncryptionKey,
    records: &mut [SigningKeyRecord],
) -> Result<usize> {
    let mut batch = Batch::new();
    let mut sealed = 0;
    for r in records.iter_mut().filter(|r| !r.secret.is_empty()) {
        let key = storage_key(r.purpose, &r.kid);
        let old = encode(&*r);
        r.sealed = kek.seal(&key, &r.secret)?;
        zeroize::Zeroize::zeroize(&mut r.secret);
        r.secret.clear();
        batch = batch.expect(key.clone(), Some(old)).put(key, encode(&*r));
        sealed += 1;
    }
    if sealed == 0 {
        return Ok(0);
    }
    if !store.commit(Tree::SigningKeys, batch).await? {
        return Err(KeyringError::Conflict(
            "signing keys changed concurrently; retry",
        ));
    }
    Ok(sealed)
}

async fn create_record(store: &dyn AsyncStore, rec: &SigningKeyRecord) -> Result<()> {
    if !store
        .insert_new(&storage_key(rec.purpose, &rec.kid), rec)
        .await?
    {
        return Err(Error::Conflict("signing key already exists"));
    }
    Ok(())
}

fn new_jwt_record(
    alg: Algorithm,
    now: UnixTime,
    kek: &KeyEncryptionKey,
) -> Result<SigningKeyRecord> {
    let kid = format!("{}-{}", alg.name().to_ascii_lowercase(), &random_id()[..12]);
    let key = SigningKey::generate(alg, kid.clone())?;
    Ok(SigningKeyRecord {
        sealed: kek.seal(&storage_key(PURPOSE_JWT, &kid), &key.secret_bytes())?,
        kid,
        purpose: PURPOSE_JWT,
        alg: alg.name().to_owned(),
        secret: Vec::new(),
        status: KEY_ACTIVE,
        created_at: now,
        retired_at: 0,
        expires_at: 0,
    })
}

fn new_biscuit_record(
    existing: &[SigningKeyRecord],
    first: u32,
    now: UnixTime,
    kek: &KeyEncryptionKey,
) -> Result<SigningKeyRecord> {
    let next = existing
        .iter()
        .filter(|r| r.purpose == PURPOSE_BISCUIT)
        .filter_map(|r| r.kid.parse::<u32>().ok())
        .max()
        .map_or(first, |last| last.saturating_add(1).max(first));
    let key = BiscuitRootKey::generate(next);
    let kid = next.to_string();
    Ok(SigningKeyRecord {
        sealed: kek.seal(&storage_key(PURPOSE_BISCUIT, &kid), &key.secret_bytes())?,
        kid,
        purpose: PURPOSE_BISCUIT,
        alg: "ed25519".to_owned(),
        secret: Vec::new(),
        status: KEY_ACTIVE,
        created_at: now,
        retired_at: 0,
        expires_at: 0,
    })
}

fn strip(mut r: SigningKeyRecord) -> SigningKeyRecord {
    r.secret.clear();
    r.sealed.clear();
    r
}

fn build_state(
    records: Vec<SigningKeyRecord>,
    now: UnixTime,
    kek: &KeyEncryptionKey,
) -> Result<KeyState> {
    let mut public = KeySet::new();
    let mut jwt = None;
    let mut biscuit = None;
    for r in &records {
        match r.purpose {
            PURPOSE_JWT => {
                let alg =
                    Algorithm::from_name(&r.alg).ok_or(Error::Internal("stored key algorithm"))?;
                let secret = kek.open(&storage_key(r.purpose, &r.kid), &r.sealed)?;
                let key = SigningKey::from_secret(alg, r.kid.clone(), &secret)?;
                if is_live(r, now) {
                    public.insert_jwt(key.verification_key());
                }
                if r.status == KEY_ACTIVE {
                    jwt = Some(Arc::new(key));
                }
            }
            PURPOSE_BISCUIT => {
                let id = r
                    .kid
                    .parse::<u32>()
                    .map_err(|_| Error::Internal("stored root key id"))?;
                let secret = kek.open(&storage_key(r.purpose, &r.kid), &r.sealed)?;
                let key = BiscuitRootKey::from_secret(id, &secret)?;
                if is_live(r, now) {
                    public.insert_biscuit(key.public());
                }
                if r.status == KEY_ACTIVE {
                    biscuit = Some(Arc::new(key));
                }
            }
            _ => return Err(Error::Internal("stored key purpose")),
        }
    }
    Ok(KeyState {
        jwt: jwt.ok_or(Error::Internal("no active JWT key"))?,
        biscuit: biscuit.ok_or(Error::Internal("no active Biscuit root key"))?,
        records: records.into_iter().map(strip).collect(),
        public: Arc::new(public),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use writ_store::SledStore;

    /// A temporary sled store, as the keyring takes it.
    fn sled() -> Arc<dyn writ_store::AsyncStore> {
        Arc::new(writ_store::Ready(Arc::new(SledStore::temporary().unwrap())))
    }

    fn new_kek() -> Arc<KeyEncryptionKey> {
        Arc::new(KeyEncryptionKey::generate().unwrap().0)
    }

    #[tokio::test]
    async fn biscuit_root_key_ids_start_at_the_configured_base_and_count_up() {
        let store = sled();
        let ring = Keyring::load(store.clone(), 100, KeyringConfig::STS, new_kek())
            .await
            .unwrap();
        assert_eq!(ring.state().biscuit.id(), 1_000_000);
        let rotated = ring
            .rotate(KeyPurpose::Biscuit, Algorithm::EdDSA, 200, 60)
            .await
            .unwrap();
        assert_eq!(rotated.kid, "1000001");
        // Both stay published until the retired one expires.
        assert_eq!(ring.state().published_biscuit_keys(250).len(), 2);
        assert_eq!(ring.state().published_biscuit_keys(261).len(), 1);

        let other = sled();
        let authz = Keyring::load(other, 100, KeyringConfig::AUTHORIZATION_SERVER, new_kek())
            .await
            .unwrap();
        assert_eq!(authz.state().biscuit.id(), 1);
    }

    #[tokio::test]
    async fn keys_are_generated_once_and_reloaded_from_the_store() {
        let store = sled();
        let kek = new_kek();
        let first = Keyring::load(store.clone(), 100, KeyringConfig::STS, kek.clone())
            .await
            .unwrap();
        let again = Keyring::load(store, 100, KeyringConfig::STS, kek)
            .await
            .unwrap();
        assert_eq!(first.state().jwt.kid(), again.state().jwt.kid());
        assert_eq!(
            first.state().jwt.verification_key().to_jwk(),
            again.state().jwt.verification_key().to_jwk()
        );
    }

    /// Issue 10, item 10: private keys never reach the store in clear; a key-encryption key
    /// that is not theirs cannot open them; records written in clear are sealed on load.
    #[tokio::test]
    async fn private_keys_are_sealed_at_rest_and_clear_records_are_sealed_on_load() {
        let store = sled();
        let kek = new_kek();
        let ring = Keyring::load(store.clone(), 100, KeyringConfig::STS, kek.clone())
            .await
            .unwrap();
        let secret = ring.state().jwt.secret_bytes().to_vec();
        let stored = load_records(&*store).await.unwrap();
        assert!(
            stored
                .iter()
                .all(|r| r.secret.is_empty() && !r.sealed.is_empty())
        );
        let raw: Vec<u8> = store
            .scan(Tree::SigningKeys, b"", None, usize::MAX)
            .await
            .unwrap()
            .into_iter()
            .flat_map(|(_, v)| v)
            .collect();
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_slice()));
        assert!(matches!(
            Keyring::load(store.clone(), 100, KeyringConfig::STS, new_kek()).await,
            Err(KeyringError::Sealed(_))
        ));

        // A record from before sealing: its secret in clear.
        let clear_store = sled();
        let mut clear = new_jwt_record(Algorithm::EdDSA, 100, &kek).unwrap();
        clear.secret = kek
            .open(&storage_key(PURPOSE_JWT, &clear.kid), &clear.sealed)
            .unwrap()
            .to_vec();
        clear.sealed.clear();
        create_record(&*clear_store, &clear).await.unwrap();
        let ring = Keyring::load(clear_store.clone(), 100, KeyringConfig::STS, kek.clone())
            .await
            .unwrap();
        assert_eq!(ring.state().jwt.kid(), clear.kid);
        assert_eq!(
            ring.state().jwt.secret_bytes().as_slice(),
            clear.secret.as_slice()
        );
        assert!(
            load_records(&*clear_store)
                .await
                .unwrap()
                .iter()
                .all(|r| r.secret.is_empty() && !r.sealed.is_empty())
        );
    }
}

/// Issue 11: replicas share one keyring through PostgreSQL. Keys are generated once for all; a
/// rotation on one replica reaches another at its next refresh (the authorization server
/// refreshes at every pruning, the bound), and tokens signed by the key it retired keep
/// verifying there.
#[cfg(test)]
mod replicas {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use writ_store_postgres::{PgStore, testing};
    use writ_token::KeySource as _;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rotation_on_one_replica_reaches_the_others() {
        let Some(config) = testing::fresh().await else {
            return;
        };
        let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
        let a = Keyring::load(
            PgStore::open(&config).await.unwrap(),
            100,
            KeyringConfig::STS,
            kek.clone(),
        )
        .await
        .unwrap();
        let b = Keyring::load(
            PgStore::open(&config).await.unwrap(),
            100,
            KeyringConfig::STS,
            kek.clone(),
        )
        .await
        .unwrap();
        assert_eq!(a.state().jwt.kid(), b.state().jwt.kid(), "generated once");
        let old = a.state().jwt.kid().to_owned();

        let rotated = a
            .rotate(KeyPurpose::Jwt, Algorithm::EdDSA, 200, 3600)
            .await
            .unwrap();
        assert_eq!(b.state().jwt.kid(), old, "not seen before a refresh");
        b.refresh(201).await.unwrap();
        assert_eq!(b.state().jwt.kid(), rotated.kid, "seen after one");
        assert!(
            b.keys().jwt_key(&old).is_some(),
            "the retired key still verifies what it signed"
        );
        testing::drop_schema(&config).await;
    }
}
