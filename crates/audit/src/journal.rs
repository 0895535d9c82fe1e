//! The audit log's journal beside an embedded store: what makes a commit durable without
//! flushing the whole database.
//!
//! sled makes a write durable by flushing all of its log (sealing an I/O buffer, handing it to
//! its own threads, syncing); done for every group of records, that cost the request path far
//! more than the issue allows (BENCHMARKS.md, issue 16). Instead, each commit's writes to the
//! audit tree are also appended here as one frame and made durable by one `fdatasync`, on the
//! appender's own thread; sled writes the tree out in its own time. At start,
//! the frames whose head is above the store's (sled had not written them yet) are applied again;
//! once the store is flushed, the file is emptied.
//!
//! A frame: the payload's length (4 bytes, big-endian), the first 8 bytes of its SHA-256, the
//! payload (a [`Frame`]). A torn or unreadable tail ends the replay: it was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use prost::Message;
use writ_store::{AsyncStore, Batch, Tree, decode};

use crate::AuditError;
use crate::record::{HEAD_KEY, HeadRecord};

pub const FILE_NAME: &str = "writ-audit.journal";
/// The journal is emptied (after a flush of the store) once it holds this many bytes.
pub(crate) const RESET_BYTES: u64 = 32 * 1024 * 1024;
const HEADER: usize = 12;

/// One commit's writes to the audit tree.
#[derive(Clone, PartialEq, prost::Message)]
struct Frame {
    /// The head the commit moved to: the frame is in the store once its head is.
    #[prost(uint64, tag = "1")]
    head_seq: u64,
    #[prost(message, repeated, tag = "2")]
    writes: Vec<FrameWrite>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FrameWrite {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    /// Absent: the key is removed.
    #[prost(bytes = "vec", optional, tag = "2")]
    value: Option<Vec<u8>>,
}

/// The frame of a commit moving the head to `head_seq` with `writes`.
pub(crate) fn frame(head_seq: u64, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<u8> {
    let payload = Frame {
        head_seq,
        writes: writes
            .iter()
            .map(|(key, value)| FrameWrite {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
    }
    .encode_to_vec();
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    out
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest = ring::digest::digest(&ring::digest::SHA256, payload);
    let mut out = [0; 8];
    out.copy_from_slice(&digest.as_ref()[..8]);
    out
}

/// The whole frames at the start of `bytes`, up to the first torn or unreadable one.
fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while bytes.len() >= HEADER {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let Some(payload) = bytes.get(HEADER..HEADER + len) else {
            break;
        };
        if checksum(payload) != bytes[4..HEADER] {
            break;
        }
        let Ok(frame) = Frame::decode(payload) else {
            break;
        };
        out.push(frame);
        bytes = &bytes[HEADER + len..];
    }
    out
}

/// Applies what the journal beside an embedded `store` holds beyond the store's head, makes the
/// store durable and empties the journal. Returns how many commits were applied again. Done
/// before an appender starts, and before the log is read offline (`writ audit`), so a record
/// acknowledged before a crash is there.
pub async fn recover(store: &dyn AsyncStore) -> Result<u64, AuditError> {
    let Some(dir) = store.local_dir() else {
        return Ok(0);
    };
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    };
    if bytes.is_empty() {
        return Ok(0);
    }
    let mut head = match store.get(Tree::Audit, HEAD_KEY).await? {
        Some(b) => decode::<HeadRecord>(&b)?.seq,
        None => 0,
    };
    let mut applied = 0;
    for frame in frames(&bytes) {
        // sled keeps a prefix of its commits: one whose head it holds, it holds whole.
        if frame.head_seq <= head {
            continue;
        }
        let batch = Batch {
            write: frame.writes.into_iter().map(|w| (w.key, w.value)).collect(),
            ..Batch::default()
        };
        store.commit(Tree::Audit, batch).await?;
        head = frame.head_seq;
        applied += 1;
    }
    store.durable().await?;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(0))
        .map_err(io)?;
    if applied > 0 {
        tracing::warn!(
            commits = applied,
            "the audit log was completed from its journal"
        );
    }
    Ok(applied)
}

fn io(e: std::io::Error) -> AuditError {
    AuditError::Store(writ_store::StoreError::Io(e.to_string()))
}

/// The journal's writer, used by the appender on its own thread: appending a commit's frame
/// and syncing it are one blocking call, so a record's caller waits for one thread only.
pub(crate) struct Journal {
    file: File,
    /// Once a write or sync failed, what the file holds is unknown: every later append fails
    /// too (fail closed) until the file is emptied after a flush of the store.
    broken: Option<String>,
    /// Bytes appended since the file was last emptied.
    bytes: u64,
}

impl Journal {
    pub(crate) fn open(dir: &Path) -> Result<Journal, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(FILE_NAME))
            .map_err(io)?;
        Ok(Journal {
            file,
            broken: None,
            bytes: 0,
        })
    }

    /// Appends a commit's frame and makes it durable (blocking).
    pub(crate) fn append(&mut self, frame: &[u8]) -> Result<(), AuditError> {
        if let Some(e) = &self.broken {
            return Err(unavailable(e.clone()));
        }
        self.bytes += frame.len() as u64;
        let written = self
            .file
            .write_all(frame)
            .and_then(|_| self.file.sync_data());
        written.map_err(|e| {
            tracing::error!(error = %e, "the audit journal could not be written");
            self.broken = Some(e.to_string());
            unavailable(e.to_string())
        })
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Empties the file. The caller has made every commit appended so far durable in the store.
    pub(crate) fn reset(&mut self) -> Result<(), AuditError> {
        self.file.set_len(0).map_err(io)?;
        self.broken = None;
        self.bytes = 0;
        Ok(())
    }
}

fn unavailable(e: String) -> AuditError {
    AuditError::Store(writ_store::StoreError::Unavailable(e))
}
