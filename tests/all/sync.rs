//! Sync through the `wharf` binary: `wharf sync --wait` without a daemon
//! and the daemon itself, to a local directory (`local-dir`), to an HTTP
//! server on loopback (`http-put`), with a terminal, a transient and a
//! killed upload, skipped files, and retention held back by a required
//! destination.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::http_server::{Reply, Server};
use crate::support::{Daemon, guest};

/// A data directory with a `wharf.toml` whose tail is the test's, and a
/// destination directory beside it.
struct Data {
    _dir: tempfile::TempDir,
    root: PathBuf,
    dest: PathBuf,
    sources: PathBuf,
}

/// Settings every test shares: no API, quick schedules and backoff.
const BASE: &str = "[api]\nenabled = false\n[jobs]\nbackoff_base_ms = 50\nbackoff_cap_ms = 400\n\
                    [ingest]\nscan_interval_ms = 200\nfile_last_modified_ms = 0\n";

impl Data {
    fn new(config: &str) -> Data {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let dest = dir.path().join("backup");
        let sources = dir.path().join("sources");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&sources).unwrap();
        let config = config.replace("DEST", dest.to_str().unwrap());
        std::fs::write(root.join("wharf.toml"), format!("{BASE}{config}")).unwrap();
        Data {
            _dir: dir,
            root,
            dest,
            sources,
        }
    }

    fn rewrite_config(&self, config: &str) {
        let config = config.replace("DEST", self.dest.to_str().unwrap());
        std::fs::write(self.root.join("wharf.toml"), format!("{BASE}{config}")).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wharf-under-test"));
        command
            .arg("--data-dir")
            .arg(&self.root)
            .args(args)
            .env("WHARF_LOG", "warn");
        command
    }

    fn wharf(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// A file written `age` ago, then added to the store as
    /// `files/{name}` (a name with a directory is added as that directory,
    /// which is its entity).
    fn add(&self, name: &str, content: &[u8], age: Duration) {
        let stage = self
            .sources
            .join(format!("{}", crate::support::rand_suffix()));
        let source = stage.join(name);
        std::fs::create_dir_all(source.parent().unwrap()).unwrap();
        std::fs::write(&source, content).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&source)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
        let top = stage.join(name.split('/').next().unwrap());
        let output = self.wharf(&["add", top.to_str().unwrap()]);
        assert!(output.status.success(), "{}", text(&output));
        assert!(
            self.root.join("files").join(name).exists(),
            "{}",
            text(&output)
        );
    }

    fn status(&self) -> serde_json::Value {
        let output = self.wharf(&["sync", "status", "--format", "json"]);
        assert!(output.status.success(), "{}", text(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// One column of every `sync_status` row, by file path.
    fn rows(&self, column: &str) -> HashMap<String, Option<String>> {
        let db = wharf::index::open_read_only(&self.root.join("index.sqlite")).unwrap();
        let mut query = db
            .prepare(&format!(
                "SELECT f.path, CAST(s.{column} AS TEXT) FROM sync_status s JOIN files f ON f.id = s.file_id"
            ))
            .unwrap();
        query
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn sql(&self, query: &str) -> Vec<String> {
        let db = wharf::index::open_read_only(&self.root.join("index.sqlite")).unwrap();
        let mut query = db.prepare(query).unwrap();
        query
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// `wharf run` in the background, its log in `daemon.log`.
    fn daemon(&self) -> Daemon {
        let log = std::fs::File::create(self.root.join("daemon.log")).unwrap();
        self.command(&["run"])
            .env("WHARF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Daemon::new)
            .unwrap()
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default()
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn terminate(child: &mut Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

const HOUR: Duration = Duration::from_secs(3600);

const LOCAL: &str = "[[destination]]\nname = \"backup\"\nkind = \"local\"\npath = \"DEST\"\n";

#[test]
fn sync_wait_copies_files_verified_under_their_paths_and_skips_empty_and_recent_ones() {
    // Three lanes, all run by `sync --wait` itself (no daemon).
    let data = Data::new(&format!(
        "[sync]\nworkers = 3\nfile_last_modified_ms = 600000\n{LOCAL}"
    ));
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    data.add("set1/a.bin", b"alpha", HOUR);
    data.add("set1/deep/b.bin", &big, HOUR);
    data.add("c.bin", b"gamma", HOUR);
    // `wharf add` refuses empty files; one can still be in the index (an
    // fsck --repair of a file that arrived another way).
    std::fs::write(data.root.join("files/empty.bin"), b"").unwrap();
    wharf::index::Index::open(&data.root.join("index.sqlite"))
        .unwrap()
        .insert_files(&[wharf::index::NewFile {
            path: "files/empty.bin".into(),
            size: 0,
            mtime_ms: 1,
            sha256: sha256_hex(b""),
            kind: "capture".into(),
            entity: None,
            created_ms: 1,
        }])
        .unwrap();
    let output = data.wharf(&["sync", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read(data.dest.join("set1/a.bin")).unwrap(),
        b"alpha"
    );
    assert_eq!(
        std::fs::read(data.dest.join("set1/deep/b.bin")).unwrap(),
        big
    );
    assert_eq!(std::fs::read(data.dest.join("c.bin")).unwrap(), b"gamma");
    assert!(
        !data.dest.join("empty.bin").exists(),
        "an empty file is not synced"
    );
    let status = data.status();
    let backup = &status["destinations"][0];
    assert_eq!(backup["name"], "backup");
    assert_eq!(backup["plugin"], "local-dir");
    assert_eq!(backup["synced"]["files"], 3, "{status}");
    assert_eq!(backup["synced"]["bytes"], 10 + big.len() as u64);
    assert_eq!(backup["pending"]["files"], 0);
    assert_eq!(status["skipped_empty_files"], 1);
    // Each copy's sha256 was verified against the index.
    let verified = data.rows("verified_sha256");
    assert_eq!(
        verified["files/set1/deep/b.bin"].as_deref(),
        Some(sha256_hex(&big).as_str())
    );
    assert_eq!(verified.len(), 3, "no row for the empty file: {verified:?}");

    // A file modified a moment ago waits; the next sync leaves the others be.
    data.add("fresh.bin", b"fresh", Duration::ZERO);
    let before = std::fs::metadata(data.dest.join("c.bin"))
        .unwrap()
        .modified()
        .unwrap();
    let output = data.wharf(&["sync", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!data.dest.join("fresh.bin").exists());
    let status = data.status();
    assert_eq!(status["destinations"][0]["pending"]["files"], 1, "{status}");
    assert_eq!(status["destinations"][0]["synced"]["files"], 3);
    let after = std::fs::metadata(data.dest.join("c.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "a synced file is not copied again");
    let human = data.wharf(&["sync", "status"]);
    let shown = String::from_utf8_lossy(&human.stdout);
    assert!(
        shown.contains("backup (local-dir → ") && shown.contains("pending 1"),
        "{shown}"
    );
    assert!(
        shown.contains("empty files skipped (nothing to upload): 1"),
        "{shown}"
    );
}

#[test]
fn sync_refuses_an_unknown_destination_and_a_config_without_any() {
    let data = Data::new(LOCAL);
    let output = data.wharf(&["sync", "--destination", "nope", "--wait"]);
    assert_eq!(output.status.code(), Some(2));
    let shown = String::from_utf8_lossy(&output.stderr);
    assert!(
        shown.contains("--destination nope") && shown.contains("backup"),
        "{shown}"
    );
    data.rewrite_config("");
    let output = data.wharf(&["sync", "--wait"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no [[destination]] is configured"));
}

/// Installs the hostile uploader as plugin `hostile-uploader`.
fn install_hostile_uploader(data: &Data) {
    let wasm = guest(wharf_tests::HOSTILE_UPLOADER);
    let plugins = data.root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("hostile-uploader.wasm"), &wasm).unwrap();
    std::fs::write(
        plugins.join("hostile-uploader.toml"),
        format!(
            "wasm = \"hostile-uploader.wasm\"\nsha256 = \"{}\"\nworld = \"uploader\"\n",
            sha256_hex(&wasm)
        ),
    )
    .unwrap();
}

#[test]
fn a_terminal_failure_ends_failed_with_its_error_logged_once_and_retry_failed_requeues_it() {
    let hostile = |mode: &str| {
        format!(
            "[[destination]]\nname = \"backup\"\nkind = \"local\"\npath = \"DEST\"\nplugin = \"hostile-uploader\"\n\
             params = {{ mode = \"{mode}\", key = \"a.bin\" }}\n"
        )
    };
    let data = Data::new(&hostile("no-such-mode"));
    install_hostile_uploader(&data);
    data.add("a.bin", b"payload", HOUR);
    let first = data.wharf(&["sync", "--wait"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let shown = String::from_utf8_lossy(&first.stdout);
    assert!(
        shown.contains("failed 1") && shown.contains("unknown mode no-such-mode"),
        "{shown}"
    );
    let status = data.status();
    let backup = &status["destinations"][0];
    assert_eq!(backup["failed"]["files"], 1, "{status}");
    assert!(
        backup["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("unknown mode")
    );
    // Failed for good: a second sync does not try it again.
    let second = data.wharf(&["sync", "--wait"]);
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(data.rows("attempts")["files/a.bin"].as_deref(), Some("1"));
    let logged = [&first, &second]
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .matches("sync failed for good")
                .count()
        })
        .sum::<usize>();
    assert_eq!(logged, 1, "logged once");
    let events = data.sql("SELECT message FROM events WHERE kind = 'failed'");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("files/a.bin") && events[0].contains("backup"));
    let failures = data.sql("SELECT error FROM failures WHERE what = 'sync'");
    assert_eq!(failures.len(), 1);

    // Fixed, then retried on request: it syncs.
    data.rewrite_config(&hostile("place"));
    let retried = data.wharf(&["sync", "retry-failed", "--destination", "backup"]);
    assert!(retried.status.success(), "{}", text(&retried));
    assert!(String::from_utf8_lossy(&retried.stdout).contains("1 failed file is queued again"));
    let third = data.wharf(&["sync", "--wait"]);
    assert!(third.status.success(), "{}", text(&third));
    assert_eq!(std::fs::read(data.dest.join("a.bin")).unwrap(), b"payload");
    assert_eq!(data.status()["destinations"][0]["synced"]["files"], 1);
}

#[test]
fn a_copy_whose_sha256_differs_is_retried_with_backoff_then_failed_for_good() {
    // `place-range` stores all but the first and last byte: never verified.
    let data = Data::new(
        "[sync]\nmax_attempts = 3\n[[destination]]\nname = \"backup\"\nkind = \"local\"\npath = \"DEST\"\n\
         plugin = \"hostile-uploader\"\nparams = { mode = \"place-range\", key = \"a.bin\" }\n",
    );
    install_hostile_uploader(&data);
    data.add("a.bin", b"payload", HOUR);
    let output = data.wharf(&["sync", "--wait"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(data.rows("attempts")["files/a.bin"].as_deref(), Some("3"));
    assert_eq!(data.rows("state")["files/a.bin"].as_deref(), Some("failed"));
    let error = data.rows("last_error")["files/a.bin"].clone().unwrap();
    assert!(
        error.contains("has sha256") && error.contains("gave up after 3 attempts"),
        "{error}"
    );
    assert_eq!(data.rows("verified_sha256")["files/a.bin"], None);
}

/// An object store on loopback for `http-put`: PUT stores the body (after
/// answering 503 to the first `failures` PUTs), HEAD answers its size and
/// digest (RFC 9530), or 404.
/// Objects by path.
type Objects = Arc<Mutex<HashMap<String, Vec<u8>>>>;

fn object_server(failures: usize) -> (Server, Objects) {
    let objects: Objects = Arc::default();
    let stored = objects.clone();
    let puts = Mutex::new(0usize);
    let server = Server::http(move |seen| {
        let digest = |body: &[u8]| {
            use base64_digest::encode;
            format!("sha-256=:{}:", encode(&Sha256::digest(body)))
        };
        let mut objects = stored.lock().unwrap();
        match seen.method.as_str() {
            "PUT" => {
                let mut puts = puts.lock().unwrap();
                *puts += 1;
                if *puts <= failures {
                    return Reply::status(503).header("Retry-After", "0");
                }
                objects.insert(seen.path.clone(), seen.body.clone());
                Reply::status(201).header("Repr-Digest", &digest(&seen.body))
            }
            "HEAD" => match objects.get(&seen.path) {
                Some(body) => Reply::status(200)
                    .header("Content-Length", &body.len().to_string())
                    .header("Repr-Digest", &digest(body)),
                None => Reply::status(404),
            },
            _ => Reply::status(405),
        }
    });
    (server, objects)
}

/// Standard base64, enough for a digest header in a test.
mod base64_digest {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.len();
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= n {
                    out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[test]
fn http_put_to_a_loopback_server_backs_off_on_503_and_ends_synced_once() {
    let (server, objects) = object_server(2);
    let data = Data::new(&format!(
        "[[destination]]\nname = \"web\"\nkind = \"http\"\nurl = \"{}\"\n",
        server.url("/objects")
    ));
    data.add("a.bin", b"over the wire", HOUR);
    let output = data.wharf(&["sync", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    let sha = sha256_hex(b"over the wire");
    assert_eq!(
        objects.lock().unwrap()[&format!("/objects/{sha}")],
        b"over the wire"
    );
    let seen = server.seen();
    let puts = seen.iter().filter(|s| s.method == "PUT").count();
    assert_eq!(puts, 3, "two 503s, then the upload");
    assert_eq!(data.rows("attempts")["files/a.bin"].as_deref(), Some("3"));
    assert_eq!(
        data.rows("verified_sha256")["files/a.bin"].as_deref(),
        Some(sha.as_str())
    );
    assert_eq!(
        data.rows("remote_ref")["files/a.bin"].as_deref(),
        Some(server.url(&format!("/objects/{sha}")).as_str())
    );
    // A second destination on the same server: the HEAD finds the object
    // with its digest, so it is verified without a second PUT.
    data.rewrite_config(&format!(
        "[[destination]]\nname = \"web\"\nkind = \"http\"\nurl = \"{0}\"\n\
         [[destination]]\nname = \"web2\"\nkind = \"http\"\nurl = \"{0}\"\n",
        server.url("/objects")
    ));
    let before = server.seen().len();
    let output = data.wharf(&["sync", "--wait", "--destination", "web2"]);
    assert!(output.status.success(), "{}", text(&output));
    let methods: Vec<String> = server.seen()[before..]
        .iter()
        .map(|s| s.method.clone())
        .collect();
    assert!(!methods.contains(&"PUT".to_owned()), "{methods:?}");
    let status = data.status();
    assert_eq!(status["destinations"][1]["name"], "web2");
    assert_eq!(status["destinations"][1]["synced"]["files"], 1, "{status}");
}

#[test]
fn the_daemon_syncs_what_ingest_adds_and_reports_an_unreachable_destination_once() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = Data::new(&format!(
        "[sync]\ninterval_ms = 200\nfile_last_modified_ms = 0\nlog_interval_ms = 100\n{LOCAL}\
         [[destination]]\nname = \"offline\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{closed}/x\"\n"
    ));
    let mut daemon = data.daemon();
    let inbox = data.root.join("inbox/set1");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a.bin"), b"from the inbox").unwrap();
    std::fs::File::options()
        .write(true)
        .open(inbox.join("a.bin"))
        .unwrap()
        .set_modified(SystemTime::now() - HOUR)
        .unwrap();
    wait_for(
        "the inbox file to be synced",
        Duration::from_secs(60),
        || data.dest.join("set1/a.bin").exists(),
    );
    // `wharf sync --wait` beside the daemon: the daemon's lanes run it, and
    // it returns once a run that started after the request has ended.
    data.add("later.bin", b"added by the CLI", HOUR);
    let output = data.wharf(&["sync", "--wait", "--destination", "backup"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read(data.dest.join("later.bin")).unwrap(),
        b"added by the CLI"
    );
    // Several sync periods pass with the other destination down.
    wait_for("sync runs", Duration::from_secs(30), || {
        data.sql("SELECT CAST(count(*) AS TEXT) FROM jobs WHERE kind = 'sync' AND state = 'done'")
            [0]
        .parse::<u32>()
        .unwrap()
            >= 6
    });
    terminate(&mut daemon);
    assert_eq!(
        std::fs::read(data.dest.join("set1/a.bin")).unwrap(),
        b"from the inbox"
    );
    let log = data.daemon_log();
    assert_eq!(
        log.matches("destination unreachable").count(),
        1,
        "reported once:\n{log}"
    );
    assert!(
        log.contains("destination offline") || log.contains("offline"),
        "{log}"
    );
    let status = data.status();
    let offline = status["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "offline")
        .unwrap()
        .clone();
    assert_eq!(
        offline["pending"]["files"], 2,
        "waits, not failed: {status}"
    );
}

#[test]
fn a_daemon_killed_mid_upload_leaves_the_file_to_be_synced_once_after_restart() {
    let data = Data::new(&format!("[sync]\nfile_last_modified_ms = 0\n{LOCAL}"));
    let big = vec![7u8; 256 << 20];
    data.add("big.bin", &big, HOUR);
    drop(big);
    let mut daemon = data.daemon();
    let state = || data.rows("state").get("files/big.bin").cloned().flatten();
    wait_for("the upload to start", Duration::from_secs(60), || {
        state().as_deref() == Some("in_progress")
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(state().as_deref(), Some("in_progress"), "killed mid-upload");
    let mut daemon = data.daemon();
    wait_for("the file to be synced", Duration::from_secs(120), || {
        state().as_deref() == Some("synced")
    });
    terminate(&mut daemon);
    let copy = std::fs::read(data.dest.join("big.bin")).unwrap();
    assert_eq!(copy.len(), 256 << 20);
    assert!(copy.iter().all(|b| *b == 7));
    // The killed copy's temporary file was taken over by the retry, not
    // left in the destination.
    let left: Vec<_> = std::fs::read_dir(&data.dest)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != "big.bin")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The interrupted attempt is not counted: one attempt, synced once.
    assert_eq!(data.rows("attempts")["files/big.bin"].as_deref(), Some("1"));
    assert_eq!(
        data.sql("SELECT CAST(count(*) AS TEXT) FROM sync_status WHERE state = 'synced'"),
        ["1"]
    );
}

#[test]
fn a_required_destination_keeps_retention_from_deleting_an_unsynced_file() {
    let policy = "[cleanup]\nmax_delete_percent = 100\n[[cleanup.policy]]\nname = \"all\"\nplugin = \"keep-last\"\nparams = { keep = 0 }\n";
    let data = Data::new(&format!(
        "{policy}[[destination]]\nname = \"backup\"\nkind = \"local\"\npath = \"DEST\"\nrequired = true\n"
    ));
    data.add("set1/a.bin", b"keep me until copied", HOUR);
    // No sync has run: the cleanup must not delete it.
    let output = data.wharf(&["cleanup", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        data.root.join("files/set1/a.bin").exists(),
        "deleted before it was synced"
    );
    let output = data.wharf(&["sync", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = data.wharf(&["cleanup", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        !data.root.join("files/set1/a.bin").exists(),
        "synced, then deleted"
    );
    assert_eq!(
        std::fs::read(data.dest.join("set1/a.bin")).unwrap(),
        b"keep me until copied"
    );
}

#[test]
fn a_plugin_quarantined_for_trapping_leaves_the_remaining_files_pending() {
    // `http` on a local destination: every call is denied, a trap.
    let data = Data::new(
        "[plugins]\nquarantine_after = 2\n[sync]\nworkers = 1\n[[destination]]\nname = \"backup\"\nkind = \"local\"\npath = \"DEST\"\n\
         plugin = \"hostile-uploader\"\nparams = { mode = \"http\" }\n",
    );
    install_hostile_uploader(&data);
    for i in 0..5 {
        data.add(&format!("f{i}.bin"), format!("file {i}").as_bytes(), HOUR);
    }
    let output = data.wharf(&["sync", "--wait"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("quarantined"), "{stderr}");
    let status = data.status();
    let backup = &status["destinations"][0];
    assert_eq!(backup["failed"]["files"], 2, "{status}");
    assert_eq!(backup["pending"]["files"], 3, "{status}");
    assert!(
        backup["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("access denied"),
        "{status}"
    );
}

/// An S3 destination configured as the README shows (path style, a prefix,
/// the credential in a 0600 file), against a real S3 server on loopback:
/// `wharf sync --wait` stores a small file with one PUT and a large one in
/// parts, each once under `prefix/sha256` and read back identical; a daemon
/// SIGKILLed in the middle of a multipart upload and restarted ends with
/// the file synced and still exactly one whole object per file.
#[test]
fn an_s3_destination_syncs_each_file_once_and_survives_a_daemon_killed_mid_upload() {
    use crate::s3::{ACCESS_KEY, BUCKET, PREFIX, S3Server, SECRET_KEY};
    let server = S3Server::start();
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("s3.toml");
    std::fs::write(
        &secret_file,
        format!("access_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let data = Data::new(&format!(
        "[sync]\nfile_last_modified_ms = 0\n\
         [[destination]]\nname = \"cloud\"\nkind = \"s3\"\nendpoint = \"http://{}\"\n\
         bucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\npath_style = true\ncredential = \"test\"\n\
         params = {{ part_size = \"5MiB\", multipart_threshold = \"6MiB\" }}\n\
         [credential.test]\nfile = \"{}\"\n",
        server.authority(),
        secret_file.display()
    ));
    let small = b"a small file, one PUT".to_vec();
    let large: Vec<u8> = (0..(12u32 << 20)).map(|i| (i % 251) as u8).collect();
    data.add("set1/small.bin", &small, HOUR);
    data.add("set1/large.bin", &large, HOUR);

    let output = data.wharf(&["sync", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    let states = data.rows("state");
    assert_eq!(states["files/set1/small.bin"].as_deref(), Some("synced"));
    assert_eq!(states["files/set1/large.bin"].as_deref(), Some("synced"));
    let mut expected = vec![
        format!("{PREFIX}/{}", sha256_hex(&small)),
        format!("{PREFIX}/{}", sha256_hex(&large)),
    ];
    expected.sort();
    let mut keys = server.keys();
    keys.sort();
    assert_eq!(keys, expected, "one object per file, under its sha256");
    for content in [&small, &large] {
        let stored = server.get(&format!("{PREFIX}/{}", sha256_hex(content)));
        assert_eq!(&stored, content, "read back identical");
    }
    // Syncing again uploads nothing new.
    let output = data.wharf(&["sync", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(server.keys().len(), 2);

    // A daemon killed while a multipart upload is in progress.
    let big: Vec<u8> = (0..(48u32 << 20)).map(|i| (i % 241) as u8).collect();
    data.add("set2/big.bin", &big, HOUR);
    let mut daemon = data.daemon();
    let state = || {
        data.rows("state")
            .get("files/set2/big.bin")
            .cloned()
            .flatten()
    };
    wait_for("the upload to start", Duration::from_secs(60), || {
        !server.uploads_in_progress().is_empty()
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_ne!(state().as_deref(), Some("synced"), "killed mid-upload");
    let mut daemon = data.daemon();
    wait_for("the file to be synced", Duration::from_secs(180), || {
        state().as_deref() == Some("synced")
    });
    terminate(&mut daemon);
    let key = format!("{PREFIX}/{}", sha256_hex(&big));
    assert_eq!(server.keys().len(), 3, "one more object, not two");
    assert_eq!(sha256_hex(&server.get(&key)), sha256_hex(&big));
}

#[test]
fn on_one_worker_a_cleanup_asked_for_during_a_long_sync_runs_before_the_sync_ends() {
    // Each upload takes 400 ms; twelve of them hold the only worker for
    // 4.8 s unless the lane makes way (after its 100 ms slice).
    let stored: Objects = Arc::default();
    let kept = stored.clone();
    let server = Server::http(move |seen| {
        let digest = format!(
            "sha-256=:{}:",
            base64_digest::encode(&Sha256::digest(&seen.body))
        );
        match seen.method.as_str() {
            "PUT" => {
                std::thread::sleep(Duration::from_millis(400));
                kept.lock()
                    .unwrap()
                    .insert(seen.path.clone(), seen.body.clone());
                Reply::status(201).header("Repr-Digest", &digest)
            }
            _ => Reply::status(404),
        }
    });
    let data = Data::new("");
    std::fs::write(
        data.root.join("wharf.toml"),
        format!(
            "{}[sync]\nworkers = 1\n\
             [[destination]]\nname = \"web\"\nkind = \"http\"\nurl = \"{}\"\n",
            BASE.replace("[jobs]\n", "[jobs]\nworkers = 1\ntime_slice_ms = 100\n"),
            server.url("/objects")
        ),
    )
    .unwrap();
    for i in 0..12 {
        data.add(&format!("f{i}.bin"), format!("file {i}").as_bytes(), HOUR);
    }
    let mut daemon = data.daemon();
    wait_for("the first upload", Duration::from_secs(60), || {
        server.seen().iter().any(|s| s.method == "PUT")
    });
    let output = data.wharf(&["cleanup", "--gc-only", "--wait"]);
    assert!(output.status.success(), "{}", text(&output));
    let synced = || {
        data.sql("SELECT CAST(count(*) AS TEXT) FROM sync_status WHERE state = 'synced'")[0]
            .parse::<usize>()
            .unwrap()
    };
    assert!(
        synced() < 12,
        "the cleanup waited for the whole sync: {}",
        data.daemon_log()
    );
    wait_for("every file synced", Duration::from_secs(60), || {
        synced() == 12
    });
    terminate(&mut daemon);
    assert_eq!(stored.lock().unwrap().len(), 12);
}
