//! A fault-injection proxy for the `s3` tests: plain TCP on 127.0.0.1
//! between the runtime and the S3 server, reading each HTTP/1.1 request
//! (the host always frames bodies with `content-length`) and, per a rule
//! the test sets, forwarding it untouched or injecting one fault: an error
//! answer, a redirect, a reset connection, a body cut half-way or damaged
//! on its way to the server, a stall, an answer truncated or with a header
//! replaced on its way back.
//!
//! Each forwarded request goes over its own upstream connection with
//! `connection: close`, so the answer ends where the server closes; the
//! client's connection stays open for its next request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request's head, as the proxy read it.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) method: String,
    /// Path and query.
    pub(crate) target: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
}

impl Head {
    fn content_length(&self) -> usize {
        self.headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0)
    }
}

/// What happens to one request.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Answered by the proxy with an S3 error body; the server never sees it.
    Answer {
        status: u16,
        code: &'static str,
        retry_after: Option<u64>,
    },
    /// Answered with a 307 to this URL.
    Redirect(String),
    /// The connection is reset before anything is forwarded.
    Reset,
    /// Half of the body reaches the server, then both connections close.
    CutBody,
    /// One byte of the body is flipped on its way to the server.
    CorruptBody,
    /// Nothing is answered for this long, then the connection closes.
    Stall(Duration),
    /// Forwarded; half of the server's answer comes back, then it closes.
    Truncate,
    /// Forwarded; this header of the answer gets this value.
    ReplaceHeader(&'static str, String),
}

type Rule = dyn Fn(&Head) -> Option<Fault> + Send + Sync;

struct State {
    rule: Box<Rule>,
    /// Whether the rule stops after its first fault.
    once: bool,
    fired: bool,
    seen: Vec<String>,
}

/// A running proxy to one upstream. Its threads end with the test process.
pub(crate) struct Proxy {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    pub(crate) fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            rule: Box::new(|_| None),
            once: false,
            fired: false,
            seen: Vec::new(),
        }));
        let shared = state.clone();
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (state, upstream) = (shared.clone(), upstream.clone());
                std::thread::spawn(move || serve(client, &upstream, &state));
            }
        });
        Proxy { port, state }
    }

    pub(crate) fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request from now on goes through `rule`.
    pub(crate) fn set(&self, rule: impl Fn(&Head) -> Option<Fault> + Send + Sync + 'static) {
        let mut state = self.state.lock().unwrap();
        state.rule = Box::new(rule);
        state.once = false;
        state.fired = false;
    }

    /// Only the first request `rule` picks gets its fault.
    pub(crate) fn once(&self, rule: impl Fn(&Head) -> Option<Fault> + Send + Sync + 'static) {
        self.set(rule);
        self.state.lock().unwrap().once = true;
    }

    pub(crate) fn fault_fired(&self) -> bool {
        self.state.lock().unwrap().fired
    }

    /// `METHOD target` of every request received, in order.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn serve(client: TcpStream, upstream: &str, state: &Mutex<State>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(writer) = client.try_clone() else {
        return;
    };
    let mut writer = writer;
    let mut reader = BufReader::new(client);
    while let Some(head) = read_head(&mut reader) {
        let fault = {
            let mut state = state.lock().unwrap();
            state.seen.push(format!("{} {}", head.method, head.target));
            let fault = if state.once && state.fired {
                None
            } else {
                (state.rule)(&head)
            };
            state.fired |= fault.is_some();
            fault
        };
        let keep_going = match fault {
            // Closed with the body unread: the kernel answers with a reset.
            Some(Fault::Reset) => return,
            Some(Fault::Stall(pause)) => {
                std::thread::sleep(pause);
                false
            }
            Some(Fault::Answer {
                status,
                code,
                retry_after,
            }) => {
                let _ = read_body(&mut reader, &head);
                let body = format!("<Error><Code>{code}</Code><Message>injected</Message></Error>");
                let mut answer = format!(
                    "HTTP/1.1 {status} Injected\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n",
                    body.len()
                );
                if let Some(seconds) = retry_after {
                    answer.push_str(&format!("retry-after: {seconds}\r\n"));
                }
                answer.push_str("\r\n");
                answer.push_str(&body);
                writer.write_all(answer.as_bytes()).is_ok()
            }
            Some(Fault::Redirect(location)) => {
                let _ = read_body(&mut reader, &head);
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n"
                );
                writer.write_all(answer.as_bytes()).is_ok()
            }
            other => forward(&mut reader, &mut writer, &head, upstream, other),
        };
        if !keep_going {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Forwards one request, applying a fault of the forwarding kind; whether
/// the client connection carries on.
fn forward(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    head: &Head,
    upstream: &str,
    fault: Option<Fault>,
) -> bool {
    let Some(mut body) = read_body(reader, head) else {
        return false;
    };
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return false;
    };
    let mut request = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (name, value) in &head.headers {
        if name != "connection" {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    request.push_str("connection: close\r\n\r\n");
    if server.write_all(request.as_bytes()).is_err() {
        return false;
    }
    match fault {
        Some(Fault::CutBody) => {
            let _ = server.write_all(&body[..body.len() / 2]);
            let _ = server.shutdown(Shutdown::Both);
            return false;
        }
        Some(Fault::CorruptBody) => {
            let middle = body.len() / 2;
            if let Some(byte) = body.get_mut(middle) {
                *byte ^= 0xff;
            }
        }
        _ => {}
    }
    if server.write_all(&body).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    if server.read_to_end(&mut answer).is_err() {
        return false;
    }
    match fault {
        Some(Fault::Truncate) => {
            let _ = writer.write_all(&answer[..answer.len() / 2]);
            false
        }
        Some(Fault::ReplaceHeader(name, value)) => {
            let answer = replace_header(&answer, name, &value);
            writer.write_all(&answer).is_ok()
        }
        _ => writer.write_all(&answer).is_ok() && !closes(&answer),
    }
}

/// Whether the server's answer says the connection closes after it (then
/// the client does not send another request on it).
fn closes(answer: &[u8]) -> bool {
    let head = String::from_utf8_lossy(answer);
    let head = head.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .any(|line| line.to_ascii_lowercase().starts_with("connection: close"))
}

fn replace_header(answer: &[u8], name: &str, value: &str) -> Vec<u8> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        let replaced = line
            .split_once(':')
            .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name));
        match replaced {
            Some((key, _)) => out.push_str(&format!("{key}: {value}")),
            None => out.push_str(line),
        }
        out.push_str("\r\n");
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(&answer[split..]);
    bytes
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
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
    Some(Head {
        method,
        target,
        headers,
    })
}

fn read_body(reader: &mut BufReader<TcpStream>, head: &Head) -> Option<Vec<u8>> {
    let mut body = vec![0; head.content_length()];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}
