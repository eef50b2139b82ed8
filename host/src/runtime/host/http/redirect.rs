//! URLs of a request and its redirects: parsing the plugin's URL, resolving
//! a `Location` against the URL it answered (RFC 3986, by the `url` crate),
//! and what the next hop's method and body are.
//!
//! Invariant: every URL that leaves this module is absolute `http` or
//! `https` with a host and no fragment, and an `https` request never
//! continues over `http`.

use ureq::http::Method;
use url::Url;

/// The plugin's request URL, ready to send.
pub(super) fn request_url(raw: &str) -> Result<Url, String> {
    let mut url = Url::parse(raw).map_err(|err| format!("bad URL {raw:?}: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{raw:?} is not an http:// or https:// URL"));
    }
    url.set_fragment(None);
    Ok(url)
}

/// What to do after a response.
#[derive(Debug, PartialEq)]
pub(super) enum Next {
    /// Not a redirect: the response goes to the plugin.
    Done,
    Follow {
        url: Url,
        method: Method,
        /// The next hop is sent without a body.
        drop_body: bool,
    },
    /// A redirect wharf does not follow, with the reason.
    Refuse(String),
}

/// The hop after `method url` answered `status` with `location`.
pub(super) fn next_hop(url: &Url, method: &Method, status: u16, location: Option<&str>) -> Next {
    let (301 | 302 | 303 | 307 | 308, Some(location)) = (status, location) else {
        return Next::Done;
    };
    let mut next = match url.join(location) {
        Ok(next) => next,
        Err(err) => return Next::Refuse(format!("{url} redirected to {location:?}: {err}")),
    };
    next.set_fragment(None);
    if !matches!(next.scheme(), "http" | "https") || next.host().is_none() {
        return Next::Refuse(format!(
            "{url} redirected to {next}, which is not an http:// or https:// URL"
        ));
    }
    if url.scheme() == "https" && next.scheme() == "http" {
        return Next::Refuse(format!(
            "{url} redirected to {next}: wharf never follows https to http"
        ));
    }
    // 303 always continues with GET; 301 and 302 turn a POST into a GET, as
    // browsers do; 307 and 308 repeat the request as it was.
    let drop_body = status == 303 || (matches!(status, 301 | 302) && method == Method::POST);
    Next::Follow {
        url: next,
        method: if drop_body {
            Method::GET
        } else {
            method.clone()
        },
        drop_body,
    }
}

/// `host` or `host:port` as the `host` header carries it: the port only when
/// it is not the scheme's default (`url` drops a default port when parsing).
pub(super) fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(from: &str, location: &str) -> String {
        let url = request_url(from).unwrap();
        match next_hop(&url, &Method::PUT, 307, Some(location)) {
            Next::Follow { url, .. } => url.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn locations_resolve_against_the_request_url() {
        let base = "http://h:1/a/b?q#frag";
        assert_eq!(follow(base, "c"), "http://h:1/a/c");
        assert_eq!(follow(base, "../c?x=1"), "http://h:1/c?x=1");
        assert_eq!(follow(base, "/c"), "http://h:1/c");
        assert_eq!(follow(base, "?r"), "http://h:1/a/b?r");
        assert_eq!(follow(base, "//o:2/x"), "http://o:2/x");
        assert_eq!(follow("https://h/a", "//o/x"), "https://o/x");
        assert_eq!(follow(base, "http://o/x#y"), "http://o/x");
        assert_eq!(follow(base, "https://o/x"), "https://o/x");
    }

    #[test]
    fn https_never_continues_over_http_nor_off_the_web() {
        let url = request_url("https://h/a").unwrap();
        for location in ["http://h/a", "ftp://h/a", "file:///etc/passwd"] {
            assert!(
                matches!(
                    next_hop(&url, &Method::GET, 302, Some(location)),
                    Next::Refuse(_)
                ),
                "{location}"
            );
        }
    }

    #[test]
    fn methods_change_as_browsers_do() {
        let url = request_url("http://h/a").unwrap();
        let method = |status, method: Method| match next_hop(&url, &method, status, Some("/b")) {
            Next::Follow {
                method, drop_body, ..
            } => (method, drop_body),
            other => panic!("{other:?}"),
        };
        assert_eq!(method(303, Method::PUT), (Method::GET, true));
        assert_eq!(method(302, Method::POST), (Method::GET, true));
        assert_eq!(method(301, Method::PUT), (Method::PUT, false));
        assert_eq!(method(307, Method::POST), (Method::POST, false));
        assert_eq!(method(308, Method::PUT), (Method::PUT, false));
        assert_eq!(next_hop(&url, &Method::GET, 302, None), Next::Done);
        assert_eq!(next_hop(&url, &Method::GET, 200, Some("/b")), Next::Done);
    }

    #[test]
    fn only_absolute_http_urls_are_requested() {
        assert!(request_url("https://s3.example.com/b/k").is_ok());
        for bad in [
            "/relative",
            "ftp://h/x",
            "mailto:a@b",
            "http://",
            "not a url",
        ] {
            assert!(request_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_host_header_carries_only_a_non_default_port() {
        let host = |url: &str| host_header(&request_url(url).unwrap());
        assert_eq!(host("http://H.example:80/x"), "h.example");
        assert_eq!(host("https://h:443/x"), "h");
        assert_eq!(host("http://127.0.0.1:9000/x"), "127.0.0.1:9000");
        assert_eq!(host("http://[::1]:9000/x"), "[::1]:9000");
    }
}
