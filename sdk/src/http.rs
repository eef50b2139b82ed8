//! Outbound HTTP for uploaders. The host connects only to the hosts the
//! destination allows; a file-range body is streamed by the host.

#[cfg(target_arch = "wasm32")]
use crate::__bindings::uploader::wharf::plugin::http as imports;
use crate::PluginError;

pub use crate::__bindings::uploader::wharf::plugin::http::{Body, FileRange, Request, Response};

/// Sends a request and returns the response (status, headers, body).
pub fn send(request: &Request) -> Result<Response, PluginError> {
    #[cfg(target_arch = "wasm32")]
    return imports::send(request);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.send(request))
}
