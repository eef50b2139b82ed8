//! The HTTP API of a real daemon on 127.0.0.1: auth, the export flow (202
//! and a job, then 201 and a download), downloads with Range and
//! If-None-Match, the JSON errors, files paged by keyset.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use wharf::daemon::{self, Signal};
use wharf::store::DataDir;

use crate::exports::dataset;

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

/// A daemon on `data` serving its API on a free loopback port.
fn start(
    data: &Path,
) -> (
    tokio::runtime::Runtime,
    tokio::sync::mpsc::Sender<Signal>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    Api,
) {
    let mut config = wharf::config::Config::default();
    config.api.bind = "127.0.0.1:0".into();
    config.ingest.scan_interval_ms = 86_400_000;
    // No retention policy (not even the default export-cache one), so the
    // startup cleanup is over before a test triggers its own.
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
    let (tokio, signals, daemon, api) = start(&data);
    let cases: Vec<(Answer, u16, &str, &str)> = vec![
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
        document["paths"]["/api/v1/datasets/{name}/exports"]["post"].is_object(),
        "{document}"
    );
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
