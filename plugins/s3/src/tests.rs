//! The plugin against the mock host, with a small in-memory S3 behind
//! `with_http`: what it sends, in which order, and what each answer means.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use base64::Engine;
use wharf_sdk::http::{Method, Request, Response};
use wharf_sdk::mock::MockHost;

use super::*;

const MIB: usize = 1 << 20;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn b64(hex_sha: &str) -> String {
    BASE64.encode(hex::decode(hex_sha).unwrap())
}

fn entry(content: &[u8]) -> FileEntry {
    FileEntry {
        sha256: sha256_hex(content),
        ..FileEntry::mock(1, "set/a.raw", content.len() as u64)
    }
}

fn destination() -> Destination {
    Destination {
        name: "archive".into(),
        kind: DestinationKind::Remote,
        url: "http://127.0.0.1:9000/bucket/pre/".into(),
        credentials: vec!["minio".into()],
    }
}

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn small_parts() -> Params {
    params(&[("part_size", "5MiB"), ("multipart_threshold", "5MiB")])
}

/// A request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    credential: Option<String>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
    Response {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// An S3 of one bucket in memory: objects with their stored checksum and
/// ETag, multipart uploads with their parts. `fault` may answer a request
/// instead of it.
#[derive(Default)]
struct FakeS3 {
    objects: BTreeMap<String, (Vec<u8>, Option<String>, String)>,
    uploads: BTreeMap<String, BTreeMap<usize, Vec<u8>>>,
    seen: Vec<Seen>,
    next_upload: usize,
}

type Fault = Box<dyn FnMut(&Seen) -> Option<Response>>;

impl FakeS3 {
    fn answer(&mut self, seen: &Seen) -> Response {
        let (path, query) = seen.url.split_once('?').unwrap_or((&seen.url, ""));
        let key = path.to_owned();
        let query: BTreeMap<&str, &str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        match (seen.method, query.get("uploadId")) {
            (Method::Head, _) => match self.objects.get(&key) {
                None => reply(404, &[], ""),
                Some((bytes, checksum, etag)) => {
                    let length = bytes.len().to_string();
                    let mut headers = vec![("Content-Length", length.as_str()), ("ETag", etag)];
                    if let Some(checksum) = checksum {
                        headers.push(("x-amz-checksum-sha256", checksum));
                    }
                    reply(200, &headers, "")
                }
            },
            (Method::Put, None) => {
                let checksum = seen.header("x-amz-checksum-sha256").map(str::to_owned);
                let actual = b64(&sha256_hex(&seen.body));
                if checksum.as_ref().is_some_and(|c| *c != actual) {
                    return reply(400, &[], "<Error><Code>BadDigest</Code></Error>");
                }
                self.objects
                    .insert(key, (seen.body.clone(), checksum, "\"md5\"".into()));
                reply(200, &[("x-amz-checksum-sha256", &actual)], "")
            }
            (Method::Post, None) => {
                self.next_upload += 1;
                let id = format!("id+{}/=", self.next_upload);
                self.uploads.insert(id.clone(), BTreeMap::new());
                let escaped = id.replace('+', "&#43;");
                reply(
                    200,
                    &[],
                    &format!(
                        "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><UploadId>{escaped}</UploadId></InitiateMultipartUploadResult>"
                    ),
                )
            }
            (method, Some(id)) => {
                let id = id
                    .replace("%2B", "+")
                    .replace("%2F", "/")
                    .replace("%3D", "=");
                let Some(parts) = self.uploads.get_mut(&id) else {
                    return reply(404, &[], "<Error><Code>NoSuchUpload</Code></Error>");
                };
                match method {
                    Method::Put => {
                        let number: usize = query["partNumber"].parse().unwrap();
                        parts.insert(number, seen.body.clone());
                        reply(200, &[("ETag", &format!("\"etag-{number}\""))], "")
                    }
                    Method::Post => {
                        let parts = self.uploads.remove(&id).unwrap();
                        let whole: Vec<u8> = parts.values().flatten().copied().collect();
                        let etag = format!("\"whole-{}\"", parts.len());
                        self.objects.insert(key, (whole, None, etag));
                        reply(200, &[], "<CompleteMultipartUploadResult/>")
                    }
                    _ => {
                        self.uploads.remove(&id);
                        reply(204, &[], "")
                    }
                }
            }
            _ => reply(405, &[], ""),
        }
    }
}

/// Runs one upload of `content` against `s3`, with `fault` first.
fn upload(
    s3: &Rc<RefCell<FakeS3>>,
    content: &[u8],
    params: Params,
    mut fault: Fault,
) -> (Result<UploadResult, PluginError>, Vec<(Level, String)>) {
    let server = s3.clone();
    let mut host = MockHost::new().with_file(1, content.to_vec()).with_http(
        move |request: &Request<'_>, body| {
            let seen = Seen {
                method: request.method,
                url: request.url.clone(),
                headers: request.headers.clone(),
                credential: request.credential.clone(),
                body,
            };
            let mut server = server.borrow_mut();
            server.seen.push(seen.clone());
            Ok(match fault(&seen) {
                Some(response) => response,
                None => server.answer(&seen),
            })
        },
    );
    let entry = entry(content);
    let result = host.run(|| S3::run(entry, destination(), params));
    (result, host.logs)
}

fn no_fault() -> Fault {
    Box::new(|_| None)
}

fn methods(s3: &Rc<RefCell<FakeS3>>) -> Vec<String> {
    s3.borrow()
        .seen
        .iter()
        .map(|s| {
            let query = s.url.split_once('?').map_or("", |(_, q)| q);
            let query = query.split('&').next().unwrap_or("");
            let query = query.split('=').next().unwrap_or("");
            let method = match s.method {
                Method::Head => "Head",
                Method::Put => "Put",
                Method::Post => "Post",
                Method::Delete => "Delete",
                _ => "Other",
            };
            format!("{method}{}{query}", if query.is_empty() { "" } else { "?" })
        })
        .collect()
}

#[test]
fn a_small_file_is_one_checksummed_put_under_its_sha256_signed_by_the_host() {
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    let (result, _) = upload(&s3, b"hello", vec![], no_fault());
    let result = result.unwrap();
    let sha = sha256_hex(b"hello");
    let key = format!("http://127.0.0.1:9000/bucket/pre/{sha}");
    assert_eq!(result.remote_ref, key);
    assert_eq!(result.remote_sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(methods(&s3), ["Head", "Put"]);
    let s3 = s3.borrow();
    for seen in &s3.seen {
        assert_eq!(seen.credential.as_deref(), Some("minio"), "{seen:?}");
    }
    let put = &s3.seen[1];
    assert_eq!(put.url, key);
    assert_eq!(put.body, b"hello");
    assert_eq!(
        put.header("x-amz-checksum-sha256"),
        Some(b64(&sha).as_str())
    );
    assert_eq!(s3.seen[0].header("x-amz-checksum-mode"), Some("ENABLED"));
}

#[test]
fn a_repeated_upload_finds_the_object_and_sends_nothing() {
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    upload(&s3, b"hello", vec![], no_fault()).0.unwrap();
    let (again, _) = upload(&s3, b"hello", vec![], no_fault());
    assert_eq!(
        again.unwrap().remote_sha256,
        Some(sha256_hex(b"hello")),
        "the stored checksum is reported"
    );
    assert_eq!(methods(&s3), ["Head", "Put", "Head"]);
    assert_eq!(s3.borrow().objects.len(), 1);
}

#[test]
fn an_object_that_cannot_be_shown_to_be_the_file_is_replaced() {
    let sha = sha256_hex(b"hello");
    let key = format!("http://127.0.0.1:9000/bucket/pre/{sha}");
    let other = b64(&sha256_hex(b"world"));
    for (stored, etag) in [
        (Some(other.as_str()), "\"x\""),
        (None, "\"single-part\""),
        (Some("garbage"), "\"x\""),
        // A completed multipart upload: no whole-object sha256 to compare.
        (None, "\"abc-3\""),
    ] {
        let s3 = Rc::new(RefCell::new(FakeS3::default()));
        s3.borrow_mut().objects.insert(
            key.clone(),
            (b"world".to_vec(), stored.map(Into::into), etag.into()),
        );
        let (result, logs) = upload(&s3, b"hello", vec![], no_fault());
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(methods(&s3), ["Head", "Put"], "{stored:?}");
        assert_eq!(s3.borrow().objects[&key].0, b"hello");
        assert!(
            logs.iter().any(|(_, line)| line.contains("replacing")),
            "{logs:?}"
        );
    }
}

fn big(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_large_file_goes_up_in_parts_streamed_from_file_ranges() {
    let content = big(11 * MIB + 7);
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    let (result, _) = upload(&s3, &content, small_parts(), no_fault());
    let result = result.unwrap();
    assert_eq!(
        result.remote_sha256.as_deref(),
        Some(sha256_hex(&content).as_str()),
        "verified part by part by the server, as a whole by the host"
    );
    assert_eq!(
        methods(&s3),
        [
            "Head",
            "Post?uploads",
            "Put?partNumber",
            "Put?partNumber",
            "Put?partNumber",
            "Post?uploadId"
        ]
    );
    let s3 = s3.borrow();
    let parts: Vec<usize> = s3.seen[2..5].iter().map(|s| s.body.len()).collect();
    assert_eq!(parts, [5 * MIB, 5 * MIB, MIB + 7]);
    // The upload id is escaped in the query; the server unescaped it.
    assert!(
        s3.seen[2].url.ends_with("&uploadId=id%2B1%2F%3D"),
        "{}",
        s3.seen[2].url
    );
    let complete = String::from_utf8(s3.seen[5].body.clone()).unwrap();
    for number in 1..=3 {
        assert!(complete.contains(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>\"etag-{number}\"</ETag></Part>"
        )));
    }
    assert_eq!(s3.objects[&result.remote_ref].0, content);
    assert!(s3.uploads.is_empty());
    assert!(
        s3.seen
            .iter()
            .all(|s| s.credential.as_deref() == Some("minio"))
    );
}

#[test]
fn a_failed_part_aborts_the_upload_and_is_transient() {
    let content = big(11 * MIB);
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    let fault: Fault = Box::new(|seen| {
        seen.url.contains("partNumber=2").then(|| {
            reply(
                503,
                &[("Retry-After", "7")],
                "<Error><Code>SlowDown</Code></Error>",
            )
        })
    });
    let (result, _) = upload(&s3, &content, small_parts(), fault);
    match result {
        Err(PluginError::Transient(t)) => {
            assert_eq!(t.retry_after_ms, Some(7000));
            assert!(
                t.message.contains("SlowDown") && t.message.contains("archive"),
                "{t:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        methods(&s3).last().map(String::as_str),
        Some("Delete?uploadId")
    );
    let s3 = s3.borrow();
    assert!(s3.uploads.is_empty(), "the upload was aborted");
    assert!(s3.objects.is_empty());
}

#[test]
fn a_complete_answering_200_with_an_error_body_fails_and_aborts() {
    let content = big(6 * MIB);
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    let fault: Fault = Box::new(|seen| {
        (seen.method == Method::Post && seen.url.contains("uploadId")).then(|| {
            reply(
                200,
                &[],
                "<Error><Code>InternalError</Code><Message>try again</Message></Error>",
            )
        })
    });
    let (result, _) = upload(&s3, &content, small_parts(), fault);
    assert!(
        matches!(result, Err(PluginError::Transient(_))),
        "{result:?}"
    );
    assert_eq!(
        methods(&s3).last().map(String::as_str),
        Some("Delete?uploadId")
    );
    assert!(s3.borrow().objects.is_empty());
}

#[test]
fn a_stored_checksum_other_than_the_files_is_transient_and_the_next_attempt_replaces_it() {
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    let wrong = b64(&sha256_hex(b"world"));
    let fault: Fault = Box::new(move |seen| {
        (seen.method == Method::Put).then(|| reply(200, &[("x-amz-checksum-sha256", &wrong)], ""))
    });
    let (result, _) = upload(&s3, b"hello", vec![], fault);
    assert!(
        matches!(result, Err(PluginError::Transient(_))),
        "{result:?}"
    );
}

#[test]
fn a_missing_bucket_is_terminal_and_names_the_destination() {
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    let fault: Fault = Box::new(|seen| {
        Some(match seen.method {
            Method::Head => reply(404, &[], ""),
            _ => reply(
                404,
                &[],
                "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
            ),
        })
    });
    let (result, _) = upload(&s3, b"hello", vec![], fault);
    match result {
        Err(PluginError::Terminal(message)) => {
            assert!(
                message.contains("destination archive") && message.contains("create it"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_checksum_of_a_file_changed_since_indexing_is_terminal() {
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    let server = s3.clone();
    let mut host = MockHost::new().with_file(1, b"jello".to_vec()).with_http(
        move |request: &Request<'_>, body| {
            let seen = Seen {
                method: request.method,
                url: request.url.clone(),
                headers: request.headers.clone(),
                credential: request.credential.clone(),
                body,
            };
            Ok(server.borrow_mut().answer(&seen))
        },
    );
    // Indexed as `hello`, the same size, now `jello` on disk.
    let result = host.run(|| S3::run(entry(b"hello"), destination(), vec![]));
    match result {
        Err(PluginError::Terminal(message)) => {
            assert!(
                message.contains("changed since it was indexed"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(s3.borrow().objects.is_empty());
}

#[test]
fn a_file_changed_under_a_multipart_upload_is_terminal_and_its_object_deleted() {
    let indexed = big(6 * MIB);
    let mut on_disk = indexed.clone();
    on_disk[3 * MIB] ^= 1;
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    let server = s3.clone();
    let mut host =
        MockHost::new()
            .with_file(1, on_disk)
            .with_http(move |request: &Request<'_>, body| {
                let seen = Seen {
                    method: request.method,
                    url: request.url.clone(),
                    headers: request.headers.clone(),
                    credential: request.credential.clone(),
                    body,
                };
                let mut server = server.borrow_mut();
                server.seen.push(seen.clone());
                if seen.method == Method::Delete && !seen.url.contains('?') {
                    server.objects.remove(&seen.url);
                    return Ok(reply(204, &[], ""));
                }
                Ok(server.answer(&seen))
            });
    let result = host.run(|| S3::run(entry(&indexed), destination(), small_parts()));
    match result {
        Err(PluginError::Terminal(message)) => {
            assert!(
                message.contains("changed since it was indexed"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(methods(&s3).last().map(String::as_str), Some("Delete"));
    assert!(
        s3.borrow().objects.is_empty(),
        "no object under a key it does not match"
    );
}

#[test]
fn a_server_that_answers_no_checksum_gets_the_upload_verified_by_the_host() {
    let s3 = Rc::new(RefCell::new(FakeS3::default()));
    let fault: Fault = Box::new(|seen| (seen.method == Method::Put).then(|| reply(200, &[], "")));
    let (result, _) = upload(&s3, b"hello", vec![], fault);
    assert_eq!(result.unwrap().remote_sha256, Some(sha256_hex(b"hello")));
}

#[test]
fn a_destination_needs_exactly_one_credential_and_a_remote_url() {
    for (credentials, kind) in [
        (vec![], DestinationKind::Remote),
        (
            vec!["a".to_owned(), "b".to_owned()],
            DestinationKind::Remote,
        ),
        (vec!["a".to_owned()], DestinationKind::Local),
    ] {
        let mut host = MockHost::new().with_file(1, b"hello".to_vec());
        let destination = Destination {
            credentials,
            kind,
            ..destination()
        };
        let result = host.run(|| S3::run(entry(b"hello"), destination, vec![]));
        match result {
            Err(PluginError::InvalidParams(message)) => {
                assert!(message.contains("archive"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn describe_lists_the_part_size_and_threshold_with_defaults() {
    let info = S3::describe();
    assert_eq!(info.name, "s3");
    let defaults: Vec<_> = info
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.default_value.as_deref()))
        .collect();
    assert_eq!(
        defaults,
        [
            ("part_size", Some("16MiB")),
            ("multipart_threshold", Some("64MiB"))
        ]
    );
}
