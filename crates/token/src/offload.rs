//! Datalog off the async runtime's workers.
//!
//! Verifying a Biscuit runs Datalog: bounded ([`crate::inspect_biscuit`], the run limits), but
//! still hundreds of microseconds to milliseconds of CPU, which on a runtime worker would delay
//! every other call that worker serves. At most [`datalog_threads`] evaluations run at once.
//! Async callers use [`run_off_runtime`]: with a permit free on a multi-threaded runtime, the
//! work runs in place once the worker's other tasks were handed to another thread
//! (`block_in_place`: no wait for a pool thread to wake); otherwise the caller waits for a permit
//! as a task (at most [`MAX_WAITING`] wait: beyond that a verification is refused as overloaded
//! rather than queued without bound) and the work runs on tokio's blocking pool. A synchronous
//! caller on a runtime worker (a tonic interceptor) uses [`run_blocking`], which also hands the
//! worker's other tasks on first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Semaphore;

use crate::error::TokenError;

/// Verifications waiting for a Datalog thread before new ones are refused.
pub const MAX_WAITING: usize = 4096;

struct Pool {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool {
    permits: Arc::new(Semaphore::new(datalog_threads())),
    waiting: AtomicUsize::new(0),
});

/// How many Datalog evaluations run at once: one per core but one, so a flood of Biscuits
/// always leaves a core to everything else (at least one).
pub fn datalog_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// Counts a waiting verification for as long as it lives.
struct Waiting;

impl Waiting {
    fn enter() -> Result<Waiting, TokenError> {
        if POOL.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            POOL.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(TokenError::Overloaded);
        }
        Ok(Waiting)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        POOL.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `work` on tokio's blocking pool once a Datalog permit is free, and waits for it without
/// holding a worker. Outside a runtime, runs it here.
pub async fn run_off_runtime<T, F>(work: F) -> Result<T, TokenError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Ok(handle) = Handle::try_current() else {
        return Ok(work());
    };
    // A free permit on a multi-threaded runtime: run here, once this thread's other tasks have
    // been handed to another (no wait for a pool thread to wake). Otherwise wait for a permit as
    // a task, not as a blocked thread, and run on the blocking pool.
    if handle.runtime_flavor() == RuntimeFlavor::MultiThread
        && let Ok(permit) = POOL.permits.clone().try_acquire_owned()
    {
        return Ok(tokio::task::block_in_place(move || {
            let _permit = permit;
            work()
        }));
    }
    let permit = {
        let _waiting = Waiting::enter()?;
        POOL.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| TokenError::Overloaded)?
    };
    // The permit moves with the work: a caller that gives up does not free it early.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|_| TokenError::Build("verification panicked"))
}

/// Runs `work` from synchronous code: on a multi-threaded runtime's worker, after handing that
/// worker's other tasks to another thread and once a Datalog permit is free; elsewhere (a
/// current-thread runtime, or no runtime), here.
pub fn run_blocking<T>(work: impl FnOnce() -> T) -> Result<T, TokenError> {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            let waiting = Waiting::enter()?;
            tokio::task::block_in_place(|| {
                let permit = handle
                    .block_on(POOL.permits.acquire())
                    .map_err(|_| TokenError::Overloaded)?;
                drop(waiting);
                let out = work();
                drop(permit);
                Ok(out)
            })
        }
        _ => Ok(work()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_runs_off_the_workers_and_at_most_n_at_once() {
        let worker = thread_name();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(run_off_runtime(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    std::thread::current().id()
                }))
            })
            .collect();
        for t in tasks {
            let ran_on = t.await.unwrap().unwrap();
            assert_ne!(ran_on, std::thread::current().id());
        }
        assert!(most.load(Ordering::SeqCst) <= datalog_threads());
        assert_eq!(thread_name(), worker);
        // Nothing left waiting.
        assert_eq!(POOL.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn outside_a_runtime_work_runs_here() {
        assert_eq!(run_blocking(|| 7).unwrap(), 7);
        let here = std::thread::current().id();
        let ran = futures_lite_block_on(run_off_runtime(move || std::thread::current().id()));
        assert_eq!(ran.unwrap(), here);
    }

    /// Polls a future to completion on this thread (no runtime).
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_blocking_caller_on_a_worker_does_not_hold_other_tasks() {
        // While the only worker runs blocking work, a task spawned meanwhile still completes.
        let blocker = tokio::spawn(async {
            run_blocking(|| std::thread::sleep(std::time::Duration::from_millis(300))).unwrap();
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        let quick = tokio::spawn(async { 1 });
        assert_eq!(quick.await.unwrap(), 1);
        assert!(started.elapsed() < std::time::Duration::from_millis(250));
        blocker.await.unwrap();
    }
}
