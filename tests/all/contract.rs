//! Contract 0.2 through the real runtime: what ordinary std code may do in a
//! plugin, the retention planner and the checks on its answers, the
//! local-store and disk imports, and the hostile uses of each.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf::runtime::{
    CallError, DestinationAccess, Plugin, RemoteAccess, Runtime, UploadTarget, World,
};

use crate::support::*;

/// Collects what `tracing` logs on this thread while `f` runs.
fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
    (result, text)
}

fn export(plugin: &Plugin, dir: &Path, mode: &str) -> Result<String, CallError> {
    let out = dir.join(format!("out-{mode}"));
    let _ = std::fs::remove_file(&out);
    plugin
        .export(&entity("set"), &[], &params(&[("mode", mode)]), &out)
        .map(|exported| exported.result.file_name)
}

#[test]
fn println_hashmaps_and_the_clock_work_and_stdout_goes_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = load_hostile(&runtime(dir.path()));
    let (result, log) = logged(|| export(&plugin, dir.path(), "println"));
    assert_eq!(result.unwrap(), "println-true");
    assert!(log.contains("hello from set (1 names)"), "{log}");
    assert!(log.contains("a warning line"), "{log}");
    assert!(
        log.contains("hostile"),
        "lines are tagged with the plugin: {log}"
    );
}

#[test]
fn ten_megabytes_on_stdout_are_capped_and_the_host_is_unharmed() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut source = source(
        "hostile",
        guest(wharf_tests::HOSTILE),
        Some(World::Exporter),
    );
    source.limits.timeout = Duration::from_secs(20);
    let plugin = runtime.load(source).unwrap();
    for mode in ["stdout-flood", "log-flood"] {
        let (result, log) = logged(|| export(&plugin, dir.path(), mode));
        assert!(result.is_ok(), "{mode}: {result:?}");
        assert!(log.len() < 2 << 20, "{mode}: {} bytes of log", log.len());
        assert!(
            log.contains("log messages of this plugin call were dropped"),
            "{mode}"
        );
    }
    assert_eq!(export(&plugin, dir.path(), "ok").unwrap(), "ok.txt");
}

#[test]
fn sleeping_counts_against_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = load_hostile(&runtime(dir.path()));
    let started = Instant::now();
    let error = export(&plugin, dir.path(), "sleep").unwrap_err();
    assert_eq!(error, CallError::Deadline(limits().timeout));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

fn load_retention(runtime: &Runtime) -> Plugin {
    runtime
        .load(source(
            "hostile-retention",
            guest(wharf_tests::HOSTILE_RETENTION),
            Some(World::Retention),
        ))
        .unwrap()
}

/// Two batches of three files each, ids 10.. and 20..
fn two_batches() -> Vec<wharf::runtime::Batch> {
    (1..=2u64)
        .map(|b| {
            batch(
                1,
                (0..3)
                    .map(|i| candidate(b * 10 + i, Some(0), 100 - i as i64))
                    .collect(),
            )
        })
        .collect()
}

/// Runs `mode` over [`two_batches`]: every batch's answer, then finish's.
fn run_retention(plugin: &Plugin, mode: &str) -> Result<Vec<Vec<u64>>, CallError> {
    let mut session = plugin.plan_session(&params(&[("mode", mode)]), Path::new("/"))?;
    let mut answers = Vec::new();
    for batch in two_batches() {
        answers.push(
            session
                .plan(&batch)?
                .deletions
                .iter()
                .map(|d| d.file)
                .collect(),
        );
    }
    answers.push(session.finish()?.deletions.iter().map(|d| d.file).collect());
    Ok(answers)
}

/// Every mode of the hostile retention plugin and what it must come to.
const RETENTION_MODES: &[(&str, Expect)] = &[
    ("keep", Expect::Succeeds),
    ("finish-all", Expect::Succeeds),
    ("delete-all", Expect::Succeeds),
    ("released", Expect::Succeeds),
    ("disk", Expect::Succeeds),
    ("dup", Expect::InvalidOutput("twice")),
    ("stray", Expect::InvalidOutput("not in its batch")),
    ("bad-reason", Expect::InvalidOutput("reason 5 of 0")),
    (
        "reason-flood",
        Expect::InvalidOutput("100 reasons for 0 deletions"),
    ),
    // 100,000 copies of one id for a small batch.
    ("flood", Expect::InvalidOutput("twice")),
    // Once in a batch, again in `finish`.
    ("again", Expect::InvalidOutput("twice")),
    // Refused at `open`, before any batch.
    ("bad-params", Expect::InvalidParams("refused at open")),
    ("panic", Expect::Trap("hostile retention panics on purpose")),
    ("bad-utf8", Expect::Trap("utf-8")),
    (
        "list-out-of-bounds",
        Expect::Trap("list pointer/length out of bounds"),
    ),
    (
        "list-misaligned",
        Expect::Trap("list pointer is not aligned"),
    ),
    ("bad-enum", Expect::Trap("discriminant")),
    // The host lends a batch column through the plugin's `cabi_realloc`.
    (
        "realloc-out-of-bounds",
        Expect::Trap("realloc return: beyond end of memory"),
    ),
    (
        "realloc-misaligned",
        Expect::Trap("realloc return: result not aligned"),
    ),
    // 160 MiB of strings from a guest holding 4: wasmtime stops copying at
    // its hostcall fuel (128 MiB).
    (
        "hostcall-fuel",
        Expect::Trap("hostcalls has been exhausted"),
    ),
];

#[test]
fn every_hostile_retention_mode_has_an_expected_outcome() {
    assert_table_covers(
        "hostile-retention",
        wharf_tests::hostile_retention::MODES,
        RETENTION_MODES,
    );
}

/// Each mode over [`two_batches`] on a fresh load, in a runtime that
/// quarantines at the first fault. A fault is terminal, poisons the run (its
/// next call fails without reaching the plugin), counts towards quarantine
/// and leaves the host serving; other outcomes do not count.
#[test]
fn every_hostile_retention_mode_ends_as_the_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = strict_runtime(dir.path());
    for &(mode, expect) in RETENTION_MODES {
        let plugin = load_retention(&runtime);
        let mut session = match plugin.plan_session(&params(&[("mode", mode)]), dir.path()) {
            Ok(session) => session,
            Err(error) => {
                expect.check(mode, &Err::<(), _>(error));
                assert!(!expect.is_fault(), "{mode}: a fault at open");
                assert!(run_retention(&plugin, "keep").is_ok(), "{mode}");
                continue;
            }
        };
        let mut result = Ok(());
        for batch in two_batches() {
            result = result.and_then(|()| session.plan(&batch).map(|_| ()));
        }
        let result = result.and_then(|()| session.finish().map(|_| ()));
        expect.check(mode, &result);
        if !expect.is_fault() {
            assert!(run_retention(&plugin, "keep").is_ok(), "{mode}");
            continue;
        }
        let after = session.plan(&two_batches().remove(1));
        assert!(
            matches!(&after, Err(CallError::Trap(why)) if why.contains("earlier call")),
            "{mode}: the run goes on after a fault: {after:?}"
        );
        assert_eq!(
            plugin.plan_session(&params(&[]), dir.path()).err(),
            Some(CallError::Quarantined(1)),
            "{mode}"
        );
        assert_host_still_serves(&runtime, &load_hostile(&runtime), dir.path());
    }
}

#[test]
fn a_planner_keeps_state_across_the_batches_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = load_retention(&runtime(dir.path()));
    let answers = run_retention(&plugin, "finish-all").unwrap();
    assert_eq!(answers, vec![vec![], vec![], vec![10, 11, 12, 20, 21, 22]]);
    // Reasons index the batch's entities and kinds, sent once per batch.
    let mut session = plugin
        .plan_session(&params(&[("mode", "delete-all")]), dir.path())
        .unwrap();
    let decided = session.plan(&two_batches().remove(0)).unwrap();
    assert_eq!(decided.reasons, vec!["capture of e0"]);
    assert_eq!(decided.deletions.len(), 3);
}

#[test]
fn entity_attributes_reach_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = load_retention(&runtime(dir.path()));
    let mut batch = batch(
        2,
        vec![
            candidate(1, Some(0), 2),
            candidate(2, Some(1), 1),
            candidate(3, None, 0),
        ],
    );
    let mut entities = batch.entities.to_vec();
    entities[0].attributes = vec![("released".into(), "true".into())];
    batch.entities = entities.into();
    let mut session = plugin
        .plan_session(&params(&[("mode", "released")]), dir.path())
        .unwrap();
    let deleted: Vec<u64> = session
        .plan(&batch)
        .unwrap()
        .deletions
        .iter()
        .map(|d| d.file)
        .collect();
    assert_eq!(deleted, vec![2, 3]);
}

#[test]
fn a_policy_reads_the_disk_space_of_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = load_retention(&runtime(dir.path()));
    let mut session = plugin
        .plan_session(&params(&[("mode", "disk")]), dir.path())
        .unwrap();
    let decided = session.plan(&two_batches().remove(0)).unwrap();
    let reason = &decided.reasons[0];
    let numbers: Vec<u64> = reason
        .split(' ')
        .filter_map(|word| word.parse().ok())
        .collect();
    assert!(
        numbers.len() == 2 && numbers[0] > 0 && numbers[0] <= numbers[1],
        "{reason}"
    );
}

fn load_uploader(runtime: &Runtime) -> Plugin {
    runtime
        .load(source(
            "hostile-uploader",
            guest(wharf_tests::HOSTILE_UPLOADER),
            Some(World::Uploader),
        ))
        .unwrap()
}

fn local_target(root: &Path) -> UploadTarget {
    UploadTarget {
        name: "archive".into(),
        url: String::new(),
        access: DestinationAccess::Local {
            root: root.to_path_buf(),
        },
    }
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_local_destination_gets_whole_atomic_copies_under_safe_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = load_uploader(&runtime);
    let root = dir.path().join("dest").join("root");
    let file = call_file(dir.path(), "in.bin", b"0123456789");
    let target = local_target(&root);
    let placed = plugin
        .upload(
            &file,
            &target,
            &params(&[("mode", "place"), ("key", "a/b.bin")]),
        )
        .unwrap();
    assert_eq!(std::fs::read(root.join("a/b.bin")).unwrap(), b"0123456789");
    assert_eq!(placed.remote_sha256.as_deref(), Some(file.sha256.as_str()));
    plugin
        .upload(
            &file,
            &target,
            &params(&[("mode", "place-range"), ("key", "r")]),
        )
        .unwrap();
    assert_eq!(std::fs::read(root.join("r")).unwrap(), b"12345678");
    for key in [
        "../escape",
        "/etc/evil",
        "a/../../x",
        "a//b",
        "a\0b",
        ".wharf-part-x",
    ] {
        let error = plugin
            .upload(&file, &target, &params(&[("mode", "place"), ("key", key)]))
            .unwrap_err();
        assert!(
            matches!(error, CallError::InvalidParams(_)),
            "{key:?}: {error:?}"
        );
    }
    let error = plugin
        .upload(
            &file,
            &target,
            &params(&[("mode", "past-end"), ("key", "half")]),
        )
        .unwrap_err();
    assert!(
        matches!(&error, CallError::InvalidParams(m) if m.contains("past the end")),
        "{error:?}"
    );
    assert_eq!(
        tree(&dir.path().join("dest")),
        vec!["root/a/b.bin", "root/r"],
        "nothing else placed"
    );
}

#[test]
fn an_uploader_reaches_only_what_its_destination_is() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = load_uploader(&runtime);
    let file = call_file(dir.path(), "in.bin", b"data");
    // The network from a local destination.
    let error = plugin
        .upload(
            &file,
            &local_target(&dir.path().join("d")),
            &params(&[("mode", "http")]),
        )
        .unwrap_err();
    assert!(
        matches!(&error, CallError::AccessDenied(m) if m.contains("HTTP")),
        "{error:?}"
    );
    // A local copy for a remote destination.
    let remote = UploadTarget {
        name: "remote".into(),
        url: "http://127.0.0.1:1/bucket".into(),
        access: DestinationAccess::Remote(RemoteAccess {
            allowed_hosts: vec!["127.0.0.1:1".into()],
            ..RemoteAccess::default()
        }),
    };
    let error = plugin
        .upload(&file, &remote, &params(&[("mode", "place")]))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::AccessDenied(m) if m.contains("local")),
        "{error:?}"
    );
    // A credential the destination does not own, even when the plugin
    // ignores the refusal.
    let error = plugin
        .upload(&file, &remote, &params(&[("mode", "credential")]))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::AccessDenied(m) if m.contains("someone-else")),
        "{error:?}"
    );
}

#[test]
fn the_real_host_answers_the_sdk_conformance_suite_as_the_mock_host() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = runtime
        .load(source(
            "conformance",
            guest(wharf_tests::CONFORMANCE),
            Some(World::Exporter),
        ))
        .unwrap();
    let files = [
        call_file(dir.path(), "hello", b"hello"),
        call_file(dir.path(), "big", &vec![0u8; 17 << 20]),
    ];
    let out = dir.path().join("report");
    plugin
        .export(&entity("e"), &files, &params(&[]), &out)
        .unwrap();
    // The same file the crate's own test holds the mock host to.
    let expected = include_str!("../guests/conformance/expected.txt");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
}
