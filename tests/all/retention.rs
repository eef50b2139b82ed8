//! Retention runs over a real index: the host pages so that no entity is
//! ever split across batches, whatever the page size, and the policy sees
//! the entities' attributes. Cleanup through the real `wharf` binary:
//! policies applied with the host's safety and the cap, every deletion
//! audited, interrupted deletions finished, garbage plugin answers, the
//! rehearsal's output against a hand-computed expectation.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

use wharf::index::{DeletionGuard, DeletionRequest, FileId, Index, NewFile, now_ms};
use wharf::retention::rehearse;

use crate::support::*;

/// An index with `counts[i]` files in entity `e{i}` (none: of no entity),
/// the newest first by creation time; returns (index, ids by entity).
fn index_with(dir: &std::path::Path, counts: &[(Option<&str>, usize)]) -> (Index, Vec<Vec<i64>>) {
    let index = Index::open(&dir.join("index.sqlite")).unwrap();
    let mut ids = Vec::new();
    for (entity, count) in counts {
        let files: Vec<NewFile> = (0..*count)
            .map(|i| NewFile {
                path: format!("{}/{i}", entity.unwrap_or("loose")),
                size: 1,
                mtime_ms: 1,
                sha256: "a".repeat(64),
                kind: "capture".into(),
                entity: entity.map(str::to_owned),
                created_ms: 10_000 - i as i64,
            })
            .collect();
        let inserted = index.insert_files(&files).unwrap();
        ids.push(
            inserted
                .iter()
                .map(|o| match o {
                    wharf::index::InsertOutcome::Inserted(id)
                    | wharf::index::InsertOutcome::AlreadyIndexed(id) => id.0,
                })
                .collect(),
        );
    }
    (index, ids)
}

#[test]
fn keep_last_over_the_index_is_exact_for_every_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let counts = [
        (None, 3),
        (Some("a"), 7),
        (Some("b"), 1),
        (Some("c"), 12),
        (Some("d"), 4),
    ];
    let (index, ids) = index_with(dir.path(), &counts);
    let plugin = runtime(dir.path()).load(bundled("keep-last")).unwrap();
    // Keep the newest 2 of every entity (and of the files of no entity).
    let expected: BTreeSet<i64> = ids
        .iter()
        .flat_map(|group| group.iter().skip(2).copied())
        .collect();
    for page_size in [1, 2, 3, 5, 8, 100] {
        let planned = rehearse(
            &index,
            &plugin,
            &params(&[("keep", "2")]),
            dir.path(),
            page_size,
            0,
        )
        .unwrap();
        let deleted: BTreeSet<i64> = planned.iter().map(|p| p.file.0).collect();
        assert_eq!(
            deleted, expected,
            "page size {page_size}: an entity was split"
        );
        assert_eq!(planned.len(), expected.len(), "each file named once");
        assert!(planned[0].reason.contains("newest 2"));
    }
}

#[test]
fn a_policy_keeps_what_entity_attributes_say() {
    let dir = tempfile::tempdir().unwrap();
    let (index, ids) = index_with(dir.path(), &[(Some("kept"), 3), (Some("draft"), 2)]);
    index
        .set_entity_attributes("kept", &[("released".into(), "true".into())])
        .unwrap();
    let plugin = runtime(dir.path())
        .load(source(
            "hostile-retention",
            guest(wharf_tests::HOSTILE_RETENTION),
            None,
        ))
        .unwrap();
    let planned = rehearse(
        &index,
        &plugin,
        &params(&[("mode", "released")]),
        dir.path(),
        2,
        0,
    )
    .unwrap();
    let deleted: Vec<i64> = planned.iter().map(|p| p.file.0).collect();
    assert_eq!(deleted, ids[1]);
    assert!(planned.iter().all(|p| p.reason == "not released"));
}

/// A data directory with real files indexed: entity `e{i}` has `counts[i]`
/// files `files/e{i}/{j}.bin` (j = 0 the newest), each `10 * (j + 1)`
/// bytes, created well in the past.
struct Data {
    _dir: tempfile::TempDir,
    root: PathBuf,
    index: Index,
    /// Ids by entity, newest first.
    ids: Vec<Vec<FileId>>,
}

impl Data {
    fn new(counts: &[usize], toml: &str) -> Data {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("files")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::write(root.join("wharf.toml"), toml).unwrap();
        let index = Index::open(&root.join("index.sqlite")).unwrap();
        let mut ids = Vec::new();
        for (e, &count) in counts.iter().enumerate() {
            let mut files = Vec::new();
            for j in 0..count {
                let path = format!("files/e{e}/{j}.bin");
                std::fs::create_dir_all(root.join(format!("files/e{e}"))).unwrap();
                std::fs::write(root.join(&path), vec![b'x'; 10 * (j + 1)]).unwrap();
                files.push(NewFile {
                    path,
                    size: 10 * (j as u64 + 1),
                    mtime_ms: 1,
                    sha256: "a".repeat(64),
                    kind: "capture".into(),
                    entity: Some(format!("e{e}")),
                    created_ms: 1_000_000 - j as i64,
                });
            }
            let inserted = index.insert_files(&files).unwrap();
            ids.push(
                inserted
                    .into_iter()
                    .map(|o| match o {
                        wharf::index::InsertOutcome::Inserted(id)
                        | wharf::index::InsertOutcome::AlreadyIndexed(id) => id,
                    })
                    .collect(),
            );
        }
        Data {
            _dir: dir,
            root,
            index,
            ids,
        }
    }

    fn wharf(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
            .arg("--data-dir")
            .arg(&self.root)
            .args(args)
            .env("WHARF_LOG", "warn")
            .output()
            .unwrap()
    }

    fn exists(&self, e: usize, j: usize) -> bool {
        self.root.join(format!("files/e{e}/{j}.bin")).exists()
    }

    fn tracked(&self, e: usize, j: usize) -> bool {
        self.index
            .file_by_path(&format!("files/e{e}/{j}.bin"))
            .unwrap()
            .is_some()
    }

    /// Rows of `events` of `kind`: (file id, plugin, message).
    fn events(&self, kind: &str) -> Vec<(Option<i64>, Option<String>, String)> {
        let db = wharf::index::open_read_only(&self.root.join("index.sqlite")).unwrap();
        let mut query = db
            .prepare("SELECT file_id, plugin, message FROM events WHERE kind = ?1 ORDER BY id")
            .unwrap();
        query
            .query_map([kind], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const KEEP_2: &str = r#"
[cleanup]
max_delete_percent = 100
orphan_lifetime_ms = 0
[[cleanup.policy]]
name = "captures"
plugin = "keep-last"
kinds = ["capture"]
params = { keep = 2 }
"#;

#[test]
fn cleanup_wait_applies_the_policy_except_to_a_leased_file_and_audits_every_deletion() {
    let data = Data::new(&[4, 2], KEEP_2);
    // The oldest file of e0 is leased (an export reads it).
    data.index
        .try_acquire_lease(
            &format!("file:{}", data.ids[0][3].0),
            "exporter",
            3_600_000,
            now_ms(),
            None,
        )
        .unwrap();
    // An untracked file under files/ (kept: it may be a crash's only copy)
    // and a leftover in tmp/ (removed).
    std::fs::write(data.root.join("files/e0/stray.bin"), b"stray").unwrap();
    std::fs::write(data.root.join("tmp/9.1.copy.part"), b"part").unwrap();
    let output = data.wharf(&["cleanup", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    // keep-last keeps e0/0 and e0/1, deletes e0/2, refuses e0/3 (leased);
    // e1 has only its two newest.
    assert!(!data.exists(0, 2) && !data.tracked(0, 2));
    assert!(
        data.exists(0, 3) && data.tracked(0, 3),
        "the leased file stays"
    );
    for (e, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        assert!(data.exists(e, j) && data.tracked(e, j), "e{e}/{j}");
    }
    let deleted = data.events("deleted");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].0, Some(data.ids[0][2].0));
    assert_eq!(deleted[0].1.as_deref(), Some("keep-last"));
    assert!(deleted[0].2.contains("files/e0/2.bin") && deleted[0].2.contains("newest 2"));
    let summary = data.events("retention");
    assert!(summary[0].2.contains("1 leased"), "{summary:?}");
    assert!(data.root.join("files/e0/stray.bin").exists());
    assert!(!data.root.join("tmp/9.1.copy.part").exists());
    assert_eq!(data.events("orphan-removed").len(), 1);
}

#[test]
fn a_plan_over_the_cap_deletes_nothing_and_stops_with_an_error_event() {
    let data = Data::new(
        &[4],
        &KEEP_2.replace("max_delete_percent = 100", "max_delete_percent = 25"),
    );
    let output = data.wharf(&["cleanup", "--wait"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    for j in 0..4 {
        assert!(data.exists(0, j) && data.tracked(0, j));
    }
    let failed = data.events("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].2.contains("would delete 2 of its 4 files")
            && failed[0].2.contains("cleanup.max_delete_percent = 25"),
        "{failed:?}"
    );
    assert!(data.events("deleted").is_empty());
}

#[test]
fn a_policy_parameter_the_plugin_does_not_declare_is_refused_naming_the_key() {
    let data = Data::new(&[1], &KEEP_2.replace("keep = 2", "kep = 2"));
    for args in [&["cleanup", "--dry-run"][..], &["cleanup", "--wait"]] {
        let output = data.wharf(args);
        let shown = text(&output);
        assert_ne!(output.status.code(), Some(0), "{shown}");
        assert!(
            shown.contains("cleanup.policy[0].params.kep") && shown.contains("keep, min_age_ms"),
            "{shown}"
        );
    }
    assert!(data.exists(0, 0));
}

#[test]
fn interrupted_deletions_are_finished_by_the_next_cleanup_or_by_fsck() {
    let data = Data::new(&[3], "[cleanup]\norphan_lifetime_ms = 0\n");
    // A crash after the mark (file still there: e0/0, e0/1) and after the
    // unlink (file gone: e0/2), before the rows were removed.
    let requests: Vec<DeletionRequest<'_>> = data.ids[0]
        .iter()
        .map(|&file| DeletionRequest {
            file,
            reason: "test",
        })
        .collect();
    let guard = DeletionGuard {
        plugin: "keep-last",
        job: None,
        require_synced: &[],
        now_ms: now_ms(),
    };
    let (marked, _) = data.index.mark_deleting(&requests, &guard).unwrap();
    assert_eq!(marked.len(), 3);
    std::fs::remove_file(data.root.join("files/e0/2.bin")).unwrap();
    // fsck finishes them; nothing is reported lost or untracked.
    let fsck = data.wharf(&["fsck"]);
    assert!(fsck.status.success(), "{}", text(&fsck));
    assert!(String::from_utf8_lossy(&fsck.stdout).contains("deleted    files/e0/0.bin"));
    for j in 0..3 {
        assert!(!data.exists(0, j) && !data.tracked(0, j));
    }
    // And a GC-only cleanup does the same for a deletion marked later.
    let data = Data::new(&[1], "[cleanup]\norphan_lifetime_ms = 0\n");
    let one = [DeletionRequest {
        file: data.ids[0][0],
        reason: "test",
    }];
    data.index.mark_deleting(&one, &guard).unwrap();
    let output = data.wharf(&["cleanup", "--gc-only", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!data.exists(0, 0) && !data.tracked(0, 0));
    assert_eq!(data.events("deleted").len(), 1, "audited once, at the mark");
}

#[test]
fn garbage_plugin_answers_fail_the_policy_and_delete_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wasm_path = dir.path().join("hostile-retention.wasm");
    std::fs::write(&wasm_path, guest(wharf_tests::HOSTILE_RETENTION)).unwrap();
    for mode in ["dup", "stray", "again"] {
        let data = Data::new(&[3], "");
        let output = data.wharf(&[
            "cleanup",
            "--dry-run",
            "--policy",
            wasm_path.to_str().unwrap(),
            "--param",
            &format!("mode={mode}"),
        ]);
        assert_eq!(output.status.code(), Some(2), "{mode}: {}", text(&output));
        assert!(
            text(&output).contains("invalid"),
            "{mode}: {}",
            text(&output)
        );
        for j in 0..3 {
            assert!(data.exists(0, j) && data.tracked(0, j));
        }
    }
}

#[test]
fn rehearsal_prints_what_each_policy_deletes_and_the_difference_and_writes_only_an_event() {
    // e0: 4 files of 10, 20, 30, 40 bytes (newest first); e1: 2 files.
    let data = Data::new(&[4, 2], KEEP_2);
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("keep-one.wasm");
    std::fs::write(&candidate, bundled("keep-last").wasm).unwrap();
    let output = data.wharf(&[
        "cleanup",
        "--dry-run",
        "--policy",
        candidate.to_str().unwrap(),
        "--param",
        "keep=1",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // Configured keep 2: e0/2 and e0/3 (30 + 40 bytes). Candidate keep 1:
    // also e0/1 (20) and e1/1 (20).
    assert_eq!(json["configured"]["files"], 2);
    assert_eq!(json["configured"]["bytes"], 70);
    assert_eq!(json["configured"]["candidates"], 6);
    assert_eq!(json["candidate"]["files"], 4);
    assert_eq!(json["candidate"]["bytes"], 110);
    assert_eq!(json["candidate"]["name"], "keep-one");
    assert_eq!(json["only_candidate"]["files"], 2);
    assert_eq!(json["only_candidate"]["bytes"], 40);
    let first: Vec<&str> = json["only_candidate"]["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["files/e0/1.bin", "files/e1/1.bin"]);
    assert!(
        json["only_candidate"]["first"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("newest 1")
    );
    assert_eq!(json["only_configured"]["files"], 0);
    // Read-only: every file still there; one event says a rehearsal ran.
    for (e, n) in [(0, 4), (1, 2)] {
        for j in 0..n {
            assert!(data.exists(e, j) && data.tracked(e, j));
        }
    }
    assert!(data.events("deleted").is_empty());
    assert_eq!(data.events("rehearsal").len(), 1);
    // The table form reads well.
    let table = data.wharf(&[
        "cleanup",
        "--dry-run",
        "--policy",
        candidate.to_str().unwrap(),
        "--param",
        "keep=1",
    ]);
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(
        shown.contains("configured (captures): would delete 2 of 6 files, 70 B"),
        "{shown}"
    );
    assert!(
        shown.contains("candidate (keep-one): would delete 4 of 6 files, 110 B"),
        "{shown}"
    );
    assert!(
        shown.contains("only the candidate deletes 2 files, 40 B:"),
        "{shown}"
    );
    assert!(shown.contains("(dry run: nothing was deleted)"), "{shown}");
}

#[test]
fn without_a_policy_a_cleanup_only_collects_orphans() {
    let data = Data::new(
        &[3],
        "[cleanup]\norphan_lifetime_ms = 0\nremove_untracked_files = true\n",
    );
    std::fs::write(data.root.join("files/orphan.bin"), b"o").unwrap();
    let dry = data.wharf(&["cleanup", "--dry-run"]);
    let shown = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        shown.contains("no [[cleanup.policy]] configured"),
        "{shown}"
    );
    assert!(
        shown.contains("orphan GC: would remove 1 files, 1 B"),
        "{shown}"
    );
    assert!(data.root.join("files/orphan.bin").exists());
    let output = data.wharf(&["cleanup", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!data.root.join("files/orphan.bin").exists());
    for j in 0..3 {
        assert!(data.exists(0, j));
    }
}

#[test]
fn a_cleanup_killed_mid_deletion_is_consistent_after_the_next_run() {
    const FILES: usize = 3000;
    let data = Data::new(
        &[FILES],
        &KEEP_2
            .replace("keep = 2", "keep = 0")
            .replace("orphan_lifetime_ms = 0", "orphan_lifetime_ms = 600000"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
        .arg("--data-dir")
        .arg(&data.root)
        .args(["cleanup", "--wait"])
        .env("WHARF_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as deletions have begun (or it finished first).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while data.events("deleted").is_empty() && child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < until, "no deletion began");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let output = data.wharf(&["cleanup", "--gc-only", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    let mut gone = 0;
    for j in 0..FILES {
        assert_eq!(
            data.exists(0, j),
            data.tracked(0, j),
            "file {j}: index and disk disagree"
        );
        if !data.exists(0, j) {
            gone += 1;
        }
    }
    assert!(gone > 0);
    assert_eq!(
        data.events("deleted").len(),
        gone,
        "each deletion audited exactly once"
    );
    // (The test's rows carry a made-up sha256, so fsck calls the files
    // corrupt; what matters is that nothing is lost or untracked.)
    let fsck = data.wharf(&["fsck"]);
    let shown = String::from_utf8_lossy(&fsck.stdout).into_owned();
    assert!(
        shown.contains(" 0 lost,") && shown.contains(" 0 untracked,"),
        "{shown}"
    );
}

#[test]
fn bundled_ttl_deletes_only_files_untouched_past_the_ttl_through_a_cleanup() {
    // Created at 1_000_000 ms since the epoch: decades ago, older than any TTL.
    let data = Data::new(
        &[3],
        r#"
[cleanup]
max_delete_percent = 100
orphan_lifetime_ms = 600000
[[cleanup.policy]]
name = "old"
plugin = "ttl"
params = { max_age_ms = 86400000 }
"#,
    );
    // A file read for an export a moment ago counts as accessed.
    data.index
        .touch_file_access(data.ids[0][1], now_ms())
        .unwrap();
    let output = data.wharf(&["cleanup", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!data.exists(0, 0) && !data.exists(0, 2));
    assert!(data.exists(0, 1) && data.tracked(0, 1));
    let deleted = data.events("deleted");
    assert_eq!(deleted.len(), 2);
    assert!(
        deleted
            .iter()
            .all(|(_, plugin, message)| plugin.as_deref() == Some("ttl")
                && message.contains("not accessed for 86400000 ms"))
    );
}

#[test]
fn bundled_disk_pressure_deletes_nothing_while_the_disk_has_room() {
    let data = Data::new(
        &[10],
        r#"
[[cleanup.policy]]
name = "room"
plugin = "disk-pressure"
params = { min_free_percent = 1, nth = 2 }
"#,
    );
    let output = data.wharf(&["cleanup", "--dry-run", "--format", "json"]);
    assert!(output.status.success(), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["configured"]["candidates"], 10);
    assert_eq!(
        json["configured"]["files"], 0,
        "the test machine's disk is not 99% full"
    );
}
