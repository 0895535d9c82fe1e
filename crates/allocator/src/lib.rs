//! The allocator Writ's binaries run with, and the housekeeping that gives its idle memory back.
//!
//! mimalloc returns freed pages to the OS only after a delay (`purge_delay`, 1 s), and only when
//! some thread next frees or allocates a page: it has no timer of its own. A server that goes
//! quiet right after a burst kept what the burst freed until its next request. Purging at once
//! instead (`MIMALLOC_PURGE_DELAY=0`) costs 5 to 10 % of throughput (BENCHMARKS.md, issue 17).
//! This crate keeps the delay and supplies the missing timer ([`start_purger`]), plus a
//! collection on each runtime thread as it goes idle ([`on_thread_park`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The global allocator: `#[global_allocator] static GLOBAL: Allocator = Allocator;`.
pub use mimalloc::MiMalloc as Allocator;

/// How often the purger runs: mimalloc's purge delay, so a page freed before a quiet spell is
/// back with the OS within about two seconds.
pub const PURGE_EVERY: Duration = Duration::from_secs(1);

/// At most one collection per runtime thread per this long: a thread parks thousands of times
/// a second under load, and a collection walks its pages.
const COLLECT_AT_MOST_EVERY: Duration = Duration::from_millis(250);

/// The mimalloc release whose option numbering [`PAGE_MAX_CANDIDATES`] was read from.
const MIMALLOC_VERSION: i32 = 30302;

/// `mi_option_page_max_candidates` in that release's `mi_option_t` (libmimalloc-sys names
/// only the older options). A test fails when the bundled release changes.
const PAGE_MAX_CANDIDATES: libmimalloc_sys::mi_option_t = 37;

/// Pages with free space a thread compares before allocating in the fullest (mimalloc: 4).
/// Packing into fuller pages leaves more pages empty to return: at rest after a million
/// revocations, 188–194 MiB instead of 196–202 (BENCHMARKS.md, issue 17).
const CANDIDATES: std::ffi::c_long = 16;

/// Sets the allocator's options, where the environment (`MIMALLOC_*`) did not. Call first thing
/// in `main`, before other threads start: mimalloc's option table is not synchronised (a later
/// call is still harmless: one aligned word, read as a hint, at worst stale for a moment). Leaves
/// mimalloc's defaults when the bundled release is not the one the options were chosen for.
pub fn configure() {
    #[allow(unsafe_code)]
    // SAFETY: `mi_version` takes nothing and reads a constant; `mi_option_set_default` stores a
    // number in mimalloc's option table, before any other thread exists (see above).
    unsafe {
        if libmimalloc_sys::mi_version() == MIMALLOC_VERSION {
            libmimalloc_sys::mi_option_set_default(PAGE_MAX_CANDIDATES, CANDIDATES);
        }
    }
}

/// One pass of mimalloc's housekeeping for the calling thread: hands the thread's pages that
/// became empty (blocks other threads freed included) back to the shared arenas, and returns to
/// the OS the arena ranges whose purge delay has passed (process-wide, `madvise`). It walks the
/// thread's pages that are not full, so it is rate-limited where it runs often.
pub fn collect() {
    #[allow(unsafe_code)]
    // SAFETY: `mi_collect` takes no pointers and has no preconditions; it reorganises mimalloc's
    // own free lists for the calling thread, and purges under mimalloc's own try-lock.
    unsafe {
        libmimalloc_sys::mi_collect(false);
    }
}

/// Starts a thread that calls [`collect`] every [`PURGE_EVERY`] for the life of the process:
/// the timer mimalloc lacks. Once per process; an error means no thread could be started (memory
/// then goes back at the next request instead: later, not unsafe).
pub fn start_purger() -> std::io::Result<()> {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let spawned = std::thread::Builder::new()
        .name("writ-purger".into())
        .spawn(|| {
            // mimalloc collects only on a thread whose own heap is set up, and this thread
            // never allocates: without this, every collect() here returned at once.
            #[allow(unsafe_code)]
            // SAFETY: no arguments; sets up the calling thread's heap, as its first allocation
            // would.
            unsafe {
                libmimalloc_sys::mi_thread_init();
            }
            loop {
                std::thread::sleep(PURGE_EVERY);
                collect();
            }
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(e) => {
            STARTED.store(false, Ordering::Release);
            Err(e)
        }
    }
}

/// For `tokio::runtime::Builder::on_thread_park`: a runtime thread going idle hands its empty
/// pages back to the arenas, where the purger returns them to the OS (a parked thread would
/// otherwise hold them until it next allocates). At most once per [`COLLECT_AT_MOST_EVERY`]
/// per thread, so it is best effort: a worker whose last park after a burst falls within that
/// time keeps the pages it emptied since, until it next wakes (a timer, a request).
pub fn on_thread_park() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    let due = LAST.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < COLLECT_AT_MOST_EVERY => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_number_is_the_bundled_releases_page_max_candidates() {
        #[allow(unsafe_code)]
        // SAFETY: as in `configure`; this test reads and sets one option of its own process.
        let (version, before, after) = unsafe {
            let version = libmimalloc_sys::mi_version();
            let before = libmimalloc_sys::mi_option_get(PAGE_MAX_CANDIDATES);
            libmimalloc_sys::mi_option_set(PAGE_MAX_CANDIDATES, CANDIDATES);
            (
                version,
                before,
                libmimalloc_sys::mi_option_get(PAGE_MAX_CANDIDATES),
            )
        };
        // A new mimalloc release: check its mi_option_t, then update both constants.
        assert_eq!(version, MIMALLOC_VERSION, "re-check PAGE_MAX_CANDIDATES");
        // Option 37's documented default in this release is 4 (page_max_candidates).
        assert_eq!(before, 4);
        assert_eq!(after, CANDIDATES);
    }
}
