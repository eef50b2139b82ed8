//! What an S3 answer that is not a success means for the operator: a
//! `transient` error the host retries (5xx, throttling, timeouts, a body
//! damaged on the way), or a `terminal` one that names the destination and
//! says what to fix (a missing bucket, an unknown key, a wrong secret, a
//! missing permission).

use wharf_sdk::PluginError;
use wharf_sdk::http::Response;

use crate::xml::Answer;

/// Who is asking: for messages that name what to fix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asker<'a> {
    /// The destination's name, as the operator configured it.
    pub(crate) destination: &'a str,
    /// The credential's name.
    pub(crate) credential: &'a str,
}

/// S3 error codes worth a retry, whatever the status says.
const RETRIED: &[&str] = &[
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "OperationAborted",
    "IncompleteBody",
    "XAmzContentSHA256Mismatch",
    // The body hashed otherwise than its checksum on the way (the caller
    // first rules out a file changed since it was indexed).
    "BadDigest",
];

/// The code and message of an S3 `<Error>` body, if the body is one.
pub(crate) fn s3_error(body: &[u8]) -> Option<(String, String)> {
    let answer = Answer::parse(body).filter(|answer| answer.root == "Error")?;
    let code = answer.get("Code")?.to_owned();
    Some((code, answer.get("Message").unwrap_or_default().to_owned()))
}

impl Asker<'_> {
    /// The error for `what` (e.g. `PUT <url>`) answered with `response`.
    pub(crate) fn failure(&self, what: &str, response: &Response) -> PluginError {
        let error = s3_error(&response.body);
        let (code, detail) = match &error {
            Some((code, message)) => (code.as_str(), format!(" {code}: {message}")),
            None => ("", String::new()),
        };
        let status = response.status;
        let destination = self.destination;
        let said = format!("destination {destination}: {what} answered {status}{detail}");
        if matches!(status, 408 | 429 | 500..=599) || RETRIED.contains(&code) {
            let message = format!("{said}; will retry");
            return match response.retry_after_ms() {
                Some(after) => PluginError::retry_after(message, after),
                None => PluginError::transient(message),
            };
        }
        let credential = self.credential;
        let fix = match (code, status) {
            ("NoSuchBucket", _) => {
                "the bucket does not exist: create it, or fix `bucket` and `endpoint` of the destination".to_owned()
            }
            ("InvalidAccessKeyId", _) => format!(
                "the server does not know the access key id of credential {credential}: fix [credential.{credential}]"
            ),
            ("SignatureDoesNotMatch", _) => format!(
                "the server refused the signature of credential {credential}: check its secret access key and the destination's `region`"
            ),
            ("AuthorizationHeaderMalformed", _) => {
                "the server expects another region: fix `region` of the destination".to_owned()
            }
            ("PermanentRedirect", _) | (_, 301) => {
                "the bucket lives at another endpoint or region: fix `endpoint` and `region` of the destination".to_owned()
            }
            ("AccessDenied", _) | ("", 403) => format!(
                "credential {credential} was refused or may not do this: check its keys, and grant it s3:PutObject, s3:GetObject and s3:AbortMultipartUpload on the bucket and prefix"
            ),
            ("NoSuchUpload", _) => {
                "the multipart upload is gone (aborted, or expired by a lifecycle rule); the next attempt starts a new one".to_owned()
            }
            _ => "see the server's answer".to_owned(),
        };
        PluginError::terminal(format!("{said}: {fix}"))
    }

    /// A failure of the host's own (network, allowlist, deadline), with the
    /// destination named and the class kept.
    pub(crate) fn host_failure(&self, error: PluginError) -> PluginError {
        let destination = self.destination;
        match error {
            PluginError::Transient(mut transient) => {
                transient.message = format!("destination {destination}: {}", transient.message);
                PluginError::Transient(transient)
            }
            PluginError::Terminal(message) => {
                PluginError::terminal(format!("destination {destination}: {message}"))
            }
            PluginError::InvalidParams(message) => {
                PluginError::invalid_params(format!("destination {destination}: {message}"))
            }
            PluginError::AccessDenied(message) => {
                PluginError::AccessDenied(format!("destination {destination}: {message}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKER: Asker<'static> = Asker {
        destination: "archive",
        credential: "minio",
    };

    fn answer(status: u16, code: &str, headers: &[(&str, &str)]) -> Response {
        let body = if code.is_empty() {
            Vec::new()
        } else {
            format!("<Error><Code>{code}</Code><Message>m</Message></Error>").into_bytes()
        };
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            body,
        }
    }

    #[test]
    fn server_trouble_is_transient_with_the_retry_after() {
        for (status, code) in [
            (500, "InternalError"),
            (503, "SlowDown"),
            (503, ""),
            (429, ""),
            (400, "RequestTimeout"),
            (400, "XAmzContentSHA256Mismatch"),
            (400, "BadDigest"),
        ] {
            let error = ASKER.failure("PUT u", &answer(status, code, &[("Retry-After", "3")]));
            match error {
                PluginError::Transient(t) => {
                    assert_eq!(t.retry_after_ms, Some(3000), "{status} {code}");
                    assert!(t.message.contains("destination archive"), "{}", t.message);
                }
                other => panic!("{status} {code}: {other:?}"),
            }
        }
    }

    #[test]
    fn client_errors_are_terminal_and_say_what_to_fix() {
        for (status, code, fix) in [
            (404, "NoSuchBucket", "create it"),
            (403, "InvalidAccessKeyId", "[credential.minio]"),
            (403, "SignatureDoesNotMatch", "secret access key"),
            (403, "AccessDenied", "s3:PutObject"),
            (403, "", "credential minio"),
            (400, "AuthorizationHeaderMalformed", "`region`"),
            (301, "", "`endpoint`"),
            (400, "InvalidArgument", "InvalidArgument: m"),
        ] {
            match ASKER.failure("PUT u", &answer(status, code, &[])) {
                PluginError::Terminal(message) => {
                    assert!(
                        message.contains(fix) && message.contains("destination archive"),
                        "{status} {code}: {message}"
                    );
                }
                other => panic!("{status} {code}: {other:?}"),
            }
        }
    }

    #[test]
    fn host_failures_keep_their_class_and_name_the_destination() {
        let error = ASKER.host_failure(PluginError::retry_after("connection refused", 5));
        match error {
            PluginError::Transient(t) => {
                assert_eq!(t.message, "destination archive: connection refused");
                assert_eq!(t.retry_after_ms, Some(5));
            }
            other => panic!("{other:?}"),
        }
    }
}
