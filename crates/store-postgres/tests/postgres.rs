//! The PostgreSQL backend against a real server: `WRIT_TEST_DATABASE_URL` (default the local
//! one, `postgres://postgres@127.0.0.1:5432/test`), each test in a fresh schema of its own,
//! dropped at the end. Where no server answers, a test says it is skipped and why, unless
//! `WRIT_REQUIRE_POSTGRES=1` (CI sets it), which makes that a failure.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use writ_store::{AsyncStore, Batch, StoreError, Tree};
use writ_store_postgres::{PgConfig, PgStore, SCHEMA_VERSION};

use writ_store_postgres::testing::{drop_schema, fresh, url};

/// Runs SQL on the test database directly.
async fn sql(statement: &str) {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute(statement).await.unwrap();
}

/// The first column of the first row of `query`, as text.
async fn query_one(query: &str) -> String {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(query, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let Some(config) = fresh().await else { return };
    let store = PgStore::open(&config).await.unwrap();
    writ_store::conformance::check(store).await;
    drop_schema(&config).await;
}

/// Replicas are processes with pools of their own over one database: of 32 rotations of one
/// refresh token spread over three of them, exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_write_has_one_winner_across_replicas() {
    let Some(config) = fresh().await else { return };
    let mut replicas: Vec<Arc<PgStore>> = Vec::new();
    for _ in 0..3 {
        replicas.push(PgStore::open(&config).await.unwrap());
    }
    let t = Tree::RefreshTokens;
    replicas[0]
        .insert(t, b"token", b"active".to_vec())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..32u8 {
        let store = replicas[usize::from(i) % 3].clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit(
                    t,
                    Batch::new()
                        .expect("token", Some(b"active".to_vec()))
                        .put("token", vec![b'u', i])
                        .put(vec![b's', i], b"successor".to_vec()),
                )
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(replicas[2].scan(t, b"s", None, 100).await.unwrap().len(), 1);
    drop_schema(&config).await;
}

#[tokio::test]
async fn an_older_schema_is_migrated_and_a_newer_one_refused() {
    let Some(config) = fresh().await else { return };
    let schema = config.schema.clone().unwrap();
    // A database a previous build left at version 0 (the version table, nothing else).
    sql(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.writ_schema (id smallint PRIMARY KEY CHECK (id = 1), version integer NOT NULL);
         INSERT INTO {schema}.writ_schema VALUES (1, 0);"
    ))
    .await;
    let store = PgStore::open(&config).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    store
        .insert(Tree::Clients, b"a", b"1".to_vec())
        .await
        .unwrap();
    // Opening again changes nothing.
    let again = PgStore::open(&config).await.unwrap();
    assert_eq!(
        again.get(Tree::Clients, b"a").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );

    // A database an earlier build left at version 1, with data: migrated, the data kept.
    sql(&format!(
        "UPDATE {schema}.writ_schema SET version = 1;
         ALTER TABLE {schema}.writ_kv RESET (fillfactor);"
    ))
    .await;
    let store = PgStore::open(&config).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(
        store.get(Tree::Clients, b"a").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    let options = query_one(&format!(
        "SELECT array_to_string(reloptions, ',') FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = '{schema}' AND c.relname = 'writ_kv'"
    ))
    .await;
    assert_eq!(options, "fillfactor=80", "version 2's migration ran");

    // A newer build migrated it further: this one refuses to start, and writes nothing.
    sql(&format!(
        "UPDATE {schema}.writ_schema SET version = {}",
        SCHEMA_VERSION + 1
    ))
    .await;
    match PgStore::open(&config).await {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(
                (found, supported),
                ((SCHEMA_VERSION + 1) as u32, SCHEMA_VERSION as u32)
            );
        }
        other => panic!("a newer schema was not refused: {other:?}"),
    }
    drop_schema(&config).await;
}

/// Replicas starting at once migrate once (the advisory lock), and all come up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(config) = fresh().await else { return };
    let mut opening = Vec::new();
    for _ in 0..4 {
        let config = config.clone();
        opening.push(tokio::spawn(async move { PgStore::open(&config).await }));
    }
    for o in opening {
        o.await.unwrap().unwrap();
    }
    drop_schema(&config).await;
}

/// An unreachable database is a clear, retryable error, not a hang.
#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_in_bounded_time() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut config = PgConfig::new(format!("postgres://postgres@127.0.0.1:{port}/test"));
    config.connect_timeout = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    let r = PgStore::open(&config).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// Readiness follows the database: a ping answers while it is up, and the pool's use is visible.
#[tokio::test]
async fn ping_answers_and_the_pool_is_counted() {
    let Some(config) = fresh().await else { return };
    let store = PgStore::open(&config).await.unwrap();
    store.ping().await.unwrap();
    let (open, idle) = store.pool_status();
    assert!(open >= 1 && idle <= open, "{open} {idle}");
    drop_schema(&config).await;
}
