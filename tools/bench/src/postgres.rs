//! The stores side by side, in one run: each figure on the embedded sled store, then on
//! PostgreSQL (the local server; a fresh set of schemas per scenario, dropped after).
//!
//! - client_credentials (a client read per token);
//! - refresh rotation, on PostgreSQL over two authorization servers sharing the database, the
//!   callers spread over both (every rotation a serializable transaction);
//! - durable Revoke, 100 entries per call;
//! - propagation from a Revoke's reply to 1 and to `--subscribers` Watch streams.

use crate::revocation::{Propagation, propagate_on, revoke_on};
use crate::{Backend, Cli, Outcome, client_credentials_on, refresh_on};

/// Entries per call in the Revoke comparison.
const REVOKE_BATCH: usize = 100;

pub fn run(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
    only_refresh: bool,
) -> anyhow::Result<(Vec<Outcome>, Vec<Propagation>)> {
    let mut outcomes = Vec::new();
    let mut propagation = Vec::new();
    let sled = Backend::Sled;
    let mut pg = Vec::new();
    let mut postgres = || -> anyhow::Result<Backend> {
        let b = Backend::postgres(&cli.postgres_url)?;
        pg.push(b.clone());
        Ok(b)
    };
    if only_refresh {
        outcomes.push(refresh_on(cli, load, &sled, 1, ", sled")?.0);
        let pg = postgres()?;
        outcomes.push(refresh_on(cli, load, &pg, 2, ", PostgreSQL, 2 replicas")?.0);
        load.block_on(pg.drop_schemas());
        return Ok((outcomes, Vec::new()));
    }
    outcomes.push(client_credentials_on(cli, load, &sled, false, ", sled")?);
    outcomes.push(client_credentials_on(
        cli,
        load,
        &postgres()?,
        false,
        ", PostgreSQL",
    )?);
    outcomes.push(refresh_on(cli, load, &sled, 1, ", sled")?.0);
    outcomes.push(refresh_on(cli, load, &postgres()?, 2, ", PostgreSQL, 2 replicas")?.0);
    outcomes.push(revoke_on(cli, load, &sled, REVOKE_BATCH, ", sled")?);
    outcomes.push(revoke_on(
        cli,
        load,
        &postgres()?,
        REVOKE_BATCH,
        ", PostgreSQL",
    )?);
    let args = &cli.revocation;
    let connections = args.watch_connections.max(1);
    // A fresh log for each (its subscribers read it from the start).
    for (subscribers, connections) in [(1, 1), (args.subscribers, connections)] {
        propagation.push(propagate_on(
            args,
            load,
            &sled,
            subscribers,
            connections,
            ", sled",
        )?);
        propagation.push(propagate_on(
            args,
            load,
            &postgres()?,
            subscribers,
            connections,
            ", PostgreSQL",
        )?);
    }
    for b in &pg {
        load.block_on(b.drop_schemas());
    }
    Ok((outcomes, propagation))
}
