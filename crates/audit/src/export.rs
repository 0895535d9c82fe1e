//! The JSON-lines export (for SIEMs, and for `writ audit verify` away from the store): the
//! checkpoints first, then each record, then the head. A record's line has its fields to read
//! and the stored bytes (`record`, base64url) the chain hashes; verifying a file checks both
//! agree, so an edited field is caught like an edited record. Every string is JSON-escaped.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use writ_store::{AsyncStore, Tree, decode};

use crate::AuditError;
use crate::appender::checkpoints_upto;
use crate::chain;
use crate::record::{AuditRecord, CheckpointRecord, HEAD_KEY, HeadRecord, Pages, RECORD_PREFIX};
use crate::verify::{Report, Verifier};

/// One line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Checkpoint {
        seq: u64,
        hash: String,
        time_ms: i64,
        public_key: String,
        signature: String,
    },
    Record(Box<RecordLine>),
    Head {
        seq: u64,
        hash: String,
    },
}

/// A record as a SIEM reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordLine {
    pub seq: u64,
    pub time_ms: i64,
    pub service: String,
    pub event: String,
    pub outcome: String,
    pub actor: String,
    pub client_id: String,
    pub sub: String,
    pub gid: String,
    pub aud: Vec<String>,
    pub reason: String,
    pub details: BTreeMap<String, String>,
    pub prev: String,
    pub hash: String,
    /// The stored bytes, base64url: what the chain hashes.
    pub record: String,
}

impl RecordLine {
    pub fn of(r: &AuditRecord, stored: &[u8]) -> Self {
        RecordLine {
            seq: r.seq,
            time_ms: r.time_ms,
            service: r.service.clone(),
            event: r.kind.clone(),
            outcome: r.outcome.clone(),
            actor: r.actor.clone(),
            client_id: r.client_id.clone(),
            sub: r.subject.clone(),
            gid: r.gid.clone(),
            aud: r.audience.clone(),
            reason: r.reason.clone(),
            details: r.details.clone(),
            prev: hex::encode(&r.prev),
            hash: hex::encode(chain::hash(stored)),
            record: URL_SAFE_NO_PAD.encode(stored),
        }
    }
}

/// Writes the whole log in `store` to `out`; returns how many records.
pub async fn export(store: &dyn AsyncStore, out: &mut dyn Write) -> Result<u64, AuditError> {
    let io = |e: std::io::Error| AuditError::Store(writ_store::StoreError::Io(e.to_string()));
    let write = |line: &Line, out: &mut dyn Write| -> Result<(), AuditError> {
        serde_json::to_writer(&mut *out, line)
            .map_err(|e| AuditError::Store(writ_store::StoreError::Io(e.to_string())))?;
        out.write_all(b"\n").map_err(io)
    };
    for c in checkpoints_upto(store, u64::MAX).await? {
        write(
            &Line::Checkpoint {
                seq: c.seq,
                hash: hex::encode(&c.hash),
                time_ms: c.time_ms,
                public_key: hex::encode(&c.public_key),
                signature: hex::encode(&c.signature),
            },
            out,
        )?;
    }
    let mut count = 0;
    let mut pages = Pages::new(store, RECORD_PREFIX, 1024);
    loop {
        let page = pages.next().await?;
        if page.is_empty() {
            break;
        }
        for (_, value) in &page {
            let r = decode::<AuditRecord>(value)?;
            write(&Line::Record(Box::new(RecordLine::of(&r, value))), out)?;
            count += 1;
        }
    }
    if let Some(h) = store.get(Tree::Audit, HEAD_KEY).await? {
        let h = decode::<HeadRecord>(&h)?;
        write(
            &Line::Head {
                seq: h.seq,
                hash: hex::encode(&h.hash),
            },
            out,
        )?;
    }
    out.flush().map_err(io)?;
    Ok(count)
}

/// Verifies an export against `trusted` keys (`None`: any, reported). `open` gives the file from
/// its start; it is read twice, the checkpoints first, so their place in the file does not
/// matter. A line that cannot be read, or whose fields differ from its stored bytes, is a
/// problem at the record's position (or at 0 with the line number).
pub fn verify_export<R: BufRead>(
    mut open: impl FnMut() -> std::io::Result<R>,
    trusted: Option<Vec<Vec<u8>>>,
) -> Result<Report, AuditError> {
    let io = |e: std::io::Error| AuditError::Store(writ_store::StoreError::Io(e.to_string()));
    let unhex = |s: &str| hex::decode(s).unwrap_or_default();
    let mut verifier = Verifier::new(trusted);
    for line in open().map_err(io)?.lines() {
        if let Ok(Line::Checkpoint {
            seq,
            hash,
            time_ms,
            public_key,
            signature,
        }) = serde_json::from_str::<Line>(&line.map_err(io)?)
        {
            verifier.checkpoint(CheckpointRecord {
                seq,
                hash: unhex(&hash),
                time_ms,
                public_key: unhex(&public_key),
                signature: unhex(&signature),
            });
        }
    }
    let mut head = None;
    let mut misread = Vec::new();
    for (n, line) in open().map_err(io)?.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Checkpoint { .. }) => {}
            Ok(Line::Record(shown)) => {
                let stored = URL_SAFE_NO_PAD.decode(&shown.record).unwrap_or_default();
                let agrees = decode::<AuditRecord>(&stored)
                    .is_ok_and(|r| RecordLine::of(&r, &stored) == *shown);
                if !agrees {
                    misread.push(crate::verify::Problem {
                        seq: shown.seq,
                        what: format!(
                            "line {}: the fields shown differ from the record's stored bytes (edited)",
                            n + 1
                        ),
                    });
                }
                verifier.record(shown.seq, &stored);
            }
            Ok(Line::Head { seq, hash }) => {
                head = Some(HeadRecord {
                    seq,
                    hash: unhex(&hash),
                })
            }
            Err(_) => misread.push(crate::verify::Problem {
                seq: 0,
                what: format!("line {} is not an audit export line", n + 1),
            }),
        }
    }
    let mut report = verifier.finish(head);
    report.problems.extend(misread);
    report.problems.sort_by_key(|p| p.seq);
    Ok(report)
}
