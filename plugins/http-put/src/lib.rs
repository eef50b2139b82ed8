//! Uploader: stores a file under its sha256, at `{destination url}/{sha256}`
//! with an HTTP PUT whose body the host streams from the file, or under the
//! key `{sha256}` of a local destination, copied by the host.
//!
//! Content-addressed keys make a retried upload idempotent; a HEAD (or a
//! stat) first skips files the destination already holds with the same size
//! and sha256. With a credential (the `credential` parameter, or the
//! destination's only one), the host signs each request; the plugin never
//! sees the secret.
//!
//! Verification: the PUT carries the file's digest (`Repr-Digest`, RFC 9530,
//! and `x-wharf-sha256`); the sha256 reported back is the one the server
//! states for what it stored (`Repr-Digest` or `x-amz-checksum-sha256` on
//! the PUT's answer, or on the HEAD, which asks for it with
//! `Want-Repr-Digest`). A server that states none leaves the copy
//! unverified, and wharf does not mark it synced.
//!
//! Errors: 408, 429 and 5xx are transient (with the server's Retry-After),
//! other statuses terminal; network failures are the host's transient ones.

use wharf_sdk::http::{self, Request};
use wharf_sdk::{
    Destination, DestinationKind, FileEntry, ParamSpec, Params, PluginError, PluginInfo,
    UploadResult, Uploader, local, param,
};

pub struct HttpPut;

impl Uploader for HttpPut {
    fn describe() -> PluginInfo {
        PluginInfo::new("http-put", env!("CARGO_PKG_VERSION"))
            .description("Uploads each file under its sha256: HTTP PUT to <destination>/<sha256>, or a local copy.")
            .param(
                ParamSpec::new(
                    "credential",
                    "the destination credential to sign requests with (default: its only one, if any)",
                )
                .optional(),
            )
    }

    fn run(
        file: FileEntry,
        destination: Destination,
        params: Params,
    ) -> Result<UploadResult, PluginError> {
        file.checked_sha256()?;
        match destination.kind {
            DestinationKind::Local => store_locally(&file),
            DestinationKind::Remote => {
                let credential = credential(&destination, &params)?;
                put(&file, &destination, credential)
            }
        }
    }
}

wharf_sdk::export_uploader!(HttpPut);

/// The credential to sign with: the one named, or the destination's only one.
fn credential(destination: &Destination, params: &Params) -> Result<Option<String>, PluginError> {
    match param(params, "credential") {
        Some(name) if destination.credentials.iter().any(|c| c == name) => Ok(Some(name.into())),
        Some(name) => Err(PluginError::invalid_params(format!(
            "destination {} has no credential {name:?} (it has: {})",
            destination.name,
            destination.credentials.join(", ")
        ))),
        None if destination.credentials.len() == 1 => Ok(destination.credentials.first().cloned()),
        None => Ok(None),
    }
}

fn store_locally(file: &FileEntry) -> Result<UploadResult, PluginError> {
    if local::stat(&file.sha256)? != Some(file.size) {
        local::place(&file.file, 0, file.size, &file.sha256)?;
    }
    Ok(UploadResult {
        remote_ref: file.sha256.clone(),
        remote_sha256: local::sha256(&file.sha256)?,
    })
}

fn signed<'a>(request: Request<'a>, credential: &Option<String>) -> Request<'a> {
    match credential {
        Some(name) => request.credential(name.as_str()),
        None => request,
    }
}

fn put(
    file: &FileEntry,
    destination: &Destination,
    credential: Option<String>,
) -> Result<UploadResult, PluginError> {
    let url = format!("{}/{}", destination.url.trim_end_matches('/'), file.sha256);
    let uploaded = |remote_sha256: Option<String>| UploadResult {
        remote_ref: url.clone(),
        remote_sha256,
    };
    let existing = http::send(&signed(
        Request::head(&url).header("want-repr-digest", "sha-256=10"),
        &credential,
    ))?;
    match existing.status {
        200 if existing.header("content-length") == Some(file.size.to_string().as_str()) => {
            // There already. A stated digest decides whether it is this
            // file; without one the copy stays unverified (and wharf does
            // not mark it synced), but is not sent again either.
            match stated_sha256(&existing) {
                Some(stated) if stated == file.sha256 => return Ok(uploaded(Some(stated))),
                Some(_) => {}
                None => return Ok(uploaded(None)),
            }
        }
        200..=299 | 404 | 410 => {}
        status => return Err(failure("HEAD", &url, status, &existing)),
    }
    let request = Request::put(&url)
        .header("x-wharf-sha256", &file.sha256)
        .header("repr-digest", repr_digest(&file.sha256)?)
        .file_range(&file.file, 0, file.size);
    let response = http::send(&signed(request, &credential))?;
    if !(200..=299).contains(&response.status) {
        return Err(failure("PUT", &url, response.status, &response));
    }
    Ok(uploaded(stated_sha256(&response)))
}

/// The error for an unexpected status: transient for 408, 429 and 5xx.
fn failure(method: &str, url: &str, status: u16, response: &http::Response) -> PluginError {
    match status {
        408 | 429 | 500..=599 => {
            let message = format!("{method} {url} answered {status}; will retry");
            match response.retry_after_ms() {
                Some(after) => PluginError::retry_after(message, after),
                None => PluginError::transient(message),
            }
        }
        status => PluginError::terminal(format!("{method} {url} answered {status}")),
    }
}

/// `sha-256=:<base64>:` for a hex sha256.
fn repr_digest(sha256: &str) -> Result<String, PluginError> {
    use base64::Engine;
    let bytes = (0..sha256.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&sha256[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| PluginError::terminal(format!("{sha256} is not a hex sha256")))?;
    Ok(format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// The sha256 the server states for the stored object, in lower-case hex.
fn stated_sha256(response: &http::Response) -> Option<String> {
    let from_base64 = |text: &str| -> Option<String> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        (bytes.len() == 32).then(|| bytes.iter().map(|b| format!("{b:02x}")).collect())
    };
    let repr = response.header("repr-digest").and_then(|value| {
        value.split(',').find_map(|entry| {
            let encoded = entry.trim().strip_prefix("sha-256=")?;
            from_base64(encoded.trim_matches(':'))
        })
    });
    repr.or_else(|| {
        response
            .header("x-amz-checksum-sha256")
            .and_then(from_base64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use wharf_sdk::http::{Method, Response};
    use wharf_sdk::mock::MockHost;

    const SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    /// The same digest as RFC 9530 writes it.
    const DIGEST: &str = "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:";

    fn file() -> FileEntry {
        FileEntry {
            sha256: SHA.into(),
            ..FileEntry::mock(1, "a.txt", 5)
        }
    }

    fn destination(credentials: &[&str]) -> Destination {
        Destination {
            name: "store".into(),
            kind: DestinationKind::Remote,
            url: "http://127.0.0.1:9/bucket/".into(),
            credentials: credentials.iter().map(|c| (*c).into()).collect(),
        }
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn puts_the_file_bytes_under_its_sha256_signed_with_the_only_credential() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        let mut host =
            MockHost::new()
                .with_file(1, b"hello".to_vec())
                .with_http(move |req, body| {
                    log.borrow_mut().push((
                        req.method,
                        req.url.clone(),
                        req.credential.clone(),
                        body,
                        req.headers.clone(),
                    ));
                    Ok(if req.method == Method::Head {
                        response(404, &[])
                    } else {
                        response(201, &[("Repr-Digest", DIGEST)])
                    })
                });
        let result = host
            .run(|| HttpPut::run(file(), destination(&["s3"]), vec![]))
            .unwrap();
        assert_eq!(
            result.remote_ref,
            format!("http://127.0.0.1:9/bucket/{SHA}")
        );
        assert_eq!(result.remote_sha256.as_deref(), Some(SHA));
        let seen = seen.borrow();
        assert_eq!(seen.len(), 2, "a HEAD first, then the PUT");
        assert_eq!(seen[1].0, Method::Put);
        assert_eq!(seen[1].2.as_deref(), Some("s3"));
        assert_eq!(seen[1].3, b"hello");
        assert!(
            seen[1]
                .4
                .iter()
                .any(|(k, v)| k == "repr-digest" && v == DIGEST),
            "{:?}",
            seen[1].4
        );
    }

    #[test]
    fn an_object_already_there_is_not_sent_again() {
        let puts = Rc::new(RefCell::new(0));
        let count = puts.clone();
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_http(move |req, _| {
                if req.method == Method::Put {
                    *count.borrow_mut() += 1;
                }
                Ok(response(
                    200,
                    &[("Content-Length", "5"), ("Repr-Digest", DIGEST)],
                ))
            });
        let result = host
            .run(|| HttpPut::run(file(), destination(&[]), vec![]))
            .unwrap();
        assert_eq!(*puts.borrow(), 0);
        assert_eq!(result.remote_sha256.as_deref(), Some(SHA));
    }

    #[test]
    fn an_object_of_the_right_size_but_another_digest_is_sent_again() {
        let puts = Rc::new(RefCell::new(0));
        let count = puts.clone();
        let other = "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:";
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_http(move |req, _| {
                if req.method == Method::Put {
                    *count.borrow_mut() += 1;
                    return Ok(response(
                        200,
                        &[(
                            "x-amz-checksum-sha256",
                            "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
                        )],
                    ));
                }
                Ok(response(
                    200,
                    &[("Content-Length", "5"), ("Repr-Digest", other)],
                ))
            });
        let result = host
            .run(|| HttpPut::run(file(), destination(&[]), vec![]))
            .unwrap();
        assert_eq!(*puts.borrow(), 1);
        assert_eq!(result.remote_sha256.as_deref(), Some(SHA));
    }

    #[test]
    fn a_server_stating_no_digest_leaves_the_copy_unverified_and_a_failing_head_is_transient() {
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_http(|req, _| {
                Ok(response(
                    if req.method == Method::Head { 404 } else { 201 },
                    &[],
                ))
            });
        let result = host
            .run(|| HttpPut::run(file(), destination(&[]), vec![]))
            .unwrap();
        assert_eq!(result.remote_sha256, None);
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_http(|_, _| Ok(response(503, &[])));
        let result = host.run(|| HttpPut::run(file(), destination(&[]), vec![]));
        assert!(
            matches!(result, Err(PluginError::Transient(_))),
            "{result:?}"
        );
    }

    #[test]
    fn server_errors_are_transient_with_retry_after_and_client_errors_terminal() {
        for (status, transient) in [(503, true), (429, true), (403, false)] {
            let mut host =
                MockHost::new()
                    .with_file(1, b"hello".to_vec())
                    .with_http(move |req, _| {
                        let status = if req.method == Method::Head {
                            404
                        } else {
                            status
                        };
                        Ok(response(status, &[("Retry-After", "2")]))
                    });
            let result = host.run(|| HttpPut::run(file(), destination(&[]), vec![]));
            match result {
                Err(PluginError::Transient(t)) => {
                    assert!(transient, "{status}");
                    assert_eq!(t.retry_after_ms, Some(2000));
                }
                Err(PluginError::Terminal(_)) => assert!(!transient, "{status}"),
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_credential_is_invalid_params() {
        let mut host = MockHost::new().with_file(1, b"hello".to_vec());
        let params = vec![("credential".into(), "other".into())];
        let result = host.run(|| HttpPut::run(file(), destination(&["s3"]), params));
        assert!(matches!(result, Err(PluginError::InvalidParams(m)) if m.contains("other")));
    }

    #[test]
    fn a_local_destination_gets_a_host_copy_under_the_sha256() {
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_local_destination();
        let local = Destination {
            kind: DestinationKind::Local,
            url: String::new(),
            ..destination(&[])
        };
        let result = host.run(|| HttpPut::run(file(), local, vec![])).unwrap();
        assert_eq!(result.remote_ref, SHA);
        assert_eq!(result.remote_sha256.as_deref(), Some(SHA));
        assert_eq!(host.local.unwrap()[SHA], b"hello");
    }
}
