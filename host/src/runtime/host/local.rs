//! The `local-store` interface: an uploader's access to a `local`
//! destination, a directory the host owns. The host copies the bytes, into a
//! temporary file beside the target, synced and renamed into place, so a key
//! holds either its old content or the whole new range, never a part.
//!
//! Invariant: nothing is written or read outside the destination's root: a
//! key is a relative path of plain names, checked before any file is touched.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Resource;

use super::{CHUNK, GrantedFile, open_range};
use crate::runtime::bindings::{PluginError, local_api};
use crate::runtime::call::{CallState, Fault, transient};

/// Longest key accepted, in bytes.
const MAX_KEY: usize = 1024;

/// A local destination of one call.
#[derive(Debug, Clone)]
pub(crate) struct LocalAccess {
    pub(crate) root: PathBuf,
}

/// The path of `key` under `root`, or why the key is refused.
fn key_path(root: &Path, key: &str) -> Result<PathBuf, PluginError> {
    let refuse = |why: &str| {
        Err(PluginError::InvalidParams(format!(
            "key {key:?} {why}; use a relative path of plain names separated by /"
        )))
    };
    if key.is_empty() || key.len() > MAX_KEY {
        return refuse(&format!("must be 1 to {MAX_KEY} bytes"));
    }
    if key.contains(['\\', '\0']) || key.chars().any(char::is_control) {
        return refuse("contains a backslash, NUL or control character");
    }
    if key.starts_with('/') {
        return refuse("is absolute");
    }
    let mut path = root.to_path_buf();
    for part in key.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return refuse("has an empty, . or .. part");
        }
        if part.starts_with(".wharf-part-") {
            return refuse("uses the host's temporary-file prefix .wharf-part-");
        }
        path.push(part);
    }
    Ok(path)
}

impl CallState {
    fn local_root(&mut self) -> wasmtime::Result<PathBuf> {
        match &self.local {
            Some(local) => Ok(local.root.clone()),
            None => Err(self.trap(Fault::AccessDenied(
                "this call's destination is not a local directory".into(),
            ))),
        }
    }

    /// Copies `len` bytes from `source` into `target` through a temporary
    /// file beside it, checking the deadline between chunks.
    fn place_copy(
        &mut self,
        mut source: File,
        len: u64,
        target: &Path,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let failed =
            |err: io::Error| transient(format!("the host could not store the copy: {err}"));
        let Some(parent) = target.parent() else {
            return Ok(Err(PluginError::InvalidParams(
                "the key names no file".into(),
            )));
        };
        if let Err(err) = std::fs::create_dir_all(parent) {
            return Ok(Err(failed(err)));
        }
        let mut part = match tempfile::Builder::new()
            .prefix(".wharf-part-")
            .tempfile_in(parent)
        {
            Ok(part) => part,
            Err(err) => return Ok(Err(failed(err))),
        };
        let mut left = len;
        let mut buffer = vec![0u8; CHUNK.min(len.max(1)) as usize];
        while left > 0 {
            self.check_deadline()?;
            let want = CHUNK.min(left) as usize;
            if let Err(err) = source.read_exact(&mut buffer[..want]) {
                return Ok(Err(transient(format!("the file cannot be read: {err}"))));
            }
            if let Err(err) = part.write_all(&buffer[..want]) {
                return Ok(Err(failed(err)));
            }
            left -= want as u64;
        }
        self.check_deadline()?;
        if let Err(err) = part.as_file().sync_all() {
            return Ok(Err(failed(err)));
        }
        if let Err(err) = part.persist(target) {
            return Ok(Err(failed(err.error)));
        }
        // The rename is durable once the directory is.
        if let Err(err) = File::open(parent).and_then(|dir| dir.sync_all()) {
            return Ok(Err(failed(err)));
        }
        Ok(Ok(()))
    }
}

impl local_api::Host for CallState {
    fn place(
        &mut self,
        file: Resource<GrantedFile>,
        offset: u64,
        len: u64,
        key: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        self.check_deadline()?;
        let root = self.local_root()?;
        let target = match key_path(&root, &key) {
            Ok(target) => target,
            Err(err) => return Ok(Err(err)),
        };
        let path = self.granted_path(&file)?;
        let source = match open_range(&path, offset, len) {
            Ok(source) => source,
            Err(err) => return Ok(Err(err)),
        };
        self.place_copy(source, len, &target)
    }

    fn stat(&mut self, key: String) -> wasmtime::Result<Result<Option<u64>, PluginError>> {
        self.check_deadline()?;
        let root = self.local_root()?;
        let target = match key_path(&root, &key) {
            Ok(target) => target,
            Err(err) => return Ok(Err(err)),
        };
        Ok(match std::fs::metadata(&target) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(transient(format!("cannot read {key:?}: {err}"))),
        })
    }

    fn sha256(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, PluginError>> {
        self.check_deadline()?;
        let root = self.local_root()?;
        let target = match key_path(&root, &key) {
            Ok(target) => target,
            Err(err) => return Ok(Err(err)),
        };
        let mut stored = match File::open(&target) {
            Ok(stored) => stored,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Ok(None)),
            Err(err) => return Ok(Err(transient(format!("cannot read {key:?}: {err}")))),
        };
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; CHUNK as usize];
        loop {
            self.check_deadline()?;
            match stored.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buffer[..n]),
                Err(err) => return Ok(Err(transient(format!("cannot read {key:?}: {err}")))),
            }
        }
        Ok(Ok(Some(hex::encode(hasher.finalize()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_under_the_root() {
        let root = Path::new("/dest");
        assert_eq!(
            key_path(root, "a/b.bin").unwrap(),
            Path::new("/dest/a/b.bin")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
            "a\0b",
            "a\nb",
            ".wharf-part-x",
        ] {
            assert!(
                matches!(key_path(root, bad), Err(PluginError::InvalidParams(_))),
                "{bad:?}"
            );
        }
        assert!(key_path(root, &"k".repeat(MAX_KEY + 1)).is_err());
    }
}
