//! The bundled `s3` uploader against a real S3 server on 127.0.0.1 (the
//! `s3-server` test binary: s3s-fs behind SigV4 authentication), directly
//! and through a fault-injection proxy (`s3_faults.rs`): single and
//! multipart uploads checked by an independent signed GET, repeated and
//! interrupted uploads that never leave a second or a corrupt object, each
//! fault's error class, and bad destinations named in their errors.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use sha2::{Digest, Sha256};
use wharf::runtime::{
    CallError, CallFile, Credential, DestinationAccess, ErrorClass, Plugin, RemoteAccess, Runtime,
    UploadTarget,
};

use crate::s3_faults::{Fault, Head, Proxy};
use crate::support::*;

pub(crate) const ACCESS_KEY: &str = "wharf-test-key";
pub(crate) const SECRET_KEY: &str = "wharf-test-secret-0123456789";
pub(crate) const BUCKET: &str = "bucket";
pub(crate) const PREFIX: &str = "pre";
const MIB: usize = 1 << 20;

/// `s3-server` on a free port with a temporary root and one bucket; killed
/// when dropped.
pub(crate) struct S3Server {
    child: Child,
    pub(crate) port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    pub(crate) fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_s3-server"))
            .arg("--root")
            .arg(root.path())
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .args(["--bucket", BUCKET])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("s3-server did not start: {line:?}"));
        S3Server { child, port, root }
    }

    pub(crate) fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Files of multipart uploads in progress (s3s-fs keeps them in its root).
    pub(crate) fn uploads_in_progress(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload_id-"))
            .collect()
    }

    /// A request signed with `secret` (the server's own unless a test
    /// says otherwise), sent straight to the server.
    fn signed(&self, method: &str, path_and_query: &str, secret: &str) -> (u16, Vec<u8>) {
        let url = format!("http://{}{path_and_query}", self.authority());
        let identity = Credentials::new(ACCESS_KEY, secret, None, None, "test").into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let authority = self.authority();
        let request = SignableRequest::new(
            method,
            url.as_str(),
            [("host", authority.as_str())].into_iter(),
            SignableBody::Bytes(&[]),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let (headers, _) = instructions.into_parts();
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        for header in headers {
            request = request.header(header.name(), header.value());
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.run(request.body(()).unwrap()).unwrap();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec();
        (response.status().as_u16(), body.unwrap())
    }

    /// The object's bytes, read back with a signed GET.
    pub(crate) fn get(&self, key: &str) -> Vec<u8> {
        let (status, body) = self.signed("GET", &format!("/{BUCKET}/{key}"), SECRET_KEY);
        assert_eq!(status, 200, "GET {key}: {}", String::from_utf8_lossy(&body));
        body
    }

    /// The keys in the bucket under `pre/`, by ListObjectsV2.
    pub(crate) fn keys(&self) -> Vec<String> {
        let (status, body) = self.signed(
            "GET",
            &format!("/{BUCKET}?list-type=2&prefix={PREFIX}%2F"),
            SECRET_KEY,
        );
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 200, "{body}");
        body.split("<Key>")
            .skip(1)
            .map(|rest| rest.split("</Key>").next().unwrap().to_owned())
            .collect()
    }

    /// Asserts the bucket holds exactly `file`, once, byte for byte.
    fn assert_holds_only(&self, file: &CallFile) {
        let key = format!("{PREFIX}/{}", file.sha256);
        assert_eq!(
            self.keys(),
            std::slice::from_ref(&key),
            "exactly one object"
        );
        let stored = self.get(&key);
        assert_eq!(stored.len() as u64, file.size);
        assert_eq!(
            hex::encode(Sha256::digest(&stored)),
            file.sha256,
            "the stored object is the file"
        );
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bundled `s3` plugin with a call deadline of `timeout`.
fn s3_plugin(runtime: &Runtime, timeout: Duration) -> Plugin {
    let mut source = bundled("s3");
    source.limits.timeout = timeout;
    runtime.load(source).unwrap()
}

fn credential(secret: &str) -> Credential {
    Credential::SigV4 {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: secret.into(),
        session_token: None,
        region: "us-east-1".into(),
        service: "s3".into(),
    }
}

/// The destination `archive`: `http://{authority}/{bucket}/pre`, signed
/// with credential `minio`, allowed to reach `authority` only.
fn destination(authority: &str, bucket: &str, secret: &str) -> UploadTarget {
    UploadTarget {
        name: "archive".into(),
        url: format!("http://{authority}/{bucket}/{PREFIX}"),
        access: DestinationAccess::Remote(RemoteAccess {
            allowed_hosts: vec![authority.to_owned()],
            credentials: BTreeMap::from([("minio".to_owned(), credential(secret))]),
            tls_ca_pem: None,
        }),
    }
}

/// `len` bytes no two runs of which repeat within a part.
fn content(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(b"wharf").to_vec();
    while bytes.len() < len {
        bytes.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    bytes.truncate(len);
    bytes
}

fn small_parts() -> Vec<(String, String)> {
    params(&[("part_size", "5MiB"), ("multipart_threshold", "5MiB")])
}

struct Setup {
    dir: tempfile::TempDir,
    server: S3Server,
    plugin: Plugin,
    // Kept alive with the plugin it loaded.
    _runtime: Runtime,
}

fn setup(timeout: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = s3_plugin(&runtime, timeout);
    Setup {
        dir,
        server: S3Server::start(),
        plugin,
        _runtime: runtime,
    }
}

impl Setup {
    fn file(&self, name: &str, len: usize) -> CallFile {
        call_file(self.dir.path(), name, &content(len))
    }

    fn direct(&self) -> UploadTarget {
        destination(&self.server.authority(), BUCKET, SECRET_KEY)
    }
}

fn key_url(target: &UploadTarget, file: &CallFile) -> String {
    format!("{}/{}", target.url, file.sha256)
}

#[test]
fn s3_small_file_is_stored_once_under_its_sha256_with_the_server_checked_checksum() {
    let setup = setup(Duration::from_secs(10));
    let target = setup.direct();
    let file = setup.file("a.bin", 100 * 1024);
    let result = setup.plugin.upload(&file, &target, &params(&[])).unwrap();
    assert_eq!(result.remote_ref, key_url(&target, &file));
    assert_eq!(
        result.remote_sha256.as_deref(),
        Some(file.sha256.as_str()),
        "the sha256 the server verified and stored"
    );
    setup.server.assert_holds_only(&file);
    // Again: found by the HEAD, not sent again, the stored checksum reported.
    let again = setup.plugin.upload(&file, &target, &params(&[])).unwrap();
    assert_eq!(again.remote_sha256, result.remote_sha256);
    setup.server.assert_holds_only(&file);
}

#[test]
fn s3_large_file_goes_up_in_parts_and_reads_back_identical() {
    let setup = setup(Duration::from_secs(20));
    let target = setup.direct();
    let file = setup.file("big.bin", 12 * MIB + 12_345);
    let result = setup.plugin.upload(&file, &target, &small_parts()).unwrap();
    assert_eq!(result.remote_ref, key_url(&target, &file));
    assert_eq!(
        result.remote_sha256.as_deref(),
        Some(file.sha256.as_str()),
        "verified part by part by the server, as a whole by the host"
    );
    setup.server.assert_holds_only(&file);
    assert!(setup.server.uploads_in_progress().is_empty());
    // Repeated: a multipart object has no stored sha256 to compare, so it
    // is replaced under the same key, verified again, never duplicated.
    let again = setup.plugin.upload(&file, &target, &small_parts()).unwrap();
    assert_eq!(again.remote_sha256, result.remote_sha256);
    setup.server.assert_holds_only(&file);
    assert!(setup.server.uploads_in_progress().is_empty());
}

#[test]
fn s3_a_wrong_secret_or_key_is_refused_by_the_server_naming_destination_and_credential() {
    let setup = setup(Duration::from_secs(10));
    let file = setup.file("a.bin", 1024);
    let mut wrong_key = destination(&setup.server.authority(), BUCKET, SECRET_KEY);
    if let DestinationAccess::Remote(remote) = &mut wrong_key.access {
        remote.credentials.insert(
            "minio".into(),
            Credential::SigV4 {
                access_key_id: "nobody".into(),
                secret_access_key: SECRET_KEY.into(),
                session_token: None,
                region: "us-east-1".into(),
                service: "s3".into(),
            },
        );
    }
    let wrong_secret = destination(&setup.server.authority(), BUCKET, "not-the-secret");
    for target in [wrong_secret, wrong_key] {
        let error = setup
            .plugin
            .upload(&file, &target, &params(&[]))
            .unwrap_err();
        assert!(
            matches!(&error, CallError::Terminal(what)
                if what.contains("destination archive") && what.contains("credential minio")),
            "{error:?}"
        );
    }
    // The server really checks: the test's own signature with a wrong
    // secret is refused too.
    let (status, _) = setup.server.signed("GET", "/bucket?list-type=2", "wrong");
    assert_eq!(status, 403);
    assert!(setup.server.keys().is_empty());
}

#[test]
fn s3_an_unknown_bucket_is_terminal_and_says_to_create_it() {
    let setup = setup(Duration::from_secs(10));
    let file = setup.file("a.bin", 1024);
    let target = destination(&setup.server.authority(), "no-such-bucket", SECRET_KEY);
    let error = setup
        .plugin
        .upload(&file, &target, &params(&[]))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::Terminal(what)
            if what.contains("destination archive") && what.contains("NoSuchBucket") && what.contains("create it")),
        "{error:?}"
    );
}

#[test]
fn s3_an_unreachable_endpoint_is_transient_and_names_the_destination() {
    let setup = setup(Duration::from_secs(10));
    let file = setup.file("a.bin", 1024);
    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = closed.local_addr().unwrap().to_string();
    drop(closed);
    let target = destination(&authority, BUCKET, SECRET_KEY);
    let error = setup
        .plugin
        .upload(&file, &target, &params(&[]))
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error:?}");
    assert!(
        error.to_string().contains("destination archive") && error.to_string().contains(&authority),
        "{error}"
    );
}

#[test]
fn s3_a_redirect_off_the_allowlist_is_denied_naming_destination_and_host() {
    let setup = setup(Duration::from_secs(10));
    let file = setup.file("a.bin", 1024);
    let proxy = Proxy::start(&setup.server.authority());
    let outside = Proxy::start(&setup.server.authority());
    let elsewhere = format!("http://{}/{BUCKET}/stolen", outside.authority());
    proxy.set(move |_| Some(Fault::Redirect(elsewhere.clone())));
    let target = destination(&proxy.authority(), BUCKET, SECRET_KEY);
    let error = setup
        .plugin
        .upload(&file, &target, &params(&[]))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::AccessDenied(what)
            if what.contains("destination archive") && what.contains(&outside.authority())),
        "{error:?}"
    );
    assert!(
        outside.requests().is_empty(),
        "the signed request never left"
    );
}

/// Uploads `file` through `proxy` once with `fault` in place (the first
/// matching request gets it, later ones are forwarded), then once more with
/// none; returns the first call's error.
fn fault_then_retry(
    setup: &Setup,
    proxy: &Proxy,
    file: &CallFile,
    params: &[(String, String)],
    fault: impl Fn(&Head) -> Option<Fault> + Send + Sync + 'static,
) -> CallError {
    proxy.once(fault);
    let target = destination(&proxy.authority(), BUCKET, SECRET_KEY);
    let error = setup
        .plugin
        .upload(file, &target, &params.to_vec())
        .expect_err("the fault fails the first call");
    assert!(proxy.fault_fired(), "the fault was injected");
    setup
        .plugin
        .upload(file, &target, &params.to_vec())
        .unwrap_or_else(|err| panic!("the retry after {error:?} failed: {err:?}"));
    error
}

/// Which fault a request gets, if any.
type FaultRule = fn(&Head) -> Option<Fault>;

fn is_put(head: &Head) -> bool {
    head.method == "PUT"
}

#[test]
fn s3_server_errors_and_throttling_are_transient_with_retry_after_and_store_nothing_twice() {
    let setup = setup(Duration::from_secs(10));
    let proxy = Proxy::start(&setup.server.authority());
    for (status, code) in [(500, "InternalError"), (503, "SlowDown")] {
        let file = setup.file(&format!("{status}.bin"), 64 * 1024 + usize::from(status));
        let error = fault_then_retry(&setup, &proxy, &file, &[], move |head| {
            is_put(head).then_some(Fault::Answer {
                status,
                code,
                retry_after: Some(2),
            })
        });
        match &error {
            CallError::Transient {
                message,
                retry_after,
            } => {
                assert_eq!(*retry_after, Some(Duration::from_secs(2)), "{message}");
                assert!(message.contains(code) && message.contains("destination archive"));
            }
            other => panic!("{status}: {other:?}"),
        }
        let stored = setup.server.get(&format!("{PREFIX}/{}", file.sha256));
        assert_eq!(hex::encode(Sha256::digest(&stored)), file.sha256);
    }
    assert_eq!(setup.server.keys().len(), 2, "one object per file");
}

#[test]
fn s3_connection_resets_and_truncated_answers_are_transient_and_leave_one_whole_object() {
    let setup = setup(Duration::from_secs(10));
    let proxy = Proxy::start(&setup.server.authority());
    let faults: [(&str, FaultRule); 4] = [
        ("reset before the request reaches the server", |head| {
            is_put(head).then_some(Fault::Reset)
        }),
        ("body cut half-way to the server", |head| {
            is_put(head).then_some(Fault::CutBody)
        }),
        ("answer truncated after the server stored it", |head| {
            is_put(head).then_some(Fault::Truncate)
        }),
        ("HEAD answer truncated", |head| {
            (head.method == "HEAD").then_some(Fault::Truncate)
        }),
    ];
    for (index, (what, fault)) in faults.into_iter().enumerate() {
        let file = setup.file(&format!("f{index}.bin"), 200 * 1024 + index);
        let error = fault_then_retry(&setup, &proxy, &file, &[], fault);
        assert_eq!(error.class(), ErrorClass::Transient, "{what}: {error:?}");
        let key = format!("{PREFIX}/{}", file.sha256);
        assert!(setup.server.keys().contains(&key), "{what}");
        let stored = setup.server.get(&key);
        assert_eq!(hex::encode(Sha256::digest(&stored)), file.sha256, "{what}");
    }
    assert_eq!(setup.server.keys().len(), 4, "one object per file");
}

#[test]
fn s3_a_body_damaged_on_the_way_is_refused_by_the_server_and_retried() {
    let setup = setup(Duration::from_secs(10));
    let proxy = Proxy::start(&setup.server.authority());
    let file = setup.file("a.bin", 300 * 1024);
    let error = fault_then_retry(&setup, &proxy, &file, &[], |head| {
        is_put(head).then_some(Fault::CorruptBody)
    });
    assert_eq!(error.class(), ErrorClass::Transient, "{error:?}");
    setup.server.assert_holds_only(&file);
}

#[test]
fn s3_a_wrong_checksum_in_the_answer_is_transient_and_the_retry_verifies_the_object() {
    let setup = setup(Duration::from_secs(10));
    let proxy = Proxy::start(&setup.server.authority());
    let file = setup.file("a.bin", 10 * 1024);
    let zeros = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned();
    let error = fault_then_retry(&setup, &proxy, &file, &[], move |head| {
        is_put(head).then(|| Fault::ReplaceHeader("x-amz-checksum-sha256", zeros.clone()))
    });
    assert!(
        matches!(&error, CallError::Transient { message, .. } if message.contains("answered sha256")),
        "{error:?}"
    );
    setup.server.assert_holds_only(&file);
}

#[test]
fn s3_a_stall_past_the_deadline_fails_the_call_at_its_deadline_and_the_retry_completes() {
    let timeout = Duration::from_secs(1);
    let setup = setup(timeout);
    let proxy = Proxy::start(&setup.server.authority());
    let file = setup.file("a.bin", 10 * 1024);
    let started = std::time::Instant::now();
    let error = fault_then_retry(&setup, &proxy, &file, &[], |head| {
        is_put(head).then_some(Fault::Stall(Duration::from_secs(5)))
    });
    assert_eq!(error, CallError::Deadline(timeout));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ended at the deadline"
    );
    setup.server.assert_holds_only(&file);
}

#[test]
fn s3_a_multipart_upload_cut_mid_part_is_aborted_and_the_retry_stores_one_whole_object() {
    let setup = setup(Duration::from_secs(20));
    let proxy = Proxy::start(&setup.server.authority());
    let file = setup.file("big.bin", 11 * MIB + 3);
    let error = {
        proxy.once(|head| {
            head.target
                .contains("partNumber=2")
                .then_some(Fault::CutBody)
        });
        let target = destination(&proxy.authority(), BUCKET, SECRET_KEY);
        setup
            .plugin
            .upload(&file, &target, &small_parts())
            .unwrap_err()
    };
    assert_eq!(error.class(), ErrorClass::Transient, "{error:?}");
    let seen = proxy.requests();
    assert!(
        seen.last()
            .is_some_and(|r| r.starts_with("DELETE ") && r.contains("uploadId=")),
        "the upload was aborted: {seen:?}"
    );
    assert!(
        setup.server.uploads_in_progress().is_empty(),
        "no parts left behind"
    );
    assert!(setup.server.keys().is_empty(), "no partial object");
    let target = destination(&proxy.authority(), BUCKET, SECRET_KEY);
    setup.plugin.upload(&file, &target, &small_parts()).unwrap();
    setup.server.assert_holds_only(&file);
}

#[test]
fn s3_a_multipart_upload_whose_completion_answer_is_lost_leaves_one_whole_object_after_the_retry() {
    let setup = setup(Duration::from_secs(20));
    let proxy = Proxy::start(&setup.server.authority());
    let file = setup.file("big.bin", 6 * MIB);
    // The server completes the upload; its answer is cut on the way back.
    let error = fault_then_retry(&setup, &proxy, &file, &small_parts(), |head| {
        (head.method == "POST" && head.target.contains("uploadId=")).then_some(Fault::Truncate)
    });
    assert_eq!(error.class(), ErrorClass::Transient, "{error:?}");
    setup.server.assert_holds_only(&file);
    assert!(setup.server.uploads_in_progress().is_empty());
}
