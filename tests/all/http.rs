//! The uploader's `http` import against a real HTTP server on 127.0.0.1:
//! streamed file bodies, idempotent retries, and the allowlist on redirects.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use wharf::runtime::{CallError, DestinationAccess, RemoteAccess, UploadTarget};

use crate::support::*;

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Serves HTTP/1.1 on an ephemeral loopback port, one connection at a time,
/// answering each request with `respond(request) -> (status, headers)`.
fn serve(
    respond: impl Fn(&Seen) -> (u16, Vec<(String, String)>) + Send + 'static,
) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((_, value)) = header
                    .split_once(':')
                    .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let request = Seen { method, path, body };
            let (status, headers) = respond(&request);
            log.lock().unwrap().push(request);
            let mut response = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n");
            for (name, value) in headers {
                response.push_str(&format!("{name}: {value}\r\n"));
            }
            response.push_str("\r\n");
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, seen)
}

const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// The bundled uploader allowed to reach the server on `port`, a file
/// holding `hello` and a destination on that server.
fn upload_setup(
    runtime: &wharf::runtime::Runtime,
    dir: &std::path::Path,
    port: u16,
) -> (
    wharf::runtime::Plugin,
    wharf::runtime::CallFile,
    UploadTarget,
) {
    let plugin = runtime.load(bundled("http-put")).unwrap();
    let file = call_file(dir, "a.txt", b"hello");
    assert_eq!(file.sha256, HELLO_SHA);
    let destination = UploadTarget {
        name: "store".into(),
        url: format!("http://127.0.0.1:{port}/bucket"),
        access: DestinationAccess::Remote(RemoteAccess {
            allowed_hosts: vec![format!("127.0.0.1:{port}")],
            ..RemoteAccess::default()
        }),
    };
    (plugin, file, destination)
}

#[test]
fn upload_streams_the_file_and_skips_what_the_destination_has() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let stored = Arc::new(Mutex::new(false));
    let state = stored.clone();
    let (port, seen) = serve(move |request| {
        let mut stored = state.lock().unwrap();
        match request.method.as_str() {
            "HEAD" if *stored => (200, vec![("content-length".into(), "5".into())]),
            "HEAD" => (404, vec![("content-length".into(), "0".into())]),
            _ => {
                *stored = true;
                (201, vec![("content-length".into(), "0".into())])
            }
        }
    });
    let (plugin, file, destination) = upload_setup(&runtime, dir.path(), port);
    let result = plugin.upload(&file, &destination, &params(&[])).unwrap();
    assert_eq!(
        result.remote_ref,
        format!("http://127.0.0.1:{port}/bucket/{HELLO_SHA}")
    );
    plugin.upload(&file, &destination, &params(&[])).unwrap();
    let seen = seen.lock().unwrap();
    let methods: Vec<_> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(
        methods,
        ["HEAD", "PUT", "HEAD"],
        "the second upload must not send the file again"
    );
    assert_eq!(seen[1].body, b"hello");
    assert_eq!(seen[1].path, format!("/bucket/{HELLO_SHA}"));
}

#[test]
fn a_redirect_to_a_host_not_allowed_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let (port, seen) = serve(move |_| {
        (
            307,
            vec![
                ("location".into(), "http://127.0.0.2:9/stolen".into()),
                ("content-length".into(), "0".into()),
            ],
        )
    });
    let (plugin, file, destination) = upload_setup(&runtime, dir.path(), port);
    let error = plugin
        .upload(&file, &destination, &params(&[]))
        .unwrap_err();
    assert!(
        matches!(&error, CallError::AccessDenied(what) if what.contains("127.0.0.2:9")),
        "{error:?}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "only the allowed host was contacted"
    );
}

#[test]
fn server_errors_are_transient() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let (port, _) = serve(move |request| match request.method.as_str() {
        "HEAD" => (404, vec![("content-length".into(), "0".into())]),
        _ => (503, vec![("content-length".into(), "0".into())]),
    });
    let (plugin, file, destination) = upload_setup(&runtime, dir.path(), port);
    let error = plugin
        .upload(&file, &destination, &params(&[]))
        .unwrap_err();
    assert_eq!(
        error.class(),
        wharf::runtime::ErrorClass::Transient,
        "{error:?}"
    );
}
