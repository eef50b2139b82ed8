//! Tests of `wharf sql`, `wharf status` and the paged queries.

use rusqlite::params;

use super::*;
use crate::index::{FileId, FileState, Index, InsertOutcome, NewFile, SyncCursor, SyncDue};

struct Collect(Vec<String>, Vec<Vec<SqlValue>>);

impl RowSink for Collect {
    fn columns(&mut self, names: &[String]) -> anyhow::Result<()> {
        self.0 = names.to_vec();
        Ok(())
    }
    fn row(&mut self, values: &[SqlValue]) -> anyhow::Result<()> {
        self.1.push(values.to_vec());
        Ok(())
    }
}

fn collect(index: &ReadOnlyIndex, sql: &str) -> anyhow::Result<Collect> {
    let mut sink = Collect(Vec::new(), Vec::new());
    index.run_sql(sql, &mut sink)?;
    Ok(sink)
}

fn file(path: &str, entity: Option<&str>, created_ms: i64) -> NewFile {
    NewFile {
        path: path.into(),
        size: 10,
        mtime_ms: 1,
        sha256: "a".repeat(64),
        kind: "capture".into(),
        entity: entity.map(str::to_owned),
        created_ms,
    }
}

fn ids(outcomes: &[InsertOutcome]) -> Vec<i64> {
    outcomes
        .iter()
        .map(|o| match o {
            InsertOutcome::Inserted(id) | InsertOutcome::AlreadyIndexed(id) => id.0,
        })
        .collect()
}

fn setup() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
    (dir, index)
}

fn read_only(index: &Index) -> ReadOnlyIndex {
    ReadOnlyIndex::open(index.path()).unwrap()
}

/// Everything a write could change: the schema, the row counts, the
/// header fields.
fn fingerprint(index: &Index) -> String {
    index
        .read(|db| {
            db.query_row(
                "SELECT (SELECT group_concat(sql, ';') FROM sqlite_master)
                    || (SELECT count(*) || '/' || sum(size) FROM files) || (SELECT count(*) FROM entities)",
                [],
                |row| row.get::<_, String>(0),
            )
            .map(|text| {
                let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
                let mode: String = db.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
                format!("{text} v{version} {mode}")
            })
        })
        .unwrap()
}

#[test]
fn sql_returns_columns_and_typed_values() {
    let (_dir, index) = setup();
    index
        .insert_files(&[file("files/a", Some("set"), 5)])
        .unwrap();
    let result = collect(
        &read_only(&index),
        "SELECT path, size, NULL AS empty, 2.5 AS real, x'00ff' AS blob, entity FROM files \
         JOIN disk_usage USING (kind)",
    )
    .unwrap();
    assert_eq!(
        result.0,
        ["path", "size", "empty", "real", "blob", "entity"]
    );
    assert_eq!(
        result.1,
        [vec![
            SqlValue::Text("files/a".into()),
            SqlValue::Integer(10),
            SqlValue::Null,
            SqlValue::Real(2.5),
            SqlValue::Blob(vec![0, 255]),
            SqlValue::Text("set".into()),
        ]]
    );
}

#[test]
fn sql_refuses_every_kind_of_write_and_changes_nothing() {
    let (dir, index) = setup();
    index
        .insert_files(&[file("files/a", Some("set"), 5)])
        .unwrap();
    let before = fingerprint(&index);
    let other = dir.path().join("other.sqlite");
    let statements = [
        "INSERT INTO entities (name) VALUES ('x')".to_owned(),
        "UPDATE files SET size = 0".into(),
        "DELETE FROM files".into(),
        "  -- a comment first\n/* and another */ DELETE FROM files".into(),
        "WITH doomed AS (SELECT id FROM files) DELETE FROM files WHERE id IN doomed".into(),
        "INSERT INTO entities (name) VALUES ('y') RETURNING id".into(),
        "REPLACE INTO entities (id, name) VALUES (1, 'z')".into(),
        "DROP TABLE events".into(),
        "DROP VIEW failures".into(),
        "DROP INDEX files_retention".into(),
        "CREATE TABLE t (a)".into(),
        "CREATE TEMP TABLE t (a)".into(),
        "CREATE INDEX x ON files (size)".into(),
        "ALTER TABLE files ADD COLUMN x".into(),
        format!("ATTACH '{}' AS other", other.display()),
        "ATTACH ':memory:' AS scratch".into(),
        "DETACH main".into(),
        "VACUUM".into(),
        format!("VACUUM INTO '{}'", other.display()),
        "REINDEX".into(),
        "ANALYZE".into(),
        "PRAGMA user_version = 7".into(),
        "PRAGMA schema_version = 99".into(),
        "PRAGMA journal_mode = DELETE".into(),
        "PRAGMA application_id = 5".into(),
        "PRAGMA auto_vacuum = FULL".into(),
        "PRAGMA main.user_version = 7".into(),
        "PRAGMA user_version(7)".into(),
        "pragma /* sneaky */ Main . USER_VERSION=7".into(),
        "PRAGMA query_only = 0".into(),
        "PRAGMA foreign_keys = OFF".into(),
        "PRAGMA wal_checkpoint(TRUNCATE)".into(),
        "PRAGMA wal_checkpoint".into(),
        "PRAGMA incremental_vacuum(10)".into(),
        "PRAGMA optimize".into(),
    ];
    let reader = read_only(&index);
    for statement in &statements {
        let message = match collect(&reader, statement) {
            Ok(_) => panic!("{statement} ran"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            message.contains("wharf sql is read-only"),
            "{statement}: {message}"
        );
        assert_eq!(fingerprint(&index), before, "{statement} changed the index");
    }
    assert!(
        !other.exists(),
        "a refused statement created {}",
        other.display()
    );
}

#[test]
fn sql_errors_say_what_is_wrong() {
    let (_dir, index) = setup();
    let reader = read_only(&index);
    let message = |sql: &str| format!("{:#}", collect(&reader, sql).err().unwrap());
    assert!(
        message("SELEC 1").contains("syntax error"),
        "{}",
        message("SELEC 1")
    );
    assert!(message("SELECT * FROM nope").contains("no such table: nope"));
    assert!(message("SELECT 1; SELECT 2").contains("one statement at a time"));
    assert!(message("SELECT ?").contains("parameters"));
    assert!(message("  ").contains("no SQL statement"));
    // Reading, explaining and trailing semicolons are fine.
    assert_eq!(
        collect(&reader, "SELECT 1;").unwrap().1,
        [vec![SqlValue::Integer(1)]]
    );
    assert!(
        !collect(&reader, "EXPLAIN QUERY PLAN DELETE FROM files")
            .unwrap()
            .1
            .is_empty()
    );
    for reading in [
        "PRAGMA table_info(files)",
        "PRAGMA main.index_list = files",
        "PRAGMA journal_mode",
        "PRAGMA user_version",
    ] {
        assert!(
            !collect(&reader, reading).unwrap().1.is_empty(),
            "{reading}"
        );
    }
}

#[test]
fn a_missing_or_empty_index_says_to_run_init() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("index.sqlite");
    let error = ReadOnlyIndex::open(&missing).unwrap_err().to_string();
    assert!(error.contains("wharf init"), "{error}");
    Connection::open(&missing)
        .unwrap()
        .execute_batch("CREATE TABLE x (a)")
        .unwrap();
    let error = ReadOnlyIndex::open(&missing).unwrap_err().to_string();
    assert!(error.contains("wharf init"), "{error}");
}

#[test]
fn the_index_reads_after_its_writer_has_closed() {
    // A closed WAL index has no -wal or -shm file; reading must not need one.
    let (dir, index) = setup();
    index.insert_files(&[file("files/a", None, 1)]).unwrap();
    drop(index);
    let reader = ReadOnlyIndex::open(&dir.path().join("index.sqlite")).unwrap();
    assert_eq!(
        collect(&reader, "SELECT count(*) FROM files").unwrap().1,
        [vec![SqlValue::Integer(1)]]
    );
}

/// Two destinations, files 1..=6 with sync rows in every state.
fn sync_fixture(index: &Index) -> Vec<i64> {
    let paths: Vec<NewFile> = (1..=6)
        .map(|n| file(&format!("files/{n}"), Some("set"), n))
        .collect();
    let ids = ids(&index.insert_files(&paths).unwrap());
    index
        .write(|tx| {
            tx.execute_batch(
                "INSERT INTO destinations (id, name, plugin, url) VALUES (1, 'local', 'dir', 'file:///b'),
                                                                       (2, 's3', 'http-put', 'https://s3');",
            )?;
            let mut insert = tx.prepare(
                "INSERT INTO sync_status (file_id, destination_id, state, attempts, next_attempt_ms,
                                          last_attempt_ms, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            // (file, destination, state, attempts, next attempt, error)
            type SyncRow<'a> = (usize, i64, &'a str, i64, Option<i64>, Option<&'a str>);
            let rows: [SyncRow<'_>; 8] = [
                (0, 1, "pending", 0, Some(100), None),
                (1, 1, "pending", 0, Some(100), None),
                (2, 1, "failed", 2, Some(50), Some("timeout")),
                (3, 1, "pending", 0, Some(5000), None), // not due yet
                (4, 1, "synced", 1, None, None),
                (5, 1, "failed", 5, None, Some("403 forbidden")), // failed for good
                (0, 2, "in_progress", 1, Some(90), None),
                (1, 2, "pending", 0, Some(100), None),
            ];
            for (file, destination, state, attempts, next, error) in rows {
                insert.execute(params![ids[file], destination, state, attempts, next, 700, error])?;
            }
            Ok(())
        })
        .unwrap();
    ids
}

#[test]
fn sync_due_pages_through_due_rows_in_next_attempt_order() {
    let (_dir, index) = setup();
    let ids = sync_fixture(&index);
    let key = |row: &SyncDue| (row.file_id.0, row.destination_id.0);
    let all = index.sync_due(1000, SyncCursor::START, 100).unwrap();
    assert_eq!(
        all.iter().map(key).collect::<Vec<_>>(),
        [(ids[2], 1), (ids[0], 1), (ids[1], 1), (ids[1], 2)]
    );
    assert_eq!(
        (all[0].state.as_str(), all[0].attempts, all[0].path.as_str()),
        ("failed", 2, "files/3")
    );
    // Page by page, the same rows in the same order, none twice.
    let mut paged = Vec::new();
    let mut cursor = SyncCursor::START;
    loop {
        let page = index.sync_due(1000, cursor, 1).unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor();
        paged.extend(page);
    }
    assert_eq!(paged, all);
    // Before anything is due, nothing.
    assert!(
        index
            .sync_due(10, SyncCursor::START, 100)
            .unwrap()
            .is_empty()
    );
}
#[test]
fn the_paged_queries_use_their_indexes_and_never_sort() {
    let (_dir, index) = setup();
    let plans = read_only(&index).query_plans().unwrap();
    let plan = |name: &str| {
        plans
            .iter()
            .find(|p| p.name.contains(name))
            .unwrap()
            .lines
            .join("\n")
    };
    for (name, index_name) in [
        ("sync backlog", "USING COVERING INDEX sync_status_backlog"),
        ("rest of an entity", "USING INDEX files_retention"),
        ("later entities", "USING INDEX files_retention"),
    ] {
        let plan = plan(name);
        assert!(plan.contains(index_name), "{name}:\n{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{name} sorts:\n{plan}");
        assert!(!plan.contains("SCAN"), "{name} scans:\n{plan}");
    }
}

#[test]
fn status_counts_files_backlog_failures_and_leases() {
    let (_dir, index) = setup();
    let ids = sync_fixture(&index);
    index
        .insert_files(&[NewFile {
            kind: "export".into(),
            size: 7,
            ..file("files/x", None, 1)
        }])
        .unwrap();
    index
        .set_file_state(FileId(ids[4]), FileState::Lost, "gone")
        .unwrap();
    index
        .write(|tx| {
            tx.execute(
                "INSERT INTO jobs (kind, state, next_attempt_ms, last_error, created_ms, finished_ms)
                 VALUES ('export', 'failed', 0, 'plugin trapped', 1, 900)",
                [],
            )
        })
        .unwrap();
    index
        .try_acquire_lease("gc", "host:1:1", 100, 0, None)
        .unwrap();
    index
        .try_acquire_lease("sync", "host:2:2", 10_000, 0, None)
        .unwrap();
    for status in [
        index.status(1000).unwrap(),
        read_only(&index).status(1000).unwrap(),
    ] {
        let files: Vec<_> = status
            .files
            .iter()
            .map(|c| (c.state.as_str(), c.kind.as_str(), c.files, c.bytes))
            .collect();
        assert_eq!(
            files,
            [
                ("lost", "capture", 1, 10),
                ("ready", "capture", 5, 50),
                ("ready", "export", 1, 7)
            ]
        );
        let backlog: Vec<_> = status
            .sync_backlog
            .iter()
            .map(|c| {
                (
                    c.destination.as_str(),
                    c.state.as_str(),
                    c.files,
                    c.bytes,
                    c.due,
                )
            })
            .collect();
        assert_eq!(
            backlog,
            [
                ("local", "failed", 1, 10, 1),
                ("local", "pending", 3, 30, 2),
                ("s3", "in_progress", 1, 10, 0),
                ("s3", "pending", 1, 10, 1)
            ]
        );
        assert_eq!(status.failures, 2);
        let failures: Vec<_> = status
            .latest_failures
            .iter()
            .map(|f| (f.what.as_str(), f.error.as_deref(), f.at_ms))
            .collect();
        assert_eq!(
            failures,
            [
                ("job", Some("plugin trapped"), Some(900)),
                ("sync", Some("403 forbidden"), Some(700))
            ]
        );
        let leases: Vec<_> = status
            .leases
            .iter()
            .map(|l| (l.name.as_str(), l.stale))
            .collect();
        assert_eq!(leases, [("gc", true), ("sync", false)]);
        assert_eq!(
            status.jobs,
            crate::index::JobCounts {
                queued: 0,
                running: 0,
                failed: 1
            }
        );
    }
}

#[test]
fn the_documented_views_read() {
    let (_dir, index) = setup();
    sync_fixture(&index);
    let reader = read_only(&index);
    for view in [
        "sync_backlog",
        "disk_usage",
        "stale_locks",
        "export_cache",
        "failures",
    ] {
        collect(&reader, &format!("SELECT * FROM {view}")).unwrap();
    }
    let backlog = collect(&reader, "SELECT state FROM sync_backlog")
        .unwrap()
        .1;
    assert_eq!(
        backlog.len(),
        6,
        "pending, retried and in-progress rows: {backlog:?}"
    );
}
