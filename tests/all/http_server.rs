//! A small HTTP/1.1 server on 127.0.0.1 for the `http` tests: plain or TLS
//! (rustls, with a certificate from a test CA that rcgen makes in the test),
//! keep-alive, a thread per connection. It records every request with its
//! headers and counts the connections it accepted, so a test can tell what
//! reached it and over how many connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Connections one server accepts before its accept loop ends.
const MAX_CONNECTIONS: usize = 32;

/// How long a connection waits for the next request before closing.
const IDLE: Duration = Duration::from_secs(10);

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Names lower-cased, in the order received.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Sends the body a byte at a time with this pause after each.
    trickle: Option<Duration>,
}

impl Reply {
    /// A reply with no body; `content-length` is the body's unless set.
    pub(crate) fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            trickle: None,
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn body(mut self, body: &[u8]) -> Reply {
        self.body = body.to_vec();
        self
    }

    pub(crate) fn trickle(mut self, pause: Duration) -> Reply {
        self.trickle = Some(pause);
        self
    }
}

/// A certificate authority made for one test.
pub(crate) struct TestCa {
    /// The CA certificate, PEM, as an operator would configure it.
    pub(crate) pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server configuration whose certificate (for 127.0.0.1 and
    /// localhost) this CA signed.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Arc::new(config)
    }
}

type Respond = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A running server. Its threads end on their own: connections when the
/// client closes or stays idle, the accept loop after `MAX_CONNECTIONS`.
pub(crate) struct Server {
    pub(crate) port: u16,
    tls: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    /// Plain HTTP.
    pub(crate) fn http(respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
        Server::start(None, Arc::new(respond))
    }

    /// HTTPS with `config`.
    pub(crate) fn https(
        config: Arc<ServerConfig>,
        respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::start(Some(config), Arc::new(respond))
    }

    fn start(tls: Option<Arc<ServerConfig>>, respond: Arc<Respond>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let server = Server {
            port,
            tls: tls.is_some(),
            seen: seen.clone(),
            connections: connections.clone(),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().take(MAX_CONNECTIONS) {
                let Ok(stream) = stream else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let (tls, respond, seen) = (tls.clone(), respond.clone(), seen.clone());
                std::thread::spawn(move || serve_connection(stream, tls, &*respond, &seen));
            }
        });
        server
    }

    /// `http(s)://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// `127.0.0.1:PORT`, as an allowlist entry.
    pub(crate) fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn serve_connection(
    tcp: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    respond: &Respond,
    seen: &Mutex<Vec<Seen>>,
) {
    let _ = tcp.set_read_timeout(Some(IDLE));
    let stream: Box<dyn Stream> = match tls {
        Some(config) => {
            let Ok(connection) = rustls::ServerConnection::new(config) else {
                return;
            };
            Box::new(rustls::StreamOwned::new(connection, tcp))
        }
        None => Box::new(tcp),
    };
    let mut reader = BufReader::new(stream);
    // One request after another on the same connection, until it closes.
    while let Some(request) = read_request(&mut reader) {
        let reply = respond(&request);
        let head_only = request.method == "HEAD";
        seen.lock().unwrap().push(request);
        if write_reply(reader.get_mut(), &reply, head_only).is_err() {
            return;
        }
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Seen> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| value.parse().unwrap_or(0));
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

fn write_reply(stream: &mut dyn Stream, reply: &Reply, head_only: bool) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !reply
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("content-length: {}\r\n", reply.body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.flush()?;
    if head_only {
        return Ok(());
    }
    match reply.trickle {
        None => stream.write_all(&reply.body)?,
        Some(pause) => {
            for byte in &reply.body {
                stream.write_all(std::slice::from_ref(byte))?;
                stream.flush()?;
                std::thread::sleep(pause);
            }
        }
    }
    stream.flush()
}
