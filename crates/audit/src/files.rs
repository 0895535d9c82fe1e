//! The audit log's records on an embedded store: append-only segment files in `audit/` inside
//! the database's directory, written and made durable by the log alone. A commit is one frame
//! and one `fdatasync` of one file, instead of a write to every index tree of the database and a
//! flush of all of it; nothing else in the process waits on the audit log's writes, and they
//! take no lock the database's other users need.
//!
//! ```text
//! audit/lock                       held while a process has the log open
//! audit/<first seq, 20 digits>.seg frames, in order; the last segment is the one appended to
//! audit/<first seq>.idx            a sealed segment's tables, written when it is sealed
//! ```
//!
//! A frame is one commit: `len u32 | crc32 u32 | body` (little-endian), the body being the head
//! after the commit (`seq u64`, `hash [32]`), the intents it chained (`u16` count, then `u16`
//! length and key each, so a restart after a crash between the frame and the intents' removal
//! does not chain them twice), and its records (`u32` count, then `seq u64`, `len u32`, bytes).
//! A torn frame at the end of the last segment (a crash mid-write: never acknowledged) is cut
//! off at open, its bytes kept beside the segment; a damaged frame anywhere else stops the
//! open, so evidence is never discarded.
//!
//! Segments after the first are written into files zeroed ahead (a spare made by a helper
//! thread while the open segment fills): appending into allocated blocks spares each sync an
//! inode write. So zeros where a frame would start end a segment, and an unreadable frame (an
//! all-zero header included: a crash may persist a frame's later pages and not its first) is
//! torn only when no whole frame follows it anywhere; otherwise it is damage. A sealed segment,
//! and the open one at a clean close, is cut to its last frame; a spare that is ready when the
//! log closes is removed.
//!
//! A sealed segment's `.idx`: its records' `(seq u64, offset u64, len u32)` in order of
//! sequence, then its index keys (the same keys the store layout uses, `u16` length and bytes,
//! sorted), their offsets (`u64` each), and a footer (`n`, `m`, where each table starts, the
//! segment's length, a crc32, a magic). Both are read in place (binary search by positioned
//! reads), so a million records cost no memory; the open segment's tables are in memory,
//! bounded by the segment's size.
//!
//! [`FileBacked`] presents the log and the store beside it as one [`AsyncStore`] in the
//! store's key layout (`r/`, `i/`, `h` from the files, everything else from the store), so the
//! readers (queries, verify, export) are the same for every backend.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};
use writ_store::{
    AsyncStore, Batch, Durable, Entries, StoreError, StoreFuture, Tree, decode, encode,
};

use crate::record::{
    AuditRecord, HEAD_KEY, HeadRecord, INDEX_PREFIX, INTENT_PREFIX, RECORD_PREFIX, index_keys,
    record_key, seq_of,
};

/// A segment is sealed (and a new one started) once it is this long.
const SEGMENT_BYTES: u64 = 8 << 20;
/// No frame is longer: a larger length read back is damage, not a frame.
const MAX_FRAME: usize = 256 << 20;
const FRAME_HEADER: usize = 8;
const SIDECAR_MAGIC: u32 = 0x5752_4958; // "WRIX"
const FOOTER: usize = 5 * 8 + 4 + 4;
/// A spare file is an eighth longer than a segment (the frame that seals a segment runs past
/// its length).
const SPARE_SLACK_DIVISOR: u64 = 8;
/// What a spare file's name ends with.
const SPARE: &str = "spare";

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

/// One commit as read back.
#[derive(Debug, Clone)]
struct Frame {
    head: HeadRecord,
    intents: Vec<Vec<u8>>,
    /// `(seq, offset of the bytes in the file, length)`.
    records: Vec<(u64, u64, u32)>,
}

fn encode_frame(
    head: &HeadRecord,
    intents: &[Vec<u8>],
    records: &[(u64, &[u8])],
    at: u64,
) -> (Vec<u8>, Vec<(u64, u64, u32)>) {
    let size: usize = FRAME_HEADER
        + 8
        + 32
        + 2
        + intents.iter().map(|k| 2 + k.len()).sum::<usize>()
        + 4
        + records.iter().map(|(_, b)| 12 + b.len()).sum::<usize>();
    let mut buf = Vec::with_capacity(size);
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    buf.extend_from_slice(&head.seq.to_le_bytes());
    let mut hash = [0u8; 32];
    let n = head.hash.len().min(32);
    hash[..n].copy_from_slice(&head.hash[..n]);
    buf.extend_from_slice(&hash);
    let intents = &intents[..intents.len().min(usize::from(u16::MAX))];
    buf.extend_from_slice(&(intents.len() as u16).to_le_bytes());
    for key in intents {
        let key = &key[..key.len().min(usize::from(u16::MAX))];
        buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
        buf.extend_from_slice(key);
    }
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    let mut placed = Vec::with_capacity(records.len());
    for (seq, bytes) in records {
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        placed.push((*seq, at + buf.len() as u64, bytes.len() as u32));
        buf.extend_from_slice(bytes);
    }
    let body = (buf.len() - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&buf[FRAME_HEADER..]);
    buf[..4].copy_from_slice(&body.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    (buf, placed)
}

/// How a segment's bytes end.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// Every byte read, or zeros from here on (a segment written into a file zeroed ahead).
    Clean(u64),
    /// An incomplete or unreadable last frame starting here, with nothing after it.
    Torn(u64),
    /// An unreadable frame starting here with more bytes after it.
    Damaged(u64),
}

/// A little-endian cursor over a frame's body.
struct Reader<'a>(&'a [u8], usize);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let out = self.0.get(self.1..self.1.checked_add(n)?)?;
        self.1 += n;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn parse_body(body: &[u8], at: u64) -> Option<Frame> {
    let mut r = Reader(body, 0);
    let seq = r.u64()?;
    let hash = r.take(32)?.to_vec();
    let mut intents = Vec::new();
    for _ in 0..r.u16()? {
        let n = usize::from(r.u16()?);
        intents.push(r.take(n)?.to_vec());
    }
    let count = r.u32()?;
    let mut records = Vec::new();
    for _ in 0..count {
        let seq = r.u64()?;
        let len = r.u32()?;
        let offset = at + r.1 as u64;
        r.take(len as usize)?;
        records.push((seq, offset, len));
    }
    (r.1 == body.len()).then_some(Frame {
        head: HeadRecord { seq, hash },
        intents,
        records,
    })
}

fn zeros(buf: &[u8]) -> bool {
    buf.iter().all(|&b| b == 0)
}

/// `buf`'s length without its trailing zeros (those of a file zeroed ahead).
fn written_len(buf: &[u8]) -> usize {
    buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// Frames whose bytes a scan for a whole frame may check before it gives up (and calls what it
/// scanned damage): a torn tail is one write, a scan of garbage rarely gets past the length and
/// sequence checks.
const SCAN_BUDGET: usize = 256 << 20;

/// Whether a whole frame starts anywhere after `from`, its head at or after `after_seq`: what
/// tells a damaged frame (acknowledged frames follow it) from a torn last write. Fails closed:
/// a scan over its budget answers yes.
fn whole_frame_after(buf: &[u8], from: usize, after_seq: u64) -> bool {
    let end = written_len(buf);
    let mut budget = SCAN_BUDGET;
    for o in from..end {
        let Some(h) = buf.get(o..o + FRAME_HEADER + 8) else {
            return false;
        };
        let len = u32::from_le_bytes(h[..4].try_into().unwrap_or_default()) as usize;
        let seq = u64::from_le_bytes(h[FRAME_HEADER..].try_into().unwrap_or_default());
        let plausible = (8 + 32 + 2 + 4..=MAX_FRAME).contains(&len)
            && seq >= after_seq
            && seq - after_seq <= u64::from(u32::MAX);
        let Some(body) = buf
            .get(o + FRAME_HEADER..o + FRAME_HEADER + len)
            .filter(|_| plausible)
        else {
            continue;
        };
        if budget < len {
            return true;
        }
        budget -= len;
        let crc = u32::from_le_bytes(h[4..8].try_into().unwrap_or_default());
        if crc32fast::hash(body) == crc && parse_body(body, 0).is_some() {
            return true;
        }
    }
    false
}

/// Every frame of a segment's bytes, and how they end. Segments are written into files zeroed
/// ahead (see [`Inner::spare`]): zeros where a frame would start end the segment. An unreadable
/// frame is torn (a write a crash cut short) only if no whole frame follows it anywhere;
/// otherwise it is damage.
fn parse(buf: &[u8]) -> (Vec<Frame>, Ending) {
    let mut frames: Vec<Frame> = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        let start = at as u64;
        let after_seq = frames.last().map_or(0, |f| f.head.seq);
        let torn = |frames| {
            if whole_frame_after(buf, at + 1, after_seq) {
                (frames, Ending::Damaged(start))
            } else {
                (frames, Ending::Torn(start))
            }
        };
        // Short-circuits on a frame's non-zero length: only the end is read twice.
        if zeros(&buf[at..]) {
            return (frames, Ending::Clean(start));
        }
        let header = buf.get(at..at + FRAME_HEADER);
        let Some(header) = header else {
            return (frames, Ending::Torn(start));
        };
        let len = u32::from_le_bytes(header[..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
        if len == 0 {
            // No frame is empty: a header that never reached the disk while some of its body
            // did (only the last, unsynced write), or a zeroed header (damage).
            return torn(frames);
        }
        let end = at + FRAME_HEADER + len;
        let body = (len <= MAX_FRAME)
            .then(|| buf.get(at + FRAME_HEADER..end))
            .flatten();
        let frame = body
            .filter(|b| crc32fast::hash(b) == crc)
            .and_then(|b| parse_body(b, (at + FRAME_HEADER) as u64));
        match frame {
            Some(f) => frames.push(f),
            // Nothing readable after it: a write the crash cut short, unless a whole frame
            // follows somewhere.
            None if body.is_none() || end >= buf.len() || zeros(&buf[end..]) => {
                return torn(frames);
            }
            None => return (frames, Ending::Damaged(start)),
        }
        at = end;
    }
    (frames, Ending::Clean(buf.len() as u64))
}

fn read_all(file: &File) -> Result<Vec<u8>, StoreError> {
    let len = file.metadata().map_err(io)?.len();
    let mut buf = vec![0; usize::try_from(len).map_err(|_| StoreError::Corrupt)?];
    file.read_exact_at(&mut buf, 0).map_err(io)?;
    Ok(buf)
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// A file of `size` zeros, written (not a hole: its blocks are allocated) and synced.
fn zeroed(path: &Path, size: u64) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = chunk
            .len()
            .min(usize::try_from(size - at).unwrap_or(usize::MAX));
        file.write_all_at(&chunk[..n], at)?;
        at += n as u64;
    }
    file.sync_all()?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// A segment's tables: in memory while it is appended to, on disk once sealed.
#[derive(Debug)]
enum Table {
    Memory {
        records: Vec<(u64, u64, u32)>,
        /// In the order written (sorting each on the way in cost the syncer a quarter of its
        /// time): sorted once when sealed, and a query sorts what it matched.
        keys: Vec<Vec<u8>>,
    },
    Disk(Sidecar),
}

#[derive(Debug)]
struct Sidecar {
    file: File,
    n: u64,
    m: u64,
    offsets_at: u64,
}

impl Sidecar {
    fn record(&self, i: u64) -> Result<(u64, u64, u32), StoreError> {
        let mut b = [0u8; 20];
        self.file.read_exact_at(&mut b, i * 20).map_err(io)?;
        let seq = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let off = u64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(b[16..].try_into().unwrap_or_default());
        Ok((seq, off, len))
    }

    fn key(&self, j: u64) -> Result<Vec<u8>, StoreError> {
        let mut b = [0u8; 8];
        self.file
            .read_exact_at(&mut b, self.offsets_at + j * 8)
            .map_err(io)?;
        let at = u64::from_le_bytes(b);
        let mut l = [0u8; 2];
        self.file.read_exact_at(&mut l, at).map_err(io)?;
        let mut key = vec![0; usize::from(u16::from_le_bytes(l))];
        self.file.read_exact_at(&mut key, at + 2).map_err(io)?;
        Ok(key)
    }

    /// The first position whose item is not below `target` (`item` reads position i).
    fn lower_bound<T: Ord>(
        n: u64,
        target: &T,
        mut item: impl FnMut(u64) -> Result<T, StoreError>,
    ) -> Result<u64, StoreError> {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if item(mid)? < *target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Writes the tables of a segment `seg_len` long; returns them opened.
    fn write(
        path: &Path,
        records: &[(u64, u64, u32)],
        keys: &[Vec<u8>],
        seg_len: u64,
    ) -> Result<Sidecar, StoreError> {
        let mut buf = Vec::with_capacity(records.len() * 20 + keys.len() * 64 + FOOTER);
        for (seq, off, len) in records {
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(&off.to_le_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
        }
        let keys_at = buf.len() as u64;
        let mut offsets = Vec::with_capacity(keys.len());
        for key in keys {
            offsets.push(buf.len() as u64);
            let key = &key[..key.len().min(usize::from(u16::MAX))];
            buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
            buf.extend_from_slice(key);
        }
        let offsets_at = buf.len() as u64;
        for o in offsets {
            buf.extend_from_slice(&o.to_le_bytes());
        }
        for v in [
            records.len() as u64,
            keys.len() as u64,
            keys_at,
            offsets_at,
            seg_len,
        ] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf.extend_from_slice(&SIDECAR_MAGIC.to_le_bytes());
        let tmp = path.with_extension("idx.tmp");
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&buf).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(Sidecar {
            file: File::open(path).map_err(io)?,
            n: records.len() as u64,
            m: keys.len() as u64,
            offsets_at,
        })
    }

    /// The tables at `path` if whole and describing a segment `seg_len` long.
    fn read(path: &Path, seg_len: u64) -> Option<Sidecar> {
        let file = File::open(path).ok()?;
        let buf = read_all(&file).ok()?;
        let body = buf.len().checked_sub(8)?;
        let crc = u32::from_le_bytes(buf[body..body + 4].try_into().ok()?);
        let magic = u32::from_le_bytes(buf[body + 4..].try_into().ok()?);
        if magic != SIDECAR_MAGIC || crc32fast::hash(&buf[..body]) != crc {
            return None;
        }
        let mut r = Reader(&buf[body.checked_sub(40)?..body], 0);
        let (n, m, keys_at, offsets_at, len) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        // The tables must fit where the footer says they are (an edited footer with a fresh
        // crc is read as missing, and the tables are built again from the segment).
        let fits = n.checked_mul(20) == Some(keys_at)
            && keys_at <= offsets_at
            && m.checked_mul(8).and_then(|t| t.checked_add(offsets_at)) == Some((body - 40) as u64);
        (len == seg_len && fits).then_some(Sidecar {
            file,
            n,
            m,
            offsets_at,
        })
    }
}

#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    table: Table,
}

impl Segment {
    fn records(&self) -> u64 {
        match &self.table {
            Table::Memory { records, .. } => records.len() as u64,
            Table::Disk(s) => s.n,
        }
    }

    fn record_at(&self, i: u64) -> Result<(u64, u64, u32), StoreError> {
        match &self.table {
            Table::Memory { records, .. } => Ok(records[i as usize]),
            Table::Disk(s) => s.record(i),
        }
    }

    /// The position of the first record with a sequence at or above `seq`.
    fn position(&self, seq: u64) -> Result<u64, StoreError> {
        match &self.table {
            Table::Memory { records, .. } => {
                Ok(records.partition_point(|(s, _, _)| *s < seq) as u64)
            }
            Table::Disk(s) => Sidecar::lower_bound(s.n, &seq, |i| Ok(s.record(i)?.0)),
        }
    }

    fn bytes(&self, off: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        let mut b = vec![0; len as usize];
        self.file.read_exact_at(&mut b, off).map_err(io)?;
        Ok(b)
    }

    fn get(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let i = self.position(seq)?;
        if i >= self.records() {
            return Ok(None);
        }
        let (s, off, len) = self.record_at(i)?;
        if s != seq {
            return Ok(None);
        }
        self.bytes(off, len).map(Some)
    }

    /// Up to `limit` index keys starting with `prefix`, at or above `from`.
    fn keys(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        // Keys below the prefix never match: start at whichever is higher.
        let from = from.max(prefix);
        let mut out = Vec::new();
        match &self.table {
            Table::Memory { keys, .. } => {
                let mut matching: Vec<&Vec<u8>> = keys
                    .iter()
                    .filter(|k| k.starts_with(prefix) && k.as_slice() >= from)
                    .collect();
                matching.sort_unstable();
                matching.dedup();
                out = matching.into_iter().take(limit).cloned().collect();
            }
            Table::Disk(s) => {
                let target = from.to_vec();
                let mut j = Sidecar::lower_bound(s.m, &target, |j| s.key(j))?;
                while j < s.m && out.len() < limit {
                    let k = s.key(j)?;
                    if !k.starts_with(prefix) {
                        break;
                    }
                    out.push(k);
                    j += 1;
                }
            }
        }
        Ok(out)
    }

    /// Reads a segment from its file: its frames, tables built from them.
    fn load(path: &Path, first: u64) -> Result<(Segment, Vec<Frame>, Ending), StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let buf = read_all(&file)?;
        let (frames, ending) = parse(&buf);
        let mut records = Vec::new();
        let mut keys = Vec::new();
        for f in &frames {
            for &(seq, off, len) in &f.records {
                records.push((seq, off, len));
                let bytes = &buf[off as usize..off as usize + len as usize];
                if let Ok(r) = decode::<AuditRecord>(bytes) {
                    keys.extend(index_keys(&r));
                }
            }
        }
        // Records are kept in order of sequence (a rewritten segment may hold them otherwise).
        records.sort_by_key(|(s, _, _)| *s);
        let len = match ending {
            Ending::Clean(at) | Ending::Torn(at) | Ending::Damaged(at) => at,
        };
        Ok((
            Segment {
                first,
                path: path.to_owned(),
                file: Arc::new(file),
                len,
                table: Table::Memory { records, keys },
            },
            frames,
            ending,
        ))
    }

    /// Cuts the zeros written ahead off a segment `len` long: a sealed segment (and the open
    /// one at a clean close) ends with its last frame.
    fn cut_zeros(file: &File, len: u64) -> Result<(), StoreError> {
        if file.metadata().map_err(io)?.len() > len {
            file.set_len(len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(())
    }

    /// Moves the tables to disk (the segment is sealed).
    fn seal(&mut self) -> Result<(), StoreError> {
        if let Table::Memory { records, keys } = &mut self.table {
            Self::cut_zeros(&self.file, self.len)?;
            keys.sort_unstable();
            keys.dedup();
            let sidecar =
                Sidecar::write(&self.path.with_extension("idx"), records, keys, self.len)?;
            self.table = Table::Disk(sidecar);
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Pending {
    records: Vec<(u64, Vec<u8>)>,
    keys: Vec<Vec<u8>>,
    intents: Vec<Vec<u8>>,
    /// The chain's end, these records included.
    tip: Option<HeadRecord>,
}

#[derive(Debug)]
struct State {
    /// Every segment, the one appended to last.
    segments: Vec<Segment>,
    /// The head as written to the files (what readers see).
    head: Option<HeadRecord>,
    /// Chained, not written yet: the syncer writes them as one frame before it syncs, so a
    /// burst of callers costs one write and one sync.
    pending: Pending,
    /// Commits chained or appended since the log was opened (what [`Segments::synced`]
    /// waits for).
    frames: u64,
    /// A write or a sync failed: what reached the disk is unknown until a restart reads it.
    failed: Option<String>,
}

impl State {
    fn open(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// The segment that holds `seq`, if any could.
    fn holding(&self, seq: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.first <= seq);
        i.checked_sub(1).map(|i| &self.segments[i])
    }
}

#[derive(Debug, Default)]
struct SyncQueue {
    /// The highest frame count a caller waits to see durable.
    requested: u64,
    stop: bool,
}

/// How far the log is durable: frames counted since the log was opened.
#[derive(Debug, Clone, Default)]
struct Synced {
    upto: u64,
    /// The head as of that sync (what a checkpoint may sign).
    head: Option<HeadRecord>,
    /// A sync failed: nothing later is acknowledged (what reached the disk is unknown).
    failed: Option<String>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// A segment is sealed once this long ([`SEGMENT_BYTES`]; less in tests).
    segment_bytes: u64,
    /// Syncs start at most this often (microseconds; see [`crate::Settings::sync_interval`]).
    sync_interval_us: std::sync::atomic::AtomicU64,
    state: RwLock<State>,
    queue: Mutex<SyncQueue>,
    wake: Condvar,
    synced: tokio::sync::watch::Sender<Synced>,
    /// The next segment's file, zeroed and synced ahead by a helper thread once the open
    /// segment is half full. Appending into written blocks leaves `fdatasync` nothing but the
    /// data to flush: growing a file also writes its inode each time (half the sync's time
    /// and CPU on these machines).
    spare: Arc<Spare>,
    _lock: File,
}

/// The next segment's file (see [`Inner::spare`]). Shared with the thread that makes it, which
/// holds nothing else of the log: a log dropped meanwhile is closed at once (its lock released).
#[derive(Debug, Default)]
struct Spare {
    ready: Mutex<Option<(PathBuf, File)>>,
    preparing: std::sync::atomic::AtomicBool,
    /// Making one failed (a full disk, say): not tried again until the next segment, so a
    /// failing disk is not asked for another segment's worth of zeros at every sync.
    failed: std::sync::atomic::AtomicBool,
}

/// The segment files of one log (see the module's documentation).
#[derive(Debug)]
pub struct Segments {
    inner: Arc<Inner>,
    syncer: Option<std::thread::JoinHandle<()>>,
    /// Intents named by the last segment's frames (chained before a crash, perhaps not removed).
    chained: HashSet<Vec<u8>>,
}

impl Drop for Segments {
    fn drop(&mut self) {
        self.inner.queue.lock().stop = true;
        self.inner.wake.notify_all();
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
        // A clean close leaves the open segment without its zeros (what an older Writ reads)
        // and no spare behind.
        let state = self.inner.state.read();
        if state.failed.is_none()
            && let Some(open) = state.segments.last()
        {
            let _ = Segment::cut_zeros(&open.file, open.len);
        }
        if let Some((path, _)) = self.inner.spare.ready.lock().take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Segments {
    /// Opens (or creates) the log in `dir`, cutting off a torn tail; refuses a damaged one.
    pub fn open(dir: &Path) -> Result<Segments, StoreError> {
        Self::open_sized(dir, SEGMENT_BYTES)
    }

    fn open_sized(dir: &Path, segment_bytes: u64) -> Result<Segments, StoreError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(io)?;
        lock.try_lock().map_err(|_| {
            StoreError::Io(format!(
                "the audit log in {} is open in another process",
                dir.display()
            ))
        })?;
        // A spare a crash or an earlier process left may be partly zeroed: made again.
        for entry in std::fs::read_dir(dir).map_err(io)?.filter_map(|e| e.ok()) {
            if entry.file_name().to_string_lossy().ends_with(SPARE) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut segments = Vec::new();
        let mut head = None;
        let mut chained = HashSet::new();
        let count = firsts.len();
        for (n, first) in firsts.into_iter().enumerate() {
            let path = dir.join(segment_name(first));
            let last = n + 1 == count;
            if !last {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io)?;
                let len = file.metadata().map_err(io)?.len();
                if let Some(sidecar) = Sidecar::read(&path.with_extension("idx"), len) {
                    segments.push(Segment {
                        first,
                        path,
                        file: Arc::new(file),
                        len,
                        table: Table::Disk(sidecar),
                    });
                    continue;
                }
            }
            let (mut seg, frames, ending) = Segment::load(&path, first)?;
            match ending {
                Ending::Clean(_) => {}
                Ending::Torn(at) if last => {
                    // A write a crash interrupted (never acknowledged), or a damaged length
                    // field: the bytes are kept aside for an operator, never just dropped.
                    let aside = path.with_extension(format!("torn-{at}-{}", crate::now_ms()));
                    let mut tail = read_all(&seg.file)?.split_off(at as usize);
                    let read = tail.len();
                    // The zeros written ahead are not evidence (nor, alas, a torn frame's own
                    // last zero bytes: the log line gives the length read).
                    tail.truncate(written_len(&tail));
                    let mut kept = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&aside)
                        .map_err(io)?;
                    kept.write_all(&tail).map_err(io)?;
                    kept.sync_all().map_err(io)?;
                    sync_dir(dir)?;
                    tracing::error!(segment = %path.display(), at, bytes = tail.len(), read, kept = %aside.display(), "cut an unreadable tail off the audit log (a write a crash interrupted, or damage): run `writ audit verify`");
                    seg.file.set_len(at).map_err(io)?;
                    seg.file.sync_all().map_err(io)?;
                }
                Ending::Torn(at) | Ending::Damaged(at) => {
                    return Err(StoreError::Io(format!(
                        "the audit segment {} is damaged at byte {at}: run `writ audit verify`, and move the segment away to start",
                        path.display()
                    )));
                }
            }
            if last {
                head = frames.last().map(|f| f.head.clone());
                chained.extend(frames.iter().flat_map(|f| f.intents.clone()));
            } else {
                seg.seal()?;
            }
            segments.push(seg);
        }
        // A crash just after a segment was started, before its first frame: the head is the
        // last one an earlier segment holds (written again into the last segment below, so
        // pruning the earlier ones never takes it).
        let mut rewrite_head = false;
        for seg in segments.iter().rev() {
            if head.is_some() {
                break;
            }
            head = parse(&read_all(&seg.file)?)
                .0
                .last()
                .map(|f| f.head.clone());
            rewrite_head = head.is_some();
        }
        // A frame that names intents may end the segment before the last (it rolled just
        // after): its intents count as chained too.
        if let Some(prev) = segments.len().checked_sub(2).map(|i| &segments[i]) {
            let (frames, _) = parse(&read_all(&prev.file)?);
            chained.extend(frames.iter().flat_map(|f| f.intents.clone()));
        }
        if rewrite_head && let (Some(h), Some(last)) = (&head, segments.last_mut()) {
            let (frame, _) = encode_frame(h, &[], &[], last.len);
            last.file.write_all_at(&frame, last.len).map_err(io)?;
            last.file.sync_data().map_err(io)?;
            last.len += frame.len() as u64;
        }
        if segments.is_empty() {
            let path = dir.join(segment_name(1));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io)?;
            sync_dir(dir)?;
            segments.push(Segment {
                first: 1,
                path,
                file: Arc::new(file),
                len: 0,
                table: Table::Memory {
                    records: Vec::new(),
                    keys: Vec::new(),
                },
            });
        }
        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            segment_bytes,
            sync_interval_us: std::sync::atomic::AtomicU64::new(0),
            spare: Arc::new(Spare::default()),
            state: RwLock::new(State {
                segments,
                head: head.clone(),
                pending: Pending::default(),
                frames: 0,
                failed: None,
            }),
            queue: Mutex::new(SyncQueue::default()),
            wake: Condvar::new(),
            synced: tokio::sync::watch::Sender::new(Synced {
                head,
                ..Synced::default()
            }),
            _lock: lock,
        });
        let syncing = inner.clone();
        let syncer = std::thread::Builder::new()
            .name("writ-audit-sync".into())
            .spawn(move || syncing.run_syncer())
            .map_err(io)?;
        Ok(Segments {
            inner,
            syncer: Some(syncer),
            chained,
        })
    }

    pub fn head(&self) -> Option<HeadRecord> {
        self.inner.state.read().head.clone()
    }

    /// Syncs start at most every `interval`: a burst of commits shares one.
    pub fn set_sync_interval(&self, interval: std::time::Duration) {
        let us = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
        self.inner
            .sync_interval_us
            .store(us, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.inner
            .state
            .read()
            .segments
            .iter()
            .map(Segment::records)
            .sum()
    }

    /// Appends one commit (not yet durable: see [`Segments::sync`]). `keys`: the records'
    /// index keys. Returns the frame's ticket for [`Segments::synced`].
    pub fn append(
        &self,
        records: &[(u64, &[u8])],
        keys: Vec<Vec<u8>>,
        head: &HeadRecord,
        intents: &[Vec<u8>],
    ) -> Result<u64, StoreError> {
        let mut state = self.inner.state.write();
        self.inner
            .append_locked(&mut state, records, keys, head, intents)
    }

    /// Chains `records` after the head (their position and predecessor set here) in one
    /// frame naming `intents`; returns its ticket for [`Segments::synced`]. Callers chain
    /// directly, each under the log's lock: no hand-off to another task.
    pub fn chain(
        &self,
        records: &mut [AuditRecord],
        intents: &[Vec<u8>],
    ) -> Result<u64, StoreError> {
        let mut state = self.inner.state.write();
        if let Some(e) = &state.failed {
            return Err(StoreError::Unavailable(e.clone()));
        }
        let head = state
            .pending
            .tip
            .clone()
            .or_else(|| state.head.clone())
            .unwrap_or(HeadRecord {
                seq: 0,
                hash: crate::record::GENESIS.to_vec(),
            });
        let (mut seq, mut prev) = (head.seq, head.hash);
        let pending = &mut state.pending;
        for record in records.iter_mut() {
            seq += 1;
            record.seq = seq;
            record.prev = prev;
            let bytes = encode(&*record);
            prev = crate::chain::hash(&bytes);
            pending.keys.extend(index_keys(record));
            pending.records.push((seq, bytes));
        }
        pending.intents.extend_from_slice(intents);
        pending.tip = Some(HeadRecord { seq, hash: prev });
        state.frames += 1;
        Ok(state.frames)
    }

    /// The head as of the last sync: what is durable, so what a checkpoint may sign.
    pub fn durable_head(&self) -> Option<HeadRecord> {
        self.inner.synced.borrow().head.clone()
    }

    /// Resolves once frame `ticket` (and every one before it) is on stable storage.
    pub fn synced(
        &self,
        ticket: u64,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
        let mut rx = self.inner.synced.subscribe();
        {
            let mut q = self.inner.queue.lock();
            q.requested = q.requested.max(ticket);
        }
        self.inner.wake.notify_one();
        async move {
            let seen = rx
                .wait_for(|s| s.upto >= ticket || s.failed.is_some())
                .await
                .map_err(|_| StoreError::FlusherStopped)?;
            match &seen.failed {
                Some(e) if seen.upto < ticket => Err(StoreError::Io(e.clone())),
                _ => Ok(()),
            }
        }
    }

    /// Resolves once everything appended before the call is on stable storage.
    pub fn sync(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
        let ticket = self.inner.state.read().frames;
        self.synced(ticket)
    }

    pub fn get(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let state = self.inner.state.read();
        match state.holding(seq) {
            Some(seg) => seg.get(seq),
            None => Ok(None),
        }
    }

    /// Up to `limit` records with sequence at or above `from`, in order.
    pub fn records_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let state = self.inner.state.read();
        let start = state
            .segments
            .partition_point(|s| s.first <= from)
            .saturating_sub(1);
        let mut out = Vec::new();
        for seg in &state.segments[start..] {
            let mut i = seg.position(from)?;
            while i < seg.records() && out.len() < limit {
                let (seq, off, len) = seg.record_at(i)?;
                out.push((seq, seg.bytes(off, len)?));
                i += 1;
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` index keys starting with `prefix`, at or above `from`, in key order.
    pub fn keys(
        &self,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let state = self.inner.state.read();
        let mut all = Vec::new();
        for seg in &state.segments {
            all.extend(seg.keys(prefix, from, limit)?);
        }
        all.sort_unstable();
        all.dedup();
        all.truncate(limit);
        Ok(all)
    }

    /// Removes every record at or below `anchor`: whole segments go, a segment holding some
    /// is rewritten without them. Returns how many records went.
    pub fn drop_through(&self, anchor: u64) -> Result<u64, StoreError> {
        self.mutate("pruning", |inner, state| inner.drop_locked(state, anchor))
    }

    /// Puts (`Some`) or removes (`None`) records in place, segment by segment: what an
    /// attacker with the files could do (verify's tests), and pruning's partial segments.
    pub fn edit(&self, edits: &BTreeMap<u64, Option<Vec<u8>>>) -> Result<(), StoreError> {
        self.mutate("rewriting", |inner, state| inner.rewrite(state, edits))
    }

    /// Changes files in place under the lock, after what callers chained is written; a failure
    /// fails the log closed (files may be half changed: nothing more is acknowledged until a
    /// restart reads them).
    fn mutate<T>(
        &self,
        what: &str,
        change: impl FnOnce(&Inner, &mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.inner.state.write();
        if let Some(e) = &state.failed {
            return Err(StoreError::Unavailable(e.clone()));
        }
        self.inner.write_pending(&mut state)?;
        let result = change(&self.inner, &mut state);
        if let Err(e) = &result {
            state.failed = Some(format!("{what} the audit log failed: {e}"));
        }
        result
    }
}

impl Inner {
    fn run_syncer(&self) {
        let mut last = std::time::Instant::now();
        loop {
            {
                let mut q = self.queue.lock();
                while q.requested <= self.synced.borrow().upto && !q.stop {
                    self.wake.wait(&mut q);
                }
                if q.stop && q.requested <= self.synced.borrow().upto {
                    return;
                }
            }
            // A burst shares one sync: each costs the disk a flush and the host an exit.
            let gap = std::time::Duration::from_micros(
                self.sync_interval_us
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            let since = last.elapsed();
            if since < gap {
                std::thread::sleep(gap - since);
            }
            last = std::time::Instant::now();
            // What callers chained is written first, as one frame. Earlier segments were
            // synced when sealed: the one appended to is the one to sync.
            let (file, frames, head, failed) = {
                let mut s = self.state.write();
                if s.failed.is_none()
                    && let Err(e) = self.write_pending(&mut s)
                {
                    s.failed = Some(e.to_string());
                }
                let last = &s.segments[s.segments.len() - 1];
                if last.len >= self.segment_bytes / 2 {
                    self.prepare_spare();
                }
                (
                    last.file.clone(),
                    s.frames,
                    s.head.clone(),
                    s.failed.clone(),
                )
            };
            let failed = match failed {
                Some(e) => Some(e),
                None => match file.sync_data() {
                    Ok(()) => None,
                    Err(e) => {
                        // What reached the disk is unknown: no later write is acknowledged.
                        let e = format!("syncing the audit log failed: {e}");
                        self.state.write().failed = Some(e.clone());
                        Some(e)
                    }
                },
            };
            let stop = failed.is_some();
            self.synced.send_modify(|s| {
                if failed.is_none() {
                    s.upto = s.upto.max(frames);
                    s.head = head;
                }
                s.failed = failed;
            });
            if stop {
                // Every waiter, now and later, sees the failure on the watch: nothing more to
                // sync until a restart reads what reached the disk.
                return;
            }
        }
    }

    /// Starts zeroing the next segment's file, unless one is ready, being made, or failed for
    /// this segment.
    fn prepare_spare(&self) {
        use std::sync::atomic::Ordering;
        let spare = &self.spare;
        if spare.failed.load(Ordering::Acquire)
            || spare.ready.lock().is_some()
            || spare.preparing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        // Named per process and per spare: a log reopened meanwhile never shares one.
        let path = self.dir.join(format!(
            "{}-{}.{SPARE}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let size = self.segment_bytes + self.segment_bytes / SPARE_SLACK_DIVISOR;
        let mine = spare.clone();
        let started = std::thread::Builder::new()
            .name("writ-audit-spare".into())
            .spawn(move || {
                match zeroed(&path, size) {
                    Ok(file) => *mine.ready.lock() = Some((path, file)),
                    Err(e) => {
                        // The next segment grows as it is written instead: slower syncs only.
                        let _ = std::fs::remove_file(&path);
                        mine.failed.store(true, Ordering::Release);
                        tracing::warn!(error = %e, "could not zero the audit log's next segment ahead");
                    }
                }
                mine.preparing.store(false, Ordering::Release);
            });
        if started.is_err() {
            spare.failed.store(true, Ordering::Release);
            spare.preparing.store(false, Ordering::Release);
        }
    }

    fn drop_locked(&self, state: &mut State, anchor: u64) -> Result<u64, StoreError> {
        let last = state.segments.len() - 1;
        // What goes is decided before anything is touched (a read error changes nothing).
        let mut whole = Vec::new();
        let mut partial = BTreeMap::new();
        for (i, seg) in state.segments.iter().enumerate() {
            let n = seg.records();
            let top = if n == 0 { 0 } else { seg.record_at(n - 1)?.0 };
            if i != last && top <= anchor {
                whole.push(i);
                continue;
            }
            if n > 0 && seg.record_at(0)?.0 <= anchor {
                for j in 0..n {
                    let seq = seg.record_at(j)?.0;
                    if seq <= anchor {
                        partial.insert(seq, None);
                    }
                }
            }
        }
        let mut dropped = 0;
        for i in whole.into_iter().rev() {
            let seg = state.segments.remove(i);
            dropped += seg.records();
            let _ = std::fs::remove_file(seg.path.with_extension("idx"));
            std::fs::remove_file(&seg.path).map_err(io)?;
        }
        sync_dir(&self.dir)?;
        dropped += partial.len() as u64;
        if !partial.is_empty() {
            self.rewrite(state, &partial)?;
        }
        Ok(dropped)
    }

    /// Writes what callers chained (see [`State::pending`]) as one frame.
    fn write_pending(&self, state: &mut State) -> Result<(), StoreError> {
        if state.pending.records.is_empty() && state.pending.intents.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut state.pending);
        let Some(head) = pending.tip else {
            return Ok(());
        };
        let refs: Vec<(u64, &[u8])> = pending
            .records
            .iter()
            .map(|(s, b)| (*s, b.as_slice()))
            .collect();
        self.write_frame(state, &refs, pending.keys, &head, &pending.intents)
    }

    fn append_locked(
        &self,
        state: &mut State,
        records: &[(u64, &[u8])],
        keys: Vec<Vec<u8>>,
        head: &HeadRecord,
        intents: &[Vec<u8>],
    ) -> Result<u64, StoreError> {
        if let Some(e) = &state.failed {
            return Err(StoreError::Unavailable(e.clone()));
        }
        // In order: what callers chained goes first.
        self.write_pending(state)?;
        self.write_frame(state, records, keys, head, intents)?;
        state.frames += 1;
        Ok(state.frames)
    }

    fn write_frame(
        &self,
        state: &mut State,
        records: &[(u64, &[u8])],
        keys: Vec<Vec<u8>>,
        head: &HeadRecord,
        intents: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let open = state.open();
        let (frame, placed) = encode_frame(head, intents, records, open.len);
        let written = open.file.write_all_at(&frame, open.len);
        if let Err(e) = written {
            let e = format!("writing the audit log failed: {e}");
            state.failed = Some(e.clone());
            return Err(StoreError::Io(e));
        }
        let open = state.open();
        open.len += frame.len() as u64;
        if let Table::Memory { records, keys: k } = &mut open.table {
            records.extend(placed);
            k.extend(keys);
        }
        state.head = Some(head.clone());
        if state.open().len >= self.segment_bytes
            && let Err(e) = self.roll(state)
        {
            state.failed = Some(e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// Seals the segment appended to and starts the next, which opens with the head (a
    /// segment pruned away never takes the head with it).
    fn roll(&self, state: &mut State) -> Result<(), StoreError> {
        let open = state.open();
        open.file.sync_data().map_err(io)?;
        open.seal()?;
        let head = state.head.clone().unwrap_or(HeadRecord {
            seq: 0,
            hash: crate::record::GENESIS.to_vec(),
        });
        let first = head.seq + 1;
        let path = self.dir.join(segment_name(first));
        let spare = self.spare.ready.lock().take();
        self.spare
            .failed
            .store(false, std::sync::atomic::Ordering::Release);
        let file = match spare {
            Some((spare, file)) => {
                std::fs::rename(&spare, &path).map_err(io)?;
                file
            }
            None => OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io)?,
        };
        let (frame, _) = encode_frame(&head, &[], &[], 0);
        file.write_all_at(&frame, 0).map_err(io)?;
        file.sync_data().map_err(io)?;
        sync_dir(&self.dir)?;
        state.segments.push(Segment {
            first,
            path,
            file: Arc::new(file),
            len: frame.len() as u64,
            table: Table::Memory {
                records: Vec::new(),
                keys: Vec::new(),
            },
        });
        Ok(())
    }

    /// Rewrites each segment `edits` touch: frames keep their heads and intents, records are
    /// replaced, removed or (a sequence no frame holds) added to the frame they fall in.
    fn rewrite(
        &self,
        state: &mut State,
        edits: &BTreeMap<u64, Option<Vec<u8>>>,
    ) -> Result<(), StoreError> {
        let last = state.segments.len() - 1;
        for i in 0..=last {
            let first = state.segments[i].first;
            let next = state.segments.get(i + 1).map_or(u64::MAX, |s| s.first);
            let mine: BTreeMap<u64, Option<Vec<u8>>> = edits
                .range(first..next)
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let seg = &state.segments[i];
            let buf = read_all(&seg.file)?;
            let kept = buf.get(..seg.len as usize).ok_or(StoreError::Corrupt)?;
            let (frames, ending) = parse(kept);
            if ending != Ending::Clean(seg.len) {
                // Never rewritten past damage: what follows it would be lost.
                return Err(StoreError::Io(format!(
                    "the audit segment {} is damaged: run `writ audit verify`",
                    seg.path.display()
                )));
            }
            let mut placed: HashSet<u64> = HashSet::new();
            let mut out = Vec::new();
            let count = frames.len();
            for (n, f) in frames.iter().enumerate() {
                let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
                for &(seq, off, len) in &f.records {
                    let kept = buf[off as usize..(off + u64::from(len)) as usize].to_vec();
                    match mine.get(&seq) {
                        Some(Some(v)) => records.push((seq, v.clone())),
                        Some(None) => {}
                        None => records.push((seq, kept)),
                    }
                    placed.insert(seq);
                }
                // New sequences go to the frame whose records they follow (or the last).
                let upto = frames
                    .get(n + 1)
                    .and_then(|f| f.records.first())
                    .map_or(u64::MAX, |r| r.0);
                for (seq, v) in &mine {
                    if let Some(v) = v
                        && !placed.contains(seq)
                        && (*seq < upto || n + 1 == count)
                    {
                        records.push((*seq, v.clone()));
                        placed.insert(*seq);
                    }
                }
                records.sort_by_key(|(s, _)| *s);
                let refs: Vec<(u64, &[u8])> =
                    records.iter().map(|(s, v)| (*s, v.as_slice())).collect();
                let (frame, _) = encode_frame(&f.head, &f.intents, &refs, out.len() as u64);
                out.extend_from_slice(&frame);
            }
            let path = seg.path.clone();
            let tmp = path.with_extension("seg.tmp");
            {
                let mut f = File::create(&tmp).map_err(io)?;
                f.write_all(&out).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            std::fs::rename(&tmp, &path).map_err(io)?;
            sync_dir(&self.dir)?;
            let (mut fresh, _, _) = Segment::load(&path, first)?;
            if i != last {
                let _ = std::fs::remove_file(path.with_extension("idx"));
                fresh.seal()?;
            }
            state.segments[i] = fresh;
        }
        Ok(())
    }
}

/// Every record of the log in `dir`, in order, read from the files alone (while a process
/// appends to them: a frame being written is not read). For tests and tools.
pub fn read_log(dir: &Path) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let mut firsts: Vec<u64> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    firsts.sort_unstable();
    let mut out = Vec::new();
    for first in firsts {
        let buf = read_all(&File::open(dir.join(segment_name(first))).map_err(io)?)?;
        let (frames, _) = parse(&buf);
        for f in frames {
            for (seq, off, len) in f.records {
                out.push((
                    seq,
                    buf[off as usize..(off + u64::from(len)) as usize].to_vec(),
                ));
            }
        }
    }
    Ok(out)
}

/// Where an embedded store keeps its audit segments.
pub fn dir_of(store_dir: &Path) -> PathBuf {
    store_dir.join("audit")
}

/// The audit log's files and the store beside them, as one store (see the module's
/// documentation): `r/`, `i/` and `h` in [`Tree::Audit`] are the files', the rest the store's.
#[derive(Debug)]
pub struct FileBacked {
    inner: Arc<dyn AsyncStore>,
    pub(crate) log: Arc<Segments>,
}

/// The files behind `store`, if it is a [`FileBacked`].
pub(crate) fn of(store: &dyn AsyncStore) -> Option<&FileBacked> {
    store.as_any()?.downcast_ref::<FileBacked>()
}

fn files_key(key: &[u8]) -> bool {
    key == HEAD_KEY || key.starts_with(RECORD_PREFIX) || key.starts_with(INDEX_PREFIX)
}

impl FileBacked {
    /// Opens the log's files beside `inner`; moves records an earlier layout kept in the store
    /// into them, and forgets intents a crash left after chaining them.
    pub async fn open(inner: Arc<dyn AsyncStore>, dir: &Path) -> Result<FileBacked, StoreError> {
        let log = Arc::new(Segments::open(dir)?);
        let me = FileBacked { inner, log };
        me.migrate().await?;
        let chained: Vec<Vec<u8>> = me.log.chained.iter().cloned().collect();
        let mut batch = Batch::new();
        for key in chained {
            if key.starts_with(INTENT_PREFIX) && me.inner.get(Tree::Audit, &key).await?.is_some() {
                batch = batch.remove(key);
            }
        }
        if !batch.write.is_empty() {
            tracing::info!(
                intents = batch.write.len(),
                "removing audit intents chained before a crash"
            );
            me.inner.commit(Tree::Audit, batch).await?;
            me.inner.durable().await?;
        }
        Ok(me)
    }

    /// Records the store itself held (the layout before segment files) move into the files,
    /// then leave the store (a crash midway: the next start carries on).
    async fn migrate(&self) -> Result<(), StoreError> {
        let old_head = self.inner.get(Tree::Audit, HEAD_KEY).await?;
        let Some(old_head) = old_head else {
            return Ok(());
        };
        let old_head = decode::<HeadRecord>(&old_head)?;
        let mut moved = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .inner
                .scan(Tree::Audit, RECORD_PREFIX, after.as_deref(), 1024)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let have = self.log.head().map_or(0, |h| h.seq);
            let records: Vec<(u64, &[u8])> = page
                .iter()
                .filter_map(|(k, v)| Some((seq_of(k)?, v.as_slice())))
                .filter(|(s, _)| *s > have)
                .collect();
            let Some((top, bytes)) = records.last() else {
                continue;
            };
            let head = HeadRecord {
                seq: *top,
                hash: crate::chain::hash(bytes),
            };
            let keys = records
                .iter()
                .filter_map(|(_, b)| decode::<AuditRecord>(b).ok())
                .flat_map(|r| index_keys(&r).collect::<Vec<_>>())
                .collect();
            self.log.append(&records, keys, &head, &[])?;
            moved += records.len() as u64;
        }
        // The head the store held (beyond the records: a truncated tail stays visible).
        if self.log.head().is_none_or(|h| h.seq < old_head.seq) {
            self.log.append(&[], Vec::new(), &old_head, &[])?;
        }
        self.log.sync().await?;
        for prefix in [RECORD_PREFIX, INDEX_PREFIX] {
            loop {
                let page = self.inner.scan(Tree::Audit, prefix, None, 1024).await?;
                if page.is_empty() {
                    break;
                }
                let mut batch = Batch::new();
                for (k, _) in page {
                    batch = batch.remove(k);
                }
                self.inner.commit(Tree::Audit, batch).await?;
            }
        }
        self.inner.remove(Tree::Audit, HEAD_KEY).await?;
        self.inner.durable().await?;
        tracing::info!(
            records = moved,
            "moved the audit log into its segment files"
        );
        Ok(())
    }

    fn scan_files(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        // The lowest key to return.
        let mut from = prefix.to_vec();
        if let Some(a) = after
            && a >= prefix
        {
            from = [a, &[0]].concat();
        }
        let mut out: Entries = Vec::new();
        let overlaps = |p: &[u8]| p.starts_with(prefix) || prefix.starts_with(p);
        if HEAD_KEY.starts_with(prefix)
            && HEAD_KEY >= from.as_slice()
            && let Some(h) = self.log.head()
        {
            out.push((HEAD_KEY.to_vec(), encode(&h)));
        }
        if overlaps(INDEX_PREFIX) {
            let key_from = if from.as_slice() < INDEX_PREFIX {
                INDEX_PREFIX.to_vec()
            } else {
                from.clone()
            };
            let key_prefix = if prefix.len() >= INDEX_PREFIX.len() {
                prefix
            } else {
                INDEX_PREFIX
            };
            for k in self.log.keys(key_prefix, &key_from, limit)? {
                out.push((k, Vec::new()));
            }
        }
        if overlaps(RECORD_PREFIX) {
            // The first sequence whose key is at or above `from`.
            let start = if from.as_slice() <= RECORD_PREFIX {
                Some(0)
            } else if from.starts_with(RECORD_PREFIX) {
                let mut tail = [0u8; 8];
                let rest = &from[RECORD_PREFIX.len()..];
                let n = rest.len().min(8);
                tail[..n].copy_from_slice(&rest[..n]);
                let seq = u64::from_be_bytes(tail);
                // A key longer than a record's sorts after the record it extends.
                if rest.len() > 8 {
                    seq.checked_add(1)
                } else {
                    Some(seq)
                }
            } else {
                None
            };
            if let Some(start) = start {
                for (seq, v) in self.log.records_from(start, limit)? {
                    let key = record_key(seq);
                    if !key.starts_with(prefix) {
                        break;
                    }
                    out.push((key, v));
                }
            }
        }
        Ok(out)
    }

    async fn commit_audit(&self, batch: Batch) -> Result<bool, StoreError> {
        if batch.expect.iter().any(|(k, _)| files_key(k)) {
            return Err(StoreError::Io(
                "the audit log's files take no expectations (one process appends)".into(),
            ));
        }
        let mut records = Vec::new();
        let mut keys = Vec::new();
        let mut head = None;
        let mut edits = BTreeMap::new();
        let mut rest = Batch {
            expect: batch.expect,
            write: Vec::new(),
            audit: batch.audit,
        };
        for (k, v) in batch.write {
            if k == HEAD_KEY {
                head = v.map(|v| decode::<HeadRecord>(&v)).transpose()?;
            } else if k.starts_with(RECORD_PREFIX) {
                let seq = seq_of(&k).ok_or(StoreError::Corrupt)?;
                match v {
                    // Appended if the batch moves the head (it comes last), else edits.
                    Some(v) => records.push((seq, v)),
                    None => {
                        edits.insert(seq, None);
                    }
                }
            } else if k.starts_with(INDEX_PREFIX) {
                // Derived from the records: kept with an append, rebuilt by a rewrite.
                if v.is_some() {
                    keys.push(k);
                }
            } else {
                rest.write.push((k, v));
            }
        }
        if let Some(head) = &head {
            let intents: Vec<Vec<u8>> = rest
                .write
                .iter()
                .filter(|(k, v)| v.is_none() && k.starts_with(INTENT_PREFIX))
                .map(|(k, _)| k.clone())
                .collect();
            let refs: Vec<(u64, &[u8])> = records.iter().map(|(s, v)| (*s, v.as_slice())).collect();
            self.log.append(&refs, keys, head, &intents)?;
            // The intents leave the store only once their records are durable.
            if !rest.write.is_empty() {
                self.log.sync().await?;
            }
        } else {
            edits.extend(records.into_iter().map(|(s, v)| (s, Some(v))));
        }
        if !edits.is_empty() {
            // Checkpoints (in the store) first: a rewrite may be a prune they must carry.
            self.inner.durable().await?;
            self.log.edit(&edits)?;
        }
        if rest.write.is_empty() && rest.expect.is_empty() && rest.audit.is_empty() {
            return Ok(true);
        }
        self.inner.commit(Tree::Audit, rest).await
    }
}

impl AsyncStore for FileBacked {
    fn get<'a>(&'a self, tree: Tree, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>> {
        if tree != Tree::Audit || !files_key(key) {
            return self.inner.get(tree, key);
        }
        Box::pin(async move {
            if key == HEAD_KEY {
                return Ok(self.log.head().map(|h| encode(&h)));
            }
            if key.starts_with(RECORD_PREFIX) {
                return match seq_of(key) {
                    Some(seq) if key.len() == RECORD_PREFIX.len() + 8 => self.log.get(seq),
                    _ => Ok(None),
                };
            }
            let found = self.log.keys(key, key, 1)?;
            Ok(found
                .first()
                .filter(|k| k.as_slice() == key)
                .map(|_| Vec::new()))
        })
    }

    fn insert<'a>(&'a self, tree: Tree, key: &'a [u8], value: Vec<u8>) -> StoreFuture<'a, ()> {
        if tree != Tree::Audit || !files_key(key) {
            return self.inner.insert(tree, key, value);
        }
        Box::pin(async move {
            self.commit_audit(Batch::new().put(key, value)).await?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, tree: Tree, key: &'a [u8]) -> StoreFuture<'a, ()> {
        if tree != Tree::Audit || !files_key(key) {
            return self.inner.remove(tree, key);
        }
        Box::pin(async move {
            self.commit_audit(Batch::new().remove(key)).await?;
            Ok(())
        })
    }

    fn commit(&self, tree: Tree, batch: Batch) -> StoreFuture<'_, bool> {
        if tree != Tree::Audit {
            return self.inner.commit(tree, batch);
        }
        Box::pin(self.commit_audit(batch))
    }

    fn scan<'a>(
        &'a self,
        tree: Tree,
        prefix: &'a [u8],
        start_after: Option<&'a [u8]>,
        limit: usize,
    ) -> StoreFuture<'a, Entries> {
        if tree != Tree::Audit {
            return self.inner.scan(tree, prefix, start_after, limit);
        }
        Box::pin(async move {
            let mut all = self.inner.scan(tree, prefix, start_after, limit).await?;
            all.retain(|(k, _)| !files_key(k));
            all.extend(self.scan_files(prefix, start_after, limit)?);
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all.truncate(limit);
            Ok(all)
        })
    }

    fn len(&self, tree: Tree) -> StoreFuture<'_, usize> {
        if tree != Tree::Audit {
            return self.inner.len(tree);
        }
        Box::pin(async move {
            let records = usize::try_from(self.log.count()).unwrap_or(usize::MAX);
            Ok(self.inner.len(tree).await? + records + usize::from(self.log.head().is_some()))
        })
    }

    fn durable(&self) -> Durable<'_> {
        Box::pin(async move {
            self.log.sync().await?;
            self.inner.durable().await
        })
    }

    fn blocking(&self) -> bool {
        true
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn local_dir(&self) -> Option<&Path> {
        self.inner.local_dir()
    }

    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> HeadRecord {
        HeadRecord {
            seq,
            hash: vec![seq as u8; 32],
        }
    }

    #[test]
    fn frames_read_back_and_a_torn_tail_is_told_from_damage() {
        let (a, _) = encode_frame(&head(2), &[b"p/x".to_vec()], &[(1, b"one"), (2, b"two")], 0);
        let (b, _) = encode_frame(&head(3), &[], &[(3, b"three")], a.len() as u64);
        let both = [a.clone(), b.clone()].concat();
        let (frames, ending) = parse(&both);
        assert_eq!(ending, Ending::Clean(both.len() as u64));
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].intents, vec![b"p/x".to_vec()]);
        let (seq, off, len) = frames[1].records[0];
        assert_eq!(
            (seq, &both[off as usize..(off + u64::from(len)) as usize]),
            (3, &b"three"[..])
        );
        // Cut short: torn at the second frame.
        let (frames, ending) = parse(&both[..both.len() - 2]);
        assert_eq!((frames.len(), ending), (1, Ending::Torn(a.len() as u64)));
        // A flipped byte in the first frame with the second after it: damage.
        let mut bad = both.clone();
        bad[20] ^= 1;
        assert_eq!(parse(&bad).1, Ending::Damaged(0));
        // A flipped byte in the last frame: torn (nothing after it was acknowledged).
        let mut last = both.clone();
        let n = last.len() - 1;
        last[n] ^= 1;
        assert_eq!(parse(&last).1, Ending::Torn(a.len() as u64));

        // In a file zeroed ahead: the zeros end it, cleanly.
        let padded = |bytes: &[u8]| [bytes, &[0u8; 4096][..]].concat();
        let (frames, ending) = parse(&padded(&both));
        assert_eq!(
            (frames.len(), ending),
            (2, Ending::Clean(both.len() as u64))
        );
        assert_eq!(parse(&[0u8; 64]).1, Ending::Clean(0));
        // The last frame half written (its end still zeros), or its header never written:
        // torn, not damage.
        let mut half = padded(&both);
        half[a.len() + 20..both.len()].fill(0);
        assert_eq!(parse(&half).1, Ending::Torn(a.len() as u64));
        let mut headless = padded(&both);
        headless[a.len()..a.len() + FRAME_HEADER].fill(0);
        assert_eq!(parse(&headless).1, Ending::Torn(a.len() as u64));
        // A damaged frame with a whole one after it is still damage.
        let mut bad = padded(&both);
        bad[20] ^= 1;
        assert_eq!(parse(&bad).1, Ending::Damaged(0));
        // So is a zeroed header, or a length past the end, with a whole frame after it:
        // never cut off as if torn.
        let mut zeroed_header = padded(&both);
        zeroed_header[..FRAME_HEADER].fill(0);
        assert_eq!(parse(&zeroed_header).1, Ending::Damaged(0));
        let mut too_long = both.clone();
        too_long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&too_long).1, Ending::Damaged(0));
        let mut into_zeros = padded(&both);
        into_zeros[..4].copy_from_slice(&((both.len() + 100) as u32).to_le_bytes());
        assert_eq!(parse(&into_zeros).1, Ending::Damaged(0));
    }
}

#[cfg(test)]
mod segment_tests {
    use super::*;

    fn record(seq: u64, gid: &str) -> Vec<u8> {
        encode(&AuditRecord {
            seq,
            kind: "token_issued".into(),
            gid: gid.into(),
            client_id: format!("client-{}", seq % 3),
            ..AuditRecord::default()
        })
    }

    /// `n` records in commits of 7, in segments of about 4 KiB.
    fn filled(dir: &Path, n: u64) -> Segments {
        let log = Segments::open_sized(dir, 4096).unwrap();
        let mut seq = 0;
        while seq < n {
            let batch: Vec<(u64, Vec<u8>)> = (seq + 1..=(seq + 7).min(n))
                .map(|s| (s, record(s, &format!("g{}", s % 10))))
                .collect();
            seq = batch.last().unwrap().0;
            let keys = batch
                .iter()
                .flat_map(|(_, b)| {
                    index_keys(&decode::<AuditRecord>(b).unwrap()).collect::<Vec<_>>()
                })
                .collect();
            let refs: Vec<(u64, &[u8])> = batch.iter().map(|(s, b)| (*s, b.as_slice())).collect();
            let head = HeadRecord {
                seq,
                hash: crate::chain::hash(&batch.last().unwrap().1),
            };
            log.append(&refs, keys, &head, &[]).unwrap();
        }
        log
    }

    fn gids(log: &Segments, value: &str) -> Vec<u64> {
        let prefix = crate::record::index_prefix(crate::record::Indexed::Gid, value);
        log.keys(&prefix, &prefix, 1000)
            .unwrap()
            .iter()
            .filter_map(|k| seq_of(k))
            .collect()
    }

    #[tokio::test]
    async fn records_and_indexes_read_the_same_across_sealed_segments_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), 500);
        log.sync().await.unwrap();
        let segments = log.inner.state.read().segments.len();
        assert!(segments > 5, "rolled: {segments}");
        let check = |log: &Segments| {
            assert_eq!(log.count(), 500);
            assert_eq!(log.head().unwrap().seq, 500);
            for seq in [1, 2, 250, 499, 500] {
                assert_eq!(
                    log.get(seq).unwrap(),
                    Some(record(seq, &format!("g{}", seq % 10)))
                );
            }
            assert_eq!(log.get(501).unwrap(), None);
            let page = log.records_from(95, 300).unwrap();
            assert_eq!(
                page.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                (95..395).collect::<Vec<_>>()
            );
            assert_eq!(
                gids(log, "g3"),
                (0..50).map(|i| i * 10 + 3).collect::<Vec<_>>()
            );
        };
        check(&log);
        drop(log);
        let log = Segments::open_sized(dir.path(), 4096).unwrap();
        check(&log);
        // A sealed segment's tables lost: rebuilt from the segment.
        let idx: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "idx"))
            .collect();
        drop(log);
        std::fs::remove_file(&idx[0]).unwrap();
        std::fs::write(&idx[1], b"garbage").unwrap();
        let log = Segments::open_sized(dir.path(), 4096).unwrap();
        check(&log);
        assert_eq!(read_log(dir.path()).unwrap().len(), 500);
    }

    /// Commits (each synced) until the open segment of a 4 KiB log is half full, then waits
    /// (bounded) for the next segment's spare.
    async fn half_full_and_spare_ready(log: &Segments, seq: &mut u64) {
        while log.inner.state.read().segments.last().unwrap().len < 2048 {
            *seq += 1;
            commit(log, *seq);
            log.sync().await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.inner.spare.ready.lock().is_none() {
            assert!(std::time::Instant::now() < deadline, "no spare made");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Commits (each synced) until the log has `n` segments.
    async fn commit_until_segments(log: &Segments, seq: &mut u64, n: usize) {
        while log.inner.state.read().segments.len() < n {
            *seq += 1;
            commit(log, *seq);
            log.sync().await.unwrap();
        }
    }

    /// The files a torn tail cut at `at` was kept in.
    fn kept_aside(dir: &Path, at: u64) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().contains(&format!(".torn-{at}-")))
            .collect()
    }

    /// Appends record `seq` as one commit.
    fn commit(log: &Segments, seq: u64) {
        let bytes = record(seq, "g");
        let keys = index_keys(&decode::<AuditRecord>(&bytes).unwrap()).collect();
        let head = HeadRecord {
            seq,
            hash: crate::chain::hash(&bytes),
        };
        log.append(&[(seq, &bytes)], keys, &head, &[]).unwrap();
    }

    #[tokio::test]
    async fn segments_written_into_files_zeroed_ahead_read_back_and_seal_to_their_length() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open_sized(dir.path(), 4096).unwrap();
        let open_len = |log: &Segments| log.inner.state.read().segments.last().unwrap().len;
        let mut seq = 0;
        half_full_and_spare_ready(&log, &mut seq).await;
        commit_until_segments(&log, &mut seq, 2).await;
        let (sealed, open) = {
            let state = log.inner.state.read();
            (
                (state.segments[0].path.clone(), state.segments[0].len),
                state.segments[1].path.clone(),
            )
        };
        // The sealed segment ends with its last frame; the new one is the zeroed spare.
        assert_eq!(std::fs::metadata(&sealed.0).unwrap().len(), sealed.1);
        assert_eq!(std::fs::metadata(&open).unwrap().len(), 4096 + 4096 / 8);
        for _ in 0..3 {
            seq += 1;
            commit(&log, seq);
        }
        log.sync().await.unwrap();
        let end = open_len(&log);
        drop(log);
        let log = Segments::open_sized(dir.path(), 4096).unwrap();
        assert_eq!((log.count(), log.head().unwrap().seq), (seq, seq));
        assert_eq!(log.get(seq).unwrap(), Some(record(seq, "g")));
        assert_eq!(open_len(&log), end, "the zeros are not the segment's");
        drop(log);
        // A crash halfway through writing a frame into the zeros: cut off, kept aside.
        let bytes = record(seq + 1, "g");
        let next = HeadRecord {
            seq: seq + 1,
            hash: crate::chain::hash(&bytes),
        };
        let (frame, _) = encode_frame(&next, &[], &[(seq + 1, &bytes)], end);
        let half = &frame[..frame.len() / 2];
        let f = OpenOptions::new().write(true).open(&open).unwrap();
        f.write_all_at(half, end).unwrap();
        drop(f);
        let log = Segments::open_sized(dir.path(), 4096).unwrap();
        assert_eq!((log.count(), log.head().unwrap().seq), (seq, seq));
        drop(log);
        let aside = kept_aside(dir.path(), end);
        assert_eq!(aside.len(), 1, "{aside:?}");
        let kept = std::fs::read(&aside[0]).unwrap();
        assert_eq!(kept, half[..=half.iter().rposition(|&b| b != 0).unwrap()]);
    }

    #[tokio::test]
    async fn a_closed_log_leaves_no_spare_and_its_open_segment_without_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open_sized(dir.path(), 4096).unwrap();
        let mut seq = 0;
        // Each segment half full, then its spare ready: the second segment is a spare, and
        // the third's is ready when the log closes.
        half_full_and_spare_ready(&log, &mut seq).await;
        commit_until_segments(&log, &mut seq, 2).await;
        half_full_and_spare_ready(&log, &mut seq).await;
        let open = log.inner.state.read().segments[1].path.clone();
        let end = log.inner.state.read().segments[1].len;
        assert!(
            std::fs::metadata(&open).unwrap().len() > end,
            "zeroed ahead"
        );
        let spares = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(SPARE)
                })
                .count()
        };
        assert_eq!(spares(), 1);
        drop(log);
        assert_eq!(spares(), 0);
        assert_eq!(std::fs::metadata(&open).unwrap().len(), end);
        // Reopened at once (nothing holds the lock), everything still there.
        let log = Segments::open_sized(dir.path(), 4096).unwrap();
        assert_eq!((log.count(), log.head().unwrap().seq), (seq, seq));
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_damage_stops_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), 20);
        drop(log);
        let seg = dir.path().join(segment_name(1));
        let len = std::fs::metadata(&seg).unwrap().len();
        // A crash mid-frame: the tail goes, the rest stays.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 3).unwrap();
        let log = Segments::open_sized(dir.path(), 1 << 20).unwrap();
        assert_eq!(log.head().unwrap().seq, 14, "the last whole commit");
        assert_eq!(log.count(), 14);
        drop(log);
        // The bytes cut off are kept beside the segment, not dropped.
        let cut = std::fs::metadata(&seg).unwrap().len();
        let aside = kept_aside(dir.path(), cut);
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::metadata(&aside[0]).unwrap().len(), len - 3 - cut);
        // A flipped byte in the first frame, frames after it: refused, nothing cut.
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&seg, &bytes).unwrap();
        let err = Segments::open_sized(dir.path(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    }

    #[tokio::test]
    async fn pruning_drops_whole_segments_and_rewrites_the_one_it_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), 300);
        let before = log.inner.state.read().segments.len();
        assert_eq!(log.drop_through(150).unwrap(), 150);
        assert!(log.inner.state.read().segments.len() < before);
        assert_eq!(log.records_from(0, 1).unwrap()[0].0, 151);
        assert_eq!(log.count(), 150);
        assert_eq!(gids(&log, "g3").first(), Some(&153));
        // The head stays, even with every record gone.
        assert_eq!(log.drop_through(300).unwrap(), 150);
        assert_eq!(log.count(), 0);
        assert_eq!(log.head().unwrap().seq, 300);
        drop(log);
        let log = Segments::open_sized(dir.path(), 4096).unwrap();
        assert_eq!((log.count(), log.head().unwrap().seq), (0, 300));
    }

    #[tokio::test]
    async fn an_edit_rewrites_a_record_in_place_and_the_indexes_follow() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), 100);
        let edits = BTreeMap::from([(13, Some(record(13, "other"))), (14, None)]);
        log.edit(&edits).unwrap();
        assert_eq!(log.get(13).unwrap(), Some(record(13, "other")));
        assert_eq!(log.get(14).unwrap(), None);
        assert!(!gids(&log, "g3").contains(&13));
        assert_eq!(gids(&log, "other"), [13]);
        assert_eq!(log.count(), 99);
    }
}
