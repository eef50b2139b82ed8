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
                    // Each dataset older than the one before it.
                    created_ms: 1_000_000 - 1000 * e as i64 - j as i64,
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
        &KEEP_2.replace(
            "max_delete_percent = 100",
            "max_delete_percent = 25\nmax_delete_min_candidates = 4",
        ),
    );
    let output = data.wharf(&["cleanup", "--wait"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    for j in 0..4 {
        assert!(data.exists(0, j) && data.tracked(0, j));
    }
    let failed = data.events("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    // The error says which keys raise the cap.
    let message = &failed[0].2;
    for expected in [
        "would delete 2 of its 4 files",
        "its cap of 25%",
        "`max_delete_percent` in this [[cleanup.policy]]",
        "`cleanup.max_delete_percent`",
        "`cleanup.max_delete_min_candidates` = 4",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert!(data.events("deleted").is_empty());
}

/// Regression (issue 12): the 50 % default cap stopped keep-last keeping 1
/// of 3 files. Under `max_delete_min_candidates` a plan is not capped; above
/// it a policy's own `max_delete_percent` lets it through.
#[test]
fn keep_one_of_three_runs_under_the_default_cap_and_a_policy_may_raise_its_own() {
    let keep_1 =
        "[[cleanup.policy]]\nname = \"one\"\nplugin = \"keep-last\"\nparams = { keep = 1 }\n";
    let data = Data::new(&[3], keep_1);
    let output = data.wharf(&["cleanup", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(data.exists(0, 0) && !data.exists(0, 1) && !data.exists(0, 2));

    // Four datasets of 3: 8 of 12 would go, over 50 % and over 10 candidates.
    let data = Data::new(&[3, 3, 3, 3], keep_1);
    let output = data.wharf(&["cleanup", "--wait"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(data.exists(0, 2), "capped: nothing deleted");
    let own = format!("{keep_1}max_delete_percent = 70\n");
    std::fs::write(data.root.join("wharf.toml"), own).unwrap();
    let output = data.wharf(&["cleanup", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    for e in 0..4 {
        assert!(data.exists(e, 0) && !data.exists(e, 1) && !data.exists(e, 2));
    }
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
        "[cleanup]\norphan_lifetime_ms = 0\nremove_untracked_files = true\npolicy = []\n",
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

#[test]
fn bundled_keep_tags_deletes_whole_datasets_per_branch_through_a_cleanup() {
    // Datasets e0..e4, e0 the newest (each file of e{i} created before
    // every file of e{i-1}): main has e0, e2, e3 (e3 released), dev has e1;
    // e4 has no branch.
    let data = Data::new(
        &[2, 1, 2, 1, 1],
        r#"
[cleanup]
max_delete_percent = 100
[[cleanup.policy]]
name = "tags"
plugin = "keep-tags"
params = { group_by = "branch", keep = 1, keep_released = 0 }
"#,
    );
    for (name, attributes) in [
        ("e0", &[("branch", "main")][..]),
        ("e1", &[("branch", "dev")]),
        ("e2", &[("branch", "main")]),
        ("e3", &[("branch", "main"), ("released", "true")]),
    ] {
        let attributes: Vec<(String, String)> = attributes
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        data.index.set_entity_attributes(name, &attributes).unwrap();
    }
    let output = data.wharf(&["cleanup", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    // main keeps its newest unreleased (e0), drops e2 whole and the released
    // e3 (keep_released = 0); dev keeps e1; e4 has no branch.
    for (e, j, kept) in [
        (0, 0, true),
        (0, 1, true),
        (1, 0, true),
        (2, 0, false),
        (2, 1, false),
        (3, 0, false),
        (4, 0, true),
    ] {
        assert_eq!(data.exists(e, j), kept, "e{e}/{j}");
        assert_eq!(data.tracked(e, j), kept, "e{e}/{j}");
    }
    let deleted = data.events("deleted");
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    assert!(
        deleted
            .iter()
            .all(|(_, plugin, _)| plugin.as_deref() == Some("keep-tags"))
    );
    assert!(
        deleted
            .iter()
            .any(|(_, _, m)| m.contains("files/e3/0.bin") && m.contains("released")),
        "{deleted:?}"
    );
}

/// Commits a cached export of dataset `e{e}` (its file under `exports/`),
/// used last at `last_access_ms`; returns its file id.
fn cached_export(data: &Data, e: usize, format: &str, last_access_ms: i64) -> FileId {
    let dataset = data.index.dataset(&format!("e{e}")).unwrap().unwrap();
    let key = wharf::index::ExportKey {
        entity: dataset.id,
        version: dataset.version,
        format: format.into(),
        params_sha256: "0".repeat(64),
    };
    let path = wharf::store::export_path(
        dataset.id.0,
        dataset.version,
        format,
        &key.params_sha256,
        "out.tar",
    );
    let real = data.root.join(&path);
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, b"export").unwrap();
    let id = data
        .index
        .commit_export(
            &wharf::index::NewExport {
                key,
                path,
                size: 6,
                sha256: "b".repeat(64),
                mtime_ms: 1,
                media_type: "application/x-tar".into(),
            },
            last_access_ms,
        )
        .unwrap();
    data.index.export(id).unwrap().unwrap().file.unwrap()
}

#[test]
fn the_default_export_cache_policy_deletes_exports_unused_past_the_cache_ttl() {
    // No [[cleanup.policy]]: the default export-cache policy runs, with the
    // TTL of [exports].
    let data = Data::new(
        &[2, 1, 1],
        "[exports]\ncache_ttl_ms = 60000\n[cleanup]\norphan_lifetime_ms = 600000\n",
    );
    let now = now_ms();
    let stale = cached_export(&data, 0, "tar-export", now - 3_600_000);
    let fresh = cached_export(&data, 1, "tar-export", now - 1_000);
    // Made an hour ago, but downloaded a moment ago: the entry's access counts.
    let hit = cached_export(&data, 2, "tar-export", now - 3_600_000);
    let hit_export = data.index.exports(Some("e2"), None, 1).unwrap()[0].id;
    data.index.touch_export(hit_export, now).unwrap();
    // Stale, but being downloaded right now.
    let downloading = cached_export(&data, 2, "manifest-json", now - 3_600_000);
    data.index
        .try_acquire_lease(
            &wharf::index::download_lease_name(downloading, "test"),
            "downloader",
            3_600_000,
            now,
            None,
        )
        .unwrap();
    let dry = data.wharf(&["cleanup", "--dry-run"]);
    let shown = String::from_utf8_lossy(&dry.stdout).into_owned();
    // Of the 4 exports only the stale one not being downloaded goes.
    assert!(
        shown.contains("configured (export-cache): would delete 1 of 4 files, 6 B")
            && shown.contains("export-cache: not used for 60000 ms"),
        "{shown}"
    );
    let output = data.wharf(&["cleanup", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    let paths = data
        .index
        .file_paths(&[stale, fresh, hit, downloading])
        .unwrap();
    assert_eq!(paths[0], None, "the stale export is gone from the index");
    assert!(paths[1..].iter().all(Option::is_some), "{paths:?}");
    // Its cache entry went with it; the others are still served.
    let entries: Vec<Option<FileId>> = data
        .index
        .exports(None, None, 10)
        .unwrap()
        .into_iter()
        .map(|row| row.file)
        .collect();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(!entries.contains(&Some(stale)));
    // The datasets' own files are not the cache's.
    for (e, j) in [(0, 0), (0, 1), (1, 0), (2, 0)] {
        assert!(data.exists(e, j), "e{e}/{j}");
    }
    let deleted = data.events("deleted");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].1.as_deref(), Some("export-cache"));
    assert!(
        deleted[0].2.contains("not used for 60000 ms"),
        "{deleted:?}"
    );
}

#[test]
fn the_cache_ttl_is_set_in_one_place_and_a_policy_giving_it_is_refused() {
    let data = Data::new(
        &[1],
        "[[cleanup.policy]]\nname = \"cache\"\nplugin = \"export-cache\"\nparams = { cache_ttl_ms = 5 }\n",
    );
    let output = data.wharf(&["cleanup", "--dry-run"]);
    let shown = text(&output);
    assert_ne!(output.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("cleanup.policy[0].params.cache_ttl_ms")
            && shown.contains("exports.cache_ttl_ms"),
        "{shown}"
    );
}

mod properties {
    use std::collections::{BTreeSet, HashSet};
    use std::sync::atomic::AtomicBool;

    use proptest::prelude::*;
    use wharf::index::{FileState, Index, InsertOutcome, NewFile, now_ms};
    use wharf::retention::{self, ApplyAs, Planned};
    use wharf::store::DataDir;

    use crate::support::*;

    const HOUR: i64 = 3_600_000;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// keep-last through the real runtime over a real index deletes
        /// exactly the files beyond the newest `keep` of each entity that
        /// are at least `min_age_ms` old, whatever the entities' sizes and
        /// the page size.
        #[test]
        fn keep_last_keeps_exactly_what_its_parameters_say(
            entities in prop::collection::vec(
                prop::collection::vec(0i64..6, 0..7), 1..6),
            loose in prop::collection::vec(0i64..6, 0..4),
            keep in 0u64..4,
            min_age_hours in prop::option::of(0i64..5),
            page_size in 1usize..9,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
            let now = now_ms();
            // Each file's age in hours; files of no entity are one group.
            let mut groups: Vec<(Option<String>, Vec<i64>)> =
                vec![(None, loose)];
            groups.extend(entities.into_iter().enumerate().map(|(e, ages)| (Some(format!("e{e}")), ages)));
            let mut expected = BTreeSet::new();
            for (g, (entity, ages)) in groups.iter().enumerate() {
                let files: Vec<NewFile> = ages.iter().enumerate().map(|(i, age)| NewFile {
                    path: format!("g{g}/{i}"),
                    size: 1,
                    mtime_ms: 1,
                    sha256: "a".repeat(64),
                    kind: "capture".into(),
                    entity: entity.clone(),
                    // Half an hour off the hour, far from any min_age cutoff.
                    created_ms: now - age * HOUR - HOUR / 2 - i as i64,
                }).collect();
                let ids: Vec<i64> = index.insert_files(&files).unwrap().into_iter().map(|o| match o {
                    InsertOutcome::Inserted(id) | InsertOutcome::AlreadyIndexed(id) => id.0,
                }).collect();
                // The model: rank by creation, newest first (ties by id).
                let mut ranked: Vec<(i64, i64)> = files.iter().zip(&ids).map(|(f, &id)| (f.created_ms, id)).collect();
                ranked.sort_by_key(|&(created, id)| (std::cmp::Reverse(created), id));
                for (rank, (created, id)) in ranked.into_iter().enumerate() {
                    let old_enough = min_age_hours.is_none_or(|h| h == 0 || created <= now - h * HOUR);
                    if rank as u64 >= keep && old_enough {
                        expected.insert(id);
                    }
                }
            }
            let plugin = runtime(dir.path()).load(bundled("keep-last")).unwrap();
            let mut given = vec![("keep", keep.to_string())];
            if let Some(h) = min_age_hours {
                given.push(("min_age_ms", (h * HOUR).to_string()));
            }
            let given: Vec<(String, String)> = given.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let planned = retention::rehearse(&index, &plugin, &given, dir.path(), page_size, now).unwrap();
            let deleted: BTreeSet<i64> = planned.iter().map(|p| p.file.0).collect();
            prop_assert_eq!(deleted.len(), planned.len(), "each file once");
            prop_assert_eq!(deleted, expected);
        }
    }

    /// What protects a generated file.
    #[derive(Debug, Clone)]
    struct Protection {
        state: FileState,
        leased: bool,
        downloading: bool,
        synced: bool,
    }

    impl Protection {
        fn protects(&self) -> bool {
            self.state != FileState::Ready || self.leased || self.downloading || !self.synced
        }
    }

    fn protection() -> impl Strategy<Value = Protection> {
        (
            prop_oneof![
                6 => Just(FileState::Ready),
                1 => Just(FileState::Writing),
                1 => Just(FileState::Lost),
            ],
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.8),
        )
            .prop_map(|(state, leased, downloading, synced)| Protection {
                state,
                leased,
                downloading,
                synced,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever a plugin answers (any files, some twice, ids that do not
        /// exist), applying it deletes from disk and index exactly the
        /// unprotected ready files it named, each with its event, and
        /// leaves every protected file on disk and in the index.
        #[test]
        fn applying_any_answer_never_deletes_a_protected_file(
            files in prop::collection::vec(protection(), 1..20),
            answer in prop::collection::vec(0usize..30, 0..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("data");
            std::fs::create_dir_all(root.join("files")).unwrap();
            let data_dir = DataDir::new(&root);
            let index = Index::open(&root.join("index.sqlite")).unwrap();
            let new: Vec<NewFile> = (0..files.len()).map(|i| {
                let path = format!("files/{i}.bin");
                std::fs::write(root.join(&path), b"x").unwrap();
                NewFile {
                    path,
                    size: 1,
                    mtime_ms: 1,
                    sha256: "a".repeat(64),
                    kind: "capture".into(),
                    entity: Some("set".into()),
                    created_ms: i as i64,
                }
            }).collect();
            let ids: Vec<wharf::index::FileId> = index.insert_files(&new).unwrap().into_iter().map(|o| match o {
                InsertOutcome::Inserted(id) | InsertOutcome::AlreadyIndexed(id) => id,
            }).collect();
            let now = now_ms();
            // Set up what the index has no API for yet (destinations, sync
            // states) with a connection of the test's own.
            let db = rusqlite::Connection::open(root.join("index.sqlite")).unwrap();
            db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            db.execute("INSERT INTO destinations (name, plugin, url, required) VALUES ('main', 'p', 'u', 1)", []).unwrap();
            for (id, p) in ids.iter().zip(&files) {
                if p.state != FileState::Ready {
                    index.set_file_state(*id, p.state, "test").unwrap();
                }
                if p.leased {
                    index.try_acquire_lease(&format!("file:{}", id.0), "x", HOUR, now, None).unwrap();
                }
                if p.downloading {
                    index.try_acquire_lease(&wharf::index::download_lease_name(*id, "t"), "x", HOUR, now, None).unwrap();
                }
                let state = if p.synced { "synced" } else { "pending" };
                db.execute(
                    "INSERT INTO sync_status (file_id, destination_id, state, next_attempt_ms)
                     SELECT ?1, id, ?2, 0 FROM destinations",
                    rusqlite::params![id.0, state],
                ).unwrap();
            }
            let planned: Vec<Planned> = answer.iter().map(|&i| Planned {
                file: ids.get(i).copied().unwrap_or(wharf::index::FileId(10_000 + i as i64)),
                reason: "any".into(),
                size: 1,
                flags: 1,
            }).collect();
            let who = ApplyAs { plugin: "random", job: None, require_synced: &[], now_ms: now };
            let applied = retention::apply(&index, &data_dir, &planned, &who, &AtomicBool::new(false)).unwrap();
            let asked: HashSet<usize> = answer.iter().copied().filter(|&i| i < files.len()).collect();
            for (i, p) in files.iter().enumerate() {
                let on_disk = root.join(format!("files/{i}.bin")).exists();
                let indexed = index.file_paths(&[ids[i]]).unwrap()[0].is_some();
                let goes = asked.contains(&i) && !p.protects();
                prop_assert_eq!(on_disk, !goes, "file {} {:?}", i, p);
                prop_assert_eq!(indexed, !goes, "file {} {:?}", i, p);
            }
            let gone = (0..files.len()).filter(|i| asked.contains(i) && !files[*i].protects()).count();
            prop_assert_eq!(applied.deleted, gone as u64);
        }
    }
}
