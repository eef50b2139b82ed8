//! One hop on the network: the request as the host sends it (headers
//! already checked and signed), through the destination's agent, and the
//! response read within the response limit and the call's deadline.
//!
//! Invariant: a failure after the deadline is the deadline (a trap that
//! fails the call), whatever ureq reports; an untrusted certificate is
//! terminal; any other network failure is transient.

use std::io::Read;
use std::time::Instant;

use ureq::AsSendBody;
use ureq::http::{Method, Request, Response};
use url::Url;

use super::tls::certificate_refused;
use crate::runtime::bindings::{PluginError, http_api};
use crate::runtime::call::{CallState, transient};
use crate::runtime::host::open_range;

impl CallState {
    /// Sends one hop and reads its response.
    pub(super) fn send_once(
        &mut self,
        agent: &ureq::Agent,
        method: &Method,
        url: &Url,
        headers: &[(String, String)],
        body: &http_api::Body,
        response_limit: u64,
    ) -> wasmtime::Result<Result<http_api::Response, PluginError>> {
        let mut builder = Request::builder().method(method.clone()).uri(url.as_str());
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let result = match body {
            http_api::Body::Empty => builder.body(()).map(|req| self.run(agent, req)),
            http_api::Body::Bytes(bytes) => {
                builder.body(bytes.clone()).map(|req| self.run(agent, req))
            }
            http_api::Body::FileRange(range) => {
                // Reopened (and so rewound) for every hop.
                let path = self.granted_path(&range.file)?;
                let file = match open_range(&path, range.offset, range.len) {
                    Ok(file) => file,
                    Err(err) => return Ok(Err(err)),
                };
                let reader = ureq::SendBody::from_owned_reader(file.take(range.len));
                builder
                    .header("content-length", range.len.to_string())
                    .body(reader)
                    .map(|req| self.run(agent, req))
            }
        };
        let mut response = match result {
            Err(err) => {
                return Ok(Err(PluginError::InvalidParams(format!(
                    "bad request to {url}: {err}"
                ))));
            }
            Ok(Err(err)) => return Ok(Err(self.failed(url, &err)?)),
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
        // Read to the end even for HEAD (ureq knows it has no body), so the
        // connection goes back to the destination's pool.
        let body = match response
            .body_mut()
            .with_config()
            .limit(response_limit)
            .read_to_vec()
        {
            Ok(body) => body,
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                return Ok(Err(transient(format!(
                    "{url}: the response is larger than the limit of {response_limit} bytes"
                ))));
            }
            Err(err) => return Ok(Err(self.failed(url, &err)?)),
        };
        Ok(Ok(http_api::Response {
            status,
            headers,
            body,
        }))
    }

    /// Runs a request with what is left of the call's deadline as its
    /// timeout, end to end: connect, send, and the whole response body.
    fn run<S: AsSendBody>(
        &self,
        agent: &ureq::Agent,
        request: Request<S>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let request = agent
            .configure_request(request)
            .timeout_global(Some(remaining))
            .build();
        agent.run(request)
    }

    /// The error a failed hop gives the plugin, or the deadline trap when
    /// the call's time ran out (ureq's timeout is that deadline): the
    /// network's doing, not the plugin's.
    fn failed(&mut self, url: &Url, error: &ureq::Error) -> wasmtime::Result<PluginError> {
        if Instant::now() >= self.deadline {
            self.stalled_on_network = true;
        }
        self.check_deadline()?;
        Ok(match certificate_refused(error) {
            Some(reason) => PluginError::Terminal(format!("{url}: {reason}")),
            None => transient(format!("{url}: {error}")),
        })
    }
}
