//! The uploader's `http` import against real servers on 127.0.0.1 (plain and
//! TLS with a test CA): streamed file bodies, idempotent retries, one pooled
//! connection per destination, redirects and the allowlist on every hop,
//! credentials the host signs, and the call's deadline on the response body.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wharf::runtime::{
    CallError, CallFile, Credential, DestinationAccess, ErrorClass, Plugin, RemoteAccess, Runtime,
    UploadTarget,
};

use crate::http_server::{Reply, Seen, Server, TestCa};
use crate::support::*;

const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The bundled `http-put` uploader with a call deadline of `timeout`.
fn uploader(runtime: &Runtime, timeout: Duration) -> Plugin {
    let mut source = bundled("http-put");
    source.limits.timeout = timeout;
    runtime.load(source).unwrap()
}

/// A file holding `hello`.
fn hello(dir: &std::path::Path) -> CallFile {
    let file = call_file(dir, "a.txt", b"hello");
    assert_eq!(file.sha256, HELLO_SHA);
    file
}

/// A destination `store` at `url`, allowed to reach `allowed`.
fn destination(url: String, allowed: &[&Server], access: RemoteAccess) -> UploadTarget {
    UploadTarget {
        name: "store".into(),
        url,
        access: DestinationAccess::Remote(RemoteAccess {
            allowed_hosts: allowed.iter().map(|server| server.authority()).collect(),
            ..access
        }),
    }
}

/// An empty store: HEAD finds nothing, PUT stores.
fn empty_store(request: &Seen) -> Reply {
    match request.method.as_str() {
        "HEAD" => Reply::status(404),
        _ => Reply::status(201),
    }
}

fn bearer(token: &str) -> RemoteAccess {
    RemoteAccess {
        credentials: BTreeMap::from([("token".into(), Credential::Bearer(token.into()))]),
        ..RemoteAccess::default()
    }
}

#[test]
fn upload_streams_the_file_and_skips_what_the_destination_has() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let stored = std::sync::Mutex::new(false);
    let server = Server::http(move |request| {
        let mut stored = stored.lock().unwrap();
        match request.method.as_str() {
            "HEAD" if *stored => Reply::status(200).header("content-length", "5"),
            "HEAD" => Reply::status(404),
            _ => {
                *stored = true;
                Reply::status(201)
            }
        }
    });
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let target = destination(server.url("/bucket"), &[&server], RemoteAccess::default());
    let file = hello(dir.path());
    let result = plugin.upload(&file, &target, &params(&[])).unwrap();
    assert_eq!(
        result.remote_ref,
        server.url(&format!("/bucket/{HELLO_SHA}"))
    );
    plugin.upload(&file, &target, &params(&[])).unwrap();
    let seen = server.seen();
    let methods: Vec<_> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(
        methods,
        ["HEAD", "PUT", "HEAD"],
        "the second upload must not send the file again"
    );
    assert_eq!(seen[1].body, b"hello");
    assert_eq!(seen[1].path, format!("/bucket/{HELLO_SHA}"));
    assert_eq!(seen[1].header("x-wharf-sha256"), Some(HELLO_SHA));
}

#[test]
fn consecutive_uploads_to_a_destination_reuse_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let ca = TestCa::new("wharf test CA");
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let file = hello(dir.path());
    for server in [
        Server::http(empty_store),
        Server::https(ca.server_config(), empty_store),
    ] {
        let access = RemoteAccess {
            tls_ca_pem: Some(ca.pem.clone().into_bytes()),
            ..RemoteAccess::default()
        };
        let target = destination(server.url("/bucket"), &[&server], access);
        plugin.upload(&file, &target, &params(&[])).unwrap();
        plugin.upload(&file, &target, &params(&[])).unwrap();
        let methods: Vec<_> = server.seen().into_iter().map(|s| s.method).collect();
        assert_eq!(methods, ["HEAD", "PUT", "HEAD", "PUT"]);
        assert_eq!(
            server.connections(),
            1,
            "{}: four requests in two calls over one kept-alive connection",
            server.url("")
        );
    }
}

#[test]
fn https_upload_to_a_server_signed_by_the_destinations_ca() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let ca = TestCa::new("private storage CA");
    let server = Server::https(ca.server_config(), empty_store);
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let access = RemoteAccess {
        tls_ca_pem: Some(ca.pem.clone().into_bytes()),
        ..bearer("tls-token")
    };
    let target = destination(server.url("/bucket"), &[&server], access);
    let result = plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap();
    assert_eq!(
        result.remote_ref,
        format!("https://127.0.0.1:{}/bucket/{HELLO_SHA}", server.port)
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].method, "PUT");
    assert_eq!(seen[1].body, b"hello");
    assert_eq!(seen[1].header("authorization"), Some("Bearer tls-token"));
}

#[test]
fn a_certificate_no_trusted_ca_signed_is_a_terminal_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let ca = TestCa::new("unknown CA");
    let other = TestCa::new("another CA");
    let server = Server::https(ca.server_config(), empty_store);
    let plugin = uploader(&runtime, Duration::from_secs(5));
    // Public roots only, then public roots plus a CA that did not sign it.
    for tls_ca_pem in [None, Some(other.pem.clone().into_bytes())] {
        let access = RemoteAccess {
            tls_ca_pem,
            ..RemoteAccess::default()
        };
        let target = destination(server.url("/bucket"), &[&server], access);
        let error = plugin
            .upload(&hello(dir.path()), &target, &params(&[]))
            .unwrap_err();
        assert!(
            matches!(&error, CallError::Terminal(what) if what.contains("TLS") && what.contains("UnknownIssuer")),
            "{error:?}"
        );
    }
    assert!(server.seen().is_empty(), "no request got through");
}

#[test]
fn a_ca_that_is_not_pem_fails_the_call_naming_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let target = UploadTarget {
        name: "store".into(),
        url: "https://127.0.0.1:9/bucket".into(),
        access: DestinationAccess::Remote(RemoteAccess {
            allowed_hosts: vec!["127.0.0.1:9".into()],
            tls_ca_pem: Some(b"not a certificate".to_vec()),
            ..RemoteAccess::default()
        }),
    };
    let error = plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::Terminal(what) if what.contains("destination store")),
        "{error:?}"
    );
}

#[test]
fn relative_absolute_path_and_scheme_relative_redirects_are_followed_and_re_signed() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let second = Server::http(empty_store);
    let second_authority = second.authority();
    let first = Server::http(move |request| {
        let path = request.path.as_str();
        match request.method.as_str() {
            "HEAD" => Reply::status(404),
            _ if path.starts_with("/bucket/") => {
                Reply::status(307).header("location", &format!("../moved/{HELLO_SHA}"))
            }
            _ if path.starts_with("/moved/") => {
                Reply::status(308).header("location", &format!("/final/{HELLO_SHA}?v=1"))
            }
            _ => Reply::status(307).header(
                "location",
                &format!("//{second_authority}/elsewhere/{HELLO_SHA}"),
            ),
        }
    });
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let target = destination(
        first.url("/bucket"),
        &[&first, &second],
        bearer("hop-token"),
    );
    plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap();
    let puts: Vec<Seen> = first
        .seen()
        .into_iter()
        .chain(second.seen())
        .filter(|s| s.method == "PUT")
        .collect();
    let paths: Vec<_> = puts.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/bucket/{HELLO_SHA}"),
            format!("/moved/{HELLO_SHA}"),
            format!("/final/{HELLO_SHA}?v=1"),
            format!("/elsewhere/{HELLO_SHA}"),
        ]
    );
    for put in &puts {
        assert_eq!(put.body, b"hello", "the file is sent again on every hop");
        assert_eq!(put.header("authorization"), Some("Bearer hop-token"));
    }
    assert_eq!(
        puts[3].header("host"),
        Some(second.authority().as_str()),
        "the last hop went to the second (allowed) server"
    );
}

#[test]
fn a_redirect_to_a_host_not_allowed_is_denied_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let outside = Server::http(empty_store);
    let outside_url = outside.url("/stolen");
    let server = Server::http(move |_| Reply::status(307).header("location", &outside_url));
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let target = destination(server.url("/bucket"), &[&server], bearer("secret-token"));
    let error = plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::AccessDenied(what) if what.contains(&outside.authority())),
        "{error:?}"
    );
    assert_eq!(server.seen().len(), 1, "only the allowed host was asked");
    assert_eq!(
        outside.connections(),
        0,
        "the host outside the allowlist was never contacted"
    );
}

#[test]
fn https_never_follows_a_redirect_to_http() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let ca = TestCa::new("wharf test CA");
    let plain = Server::http(empty_store);
    let plain_url = plain.url("/downgraded");
    let secure = Server::https(ca.server_config(), move |_| {
        Reply::status(302).header("location", &plain_url)
    });
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let access = RemoteAccess {
        tls_ca_pem: Some(ca.pem.clone().into_bytes()),
        ..bearer("secret-token")
    };
    // Both are allowed: the downgrade alone is refused.
    let target = destination(secure.url("/bucket"), &[&secure, &plain], access);
    let error = plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::Terminal(what) if what.contains("https to http")),
        "{error:?}"
    );
    assert_eq!(plain.connections(), 0);
}

#[test]
fn sigv4_requests_are_signed_by_the_host_with_the_payload_hash_and_never_carry_the_secret() {
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let outside = Server::http(empty_store);
    let outside_url = outside.url("/exfiltrate");
    let server = Server::http(move |request| match request.method.as_str() {
        "HEAD" => Reply::status(404),
        _ if request.path.starts_with("/bucket/") => Reply::status(201),
        // A second object the test uploads is redirected away.
        _ => Reply::status(307).header("location", &outside_url),
    });
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let access = RemoteAccess {
        credentials: BTreeMap::from([(
            "s3".into(),
            Credential::SigV4 {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: SECRET.into(),
                session_token: Some("SESSION-TOKEN".into()),
                region: "us-east-1".into(),
                service: "s3".into(),
            },
        )]),
        ..RemoteAccess::default()
    };
    let target = destination(server.url("/bucket"), &[&server], access.clone());
    // The plugin is told the credential's name only, and signs with it.
    plugin
        .upload(
            &hello(dir.path()),
            &target,
            &params(&[("credential", "s3")]),
        )
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for (request, payload) in seen.iter().zip([EMPTY_SHA, HELLO_SHA]) {
        let authorization = request.header("authorization").unwrap();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
                && authorization.contains("/us-east-1/s3/aws4_request")
                && authorization.contains("SignedHeaders=host;")
                && authorization.contains("x-amz-content-sha256;x-amz-date;x-amz-security-token"),
            "{authorization}"
        );
        assert_eq!(request.header("x-amz-content-sha256"), Some(payload));
        assert_eq!(
            request.header("x-amz-security-token"),
            Some("SESSION-TOKEN")
        );
        assert!(request.header("x-amz-date").is_some());
        let everything = format!("{} {:?}", request.path, request.headers);
        assert!(!everything.contains(SECRET), "{everything}");
    }
    // Redirected to a host outside the allowlist: denied, and the signed
    // request never reaches it.
    let target = destination(server.url("/other"), &[&server], access);
    let error = plugin
        .upload(
            &hello(dir.path()),
            &target,
            &params(&[("credential", "s3")]),
        )
        .unwrap_err();
    assert!(matches!(&error, CallError::AccessDenied(_)), "{error:?}");
    assert_eq!(outside.connections(), 0);
}

/// A store whose PUT answers 200 bytes at 50 ms each: ten seconds, far
/// past any deadline here.
fn trickling_store() -> Server {
    Server::http(|request| match request.method.as_str() {
        "HEAD" => Reply::status(404),
        _ => Reply::status(201)
            .body(&[b'x'; 200])
            .trickle(Duration::from_millis(50)),
    })
}

#[test]
fn a_body_trickling_past_the_deadline_fails_the_call_as_a_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let server = trickling_store();
    let timeout = Duration::from_millis(500);
    let plugin = uploader(&runtime, timeout);
    let target = destination(server.url("/bucket"), &[&server], RemoteAccess::default());
    let started = Instant::now();
    let error = plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap_err();
    assert_eq!(error, CallError::Deadline(timeout));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call ended at its deadline, not with the body: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_destination_that_stalls_past_the_deadline_does_not_quarantine_its_uploader() {
    let dir = tempfile::tempdir().unwrap();
    // Quarantined at the first fault that counts.
    let runtime = strict_runtime(dir.path());
    let stalled = trickling_store();
    let timeout = Duration::from_millis(300);
    let plugin = uploader(&runtime, timeout);
    let target = destination(stalled.url("/bucket"), &[&stalled], RemoteAccess::default());
    for _ in 0..2 {
        let error = plugin
            .upload(&hello(dir.path()), &target, &params(&[]))
            .unwrap_err();
        assert_eq!(error, CallError::Deadline(timeout));
    }
    // Another destination of the same uploader still works.
    let healthy = Server::http(empty_store);
    let target = destination(healthy.url("/bucket"), &[&healthy], RemoteAccess::default());
    plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap();
}

#[test]
fn server_errors_are_transient() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let server = Server::http(|request| match request.method.as_str() {
        "HEAD" => Reply::status(404),
        _ => Reply::status(503),
    });
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let target = destination(server.url("/bucket"), &[&server], RemoteAccess::default());
    let error = plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error:?}");
}

#[test]
fn a_response_over_the_limit_is_transient_and_headers_reach_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let limit = limits().http_response_bytes as usize;
    let server = Server::http(move |request| match request.method.as_str() {
        // The plugin reads `content-length` from the HEAD response to skip
        // a file already there: response headers reach it.
        "HEAD" => Reply::status(200).header("content-length", "5"),
        _ => Reply::status(201).body(&vec![b'x'; limit + 1]),
    });
    let plugin = uploader(&runtime, Duration::from_secs(5));
    let target = destination(server.url("/bucket"), &[&server], RemoteAccess::default());
    plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap();
    assert_eq!(server.seen().len(), 1, "skipped on the HEAD's headers");

    let big = Server::http(move |request| match request.method.as_str() {
        "HEAD" => Reply::status(404),
        _ => Reply::status(201).body(&vec![b'x'; limit + 1]),
    });
    let target = destination(big.url("/bucket"), &[&big], RemoteAccess::default());
    let error = plugin
        .upload(&hello(dir.path()), &target, &params(&[]))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::Transient { message, .. } if message.contains("limit")),
        "{error:?}"
    );
}
