//! Writ's PostgreSQL backend: every tree in one table `writ_kv (tree, key, value)`, keys in byte
//! order (a `bytea` primary key), so prefix scans read an index range. Any number of processes
//! (replicas) may share one database:
//!
//! - a conditional batch runs as one `SERIALIZABLE` transaction that re-reads what it expects
//!   (`FOR UPDATE`), retried on a serialization failure: of concurrent batches expecting the same
//!   state, exactly one applies, whichever replica runs it;
//! - each statement is durable when it returns (PostgreSQL commits to its WAL before answering,
//!   and group-commits concurrent transactions itself), so `durable()` has nothing left to wait
//!   for;
//! - the schema is versioned (`writ_schema`): migrations run at open, under an advisory lock so
//!   replicas starting together migrate once, and a database of a newer schema is refused.
//!
//! Connections come from a bounded pool (deadpool); TLS goes through rustls, trusting exactly the
//! CA given.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls};
use writ_store::{AsyncStore, Batch, Durable, Entries, StoreError, StoreFuture, Tree};

/// The newest schema this build knows (the version of `MIGRATIONS`' last entry).
pub const SCHEMA_VERSION: i32 = 1;

/// Each schema version's statements, applied in order to reach it.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE writ_kv (
         tree  smallint NOT NULL,
         key   bytea    NOT NULL,
         value bytea    NOT NULL,
         PRIMARY KEY (tree, key)
     )",
)];

/// Serializes migrations across every process opening the same database ("writ" in ASCII).
const MIGRATION_LOCK: i64 = 0x7772_6974;

/// How often a conditional batch is retried after a serialization failure before the store
/// reports contention.
const MAX_ATTEMPTS: usize = 32;

/// Where the database is and how to talk to it.
#[derive(Clone)]
pub struct PgConfig {
    /// A libpq-style URL or key-value string (`postgres://user@host:5432/db?sslmode=require`).
    pub url: String,
    /// The CA to trust for TLS (PEM). Without one, connections are in clear: loopback only.
    pub ca_pem: Option<String>,
    /// A schema to keep Writ's tables in (created if missing); `None`: the search path's first.
    pub schema: Option<String>,
    /// Most connections open at once (default 16).
    pub max_connections: usize,
    /// Longest wait for a connection, from the pool or a new one (default 5 s).
    pub connect_timeout: Duration,
    /// Longest a statement may run on the server (default 10 s).
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PgConfig {
    // The URL may carry a password: only where it points is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("schema", &self.schema)
            .field("tls", &self.ca_pem.is_some())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            ca_pem: None,
            schema: None,
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// The store, over a pool of connections to one database.
pub struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgStore")
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A schema name Writ will put in a `search_path` (no quoting games).
fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

impl PgStore {
    /// Connects, creates the schema if asked, migrates, and refuses a database whose schema is
    /// newer than this build's.
    pub async fn open(config: &PgConfig) -> Result<Arc<Self>, StoreError> {
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| StoreError::Io(format!("the database URL is not valid: {e}")))?;
        pg.connect_timeout(config.connect_timeout);
        let mut options = format!(
            "-c statement_timeout={}",
            config.statement_timeout.as_millis()
        );
        if let Some(schema) = &config.schema {
            if !valid_schema(schema) {
                return Err(StoreError::Io(
                    "a schema name is lowercase letters, digits and '_'".into(),
                ));
            }
            options.push_str(&format!(" -c search_path={schema}"));
        }
        pg.options(&options);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &config.ca_pem {
            Some(ca) => {
                let tls = writ_tls::client_config(ca, &[]).map_err(unavailable)?;
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
                Manager::from_config(pg, tls, manager_config)
            }
            None => Manager::from_config(pg, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(config.max_connections.max(1))
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(unavailable)?;
        let store = PgStore { pool };
        store.migrate(config.schema.as_deref()).await?;
        Ok(Arc::new(store))
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i32, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT version FROM writ_schema WHERE id = 1", &[])
            .await
            .map_err(unavailable)?;
        Ok(row.map(|r| r.get(0)).unwrap_or(0))
    }

    async fn migrate(&self, schema: Option<&str>) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(unavailable)?;
        if let Some(schema) = schema {
            // Checked by `valid_schema`: a plain identifier.
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(unavailable)?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS writ_schema (
                 id      smallint PRIMARY KEY CHECK (id = 1),
                 version integer  NOT NULL
             )",
        )
        .await
        .map_err(unavailable)?;
        let found: i32 = tx
            .query_opt("SELECT version FROM writ_schema WHERE id = 1", &[])
            .await
            .map_err(unavailable)?
            .map(|r| r.get(0))
            .unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: found as u32,
                supported: SCHEMA_VERSION as u32,
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
            tx.batch_execute(sql).await.map_err(unavailable)?;
            tracing::info!(version, "database schema migrated");
        }
        tx.execute(
            "INSERT INTO writ_schema (id, version) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// Connections open, and how many are idle (for metrics).
    pub fn pool_status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.available)
    }

    /// A round trip to the database (readiness: `Err` while it cannot be reached).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(unavailable)?;
        Ok(())
    }

    /// One attempt at a conditional batch. `Ok(None)`: a serialization failure, retry.
    async fn try_commit(
        client: &mut deadpool_postgres::Object,
        tree: i16,
        batch: &Batch,
    ) -> Result<Option<bool>, tokio_postgres::Error> {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()
            .await?;
        let read = tx
            .prepare_cached("SELECT value FROM writ_kv WHERE tree = $1 AND key = $2 FOR UPDATE")
            .await?;
        for (key, expected) in &batch.expect {
            let row = tx.query_opt(&read, &[&tree, key]).await?;
            let current: Option<Vec<u8>> = row.map(|r| r.get(0));
            if current.as_deref() != expected.as_deref() {
                tx.rollback().await?;
                return Ok(Some(false));
            }
        }
        let put = tx.prepare_cached(UPSERT).await?;
        let delete = tx.prepare_cached(DELETE).await?;
        for (key, value) in &batch.write {
            match value {
                Some(v) => tx.execute(&put, &[&tree, key, v]).await?,
                None => tx.execute(&delete, &[&tree, key]).await?,
            };
        }
        tx.commit().await?;
        Ok(Some(true))
    }
}

const UPSERT: &str = "INSERT INTO writ_kv (tree, key, value) VALUES ($1, $2, $3)
                      ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE: &str = "DELETE FROM writ_kv WHERE tree = $1 AND key = $2";

/// Errors after which a conditional batch is simply tried again: another transaction won.
fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    })
}

/// The smallest key greater than every key starting with `prefix` (`None`: no bound).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl AsyncStore for PgStore {
    fn get<'a>(&'a self, tree: Tree, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("SELECT value FROM writ_kv WHERE tree = $1 AND key = $2")
                .await
                .map_err(unavailable)?;
            let row = client
                .query_opt(&stmt, &[&tree.code(), &key])
                .await
                .map_err(unavailable)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn insert<'a>(&'a self, tree: Tree, key: &'a [u8], value: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            let stmt = client.prepare_cached(UPSERT).await.map_err(unavailable)?;
            client
                .execute(&stmt, &[&tree.code(), &key, &value])
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, tree: Tree, key: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            let stmt = client.prepare_cached(DELETE).await.map_err(unavailable)?;
            client
                .execute(&stmt, &[&tree.code(), &key])
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn commit(&self, tree: Tree, batch: Batch) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut client = self.client().await?;
            for attempt in 0..MAX_ATTEMPTS {
                match Self::try_commit(&mut client, tree.code(), &batch).await {
                    Ok(Some(applied)) => return Ok(applied),
                    Ok(None) => {}
                    Err(e) if retryable(&e) => {
                        // Let the winner finish; spread the losers out.
                        let wait = Duration::from_micros(200 * (attempt as u64 + 1));
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => return Err(unavailable(e)),
                }
            }
            Err(StoreError::Unavailable(
                "a conditional write lost to concurrent ones too often".into(),
            ))
        })
    }

    fn scan<'a>(
        &'a self,
        tree: Tree,
        prefix: &'a [u8],
        start_after: Option<&'a [u8]>,
        limit: usize,
    ) -> StoreFuture<'a, Entries> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            // Past the prefix's cursor, or from the prefix itself; below the prefix's successor.
            let (lower_op, lower) = match start_after {
                Some(k) if k >= prefix => (">", k),
                _ => (">=", prefix),
            };
            let end = successor(prefix);
            let sql = format!(
                "SELECT key, value FROM writ_kv WHERE tree = $1 AND key {lower_op} $2 {} \
                 ORDER BY key LIMIT $3",
                if end.is_some() { "AND key < $4" } else { "" }
            );
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let client = self.client().await?;
            let stmt = client.prepare_cached(&sql).await.map_err(unavailable)?;
            let code = tree.code();
            let rows = match &end {
                Some(end) => client.query(&stmt, &[&code, &lower, &limit, end]).await,
                None => client.query(&stmt, &[&code, &lower, &limit]).await,
            }
            .map_err(unavailable)?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn len(&self, tree: Tree) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM writ_kv WHERE tree = $1",
                    &[&tree.code()],
                )
                .await
                .map_err(unavailable)?;
            let n: i64 = row.get(0);
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    /// Every write returned only once committed (and PostgreSQL commits durably): nothing to
    /// wait for.
    fn durable(&self) -> Durable<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// For tests in any crate: a fresh schema on the test database, or `None` (skipped, said on
/// stderr) when no server answers, unless `WRIT_REQUIRE_POSTGRES=1`, which makes that a panic.
pub mod testing {
    use super::PgConfig;

    /// `WRIT_TEST_DATABASE_URL`, else the local server (`postgres://postgres@127.0.0.1:5432/test`).
    pub fn url() -> String {
        std::env::var("WRIT_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A configuration for a schema of its own (`writ_test_<random>`); drop it with
    /// [`drop_schema`].
    pub async fn fresh() -> Option<PgConfig> {
        let mut config = PgConfig::new(url());
        let suffix: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        config.schema = Some(format!("writ_test_{suffix:x}_{n}"));
        config.connect_timeout = std::time::Duration::from_secs(3);
        match tokio_postgres::connect(&url(), tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                drop(client);
                Some(config)
            }
            Err(e) if std::env::var("WRIT_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
                panic!(
                    "PostgreSQL is required (WRIT_REQUIRE_POSTGRES=1) but {} failed: {e}",
                    url()
                )
            }
            Err(e) => {
                eprintln!(
                    "skipped: no PostgreSQL at {} ({e}); set WRIT_TEST_DATABASE_URL",
                    url()
                );
                None
            }
        }
    }

    /// Drops the schema a test used (best effort).
    pub async fn drop_schema(config: &PgConfig) {
        let Some(schema) = &config.schema else { return };
        if let Ok((client, connection)) =
            tokio_postgres::connect(&url(), tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_of_a_prefix_bounds_exactly_its_keys() {
        assert_eq!(successor(b"a"), Some(b"b".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
        assert_eq!(successor(b""), None);
    }

    #[test]
    fn only_plain_schema_names_reach_a_search_path() {
        assert!(valid_schema("writ_test_1"));
        for bad in ["", "1abc", "Writ", "a;drop", "a b", "a\"b", &"x".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
