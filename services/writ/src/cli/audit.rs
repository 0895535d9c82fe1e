//! `writ audit`: the audit trail through the admin API (`list`), or read from the store itself
//! (`export`, `verify`: a stopped sled store, or a shared PostgreSQL one at any time).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use writ_proto::admin::{self as pb_admin};

use super::AdminConn;
use super::admin::admin_client;
use super::serve::StoreArgs;
use super::support::{CliError, Result, print};
use crate::platform::{AUTHZ_STORE, REVOCATION_STORE, STS_STORE, ServiceStore};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Audit events from the running server's admin API, oldest first, as JSON lines (every
    /// string JSON-escaped). Resume with --after the last `sequence` printed.
    List(ListArgs),
    /// The whole audit log read from the store, as JSON lines: the signed checkpoints, every
    /// record (its fields and its stored bytes), the head. For a SIEM, or `verify --file`.
    Export(StoreLocation),
    /// Checks the audit log (in the store, or an export with --file): the hash chain, the
    /// checkpoints' signatures, the head. Prints a report; exits 1 if anything is wrong, each
    /// problem with the position where it was found.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub conn: AdminConn,
    /// Only events at or after this Unix time (seconds).
    #[arg(long)]
    pub since: Option<i64>,
    /// Only events before this Unix time (seconds).
    #[arg(long)]
    pub until: Option<i64>,
    /// Only events of this type (token_issued, token_refused, token_exchanged, revoked, ...).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub client_id: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub subject: Option<String>,
    /// Only events of this grant id: a lineage's whole story.
    #[arg(long, allow_hyphen_values = true)]
    pub gid: Option<String>,
    #[arg(long, value_parser = ["success", "refused", "failed"])]
    pub outcome: Option<String>,
    /// Only events after this sequence.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Which store holds the log, and where it is.
#[derive(Debug, Args)]
pub struct StoreLocation {
    /// The data directory (sled: the server must be stopped; it holds the store's lock).
    #[arg(long, env = "WRIT_DATA_DIR", default_value = "writ-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The key-encryption key (what `serve` was given; default `<data-dir>/key-encryption.key`,
    /// or WRIT_KEY_ENCRYPTION_KEY): it proves the store's checkpoint key is the log's own.
    #[arg(long, env = "WRIT_KEY_ENCRYPTION_KEY_FILE")]
    pub key_encryption_key_file: Option<PathBuf>,
    /// Whose store: the authorization server's holds the log of every process that runs it
    /// (`writ up` included); a process without it keeps its log in its first service's store.
    #[arg(long, value_enum, default_value = "authz")]
    pub service: LogOf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogOf {
    Authz,
    Revocation,
    Sts,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub location: StoreLocation,
    /// Verify this export (`writ audit export`) instead of the store.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The checkpoint key to trust (hex, 32 bytes; repeatable). Without it, the store's own key
    /// once proven sealed under the key-encryption key, or, for a file, any key (each is
    /// reported by fingerprint: compare it with the one you keep).
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<String>,
}

pub async fn audit(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::List(args) => list(args).await,
        AuditCommand::Export(location) => {
            let store = open(&location).await?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            writ_audit::export::export(&*store.store, &mut out)
                .await
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            Ok(())
        }
        AuditCommand::Verify(args) => verify(args).await,
    }
}

async fn list(args: ListArgs) -> Result<()> {
    let mut admin = admin_client(&args.conn).await?;
    let at = |secs: Option<i64>| {
        secs.map(|s| prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        })
    };
    let mut token = if args.after > 0 {
        args.after.to_string()
    } else {
        String::new()
    };
    let mut printed = 0;
    // Bounded: each page moves the cursor on, and at most `limit` events are printed.
    while printed < args.limit {
        let page = admin
            .list_audit_events(pb_admin::ListAuditEventsRequest {
                page_size: i32::try_from((args.limit - printed).min(1000)).unwrap_or(1000),
                page_token: token.clone(),
                since: at(args.since),
                until: at(args.until),
                event_type: args.event_type.clone().unwrap_or_default(),
                client_id: args.client_id.clone().unwrap_or_default(),
                subject: args.subject.clone().unwrap_or_default(),
                gid: args.gid.clone().unwrap_or_default(),
                outcome: args.outcome.clone().unwrap_or_default(),
            })
            .await?
            .into_inner();
        for e in page.events.iter().take(args.limit - printed) {
            println!("{}", event_json(e));
            printed += 1;
        }
        if page.next_page_token.is_empty() || page.next_page_token == token {
            break;
        }
        token = page.next_page_token;
    }
    Ok(())
}

fn event_json(e: &pb_admin::AuditEvent) -> serde_json::Value {
    let time_ms = e
        .time
        .as_ref()
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000));
    json!({
        "sequence": e.sequence,
        "time_ms": time_ms,
        "service": e.service,
        "event": e.event_type,
        "outcome": e.outcome,
        "actor": e.actor,
        "client_id": e.client_id,
        "sub": e.subject,
        "gid": e.gid,
        "aud": e.audience,
        "reason": e.reason,
        "details": e.details.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "hash": e.hash,
    })
}

fn key_encryption_key(location: &StoreLocation) -> Result<writ_keyring::KeyEncryptionKey> {
    let fail = |e: &dyn std::fmt::Display| {
        CliError::Invalid(format!(
            "the key-encryption key ({e}): give --key-encryption-key-file, or --trusted-key"
        ))
    };
    if let (None, Ok(value)) = (
        &location.key_encryption_key_file,
        std::env::var("WRIT_KEY_ENCRYPTION_KEY"),
    ) {
        return writ_keyring::KeyEncryptionKey::from_base64(&value).map_err(|e| fail(&e));
    }
    let path = location.key_encryption_key_file.clone().unwrap_or_else(|| {
        location
            .data_dir
            .join(crate::platform::KEY_ENCRYPTION_KEY_FILE)
    });
    writ_keyring::KeyEncryptionKey::load_or_create(&path, false).map_err(|e| fail(&e))
}

async fn open(location: &StoreLocation) -> Result<ServiceStore> {
    let choice = location
        .store
        .choice()
        .map_err(|e| CliError::Invalid(format!("{e:#}")))?;
    let (dir, service, what) = match location.service {
        LogOf::Authz => AUTHZ_STORE,
        LogOf::Revocation => REVOCATION_STORE,
        LogOf::Sts => STS_STORE,
    };
    let mut store = ServiceStore::open(&choice, &location.data_dir, dir, service, what)
        .await
        .map_err(|e| CliError::Invalid(format!("{e:#} (is the server still running?)")))?;
    // The log's own view of the store (on sled, its segment files beside the database).
    store.store = writ_audit::open_store(store.store.clone())
        .await
        .map_err(|e| CliError::Invalid(format!("the audit log: {e}")))?;
    Ok(store)
}

async fn verify(args: VerifyArgs) -> Result<()> {
    let trusted = if args.trusted_keys.is_empty() {
        None
    } else {
        Some(
            args.trusted_keys
                .iter()
                .map(|k| {
                    hex::decode(k.trim())
                        .ok()
                        .filter(|k| k.len() == 32)
                        .ok_or_else(|| {
                            CliError::Invalid("--trusted-key takes 32 bytes in hex".into())
                        })
                })
                .collect::<Result<Vec<_>>>()?,
        )
    };
    let report = match &args.file {
        Some(path) => {
            // Readable now: a file that vanishes between the two passes is an I/O error then.
            std::fs::File::open(path)
                .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
            writ_audit::export::verify_export(
                || std::fs::File::open(path).map(std::io::BufReader::new),
                trusted,
            )
        }
        None => {
            let store = open(&args.location).await?;
            let trusted = match trusted {
                Some(t) => Some(t),
                // The store's own key, once proven sealed under the key-encryption key.
                None => {
                    let kek = key_encryption_key(&args.location)?;
                    writ_audit::proven_key(&*store.store, &kek)
                        .await
                        .map_err(|e| CliError::Invalid(format!("the checkpoint key: {e}")))?
                        .map(|k| vec![k])
                }
            };
            writ_audit::verify::verify(&*store.store, trusted).await
        }
    }
    .map_err(|e| CliError::Invalid(e.to_string()))?;
    print(&json!({
        "intact": report.intact(),
        "records": report.records,
        "first": report.first,
        "last": report.last,
        "checkpoints": report.checkpoints,
        "signed_to": report.signed_to,
        "keys": report.keys,
        "problems": report.problems.iter().map(|p| json!({ "at": p.seq, "what": p.what })).collect::<Vec<_>>(),
    }));
    if report.intact() {
        Ok(())
    } else {
        Err(CliError::Invalid(format!(
            "the audit log is not intact: {} problem(s), the first at {}",
            report.problems.len(),
            report.problems.first().map_or(0, |p| p.seq)
        )))
    }
}
