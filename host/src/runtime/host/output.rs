//! The `output` interface: an exporter's result, written by the host into a
//! file of the host's choosing, with appended file ranges copied by the host.
//! The output is hashed while it is written, on a thread of its own that
//! reads back what the writer has flushed (from the page cache), so its
//! sha256 is ready when the copy ends instead of costing a second pass.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};
use wasmtime::component::Resource;

use super::{CHUNK, GrantedFile, open_range};
use crate::runtime::bindings::{PluginError, output_api};
use crate::runtime::call::{CallState, Fault, transient};

/// The output file of one export call, with its size limit.
pub(crate) struct Output {
    file: BufWriter<File>,
    /// Bytes reserved against `limit`.
    written: u64,
    limit: u64,
    /// Bytes handed to `file` (buffered or copied).
    position: u64,
    hasher: TailHasher,
}

/// What an output holds once finished: its size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

impl Output {
    /// Creates `path`, which must not exist yet.
    pub(crate) fn create(path: &Path, limit: u64) -> io::Result<Output> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        let hasher = TailHasher::start(File::open(path)?)?;
        Ok(Output {
            file: BufWriter::new(file),
            written: 0,
            limit,
            position: 0,
            hasher,
        })
    }

    /// Flushes the buffered bytes, so the hasher may read them.
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.hasher.grown(self.position);
        Ok(())
    }

    /// Flushes and fsyncs (while the hasher reads the last bytes); the
    /// caller renames the file into place.
    pub(crate) fn finish(mut self) -> io::Result<Written> {
        self.flush()?;
        self.hasher.ended();
        self.file.get_ref().sync_all()?;
        let written = self.hasher.result()?;
        if written.size != self.position {
            return Err(io::Error::other(format!(
                "the output is {} bytes where {} were written",
                written.size, self.position
            )));
        }
        Ok(written)
    }
}

/// The hashing thread of an output and what it is told.
struct TailHasher {
    tail: Arc<Tail>,
    thread: Option<JoinHandle<io::Result<Written>>>,
}

#[derive(Default)]
struct Tail {
    state: Mutex<TailState>,
    changed: Condvar,
}

#[derive(Default)]
struct TailState {
    /// Bytes in the file the hasher may read.
    flushed: u64,
    /// No more bytes come.
    ended: bool,
    /// The output is dropped unfinished: stop.
    abandoned: bool,
}

impl Tail {
    fn lock(&self) -> MutexGuard<'_, TailState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TailHasher {
    fn start(file: File) -> io::Result<TailHasher> {
        let tail = Arc::new(Tail::default());
        let shared = tail.clone();
        let thread = std::thread::Builder::new()
            .name("wharf-output-hash".into())
            .spawn(move || hash_tail(&file, &shared))?;
        Ok(TailHasher {
            tail,
            thread: Some(thread),
        })
    }

    /// The file now holds `flushed` bytes.
    fn grown(&self, flushed: u64) {
        self.tail.lock().flushed = flushed;
        self.tail.changed.notify_one();
    }

    fn ended(&self) {
        self.tail.lock().ended = true;
        self.tail.changed.notify_one();
    }

    /// The size and sha256, once [`TailHasher::ended`] was called.
    fn result(&mut self) -> io::Result<Written> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the output's hashing thread panicked")),
            None => Err(io::Error::other("the output was hashed already")),
        }
    }
}

impl Drop for TailHasher {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.tail.lock().abandoned = true;
            self.tail.changed.notify_one();
            let _ = thread.join();
        }
    }
}

/// Reads `file` from its start as it grows and hashes it, until the writer
/// says it ended (or dropped it).
fn hash_tail(file: &File, tail: &Tail) -> io::Result<Written> {
    let mut hasher = Sha256::new();
    // 64 KiB reads: larger buffers fall out of L2 between the kernel's copy
    // and the hash (measured for ingest, BENCHMARKS.md).
    let mut buffer = vec![0u8; 64 << 10];
    let mut hashed = 0u64;
    loop {
        let (flushed, ended) = {
            let mut state = tail.lock();
            while state.flushed == hashed && !state.ended && !state.abandoned {
                state = tail
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.abandoned {
                return Err(io::Error::other("the output was abandoned"));
            }
            (state.flushed, state.ended)
        };
        while hashed < flushed {
            if tail.lock().abandoned {
                return Err(io::Error::other("the output was abandoned"));
            }
            let want =
                usize::try_from(flushed - hashed).map_or(buffer.len(), |n| n.min(buffer.len()));
            let n = file.read_at(&mut buffer[..want], hashed)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the output became shorter while it was written",
                ));
            }
            hasher.update(&buffer[..n]);
            hashed += n as u64;
        }
        if ended {
            return Ok(Written {
                size: hashed,
                sha256: hex::encode(hasher.finalize()),
            });
        }
    }
}

impl CallState {
    /// Reserves `len` bytes of output, trapping when the limit would be passed.
    fn reserve_output(&mut self, len: u64) -> wasmtime::Result<()> {
        let over = match &self.output {
            Some(output) => output.written.saturating_add(len) > output.limit,
            None => false,
        };
        if over {
            return Err(self.trap(Fault::OutputLimit));
        }
        if let Some(output) = &mut self.output {
            output.written += len;
        }
        Ok(())
    }
}

fn write_failed(err: io::Error) -> PluginError {
    transient(format!("the host could not write the output: {err}"))
}

impl output_api::Host for CallState {
    fn write(&mut self, bytes: Vec<u8>) -> wasmtime::Result<Result<(), PluginError>> {
        self.check_deadline()?;
        if self.output.is_none() {
            return Err(self.trap(Fault::AccessDenied("this call has no output".into())));
        }
        self.reserve_output(bytes.len() as u64)?;
        let Some(output) = &mut self.output else {
            return Ok(Ok(()));
        };
        if let Err(err) = output.file.write_all(&bytes) {
            return Ok(Err(write_failed(err)));
        }
        output.position += bytes.len() as u64;
        Ok(Ok(()))
    }

    fn append_file(
        &mut self,
        file: Resource<GrantedFile>,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        self.check_deadline()?;
        if self.output.is_none() {
            return Err(self.trap(Fault::AccessDenied("this call has no output".into())));
        }
        let path = self.granted_path(&file)?;
        let source = match open_range(&path, offset, len) {
            Ok(source) => source,
            Err(err) => return Ok(Err(err)),
        };
        self.reserve_output(len)?;
        let mut source = source.take(len);
        loop {
            self.check_deadline()?;
            let Some(output) = &mut self.output else {
                return Ok(Ok(()));
            };
            if let Err(err) = output.flush() {
                return Ok(Err(write_failed(err)));
            }
            // File to file: the kernel copies (copy_file_range) without the
            // bytes passing through user space, let alone the plugin.
            match io::copy(&mut (&mut source).take(CHUNK * 8), output.file.get_mut()) {
                Ok(0) => break,
                Ok(copied) => output.position += copied,
                Err(err) => return Ok(Err(write_failed(err))),
            }
        }
        if source.limit() > 0 {
            return Ok(Err(transient(
                "the file became shorter while it was being appended".into(),
            )));
        }
        Ok(Ok(()))
    }
}
