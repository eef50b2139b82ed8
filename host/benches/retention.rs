//! Retention benchmarks, each with its peer in the same run:
//!
//! 1. Plan over a 1,000,000-file index (10,000 entities of 100 files) with
//!    the bundled keep-last (`keep = 90`: 10% deleted): reading the
//!    candidates page by page plus the plugin, through `retention::plan`,
//!    the path a cleanup takes. Target ≤ 1 s.
//! 2. Applying 100,000 deletions of real files (`retention::apply`: mark
//!    `deleting` with the safety check and an `events` row, unlink, remove
//!    the row) against `xargs rm` of the same files recreated. Target ≤ 2×.
//! 3. Candidate selection by age over 200,000 files on disk: `ttl` through
//!    `retention::plan` on the index vs `find DIR -type f -mmin +N` over
//!    the same tree (half the files older than the cutoff). Target ≥ 10×
//!    faster.
//!
//! `cargo bench -p wharf --bench retention` (a few minutes; the files go
//! under `target/bench-retention`). Results are recorded in BENCHMARKS.md.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use wharf::config::Config;
use wharf::index::{FileId, Index, InsertOutcome, NewFile, now_ms};
use wharf::retention::{self, ApplyAs, Planned, Selection};
use wharf::runtime::{Plugin, Runtime};
use wharf::store::DataDir;

const BATCH: usize = 10_000;

fn runtime(dir: &Path) -> Runtime {
    Runtime::new(Config::default().runtime_config(&dir.join("compiled"))).unwrap()
}

fn bundled(runtime: &Runtime, name: &str) -> Plugin {
    let source = wharf::plugins::bundled(Config::default().plugin_limits())
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    runtime.load(source).unwrap()
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

fn new_file(path: String, entity: usize, created_ms: i64) -> NewFile {
    NewFile {
        path,
        size: 1,
        mtime_ms: created_ms,
        sha256: "a".repeat(64),
        kind: "capture".into(),
        entity: Some(format!("entity-{entity:05}")),
        created_ms,
    }
}

fn ids(outcomes: Vec<InsertOutcome>) -> Vec<FileId> {
    outcomes
        .into_iter()
        .map(|o| match o {
            InsertOutcome::Inserted(id) | InsertOutcome::AlreadyIndexed(id) => id,
        })
        .collect()
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn plan_1m(root: &Path, runtime: &Runtime) {
    const FILES: usize = 1_000_000;
    let index = Index::open(&root.join("plan.sqlite")).unwrap();
    let started = Instant::now();
    let now = now_ms();
    for start in (0..FILES).step_by(BATCH) {
        let batch: Vec<NewFile> = (start..start + BATCH)
            .map(|i| {
                new_file(
                    format!("files/entity-{:05}/{i:07}.bin", i / 100),
                    i / 100,
                    now - 1_000_000 + i as i64,
                )
            })
            .collect();
        index.insert_files(&batch).unwrap();
    }
    println!(
        "built the 1,000,000-file index in {:.1?}",
        started.elapsed()
    );
    let plugin = bundled(runtime, "keep-last");
    let never = AtomicBool::new(false);
    let mut runs = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let plan = retention::plan(
            &index,
            &plugin,
            &params(&[("keep", "90")]),
            &Selection::default(),
            root,
            BATCH,
            now_ms(),
            &never,
        )
        .unwrap();
        runs.push(started.elapsed());
        assert_eq!(plan.candidates, FILES as u64);
        assert_eq!(plan.planned.len(), FILES / 10);
    }
    let m = median(runs.clone());
    println!(
        "plan 1,000,000 files with keep-last (100,000 deleted): median {m:.2?} of {runs:.2?}; target ≤ 1 s: {}",
        if m <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// Creates `n` one-byte files under `dir/files/entity-*/` and returns
/// their index paths.
fn make_files(data: &Path, n: usize, old: Option<SystemTime>) -> Vec<String> {
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let relative = format!("files/entity-{:05}/{i:07}.bin", i / 100);
        let real = data.join(&relative);
        if i.is_multiple_of(100) {
            std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        }
        std::fs::write(&real, b"x").unwrap();
        if let Some(time) = old.filter(|_| i.is_multiple_of(2)) {
            std::fs::File::options()
                .write(true)
                .open(&real)
                .unwrap()
                .set_modified(time)
                .unwrap();
        }
        paths.push(relative);
    }
    paths
}

fn apply_100k(root: &Path) {
    const FILES: usize = 100_000;
    let data = root.join("apply");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let data_dir = DataDir::new(&data);
    let index = Index::open(&data.join("index.sqlite")).unwrap();
    let paths = make_files(&data, FILES, None);
    let now = now_ms();
    let mut planned = Vec::with_capacity(FILES);
    for (chunk_start, chunk) in paths.chunks(BATCH).enumerate() {
        let batch: Vec<NewFile> = chunk
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let i = chunk_start * BATCH + j;
                new_file(p.clone(), i / 100, now - i as i64)
            })
            .collect();
        for id in ids(index.insert_files(&batch).unwrap()) {
            planned.push(Planned {
                file: id,
                reason: "bench".into(),
                size: 1,
                flags: 1,
            });
        }
    }
    let who = ApplyAs {
        plugin: "keep-last",
        job: None,
        require_synced: &[],
        now_ms: now,
    };
    let started = Instant::now();
    let applied =
        retention::apply(&index, &data_dir, &planned, &who, &AtomicBool::new(false)).unwrap();
    let wharf = started.elapsed();
    assert_eq!(applied.deleted, FILES as u64);
    // The peer: the same files again, removed by rm.
    let paths = make_files(&data, FILES, None);
    let list = data.join("list");
    std::fs::write(&list, paths.join("\n")).unwrap();
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg("xargs rm -f < list")
        .current_dir(&data)
        .status()
        .unwrap();
    let rm = started.elapsed();
    assert!(status.success());
    assert!(!data.join(&paths[0]).exists());
    let ratio = wharf.as_secs_f64() / rm.as_secs_f64();
    println!(
        "apply 100,000 deletions: wharf {wharf:.2?}, xargs rm {rm:.2?}: {ratio:.2}×; target ≤ 2×: {}",
        if ratio <= 2.0 { "met" } else { "NOT met" }
    );
}

fn select_by_age_200k(root: &Path, runtime: &Runtime) {
    const FILES: usize = 200_000;
    let data = root.join("age");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let index = Index::open(&data.join("index.sqlite")).unwrap();
    // Half the files two days old, half new; the cutoff is one day.
    let old = SystemTime::now() - Duration::from_secs(2 * 86_400);
    let paths = make_files(&data, FILES, Some(old));
    let now = now_ms();
    let old_ms = now - 2 * 86_400_000;
    for (chunk_start, chunk) in paths.chunks(BATCH).enumerate() {
        let batch: Vec<NewFile> = chunk
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let i = chunk_start * BATCH + j;
                new_file(
                    p.clone(),
                    i / 100,
                    if i.is_multiple_of(2) { old_ms } else { now },
                )
            })
            .collect();
        index.insert_files(&batch).unwrap();
    }
    let plugin = bundled(runtime, "ttl");
    let never = AtomicBool::new(false);
    let mut wharf_runs = Vec::new();
    let mut find_runs = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let plan = retention::plan(
            &index,
            &plugin,
            &params(&[("max_age_ms", "86400000")]),
            &Selection::default(),
            &data,
            BATCH,
            now_ms(),
            &never,
        )
        .unwrap();
        wharf_runs.push(started.elapsed());
        assert_eq!(plan.planned.len(), FILES / 2);
        let started = Instant::now();
        let output = Command::new("find")
            .args(["files", "-type", "f", "-mmin", "+1440"])
            .current_dir(&data)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        find_runs.push(started.elapsed());
        assert_eq!(
            output.stdout.iter().filter(|&&b| b == b'\n').count(),
            FILES / 2
        );
    }
    let (wharf, find) = (median(wharf_runs), median(find_runs));
    let ratio = find.as_secs_f64() / wharf.as_secs_f64();
    println!(
        "select by age over 200,000 files: wharf (ttl over the index) {wharf:.2?}, find -mmin (warm cache) {find:.2?}: wharf {ratio:.1}× faster; target ≥ 10×: {}",
        if ratio >= 10.0 { "met" } else { "NOT met" }
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-retention");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let runtime = runtime(&root);
    plan_1m(&root, &runtime);
    apply_100k(&root);
    select_by_age_200k(&root, &runtime);
    let _ = std::fs::remove_dir_all(&root);
}
