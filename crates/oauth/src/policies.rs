//! Exchange policies: which audiences and scopes a client may exchange tokens for at the STS.
//!
//! Each policy is stored under its id, and indexed under its client (`\0 client_id \0
//! policy_id`, an empty value) in the same tree, both written and removed in one batch: what the
//! STS asks on every exchange, one client's policies, is one bounded range of the index and one
//! read of those policies, whatever the number of policies of other clients. The index only
//! points: a policy is what its own record says, so an entry left behind (by a build from before
//! the index, deleting a policy during a rolling upgrade) allows nothing. Ids are printable, so
//! the index's keys (from `\0`) never meet a policy id and sort before every one of them.

use writ_exchange::ExchangePolicy;
use writ_store::{AsyncStoreExt, Batch, Tree, encode};
use writ_token::{Scopes, random_id};

use crate::error::{Error, Result};
use crate::records::ExchangePolicyRecord;
use crate::types::Page;
use crate::{AuthorizationServer, MAX_AUDIENCES, valid_id};

/// Longest delegation chain an exchange policy may allow.
pub const MAX_CHAIN_DEPTH: u32 = 8;

/// Most exchange policies one client may have (what one exchange reads at most).
pub const MAX_POLICIES_PER_CLIENT: usize = 256;

/// Set in the `meta` tree once every policy is indexed by client.
const INDEXED_KEY: &[u8] = b"exchange_policies_indexed";

/// Below every policy id: the by-client index's range ends here.
const INDEX_END: &[u8] = b"\x01";

/// Where a client's policies are indexed.
fn client_prefix(client_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(client_id.len() + 2);
    key.push(0);
    key.extend_from_slice(client_id.as_bytes());
    key.push(0);
    key
}

fn index_key(client_id: &str, policy_id: &str) -> Vec<u8> {
    let mut key = client_prefix(client_id);
    key.extend_from_slice(policy_id.as_bytes());
    key
}

/// A policy's key and its index entry's key.
pub(crate) fn policy_keys(p: &ExchangePolicyRecord) -> (Vec<u8>, Vec<u8>) {
    (
        p.policy_id.as_bytes().to_vec(),
        index_key(&p.client_id, &p.policy_id),
    )
}

impl AuthorizationServer {
    pub async fn create_exchange_policy(
        &self,
        mut policy: ExchangePolicy,
    ) -> Result<ExchangePolicy> {
        if policy.policy_id.is_empty() {
            policy.policy_id = random_id();
        }
        validate_policy(&policy)?;
        let held = self
            .store
            .scan(
                Tree::ExchangePolicies,
                &client_prefix(&policy.client_id),
                None,
                MAX_POLICIES_PER_CLIENT,
            )
            .await?;
        if held.len() >= MAX_POLICIES_PER_CLIENT {
            return Err(Error::InvalidRequest(
                "a client has at most 256 exchange policies",
            ));
        }
        let record = policy_record(&policy);
        let (key, index) = policy_keys(&record);
        let intent = self.audit.intent(
            writ_audit::Event::new("exchange_policy_created", writ_audit::Outcome::Success)
                .client(&policy.client_id)
                .detail("policy_id", &policy.policy_id)
                .detail("after", format!("{record:?}")),
        );
        let batch = Batch::new()
            .expect(key.clone(), None)
            .put(key, encode(&record))
            .put(index, Vec::new());
        if !self
            .store
            .commit(Tree::ExchangePolicies, intent.attach(batch))
            .await?
        {
            return Err(Error::AlreadyExists("a policy with this policy_id exists"));
        }
        self.audit.written(intent);
        self.store.durable().await?;
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
        let page = crate::clients::list_page::<ExchangePolicyRecord>(
            self,
            page_size,
            page_token,
            Some(INDEX_END),
            |p| p.policy_id.clone(),
        )
        .await?;
        Ok(page.map(policy))
    }

    /// Every exchange policy of one client (what the STS consults on each exchange): one range
    /// of the index, at most [`MAX_POLICIES_PER_CLIENT`], then those policies in one read; an
    /// entry whose policy is gone, or is another client's, counts for nothing.
    pub async fn exchange_policies_of(&self, client_id: &str) -> Result<Vec<ExchangePolicy>> {
        if !valid_id(client_id) {
            return Err(Error::InvalidRequest("client_id is malformed"));
        }
        let prefix = client_prefix(client_id);
        let ids: Vec<Vec<u8>> = self
            .store
            .scan(
                Tree::ExchangePolicies,
                &prefix,
                None,
                MAX_POLICIES_PER_CLIENT,
            )
            .await?
            .into_iter()
            .map(|(key, _)| key[prefix.len()..].to_vec())
            .collect();
        let mut policies = Vec::with_capacity(ids.len());
        for bytes in self
            .store
            .get_many(Tree::ExchangePolicies, &ids)
            .await?
            .into_iter()
            .flatten()
        {
            let record: ExchangePolicyRecord = writ_store::decode(&bytes)?;
            if record.client_id == client_id {
                policies.push(policy(record));
            }
        }
        Ok(policies)
    }

    pub async fn delete_exchange_policy(&self, policy_id: &str) -> Result<()> {
        if !valid_id(policy_id) {
            return Err(Error::InvalidRequest("policy_id is malformed"));
        }
        let key = policy_id.as_bytes().to_vec();
        let Some(bytes) = self.store.get(Tree::ExchangePolicies, &key).await? else {
            return Err(Error::NotFound("no such exchange policy"));
        };
        let record: ExchangePolicyRecord = writ_store::decode(&bytes)?;
        let intent = self.audit.intent(
            writ_audit::Event::new("exchange_policy_deleted", writ_audit::Outcome::Success)
                .client(&record.client_id)
                .detail("policy_id", policy_id)
                .detail("before", format!("{record:?}")),
        );
        let batch = Batch::new()
            .expect(key.clone(), Some(bytes))
            .remove(key)
            .remove(index_key(&record.client_id, policy_id));
        // Policies are never modified: a failed expectation means another delete won.
        if !self
            .store
            .commit(Tree::ExchangePolicies, intent.attach(batch))
            .await?
        {
            return Err(Error::NotFound("no such exchange policy"));
        }
        self.audit.written(intent);
        self.store.durable().await?;
        Ok(())
    }

    /// Indexes by client the policies a store written before the index holds: once per store
    /// (then marked in `meta`); replicas doing it at once write the same entries.
    pub(crate) async fn index_exchange_policies(&self) -> Result<()> {
        if self.store.get(Tree::Meta, INDEXED_KEY).await?.is_some() {
            return Ok(());
        }
        let mut after = INDEX_END.to_vec();
        loop {
            let page = self
                .store
                .scan(Tree::ExchangePolicies, b"", Some(&after), 1000)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (key, bytes) in page {
                let record: ExchangePolicyRecord = writ_store::decode(&bytes)?;
                // Only while the policy is still there (a delete meanwhile leaves no index).
                let batch = Batch::new()
                    .expect(key, Some(bytes))
                    .put(policy_keys(&record).1, Vec::new());
                self.store.commit(Tree::ExchangePolicies, batch).await?;
            }
        }
        self.store.insert(Tree::Meta, INDEXED_KEY, vec![1]).await?;
        self.store.durable().await?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use writ_store::{AsyncStore, SledStore, Store};

    use super::*;
    use crate::Config;

    fn kek() -> Arc<writ_keyring::KeyEncryptionKey> {
        Arc::new(writ_keyring::KeyEncryptionKey::generate().unwrap().0)
    }

    async fn engine(store: Arc<SledStore>) -> AuthorizationServer {
        engine_with(store, kek()).await
    }

    async fn engine_with(
        store: Arc<SledStore>,
        kek: Arc<writ_keyring::KeyEncryptionKey>,
    ) -> AuthorizationServer {
        AuthorizationServer::open(
            Arc::new(writ_store::Ready(store)),
            Config::new("https://as.test"),
            writ_token::system_clock(),
            kek,
        )
        .await
        .unwrap()
        .0
    }

    fn spec(client_id: &str, policy_id: &str) -> ExchangePolicy {
        ExchangePolicy {
            policy_id: policy_id.into(),
            client_id: client_id.into(),
            audience: vec!["inventory".into()],
            scope: "inventory.read".into(),
            max_lifetime: 60,
            allow_impersonation: false,
            max_chain_depth: 1,
        }
    }

    fn ids(policies: &[ExchangePolicy]) -> Vec<&str> {
        policies.iter().map(|p| p.policy_id.as_str()).collect()
    }

    /// A client's policies are one range of the index: what other clients have is never read
    /// (a store counting its reads would see it; here, a client whose id prefixes another's
    /// gets only its own), and a deleted policy leaves no trace in it.
    #[tokio::test]
    async fn a_clients_policies_are_its_own_range_and_deleted_with_their_policy() {
        let engine = engine(Arc::new(SledStore::temporary().unwrap())).await;
        for i in 0..50 {
            engine
                .create_exchange_policy(spec(&format!("client{i}"), &format!("p{i}")))
                .await
                .unwrap();
        }
        engine
            .create_exchange_policy(spec("client1", "p1b"))
            .await
            .unwrap();
        let of = engine.exchange_policies_of("client1").await.unwrap();
        assert_eq!(ids(&of), ["p1", "p1b"], "not client10's, not client11's");
        assert_eq!(
            ids(&engine.exchange_policies_of("client10").await.unwrap()),
            ["p10"]
        );
        assert!(
            engine
                .exchange_policies_of("client")
                .await
                .unwrap()
                .is_empty()
        );

        engine.delete_exchange_policy("p1").await.unwrap();
        assert_eq!(
            ids(&engine.exchange_policies_of("client1").await.unwrap()),
            ["p1b"]
        );
        assert!(matches!(
            engine.delete_exchange_policy("p1").await,
            Err(Error::NotFound(_))
        ));
        // The same id again, for another client: only that client has it.
        engine
            .create_exchange_policy(spec("client2", "p1"))
            .await
            .unwrap();
        assert_eq!(
            ids(&engine.exchange_policies_of("client1").await.unwrap()),
            ["p1b"]
        );
        assert_eq!(
            ids(&engine.exchange_policies_of("client2").await.unwrap()),
            ["p1", "p2"]
        );
        assert!(matches!(
            engine.create_exchange_policy(spec("client3", "p1")).await,
            Err(Error::AlreadyExists(_))
        ));

        // Listing pages through the policies themselves, never the index.
        let (mut listed, mut token) = (Vec::new(), String::new());
        for _ in 0..10 {
            let page = engine.list_exchange_policies(7, &token).await.unwrap();
            listed.extend(page.items.into_iter().map(|p| p.policy_id));
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(listed.len(), 51);
        assert!(
            listed.windows(2).all(|w| w[0] < w[1]),
            "in order, once each"
        );
    }

    #[tokio::test]
    async fn a_client_holds_a_bounded_number_of_policies() {
        let engine = engine(Arc::new(SledStore::temporary().unwrap())).await;
        for i in 0..MAX_POLICIES_PER_CLIENT {
            engine
                .create_exchange_policy(spec("busy", &format!("p{i:03}")))
                .await
                .unwrap();
        }
        let refused = engine
            .create_exchange_policy(spec("busy", "one-more"))
            .await;
        assert!(
            matches!(refused, Err(Error::InvalidRequest(_))),
            "{refused:?}"
        );
        assert_eq!(
            engine.exchange_policies_of("busy").await.unwrap().len(),
            MAX_POLICIES_PER_CLIENT
        );
    }

    /// An index entry whose policy an older build deleted (or gave another client) allows
    /// nothing: the policy's own record decides.
    #[tokio::test]
    async fn an_index_entry_left_behind_allows_nothing() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let engine = engine(store.clone()).await;
        engine
            .create_exchange_policy(spec("orders", "a"))
            .await
            .unwrap();
        engine
            .create_exchange_policy(spec("orders", "b"))
            .await
            .unwrap();
        // What an older build's delete does: the record only.
        Store::remove(&*store, Tree::ExchangePolicies, b"a").unwrap();
        assert_eq!(
            ids(&engine.exchange_policies_of("orders").await.unwrap()),
            ["b"]
        );
        // ...and then a policy of that id for another client.
        Store::insert(
            &*store,
            Tree::ExchangePolicies,
            b"a",
            encode(&policy_record(&spec("billing", "a"))),
        )
        .unwrap();
        assert_eq!(
            ids(&engine.exchange_policies_of("orders").await.unwrap()),
            ["b"]
        );
    }

    /// A store written before the index: its policies are indexed when the server opens it.
    #[tokio::test]
    async fn policies_stored_before_the_index_are_indexed_at_open() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let kek = kek();
        drop(engine_with(store.clone(), kek.clone()).await);
        // What an earlier build left: policies under their ids only, no mark.
        for (client, id) in [("orders", "a"), ("billing", "b"), ("orders", "c")] {
            Store::insert(
                &*store,
                Tree::ExchangePolicies,
                id.as_bytes(),
                encode(&policy_record(&spec(client, id))),
            )
            .unwrap();
        }
        Store::remove(&*store, Tree::Meta, INDEXED_KEY).unwrap();
        let engine = engine_with(store.clone(), kek).await;
        assert_eq!(
            ids(&engine.exchange_policies_of("orders").await.unwrap()),
            ["a", "c"]
        );
        assert_eq!(
            ids(&engine.exchange_policies_of("billing").await.unwrap()),
            ["b"]
        );
        assert!(
            writ_store::Ready(store)
                .get(Tree::Meta, INDEXED_KEY)
                .await
                .unwrap()
                .is_some()
        );
    }
}
