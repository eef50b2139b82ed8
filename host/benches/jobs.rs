//! Queue throughput and trigger latency, with huey as the peer in the same
//! run (issue 10's benchmark; results in BENCHMARKS.md).
//!
//! `cargo bench -p wharf --bench jobs` enqueues 10,000 no-op jobs one by one
//! (each its own transaction, as triggers are), then runs them to
//! completion with a pool of 2 workers; then runs `benches/jobs_huey.py`
//! (huey with SqliteHuey and 2 worker threads doing the same) three times,
//! as SqliteHuey comes (an fsync per commit), at wharf's durability
//! (synchronous=NORMAL) and with fsync=False (synchronous=OFF), and prints
//! the ratios. Then, with the pool idle, the time from enqueue to the
//! handler starting, over 1,000 triggers: woken in-process (the daemon's
//! own triggers) and found by polling (another process's, e.g. the CLI).
//! Set `JOBS=N` for another count; without python3 and huey the peer is
//! skipped. Not run by `cargo test`.

use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::mpsc::{self, SyncSender};
use std::time::{Duration, Instant};

use wharf::config::JobsConfig;
use wharf::index::Index;
use wharf::jobs::{
    Handler, Handlers, JobContext, JobError, Pool, PoolSettings, Queue, Request, Trigger,
};

struct Noop;

impl Handler for Noop {
    fn run(&self, _job: &JobContext<'_>) -> Result<(), JobError> {
        Ok(())
    }
}

/// Tells the bench when each job started.
struct Started(Mutex<SyncSender<Instant>>);

impl Handler for Started {
    fn run(&self, _job: &JobContext<'_>) -> Result<(), JobError> {
        let now = Instant::now();
        let _ = self.0.lock().map(|sender| sender.send(now));
        Ok(())
    }
}

fn pool(index: &Arc<Index>, handlers: Handlers, workers: usize) -> Pool {
    let settings = PoolSettings {
        workers,
        ..PoolSettings::from_config(&JobsConfig::default())
    };
    Pool::start(index.clone(), "bench:1:1:0".into(), handlers, settings).expect("the pool starts")
}

fn main() {
    let jobs: usize = std::env::var("JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let index = Arc::new(Index::open(&dir.path().join("index.sqlite")).expect("the index opens"));
    let queue = Queue::new(index.clone(), &JobsConfig::default());

    let started = Instant::now();
    for _ in 0..jobs {
        queue
            .enqueue(&Request::new("noop", "{}"), Trigger::Cli)
            .expect("enqueue");
    }
    let enqueue = started.elapsed();
    let mut handlers = Handlers::new();
    handlers.register("noop", Arc::new(Noop));
    let run_started = Instant::now();
    let running = pool(&index, handlers, 2);
    loop {
        let counts = index.job_counts().expect("counts");
        if counts.queued == 0 && counts.running == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let run = run_started.elapsed();
    running.drain(Duration::from_secs(1));
    let wharf_total = enqueue + run;
    println!(
        "wharf: {jobs} no-op jobs, 2 workers: enqueue {:.3} s, run {:.3} s, total {:.3} s ({:.0} jobs/s)",
        enqueue.as_secs_f64(),
        run.as_secs_f64(),
        wharf_total.as_secs_f64(),
        jobs as f64 / wharf_total.as_secs_f64()
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/jobs_huey.py");
    for fsync in ["default", "normal", "off"] {
        peer(script, jobs, fsync, enqueue, run);
    }
    latency(&index, &queue);
}

/// Runs huey on the same count and prints the ratios.
fn peer(script: &str, jobs: usize, fsync: &str, enqueue: Duration, run: Duration) {
    let wharf_total = enqueue + run;
    match Command::new("python3")
        .args([script, &jobs.to_string(), fsync])
        .output()
    {
        Ok(output) if output.status.success() => {
            let line = String::from_utf8_lossy(&output.stdout);
            let peer: serde_json::Value =
                serde_json::from_str(line.trim()).expect("huey's JSON line");
            let (enqueue_s, run_s) = (
                peer["enqueue_s"].as_f64().unwrap_or(f64::NAN),
                peer["run_s"].as_f64().unwrap_or(f64::NAN),
            );
            println!(
                "huey {} (SqliteHuey fsync={fsync}, 2 threads): enqueue {enqueue_s:.3} s, run {run_s:.3} s, total {:.3} s ({:.0} jobs/s)",
                peer["huey"].as_str().unwrap_or("?"),
                enqueue_s + run_s,
                jobs as f64 / (enqueue_s + run_s)
            );
            println!(
                "ratio (huey time / wharf time): total {:.1}x, enqueue {:.1}x, run {:.1}x (target >= 5x)",
                (enqueue_s + run_s) / wharf_total.as_secs_f64(),
                enqueue_s / enqueue.as_secs_f64(),
                run_s / run.as_secs_f64()
            );
        }
        Ok(output) => println!(
            "huey peer skipped (pip install huey): {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(error) => println!("huey peer skipped: python3: {error}"),
    }
}

/// Trigger-to-start latency with an idle pool.
fn latency(index: &Arc<Index>, queue: &Queue) {
    let (sender, receiver) = mpsc::sync_channel(1);
    let mut handlers = Handlers::new();
    handlers.register("probe", Arc::new(Started(Mutex::new(sender))));
    let idle = pool(index, handlers, 2);
    let waker = idle.waker();
    for (label, wake) in [("woken in-process", true), ("found by polling", false)] {
        let mut samples = Vec::with_capacity(1000);
        for _ in 0..1000 {
            std::thread::sleep(Duration::from_millis(2));
            let triggered = Instant::now();
            queue
                .enqueue(&Request::new("probe", "{}"), Trigger::Cli)
                .expect("enqueue");
            if wake {
                waker.wake();
            }
            let started = receiver.recv().expect("the probe runs");
            samples.push(started - triggered);
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        println!(
            "trigger to start, idle pool, {label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 <= 10 ms)",
            at(0.50).as_secs_f64() * 1000.0,
            at(0.99).as_secs_f64() * 1000.0,
            samples[samples.len() - 1].as_secs_f64() * 1000.0
        );
    }
    idle.drain(Duration::from_secs(1));
}
