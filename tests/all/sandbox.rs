//! Adversarial plugins: each attack ends in the exact error class the host
//! promises, and the host then serves other calls normally.

use std::path::Path;
use std::time::{Duration, Instant};

use wharf::runtime::{CallError, ErrorClass, LoadError, Plugin, Runtime, World};

use crate::support::*;

/// Runs the hostile exporter in `mode`, with one 1 MiB input file.
fn attack(plugin: &Plugin, dir: &Path, mode: &str) -> Result<String, CallError> {
    let input = call_file(dir, &format!("input-{mode}.bin"), &vec![7u8; 1 << 20]);
    let out = dir.join(format!("out-{mode}-{}", rand_suffix()));
    plugin
        .export(&entity("set"), &[input], &params(&[("mode", mode)]), &out)
        .map(|exported| exported.result.file_name)
}

fn setup() -> (tempfile::TempDir, Runtime, Plugin) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = load_hostile(&runtime);
    (dir, runtime, plugin)
}

/// Every mode of the hostile exporter and what it must come to.
const EXPORTER_MODES: &[(&str, Expect)] = &[
    ("ok", Expect::Succeeds),
    ("count", Expect::Succeeds),
    ("println", Expect::Succeeds),
    ("fail", Expect::Transient("remote is down")),
    ("loop", Expect::Deadline),
    ("sleep", Expect::Deadline),
    ("host-loop", Expect::Deadline),
    ("alloc", Expect::MemoryLimit),
    ("recurse", Expect::StackOverflow),
    // Big frames exhaust Rust's shadow stack (in linear memory) first: the
    // guest then writes below address 0, which the sandbox turns into a trap.
    ("shadow-stack", Expect::Trap("out of bounds")),
    ("output", Expect::OutputLimit),
    (
        "stdout-flood",
        Expect::TestedBy("contract::ten_megabytes_on_stdout_are_capped_and_the_host_is_unharmed"),
    ),
    (
        "log-flood",
        Expect::TestedBy("contract::ten_megabytes_on_stdout_are_capped_and_the_host_is_unharmed"),
    ),
    // The trap says what the panic said, not only `unreachable`.
    ("panic", Expect::Trap("hostile plugin panics on purpose")),
    ("read-other", Expect::Trap("handle")),
    ("append-other", Expect::Trap("handle")),
    ("fs", Expect::AccessDenied("wasi:filesystem")),
    ("env", Expect::AccessDenied("wasi:cli/environment")),
    ("net", Expect::AccessDenied("wasi:")),
    ("bad-enum", Expect::Trap("discriminant")),
    ("escape", Expect::InvalidOutput("bare file name")),
    ("absolute", Expect::InvalidOutput("bare file name")),
    ("bidi", Expect::InvalidOutput("bare file name")),
    ("media-crlf", Expect::InvalidOutput("media type")),
    ("bad-utf8", Expect::Trap("utf-8")),
    ("string-out-of-bounds", Expect::Trap("out of bounds")),
];

#[test]
fn every_hostile_exporter_mode_has_an_expected_outcome() {
    assert_table_covers("hostile", wharf_tests::hostile::MODES, EXPORTER_MODES);
}

/// Each mode on a fresh load, in a runtime that quarantines at the first
/// fault: a fault is terminal, removes the partial output, counts towards
/// quarantine (the next call is refused) and leaves the host serving; an
/// error the plugin returned does not count.
#[test]
fn every_hostile_exporter_mode_ends_as_the_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = strict_runtime(dir.path());
    for &(mode, expect) in EXPORTER_MODES {
        if let Expect::TestedBy(test) = expect {
            eprintln!("{mode}: run by {test}");
            continue;
        }
        let plugin = load_hostile(&runtime);
        let input = call_file(
            dir.path(),
            &format!("input-{mode}.bin"),
            &vec![7u8; 1 << 20],
        );
        let out = dir.path().join(format!("out-{mode}"));
        let result = plugin.export(&entity("set"), &[input], &params(&[("mode", mode)]), &out);
        expect.check(mode, &result);
        if result.is_err() {
            assert!(!out.exists(), "{mode}: partial output left behind");
        }
        let next = attack(&plugin, dir.path(), "ok");
        if expect.is_fault() {
            assert_eq!(next, Err(CallError::Quarantined(1)), "{mode}");
            assert_host_still_serves(&runtime, &load_hostile(&runtime), dir.path());
        } else {
            assert_eq!(next, Ok("ok.txt".into()), "{mode}");
        }
    }
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let (dir, runtime, plugin) = setup();
    let started = Instant::now();
    let error = attack(&plugin, dir.path(), "loop").unwrap_err();
    assert_eq!(error, CallError::Deadline(limits().timeout));
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_host_still_serves(&runtime, &plugin, dir.path());
}

#[test]
fn output_over_the_cap_is_stopped_and_the_partial_file_removed() {
    let (dir, runtime, plugin) = setup();
    let input = call_file(dir.path(), "in.bin", b"x");
    let out = dir.path().join("partial.out");
    let error = plugin
        .export(
            &entity("set"),
            &[input],
            &params(&[("mode", "output")]),
            &out,
        )
        .unwrap_err();
    assert_eq!(error, CallError::OutputLimit(limits().output_bytes));
    assert!(!out.exists(), "partial output left behind");
    assert_host_still_serves(&runtime, &plugin, dir.path());
}

#[test]
fn slow_host_calls_count_against_the_deadline() {
    let (dir, runtime, plugin) = setup();
    let started = Instant::now();
    let error = attack(&plugin, dir.path(), "host-loop").unwrap_err();
    assert_eq!(error, CallError::Deadline(limits().timeout));
    // Hashing 1 MiB per host call: without host time counted it would spin forever.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_host_still_serves(&runtime, &plugin, dir.path());
}

#[test]
fn a_retention_plugin_loaded_as_an_exporter_is_rejected_naming_both_worlds() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut source = bundled("keep-last");
    source.world = Some(World::Exporter);
    let error = runtime.load(source).unwrap_err();
    assert!(
        matches!(
            &error,
            LoadError::WrongWorld {
                expected: World::Exporter,
                found: World::Retention,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("configured as exporter but is a retention plugin")
    );
    // And a plugin of one world cannot be called as another.
    let plugin = runtime.load(bundled("keep-last")).unwrap();
    let error = plugin
        .export(&entity("e"), &[], &params(&[]), &dir.path().join("x"))
        .unwrap_err();
    assert!(matches!(
        error,
        CallError::WrongWorld {
            expected: "exporter",
            found: "retention"
        }
    ));
}

#[test]
fn a_plugin_built_for_another_wit_version_is_rejected_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let error = runtime
        .load(source("future", guest(wharf_tests::FUTURE_WIT), None))
        .unwrap_err();
    assert!(
        matches!(&error, LoadError::UnsupportedWitVersion { found, .. } if found == "0.3.0"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("wharf:plugin@0.3.0") && message.contains("wharf:plugin@0.2.0"),
        "{message}"
    );
    // And one built against the 0.1 contract, which this host no longer links.
    let error = runtime
        .load(source("old", guest(wharf_tests::OLD_WIT), None))
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("wharf:plugin@0.1.0") && message.contains("wharf:plugin@0.2.0"),
        "{message}"
    );
}

#[test]
fn bytes_not_matching_the_pinned_sha256_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut source = bundled("keep-last");
    let last = source.wasm.len() - 1;
    source.wasm[last] ^= 0xff;
    let error = runtime.load(source).unwrap_err();
    assert!(
        matches!(error, LoadError::Sha256Mismatch { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("update the pin"));
    // Nothing was compiled or cached for the tampered bytes.
    let cached = std::fs::read_dir(dir.path().join("compiled"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(cached, 0);
    assert_host_still_serves(&runtime, &load_hostile(&runtime), dir.path());
}

#[test]
fn a_corrupt_compiled_cache_entry_is_a_miss_not_a_failure() {
    use wharf::runtime::CacheOutcome;
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    assert_eq!(
        runtime.load(bundled("keep-last")).unwrap().cache,
        CacheOutcome::Miss
    );
    assert_eq!(
        runtime.load(bundled("keep-last")).unwrap().cache,
        CacheOutcome::Hit
    );
    let cache = dir.path().join("compiled");
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x55;
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let plugin = runtime.load(bundled("keep-last")).unwrap();
    assert_eq!(plugin.cache, CacheOutcome::Miss);
    let deleted = plan_once(
        &plugin,
        batch(0, vec![candidate(7, None, 0)]),
        &params(&[("keep", "0")]),
    );
    assert_eq!(deleted.unwrap(), vec![7]);
    assert_eq!(
        runtime.load(bundled("keep-last")).unwrap().cache,
        CacheOutcome::Hit
    );
    // Only this user may write artifacts that will be run as native code.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn five_consecutive_traps_quarantine_the_plugin_until_reload() {
    let (dir, runtime, plugin) = setup();
    for _ in 0..5 {
        assert!(matches!(
            attack(&plugin, dir.path(), "panic").unwrap_err(),
            CallError::Trap(_)
        ));
    }
    let error = attack(&plugin, dir.path(), "ok").unwrap_err();
    assert_eq!(error, CallError::Quarantined(5));
    assert_eq!(error.class(), ErrorClass::Terminal);
    // Reloading lifts it; other plugins were never affected.
    let reloaded = load_hostile(&runtime);
    assert_host_still_serves(&runtime, &reloaded, dir.path());
}

#[test]
fn errors_the_plugin_returns_do_not_count_towards_quarantine() {
    let (dir, _runtime, plugin) = setup();
    for _ in 0..4 {
        attack(&plugin, dir.path(), "panic").unwrap_err();
    }
    let error = attack(&plugin, dir.path(), "fail").unwrap_err();
    assert_eq!(error, CallError::transient("remote is down"));
    assert_eq!(error.class(), ErrorClass::Transient);
    for _ in 0..4 {
        attack(&plugin, dir.path(), "panic").unwrap_err();
    }
    assert_eq!(attack(&plugin, dir.path(), "ok").unwrap(), "ok.txt");
}

#[test]
fn eight_concurrent_calls_share_no_state() {
    let (dir, _runtime, plugin) = setup();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let plugin = &plugin;
                let dir = dir.path();
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    for round in 0..10 {
                        let id = format!("e{i}r{round}");
                        let out = dir.join(format!("count-{id}"));
                        let result = plugin
                            .export(&entity(&id), &[], &params(&[("mode", "count")]), &out)
                            .unwrap();
                        assert_eq!(std::fs::read(&out).unwrap(), id.as_bytes());
                        seen.push(result.result.file_name);
                    }
                    seen
                })
            })
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            for (round, name) in handle.join().unwrap().into_iter().enumerate() {
                // A fresh store per call: the static counter is always 1.
                assert_eq!(name, format!("count-1-e{i}r{round}"));
            }
        }
    });
}

#[test]
fn a_retention_plugin_importing_the_network_is_refused_at_load() {
    // The world check is on imports too: an uploader's `http` in a retention
    // plugin would let a policy exfiltrate the file list.
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let error = runtime
        .load(source("nosy", guest(wharf_tests::NOSY_RETENTION), None))
        .unwrap_err();
    assert!(
        matches!(&error, LoadError::ForbiddenImport { world: World::Retention, imports, .. }
            if imports.contains("wharf:plugin/http@0.2.0")),
        "{error:?}"
    );
    assert!(error.to_string().contains("may not import"), "{error}");
    let report = runtime.inspect(&bundled("http-put").wasm).unwrap();
    assert!(report.forbidden_imports(World::Uploader).is_empty());
}

#[test]
fn a_describe_answer_over_64_kib_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let error = runtime
        .load(source(
            "big-describe",
            guest(wharf_tests::BIG_DESCRIBE),
            None,
        ))
        .unwrap_err();
    assert!(
        matches!(&error, LoadError::Describe { error: CallError::InvalidOutput(why), .. }
            if why.contains("at most 65536")),
        "{error:?}"
    );
    assert_host_still_serves(&runtime, &load_hostile(&runtime), dir.path());
}

#[test]
fn an_invalid_variant_tag_in_a_result_is_the_plugins_trap() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let error = runtime
        .load(source("bad-tag", guest(wharf_tests::BAD_TAG), None))
        .unwrap_err();
    assert!(
        matches!(&error, LoadError::Describe { error: CallError::Trap(why), .. }
            if why.contains("discriminant")),
        "{error:?}"
    );
    assert_eq!(
        match &error {
            LoadError::Describe { error, .. } => error.class(),
            _ => unreachable!(),
        },
        ErrorClass::Terminal
    );
    assert_host_still_serves(&runtime, &load_hostile(&runtime), dir.path());
}
