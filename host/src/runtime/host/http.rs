//! The `http` interface: outbound requests for uploaders, only to the hosts
//! the plugin is allowed, on every redirect too, with file-range bodies the
//! host streams from disk.

use std::io::Read;
use std::time::{Duration, Instant};

use ureq::http::{Method, Uri};

use super::open_range;
use crate::runtime::bindings::{PluginError, http_api};
use crate::runtime::call::{CallState, Fault, transient};

/// Redirects followed per request, each checked against the allowlist.
const MAX_REDIRECTS: u32 = 5;

/// A secret a destination owns. The plugin names it; the host applies it.
#[derive(Clone)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// What an upload to a remote destination may reach and use.
#[derive(Debug, Clone, Default)]
pub struct RemoteAccess {
    /// `host` or `host:port` entries; a bare host allows any port.
    pub allowed_hosts: Vec<String>,
    /// The destination's credentials, by the name a plugin refers to.
    pub credentials: std::collections::BTreeMap<String, Credential>,
}

/// What one call may reach over HTTP.
pub(crate) struct HttpAccess {
    remote: RemoteAccess,
    /// The plugin manifest's own `allowed_hosts`: when not empty, a request
    /// must be allowed by it as well as by the destination.
    ceiling: Vec<String>,
    response_limit: u64,
}

impl HttpAccess {
    pub(crate) fn new(remote: RemoteAccess, ceiling: Vec<String>, response_limit: u64) -> Self {
        HttpAccess {
            remote,
            ceiling,
            response_limit,
        }
    }

    fn allows(&self, uri: &Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let with_port = format!("{host}:{port}");
        let listed = |list: &[String]| {
            list.iter().any(|allowed| {
                let allowed = allowed.to_ascii_lowercase();
                allowed == host || allowed == with_port
            })
        };
        listed(&self.remote.allowed_hosts) && (self.ceiling.is_empty() || listed(&self.ceiling))
    }
}

fn method(method: http_api::Method) -> Method {
    match method {
        http_api::Method::Get => Method::GET,
        http_api::Method::Head => Method::HEAD,
        http_api::Method::Put => Method::PUT,
        http_api::Method::Post => Method::POST,
        http_api::Method::Delete => Method::DELETE,
        http_api::Method::Patch => Method::PATCH,
        http_api::Method::Options => Method::OPTIONS,
    }
}

impl http_api::Host for CallState {
    fn send(
        &mut self,
        request: http_api::Request,
    ) -> wasmtime::Result<Result<http_api::Response, PluginError>> {
        self.check_deadline()?;
        let Some(limit) = self.http.as_ref().map(|http| http.response_limit) else {
            return Err(self.trap(Fault::AccessDenied(
                "this call's destination is not reached over HTTP".into(),
            )));
        };
        let mut headers = request.headers.clone();
        if let Some(name) = &request.credential {
            let credential = self
                .http
                .as_ref()
                .and_then(|http| http.remote.credentials.get(name).cloned());
            match credential {
                Some(Credential::Bearer(token)) => {
                    headers.retain(|(header, _)| !header.eq_ignore_ascii_case("authorization"));
                    headers.push(("authorization".into(), format!("Bearer {token}")));
                }
                None => {
                    return Ok(Err(self.deny(format!(
                        "credential {name:?} does not belong to this call's destination"
                    ))));
                }
            }
        }
        let mut method = method(request.method);
        let mut url = request.url.clone();
        let mut body = request.body;
        for _ in 0..=MAX_REDIRECTS {
            let uri: Uri = match url.parse() {
                Ok(uri) => uri,
                Err(err) => {
                    return Ok(Err(PluginError::InvalidParams(format!(
                        "bad URL {url:?}: {err}"
                    ))));
                }
            };
            if uri.scheme_str() != Some("http") {
                return Ok(Err(PluginError::Terminal(format!(
                    "{url}: only http:// is supported by this build of wharf"
                ))));
            }
            let allowed = self.http.as_ref().is_some_and(|http| http.allows(&uri));
            if !allowed {
                let host = uri.authority().map_or("", |a| a.as_str()).to_owned();
                return Ok(Err(self.deny(format!(
                    "host {host} is not in this destination's allowed hosts"
                ))));
            }
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            let response = match self.send_once(&method, &uri, &headers, &body, remaining, limit)? {
                Ok(response) => response,
                Err(err) => return Ok(Err(err)),
            };
            let location = response
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("location"))
                .map(|(_, value)| value.clone());
            match (response.status, location) {
                (301 | 302 | 303 | 307 | 308, Some(location)) => {
                    if response.status == 303
                        || (response.status != 307
                            && response.status != 308
                            && method == Method::POST)
                    {
                        method = Method::GET;
                        body = http_api::Body::Empty;
                    }
                    url = resolve(&uri, &location);
                }
                _ => return Ok(Ok(response)),
            }
        }
        Ok(Err(PluginError::Terminal(format!(
            "more than {MAX_REDIRECTS} redirects from {}",
            request.url
        ))))
    }
}

impl CallState {
    fn send_once(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &[(String, String)],
        body: &http_api::Body,
        timeout: Duration,
        response_limit: u64,
    ) -> wasmtime::Result<Result<http_api::Response, PluginError>> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        let mut builder = ureq::http::Request::builder()
            .method(method.clone())
            .uri(uri.clone());
        // Framing is the host's business: it knows the body it sends, and a
        // plugin's conflicting length would make the request invalid.
        let framing = ["content-length", "transfer-encoding", "host", "connection"];
        for (name, value) in headers {
            if !framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        let result = match body {
            http_api::Body::Empty => builder.body(()).map(|req| agent.run(req)),
            http_api::Body::Bytes(bytes) => builder.body(bytes.clone()).map(|req| agent.run(req)),
            http_api::Body::FileRange(range) => {
                // Reopened (and so rewound) for every attempt and redirect.
                let path = self.granted_path(&range.file)?;
                let file = match open_range(&path, range.offset, range.len) {
                    Ok(file) => file,
                    Err(err) => return Ok(Err(err)),
                };
                let reader = ureq::SendBody::from_owned_reader(file.take(range.len));
                builder
                    .header("content-length", range.len.to_string())
                    .body(reader)
                    .map(|req| agent.run(req))
            }
        };
        let mut response = match result {
            Err(err) => {
                return Ok(Err(PluginError::InvalidParams(format!(
                    "bad request: {err}"
                ))));
            }
            Ok(Err(ureq::Error::Timeout(_))) => {
                self.check_deadline()?;
                return Ok(Err(transient(format!("{uri}: timed out"))));
            }
            Ok(Err(err)) => return Ok(Err(transient(format!("{uri}: {err}")))),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = if method == Method::HEAD {
            Vec::new()
        } else {
            match response
                .body_mut()
                .with_config()
                .limit(response_limit)
                .read_to_vec()
            {
                Ok(body) => body,
                Err(err) => {
                    return Ok(Err(transient(format!(
                        "{uri}: reading the response failed (limit {response_limit} bytes): {err}"
                    ))));
                }
            }
        };
        Ok(Ok(http_api::Response {
            status,
            headers,
            body,
        }))
    }
}

/// Resolves a `Location` header against the URL it came from.
fn resolve(base: &Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |a| a.as_str());
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{scheme}://{authority}{dir}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_host_with_or_without_port() {
        let remote = RemoteAccess {
            allowed_hosts: vec!["store.local".into(), "127.0.0.1:9000".into()],
            ..RemoteAccess::default()
        };
        let access = HttpAccess::new(remote, Vec::new(), 0);
        let allows = |url: &str| access.allows(&url.parse::<Uri>().unwrap());
        assert!(allows("http://store.local/x"));
        assert!(allows("http://STORE.local:8080/x"));
        assert!(allows("http://127.0.0.1:9000/b"));
        assert!(!allows("http://127.0.0.1:9001/b"));
        assert!(!allows("http://evil.example/x"));
        assert!(!allows("http://store.local.evil.example/x"));
    }

    #[test]
    fn relative_redirects_resolve_against_the_request() {
        let base: Uri = "http://h:1/a/b?q".parse().unwrap();
        assert_eq!(resolve(&base, "/c"), "http://h:1/c");
        assert_eq!(resolve(&base, "c"), "http://h:1/a/c");
        assert_eq!(resolve(&base, "http://o/x"), "http://o/x");
    }
}
