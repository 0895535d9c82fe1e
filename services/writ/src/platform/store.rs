//! Where each service keeps its state: an embedded sled store in the data directory (the
//! default), or one PostgreSQL database that any number of replicas share, each service in a
//! schema of its own (the authorization server's and the STS's keys share tree names).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use writ_store::{AsyncStore, SledStore};
use writ_store_postgres::{PgConfig, PgStore};

use super::config::StoreChoice;

/// One service's store, and what readiness and metrics watch of it.
#[derive(Debug, Clone)]
pub struct ServiceStore {
    pub store: Arc<dyn AsyncStore>,
    /// The embedded store, when that is what it is (its flush count, its release at shutdown).
    pub sled: Option<Arc<SledStore>>,
    /// The PostgreSQL store, when that is what it is (its pool, its reachability).
    pub postgres: Option<Arc<PgStore>>,
}

impl ServiceStore {
    /// Opens `service`'s store: `<data-dir>/<dir_name>` on sled, or the schema
    /// `<prefix>_<service>` on PostgreSQL (created and migrated if need be).
    pub async fn open(
        choice: &StoreChoice,
        data_dir: &Path,
        dir_name: &str,
        service: &str,
        what: &str,
    ) -> anyhow::Result<Self> {
        match choice {
            StoreChoice::Sled(config) => {
                let (path, config) = (data_dir.join(dir_name), *config);
                let sled =
                    tokio::task::spawn_blocking(move || SledStore::open_with(&path, &config))
                        .await
                        .context("the store-opening task")?
                        .with_context(|| format!("opening {what} in {}", data_dir.display()))?;
                let sled = Arc::new(sled);
                Ok(ServiceStore {
                    store: Arc::new(writ_store::Ready(sled.clone())),
                    sled: Some(sled),
                    postgres: None,
                })
            }
            StoreChoice::Postgres(config) => {
                let prefix = config.schema.as_deref().unwrap_or(DEFAULT_SCHEMA_PREFIX);
                let config = PgConfig {
                    schema: Some(format!("{prefix}_{service}")),
                    ..config.clone()
                };
                let pg = PgStore::open(&config)
                    .await
                    .with_context(|| format!("opening {what} in PostgreSQL ({config:?})"))?;
                Ok(ServiceStore {
                    store: pg.clone(),
                    sled: None,
                    postgres: Some(pg),
                })
            }
        }
    }

    /// Readiness: the store answers (a stopped, failing or unreachable store is not ready).
    pub fn readiness(
        &self,
    ) -> impl Fn() -> writ_token::BoxFuture<'static, Result<(), String>> + Send + Sync + 'static
    {
        let sled = self.sled.as_ref().map(Arc::downgrade);
        let postgres = self.postgres.as_ref().map(Arc::downgrade);
        move || {
            let (sled, postgres) = (
                sled.as_ref().map(|s| s.upgrade()),
                postgres.as_ref().map(|p| p.upgrade()),
            );
            Box::pin(async move {
                match (sled, postgres) {
                    (Some(Some(s)), _) => {
                        use writ_store::Store as _;
                        s.get(writ_store::Tree::Meta, b"schema_version")
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                    // Bounded by the readiness check's own timeout.
                    (_, Some(Some(p))) => p.ping().await.map_err(|e| e.to_string()),
                    _ => Err("the store is closed".into()),
                }
            })
        }
    }

    /// Samples the pool's use into the metrics (`writ_store_pool_connections{service}`,
    /// `writ_store_pool_idle_connections{service}`).
    pub fn sample_pool(&self, service: &'static str) {
        let Some(pg) = self.postgres.as_ref().map(Arc::downgrade) else {
            return;
        };
        writ_metrics::sampler(move |m| {
            if let Some(pg) = pg.upgrade() {
                let (open, idle) = pg.pool_status();
                m.set_store_pool(service, open, idle);
            }
        });
    }
}

/// The schemas' prefix when none is given: `writ_authz`, `writ_revocation`, `writ_sts`.
pub const DEFAULT_SCHEMA_PREFIX: &str = "writ";
