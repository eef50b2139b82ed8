//! Uploader to S3 and S3-compatible object storage: each file is stored
//! under its sha256, at `{destination url}/{sha256}`, where the destination
//! URL is `{endpoint}/{bucket}[/{prefix}]` (path style) or
//! `{scheme}://{bucket}.{host}[/{prefix}]` (virtual-hosted style).
//!
//! **Secrets.** The destination owns exactly one credential; every request
//! names it and the host signs it (AWS SigV4) on its way out, so the secret
//! never enters the plugin. The host computes the sha256 of every body it
//! streams and signs it as `x-amz-content-sha256`; the server recomputes it
//! from the bytes it received and refuses the request when they differ, so
//! a body damaged on the way is never stored.
//!
//! **Idempotence.** Keys are content-addressed and every upload starts with
//! a HEAD (`x-amz-checksum-mode: ENABLED`): an object of the right size
//! whose stored `x-amz-checksum-sha256` is the file's is not sent again, so
//! a retried or repeated upload never creates a second object. Anything at
//! the key that cannot be shown to be the file (another size, another
//! stored sha256, or none: a multipart object, or a single-part one a
//! server stored without checking a checksum) is replaced by an upload to
//! the same key, never kept on trust.
//!
//! **What `remote-sha256` means.** The plugin reports one only when it was
//! verified during this call, in one of two ways:
//! - *stated by the server*: a single PUT carries `x-amz-checksum-sha256` =
//!   the indexed sha256; the server stores the object only if the bytes it
//!   received hash to it, and answers the sha256 it stored. An answer that
//!   differs is a transient error (the next attempt's HEAD sees the stored
//!   checksum and replaces the object).
//! - *verified part by part by the server, and as a whole by the host*: for
//!   a multipart upload (S3 keeps no whole-object SHA-256 for those: SHA-256
//!   checksums of multipart uploads are composite, per part, and s3s-fs
//!   keeps none at all), and for a single PUT to a server that answers no
//!   checksum. The server refused any request whose body did not hash to
//!   the `x-amz-content-sha256` the host computed from the very file range
//!   it streamed, and CompleteMultipartUpload names exactly the parts the
//!   server acknowledged, so the object is the file's bytes as they were
//!   read; after the upload the host hashes the whole file once more, and
//!   only if that is the indexed sha256 is it reported. If it is not, the
//!   file changed under the upload: the object is deleted and the error is
//!   terminal (re-index the file). A file changed during the upload and
//!   changed back before that last hash is the one case this cannot see.
//!
//! **Single PUT** (files up to `multipart_threshold`): the file streamed by
//! the host, with `x-amz-checksum-sha256`. `BadDigest` (the bytes sent are
//! not the indexed content) is terminal when the host finds that the file
//! changed since it was indexed.
//!
//! **Multipart** (larger files): CreateMultipartUpload, then parts of
//! `part_size` (S3's limits enforced: at least 5 MiB but the last, at most
//! 10,000 parts, the size raised to fit) streamed by the host from file
//! ranges, then CompleteMultipartUpload naming each part by the ETag the
//! server gave it. On any failure after the upload was created it is
//! aborted (AbortMultipartUpload) before the error is returned; a call
//! stopped at its deadline cannot, and leaves the parts to the bucket's
//! lifecycle rule (AbortIncompleteMultipartUpload).
//!
//! **Errors.** 5xx, throttling and timeouts are `transient` (with the
//! server's `Retry-After`); a missing bucket, an unknown access key, a
//! wrong secret or a refused permission are `terminal` with a message that
//! names the destination and what to fix (see `answers.rs`).

mod answers;
mod settings;
mod xml;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use wharf_sdk::host::{Level, log};
use wharf_sdk::http::{self, Request, Response};
use wharf_sdk::{
    Destination, DestinationKind, FileEntry, Params, PluginError, PluginInfo, UploadResult,
    Uploader,
};

use answers::Asker;
use settings::Settings;

pub struct S3;

impl Uploader for S3 {
    fn describe() -> PluginInfo {
        let info = PluginInfo::new("s3", env!("CARGO_PKG_VERSION")).description(
            "Uploads each file to S3 or S3-compatible storage under <prefix>/<sha256>: a HEAD first, one checksummed PUT for small files, a multipart upload for large ones; the host signs every request with the destination's credential.",
        );
        settings::specs()
            .into_iter()
            .fold(info, |info, spec| info.param(spec))
    }

    fn run(
        file: FileEntry,
        destination: Destination,
        params: Params,
    ) -> Result<UploadResult, PluginError> {
        let settings = Settings::from_params(&params)?;
        let credential = only_credential(&destination)?;
        let upload = Upload::new(&file, &destination, &credential)?;
        upload.run(&settings)
    }
}

wharf_sdk::export_uploader!(S3);

/// The destination's one credential: S3 requests are always signed.
fn only_credential(destination: &Destination) -> Result<String, PluginError> {
    if destination.kind != DestinationKind::Remote {
        return Err(PluginError::invalid_params(format!(
            "destination {} is a local directory; the s3 plugin uploads to S3 endpoints (use kind = \"s3\")",
            destination.name
        )));
    }
    match destination.credentials.as_slice() {
        [only] => Ok(only.clone()),
        others => Err(PluginError::invalid_params(format!(
            "destination {} must have exactly one credential (credential = \"NAME\" and [credential.NAME]); it has {}",
            destination.name,
            if others.is_empty() {
                "none".to_owned()
            } else {
                others.join(", ")
            }
        ))),
    }
}

/// One file going to one destination.
struct Upload<'a> {
    file: &'a FileEntry,
    asker: Asker<'a>,
    credential: &'a str,
    /// `{destination url}/{sha256}`.
    url: String,
}

impl<'a> Upload<'a> {
    fn new(
        file: &'a FileEntry,
        destination: &'a Destination,
        credential: &'a str,
    ) -> Result<Upload<'a>, PluginError> {
        file.checked_sha256()?;
        let base = destination.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(PluginError::invalid_params(format!(
                "destination {}: url {:?} is not an http:// or https:// URL",
                destination.name, destination.url
            )));
        }
        Ok(Upload {
            file,
            asker: Asker {
                destination: &destination.name,
                credential,
            },
            credential,
            url: format!("{base}/{}", file.sha256.to_ascii_lowercase()),
        })
    }

    fn run(&self, settings: &Settings) -> Result<UploadResult, PluginError> {
        let size = self.file.size;
        if self.file.file.size() != size {
            return Err(self.changed_since_indexed());
        }
        let sha256 = match self.stored_sha256()? {
            Some(sha256) => sha256,
            None if size > settings.multipart_threshold => {
                self.put_in_parts(settings.part_size_for(size)?)?
            }
            None => self.put_whole()?,
        };
        Ok(UploadResult {
            remote_ref: self.url.clone(),
            remote_sha256: Some(sha256),
        })
    }

    /// Sends `request` signed with the destination's credential.
    fn send(&self, request: Request<'_>) -> Result<Response, PluginError> {
        http::send(&request.credential(self.credential)).map_err(|e| self.asker.host_failure(e))
    }

    /// HEADs the key: the file's sha256 if the server holds the file under
    /// it and says so; `None` if it holds nothing or cannot show it is the
    /// file.
    fn stored_sha256(&self) -> Result<Option<String>, PluginError> {
        let response =
            self.send(Request::head(&self.url).header("x-amz-checksum-mode", "ENABLED"))?;
        match response.status {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.asker.failure(&format!("HEAD {}", self.url), &response)),
        }
        let size = response.header("content-length").map(str::trim);
        if size != Some(self.file.size.to_string().as_str()) {
            self.note(&format!(
                "{} holds {} bytes, not {}: replacing it",
                self.url,
                size.unwrap_or("an unknown number of"),
                self.file.size
            ));
            return Ok(None);
        }
        let stored = response.header("x-amz-checksum-sha256");
        if let Some(sha256) = stored.and_then(base64_sha256)
            && sha256 == self.file.sha256
        {
            return Ok(Some(sha256));
        }
        self.note(&format!(
            "{} holds {}: replacing it with a verified copy",
            self.url,
            match stored {
                Some(other) => format!("another sha256 ({other})"),
                None => "no sha256 to compare".to_owned(),
            }
        ));
        Ok(None)
    }

    /// One PUT of the whole file, checksummed; the verified sha256.
    fn put_whole(&self) -> Result<String, PluginError> {
        let checksum = hex_to_base64(&self.file.sha256)?;
        let request = Request::put(&self.url)
            .header("content-type", "application/octet-stream")
            .header("x-amz-checksum-sha256", &checksum)
            .file_range(&self.file.file, 0, self.file.size);
        let response = self.send(request)?;
        if !response.is_success() {
            return Err(self.put_failure(&response));
        }
        match response.header("x-amz-checksum-sha256") {
            None => self.verified_by_payloads(),
            Some(stored) if stored.trim() == checksum => Ok(self.file.sha256.clone()),
            Some(stored) => Err(PluginError::transient(format!(
                "destination {}: PUT {} answered sha256 {stored} for a body of sha256 {checksum}; the next attempt checks and replaces the object",
                self.asker.destination, self.url
            ))),
        }
    }

    fn put_failure(&self, response: &Response) -> PluginError {
        let what = format!("PUT {}", self.url);
        let bad_digest =
            answers::s3_error(&response.body).is_some_and(|(code, _)| code == "BadDigest");
        // The host hashed and signed the bytes it sent, so a checksum the
        // server refuses means those bytes are not the indexed content.
        if bad_digest
            && self
                .file
                .file
                .sha256(0, self.file.size)
                .is_ok_and(|now| now != self.file.sha256)
        {
            return self.changed_since_indexed();
        }
        self.asker.failure(&what, response)
    }

    fn changed_since_indexed(&self) -> PluginError {
        PluginError::terminal(format!(
            "file {} changed since it was indexed (its size or sha256 differs from the index): run `wharf fsck` and sync it again",
            self.file.name
        ))
    }

    /// When the server verified every request body against the sha256 the
    /// host computed from the range it streamed, but stated no sha256 of
    /// the object: the host hashes the whole file again, and only the
    /// indexed sha256 is reported. Otherwise the file changed under the
    /// upload and the object at its key is not its content: it is deleted.
    fn verified_by_payloads(&self) -> Result<String, PluginError> {
        let now = self.file.file.sha256(0, self.file.size)?;
        if now == self.file.sha256 {
            return Ok(now);
        }
        let deleted = self.send(Request::delete(&self.url));
        if !deleted.as_ref().is_ok_and(Response::is_success) {
            self.note(&format!(
                "could not delete {} after the file changed under its upload; the next upload replaces it",
                self.url
            ));
        }
        Err(self.changed_since_indexed())
    }

    /// A multipart upload of parts of `part_size`, aborted on failure; the
    /// verified sha256.
    fn put_in_parts(&self, part_size: u64) -> Result<String, PluginError> {
        let upload_id = self.create_multipart_upload()?;
        let uploaded = self
            .put_parts(&upload_id, part_size)
            .and_then(|etags| self.complete_multipart_upload(&upload_id, &etags));
        if let Err(error) = uploaded {
            self.abort_multipart_upload(&upload_id);
            return Err(error);
        }
        // The server states no whole-object sha256 for a multipart object.
        self.verified_by_payloads()
    }

    fn create_multipart_upload(&self) -> Result<String, PluginError> {
        let url = format!("{}?uploads", self.url);
        let response = self
            // An empty body, framed: servers refuse a POST without a length.
            .send(
                Request::post(&url)
                    .header("content-type", "application/octet-stream")
                    .bytes(Vec::new()),
            )?;
        let what = format!("CreateMultipartUpload {url}");
        if !response.is_success() {
            return Err(self.asker.failure(&what, &response));
        }
        xml::Answer::parse(&response.body)
            .filter(|answer| answer.root == "InitiateMultipartUploadResult")
            .and_then(|answer| answer.get("UploadId").map(str::to_owned))
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                PluginError::transient(format!(
                    "destination {}: {what} answered no UploadId",
                    self.asker.destination
                ))
            })
    }

    /// Sends every part; their ETags, in order.
    fn put_parts(&self, upload_id: &str, part_size: u64) -> Result<Vec<String>, PluginError> {
        let size = self.file.size;
        let mut etags = Vec::new();
        let mut offset = 0;
        while offset < size {
            let len = part_size.min(size - offset);
            let number = etags.len() + 1;
            let url = format!(
                "{}?partNumber={number}&uploadId={}",
                self.url,
                query_escape(upload_id)
            );
            let response =
                self.send(Request::put(&url).file_range(&self.file.file, offset, len))?;
            let what = format!("UploadPart {number} of {}", self.url);
            if !response.is_success() {
                return Err(self.asker.failure(&what, &response));
            }
            let etag = response.header("etag").filter(|etag| !etag.is_empty());
            let Some(etag) = etag else {
                return Err(PluginError::transient(format!(
                    "destination {}: {what} answered no ETag",
                    self.asker.destination
                )));
            };
            etags.push(etag.to_owned());
            offset += len;
        }
        Ok(etags)
    }

    fn complete_multipart_upload(
        &self,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), PluginError> {
        let url = format!("{}?uploadId={}", self.url, query_escape(upload_id));
        let request = Request::post(&url)
            .header("content-type", "application/xml")
            .bytes(xml::complete_multipart_upload(etags));
        let response = self.send(request)?;
        let what = format!("CompleteMultipartUpload {}", self.url);
        // S3 may answer 200 and only then find it failed: an `<Error>` body.
        if !response.is_success() || answers::s3_error(&response.body).is_some() {
            return Err(self.asker.failure(&what, &response));
        }
        Ok(())
    }

    /// Best effort: a failure here is logged, the upload's own error wins.
    fn abort_multipart_upload(&self, upload_id: &str) {
        let url = format!("{}?uploadId={}", self.url, query_escape(upload_id));
        let outcome = self.send(Request::delete(&url));
        match outcome {
            Ok(response) if response.is_success() || response.status == 404 => {}
            Ok(response) => self.note(&format!(
                "AbortMultipartUpload {url} answered {}; the bucket's lifecycle rule must remove its parts",
                response.status
            )),
            Err(error) => self.note(&format!(
                "AbortMultipartUpload {url} failed ({error:?}); the bucket's lifecycle rule must remove its parts"
            )),
        }
    }

    fn note(&self, message: &str) {
        log(
            Level::Warn,
            &format!("destination {}: {message}", self.asker.destination),
        );
    }
}

/// `x-amz-checksum-sha256` (base64 of the digest) as lower-case hex, if it
/// is one.
fn base64_sha256(value: &str) -> Option<String> {
    let digest = BASE64.decode(value.trim()).ok()?;
    (digest.len() == 32).then(|| hex::encode(digest))
}

fn hex_to_base64(sha256: &str) -> Result<String, PluginError> {
    let digest = hex::decode(sha256)
        .map_err(|_| PluginError::terminal(format!("{sha256:?} is not a hex sha256")))?;
    Ok(BASE64.encode(digest))
}

/// Percent-encodes a query value (S3 upload ids may hold `+`, `/`, `=`).
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
