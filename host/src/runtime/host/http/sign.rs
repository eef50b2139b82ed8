//! Credentials a destination owns and how the host applies them to one hop
//! of a plugin's request: a bearer token, or an AWS SigV4 signature for
//! S3-compatible storage (computed by `aws-sigv4`, never by hand).
//!
//! Invariant: a secret never leaves this module except inside the
//! `authorization` header of a hop the caller already checked against the
//! allowlist; `Debug` never prints one.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use url::Url;

/// A secret a destination owns. The plugin names it; the host applies it.
#[derive(Clone)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// AWS Signature Version 4, as S3 and S3-compatible stores expect: every
    /// request signed with the payload's sha256 (`x-amz-content-sha256`),
    /// which the host computes.
    SigV4 {
        access_key_id: String,
        secret_access_key: String,
        /// For temporary credentials; sent as `x-amz-security-token`.
        session_token: Option<String>,
        /// E.g. `us-east-1`; S3-compatible stores often accept any.
        region: String,
        /// The signing name, `s3` for object storage.
        service: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credential::SigV4 {
                access_key_id,
                session_token,
                region,
                service,
                ..
            } => f
                .debug_struct("SigV4")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .field(
                    "session_token",
                    &session_token.as_ref().map(|_| "<redacted>"),
                )
                .field("region", region)
                .field("service", service)
                .finish(),
        }
    }
}

/// sha256 of nothing, the payload hash of a request without a body.
pub(super) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl Credential {
    /// Headers this credential sets; a plugin's own are dropped.
    pub(super) fn owned_headers(&self) -> &'static [&'static str] {
        match self {
            Credential::Bearer(_) => &["authorization"],
            Credential::SigV4 { .. } => &[
                "authorization",
                "x-amz-date",
                "x-amz-content-sha256",
                "x-amz-security-token",
            ],
        }
    }

    /// Whether signing needs the sha256 of the body.
    pub(super) fn signs_payload(&self) -> bool {
        matches!(self, Credential::SigV4 { .. })
    }

    /// The headers that authorize `method url` with `headers` (which must
    /// include `host`, as sent) and a body whose sha256 is `payload_sha256`.
    pub(super) fn authorize(
        &self,
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        payload_sha256: &str,
        now: SystemTime,
    ) -> Result<Vec<(String, String)>, String> {
        match self {
            Credential::Bearer(token) => {
                Ok(vec![("authorization".into(), format!("Bearer {token}"))])
            }
            Credential::SigV4 {
                access_key_id,
                secret_access_key,
                session_token,
                region,
                service,
            } => {
                let identity = Credentials::new(
                    access_key_id,
                    secret_access_key,
                    session_token.clone(),
                    None,
                    "wharf-destination",
                )
                .into();
                let mut settings = SigningSettings::default();
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
                if service == "s3" {
                    // S3 signs the path as sent: no second encoding and no
                    // normalization of `.` or `//` in object keys.
                    settings.percent_encoding_mode = PercentEncodingMode::Single;
                    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
                }
                let params = v4::SigningParams::builder()
                    .identity(&identity)
                    .region(region)
                    .name(service)
                    .time(now)
                    .settings(settings)
                    .build()
                    .map_err(|err| err.to_string())?
                    .into();
                let request = SignableRequest::new(
                    method,
                    url.as_str(),
                    headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                    SignableBody::Precomputed(payload_sha256.to_owned()),
                )
                .map_err(|err| err.to_string())?;
                let (instructions, _signature) = sign(request, &params)
                    .map_err(|err| err.to_string())?
                    .into_parts();
                let (signed, _query) = instructions.into_parts();
                Ok(signed
                    .into_iter()
                    .map(|header| (header.name().to_owned(), header.value().to_owned()))
                    .collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn example_key(session_token: Option<&str>) -> Credential {
        Credential::SigV4 {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: session_token.map(Into::into),
            region: "us-east-1".into(),
            service: "s3".into(),
        }
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn sigv4_matches_the_s3_documentation_example() {
        // "GET Object" from Amazon S3's "Signature Calculations for the
        // Authorization Header" examples: 2013-05-24T00:00:00Z.
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let url = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let headers = vec![
            (
                "host".to_owned(),
                "examplebucket.s3.amazonaws.com".to_owned(),
            ),
            ("range".to_owned(), "bytes=0-9".to_owned()),
        ];
        let signed = example_key(None)
            .authorize("GET", &url, &headers, EMPTY_SHA256, time)
            .unwrap();
        assert_eq!(
            header(&signed, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
                 Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            )
        );
        assert_eq!(header(&signed, "x-amz-content-sha256"), Some(EMPTY_SHA256));
        assert_eq!(header(&signed, "x-amz-date"), Some("20130524T000000Z"));
    }

    #[test]
    fn a_session_token_is_sent_and_no_secret_is_printed() {
        let url = Url::parse("http://127.0.0.1:9000/b/k").unwrap();
        let headers = vec![("host".to_owned(), "127.0.0.1:9000".to_owned())];
        let credential = example_key(Some("TOKEN-SECRET"));
        let signed = credential
            .authorize("PUT", &url, &headers, EMPTY_SHA256, SystemTime::now())
            .unwrap();
        assert_eq!(
            header(&signed, "x-amz-security-token"),
            Some("TOKEN-SECRET")
        );
        assert!(
            signed
                .iter()
                .all(|(_, v)| !v.contains("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"))
        );
        let printed = format!("{credential:?} {:?}", Credential::Bearer("b-secret".into()));
        assert!(printed.contains("AKIAIOSFODNN7EXAMPLE"), "{printed}");
        for secret in ["bPxRfiCY", "TOKEN-SECRET", "b-secret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}
