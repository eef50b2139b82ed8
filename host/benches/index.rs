//! Index benchmarks, with their peer in the same run:
//!
//! 1. Build a 1,000,000-file index (10,000 entities of 100 files) through
//!    `Index::insert_files` in batches, and have the `sqlite3` shell load the
//!    same rows into the same schema (`.read schema.sql`) in one transaction,
//!    three ways: one INSERT per row as `.dump` writes them, with the shell's
//!    defaults and with wharf's settings (WAL, synchronous NORMAL, foreign
//!    keys on); and, the fastest the shell offers, `.import` of a CSV file
//!    into a staging table and one INSERT … SELECT, with wharf's settings.
//!    Every peer index is checked to hold the same rows as wharf's.
//! 2. On that index, with 1,000,000 `sync_status` rows over 2 destinations
//!    (about 4% in the backlog): the first page of the sync backlog and of
//!    the retention candidates (median of many runs, target ≤ 10 ms each),
//!    a walk through every page, the `wharf status` summary, and the
//!    `EXPLAIN QUERY PLAN` of each paged query.
//!
//! `cargo bench -p wharf --bench index` (about three minutes; `WHARF_SQLITE3`
//! names another sqlite3 binary). Results are recorded in BENCHMARKS.md.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use wharf::index::{Index, NewFile, ReadOnlyIndex, RetentionCursor, SyncCursor};

const FILES: usize = 1_000_000;
const FILES_PER_ENTITY: usize = 100;
const BATCH: usize = 10_000;
/// Files 1..=SYNCED_FILES get a sync row for each of the 2 destinations.
const SYNCED_FILES: usize = 500_000;
/// Page sizes timed for the first page; the walks use `PAGE`.
const FIRST_PAGES: [usize; 2] = [100, 1_000];
const PAGE: usize = 1_000;
const RUNS: usize = 101;
const TARGET: Duration = Duration::from_millis(10);
/// "Now" for the backlog: half the backlog is due.
const NOW_MS: i64 = 1_700_000_000_000;

/// A deterministic pseudo-random 64-bit value.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// File `i` (0-based): the same row for wharf and the peer.
struct Row {
    path: String,
    size: u64,
    sha256: String,
    entity: usize,
    created_ms: i64,
}

fn row(i: usize) -> Row {
    let n = i as u64;
    let entity = i / FILES_PER_ENTITY;
    Row {
        path: format!("files/entity-{entity:05}/{i:07}.bin"),
        size: mix(n) % (8 << 20),
        sha256: format!(
            "{:016x}{:016x}{:016x}{:016x}",
            mix(n ^ 1),
            mix(n ^ 2),
            mix(n ^ 3),
            mix(n ^ 4)
        ),
        entity,
        created_ms: NOW_MS - 86_400_000 + i as i64 * 10,
    }
}

fn new_file(i: usize) -> NewFile {
    let row = row(i);
    NewFile {
        path: row.path,
        size: row.size,
        mtime_ms: row.created_ms,
        sha256: row.sha256,
        kind: "capture".into(),
        entity: Some(format!("entity-{:05}", row.entity)),
        created_ms: row.created_ms,
    }
}

/// wharf: `insert_files` in batches. Returns the time spent inserting.
fn build_wharf(path: &Path) -> (Index, Duration) {
    let index = Index::open(path).unwrap();
    let mut inserting = Duration::ZERO;
    for start in (0..FILES).step_by(BATCH) {
        let batch: Vec<NewFile> = (start..start + BATCH).map(new_file).collect();
        let began = Instant::now();
        index.insert_files(&batch).unwrap();
        inserting += began.elapsed();
    }
    (index, inserting)
}

/// How the peer is given the rows.
#[derive(Clone, Copy)]
enum PeerInput {
    /// One INSERT statement per row.
    Dump,
    /// CSV files, imported into staging tables and copied in one statement each.
    Csv,
}

/// The peer's input: its settings, the schema, then every entity and file
/// as the index built by wharf holds them (each entity was bumped once, by
/// the batch that gave it its files), in one transaction. Returns the
/// script to `.read`.
fn write_peer_input(
    dir: &Path,
    input: PeerInput,
    settings: &str,
    schema: &Path,
) -> std::path::PathBuf {
    let script = dir.join("peer.sql");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&script).unwrap());
    writeln!(out, "{settings}").unwrap();
    writeln!(out, ".read {}", schema.display()).unwrap();
    writeln!(out, "BEGIN;").unwrap();
    if let PeerInput::Csv = input {
        let entities = dir.join("entities.csv");
        let files = dir.join("files.csv");
        write_csv(&entities, &files);
        writeln!(
            out,
            "CREATE TEMP TABLE staging_entities (id INTEGER, name TEXT, version INTEGER);
CREATE TEMP TABLE staging_files (id INTEGER, path TEXT, size INTEGER, mtime_ms INTEGER, sha256 TEXT,
                                 entity_id INTEGER, created_ms INTEGER);
.import --csv {} staging_entities
.import --csv {} staging_files
INSERT INTO entities (id, name, version) SELECT id, name, version FROM staging_entities;
INSERT INTO files (id, path, size, mtime_ms, sha256, kind, entity_id, state, created_ms)
    SELECT id, path, size, mtime_ms, sha256, 'capture', entity_id, 'ready', created_ms FROM staging_files;
COMMIT;",
            entities.display(),
            files.display()
        )
        .unwrap();
        out.flush().unwrap();
        return script;
    }
    for entity in 0..FILES / FILES_PER_ENTITY {
        writeln!(
            out,
            "INSERT INTO entities (id, name, version) VALUES ({}, 'entity-{entity:05}', 2);",
            entity + 1
        )
        .unwrap();
    }
    for i in 0..FILES {
        let row = row(i);
        writeln!(
            out,
            "INSERT INTO files (id, path, size, mtime_ms, sha256, kind, entity_id, state, created_ms) \
             VALUES ({}, '{}', {}, {}, '{}', 'capture', {}, 'ready', {});",
            i + 1,
            row.path,
            row.size,
            row.created_ms,
            row.sha256,
            row.entity + 1,
            row.created_ms
        )
        .unwrap();
    }
    writeln!(out, "COMMIT;").unwrap();
    out.flush().unwrap();
    script
}

fn write_csv(entities: &Path, files: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(entities).unwrap());
    for entity in 0..FILES / FILES_PER_ENTITY {
        writeln!(out, "{},entity-{entity:05},2", entity + 1).unwrap();
    }
    out.flush().unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(files).unwrap());
    for i in 0..FILES {
        let row = row(i);
        writeln!(
            out,
            "{},{},{},{},{},{},{}",
            i + 1,
            row.path,
            row.size,
            row.created_ms,
            row.sha256,
            row.entity + 1,
            row.created_ms
        )
        .unwrap();
    }
    out.flush().unwrap();
}

fn sqlite3() -> String {
    std::env::var("WHARF_SQLITE3").unwrap_or_else(|_| "sqlite3".into())
}

/// Runs the sqlite3 shell on `db` with `input`; its wall time.
fn run_peer(db: &Path, input: &Path) -> Duration {
    let began = Instant::now();
    let output = Command::new(sqlite3())
        .arg(db)
        .arg(format!(".read {}", input.display()))
        .output()
        .expect("the sqlite3 shell runs (set WHARF_SQLITE3 to its path)");
    let took = began.elapsed();
    assert!(
        output.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

/// What both indexes must agree on.
fn checksum(db: &Path) -> String {
    let connection = rusqlite::Connection::open(db).unwrap();
    connection
        .query_row(
            "SELECT count(*) || ' files, ids ' || sum(id) || ', bytes ' || sum(size) || ', entity ids ' || sum(entity_id)
                    || ', created ' || sum(created_ms) || ', sha ' || sum(unicode(substr(sha256, 64))) || ', paths '
                    || sum(length(path)) || '; ' || (SELECT count(*) || ' entities, versions ' || sum(version)
                    || ', names ' || sum(length(name)) FROM entities)
             FROM files",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

/// 2 destinations; files 1..=SYNCED_FILES have a row for each: 3% pending
/// and 1% failed-and-retried, with next attempts spread over the hour
/// around `NOW_MS` (so about half is due), 0.1% failed for good, the rest
/// synced.
fn add_sync_rows(db: &Path) -> Duration {
    let connection = rusqlite::Connection::open(db).unwrap();
    let began = Instant::now();
    connection
        .execute_batch(&format!(
            "BEGIN;
             INSERT INTO destinations (id, name, plugin, url) VALUES (1, 'local', 'dir', 'file:///backup'),
                                                                    (2, 's3', 'http-put', 'https://s3.example');
             INSERT INTO sync_status (file_id, destination_id, state, attempts, next_attempt_ms, last_attempt_ms,
                                      last_error, remote_ref, verified_sha256)
             SELECT id, dest, state, attempts,
                    CASE WHEN state IN ('pending', 'failed') AND h % 1000 <> 999
                         THEN {NOW_MS} - 1800000 + (h * 7919) % 3600000 END,
                    CASE WHEN state = 'failed' THEN {NOW_MS} - 600000 END,
                    CASE WHEN state = 'failed' THEN 'HTTP 503' END,
                    CASE WHEN state = 'synced' THEN sha256 END,
                    CASE WHEN state = 'synced' THEN sha256 END
             FROM (SELECT f.id, f.sha256, d.id AS dest, (f.id * 2654435761 + d.id * 40503) % 1000003 AS h,
                          CASE WHEN (f.id * 2654435761 + d.id * 40503) % 1000003 % 100 < 3 THEN 'pending'
                               WHEN (f.id * 2654435761 + d.id * 40503) % 1000003 % 100 = 3 THEN 'failed'
                               WHEN (f.id * 2654435761 + d.id * 40503) % 1000003 % 1000 = 999 THEN 'failed'
                               ELSE 'synced' END AS state,
                          CASE WHEN (f.id * 2654435761 + d.id * 40503) % 1000003 % 100 = 3 THEN 2 ELSE 1 END
                              AS attempts
                   FROM files f CROSS JOIN (SELECT id FROM destinations) d
                   WHERE f.id <= {SYNCED_FILES});
             COMMIT;"
        ))
        .unwrap();
    began.elapsed()
}

/// `f` once cold, then the median and the 95th percentile of RUNS runs.
fn time<T>(mut f: impl FnMut() -> T) -> (Duration, Duration, Duration) {
    let began = Instant::now();
    std::hint::black_box(f());
    let cold = began.elapsed();
    let mut runs: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let began = Instant::now();
            std::hint::black_box(f());
            began.elapsed()
        })
        .collect();
    runs.sort();
    (cold, runs[RUNS / 2], runs[RUNS * 95 / 100])
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let dir = tempfile::tempdir().unwrap();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema.sql");
    let sqlite_version = Command::new(sqlite3())
        .arg("--version")
        .output()
        .map_or_else(
            |_| "missing".into(),
            |o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap_or("?")
                    .to_owned()
            },
        );
    println!(
        "index bench: {FILES} files, {} entities, batches of {BATCH}",
        FILES / FILES_PER_ENTITY
    );
    println!(
        "wharf's SQLite {}, the peer's sqlite3 shell {sqlite_version}",
        rusqlite::version()
    );

    // 1. Building the index.
    let ours = dir.path().join("wharf.sqlite");
    let began = Instant::now();
    let (index, inserting) = build_wharf(&ours);
    let wall = began.elapsed();
    let our_rate = FILES as f64 / inserting.as_secs_f64();
    println!(
        "wharf insert_files: {:.2} s inserting ({:.2} s with row generation): {our_rate:.0} rows/s",
        inserting.as_secs_f64(),
        wall.as_secs_f64()
    );
    let our_sum = checksum(&ours);
    let wharf_settings =
        "PRAGMA journal_mode = WAL;\nPRAGMA synchronous = NORMAL;\nPRAGMA foreign_keys = ON;";
    let peers = [
        (
            "sqlite3 .read dump, shell defaults (rollback journal, synchronous FULL, no FK checks)",
            PeerInput::Dump,
            "",
        ),
        (
            "sqlite3 .read dump, wharf's settings (WAL, synchronous NORMAL, FK checks)",
            PeerInput::Dump,
            wharf_settings,
        ),
        (
            "sqlite3 .import CSV + INSERT…SELECT, wharf's settings",
            PeerInput::Csv,
            wharf_settings,
        ),
    ];
    let mut summary = Vec::new();
    for (n, (name, input, settings)) in peers.iter().enumerate() {
        let inputs = dir.path().join(format!("peer-{n}"));
        std::fs::create_dir(&inputs).unwrap();
        let db = dir.path().join(format!("peer-{n}.sqlite"));
        let script = write_peer_input(&inputs, *input, settings, &schema);
        let took = run_peer(&db, &script);
        std::fs::remove_dir_all(&inputs).unwrap();
        assert_eq!(
            checksum(&db),
            our_sum,
            "the peer's index differs from wharf's"
        );
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let rate = FILES as f64 / took.as_secs_f64();
        println!("{name}: {:.2} s: {rate:.0} rows/s", took.as_secs_f64());
        summary.push(format!(
            "build vs {name}: wharf/peer = {:.2}",
            our_rate / rate
        ));
    }
    println!("both indexes hold: {our_sum}");

    // 2. The paged queries on the 1M-file index.
    let took = add_sync_rows(&ours);
    let reader = ReadOnlyIndex::open(&ours).unwrap();
    let mut counts = String::new();
    reader
        .run_sql(
            "SELECT group_concat(state || ' ' || n, ', ') FROM (SELECT state, count(*) AS n FROM sync_status GROUP BY state)",
            &mut Collect(&mut counts),
        )
        .unwrap();
    println!(
        "sync_status: 1,000,000 rows added in {:.2} s: {counts}",
        took.as_secs_f64()
    );
    for plan in reader.query_plans().unwrap() {
        println!("EXPLAIN QUERY PLAN, {}:", plan.name);
        for line in &plan.lines {
            println!("    {line}");
        }
    }

    for size in FIRST_PAGES {
        let due = index.sync_due(NOW_MS, SyncCursor::START, size).unwrap();
        assert_eq!(due.len(), size);
        let (cold, median, p95) = time(|| index.sync_due(NOW_MS, SyncCursor::START, size).unwrap());
        println!(
            "sync backlog, first page of {size}: median {}, p95 {}, cold {}",
            ms(median),
            ms(p95),
            ms(cold)
        );
        summary.push(verdict(
            &format!("sync backlog first page of {size}"),
            median,
        ));
    }
    let (pages, rows, slowest, total) = walk(|cursor| {
        let page = index
            .sync_due(NOW_MS, cursor.unwrap_or(SyncCursor::START), PAGE)
            .unwrap();
        let next = page.last().map(|last| last.cursor());
        (page.len(), next)
    });
    println!(
        "sync backlog, every due row: {rows} rows in {pages} pages, {:.2} s, slowest page {}",
        total.as_secs_f64(),
        ms(slowest)
    );

    for size in FIRST_PAGES {
        let (cold, median, p95) = time(|| {
            let page = index
                .retention_candidates(RetentionCursor::START, size)
                .unwrap();
            assert_eq!(page.len(), size);
            page
        });
        println!(
            "retention candidates, first page of {size}: median {}, p95 {}, cold {}",
            ms(median),
            ms(p95),
            ms(cold)
        );
        summary.push(verdict(
            &format!("retention candidates first page of {size}"),
            median,
        ));
    }
    let (pages, rows, slowest, total) = walk(|cursor| {
        let page = index
            .retention_candidates(cursor.unwrap_or(RetentionCursor::START), PAGE)
            .unwrap();
        let next = page.last().map(|last| last.cursor());
        (page.len(), next)
    });
    assert_eq!(rows, FILES);
    println!(
        "retention candidates, all {rows} files: {pages} pages, {:.2} s, slowest page {}",
        total.as_secs_f64(),
        ms(slowest)
    );

    let began = Instant::now();
    let status = reader.status(NOW_MS).unwrap();
    println!(
        "wharf status summary: {} ({} backlog groups, {} failures)",
        ms(began.elapsed()),
        status.sync_backlog.len(),
        status.failures
    );

    println!("\nsummary:");
    for line in summary {
        println!("  {line}");
    }
}

fn verdict(what: &str, median: Duration) -> String {
    let met = if median <= TARGET { "met" } else { "MISSED" };
    format!(
        "{what}: median {} (target ≤ {}: {met})",
        ms(median),
        ms(TARGET)
    )
}

/// Pages through a query from the start; (pages, rows, slowest page, total).
fn walk<C: Copy>(
    mut page: impl FnMut(Option<C>) -> (usize, Option<C>),
) -> (usize, usize, Duration, Duration) {
    let (mut pages, mut rows, mut slowest, mut total) = (0, 0, Duration::ZERO, Duration::ZERO);
    let mut cursor = None;
    loop {
        let began = Instant::now();
        let (n, next) = page(cursor);
        let took = began.elapsed();
        if n == 0 {
            return (pages, rows, slowest, total);
        }
        (pages, rows, slowest, total) = (pages + 1, rows + n, slowest.max(took), total + took);
        cursor = next;
    }
}

/// Keeps the first value of a one-value result.
struct Collect<'a>(&'a mut String);

impl wharf::index::RowSink for Collect<'_> {
    fn columns(&mut self, _: &[String]) -> anyhow::Result<()> {
        Ok(())
    }
    fn row(&mut self, values: &[wharf::index::SqlValue]) -> anyhow::Result<()> {
        if let Some(wharf::index::SqlValue::Text(text)) = values.first() {
            self.0.push_str(text);
        }
        Ok(())
    }
}
