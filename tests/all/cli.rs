//! The command line and the daemon, run in-process on real data directories.

use std::path::Path;
use std::process::{Command, ExitCode};

use clap::Parser;
use wharf::cli::{Cli, execute};
use wharf::daemon::{self, Signal};
use wharf::runtime::World;
use wharf::store::DataDir;

use crate::support::*;

fn wharf(args: &[&str]) -> anyhow::Result<ExitCode> {
    let mut argv = vec!["wharf"];
    argv.extend_from_slice(args);
    execute(Cli::try_parse_from(argv)?)
}

/// The `plugins` table, or nothing while the index is still being created.
fn installed_plugins(index: &Path) -> Vec<String> {
    let read = || -> anyhow::Result<Vec<String>> {
        let db = wharf::index::open_read_only(index)?;
        let mut query = db.prepare("SELECT name || ':' || world FROM plugins ORDER BY name")?;
        let rows = query.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    read().unwrap_or_default()
}

/// Copies the hostile test plugin into `plugins/` with a manifest pinned to
/// `sha256` (its real hash when `None`).
fn install_hostile(data: &Path, sha256: Option<&str>) {
    let wasm = guest(wharf_tests::HOSTILE);
    let real = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    std::fs::create_dir_all(data.join("plugins")).unwrap();
    std::fs::write(data.join("plugins/hostile.wasm"), &wasm).unwrap();
    let manifest = format!(
        "wasm = \"hostile.wasm\"\nsha256 = \"{}\"\nworld = \"exporter\"\n[limits]\ntimeout_ms = 1000\n",
        sha256.unwrap_or(&real)
    );
    std::fs::write(data.join("plugins/hostile.toml"), manifest).unwrap();
}

#[test]
fn init_writes_defaults_once_and_keeps_operator_edits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    assert_eq!(
        wharf(&["--data-dir", data_arg, "init"]).unwrap(),
        ExitCode::SUCCESS
    );
    let config = std::fs::read_to_string(data.join("wharf.toml")).unwrap();
    assert!(config.contains("quarantine_after = 5"), "{config}");
    assert!(data.join("index.sqlite").exists());
    std::fs::write(data.join("wharf.toml"), "[plugins]\ntimeout_ms = 1234\n").unwrap();
    wharf(&["--data-dir", data_arg, "init"]).unwrap();
    assert_eq!(
        std::fs::read_to_string(data.join("wharf.toml")).unwrap(),
        "[plugins]\ntimeout_ms = 1234\n"
    );
}

#[test]
fn a_bad_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    std::fs::write(data.join("wharf.toml"), "[plugins]\nmemory_bytes = 0\n").unwrap();
    let error = wharf(&["--data-dir", data.to_str().unwrap(), "plugin", "list"]).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("plugins.memory_bytes") && message.contains("wharf.toml"),
        "{message}"
    );
}

#[test]
fn plugin_list_fails_when_a_pinned_plugin_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    install_hostile(dir.path(), None);
    assert_eq!(
        wharf(&["--data-dir", data, "plugin", "list"]).unwrap(),
        ExitCode::SUCCESS
    );
    install_hostile(dir.path(), Some(&"0".repeat(64)));
    assert_eq!(
        wharf(&["--data-dir", data, "plugin", "list"]).unwrap(),
        ExitCode::from(1)
    );
    let config = wharf::config::Config::default();
    let runtime =
        wharf::runtime::Runtime::new(config.runtime_config(&dir.path().join("cache"))).unwrap();
    let report = wharf::plugins::load_all(&runtime, &config, &dir.path().join("plugins"));
    assert!(report.registry.get("hostile").is_none());
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("hostile") && e.contains("sha256 mismatch")),
        "{:?}",
        report.errors
    );
    assert_eq!(
        report.registry.len(),
        wharf::plugins::bundled(limits()).len(),
        "the bundled plugins still load"
    );
}

#[test]
fn plugin_inspect_reads_any_component_and_rejects_non_components() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        wharf(&["plugin", "inspect", wharf_tests::HOSTILE]).unwrap(),
        ExitCode::SUCCESS
    );
    // A component built for another contract is described, but not loadable.
    assert_eq!(
        wharf(&["plugin", "inspect", "--json", wharf_tests::FUTURE_WIT]).unwrap(),
        ExitCode::from(1)
    );
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    let error = wharf(&["plugin", "inspect", junk.to_str().unwrap()]).unwrap_err();
    assert!(
        format!("{error:#}").contains("is not a wharf plugin"),
        "{error:#}"
    );
}

#[test]
fn the_daemon_records_its_plugins_and_reloads_them_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("data"));
    let index = data.index_path();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (signals, receiver) = tokio::sync::mpsc::channel(1);
    let daemon = tokio.spawn(daemon::run(
        data.clone(),
        wharf::config::Config::default(),
        receiver,
    ));
    let wait_for = |expected: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if installed_plugins(&index).len() == expected {
                return installed_plugins(&index);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "daemon did not record {expected} plugins"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let bundled = wharf::plugins::bundled(limits()).len();
    let recorded = wait_for_async(&tokio, || wait_for(bundled));
    for plugin in [
        "backup-lite:exporter",
        "disk-pressure:retention",
        "http-put:uploader",
        "keep-last:retention",
        "manifest-json:exporter",
        "tar-export:exporter",
        "ttl:retention",
        "zip-export:exporter",
    ] {
        assert!(recorded.contains(&plugin.to_owned()), "{recorded:?}");
    }

    // A good new plugin arrives with the reload, together with a changed
    // engine setting: the new set loads into a runtime built with it.
    install_hostile(data.root(), None);
    std::fs::write(data.config_path(), "[plugins]\nmax_instances = 8\n").unwrap();
    tokio.block_on(signals.send(Signal::Reload)).unwrap();
    let listed = wait_for_async(&tokio, || wait_for(bundled + 1));
    assert!(listed.contains(&"hostile:exporter".to_string()));

    // A reload with a broken plugin keeps the last good set.
    install_hostile(data.root(), Some(&"f".repeat(64)));
    tokio.block_on(signals.send(Signal::Reload)).unwrap();
    tokio.block_on(signals.send(Signal::Shutdown)).unwrap();
    tokio.block_on(daemon).unwrap().unwrap();
    assert_eq!(installed_plugins(&index).len(), bundled + 1);
}

/// Lets the daemon task run on the current-thread runtime while `check` polls.
fn wait_for_async<T>(tokio: &tokio::runtime::Runtime, check: impl FnOnce() -> T + Send) -> T
where
    T: Send,
{
    std::thread::scope(|scope| {
        let handle = scope.spawn(check);
        tokio.block_on(async {
            while !handle.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        handle.join().unwrap()
    })
}

#[test]
fn plugin_new_scaffolds_crates_whose_tests_pass_on_the_mock_and_the_real_host() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Shared across runs so only the first pays for compiling the SDK.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-test");
    let runtime = runtime(dir.path());
    let cargo_in = |crate_dir: &Path, args: &[&str]| {
        Command::new(&cargo)
            .args(args)
            .current_dir(crate_dir)
            .env("CARGO_TARGET_DIR", &target)
            // The real-host tests run this wharf.
            .env("WHARF", env!("CARGO_BIN_EXE_wharf-under-test"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap()
    };
    for kind in World::ALL {
        let name = format!("my-{kind}");
        let crate_dir = dir.path().join(&name);
        let code = wharf(&[
            "plugin",
            "new",
            kind.name(),
            &name,
            "--dir",
            crate_dir.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        // The mock-host test and the real-host test (which builds the wasm).
        let tested = cargo_in(&crate_dir, &["test"]);
        let report = String::from_utf8_lossy(&tested.stdout);
        assert!(
            tested.status.success(),
            "cargo test in {name}: {report}{}",
            String::from_utf8_lossy(&tested.stderr)
        );
        assert!(report.contains("runs_in_the_real_host ... ok"), "{report}");
        let wasm = target.join(format!(
            "wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ));
        let plugin = runtime
            .load(source(&name, guest(wasm.to_str().unwrap()), Some(kind)))
            .unwrap();
        assert_eq!(plugin.info.name, name);
        assert_eq!(plugin.world, kind);
    }

    // What the sandbox denies fails the author's `cargo test`, though the
    // same code passes natively against the mock host.
    let crate_dir = dir.path().join("my-exporter");
    let lib = crate_dir.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap();
    let nosy = code.replacen(
        "for entry in &files {",
        "let _ = std::fs::read(\"/etc/hostname\");\n        for entry in &files {",
        1,
    );
    assert_ne!(code, nosy);
    std::fs::write(&lib, nosy).unwrap();
    let tested = cargo_in(&crate_dir, &["test"]);
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(!tested.status.success(), "{report}");
    assert!(
        report.contains("writes_each_file_after_its_header ... ok"),
        "{report}"
    );
    assert!(
        report.contains("runs_in_the_real_host ... FAILED") && report.contains("access denied"),
        "{report}"
    );
}
