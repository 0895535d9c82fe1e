//! A platform's worth of records written straight to the store in large batches: what the load
//! generator's scale scenario fills a server with before it measures. Through the admin API,
//! 100,000 users would take hours (a memory-hard password hash each) and 100,000 clients one
//! flush each; here they take seconds. Not for real data: the clients' secrets are random and
//! never shown (nobody can use them), and the users share one password hash of a random secret.

use writ_store::{Batch, Tree, encode};
use writ_token::random_id;

use crate::AuthorizationServer;
use crate::error::Result;
use crate::policies::policy_keys;
use crate::records::{CLIENT_CONFIDENTIAL, ClientRecord, ExchangePolicyRecord, UserRecord};

/// Records per batch.
const BATCH: usize = 1000;

/// How many of each to write; ids are `{prefix}-client-{n}`, `{prefix}-user-{n}` and
/// `{prefix}-policy-{n}` (policy `n` belongs to client `n % clients`).
#[derive(Debug, Clone, Default)]
pub struct Synthetic {
    pub prefix: String,
    pub clients: usize,
    pub users: usize,
    pub policies: usize,
}

impl AuthorizationServer {
    /// Writes `what` (replacing records of the same ids), then flushes once.
    #[doc(hidden)]
    pub async fn fill_synthetic(&self, what: &Synthetic) -> Result<()> {
        let now = self.now();
        let p = &what.prefix;
        self.put_in_batches(Tree::Clients, what.clients, |n, batch| {
            let mut secret_hash = vec![0u8; 32];
            getrandom::fill(&mut secret_hash)
                .map_err(|_| crate::Error::Internal("the OS random source failed"))?;
            let record = ClientRecord {
                client_id: format!("{p}-client-{n}"),
                client_type: CLIENT_CONFIDENTIAL,
                secret_hash,
                grant_types: vec!["client_credentials".into()],
                scope: "inventory.read".into(),
                audience: vec!["inventory".into()],
                created_at: now,
                ..ClientRecord::default()
            };
            Ok(batch.put(record.client_id.clone().into_bytes(), encode(&record)))
        })
        .await?;
        self.put_in_batches(Tree::Users, what.users, |n, batch| {
            let record = UserRecord {
                username: format!("{p}-user-{n}"),
                subject: random_id(),
                password_hash: self.dummy_password_hash.clone(),
                scope: "inventory.read".into(),
                disabled: false,
                created_at: now,
            };
            Ok(batch.put(record.username.clone().into_bytes(), encode(&record)))
        })
        .await?;
        self.put_in_batches(Tree::ExchangePolicies, what.policies, |n, batch| {
            let record = ExchangePolicyRecord {
                policy_id: format!("{p}-policy-{n}"),
                client_id: format!("{p}-client-{}", n % what.clients.max(1)),
                audience: vec!["inventory".into()],
                scope: "inventory.read".into(),
                max_lifetime: 300,
                allow_impersonation: false,
                max_chain_depth: 1,
            };
            let (key, index) = policy_keys(&record);
            Ok(batch.put(key, encode(&record)).put(index, Vec::new()))
        })
        .await?;
        self.store.durable().await?;
        self.client_cache.clear();
        Ok(())
    }

    /// Records `0..count` of one tree, `add` putting record `n` in a batch, [`BATCH`] a commit.
    async fn put_in_batches(
        &self,
        tree: Tree,
        count: usize,
        add: impl Fn(usize, Batch) -> Result<Batch>,
    ) -> Result<()> {
        for start in (0..count).step_by(BATCH) {
            let mut batch = Batch::new();
            for n in start..(start + BATCH).min(count) {
                batch = add(n, batch)?;
            }
            self.store.commit(tree, batch).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use writ_store::{AsyncStore, SledStore};

    use super::*;

    #[tokio::test]
    async fn a_synthetic_platform_is_readable_like_a_real_one() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let kek = Arc::new(writ_keyring::KeyEncryptionKey::generate().unwrap().0);
        let (engine, _) = AuthorizationServer::open(
            Arc::new(writ_store::Ready(store.clone())),
            crate::Config::new("https://as.test"),
            writ_token::system_clock(),
            kek,
        )
        .await
        .unwrap();
        let what = Synthetic {
            prefix: "s".into(),
            clients: 2500,
            users: 1200,
            policies: 3001,
        };
        engine.fill_synthetic(&what).await.unwrap();
        let ready = writ_store::Ready(store);
        assert_eq!(ready.len(Tree::Clients).await.unwrap(), 2500);
        assert_eq!(ready.len(Tree::Users).await.unwrap(), 1200);
        let client = engine.get_client("s-client-2499").await.unwrap();
        assert_eq!(client.audience, ["inventory"]);
        // Policy n belongs to client n % 2500: client 1 has policies 1 and 2501.
        let mut of = engine.exchange_policies_of("s-client-1").await.unwrap();
        of.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
        let ids: Vec<_> = of.iter().map(|p| p.policy_id.as_str()).collect();
        assert_eq!(ids, ["s-policy-1", "s-policy-2501"]);
        assert_eq!(
            engine
                .list_exchange_policies(1000, "")
                .await
                .unwrap()
                .items
                .len(),
            1000
        );
    }
}
