//! `wharf sql` and `wharf status` run as separate processes on a real index,
//! including while another writer is inserting into it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wharf::index::{FileState, Index, InsertOutcome, NewFile, now_ms};

/// Runs the real `wharf` binary on the data directory `data`.
fn wharf(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("WHARF_LOG")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// `wharf sql` that must succeed; its stdout.
fn sql(data: &Path, args: &[&str]) -> String {
    let output = wharf(data, &[&["sql"], args].concat());
    assert!(
        output.status.success(),
        "wharf sql {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

fn new_file(path: &str, entity: Option<&str>, kind: &str, size: u64) -> NewFile {
    NewFile {
        path: path.into(),
        size,
        mtime_ms: 1,
        sha256: "c".repeat(64),
        kind: kind.into(),
        entity: entity.map(str::to_owned),
        created_ms: 1,
    }
}

/// A data directory with an index holding three captures of `set` and one
/// export of no entity.
fn data_dir() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
    index
        .insert_files(&[
            new_file("files/set/a.bin", Some("set"), "capture", 100),
            new_file("files/set/b.bin", Some("set"), "capture", 200),
            new_file("files/set/c.bin", Some("set"), "capture", 300),
            new_file("files/exports/x.tar", None, "export", 50),
        ])
        .unwrap();
    (dir, index)
}

#[test]
fn sql_refuses_writes_with_a_clear_message_and_changes_nothing() {
    let (dir, index) = data_dir();
    let data = dir.path();
    let other = data.join("other.sqlite");
    let fingerprint = || {
        sql(
            data,
            &[
                "--format",
                "csv",
                "SELECT (SELECT count(*) FROM files), (SELECT sum(size) FROM files), \
                 (SELECT count(*) FROM entities), (SELECT count(*) FROM sqlite_master), \
                 (SELECT group_concat(name) FROM pragma_table_info('files'))",
            ],
        ) + &sql(data, &["PRAGMA user_version"])
            + &sql(data, &["PRAGMA journal_mode"])
    };
    let before = fingerprint();
    assert!(before.contains("4,650,1,"), "{before}");
    let writes = [
        "INSERT INTO files (path, size, mtime_ms, sha256, created_ms) VALUES ('p', 1, 1, 'x', 1)"
            .to_owned(),
        "UPDATE files SET size = 0".into(),
        "DELETE FROM files".into(),
        "DROP TABLE files".into(),
        "DROP VIEW failures".into(),
        "CREATE TABLE scratch (a)".into(),
        "ALTER TABLE files ADD COLUMN extra".into(),
        format!("ATTACH '{}' AS other", other.display()),
        "ATTACH ':memory:' AS scratch".into(),
        format!("VACUUM INTO '{}'", other.display()),
        "PRAGMA user_version = 42".into(),
        "PRAGMA journal_mode = DELETE".into(),
        "PRAGMA wal_checkpoint(TRUNCATE)".into(),
    ];
    for statement in &writes {
        let output = wharf(data, &["sql", statement]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{statement}: {message}");
        assert!(
            message.contains("wharf sql is read-only") && message.contains("nothing was changed"),
            "{statement}: {message}"
        );
        assert!(stdout(&output).is_empty(), "{statement} printed something");
    }
    assert_eq!(fingerprint(), before);
    assert!(
        !other.exists(),
        "a refused statement created {}",
        other.display()
    );
    // The writer still works: the refused statements left no lock behind.
    index
        .insert_files(&[new_file("files/set/d.bin", Some("set"), "capture", 1)])
        .unwrap();
}

#[test]
fn sql_prints_a_table_csv_and_json() {
    let (dir, _index) = data_dir();
    let data = dir.path();
    let query = "SELECT path, size, NULL AS empty, 'a,\"b\"' AS text, x'00ff' AS bytes \
                 FROM files WHERE kind = 'capture' ORDER BY path LIMIT 2";
    assert_eq!(
        sql(data, &[query]),
        "path             size  empty  text   bytes\n\
         ---------------  ----  -----  -----  -------\n\
         files/set/a.bin   100         a,\"b\"  x'00ff'\n\
         files/set/b.bin   200         a,\"b\"  x'00ff'\n\
         (2 rows)\n"
    );
    assert_eq!(
        sql(data, &["--format", "csv", query]),
        "path,size,empty,text,bytes\n\
         files/set/a.bin,100,,\"a,\"\"b\"\"\",00ff\n\
         files/set/b.bin,200,,\"a,\"\"b\"\"\",00ff\n"
    );
    assert_eq!(
        sql(data, &["--format", "json", query]),
        "[\n\
         {\"path\":\"files/set/a.bin\",\"size\":100,\"empty\":null,\"text\":\"a,\\\"b\\\"\",\"bytes\":\"00ff\"},\n\
         {\"path\":\"files/set/b.bin\",\"size\":200,\"empty\":null,\"text\":\"a,\\\"b\\\"\",\"bytes\":\"00ff\"}\n\
         ]\n"
    );
    // The documented views answer.
    let usage = sql(
        data,
        &[
            "--format",
            "csv",
            "SELECT kind, entity, files, bytes FROM disk_usage ORDER BY kind",
        ],
    );
    assert_eq!(
        usage,
        "kind,entity,files,bytes\ncapture,set,3,600\nexport,,1,50\n"
    );
}

#[test]
fn sql_errors_say_what_to_do() {
    let (dir, _index) = data_dir();
    let output = wharf(dir.path(), &["sql", "SELEC path FROM files"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("near \"SELEC\": syntax error"),
        "{}",
        stderr(&output)
    );
    let output = wharf(dir.path(), &["sql", "SELECT * FROM nothing_here"]);
    assert!(
        stderr(&output).contains("no such table: nothing_here"),
        "{}",
        stderr(&output)
    );
    let empty = tempfile::tempdir().unwrap();
    for command in [&["sql", "SELECT 1"][..], &["status"]] {
        let output = wharf(empty.path(), command);
        assert_eq!(output.status.code(), Some(2));
        assert!(
            stderr(&output).contains("run `wharf init`"),
            "{}",
            stderr(&output)
        );
        assert!(
            !empty.path().join("index.sqlite").exists(),
            "inspection created an index"
        );
    }
}

#[test]
fn status_summarizes_files_failures_and_leases() {
    let (dir, index) = data_dir();
    let lost = index.file_by_path("files/set/c.bin").unwrap().unwrap();
    index
        .set_file_state(lost.id, FileState::Lost, "missing on disk")
        .unwrap();
    let now = now_ms();
    index
        .try_acquire_lease("retention", "host:1:1", 1000, now - 3_600_000, None)
        .unwrap();
    index
        .try_acquire_lease("sync", "host:2:2", 600_000, now, None)
        .unwrap();
    let output = wharf(dir.path(), &["status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let schema = format!("schema version {}", index.schema_version().unwrap());
    for expected in [
        schema.as_str(),
        "files: 4 (650 B)",
        "  lost   capture      1  300 B",
        "  ready  capture      2  300 B",
        "  ready  export       1   50 B",
        "sync backlog: none",
        "jobs: 0 queued, 0 running, 0 failed",
        "failures: none",
        "leases: 2 (1 stale)",
        "  retention  host:1:1  expired 59m ago (stale",
        "  sync       host:2:2  expires in 9m",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn sql_and_status_run_while_another_writer_inserts() {
    let (dir, index) = data_dir();
    let index = Arc::new(index);
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicU64::new(0));
    // At most 2,000 batches of 100 rows, stopped as soon as the readers are done.
    let writer = {
        let (index, stop, batches) = (index.clone(), stop.clone(), batches.clone());
        std::thread::spawn(move || {
            for batch in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let files: Vec<NewFile> = (0..100)
                    .map(|n| new_file(&format!("files/w/{batch}/{n}"), Some("w"), "capture", 1))
                    .collect();
                let outcomes = index.insert_files(&files).unwrap();
                assert!(
                    outcomes
                        .iter()
                        .all(|o| matches!(o, InsertOutcome::Inserted(_)))
                );
                batches.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while batches.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the writer never committed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let count = sql(
            dir.path(),
            &["--format", "csv", "SELECT count(*) AS n FROM files"],
        );
        let count: u64 = count.trim().strip_prefix("n\n").unwrap().parse().unwrap();
        seen.push(count);
        let output = wharf(dir.path(), &["status"]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("ready  capture"),
            "{}",
            stdout(&output)
        );
    }
    let committed_while_reading = batches.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = 4 + 100 * batches.load(Ordering::Relaxed);
    // Each read sees a committed state: whole batches, never going back.
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        seen.iter()
            .all(|n| (n - 4) % 100 == 0 && *n >= 104 && *n <= total),
        "{seen:?} of {total}"
    );
    assert!(committed_while_reading >= 1);
}
