//! The `output` interface: an exporter's result, written by the host into a
//! file of the host's choosing, with appended file ranges copied by the host.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use wasmtime::component::Resource;

use super::{CHUNK, GrantedFile, open_range};
use crate::runtime::bindings::{PluginError, output_api};
use crate::runtime::call::{CallState, Fault, transient};

/// The output file of one export call, with its size limit.
pub(crate) struct Output {
    file: BufWriter<File>,
    written: u64,
    limit: u64,
}

impl Output {
    /// Creates `path`, which must not exist yet.
    pub(crate) fn create(path: &Path, limit: u64) -> io::Result<Output> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Output {
            file: BufWriter::new(file),
            written: 0,
            limit,
        })
    }

    /// Flushes and fsyncs; the caller renames the file into place.
    pub(crate) fn finish(self) -> io::Result<()> {
        let file = self
            .file
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()
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
        Ok(output.file.write_all(&bytes).map_err(write_failed))
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
            if let Err(err) = output.file.flush() {
                return Ok(Err(write_failed(err)));
            }
            // File to file: the kernel copies (copy_file_range) without the
            // bytes passing through user space, let alone the plugin.
            match io::copy(&mut (&mut source).take(CHUNK * 8), output.file.get_mut()) {
                Ok(0) => break,
                Ok(_) => {}
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
