//! Uploader: stores a file under its sha256 at `{destination url}/{sha256}`
//! with an HTTP PUT whose body the host streams from the file.
//!
//! Content-addressed keys make a retried upload idempotent; a HEAD first
//! skips files the destination already has with the same size.

use wharf_sdk::http::{Body, FileRange, Request, Response, send};
use wharf_sdk::{Destination, FileInfo, Params, PluginError, PluginInfo, UploadResult, Uploader};

pub struct HttpPut;

impl Uploader for HttpPut {
    fn describe() -> PluginInfo {
        wharf_sdk::plugin_info(
            "http-put",
            env!("CARGO_PKG_VERSION"),
            "Uploads each file with HTTP PUT to <destination>/<sha256>.",
            &[],
        )
    }

    fn run(
        file: FileInfo,
        destination: Destination,
        _params: Params,
    ) -> Result<UploadResult, PluginError> {
        if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PluginError::Terminal(format!(
                "file {} has no valid sha256 in the index",
                file.name
            )));
        }
        let url = format!("{}/{}", destination.url.trim_end_matches('/'), file.sha256);
        let head = send(&request("HEAD", &url, Vec::new(), Body::Empty))?;
        if head.status == 200
            && header(&head, "content-length") == Some(file.size.to_string().as_str())
        {
            return Ok(UploadResult {
                remote_ref: url,
                remote_sha256: None,
            });
        }
        let body = Body::FileRange(FileRange {
            file: file.id,
            offset: 0,
            len: file.size,
        });
        let headers = vec![
            ("content-length".into(), file.size.to_string()),
            ("x-wharf-sha256".into(), file.sha256.clone()),
        ];
        let put = send(&request("PUT", &url, headers, body))?;
        match put.status {
            200..=299 => Ok(UploadResult {
                remote_ref: url,
                remote_sha256: None,
            }),
            408 | 429 | 500..=599 => Err(PluginError::Transient(format!(
                "PUT {url} answered {}; will retry",
                put.status
            ))),
            status => Err(PluginError::Terminal(format!(
                "PUT {url} answered {status}"
            ))),
        }
    }
}

wharf_sdk::export_uploader!(HttpPut);

fn request(method: &str, url: &str, headers: Vec<(String, String)>, body: Body) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        headers,
        body,
    }
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use wharf_sdk::mock::MockHost;

    const SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn file() -> FileInfo {
        FileInfo {
            id: 1,
            name: "a.txt".into(),
            size: 5,
            mtime_ms: 0,
            sha256: SHA.into(),
            kind: "capture".into(),
            entity: None,
            created_ms: 0,
        }
    }

    fn destination() -> Destination {
        Destination {
            name: "store".into(),
            url: "http://127.0.0.1:9/bucket/".into(),
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
    fn puts_the_file_bytes_under_its_sha256() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        let mut host =
            MockHost::new()
                .with_file(1, b"hello".to_vec())
                .with_http(move |req, body| {
                    log.borrow_mut()
                        .push((req.method.clone(), req.url.clone(), body));
                    Ok(response(if req.method == "HEAD" { 404 } else { 201 }, &[]))
                });
        let result = host
            .run(|| HttpPut::run(file(), destination(), vec![]))
            .unwrap();
        assert_eq!(
            result.remote_ref,
            format!("http://127.0.0.1:9/bucket/{SHA}")
        );
        let seen = seen.borrow();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].0, "PUT");
        assert_eq!(seen[1].2, b"hello");
    }

    #[test]
    fn an_object_already_there_is_not_sent_again() {
        let puts = Rc::new(RefCell::new(0));
        let count = puts.clone();
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_http(move |req, _| {
                if req.method == "PUT" {
                    *count.borrow_mut() += 1;
                }
                Ok(response(200, &[("Content-Length", "5")]))
            });
        host.run(|| HttpPut::run(file(), destination(), vec![]))
            .unwrap();
        assert_eq!(*puts.borrow(), 0);
    }

    #[test]
    fn server_errors_are_transient_and_client_errors_terminal() {
        for (status, transient) in [(503, true), (429, true), (403, false)] {
            let mut host =
                MockHost::new()
                    .with_file(1, b"hello".to_vec())
                    .with_http(move |req, _| {
                        Ok(response(
                            if req.method == "HEAD" { 404 } else { status },
                            &[],
                        ))
                    });
            let result = host.run(|| HttpPut::run(file(), destination(), vec![]));
            match result {
                Err(PluginError::Transient(_)) => assert!(transient, "{status}"),
                Err(PluginError::Terminal(_)) => assert!(!transient, "{status}"),
                other => panic!("{status}: {other:?}"),
            }
        }
    }
}
