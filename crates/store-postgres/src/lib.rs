//! Writ's PostgreSQL backend: every tree in one table `writ_kv (tree, key, value)`, keys in byte
//! order (a `bytea` primary key), so prefix scans read an index range. Any number of processes
//! (replicas) may share one database:
//!
//! - a conditional batch runs as one transaction that re-reads what it expects, locked
//!   (`FOR UPDATE`), an absent key it writes guarded by the primary key, retried on a conflict:
//!   of concurrent batches expecting the same state, exactly one applies, whichever replica runs
//!   it; usually in one statement, so one round trip;
//! - each statement is durable when it returns (PostgreSQL commits to its WAL before answering,
//!   and group-commits concurrent transactions itself), so `durable()` has nothing left to wait
//!   for;
//! - the schema is versioned (`writ_schema`): migrations run at open, under an advisory lock so
//!   replicas starting together migrate once, and a database of a newer schema is refused.
//!
//! - commits to the trees others follow (the revocation log) send a `NOTIFY`, which a `LISTEN`ing
//!   connection of every replica turns into [`AsyncStore::changes`]: replicas are woken by the
//!   database, not by polling alone.
//!
//! Connections come from a bounded pool (deadpool); TLS goes through rustls, trusting exactly the
//! CA given.

use std::collections::HashMap;
use std::sync::{Arc, Once};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, NoTls, Socket};
use writ_store::{AsyncStore, Batch, Durable, Entries, StoreError, StoreFuture, Tree};

/// The newest schema this build knows (the version of `MIGRATIONS`' last entry).
pub const SCHEMA_VERSION: i32 = 2;

/// Each schema version's statements, applied in order to reach it.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE writ_kv (
             tree  smallint NOT NULL,
             key   bytea    NOT NULL,
             value bytea    NOT NULL,
             PRIMARY KEY (tree, key)
         )",
    ),
    // Some rows are rewritten all the time (the revocation log's head on every append, refresh
    // tokens on every rotation): with room left on their page, an update stays on it (a HOT
    // update, no index change) instead of moving the row.
    (2, "ALTER TABLE writ_kv SET (fillfactor = 80)"),
];

/// Serializes migrations across every process opening the same database ("writ" in ASCII).
const MIGRATION_LOCK: i64 = 0x7772_6974;

/// The channel commits to followed trees are announced on; the payload names the schema and
/// the tree (`schema/code`), so stores in other schemas of the same database are told apart.
/// (`COMMIT_ONE` names it too.)
const CHANGES_CHANNEL: &str = "writ_changes";

/// The trees whose commits are announced: what other replicas wait on or cache (the revocation
/// log; clients, whose records the token endpoint keeps for a moment). A `NOTIFY` takes a
/// database-wide lock at commit, so it stays off the busy trees (refresh tokens, grants).
const ANNOUNCED: &[Tree] = &[Tree::RevocationLog, Tree::Clients];

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

/// What a configuration checks of a database URL before using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlFacts {
    /// It carries a password (which must not come from a command line).
    pub has_password: bool,
    /// Every host it names is loopback (or a Unix socket): clear text is only allowed there.
    pub loopback_only: bool,
}

/// Parses `url` as the driver will, and tells what a configuration must check.
pub fn inspect_url(url: &str) -> Result<UrlFacts, StoreError> {
    let parsed: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Io(format!("the database URL is not valid: {e}")))?;
    let loopback_only = parsed.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    });
    Ok(UrlFacts {
        has_password: parsed.get_password().is_some(),
        loopback_only,
    })
}

/// The store, over a pool of connections to one database.
pub struct PgStore {
    pool: Pool,
    /// `schema/` of this store's announcements.
    channel_prefix: String,
    /// One per announced tree, bumped on every announcement (and after the listening connection
    /// was lost: whatever it missed is re-read).
    changes: Arc<HashMap<i16, watch::Sender<u64>>>,
    listener: Once,
    /// How to open the listening connection.
    listen: ListenConfig,
}

#[derive(Clone)]
struct ListenConfig {
    pg: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
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

/// The error and its causes ("db error" alone names nothing: the database's message is the
/// cause).
fn unavailable(e: impl std::error::Error) -> StoreError {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    StoreError::Unavailable(message)
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
        // Every statement Writ prepares is a lookup by key (or a range of keys): one plan fits
        // every parameter, so it is made once per connection instead of at each execution (the
        // conditional batch takes a millisecond to plan, longer than it takes to run).
        let mut options = format!(
            "-c statement_timeout={} -c plan_cache_mode=force_generic_plan",
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
        let tls = match &config.ca_pem {
            Some(ca) => {
                let tls = writ_tls::client_config(ca, &[]).map_err(unavailable)?;
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(
                    (*tls).clone(),
                ))
            }
            None => None,
        };
        let listen = ListenConfig {
            pg: pg.clone(),
            tls: tls.clone(),
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(pg, tls, manager_config),
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
        let store = PgStore {
            pool,
            channel_prefix: format!("{}/", config.schema.as_deref().unwrap_or("")),
            changes: Arc::new(
                ANNOUNCED
                    .iter()
                    .map(|t| (t.code(), watch::channel(0).0))
                    .collect(),
            ),
            listener: Once::new(),
            listen,
        };
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

    /// One attempt at a conditional batch. `Ok(None)`: never (conflicts are errors, retried).
    ///
    /// One round trip in the usual case: the whole batch is one statement ([`COMMIT_ONE`]), a
    /// transaction of its own. Two cases are pipelined into two round trips instead: a batch that
    /// expects a key absent without putting it (SERIALIZABLE keeps it absent), and one removing
    /// a key it expects nothing of (its delete must see what committed while the batch waited
    /// for its locks; one statement reads as of its start). Neither is on a request's path.
    async fn try_commit(
        &self,
        client: &mut deadpool_postgres::Object,
        tree: i16,
        batch: &Batch,
    ) -> Result<Option<bool>, tokio_postgres::Error> {
        let plan = Plan::of(batch);
        if !plan.needs_serializable && !plan.removes_unexpected {
            return self.try_commit_one(client, tree, batch, &plan).await;
        }
        let result = self.try_commit_pipelined(client, tree, batch, &plan).await;
        if !matches!(result, Ok(Some(true))) {
            // Leave no transaction open on the pooled connection (a no-op if none is).
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    /// The announcement a commit to `tree` sends, if that tree is followed and written.
    fn note(&self, tree: i16, batch: &Batch) -> Option<String> {
        (self.changes.contains_key(&tree) && !batch.write.is_empty())
            .then(|| format!("{}{tree}", self.channel_prefix))
    }

    async fn try_commit_one(
        &self,
        client: &deadpool_postgres::Object,
        tree: i16,
        batch: &Batch,
        plan: &Plan<'_>,
    ) -> Result<Option<bool>, tokio_postgres::Error> {
        let call = client.prepare_cached(COMMIT_ONE).await?;
        let keys: Vec<&[u8]> = batch.expect.iter().map(|(k, _)| k.as_slice()).collect();
        let values: Vec<Option<&[u8]>> = batch.expect.iter().map(|(_, v)| v.as_deref()).collect();
        let note = self.note(tree, batch);
        let row = client
            .query_one(
                &call,
                &[
                    &tree,
                    &keys,
                    &values,
                    &plan.new_keys,
                    &plan.new_values,
                    &plan.put_keys,
                    &plan.put_values,
                    &plan.removed,
                    &note,
                    &plan.removed_span.0,
                    &plan.removed_span.1,
                    &Tree::Audit.code(),
                    &plan.audit_keys,
                    &plan.audit_values,
                ],
            )
            .await?;
        Ok(Some(row.get(0)))
    }

    /// Pipelined: the transaction's start goes with the read of the expectations, and the
    /// writes with the commit, so a batch costs two round trips however many keys it holds.
    async fn try_commit_pipelined(
        &self,
        client: &deadpool_postgres::Object,
        tree: i16,
        batch: &Batch,
        plan: &Plan<'_>,
    ) -> Result<Option<bool>, tokio_postgres::Error> {
        // Every expectation holds at commit: an existing row is read locked (`FOR UPDATE`, in
        // key order, so concurrent batches cannot deadlock) and so cannot change before the
        // commit; SERIALIZABLE keeps a key expected absent absent.
        let begin = if plan.needs_serializable {
            "BEGIN ISOLATION LEVEL SERIALIZABLE"
        } else {
            "BEGIN ISOLATION LEVEL READ COMMITTED"
        };
        let read = client.prepare_cached(READ_MANY_FOR_UPDATE).await?;
        let put = client.prepare_cached(UPSERT_MANY).await?;
        let insert = client.prepare_cached(INSERT_MANY).await?;
        let delete = client.prepare_cached(DELETE_MANY).await?;
        let keys: Vec<&[u8]> = batch.expect.iter().map(|(k, _)| k.as_slice()).collect();
        // Sent together (tokio-postgres writes requests in the order they are first polled).
        let (begun, rows) = tokio::join!(client.batch_execute(begin), async {
            if keys.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(&read, &[&tree, &keys]).await
            }
        });
        begun?;
        let current: HashMap<Vec<u8>, Vec<u8>> =
            rows?.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        if batch
            .expect
            .iter()
            .any(|(key, expected)| current.get(key).map(Vec::as_slice) != expected.as_deref())
        {
            return Ok(Some(false));
        }
        let note = self.note(tree, batch);
        let (inserted, put, removed, audited, announced, committed) = tokio::join!(
            async {
                if plan.new_keys.is_empty() {
                    Ok(0)
                } else {
                    client
                        .execute(&insert, &[&tree, &plan.new_keys, &plan.new_values])
                        .await
                }
            },
            async {
                if plan.put_keys.is_empty() {
                    Ok(0)
                } else {
                    client
                        .execute(&put, &[&tree, &plan.put_keys, &plan.put_values])
                        .await
                }
            },
            async {
                if plan.removed.is_empty() {
                    Ok(0)
                } else {
                    let (lo, hi) = &plan.removed_span;
                    client
                        .execute(&delete, &[&tree, &plan.removed, lo, hi])
                        .await
                }
            },
            async {
                if plan.audit_keys.is_empty() {
                    Ok(0)
                } else {
                    let audit = Tree::Audit.code();
                    client
                        .execute(&put, &[&audit, &plan.audit_keys, &plan.audit_values])
                        .await
                }
            },
            async {
                // Delivered at commit, only if it commits.
                match &note {
                    Some(note) => client
                        .execute("SELECT pg_notify($1, $2)", &[&CHANGES_CHANNEL, note])
                        .await
                        .map(|_| 0),
                    None => Ok(0),
                }
            },
            // On a transaction a failed statement aborted, COMMIT answers ROLLBACK without an
            // error: the statements' own results say whether it committed.
            client.batch_execute("COMMIT"),
        );
        inserted?;
        put?;
        removed?;
        audited?;
        announced?;
        committed?;
        Ok(Some(true))
    }
}

/// What a batch writes, sorted by how: keys expected absent that it puts (inserted, so the
/// primary key catches a concurrent insert), other puts (upserted), removals. The last write of
/// a key wins, as in one batch it must.
struct Plan<'a> {
    new_keys: Vec<&'a [u8]>,
    new_values: Vec<&'a [u8]>,
    put_keys: Vec<&'a [u8]>,
    put_values: Vec<&'a [u8]>,
    removed: Vec<&'a [u8]>,
    /// The least and the greatest key removed (see [`DELETE_MANY`]).
    removed_span: (Option<&'a [u8]>, Option<&'a [u8]>),
    /// A key is expected absent and not put: only SERIALIZABLE keeps it absent until the commit.
    needs_serializable: bool,
    /// A key removed that no expectation locks.
    removes_unexpected: bool,
    /// `Batch::audit`: put in the audit tree with the batch.
    audit_keys: Vec<&'a [u8]>,
    audit_values: Vec<&'a [u8]>,
}

impl<'a> Plan<'a> {
    fn of(batch: &'a Batch) -> Self {
        let mut last: HashMap<&[u8], Option<&[u8]>> = HashMap::new();
        for (key, value) in &batch.write {
            last.insert(key, value.as_deref());
        }
        let expected_absent: std::collections::HashSet<&[u8]> = batch
            .expect
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_slice())
            .collect();
        let needs_serializable = expected_absent
            .iter()
            .any(|k| !matches!(last.get(k), Some(Some(_))));
        let mut plan = Plan {
            new_keys: Vec::new(),
            new_values: Vec::new(),
            put_keys: Vec::new(),
            put_values: Vec::new(),
            removed: Vec::new(),
            removed_span: (None, None),
            needs_serializable,
            removes_unexpected: false,
            audit_keys: batch.audit.iter().map(|(k, _)| k.as_slice()).collect(),
            audit_values: batch.audit.iter().map(|(_, v)| v.as_slice()).collect(),
        };
        for (key, value) in last {
            match value {
                Some(v) if expected_absent.contains(key) => {
                    plan.new_keys.push(key);
                    plan.new_values.push(v);
                }
                Some(v) => {
                    plan.put_keys.push(key);
                    plan.put_values.push(v);
                }
                None => plan.removed.push(key),
            }
        }
        let expected: std::collections::HashSet<&[u8]> =
            batch.expect.iter().map(|(k, _)| k.as_slice()).collect();
        plan.removes_unexpected = plan.removed.iter().any(|k| !expected.contains(k));
        plan.removed_span = (
            plan.removed.iter().min().copied(),
            plan.removed.iter().max().copied(),
        );
        plan
    }
}

/// A conditional batch in one statement (READ COMMITTED): each expectation read locked, in key
/// order (so concurrent batches cannot deadlock; a locked row cannot change before the commit,
/// and one changed meanwhile is read as committed); it holds when every row expected is there
/// with its value and none expected absent is. Only then (`ok`, computed first: the writes'
/// conditions read it) are keys expected absent inserted, never upserted (another batch
/// inserting one first fails this one on the primary key, and it is tried again), the others
/// upserted, the removed deleted (within their span, `$10` to `$11`, as in [`DELETE_MANY`];
/// none read when none are removed), the audit intents put (`$12` to `$14`, see
/// `Batch::audit`), and the change announced (`$9`, if not null) at commit.
/// One statement, one snapshot, one round trip: measured with pgbench at 32 clients on the
/// 2-core machine, 9,100 to 9,900 rotations/s against 8,100 for the pipelined transaction and
/// 4,300 to 6,000 for the same steps in a PL/pgSQL function.
const COMMIT_ONE: &str = "
    WITH cur AS (SELECT e.k AS key, v.value
                 FROM (SELECT DISTINCT k FROM unnest($2::bytea[]) AS u (k) ORDER BY k) AS e
                 CROSS JOIN LATERAL (SELECT value FROM writ_kv
                                     WHERE tree = $1::smallint AND key = e.k FOR UPDATE) AS v),
    ok AS (SELECT count(*) = cardinality(array_remove($3::bytea[], NULL))
                  AND count(*) = count(*) FILTER (WHERE cur.value = e.v) AS ok
           FROM cur JOIN unnest($2::bytea[], $3::bytea[]) AS e (k, v) ON e.k = cur.key),
    ins AS (INSERT INTO writ_kv (tree, key, value)
            SELECT $1::smallint, k, v FROM unnest($4::bytea[], $5::bytea[]) AS x (k, v)
            WHERE (SELECT ok FROM ok)
            RETURNING 1),
    ups AS (INSERT INTO writ_kv (tree, key, value)
            SELECT $1::smallint, k, v FROM unnest($6::bytea[], $7::bytea[]) AS x (k, v)
            WHERE (SELECT ok FROM ok)
            ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value
            RETURNING 1),
    del AS (DELETE FROM writ_kv WHERE tree = $1::smallint AND key = ANY($8::bytea[])
            AND key BETWEEN $10::bytea AND $11::bytea
            AND cardinality($8::bytea[]) > 0 AND (SELECT ok FROM ok)
            RETURNING 1),
    note AS (SELECT pg_notify('writ_changes', $9::text)
             WHERE $9::text IS NOT NULL AND (SELECT ok FROM ok)),
    aud AS (INSERT INTO writ_kv (tree, key, value)
            SELECT $12::smallint, k, v FROM unnest($13::bytea[], $14::bytea[]) AS x (k, v)
            WHERE (SELECT ok FROM ok)
            ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value
            RETURNING 1)
    SELECT ok, (SELECT count(*) FROM ins), (SELECT count(*) FROM ups),
           (SELECT count(*) FROM del), (SELECT count(*) FROM note), (SELECT count(*) FROM aud)
    FROM ok";
const UPSERT: &str = "INSERT INTO writ_kv (tree, key, value) VALUES ($1, $2, $3)
                      ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE: &str = "DELETE FROM writ_kv WHERE tree = $1 AND key = $2";
/// Several keys, each looked up by the whole primary key (a lateral join the planner cannot
/// turn into anything else). `key = ANY($2)` reads the same, but a plan made while the table is
/// small (a new deployment, before autovacuum has analyzed it) may scan the whole tree and
/// filter, and stays cached as the table grows: measured, refresh rotations fell from about
/// 2,500/s to 700/s with it.
const READ_MANY: &str = "
    SELECT e.k, v.value FROM unnest($2::bytea[]) AS e (k)
    CROSS JOIN LATERAL (SELECT value FROM writ_kv WHERE tree = $1::smallint AND key = e.k
                        LIMIT 1) AS v";
/// The same, locked (`FOR UPDATE`), in key order so concurrent batches cannot deadlock.
const READ_MANY_FOR_UPDATE: &str = "
    SELECT e.k, v.value
    FROM (SELECT DISTINCT k FROM unnest($2::bytea[]) AS u (k) ORDER BY k) AS e
    CROSS JOIN LATERAL (SELECT value FROM writ_kv WHERE tree = $1::smallint AND key = e.k
                        FOR UPDATE) AS v";
const UPSERT_MANY: &str = "INSERT INTO writ_kv (tree, key, value)
                           SELECT $1, k, v FROM UNNEST($2::bytea[], $3::bytea[]) AS t (k, v)
                           ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
const INSERT_MANY: &str = "INSERT INTO writ_kv (tree, key, value)
                           SELECT $1, k, v FROM UNNEST($2::bytea[], $3::bytea[]) AS t (k, v)";
/// Several keys, deleted. Unlike a lookup, a delete cannot be a lateral join, and a plan made on
/// a small table may read the tree and filter the keys; bounded by the least and the greatest
/// key removed (`$3`, `$4`), such a plan reads that range at worst (an outbox drain's keys, or a
/// log's, are contiguous). Rare, off the request path: expiry and outbox drains.
const DELETE_MANY: &str = "DELETE FROM writ_kv WHERE tree = $1 AND key = ANY($2)
                           AND key BETWEEN $3 AND $4";

/// Times `op` (`writ_store_operation_seconds`), a round trip to the database included.
async fn timed<T>(op: &'static str, f: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = f.await;
    writ_metrics::global().store_operation(op, started.elapsed());
    out
}

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
        Box::pin(timed("get", async move {
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
        }))
    }

    fn get_many<'a>(
        &'a self,
        tree: Tree,
        keys: &'a [Vec<u8>],
    ) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        Box::pin(timed("get", async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(READ_MANY)
                .await
                .map_err(unavailable)?;
            let rows = client
                .query(&stmt, &[&tree.code(), &keys])
                .await
                .map_err(unavailable)?;
            let found: HashMap<Vec<u8>, Vec<u8>> =
                rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
            Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
        }))
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
        Box::pin(timed("commit", async move {
            let mut client = self.client().await?;
            for attempt in 0..MAX_ATTEMPTS {
                match self.try_commit(&mut client, tree.code(), &batch).await {
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
        }))
    }

    fn scan<'a>(
        &'a self,
        tree: Tree,
        prefix: &'a [u8],
        start_after: Option<&'a [u8]>,
        limit: usize,
    ) -> StoreFuture<'a, Entries> {
        Box::pin(timed("scan", async move {
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
        }))
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

    fn changes(&self, tree: Tree) -> Option<watch::Receiver<u64>> {
        let receiver = self.changes.get(&tree.code())?.subscribe();
        self.listener.call_once(|| {
            tokio::spawn(listen(
                self.listen.clone(),
                self.changes.clone(),
                self.channel_prefix.clone(),
            ));
        });
        Some(receiver)
    }
}

/// The listening connection: turns announcements into bumps of `changes`, reconnecting (with a
/// bounded backoff) whenever it is lost, until nobody follows any tree any more.
async fn listen(
    config: ListenConfig,
    changes: Arc<HashMap<i16, watch::Sender<u64>>>,
    prefix: String,
) {
    let bump_all = || {
        for s in changes.values() {
            s.send_modify(|v| *v = v.wrapping_add(1));
        }
    };
    let unfollowed = async {
        for s in changes.values() {
            s.closed().await;
        }
    };
    tokio::pin!(unfollowed);
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            match &config.tls {
                Some(tls) => listen_once(&config.pg, tls.clone(), &changes, &prefix).await,
                None => listen_once(&config.pg, NoTls, &changes, &prefix).await,
            }
        };
        tokio::select! {
            ended = session => {
                if let Err(e) = ended {
                    tracing::warn!(error = %e, "the database's change announcements were lost; reconnecting");
                }
            }
            () = &mut unfollowed => return,
        }
        // Whatever was announced while not listening is found by a re-read.
        bump_all();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut unfollowed => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One listening session: returns when its connection ends.
async fn listen_once<T>(
    pg: &tokio_postgres::Config,
    tls: T,
    changes: &HashMap<i16, watch::Sender<u64>>,
    prefix: &str,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = pg.connect(tls).await?;
    let dispatch = |payload: &str| {
        let tree = payload
            .strip_prefix(prefix)
            .and_then(|code| code.parse::<i16>().ok());
        if let Some(sender) = tree.and_then(|t| changes.get(&t)) {
            sender.send_modify(|v| *v = v.wrapping_add(1));
        }
    };
    let driven = async {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message? {
                dispatch(n.payload());
            }
        }
        Ok(())
    };
    let listening = async {
        client
            .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
            .await?;
        // Listening from here on: anything committed before is found by one re-read.
        for s in changes.values() {
            s.send_modify(|v| *v = v.wrapping_add(1));
        }
        std::future::pending::<Result<(), tokio_postgres::Error>>().await
    };
    tokio::select! {
        r = driven => r,
        r = listening => r,
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
    fn urls_tell_their_password_and_whether_they_stay_on_loopback() {
        let facts = |u: &str| inspect_url(u).unwrap();
        assert_eq!(
            facts("postgres://writ@127.0.0.1:5432/writ"),
            UrlFacts {
                has_password: false,
                loopback_only: true
            }
        );
        assert!(facts("postgres://writ:secret@localhost/writ").has_password);
        assert!(!facts("postgres://writ@db.internal/writ").loopback_only);
        assert!(!facts("postgres://writ@10.0.0.5,127.0.0.1/writ").loopback_only);
        assert!(inspect_url("postgres://[not a host").is_err());
    }

    #[test]
    fn only_plain_schema_names_reach_a_search_path() {
        assert!(valid_schema("writ_test_1"));
        for bad in ["", "1abc", "Writ", "a;drop", "a b", "a\"b", &"x".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
