//! The `http` interface: outbound requests for uploaders, over `http` or
//! `https`, only to the hosts the destination (and the plugin's manifest)
//! allow, on every redirect too, with file-range bodies the host streams from
//! disk and credentials the host applies by name.
//!
//! Invariants: every hop is checked against the allowlist before anything is
//! sent to it, and signed (bearer or SigV4) for that very hop, so a secret
//! only ever reaches an allowed host and never the plugin; `https` never
//! continues over `http`; the call's deadline bounds every hop, hashing and
//! the response body included, and running past it fails the call as a
//! deadline rather than a transient error the plugin could swallow (one
//! that does not count towards the plugin's quarantine: the network stalled,
//! not the plugin).
//!
//! The files: `agents.rs` (the runtime's connection pool per destination),
//! `tls.rs` (roots, certificate failures), `sign.rs` (credentials),
//! `redirect.rs` (URLs and hops), `wire.rs` (one hop on the network).

mod agents;
mod redirect;
mod sign;
mod tls;
mod wire;

use std::collections::BTreeMap;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use ureq::http::{HeaderName, HeaderValue, Method};
use url::Url;
use wasmtime::component::Resource;

pub(crate) use agents::HttpAgents;
pub use sign::Credential;

use crate::runtime::bindings::{PluginError, files_api, http_api};
use crate::runtime::call::{CallState, Fault};
use redirect::Next;

/// Redirects followed per request, each checked against the allowlist.
const MAX_REDIRECTS: u32 = 5;

/// Headers the host sets itself from the body and URL it sends.
const FRAMING: &[&str] = &["content-length", "transfer-encoding", "host", "connection"];

/// What an upload to a remote destination may reach and use.
#[derive(Clone, Default)]
pub struct RemoteAccess {
    /// `host` or `host:port` entries; a bare host allows any port.
    pub allowed_hosts: Vec<String>,
    /// The destination's credentials, by the name a plugin refers to.
    pub credentials: BTreeMap<String, Credential>,
    /// PEM certificates of a private CA the destination's servers use,
    /// trusted for this destination in addition to the public roots.
    pub tls_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RemoteAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAccess")
            .field("allowed_hosts", &self.allowed_hosts)
            .field("credentials", &self.credentials)
            .field(
                "tls_ca_pem",
                &self
                    .tls_ca_pem
                    .as_ref()
                    .map(|pem| format!("{} bytes", pem.len())),
            )
            .finish()
    }
}

/// What one call may reach over HTTP.
pub(crate) struct HttpAccess {
    remote: RemoteAccess,
    /// The plugin manifest's own `allowed_hosts`: when not empty, a request
    /// must be allowed by it as well as by the destination.
    ceiling: Vec<String>,
    response_limit: u64,
    /// The destination's connection pool, kept by the runtime.
    agent: ureq::Agent,
}

impl HttpAccess {
    pub(crate) fn new(
        remote: RemoteAccess,
        ceiling: Vec<String>,
        response_limit: u64,
        agent: ureq::Agent,
    ) -> Self {
        HttpAccess {
            remote,
            ceiling,
            response_limit,
            agent,
        }
    }

    fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
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

/// The plugin's headers that are sent: valid ones only, without framing
/// (the host's business: it knows the body it sends) and without those the
/// credential sets.
fn plugin_headers(
    headers: Vec<(String, String)>,
    credential: Option<&Credential>,
) -> Result<Vec<(String, String)>, PluginError> {
    let owned = credential.map_or(&[][..], Credential::owned_headers);
    let mut kept = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err()
            || HeaderValue::from_str(&value).is_err()
        {
            return Err(PluginError::InvalidParams(format!(
                "header {name:?} is not a valid HTTP header"
            )));
        }
        let name = name.to_ascii_lowercase();
        if !FRAMING.contains(&name.as_str()) && !owned.contains(&name.as_str()) {
            kept.push((name, value));
        }
    }
    Ok(kept)
}

impl http_api::Host for CallState {
    fn send(
        &mut self,
        request: http_api::Request,
    ) -> wasmtime::Result<Result<http_api::Response, PluginError>> {
        self.check_deadline()?;
        let Some(http) = self.http.as_ref() else {
            return Err(self.trap(Fault::AccessDenied(
                "this call's destination is not reached over HTTP".into(),
            )));
        };
        let (agent, limit) = (http.agent.clone(), http.response_limit);
        let credential = match &request.credential {
            None => None,
            Some(name) => match http.remote.credentials.get(name) {
                Some(credential) => Some(credential.clone()),
                None => {
                    return Ok(Err(self.deny(format!(
                        "credential {name:?} does not belong to this call's destination"
                    ))));
                }
            },
        };
        let headers = match plugin_headers(request.headers, credential.as_ref()) {
            Ok(headers) => headers,
            Err(err) => return Ok(Err(err)),
        };
        let mut url = match redirect::request_url(&request.url) {
            Ok(url) => url,
            Err(err) => return Ok(Err(PluginError::InvalidParams(err))),
        };
        let mut method = method(request.method);
        let mut body = request.body;
        // Computed once, on the first hop that signs it.
        let mut payload_sha256: Option<String> = None;
        for _ in 0..=MAX_REDIRECTS {
            self.check_deadline()?;
            let allowed = self.http.as_ref().is_some_and(|http| http.allows(&url));
            if !allowed {
                return Ok(Err(self.deny(format!(
                    "host {} is not in this destination's allowed hosts",
                    redirect::host_header(&url)
                ))));
            }
            let mut hop_headers = headers.clone();
            hop_headers.push(("host".into(), redirect::host_header(&url)));
            if let Some(credential) = &credential {
                let payload = match (&payload_sha256, credential.signs_payload()) {
                    (Some(hash), _) => hash.clone(),
                    (None, false) => String::new(),
                    (None, true) => match self.payload_sha256(&body)? {
                        Ok(hash) => payload_sha256.insert(hash).clone(),
                        Err(err) => return Ok(Err(err)),
                    },
                };
                // Signed here, for this hop's host, which is allowed.
                match credential.authorize(
                    method.as_str(),
                    &url,
                    &hop_headers,
                    &payload,
                    SystemTime::now(),
                ) {
                    Ok(signed) => hop_headers.extend(signed),
                    Err(err) => {
                        return Ok(Err(PluginError::InvalidParams(format!(
                            "cannot sign the request to {url}: {err}"
                        ))));
                    }
                }
            }
            let response =
                match self.send_once(&agent, &method, &url, &hop_headers, &body, limit)? {
                    Ok(response) => response,
                    Err(err) => return Ok(Err(err)),
                };
            let location = response
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("location"))
                .map(|(_, value)| value.as_str());
            match redirect::next_hop(&url, &method, response.status, location) {
                Next::Done => return Ok(Ok(response)),
                Next::Refuse(reason) => return Ok(Err(PluginError::Terminal(reason))),
                Next::Follow {
                    url: next,
                    method: next_method,
                    drop_body,
                } => {
                    if drop_body {
                        body = http_api::Body::Empty;
                        payload_sha256 = None;
                    }
                    url = next;
                    method = next_method;
                }
            }
        }
        Ok(Err(PluginError::Terminal(format!(
            "more than {MAX_REDIRECTS} redirects from {}",
            request.url
        ))))
    }
}

impl CallState {
    /// Lower-case hex sha256 of a request body, for signing. A file range
    /// is hashed by the host chunk by chunk with the deadline checked in
    /// between, exactly as `file.sha256` hashes it for the plugin.
    fn payload_sha256(
        &mut self,
        body: &http_api::Body,
    ) -> wasmtime::Result<Result<String, PluginError>> {
        Ok(Ok(match body {
            http_api::Body::Empty => sign::EMPTY_SHA256.to_owned(),
            http_api::Body::Bytes(bytes) => hex::encode(Sha256::digest(bytes)),
            http_api::Body::FileRange(range) => {
                let file = Resource::new_borrow(range.file.rep());
                return files_api::HostFile::sha256(self, file, range.offset, range.len);
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    use wasmtime::component::ResourceTable;

    use crate::runtime::host::LogBudget;
    use crate::runtime::limits::MemoryLimiter;

    fn access(remote: RemoteAccess) -> HttpAccess {
        let agent = HttpAgents::default().agent("store", None).unwrap();
        HttpAccess::new(remote, Vec::new(), 1 << 20, agent)
    }

    /// The state of a call granted `remote`, as `Plugin::upload` builds it.
    fn call_state(remote: RemoteAccess) -> CallState {
        let now = Instant::now();
        CallState {
            limiter: MemoryLimiter::new(1 << 20),
            plugin: "test".into(),
            started: now,
            deadline: now + Duration::from_secs(5),
            table: ResourceTable::new(),
            output: None,
            http: Some(access(remote)),
            local: None,
            disk: None,
            log: LogBudget::default(),
            fault: None,
            stalled_on_network: false,
            running: true,
        }
    }

    fn get(url: &str, credential: Option<&str>) -> http_api::Request {
        http_api::Request {
            method: http_api::Method::Get,
            url: url.into(),
            headers: Vec::new(),
            body: http_api::Body::Empty,
            credential: credential.map(Into::into),
        }
    }

    #[test]
    fn allowlist_matches_host_with_or_without_port() {
        let access = access(RemoteAccess {
            allowed_hosts: vec!["store.local".into(), "127.0.0.1:9000".into()],
            ..RemoteAccess::default()
        });
        let allows = |url: &str| access.allows(&Url::parse(url).unwrap());
        assert!(allows("http://store.local/x"));
        assert!(allows("https://STORE.local:8080/x"));
        assert!(allows("http://127.0.0.1:9000/b"));
        assert!(!allows("http://127.0.0.1:9001/b"));
        assert!(!allows("https://127.0.0.1/b"));
        assert!(!allows("http://evil.example/x"));
        assert!(!allows("http://store.local.evil.example/x"));
    }

    #[test]
    fn a_credential_the_destination_does_not_own_is_access_denied() {
        let remote = RemoteAccess {
            allowed_hosts: vec!["127.0.0.1:9".into()],
            credentials: BTreeMap::from([("mine".into(), Credential::Bearer("s".into()))]),
            ..RemoteAccess::default()
        };
        let mut state = call_state(remote);
        let answer =
            http_api::Host::send(&mut state, get("http://127.0.0.1:9/x", Some("theirs"))).unwrap();
        assert!(
            matches!(&answer, Err(PluginError::AccessDenied(what)) if what.contains("theirs")),
            "{answer:?}"
        );
        // The recorded fault fails the call as `CallError::AccessDenied`
        // whatever the plugin returns afterwards.
        assert!(matches!(state.fault, Some(Fault::AccessDenied(_))));
    }

    #[test]
    fn a_bad_url_or_header_is_invalid_params_and_nothing_is_sent() {
        let mut state = call_state(RemoteAccess::default());
        for url in ["ftp://h/x", "/relative"] {
            let answer = http_api::Host::send(&mut state, get(url, None)).unwrap();
            assert!(
                matches!(answer, Err(PluginError::InvalidParams(_))),
                "{answer:?}"
            );
        }
        let mut request = get("http://127.0.0.1:9/x", None);
        request.headers = vec![("bad header".into(), "x".into())];
        let answer = http_api::Host::send(&mut state, request).unwrap();
        assert!(
            matches!(answer, Err(PluginError::InvalidParams(_))),
            "{answer:?}"
        );
        assert!(state.fault.is_none());
    }

    #[test]
    fn the_plugin_cannot_set_framing_or_the_credentials_headers() {
        let headers = vec![
            ("Authorization".to_owned(), "Bearer forged".to_owned()),
            ("Content-Length".to_owned(), "1".to_owned()),
            ("X-Amz-Date".to_owned(), "x".to_owned()),
            ("x-wharf-sha256".to_owned(), "abc".to_owned()),
        ];
        let names = |credential: Option<&Credential>| {
            plugin_headers(headers.clone(), credential)
                .unwrap()
                .into_iter()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(None),
            ["authorization", "x-amz-date", "x-wharf-sha256"]
        );
        assert_eq!(
            names(Some(&Credential::Bearer("t".into()))),
            ["x-amz-date", "x-wharf-sha256"]
        );
    }
}
