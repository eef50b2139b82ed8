//! The harmless part of WASI 0.2 (host/wit/sandbox.wit): wall and monotonic
//! clocks, secure and insecure randomness, and stdout/stderr, whose lines go
//! to the host log through the call's log budget. Streams never fail: what is
//! over the budget is dropped and counted, so `println!` cannot trap a plugin.
//!
//! Invariant: nothing here reaches the filesystem, the network or the
//! environment; sleeping on a pollable counts against the call's deadline.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::Resource;

use crate::runtime::bindings::Level;
use crate::runtime::bindings::sandbox::wasi::cli::{stderr, stdout};
use crate::runtime::bindings::sandbox::wasi::clocks::{monotonic_clock, wall_clock};
use crate::runtime::bindings::sandbox::wasi::io::{error, poll, streams};
use crate::runtime::bindings::sandbox::wasi::random::{insecure, insecure_seed, random};
use crate::runtime::call::{CallState, Fault};

use super::log::MAX_LINE;

/// Most random bytes one request may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// stdout or stderr of a plugin: a line buffer feeding the log.
#[derive(Debug)]
#[allow(unreachable_pub)] // `bindgen!` re-exports it; so the three below.
pub struct LogStream {
    level: Level,
    pending: Vec<u8>,
}

/// A pollable that is ready at `at` (now, when `None`).
#[derive(Debug)]
#[allow(unreachable_pub)]
pub struct ReadyPollable {
    at: Option<Instant>,
}

/// Input streams exist in the interface but the host never creates one
/// (stdin is denied).
#[derive(Debug)]
#[allow(unreachable_pub)]
pub enum NoInput {}

/// Stream errors exist in the interface but the host never creates one.
#[derive(Debug)]
#[allow(unreachable_pub)]
pub enum NoError {}

impl CallState {
    /// Logs the complete lines in a stream's buffer (all of it when
    /// `flush_partial`), keeping a partial last line for the next write.
    fn drain_lines(
        &mut self,
        stream: &Resource<LogStream>,
        flush_partial: bool,
    ) -> wasmtime::Result<()> {
        let stream = self.table.get_mut(stream)?;
        let level = stream.level;
        let mut lines = Vec::new();
        while let Some(newline) = stream.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = stream.pending.drain(..=newline).collect();
            lines.push(line);
        }
        // A line longer than the log keeps is cut now rather than buffered.
        if (flush_partial || stream.pending.len() > MAX_LINE) && !stream.pending.is_empty() {
            lines.push(std::mem::take(&mut stream.pending));
        }
        for line in lines {
            let text = String::from_utf8_lossy(&line);
            self.log
                .emit(&self.plugin, level, text.trim_end_matches(['\n', '\r']));
        }
        Ok(())
    }

    fn stream_write(&mut self, stream: &Resource<LogStream>, bytes: &[u8]) -> wasmtime::Result<()> {
        self.check_deadline()?;
        self.table.get_mut(stream)?.pending.extend_from_slice(bytes);
        self.drain_lines(stream, false)
    }

    fn new_stream(&mut self, level: Level) -> wasmtime::Result<Resource<LogStream>> {
        Ok(self.table.push(LogStream {
            level,
            pending: Vec::new(),
        })?)
    }

    fn new_pollable(&mut self, at: Option<Instant>) -> wasmtime::Result<Resource<ReadyPollable>> {
        Ok(self.table.push(ReadyPollable { at })?)
    }

    /// Sleeps until `at`, but never past the call's deadline.
    fn sleep_until(&mut self, at: Option<Instant>) -> wasmtime::Result<()> {
        if let Some(at) = at {
            let until = at.min(self.deadline);
            let now = Instant::now();
            if until > now {
                std::thread::sleep(until - now);
            }
        }
        self.check_deadline()
    }
}

impl stdout::Host for CallState {
    fn get_stdout(&mut self) -> wasmtime::Result<Resource<LogStream>> {
        self.new_stream(Level::Info)
    }
}

impl stderr::Host for CallState {
    fn get_stderr(&mut self) -> wasmtime::Result<Resource<LogStream>> {
        self.new_stream(Level::Warn)
    }
}

impl streams::Host for CallState {}

impl streams::HostOutputStream for CallState {
    fn check_write(
        &mut self,
        _: Resource<LogStream>,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        Ok(Ok(64 << 10))
    }

    fn write(
        &mut self,
        stream: Resource<LogStream>,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.stream_write(&stream, &contents)?;
        Ok(Ok(()))
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<LogStream>,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.stream_write(&stream, &contents)?;
        Ok(Ok(()))
    }

    fn flush(
        &mut self,
        _: Resource<LogStream>,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        Ok(Ok(()))
    }

    fn blocking_flush(
        &mut self,
        _: Resource<LogStream>,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        Ok(Ok(()))
    }

    fn subscribe(&mut self, _: Resource<LogStream>) -> wasmtime::Result<Resource<ReadyPollable>> {
        self.new_pollable(None)
    }

    fn write_zeroes(
        &mut self,
        stream: Resource<LogStream>,
        len: u64,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        let len = usize::try_from(len.min(64 << 10)).unwrap_or(0);
        self.stream_write(&stream, &vec![0; len])?;
        Ok(Ok(()))
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<LogStream>,
        len: u64,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.write_zeroes(stream, len)
    }

    fn splice(
        &mut self,
        _: Resource<LogStream>,
        source: Resource<NoInput>,
        _: u64,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        // No input stream is ever handed out, so there is none to splice.
        match *self.table.get(&source)? {}
    }

    fn blocking_splice(
        &mut self,
        output: Resource<LogStream>,
        source: Resource<NoInput>,
        len: u64,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        self.splice(output, source, len)
    }

    fn drop(&mut self, stream: Resource<LogStream>) -> wasmtime::Result<()> {
        self.drain_lines(&stream, true)?;
        self.table.delete(stream)?;
        Ok(())
    }
}

impl streams::HostInputStream for CallState {
    fn read(
        &mut self,
        stream: Resource<NoInput>,
        _: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, streams::StreamError>> {
        match *self.table.get(&stream)? {}
    }

    fn blocking_read(
        &mut self,
        stream: Resource<NoInput>,
        _: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, streams::StreamError>> {
        match *self.table.get(&stream)? {}
    }

    fn skip(
        &mut self,
        stream: Resource<NoInput>,
        _: u64,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        match *self.table.get(&stream)? {}
    }

    fn blocking_skip(
        &mut self,
        stream: Resource<NoInput>,
        _: u64,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        match *self.table.get(&stream)? {}
    }

    fn subscribe(
        &mut self,
        stream: Resource<NoInput>,
    ) -> wasmtime::Result<Resource<ReadyPollable>> {
        match *self.table.get(&stream)? {}
    }

    fn drop(&mut self, stream: Resource<NoInput>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl error::Host for CallState {}

impl error::HostError for CallState {
    fn to_debug_string(&mut self, error: Resource<NoError>) -> wasmtime::Result<String> {
        match *self.table.get(&error)? {}
    }

    fn drop(&mut self, error: Resource<NoError>) -> wasmtime::Result<()> {
        self.table.delete(error)?;
        Ok(())
    }
}

impl poll::Host for CallState {
    fn poll(&mut self, pollables: Vec<Resource<ReadyPollable>>) -> wasmtime::Result<Vec<u32>> {
        if pollables.is_empty() {
            return Err(self.trap(Fault::Trap("poll of an empty list".into())));
        }
        let mut earliest: Option<Instant> = None;
        for pollable in &pollables {
            match self.table.get(pollable)?.at {
                None => {
                    earliest = None;
                    break;
                }
                Some(at) => earliest = Some(earliest.map_or(at, |e| e.min(at))),
            }
        }
        self.sleep_until(earliest)?;
        let now = Instant::now();
        let mut ready = Vec::new();
        for (index, pollable) in pollables.iter().enumerate() {
            if self.table.get(pollable)?.at.is_none_or(|at| at <= now) {
                ready.push(index as u32);
            }
        }
        Ok(ready)
    }
}

impl poll::HostPollable for CallState {
    fn ready(&mut self, pollable: Resource<ReadyPollable>) -> wasmtime::Result<bool> {
        Ok(self
            .table
            .get(&pollable)?
            .at
            .is_none_or(|at| at <= Instant::now()))
    }

    fn block(&mut self, pollable: Resource<ReadyPollable>) -> wasmtime::Result<()> {
        let at = self.table.get(&pollable)?.at;
        self.sleep_until(at)
    }

    fn drop(&mut self, pollable: Resource<ReadyPollable>) -> wasmtime::Result<()> {
        self.table.delete(pollable)?;
        Ok(())
    }
}

impl wall_clock::Host for CallState {
    fn now(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(wall_clock::Datetime {
            seconds: since.as_secs(),
            nanoseconds: since.subsec_nanos(),
        })
    }

    fn resolution(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        Ok(wall_clock::Datetime {
            seconds: 0,
            nanoseconds: 1,
        })
    }
}

impl monotonic_clock::Host for CallState {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.started.elapsed().as_nanos() as u64)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<ReadyPollable>> {
        let at = self.started + Duration::from_nanos(when);
        self.new_pollable(Some(at))
    }

    fn subscribe_duration(&mut self, when: u64) -> wasmtime::Result<Resource<ReadyPollable>> {
        let at = Instant::now().checked_add(Duration::from_nanos(when));
        // Past the end of time: ready at the call's deadline, which traps.
        self.new_pollable(Some(at.unwrap_or(self.deadline)))
    }
}

impl CallState {
    fn random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM_BYTES {
            return Err(self.trap(Fault::Trap(format!(
                "asked for {len} random bytes; at most {MAX_RANDOM_BYTES} per request"
            ))));
        }
        let mut bytes = vec![0u8; len as usize];
        if let Err(err) = getrandom::fill(&mut bytes) {
            return Err(self.trap(Fault::Host(format!("the host has no randomness: {err}"))));
        }
        Ok(bytes)
    }
}

impl random::Host for CallState {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.random_bytes(len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        let bytes = self.random_bytes(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().unwrap_or_default()))
    }
}

impl insecure::Host for CallState {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.random_bytes(len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        random::Host::get_random_u64(self)
    }
}

impl insecure_seed::Host for CallState {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        let a = random::Host::get_random_u64(self)?;
        let b = random::Host::get_random_u64(self)?;
        Ok((a, b))
    }
}
