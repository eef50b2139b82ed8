//! The plugin author's loop as a user runs it: `wharf plugin call`,
//! `install`, `remove`, `inspect` and `list`, each a real `wharf` process.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn wharf(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("WHARF_LOG", "error")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `wharf plugin call ... --format json`, its exit code and its JSON.
fn call(data: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["plugin", "call"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let output = wharf(data, &all);
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "{args:?}: not JSON ({err}): {}{}",
            stdout(&output),
            stderr(&output)
        )
    });
    (output.status.code(), json)
}

#[test]
fn plugin_call_runs_every_world_through_the_real_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (a, b) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
    std::fs::write(&a, b"first").unwrap();
    std::fs::write(&b, b"second").unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let (code, described) = call(&data, &["keep-last", "describe"]);
    assert_eq!(code, Some(0), "{described}");
    assert_eq!(described["world"], "retention");
    assert_eq!(described["result"]["params"][0]["name"], "keep");

    // Retention: both files in one entity, the newest kept; nothing deleted.
    let (code, planned) = call(
        &data,
        &[
            "keep-last",
            "plan",
            "--param",
            "keep=1",
            "--file",
            a,
            "--file",
            b,
            "--entity",
            "set",
        ],
    );
    assert_eq!(code, Some(0), "{planned}");
    assert_eq!(planned["result"]["deleted"], 1, "{planned}");
    assert!(Path::new(a).exists() && Path::new(b).exists());

    // Exporter: to the named output.
    let out = dir.path().join("set.tar");
    let (code, exported) = call(
        &data,
        &[
            "tar-export",
            "run",
            "--file",
            a,
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{exported}");
    assert_eq!(exported["result"]["media_type"], "application/x-tar");
    assert!(
        std::fs::read(&out)
            .unwrap()
            .windows(5)
            .any(|w| w == b"first")
    );

    // Uploader: into a local directory, under the file's sha256.
    let dest = dir.path().join("dest");
    let (code, uploaded) = call(
        &data,
        &[
            "http-put",
            "run",
            "--file",
            a,
            "--local-dir",
            dest.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{uploaded}");
    let key = uploaded["result"]["remote_ref"].as_str().unwrap();
    assert_eq!(std::fs::read(dest.join(key)).unwrap(), b"first");

    // No data directory was created for any of this.
    assert!(!data.exists());
}

#[test]
fn plugin_call_shows_the_plugins_log_and_blames_the_plugin_for_its_faults() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, printed) = call(
        &data,
        &[wharf_tests::HOSTILE, "run", "--param", "mode=println"],
    );
    assert_eq!(code, Some(0), "{printed}");
    let log = printed["log"].to_string();
    assert!(
        log.contains("hello from plugin-call") && log.contains("a warning line"),
        "{log}"
    );
    assert!(printed["elapsed_ms"].as_f64().unwrap() > 0.0);

    let (code, panicked) = call(
        &data,
        &[wharf_tests::HOSTILE, "run", "--param", "mode=panic"],
    );
    assert_eq!(code, Some(1), "{panicked}");
    assert_eq!(panicked["error"]["class"], "terminal");
    let message = panicked["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("trapped") && message.contains("panics on purpose"),
        "{message}"
    );

    let (code, denied) = call(&data, &[wharf_tests::HOSTILE, "run", "--param", "mode=fs"]);
    assert_eq!(code, Some(1), "{denied}");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("access denied"),
        "{denied}"
    );
}

#[test]
fn plugin_call_refuses_what_it_cannot_run_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, expected) in [
        (
            &["keep-last", "run"][..],
            "its functions are describe, plan",
        ),
        (&["no-such-plugin", "describe"][..], "wharf plugin list"),
        (
            &[wharf_tests::FUTURE_WIT, "describe"][..],
            "is not a loadable plugin",
        ),
        (
            &["http-put", "run", "--file", "/nonexistent/x"][..],
            "nor a path in the index",
        ),
    ] {
        let mut all = vec!["plugin", "call"];
        all.extend_from_slice(args);
        let output = wharf(&data, &all);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn plugin_call_hands_indexed_files_with_their_entity() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let inbox = data.join("inbox").join("set1");
    std::fs::create_dir_all(&inbox).unwrap();
    for name in ["a.bin", "b.bin"] {
        let file = inbox.join(name);
        std::fs::write(&file, name).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }
    let ingested = wharf(&data, &["ingest", "--wait"]);
    assert!(ingested.status.success(), "{}", stderr(&ingested));
    // One by index path, one by its path in the store.
    let stored = data.join("files/set1/b.bin");
    let (code, planned) = call(
        &data,
        &[
            "keep-last",
            "plan",
            "--param",
            "keep=0",
            "--file",
            "files/set1/a.bin",
            "--file",
            stored.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{planned}");
    let decisions = planned["result"]["decisions"].as_array().unwrap();
    let mut names: Vec<&str> = decisions
        .iter()
        .map(|d| d["file"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["set1/a.bin", "set1/b.bin"]);
    assert_eq!(planned["result"]["deleted"], 2);
    assert!(stored.exists(), "a plan deletes nothing");
}

#[test]
fn plugin_install_pins_the_component_and_remove_takes_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = data.join("plugins");
    let installed = wharf(&data, &["plugin", "install", wharf_tests::HOSTILE]);
    assert!(installed.status.success(), "{}", stderr(&installed));
    assert!(stdout(&installed).contains("no daemon is running"));
    let wasm = std::fs::read(wharf_tests::HOSTILE).unwrap();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    let manifest = std::fs::read_to_string(plugins.join("hostile.toml")).unwrap();
    assert!(manifest.contains(&sha256), "{manifest}");
    assert!(manifest.contains("world = \"exporter\""), "{manifest}");
    assert_eq!(std::fs::read(plugins.join("hostile.wasm")).unwrap(), wasm);
    let listed = wharf(&data, &["plugin", "list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("hostile"), "{}", stdout(&listed));

    // An existing name, installed or bundled, needs --force.
    for (file, name) in [
        (wharf_tests::HOSTILE, "hostile"),
        (wharf_tests::HOSTILE, "keep-last"),
    ] {
        let again = wharf(&data, &["plugin", "install", file, "--name", name]);
        assert_eq!(again.status.code(), Some(2));
        assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    }
    let forced = wharf(
        &data,
        &["plugin", "install", wharf_tests::HOSTILE, "--force"],
    );
    assert!(forced.status.success(), "{}", stderr(&forced));

    // What does not load is refused with the load error; nothing is written.
    let refused = wharf(&data, &["plugin", "install", wharf_tests::FUTURE_WIT]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("wharf:plugin@0.3.0"),
        "{}",
        stderr(&refused)
    );
    assert!(!plugins.join("future-wit.toml").exists() && !plugins.join("future_wit.toml").exists());

    let removed = wharf(&data, &["plugin", "remove", "hostile"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(!plugins.join("hostile.toml").exists() && !plugins.join("hostile.wasm").exists());
    let again = wharf(&data, &["plugin", "remove", "hostile"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("bundled plugins cannot be removed"));
}

/// Stops the daemon with SIGTERM when the test ends, however it ends.
fn recorded_plugins(index: &Path) -> Vec<String> {
    let read = || -> anyhow::Result<Vec<String>> {
        let db = wharf::index::open_read_only(index)?;
        let mut query = db.prepare("SELECT name FROM plugins ORDER BY name")?;
        let rows = query.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    read().unwrap_or_default()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn install_and_remove_make_a_running_daemon_reload() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let index = data.join("index.sqlite");
    let _daemon = Daemon::new(
        Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
            .arg("--data-dir")
            .arg(&data)
            .arg("run")
            .env("WHARF_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let bundled = wharf::plugins::bundled(limits()).len();
    wait_until("the daemon records the bundled plugins", || {
        recorded_plugins(&index).len() == bundled
    });
    let installed = wharf(&data, &["plugin", "install", wharf_tests::HOSTILE]);
    assert!(installed.status.success(), "{}", stderr(&installed));
    assert!(
        stdout(&installed).contains("is reloading"),
        "{}",
        stdout(&installed)
    );
    wait_until("the daemon loads the installed plugin", || {
        recorded_plugins(&index).contains(&"hostile".to_owned())
    });
    let removed = wharf(&data, &["plugin", "remove", "hostile"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    wait_until("the daemon drops the removed plugin", || {
        recorded_plugins(&index).len() == bundled
    });
}

#[test]
fn plugin_inspect_says_in_one_line_why_a_file_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let junk = file("junk.wasm", b"not wasm at all");
    // The smallest valid core module and component.
    let core = file("core.wasm", b"\0asm\x01\0\0\0");
    let component = file("empty.wasm", b"\0asm\x0d\0\x01\0");
    for (path, code, expected) in [
        (&junk, 2, "not a WebAssembly file"),
        (
            &core,
            2,
            "a core wasm module, not a component: build with `--target wasm32-wasip2`",
        ),
        (&component, 1, "a component with no wharf world"),
        (&wharf_tests::FUTURE_WIT.to_owned(), 1, "wharf:plugin@0.3.0"),
    ] {
        let output = wharf(&data, &["plugin", "inspect", path]);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{path}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(message.contains(expected), "{path}: {message}");
        assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    }
    let good = wharf(&data, &["plugin", "inspect", wharf_tests::HOSTILE]);
    assert!(good.status.success(), "{}", stderr(&good));
}

#[test]
fn plugin_list_reports_a_stray_wasm_and_a_manifest_named_unlike_its_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = data.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let wasm = std::fs::read(wharf_tests::HOSTILE).unwrap();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    std::fs::write(plugins.join("stray.wasm"), &wasm).unwrap();
    std::fs::write(plugins.join("h.wasm"), &wasm).unwrap();
    std::fs::write(
        plugins.join("renamed.toml"),
        format!("wasm = \"h.wasm\"\nsha256 = \"{sha256}\"\n"),
    )
    .unwrap();
    let output = wharf(&data, &["plugin", "list"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let warnings = stderr(&output);
    assert!(
        warnings.contains("stray.wasm") && warnings.contains("no manifest names it"),
        "{warnings}"
    );
    assert!(!warnings.contains("h.wasm is in"), "{warnings}");
    assert!(
        warnings.contains("loaded as renamed, but the plugin calls itself hostile"),
        "{warnings}"
    );
}

#[test]
fn a_failing_manifest_over_a_bundled_plugin_leaves_the_bundled_one_recorded_as_bundled() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("keep-last.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"\0asm\x01\0\0\0"));
    std::fs::write(
        plugins.join("keep-last.toml"),
        format!("wasm = \"keep-last.wasm\"\nsha256 = \"{sha256}\"\n"),
    )
    .unwrap();
    let config = wharf::config::Config::default();
    let runtime = runtime(dir.path());
    let report = wharf::plugins::load_all(&runtime, &config, &plugins);
    assert!(report.registry.get("keep-last").is_some());
    assert_eq!(report.origins["keep-last"], "bundled");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("keep-last") && e.contains("core wasm module")),
        "{:?}",
        report.errors
    );
    let rows = report.rows();
    let row = rows.iter().find(|row| row.name == "keep-last").unwrap();
    assert_eq!(row.source, "bundled");
}

#[test]
fn a_component_over_the_size_limit_or_the_load_timeout_is_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = runtime_config(None);
    config.max_component_bytes = 1024;
    let small = wharf::runtime::Runtime::new(config).unwrap();
    let error = small.load(bundled("keep-last")).unwrap_err();
    assert!(
        error.to_string().contains("plugins.max_component_bytes"),
        "{error}"
    );
    // Compiling from scratch takes longer than a millisecond: that plugin
    // fails, the caller goes on.
    let uncached = wharf::runtime::Runtime::new(runtime_config(None)).unwrap();
    let error =
        wharf::plugins::load_bounded(&uncached, bundled("tar-export"), Duration::from_millis(1))
            .unwrap_err();
    assert!(
        error.to_string().contains("plugins.load_timeout_ms"),
        "{error}"
    );
    let loaded = runtime(dir.path()).load(bundled("tar-export")).unwrap();
    assert_eq!(loaded.name, "tar-export");
}

#[test]
fn the_panic_of_a_plugin_that_panics_at_load_is_in_the_not_loaded_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = data.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let wasm = std::fs::read(wharf_tests::PANICS_AT_LOAD).unwrap();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    std::fs::write(plugins.join("panicky.wasm"), &wasm).unwrap();
    std::fs::write(
        plugins.join("panicky.toml"),
        format!("wasm = \"panicky.wasm\"\nsha256 = \"{sha256}\"\n"),
    )
    .unwrap();
    let listed = wharf(&data, &["plugin", "list"]);
    assert_eq!(listed.status.code(), Some(1));
    let line = stderr(&listed)
        .lines()
        .find(|line| line.starts_with("not loaded:") && line.contains("panicky"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        line.contains("trapped")
            && line.contains("the configuration baked into this plugin is missing"),
        "{}",
        stderr(&listed)
    );
    let refused = wharf(
        &data,
        &[
            "plugin",
            "install",
            wharf_tests::PANICS_AT_LOAD,
            "--name",
            "other",
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("baked into this plugin is missing"),
        "{}",
        stderr(&refused)
    );
}
