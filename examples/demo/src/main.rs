//! `writ-demo`: the example services against a running `writ up`.
//!
//! ```sh
//! cargo run --release -p writ -- up                # in one terminal
//! cargo run --release -p writ-demo                 # in another
//! ```
//!
//! Registers the example clients and an exchange policy through the admin API (with the admin
//! credential `writ up` wrote into its data directory; orders with a key pair instead of a
//! secret, `private_key_jwt`), starts inventory and orders on
//! loopback, places an order as a caller, shows whom inventory saw (the caller, with orders as
//! the actor), revokes the caller's token and shows both services refuse it. With `--serve` the
//! services keep running afterwards.

use clap::Parser;
use writ_demo::walkthrough::{Cli, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("WRIT_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .init();
    run(&cli).await
}
