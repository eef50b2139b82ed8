//! Retention benchmarks, each with its peer in the same run:
//!
//! 1. Plan over a 1,000,000-file index (10,000 entities of 100 files) with
//!    the bundled keep-last (`keep = 90`: 10% deleted): reading the
//!    candidates page by page plus the plugin, through `retention::plan`,
//!    the path a cleanup takes. Target ≤ 1 s.
//! 2. Applying 100,000 deletions of real files (`retention::apply`: mark
//!    `deleting` with the safety check and an `events` row, unlink, remove
//!    the row) against `xargs rm` of the same files recreated. Target ≤ 2×.
//! 3. Candidate selection by age over 200,000 files on disk (half older
//!    than the cutoff): the index's answer to "which files are older than
//!    a day" (a range scan of `files_age`, migration 6: their ids, and
//!    their paths) vs `find DIR -type f -mmin +1440` over the same tree,
//!    warm cache. Target ≥ 10× faster. Also timed, against the same `find`:
//!    the pages a cleanup reads with `older_than_ms` (every page column,
//!    sorted by entity), and the whole `ttl` plan with and without the
//!    preselection.
//!
//! `cargo bench -p wharf --bench retention` (a few minutes; the files go
//! under `target/bench-retention`). Results are recorded in BENCHMARKS.md.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use wharf::config::Config;
use wharf::index::{FileId, Index, InsertOutcome, NewFile, now_ms, open_read_only};
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
    // The peer's copy of the same files, made now, so that both runs start
    // from files written back to disk (`sync`) rather than one racing the
    // other's writeback (the first figure, 165 s for rm, was that).
    let peer = root.join("apply-peer");
    let _ = std::fs::remove_dir_all(&peer);
    let peer_paths = make_files(&peer, FILES, None);
    std::fs::write(peer.join("list"), peer_paths.join("\n")).unwrap();
    sync();
    let started = Instant::now();
    let applied =
        retention::apply(&index, &data_dir, &planned, &who, &AtomicBool::new(false)).unwrap();
    let wharf = started.elapsed();
    assert_eq!(applied.deleted, FILES as u64);
    assert!(!data.join(&paths[0]).exists());
    sync();
    let data = peer;
    let paths = peer_paths;
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
    const DAY_MS: i64 = 86_400_000;
    // The question both answer: which files are older than a day? The
    // index's query is the one `files_age` serves (checked below).
    let db = open_read_only(&data.join("index.sqlite")).unwrap();
    let older = |column: &str| {
        format!(
            "SELECT {column} FROM files WHERE state = 'ready' \
             AND max(created_ms, mtime_ms, coalesce(last_access_ms, 0)) < ?1"
        )
    };
    let plan_text: Vec<String> = db
        .prepare(&format!("EXPLAIN QUERY PLAN {}", older("id")))
        .unwrap()
        .query_map([0], |row| row.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan_text.iter().any(|line| line.contains("files_age")),
        "{plan_text:?}"
    );
    let ttl = params(&[("max_age_ms", "86400000")]);
    let aged = Selection {
        older_than_ms: Some(DAY_MS as u64),
        ..Selection::default()
    };
    let mut runs: [Vec<Duration>; 6] = Default::default();
    for _ in 0..5 {
        let cutoff = now_ms() - DAY_MS;
        // 0: the ids of the old files.
        let started = Instant::now();
        let ids: Vec<i64> = db
            .prepare_cached(&older("id"))
            .unwrap()
            .query_map([cutoff], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        runs[0].push(started.elapsed());
        assert_eq!(ids.len(), FILES / 2);
        // 1: their paths, what find prints.
        let started = Instant::now();
        let paths: Vec<String> = db
            .prepare_cached(&older("path"))
            .unwrap()
            .query_map([cutoff], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        runs[1].push(started.elapsed());
        assert_eq!(paths.len(), FILES / 2);
        // 2: the pages a cleanup with `older_than_ms` reads.
        let started = Instant::now();
        let mut paged = 0;
        index
            .for_each_aged_page(cutoff, BATCH, now_ms(), |page| {
                paged += page.files.len();
                true
            })
            .unwrap();
        runs[2].push(started.elapsed());
        assert_eq!(paged, FILES / 2);
        // 3 and 4: ttl's whole plan, preselected and over every file.
        for (slot, selection) in [(3, &aged), (4, &Selection::default())] {
            let started = Instant::now();
            let plan = retention::plan(
                &index,
                &plugin,
                &ttl,
                selection,
                &data,
                BATCH,
                now_ms(),
                &never,
            )
            .unwrap();
            runs[slot].push(started.elapsed());
            assert_eq!(plan.planned.len(), FILES / 2);
        }
        // 5: the peer.
        let started = Instant::now();
        let output = Command::new("find")
            .args(["files", "-type", "f", "-mmin", "+1440"])
            .current_dir(&data)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        runs[5].push(started.elapsed());
        assert_eq!(
            output.stdout.iter().filter(|&&b| b == b'\n').count(),
            FILES / 2
        );
    }
    let [ids, paths, pages, preselected, full, find] = runs.map(median);
    let ratio = |wharf: Duration| find.as_secs_f64() / wharf.as_secs_f64();
    println!(
        "select by age over 200,000 files (100,000 older than a day), medians of 5; find -mmin +1440 (warm cache): {find:.2?}"
    );
    for (what, time, target) in [
        (
            "index: ids of the old files (files_age range scan)",
            ids,
            true,
        ),
        ("index: paths of the old files", paths, true),
        (
            "index: the pages a cleanup reads (older_than_ms: every column, sorted by entity)",
            pages,
            false,
        ),
        (
            "ttl plan, preselected (older_than_ms = 1 day)",
            preselected,
            false,
        ),
        ("ttl plan over every file (no preselection)", full, false),
    ] {
        let r = ratio(time);
        let verdict = match (target, r >= 10.0) {
            (false, _) => "",
            (true, true) => "; target ≥ 10×: met",
            (true, false) => "; target ≥ 10×: NOT met",
        };
        println!("  {what}: {time:.2?}: {r:.1}× find{verdict}");
    }
}

/// Writes every dirty page back, so a timed run does not pay for (or race)
/// the writeback of files made before it.
fn sync() {
    let _ = Command::new("sync").status();
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
