//! The jobs engine with real processes: `job-daemon` is `wharf run` with
//! test kinds that record each run in a file; the tests enqueue from this
//! process (another process, as the CLI would) and kill, signal and race
//! the daemons.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wharf::index::{Index, JobId, JobRow, JobState, NewJob, now_ms};

use crate::support::Daemon;

struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    record: PathBuf,
    index: Index,
}

impl Setup {
    fn new(jobs_config: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            data.join("wharf.toml"),
            format!("[ingest]\nscan_interval_ms = 86400000\n[jobs]\n{jobs_config}\n"),
        )
        .unwrap();
        let index = Index::open(&data.join("index.sqlite")).unwrap();
        let record = dir.path().join("runs.log");
        Setup {
            _dir: dir,
            data,
            record,
            index,
        }
    }

    fn daemon(&self) -> Daemon {
        Daemon::new(
            Command::new(env!("CARGO_BIN_EXE_job-daemon"))
                .arg(&self.data)
                .arg(&self.record)
                .env("WHARF_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    fn enqueue(&self, kind: &str, key: Option<&str>, ms: u64) -> JobId {
        self.index
            .enqueue_job(&job(kind, key, ms), now_ms())
            .unwrap()
            .id()
    }

    fn job(&self, id: JobId) -> JobRow {
        self.index.job(id).unwrap().unwrap()
    }

    /// Lines of the record file by event ("start 7" → ("start", 7)).
    fn runs(&self) -> Vec<(String, i64)> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (event, id) = line.split_once(' ')?;
                Some((event.to_owned(), id.parse().ok()?))
            })
            .collect()
    }

    fn count(&self, event: &str, id: JobId) -> usize {
        self.runs()
            .iter()
            .filter(|(e, i)| e == event && *i == id.0)
            .count()
    }
}

fn job(kind: &str, key: Option<&str>, ms: u64) -> NewJob {
    NewJob {
        kind: kind.into(),
        unique_key: key.map(str::to_owned),
        payload: format!("{{\"ms\": {ms}}}"),
        max_attempts: 5,
        due_ms: 0,
        absorbs: None,
        absorbed_by: None,
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap()
}

fn stderr_of(child: Child) -> String {
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned()
}

#[test]
fn a_daemon_killed_mid_job_leaves_it_to_the_next_which_runs_it_to_completion_exactly_once() {
    let setup = Setup::new("lease_ttl_ms = 60000");
    let id = setup.enqueue("test-record", None, 1500);
    let mut first = setup.daemon();
    wait_for("the first run to start", Duration::from_secs(30), || {
        setup.count("start", id) == 1
    });
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(
        setup.job(id).state,
        JobState::Running,
        "left claimed by the dead daemon"
    );
    // The lease has a minute left: the next daemon proves its holder dead
    // instead of waiting for it.
    let started = Instant::now();
    let mut second = setup.daemon();
    wait_for("the job to be done", Duration::from_secs(30), || {
        setup.job(id).state == JobState::Done
    });
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(terminate(&mut second).success());
    assert_eq!(setup.count("end", id), 1, "{:?}", setup.runs());
    assert_eq!(setup.count("start", id), 2, "{:?}", setup.runs());
    assert_eq!(setup.job(id).attempts, 2);
}

#[test]
fn of_two_daemons_started_at_once_exactly_one_serves_and_the_other_names_its_pid() {
    let setup = Setup::new("");
    let mut a = setup.daemon();
    let mut b = setup.daemon();
    let (mut survivor, loser) = loop {
        if let Some(status) = a.try_wait().unwrap() {
            assert_eq!(status.code(), Some(2));
            break (b, a);
        }
        if let Some(status) = b.try_wait().unwrap() {
            assert_eq!(status.code(), Some(2));
            break (a, b);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let message = stderr_of(loser.into_child());
    assert!(
        message.contains(&format!("pid {}", survivor.id())),
        "{message}"
    );
    // The survivor serves.
    let id = setup.enqueue("test-record", None, 0);
    wait_for("the survivor to run a job", Duration::from_secs(30), || {
        setup.job(id).state == JobState::Done
    });
    // And `wharf run` says the same, with exit code 2.
    let output = Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
        .args(["--data-dir", setup.data.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("pid {}", survivor.id())),
        "{stderr}"
    );
    assert!(survivor.try_wait().unwrap().is_none(), "still serving");
    assert!(terminate(&mut survivor).success());
}

#[test]
fn a_thousand_triggers_of_a_key_during_a_run_give_exactly_one_more_run() {
    let setup = Setup::new("workers = 2");
    let mut daemon = setup.daemon();
    let first = setup.enqueue("test-record", Some("one-key"), 1000);
    wait_for("the first run to start", Duration::from_secs(30), || {
        setup.count("start", first) == 1
    });
    for _ in 0..1000 {
        assert_eq!(setup.enqueue("test-record", Some("one-key"), 1000), first);
    }
    let ended = || {
        setup
            .runs()
            .iter()
            .filter(|(event, _)| event == "end")
            .count()
    };
    wait_for("two runs", Duration::from_secs(30), || ended() == 2);
    // No third run follows: the key has no live job left.
    wait_for("the key to go idle", Duration::from_secs(10), || {
        setup
            .index
            .jobs(None, 100)
            .unwrap()
            .iter()
            .all(|job| job.state == JobState::Done)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ended(), 2, "{:?}", setup.runs());
    let keyed: Vec<_> = setup
        .index
        .jobs(None, 100)
        .unwrap()
        .into_iter()
        .filter(|job| job.unique_key.as_deref() == Some("one-key"))
        .collect();
    assert_eq!(keyed.len(), 2, "{keyed:?}");
    assert!(terminate(&mut daemon).success());
}

/// Once the daemon's startup jobs are done, a `test-record` job of `ms` that
/// makes way when the pool asks, started.
fn start_pausable(setup: &Setup, ms: u64) -> JobId {
    wait_startup(setup);
    let mut long = job("test-record", None, ms);
    long.payload = format!("{{\"ms\": {ms}, \"pausable\": true}}");
    let long = setup.index.enqueue_job(&long, now_ms()).unwrap().id();
    wait_for("the long job to start", Duration::from_secs(30), || {
        setup.count("start", long) == 1
    });
    long
}

/// Waits until the jobs a daemon queues when it starts (the startup
/// cleanup) are done, so they take no worker from a test.
fn wait_startup(setup: &Setup) {
    wait_for(
        "the startup jobs to finish",
        Duration::from_secs(30),
        || {
            let jobs = setup.index.jobs(None, 100).unwrap();
            !jobs.is_empty() && jobs.iter().all(|job| job.state.is_final())
        },
    );
}

#[test]
fn on_a_single_worker_a_long_pausable_job_makes_way_for_a_waiting_one_and_finishes_after_it() {
    let setup = Setup::new("workers = 1\ntime_slice_ms = 200");
    let mut daemon = setup.daemon();
    let long = start_pausable(&setup, 4000);
    let short = setup.enqueue("test-record", None, 10);
    wait_for("the short job to end", Duration::from_secs(30), || {
        setup.count("end", short) == 1
    });
    assert_eq!(
        setup.count("end", long),
        0,
        "the short job waited for the long one: {:?}",
        setup.runs()
    );
    assert_eq!(setup.count("yield", long), 1, "{:?}", setup.runs());
    wait_for("the long job to end", Duration::from_secs(30), || {
        setup.count("end", long) == 1
    });
    let row = setup.job(long);
    assert_eq!(
        (row.state, row.attempts),
        (JobState::Done, 1),
        "making way is not a failed attempt"
    );
    assert!(terminate(&mut daemon).success());
}

#[test]
fn on_a_single_worker_an_inbox_scan_makes_way_for_a_waiting_job_and_finishes_after_it() {
    let setup = Setup::new("");
    std::fs::write(
        setup.data.join("wharf.toml"),
        "[ingest]\nscan_interval_ms = 86400000\nfile_last_modified_ms = 0\n\
         [jobs]\nworkers = 1\ntime_slice_ms = 10\n",
    )
    .unwrap();
    let mut daemon = setup.daemon();
    wait_startup(&setup);
    const FILES: usize = 5000;
    let inbox = setup.data.join("inbox").join("drop");
    std::fs::create_dir_all(&inbox).unwrap();
    for i in 0..FILES {
        std::fs::write(inbox.join(format!("f{i:05}.bin")), format!("file {i}")).unwrap();
    }
    let mut scan = job("ingest", Some("ingest"), 0);
    scan.payload = "{}".into();
    let scan = setup.index.enqueue_job(&scan, now_ms()).unwrap().id();
    let short = setup.enqueue("test-record", None, 10);
    wait_for("both jobs done", Duration::from_secs(120), || {
        setup.job(scan).state == JobState::Done && setup.job(short).state == JobState::Done
    });
    let (scan, short) = (setup.job(scan), setup.job(short));
    assert!(
        short.finished_ms < scan.finished_ms,
        "the short job waited for the whole scan: {short:?} {scan:?}"
    );
    assert_eq!(scan.attempts, 1, "making way is not a failed attempt");
    let db = wharf::index::open_read_only(&setup.data.join("index.sqlite")).unwrap();
    let indexed: i64 = db
        .query_row(
            "SELECT count(*) FROM files WHERE state = 'ready'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        indexed, FILES as i64,
        "every file ingested, across the runs"
    );
    assert_eq!(std::fs::read_dir(&inbox).map_or(0, |d| d.count()), 0);
    assert!(terminate(&mut daemon).success());
}

#[test]
fn a_pausable_job_keeps_its_worker_when_another_worker_is_free() {
    let setup = Setup::new("workers = 2\ntime_slice_ms = 10");
    let mut daemon = setup.daemon();
    let long = start_pausable(&setup, 1500);
    let short = setup.enqueue("test-record", None, 100);
    wait_for("the long job to end", Duration::from_secs(30), || {
        setup.count("end", long) == 1
    });
    assert_eq!(setup.count("end", short), 1, "the free worker ran it");
    assert_eq!(setup.count("yield", long), 0, "{:?}", setup.runs());
    assert_eq!(setup.count("start", long), 1);
    assert!(terminate(&mut daemon).success());
}

#[test]
fn ten_thousand_jobs_over_four_workers_each_run_exactly_once() {
    let setup = Setup::new("workers = 4");
    let jobs: Vec<NewJob> = (0..10_000).map(|_| job("test-record", None, 0)).collect();
    let ids: Vec<JobId> = setup
        .index
        .enqueue_jobs(&jobs, now_ms())
        .unwrap()
        .into_iter()
        .map(|e| e.id())
        .collect();
    let mut daemon = setup.daemon();
    wait_for("10,000 jobs done", Duration::from_secs(300), || {
        setup.index.job_counts().unwrap().queued == 0
            && setup.index.job_counts().unwrap().running == 0
    });
    assert!(terminate(&mut daemon).success());
    let mut ends: HashMap<i64, usize> = HashMap::new();
    for (event, id) in setup.runs() {
        if event == "end" {
            *ends.entry(id).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(ends.get(&id.0), Some(&1), "job {id}");
    }
    assert_eq!(ends.len(), ids.len());
    let done = setup.index.jobs(Some(JobState::Done), 20_000).unwrap();
    assert_eq!(
        done.iter().filter(|job| job.kind == "test-record").count(),
        10_000
    );
}

#[test]
fn a_job_that_panics_fails_with_the_panic_message_and_the_worker_lives() {
    let setup = Setup::new("workers = 1");
    let panics = setup.enqueue("test-panic", None, 0);
    let after = setup.enqueue("test-record", None, 0);
    let mut daemon = setup.daemon();
    wait_for("both jobs to end", Duration::from_secs(30), || {
        setup.job(panics).state.is_final() && setup.job(after).state.is_final()
    });
    let failed = setup.job(panics);
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.attempts, 1, "a panic is not retried");
    let error = failed.last_error.unwrap();
    assert!(error.contains(&format!("boom in job {panics}")), "{error}");
    assert_eq!(
        setup.job(after).state,
        JobState::Done,
        "the one worker lived on"
    );
    assert!(terminate(&mut daemon).success());
    assert_eq!(setup.index.job_counts().unwrap().failed, 1);
}

#[test]
fn sigterm_drains_long_jobs_within_the_deadline_and_leaves_them_queued_for_the_next_start() {
    let setup = Setup::new("workers = 2\ndrain_timeout_ms = 1000");
    let long = setup.enqueue("test-record", None, 600_000);
    let short = setup.enqueue("test-record", None, 500);
    let mut daemon = setup.daemon();
    wait_for("both jobs to start", Duration::from_secs(30), || {
        setup.count("start", long) == 1 && setup.count("start", short) == 1
    });
    let signalled = Instant::now();
    assert!(terminate(&mut daemon).success());
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "drained in {took:?}");
    assert!(
        took >= Duration::from_millis(400),
        "the short job was let finish: {took:?}"
    );
    assert_eq!(setup.job(short).state, JobState::Done);
    let long_row = setup.job(long);
    assert_eq!(
        (long_row.state, long_row.attempts, long_row.owner),
        (JobState::Queued, 0, None),
        "released, the attempt not counted"
    );
    assert_eq!(setup.count("cancelled", long), 1);
}

#[test]
fn ingest_wait_without_a_daemon_runs_the_scan_in_process_and_jobs_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let inbox = data.join("inbox").join("set1");
    std::fs::create_dir_all(&inbox).unwrap();
    let file = inbox.join("a.bin");
    std::fs::write(&file, b"hello").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let wharf = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    let output = wharf(&["ingest", "--wait"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(data.join("files/set1/a.bin").exists());
    let listed = wharf(&["jobs", "list", "--format", "json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(jobs[0]["kind"], "ingest");
    assert_eq!(jobs[0]["state"], "done");
    let id = jobs[0]["id"].as_i64().unwrap().to_string();
    let shown = wharf(&["jobs", "show", &id, "--format", "json"]);
    let job: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(job["progress"], 5, "bytes read, as progress");
    // Finished jobs cannot be cancelled; the message says so.
    let cancel = wharf(&["jobs", "cancel", &id]);
    assert_eq!(cancel.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&cancel.stderr).contains("done already"));
    let status = wharf(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("jobs: 0 queued, 0 running, 0 failed"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

#[test]
fn cleanup_runs_at_startup_absorbing_a_pending_gc_and_a_sigusr1_storm_never_runs_two_at_once() {
    let setup = Setup::new("");
    // A GC-only run is pending (due in an hour): the startup cleanup covers it.
    let gc = setup
        .index
        .enqueue_job(
            &NewJob {
                absorbed_by: Some("cleanup".into()),
                due_ms: now_ms() + 3_600_000,
                ..job("gc", Some("gc"), 0)
            },
            now_ms(),
        )
        .unwrap()
        .id();
    let mut daemon = setup.daemon();
    let cleanups = || -> Vec<JobRow> {
        let mut rows: Vec<JobRow> = setup
            .index
            .jobs(None, 1000)
            .unwrap()
            .into_iter()
            .filter(|job| job.kind == "cleanup")
            .collect();
        rows.sort_by_key(|job| job.id);
        rows
    };
    wait_for(
        "the startup cleanup to run",
        Duration::from_secs(30),
        || cleanups().iter().any(|job| job.state == JobState::Done),
    );
    let absorbed = setup.job(gc);
    assert_eq!(absorbed.state, JobState::Cancelled);
    assert!(absorbed.last_error.unwrap().contains("absorbed"));
    assert_eq!(
        absorbed.absorbed_by,
        cleanups().first().map(|job| job.id),
        "the gc job names the run that covers it"
    );
    const SIGNALS: usize = 20;
    for _ in 0..SIGNALS {
        Command::new("kill")
            .args(["-USR1", &daemon.id().to_string()])
            .status()
            .unwrap();
    }
    wait_for(
        "a cleanup after the signals",
        Duration::from_secs(30),
        || cleanups().len() >= 2,
    );
    assert!(terminate(&mut daemon).success());
    let rows = cleanups();
    assert!(rows.len() <= 1 + SIGNALS, "{rows:?}");
    assert!(
        rows.iter().filter(|job| !job.state.is_final()).count() <= 1,
        "one live cleanup at most: {rows:?}"
    );
    // Never two at once: each run started after the one before it ended.
    for pair in rows.windows(2) {
        if let (Some(ended), Some(started)) = (pair[0].finished_ms, pair[1].started_ms) {
            assert!(started >= ended, "overlapping cleanups: {pair:?}");
        }
    }
    assert!(
        rows.iter()
            .all(|job| matches!(job.state, JobState::Done | JobState::Queued)),
        "{rows:?}"
    );
}

#[test]
fn cleanup_runs_on_its_schedule_in_a_running_daemon() {
    let setup = Setup::new("cleanup_interval_ms = 1000\nstagger_ms = 0");
    let mut daemon = setup.daemon();
    // The startup run, then at least one periodic run with no trigger.
    wait_for("two cleanup runs", Duration::from_secs(30), || {
        setup
            .index
            .jobs(Some(JobState::Done), 100)
            .unwrap()
            .iter()
            .filter(|job| job.kind == "cleanup")
            .count()
            >= 2
    });
    assert!(terminate(&mut daemon).success());
}
