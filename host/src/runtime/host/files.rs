//! The `files` interface: `file` handles to the files handed to a call, with
//! reads and hashes the host computes. A handle is a resource of the call's
//! store, so it cannot name a file of another call or outlive its own.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::component::Resource;

use super::CHUNK;
use crate::runtime::bindings::{PluginError, files_api};
use crate::runtime::call::{CallState, transient};

/// Largest single `read`; plugins read big files in ranges.
const MAX_READ: u32 = 16 << 20;

/// What a `file` handle stands for: a path on the host the plugin never sees.
#[derive(Debug)]
#[allow(unreachable_pub)] // `bindgen!` re-exports it as the `file` resource.
pub struct GrantedFile {
    pub(crate) path: PathBuf,
}

impl CallState {
    /// The path behind a handle of this call.
    pub(crate) fn granted_path(&self, file: &Resource<GrantedFile>) -> wasmtime::Result<PathBuf> {
        Ok(self.table.get(file)?.path.clone())
    }
}

/// Opens a byte range of a granted file, positioned at `offset`. A range
/// past the end of the file is the plugin's mistake.
pub(crate) fn open_range(
    path: &std::path::Path,
    offset: u64,
    len: u64,
) -> Result<File, PluginError> {
    let mut handle = File::open(path).map_err(|err| transient(format!("cannot open: {err}")))?;
    let size = handle
        .metadata()
        .map_err(|err| transient(format!("cannot read: {err}")))?
        .len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(PluginError::InvalidParams(format!(
            "range {offset}+{len} is past the end of the file ({size} bytes)"
        )));
    }
    handle
        .seek(SeekFrom::Start(offset))
        .map_err(|err| transient(format!("cannot read: {err}")))?;
    Ok(handle)
}

impl files_api::HostFile for CallState {
    fn size(&mut self, file: Resource<GrantedFile>) -> wasmtime::Result<u64> {
        self.check_deadline()?;
        let path = self.granted_path(&file)?;
        // A file that vanished reads as empty; reads then fail with a reason.
        Ok(std::fs::metadata(path).map_or(0, |meta| meta.len()))
    }

    fn read(
        &mut self,
        file: Resource<GrantedFile>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        self.check_deadline()?;
        if len > MAX_READ {
            return Ok(Err(PluginError::InvalidParams(format!(
                "read of {len} bytes: read at most {MAX_READ} bytes per call"
            ))));
        }
        let path = self.granted_path(&file)?;
        let size = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(err) => return Ok(Err(transient(format!("cannot read: {err}")))),
        };
        let len = u64::from(len).min(size.saturating_sub(offset));
        let handle = match open_range(&path, offset.min(size), len) {
            Ok(handle) => handle,
            Err(err) => return Ok(Err(err)),
        };
        let mut bytes = Vec::with_capacity(len as usize);
        Ok(handle
            .take(len)
            .read_to_end(&mut bytes)
            .map(|_| bytes)
            .map_err(|err| transient(format!("cannot read: {err}"))))
    }

    fn sha256(
        &mut self,
        file: Resource<GrantedFile>,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<String, PluginError>> {
        let mut hasher = Sha256::new();
        Ok(self
            .digest_range(&file, offset, len, |chunk| hasher.update(chunk))?
            .map(|()| hex::encode(hasher.finalize())))
    }

    fn crc32(
        &mut self,
        file: Resource<GrantedFile>,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<u32, PluginError>> {
        let mut hasher = crc32fast::Hasher::new();
        Ok(self
            .digest_range(&file, offset, len, |chunk| hasher.update(chunk))?
            .map(|()| hasher.finalize()))
    }

    fn drop(&mut self, file: Resource<GrantedFile>) -> wasmtime::Result<()> {
        self.table.delete(file)?;
        Ok(())
    }
}

impl files_api::Host for CallState {}

impl CallState {
    /// Feeds a granted range to `update` chunk by chunk, checking the
    /// deadline between chunks.
    fn digest_range(
        &mut self,
        file: &Resource<GrantedFile>,
        offset: u64,
        len: u64,
        mut update: impl FnMut(&[u8]),
    ) -> wasmtime::Result<Result<(), PluginError>> {
        self.check_deadline()?;
        let path = self.granted_path(file)?;
        let mut handle = match open_range(&path, offset, len) {
            Ok(handle) => handle,
            Err(err) => return Ok(Err(err)),
        };
        let mut buffer = vec![0u8; CHUNK.min(len) as usize];
        let mut left = len;
        while left > 0 {
            self.check_deadline()?;
            let want = CHUNK.min(left) as usize;
            if let Err(err) = handle.read_exact(&mut buffer[..want]) {
                return Ok(Err(transient(format!("cannot read: {err}"))));
            }
            update(&buffer[..want]);
            left -= want as u64;
        }
        Ok(Ok(()))
    }
}
