//! TLS for outbound requests: which roots a destination trusts, and which
//! TLS failures are the server's certificate rather than the network.
//!
//! Invariant: rustls with the `ring` provider only (no native TLS, no
//! OpenSSL); a destination trusts Mozilla's public roots, plus its own CA
//! when the operator configured one, never less and never "any".

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// The TLS configuration of a destination: the public roots, plus the
/// certificates in `ca_pem` when given.
pub(super) fn tls_config(ca_pem: Option<&[u8]>) -> Result<TlsConfig, String> {
    let Some(pem) = ca_pem else {
        // ureq's default roots are webpki-roots: Mozilla's, built in.
        return Ok(TlsConfig::builder().root_certs(RootCerts::WebPki).build());
    };
    let mut extra = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => extra.push(cert),
            Ok(_) => {}
            Err(err) => return Err(format!("its CA certificate is not valid PEM: {err}")),
        }
    }
    if extra.is_empty() {
        return Err("its CA PEM holds no certificate".into());
    }
    // ureq takes either the built-in roots or a list, so the list repeats
    // the same public roots as certificates.
    let public = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()));
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::from(public.chain(extra)))
        .build())
}

/// The rustls error inside a ureq error, if the failure was TLS.
fn rustls_error(error: &ureq::Error) -> Option<&rustls::Error> {
    match error {
        ureq::Error::Rustls(error) => Some(error),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

/// Why the server's certificate was refused, when that is why `error`
/// happened. Retrying does not make an untrusted certificate trusted, so the
/// caller makes this a terminal error that names the fix.
pub(super) fn certificate_refused(error: &ureq::Error) -> Option<String> {
    match rustls_error(error)? {
        rustls::Error::InvalidCertificate(reason) => Some(format!(
            "TLS: the server's certificate was refused ({reason:?}); if the storage uses a \
             private CA, configure it for the destination"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_pem_without_a_certificate_is_refused() {
        assert!(tls_config(Some(b"not pem")).is_err());
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(tls_config(Some(key_only)).is_err());
        assert!(tls_config(None).is_ok());
    }
}
