//! The HTTP API of a real daemon on 127.0.0.1: auth, the export flow (202
//! and a job, then 201 and a download), downloads with Range and
//! If-None-Match, the JSON errors, files paged by keyset.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use wharf::daemon::{self, Signal};
use wharf::export;
use wharf::index::{ExportKey, Index, JobState};
use wharf::lease::Lease;
use wharf::store::DataDir;

use crate::exports::{dataset, rows};

struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Api {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = match body {
            Some(body) => self.agent.run(
                request
                    .header("Content-Type", "application/json")
                    .body(body.to_owned())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        }
        .unwrap();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        Answer {
            status: response.status().as_u16(),
            headers,
            body: response.body_mut().read_to_vec().unwrap(),
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, Some(&self.token.clone()), &[], None)
    }

    fn post(&self, path: &str, body: &str) -> Answer {
        self.call("POST", path, Some(&self.token.clone()), &[], Some(body))
    }
}

type Daemon = (
    tokio::runtime::Runtime,
    tokio::sync::mpsc::Sender<Signal>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    Api,
);

/// A daemon on `data` serving its API on a free loopback port.
fn start(data: &Path) -> Daemon {
    start_with(data, wharf::config::Config::default())
}

/// As [`start`], with `config` (its bind and ingest interval replaced).
fn start_with(data: &Path, mut config: wharf::config::Config) -> Daemon {
    config.api.bind = "127.0.0.1:0".into();
    config.ingest.scan_interval_ms = 86_400_000;
    // No retention policy (not even the default export-cache one), so the
    // startup cleanup is quick; it is awaited below before a test begins.
    config.cleanup.policies.clear();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (signals, receiver) = tokio::sync::mpsc::channel(1);
    let daemon = tokio.spawn(daemon::run(DataDir::new(data), config, receiver));
    let address_file: PathBuf = DataDir::new(data).api_address_path();
    let until = Instant::now() + Duration::from_secs(60);
    let address = loop {
        if let Ok(text) = std::fs::read_to_string(&address_file)
            && !text.trim().is_empty()
        {
            break text.trim().to_owned();
        }
        assert!(Instant::now() < until, "the API did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The API may answer before the daemon queues its startup cleanup, which
    // would then absorb a cleanup a test asks for: wait until it is over.
    let index = Index::open(&data.join("index.sqlite")).unwrap();
    while !index
        .jobs(Some(JobState::Done), 100)
        .unwrap()
        .iter()
        .any(|job| job.kind == "cleanup")
    {
        assert!(Instant::now() < until, "the startup cleanup did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(DataDir::new(data).api_token_path())
        .unwrap()
        .trim()
        .to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    (
        tokio,
        signals,
        daemon,
        Api {
            base: format!("http://{address}"),
            token,
            agent,
        },
    )
}

#[test]
fn an_application_exports_over_http_202_then_a_job_then_201_and_a_download_with_range_and_etag() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let (tokio, signals, daemon, api) = start(&data);

    // Auth: only /healthz is open; the token file is 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(DataDir::new(&data).api_token_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(api.call("GET", "/healthz", None, &[], None).status, 200);
    for token in [None, Some("wrong")] {
        let answer = api.call("GET", "/api/v1/datasets", token, &[], None);
        assert_eq!(answer.status, 401);
        assert_eq!(answer.json()["error"], "unauthorized");
        assert!(!String::from_utf8_lossy(&answer.body).contains("set1"));
    }

    let datasets = api.get("/api/v1/datasets").json();
    assert_eq!(datasets["datasets"][0]["name"], "set1");
    assert_eq!(datasets["datasets"][0]["files"], 2);

    let accepted = api.post(
        "/api/v1/datasets/set1/exports",
        r#"{"format": "tar-export"}"#,
    );
    assert_eq!(
        accepted.status,
        202,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    let job_url = accepted.header("location").unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job = api.get(&job_url).json();
        if job["job"]["state"] == "done" {
            break job;
        }
        assert_ne!(job["job"]["state"], "failed", "{job}");
        assert!(
            Instant::now() < until,
            "the export job did not finish: {job}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let download = job["download"].as_str().unwrap().to_owned();

    let created = api.post(
        "/api/v1/datasets/set1/exports",
        r#"{"format": "tar-export", "params": {}}"#,
    );
    assert_eq!(created.status, 201);
    assert_eq!(created.header("location"), Some(download.as_str()));

    let full = api.get(&download);
    assert_eq!(full.status, 200);
    assert_eq!(full.header("content-type"), Some("application/x-tar"));
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&full.body));
    let etag = format!("\"{sha}\"");
    assert_eq!(full.header("etag"), Some(etag.as_str()));
    assert_eq!(job["export"]["sha256"], sha);
    let tar = dir.path().join("got.tar");
    std::fs::write(&tar, &full.body).unwrap();
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "set1/a.bin\nset1/sub/b.bin\n"
    );

    let part = api.call(
        "GET",
        &download,
        Some(&api.token),
        &[("Range", "bytes=512-1023")],
        None,
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, full.body[512..1024]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 512-1023/{}", full.body.len()).as_str())
    );
    let tail = api.call(
        "GET",
        &download,
        Some(&api.token),
        &[("Range", "bytes=-10")],
        None,
    );
    assert_eq!(tail.body, full.body[full.body.len() - 10..]);
    let beyond = api.call(
        "GET",
        &download,
        Some(&api.token),
        &[("Range", "bytes=999999999-")],
        None,
    );
    assert_eq!(beyond.status, 416);
    let same = api.call(
        "GET",
        &download,
        Some(&api.token),
        &[("If-None-Match", &etag)],
        None,
    );
    assert_eq!(same.status, 304);
    assert!(same.body.is_empty());

    let exports = api.get("/api/v1/exports").json();
    assert_eq!(exports["exports"].as_array().unwrap().len(), 1);

    signals.blocking_send(Signal::Shutdown).unwrap();
    tokio.block_on(daemon).unwrap().unwrap();
    assert!(!DataDir::new(&data).api_address_path().exists());
}

#[test]
fn every_api_refusal_is_json_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    // A configured destination that holds no copy: its directory cannot be
    // created, so the daemon's sync never places anything there.
    let config = wharf::config::Config::parse(
        "[[destination]]\nname = \"local\"\nkind = \"local\"\npath = \"/dev/null/unwritable\"\n",
    )
    .unwrap();
    let (tokio, signals, daemon, api) = start_with(&data, config);
    let cases: Vec<(Answer, u16, &str, &str)> = vec![
        (
            api.post(
                "/api/v1/datasets/set1/exports",
                r#"{"format": "backup-lite", "params": {"destination": "s3"}}"#,
            ),
            409,
            "unknown_destination",
            "destination \"s3\" is not configured",
        ),
        (
            api.post(
                "/api/v1/datasets/set1/exports",
                r#"{"format": "backup-lite", "params": {"destination": "local"}}"#,
            ),
            409,
            "not_on_destination",
            "no verified copy of 2 of the 2 files of dataset \"set1\" (set1/a.bin, set1/sub/b.bin)",
        ),
        (
            api.post(
                "/api/v1/datasets/set1/exports",
                r#"{"format": "backup-lite"}"#,
            ),
            422,
            "invalid_params",
            "\"destination\" is required",
        ),
        (
            api.post(
                "/api/v1/datasets/nope/exports",
                r#"{"format": "tar-export"}"#,
            ),
            404,
            "unknown_dataset",
            "nope",
        ),
        (
            api.post("/api/v1/datasets/set1/exports", r#"{"format": "zap"}"#),
            404,
            "unknown_format",
            "tar-export",
        ),
        (
            api.post(
                "/api/v1/datasets/set1/exports",
                r#"{"format": "tar-export", "params": {"level": "9"}}"#,
            ),
            422,
            "invalid_params",
            "\"level\"",
        ),
        (
            api.post(
                "/api/v1/datasets/set1/exports",
                r#"{"formt": "tar-export"}"#,
            ),
            422,
            "invalid_body",
            "format",
        ),
        (
            api.get("/api/v1/datasets/nope"),
            404,
            "unknown_dataset",
            "GET /api/v1/datasets",
        ),
        (api.get("/api/v1/jobs/999"), 404, "unknown_job", "999"),
        (
            api.get("/api/v1/exports/999/download"),
            404,
            "unknown_export",
            "999",
        ),
        (api.get("/api/v1/files/999"), 404, "unknown_file", "999"),
        (api.get("/api/v1/nothing"), 404, "no_route", "openapi"),
    ];
    for (answer, status, error, says) in cases {
        let body = answer.json();
        assert_eq!(
            (answer.status, body["error"].as_str().unwrap()),
            (status, error),
            "{body}"
        );
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
    let document = api.get("/api/v1/openapi.json").json();
    assert!(
        document["paths"]["/api/v1/datasets/{name}/exports"]["post"]["responses"]["409"]
            .is_object(),
        "{document}"
    );
    validate_openapi(dir.path(), &document);
    // Files come in keyset pages.
    let first = api.get("/api/v1/files?limit=1").json();
    assert_eq!(first["files"].as_array().unwrap().len(), 1);
    let next = first["next"].as_i64().unwrap();
    let second = api
        .get(&format!("/api/v1/files?limit=1&after={next}"))
        .json();
    assert_ne!(second["files"][0]["id"], first["files"][0]["id"]);
    let id = second["files"][0]["id"].as_i64().unwrap();
    assert_eq!(
        api.get(&format!("/api/v1/files/{id}")).json()["path"],
        second["files"][0]["path"]
    );
    signals.blocking_send(Signal::Shutdown).unwrap();
    tokio.block_on(daemon).unwrap().unwrap();
}

#[test]
fn an_application_triggers_a_cleanup_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let (tokio, signals, daemon, api) = start(&data);
    let answer = api.post("/api/v1/cleanup?mode=gc", "");
    assert_eq!(answer.status, 202);
    let job = answer.json();
    assert_eq!(job["job"]["kind"], "gc", "{job}");
    let location = answer.header("location").unwrap().to_owned();
    // The job runs to its end in the daemon.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let status = api.get(&location).json();
        if status["job"]["state"] == "done" {
            break;
        }
        assert!(
            Instant::now() < until,
            "the gc job did not finish: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let full = api.post("/api/v1/cleanup", "");
    assert_eq!(full.status, 202);
    assert_eq!(full.json()["job"]["kind"], "cleanup");
    let bad = api.post("/api/v1/cleanup?mode=everything", "");
    assert_eq!(bad.status, 422);
    let error = bad.json();
    assert_eq!(error["error"], "invalid_mode");
    assert!(
        error["message"].as_str().unwrap().contains("mode=gc"),
        "{error}"
    );
    signals.blocking_send(Signal::Shutdown).unwrap();
    tokio.block_on(daemon).unwrap().unwrap();
}

/// Validates the served OpenAPI document with `openapi-spec-validator`
/// (the OpenAPI 3.1 JSON Schema and the rules beyond it), which `.ci/run`
/// installs into a venv and names in `WHARF_OPENAPI_VALIDATOR`; CI also
/// sets `WHARF_REQUIRE_OPENAPI_VALIDATOR`, so there a missing validator
/// fails the test instead of skipping the check. A broken copy of the
/// document must be refused, so the check is known to bite.
fn validate_openapi(dir: &Path, document: &Value) {
    let validator = std::env::var_os("WHARF_OPENAPI_VALIDATOR")
        .map(PathBuf::from)
        .filter(|path| path.is_file());
    let Some(validator) = validator else {
        assert!(
            std::env::var_os("WHARF_REQUIRE_OPENAPI_VALIDATOR").is_none(),
            "WHARF_REQUIRE_OPENAPI_VALIDATOR is set but WHARF_OPENAPI_VALIDATOR does not name \
             an openapi-spec-validator executable (.ci/run installs one into target/ci-venv)"
        );
        eprintln!(
            "skipping the OpenAPI validation: set WHARF_OPENAPI_VALIDATOR to an \
             openapi-spec-validator executable (pip install openapi-spec-validator)"
        );
        return;
    };
    let check = |name: &str, document: &Value| {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(document).unwrap()).unwrap();
        std::process::Command::new(&validator)
            .arg(&path)
            .output()
            .unwrap()
    };
    let output = check("openapi.json", document);
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut broken = document.clone();
    broken["paths"]["/api/v1/jobs/{id}"]["get"]["responses"] = Value::String("none".into());
    assert!(!check("broken.json", &broken).status.success());
}

#[test]
fn twenty_concurrent_identical_export_requests_make_one_plugin_run_and_all_get_its_download() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let (tokio, signals, daemon, api) = start(&data);
    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    api.call(
                        "POST",
                        "/api/v1/datasets/set1/exports",
                        Some(&api.token),
                        &[("Prefer", "wait=60")],
                        Some(r#"{"format": "tar-export"}"#),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut results = std::collections::BTreeSet::new();
    for answer in &answers {
        assert_eq!(
            answer.status,
            201,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let body = answer.json();
        assert_eq!(answer.header("location"), body["download"].as_str());
        results.insert((
            body["download"].as_str().unwrap().to_owned(),
            body["export"]["sha256"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(results.len(), 1, "{results:?}");
    // One plugin run: one export file committed, and every export job (the
    // one that ran, and the one more run a request during it asked for,
    // which finds the cache) is done without an error.
    assert_eq!(
        rows(&data, "SELECT path FROM files WHERE kind = 'export'").len(),
        1
    );
    assert_eq!(rows(&data, "SELECT CAST(id AS TEXT) FROM exports").len(), 1);
    // The one more run may still be on its way: wait for the queue to settle.
    let until = Instant::now() + Duration::from_secs(60);
    while !rows(
        &data,
        "SELECT state FROM jobs WHERE kind = 'export' AND state IN ('queued', 'running')",
    )
    .is_empty()
    {
        assert!(Instant::now() < until, "the export jobs never settled");
        std::thread::sleep(Duration::from_millis(20));
    }
    let jobs = rows(
        &data,
        "SELECT state || ':' || attempts || ':' || coalesce(last_error, '') FROM jobs WHERE kind = 'export'",
    );
    assert!(
        !jobs.is_empty() && jobs.iter().all(|job| job == "done:1:"),
        "{jobs:?}"
    );
    let (download, sha) = results.pop_first().unwrap();
    let got = api.get(&download);
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&got.body)),
        sha
    );
    signals.blocking_send(Signal::Shutdown).unwrap();
    tokio.block_on(daemon).unwrap().unwrap();
}

#[test]
fn an_export_request_waiting_past_the_acquire_timeout_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let mut config = wharf::config::Config::default();
    config.exports.acquire_timeout_ms = 200;
    let (tokio, signals, daemon, api) = start_with(&data, config);
    // Another host's run of the same cache key holds its lease (a holder
    // of another scope is never judged dead: only release or expiry free it).
    let index = std::sync::Arc::new(Index::open(&data.join("index.sqlite")).unwrap());
    let set = index.dataset("set1").unwrap().unwrap();
    let key = ExportKey {
        entity: set.id,
        version: set.version,
        format: "tar-export".into(),
        params_sha256: export::params_sha256(&Vec::new()),
    };
    let held = Lease::acquire_as(
        index.clone(),
        &export::key_name(&key),
        "elsewhere~boot~ns:1:1:beef",
        Duration::from_secs(60),
        Duration::ZERO,
    )
    .unwrap();
    let request = |wait: &str| {
        api.call(
            "POST",
            "/api/v1/datasets/set1/exports",
            Some(&api.token),
            &[("Prefer", wait)],
            Some(r#"{"format": "tar-export"}"#),
        )
    };
    let busy = request("wait=30");
    assert_eq!(busy.status, 503, "{}", String::from_utf8_lossy(&busy.body));
    let retry_after: u64 = busy.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    let error = busy.json();
    assert_eq!(error["error"], "retry_later");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("another export of the same dataset, format and parameters"),
        "{error}"
    );
    assert!(
        rows(&data, "SELECT path FROM files WHERE kind = 'export'").is_empty(),
        "no second run while the lease is held"
    );
    // Once the other run lets go, the retry makes it and a waiting request
    // gets it.
    drop(held);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = request("wait=30");
        if answer.status == 201 {
            break;
        }
        assert_eq!(
            answer.status,
            503,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(Instant::now() < until, "the retry never made the export");
        std::thread::sleep(Duration::from_millis(50));
    }
    signals.blocking_send(Signal::Shutdown).unwrap();
    tokio.block_on(daemon).unwrap().unwrap();
}
