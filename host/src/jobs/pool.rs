//! The worker pool: `workers` threads fed by one claimer thread through a
//! bounded, blocking hand-off. An idle worker offers itself on a channel as
//! large as the pool; the claimer takes an offer first and only then claims
//! a job from the index for it, so nothing is claimed that no worker can
//! take and no job waits in memory. The claimer also renews the leases of
//! the running jobs (every third of the lease), passes on cancel requests,
//! and recovers the jobs of dead owners and expired leases.
//!
//! A worker runs a job's handler under `catch_unwind`: a panic fails that
//! job terminally with the panic's message, and the worker carries on.
//! Drain (SIGTERM): claiming stops, running jobs may finish until the
//! deadline, then they are cancelled and released (queued again, the
//! attempt not counted) so the next start resumes them.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::backoff::{Backoff, FailureClass, Retry, next_attempt};
use super::{Handlers, JobContext, JobError};
use crate::config::JobsConfig;
use crate::index::{Finish, Index, JobId, JobRow, now_ms};
use crate::lease;

/// How a pool runs.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub workers: usize,
    /// The lease of a running job; renewed every third of it.
    pub lease: Duration,
    pub backoff: Backoff,
    /// How often an idle claimer looks for work other processes enqueued
    /// (a `PRAGMA data_version`, no disk read). Work enqueued in this
    /// process wakes it at once.
    pub poll: Duration,
    /// Run this job only (the CLI's `--wait` without a daemon).
    pub only: Option<JobId>,
    /// How long a job that can pause keeps its worker while another job
    /// waits for one (`jobs.time_slice_ms`).
    pub time_slice: Duration,
}

impl PoolSettings {
    pub fn from_config(config: &JobsConfig) -> PoolSettings {
        PoolSettings {
            workers: config.worker_count(),
            lease: Duration::from_millis(config.lease_ttl_ms),
            backoff: Backoff {
                base: Duration::from_millis(config.backoff_base_ms),
                cap: Duration::from_millis(config.backoff_cap_ms),
            },
            poll: Duration::from_millis(5),
            only: None,
            time_slice: Duration::from_millis(config.time_slice_ms),
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Jobs still running at the deadline, cancelled and released.
    pub cancelled: usize,
    /// Workers whose handler ignored the cancellation; their jobs are
    /// recovered by the next start.
    pub stuck: usize,
}

/// Wakes an idle claimer: work was just enqueued in this process.
#[derive(Clone)]
pub struct Waker(Arc<Shared>);

impl Waker {
    pub fn wake(&self) {
        self.0.wake();
    }
}

/// A running pool; [`Pool::drain`] stops it.
pub struct Pool {
    shared: Arc<Shared>,
    claimer: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

/// How long cancelled handlers get to return before the pool gives up on them.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// Progress is written to the index at most this often per job.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

struct Shared {
    index: Arc<Index>,
    owner: String,
    handlers: Handlers,
    kinds: Vec<String>,
    settings: PoolSettings,
    stop_claiming: AtomicBool,
    /// Set at the drain deadline: a cancelled job is released, not cancelled.
    releasing: AtomicBool,
    /// Set when the drain gives up on stuck workers: the claimer exits.
    abandon: AtomicBool,
    woken: Mutex<bool>,
    wake: Condvar,
    /// The cancel flag of every job handed to a worker and not finished.
    running: Mutex<HashMap<JobId, Arc<AtomicBool>>>,
    alive_workers: AtomicUsize,
}

impl Pool {
    /// Recovers the jobs of dead owners and expired leases, then starts the
    /// claimer and `settings.workers` workers running `handlers` as `owner`.
    pub fn start(
        index: Arc<Index>,
        owner: String,
        handlers: Handlers,
        settings: PoolSettings,
    ) -> anyhow::Result<Pool> {
        let workers = settings.workers.max(1);
        let shared = Arc::new(Shared {
            index,
            owner,
            kinds: handlers.kinds(),
            handlers,
            settings,
            stop_claiming: AtomicBool::new(false),
            releasing: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            woken: Mutex::new(true),
            wake: Condvar::new(),
            running: Mutex::new(HashMap::new()),
            alive_workers: AtomicUsize::new(workers),
        });
        shared.recover();
        let (offers, offered) = mpsc::sync_channel::<SyncSender<JobRow>>(workers);
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let (worker_shared, offers) = (shared.clone(), offers.clone());
            let thread = std::thread::Builder::new()
                .name(format!("job-worker-{i}"))
                .spawn(move || worker(&worker_shared, &offers));
            match thread {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    shared.alive_workers.fetch_sub(1, Ordering::SeqCst);
                    tracing::error!(error = %error, "cannot start a job worker");
                }
            }
        }
        drop(offers);
        let claimer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("job-claimer".into())
                .spawn(move || claimer(&shared, offered))
                .context("cannot start the job claimer")?
        };
        tracing::info!(
            workers = threads.len(),
            kinds = ?shared.kinds,
            "job pool started"
        );
        Ok(Pool {
            shared,
            claimer: Some(claimer),
            workers: threads,
        })
    }

    pub fn waker(&self) -> Waker {
        Waker(self.shared.clone())
    }

    /// Stops claiming, lets running jobs finish for up to `deadline`, then
    /// cancels the rest (released: queued again for the next start) and
    /// waits a short grace for their handlers to return. Blocking.
    pub fn drain(mut self, deadline: Duration) -> Drained {
        self.stop(deadline)
    }

    fn stop(&mut self, deadline: Duration) -> Drained {
        let shared = &self.shared;
        shared.stop_claiming.store(true, Ordering::SeqCst);
        shared.wake();
        let alive = || shared.alive_workers.load(Ordering::SeqCst);
        wait_until(Instant::now() + deadline, || alive() == 0);
        let mut cancelled = 0;
        if alive() > 0 {
            shared.releasing.store(true, Ordering::SeqCst);
            let running = shared
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            cancelled = running.len();
            for flag in running.values() {
                flag.store(true, Ordering::SeqCst);
            }
            drop(running);
            // Idle workers still on their way out are not worth a warning.
            if cancelled > 0 {
                tracing::warn!(
                    jobs = cancelled,
                    "drain deadline passed: cancelling running jobs; they run again at the next start"
                );
            }
            wait_until(Instant::now() + CANCEL_GRACE, || alive() == 0);
        }
        let stuck = alive();
        shared.abandon.store(true, Ordering::SeqCst);
        if let Some(claimer) = self.claimer.take() {
            let _ = claimer.join();
        }
        for worker in std::mem::take(&mut self.workers) {
            // A worker stuck in a handler that ignores cancellation is left
            // behind; the process exits without it.
            if worker.is_finished() {
                let _ = worker.join();
            }
        }
        Drained { cancelled, stuck }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.claimer.is_some() {
            self.stop(Duration::ZERO);
        }
    }
}

/// Whether a job waits for a worker: every one of `workers` runs a job
/// (`busy`) and the first queued job is due.
fn waits(busy: usize, workers: usize, first_due_ms: impl FnOnce() -> Option<i64>) -> bool {
    busy >= workers.max(1) && first_due_ms().is_some_and(|due| due <= now_ms())
}

fn wait_until(until: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Takes offers from idle workers and claims a job for each.
fn claimer(shared: &Shared, offered: Receiver<SyncSender<JobRow>>) {
    let tick = (shared.settings.lease / 3).max(Duration::from_millis(10));
    let mut last_maintenance = Instant::now();
    let mut maintain = |shared: &Shared| {
        if last_maintenance.elapsed() >= tick {
            last_maintenance = Instant::now();
            shared.maintain();
        }
    };
    let mut watch = match shared.index.watch() {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "cannot watch the index for new jobs; polling instead");
            None
        }
    };
    let mut failing = false;
    'serve: loop {
        let worker = loop {
            if shared.stop_claiming.load(Ordering::SeqCst) {
                break 'serve;
            }
            maintain(shared);
            match offered.recv_timeout(tick.min(Duration::from_millis(100))) {
                Ok(worker) => break worker,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break 'serve,
            }
        };
        let mut look = true;
        let mut next_due: Option<i64> = None;
        let job = loop {
            if shared.stop_claiming.load(Ordering::SeqCst) {
                break 'serve;
            }
            maintain(shared);
            if look || next_due.is_some_and(|due| due <= now_ms()) {
                match shared.claim() {
                    Ok(Some(job)) => {
                        failing = false;
                        break job;
                    }
                    Ok(None) => {
                        failing = false;
                        next_due = shared.next_due();
                    }
                    Err(error) => {
                        if !failing {
                            tracing::error!(error = %format!("{error:#}"), "cannot claim a job; retrying");
                        }
                        failing = true;
                        next_due = Some(now_ms() + 100);
                    }
                }
            }
            let woken = shared.wait(shared.settings.poll);
            let changed = match watch.as_mut() {
                Some(watch) => watch.changed().unwrap_or(true),
                None => true,
            };
            look = woken || changed;
        };
        let id = job.id;
        shared
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(AtomicBool::new(false)));
        if worker.send(job).is_err() {
            // The worker is gone: give the job back at once.
            if let Err(error) =
                shared
                    .index
                    .finish_job(id, &shared.owner, &Finish::Released, now_ms())
            {
                tracing::warn!(job_id = id.0, error = %format!("{error:#}"), "cannot give a job back; it runs once its lease expires");
            }
            shared.forget(id);
        }
    }
    // Draining: idle workers see their offer dropped and exit; the running
    // jobs keep their leases renewed until their workers are done.
    drop(offered);
    while shared.alive_workers.load(Ordering::SeqCst) > 0 && !shared.abandon.load(Ordering::SeqCst)
    {
        maintain(shared);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Offers itself, runs what it is given, until the claimer stops.
fn worker(shared: &Shared, offers: &SyncSender<SyncSender<JobRow>>) {
    struct Alive<'a>(&'a AtomicUsize);
    impl Drop for Alive<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _alive = Alive(&shared.alive_workers);
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => {
                let (give, take) = mpsc::sync_channel(1);
                if offers.send(give).is_err() {
                    return;
                }
                let Ok(job) = take.recv() else { return };
                job
            }
        };
        next = shared.run(job);
    }
}

impl Shared {
    fn wake(&self) {
        *self.woken.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    /// Waits up to `timeout` for a wake; true if woken.
    fn wait(&self, timeout: Duration) -> bool {
        let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        if !*woken {
            woken = self
                .wake
                .wait_timeout(woken, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::take(&mut *woken)
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX)
    }

    fn claim(&self) -> anyhow::Result<Option<JobRow>> {
        self.index.claim_job(
            &self.owner,
            &self.kinds,
            now_ms(),
            self.lease_ms(),
            self.settings.only,
        )
    }

    fn next_due(&self) -> Option<i64> {
        match self.settings.only {
            Some(id) => match self.index.job(id) {
                Ok(Some(row)) if row.state == crate::index::JobState::Queued => {
                    Some(row.next_attempt_ms)
                }
                _ => None,
            },
            None => self.index.next_job_due_ms(&self.kinds).ok().flatten(),
        }
    }

    /// Heartbeat, cancel requests, and recovery.
    fn maintain(&self) {
        let ids: Vec<JobId> = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        if !ids.is_empty() {
            match self
                .index
                .heartbeat_jobs(&self.owner, &ids, now_ms(), self.lease_ms())
            {
                Ok(cancel) => {
                    let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
                    for id in cancel {
                        if let Some(flag) = running.get(&id) {
                            flag.store(true, Ordering::SeqCst);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "cannot renew the leases of running jobs; retrying")
                }
            }
        }
        self.recover();
    }

    /// Queues again the jobs of owners that are provably dead, and of
    /// leases that expired; never those of a live owner.
    fn recover(&self) {
        let mut requeued = 0;
        let mut failed = 0;
        let mut recover = |owner: Option<&str>| match self.index.recover_jobs(owner, now_ms()) {
            Ok((r, f)) => {
                requeued += r;
                failed += f;
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot recover jobs; retrying later")
            }
        };
        match self.index.job_owners() {
            Ok(owners) => {
                for (owner, _) in owners {
                    if owner != self.owner && lease::holder_is_dead(&owner) {
                        recover(Some(&owner));
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot list job owners")
            }
        }
        recover(None);
        if requeued + failed > 0 {
            tracing::info!(
                requeued,
                failed,
                "recovered the jobs of dead workers or expired leases"
            );
            self.wake();
        }
    }

    /// Whether a job is due that no worker is free to take. Never when this
    /// pool runs one job only.
    fn someone_waits(&self) -> bool {
        if self.settings.only.is_some() {
            return false;
        }
        let busy = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        // The index is read only when every worker is busy.
        waits(busy, self.settings.workers, || {
            self.index
                .next_job_due_ms(&self.kinds)
                .inspect_err(|error| tracing::debug!(error = %format!("{error:#}"), "cannot look for waiting jobs"))
                .ok()
                .flatten()
        })
    }

    fn forget(&self, id: JobId) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Runs one job on this worker thread and records how it ended; returns
    /// the next job, claimed for this worker in the same transaction.
    fn run(&self, job: JobRow) -> Option<JobRow> {
        let cancel = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&job.id)
            .cloned()
            .unwrap_or_default();
        let span =
            tracing::info_span!("job", job_id = job.id.0, kind = %job.kind, attempt = job.attempts);
        let _entered = span.enter();
        let last_progress = Mutex::new(None::<Instant>);
        let progress = |done: u64, total: Option<u64>| {
            let mut last = last_progress.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) && total != Some(done) {
                return;
            }
            *last = Some(Instant::now());
            if let Err(error) = self
                .index
                .set_job_progress(job.id, &self.owner, done, total)
            {
                tracing::debug!(error = %error, "cannot record job progress");
            }
        };
        let waiting = || self.someone_waits();
        let context = JobContext::new(&job, cancel.clone(), &progress)
            .with_turns(self.settings.time_slice, &waiting);
        let started = Instant::now();
        let result = match self.handlers.get(&job.kind) {
            Some(handler) => catch_unwind(AssertUnwindSafe(|| handler.run(&context))),
            None => Ok(Err(JobError::Terminal(anyhow::anyhow!(
                "no handler for job kind {:?} in this process",
                job.kind
            )))),
        };
        let finish = self.decide(&job, result, cancel.load(Ordering::SeqCst));
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &finish {
            Finish::Done => tracing::debug!(elapsed_ms, "job done"),
            Finish::Retry { at_ms, error } => {
                tracing::warn!(elapsed_ms, error = %error, retry_at_ms = at_ms, "job failed; retrying after a backoff")
            }
            Finish::Failed { error } => {
                tracing::error!(elapsed_ms, error = %error, "job failed for good")
            }
            Finish::Cancelled { .. } => tracing::info!(elapsed_ms, "job cancelled"),
            Finish::Released => tracing::info!(elapsed_ms, "job stopped by shutdown; queued again"),
            Finish::Yielded => {
                tracing::debug!(elapsed_ms, "job made way for a waiting job; queued again")
            }
        }
        let next = self.record(&job, &finish);
        self.forget(job.id);
        if next.is_none() {
            // The end of a job may have queued another (a rerun).
            self.wake();
        }
        next
    }

    fn decide(
        &self,
        job: &JobRow,
        result: std::thread::Result<Result<(), JobError>>,
        cancelled: bool,
    ) -> Finish {
        let stopped = || {
            if self.releasing.load(Ordering::SeqCst) {
                Finish::Released
            } else {
                Finish::Cancelled {
                    error: "cancelled by a user".into(),
                }
            }
        };
        match result {
            Ok(Ok(())) => Finish::Done,
            Ok(Err(JobError::Cancelled)) => stopped(),
            Ok(Err(_)) if cancelled => stopped(),
            Ok(Err(JobError::Yielded)) => Finish::Yielded,
            Ok(Err(JobError::Terminal(error))) => Finish::Failed {
                error: format!("{error:#}"),
            },
            Ok(Err(JobError::Transient(error))) => {
                let retry = next_attempt(
                    job.attempts,
                    job.max_attempts,
                    FailureClass::Transient,
                    &self.settings.backoff,
                    fastrand::f64(),
                );
                match retry {
                    Retry::After(delay) => Finish::Retry {
                        at_ms: now_ms().saturating_add(delay.as_millis() as i64),
                        error: format!("{error:#}"),
                    },
                    Retry::GiveUp => Finish::Failed {
                        error: format!("{error:#} (gave up after {} attempts)", job.attempts),
                    },
                }
            }
            Err(panic) => Finish::Failed {
                error: format!("the handler panicked: {}", panic_message(panic.as_ref())),
            },
        }
    }

    /// Records a job's end and, unless the pool is stopping, claims the
    /// next job for this worker in the same transaction. Retries a few
    /// times: if the end cannot be recorded, the job's lease runs out and it
    /// is recovered and run again.
    fn record(&self, job: &JobRow, finish: &Finish) -> Option<JobRow> {
        for attempt in 1..=3 {
            let result = if self.stop_claiming.load(Ordering::SeqCst) {
                self.index
                    .finish_job(job.id, &self.owner, finish, now_ms())
                    .map(|finished| (finished, None))
            } else {
                self.index.finish_and_claim_job(
                    job.id,
                    &self.owner,
                    finish,
                    now_ms(),
                    &self.kinds,
                    self.lease_ms(),
                    self.settings.only,
                )
            };
            match result {
                Ok((finished, next)) => {
                    if !finished {
                        tracing::warn!(
                            job_id = job.id.0,
                            "the job's lease was taken over while it ran; its end is not recorded"
                        );
                    }
                    if let Some(next) = &next {
                        self.running
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(next.id, Arc::new(AtomicBool::new(false)));
                    }
                    return next;
                }
                Err(error) if attempt < 3 => {
                    tracing::warn!(job_id = job.id.0, error = %format!("{error:#}"), "cannot record the job's end; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => tracing::error!(
                    job_id = job.id.0,
                    error = %format!("{error:#}"),
                    "cannot record the job's end; it runs again once its lease expires"
                ),
            }
        }
        None
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_waits_only_when_every_worker_is_busy_and_a_queued_job_is_due() {
        let now = now_ms();
        assert!(waits(2, 2, || Some(now - 5)));
        assert!(waits(1, 0, || Some(now)), "a pool has at least one worker");
        assert!(!waits(1, 2, || Some(now - 5)), "a free worker takes it");
        assert!(!waits(2, 2, || Some(now + 60_000)), "not due yet");
        assert!(!waits(2, 2, || None), "nothing queued");
        assert!(
            !waits(1, 2, || panic!("the index is not read")),
            "with a free worker the queue is not looked at"
        );
    }
}
