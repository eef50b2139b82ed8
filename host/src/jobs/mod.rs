//! The jobs engine: one SQLite queue (`index/jobs.rs` holds its SQL) that
//! everything the workers do goes through, a scheduler that decides when
//! jobs are due, and a bounded worker pool that runs them.
//!
//! - `queue.rs`: the client glue: requests (kind, single-flight key,
//!   absorption), enqueue, and the crash recovery of jobs whose owner died.
//! - `scheduler.rs`: periodic jobs per kind with a stagger, and triggers
//!   (startup, SIGUSR1, the CLI).
//! - `pool.rs`: one claimer thread and `workers` worker threads joined by a
//!   bounded, blocking hand-off; claims under a lease renewed by heartbeat;
//!   panics caught; drain on shutdown.
//! - `backoff.rs`: the pure retry decision and backoff.
//! - `kinds.rs`: the handlers of the built-in kinds (`ingest`, `cleanup`,
//!   `gc`).
//!
//! Invariants: a job is claimed only when a worker is idle to take it, so
//! nothing waits in memory; a job runs under a lease its owner renews, and
//! nobody else runs it unless that owner is provably dead or let the lease
//! expire; a handler's panic fails that job, never the worker; a job that
//! can pause makes way for a waiting one after `jobs.time_slice_ms`
//! ([`JobContext::should_yield`]), so no job holds the pool for hours. Data flows
//! cli → jobs → ingest, retention and gc (later export, sync); `runtime` knows
//! nothing of jobs.

mod backoff;
mod kinds;
mod pool;
mod queue;
mod scheduler;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use backoff::{Backoff, FailureClass, Retry, next_attempt};
pub use kinds::{
    CleanupJob, IngestJob, SharedConfig, cleanup_handlers, in_force, standard_handlers,
};
pub use pool::{Pool, PoolSettings, Waker};
pub use queue::{Queue, Request};
pub use scheduler::{Schedule, Scheduler, Trigger};

pub use crate::index::{JobId, JobRow, JobState};

/// The inbox scan.
pub const INGEST: &str = "ingest";
/// A full cleanup: every configured retention policy, then orphan GC.
pub const CLEANUP: &str = "cleanup";
/// Orphan GC only.
pub const GC: &str = "gc";

/// What a job kind does; registered by kind when the pool starts.
pub trait Handler: Send + Sync {
    /// Runs one attempt of `job`. Long work checks [`JobContext::cancelled`]
    /// and returns [`JobError::Cancelled`] when it is set; work made of
    /// steps whose progress the index records checks
    /// [`JobContext::should_yield`] between them and returns
    /// [`JobError::Yielded`] when it is set.
    fn run(&self, job: &JobContext<'_>) -> Result<(), JobError>;
}

/// How an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying after a backoff.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// Retrying cannot help: failed for good.
    #[error("{0:#}")]
    Terminal(anyhow::Error),
    /// Stopped because [`JobContext::cancelled`] was set.
    #[error("cancelled")]
    Cancelled,
    /// Paused because [`JobContext::should_yield`] said so: queued again at
    /// once, behind the job it made way for, the attempt not counted. The
    /// next run carries on from where the work stands (a sync's rows in the
    /// index, the files still in the inbox).
    #[error("made way for a waiting job")]
    Yielded,
}

/// Reports a running job's progress: work done, and the total if known.
pub type ProgressFn<'a> = &'a (dyn Fn(u64, Option<u64>) + Sync);

/// Whether another job is waiting for a worker.
pub type WaitingFn<'a> = &'a (dyn Fn() -> bool + Sync);

/// How often a job past its time slice asks whether anyone waits.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A pool's time slice, as one attempt sees it.
struct Turn<'a> {
    waiting: WaitingFn<'a>,
    /// When to ask `waiting` next (it reads the index): first at the end of
    /// the slice.
    next_look: Mutex<Instant>,
}

/// One attempt of a job, as its handler sees it.
pub struct JobContext<'a> {
    pub id: JobId,
    pub kind: &'a str,
    /// JSON.
    pub payload: &'a str,
    /// This attempt's number, 1 for the first.
    pub attempt: u32,
    cancel: Arc<AtomicBool>,
    progress: ProgressFn<'a>,
    turn: Option<Turn<'a>>,
}

impl<'a> JobContext<'a> {
    /// An attempt that never has to make way (see [`JobContext::with_turns`]).
    pub fn new(row: &'a JobRow, cancel: Arc<AtomicBool>, progress: ProgressFn<'a>) -> Self {
        JobContext {
            id: row.id,
            kind: &row.kind,
            payload: &row.payload,
            attempt: row.attempts,
            cancel,
            progress,
            turn: None,
        }
    }

    /// Lets the attempt make way once it has run for `slice` and `waiting`
    /// says another job waits for a worker.
    pub fn with_turns(mut self, slice: Duration, waiting: WaitingFn<'a>) -> Self {
        self.turn = Some(Turn {
            waiting,
            next_look: Mutex::new(Instant::now() + slice),
        });
        self
    }

    /// Whether a job that can pause should do so now, returning
    /// [`JobError::Yielded`]: it has had its time slice and another job
    /// waits for a worker. Cheap: it looks at the queue at most every
    /// 100 ms, and never before the slice is over.
    pub fn should_yield(&self) -> bool {
        let Some(turn) = &self.turn else {
            return false;
        };
        let now = Instant::now();
        let mut next_look = turn
            .next_look
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if now < *next_look {
            return false;
        }
        *next_look = now + LOOK_EVERY;
        drop(next_look);
        (turn.waiting)()
    }

    /// Whether the job should stop: a user cancelled it or the daemon is
    /// shutting down past its drain deadline.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The flag behind [`JobContext::cancelled`], for work that takes one.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Reports progress; cheap, the pool writes it to the index at most a
    /// few times a second.
    pub fn progress(&self, done: u64, total: Option<u64>) {
        (self.progress)(done, total);
    }
}

/// The handlers of a pool, by kind.
#[derive(Clone, Default)]
pub struct Handlers {
    by_kind: BTreeMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_kind.keys()).finish()
    }
}

impl Handlers {
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// Registers `handler` for `kind`, replacing any before it.
    pub fn register(&mut self, kind: &str, handler: Arc<dyn Handler>) {
        self.by_kind.insert(kind.to_owned(), handler);
    }

    /// Adds every handler of `other`, which wins on a shared kind.
    pub fn extend(&mut self, other: Handlers) {
        self.by_kind.extend(other.by_kind);
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.by_kind.get(kind)
    }

    pub fn kinds(&self) -> Vec<String> {
        self.by_kind.keys().cloned().collect()
    }

    pub fn contains(&self, kind: &str) -> bool {
        self.by_kind.contains_key(kind)
    }
}
