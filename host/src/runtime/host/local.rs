//! The `local-store` interface: an uploader's access to a `local`
//! destination, a directory the host owns. The host copies the bytes, into a
//! temporary file beside the target, synced and renamed into place, so a key
//! holds either its old content or the whole new range, never a part. The
//! temporary file is named after the key and locked while it is written, so
//! the one a killed copy left behind is taken over by the next copy to that
//! key (the retry) instead of staying in the destination for good.
//!
//! Invariant: nothing is written or read outside the destination's root: a
//! key is a relative path of plain names, checked before any file is touched.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
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

/// Where a copy is written before it is renamed into place.
struct Part {
    path: PathBuf,
    file: File,
    /// Renamed into place: nothing to remove.
    placed: bool,
}

impl Part {
    /// `.wharf-part-` and a hash of the target's name, beside the target,
    /// locked (`flock`, released by the kernel when its holder dies): a part
    /// nobody holds is a killed copy's, taken over and emptied. When a live
    /// copy holds it (two files with one content-addressed key), a name of
    /// its own.
    fn open(target: &Path) -> io::Result<Part> {
        let parent = target.parent().unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map_or(&[][..], |name| name.as_encoded_bytes());
        let hash = hex::encode(&Sha256::digest(name)[..8]);
        let path = parent.join(format!(".wharf-part-{hash}"));
        // Not truncated until locked: a live copy may be writing it.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let (path, file) = if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            file.set_len(0)?;
            (path, file)
        } else {
            let (file, path) = tempfile::Builder::new()
                .prefix(".wharf-part-")
                .tempfile_in(parent)?
                .keep()
                .map_err(|err| err.error)?;
            flock(&file, FlockOperation::NonBlockingLockExclusive)?;
            (path, file)
        };
        Ok(Part {
            path,
            file,
            placed: false,
        })
    }

    /// Syncs the copy and renames it to `target`.
    fn place(mut self, target: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.path, target)?;
        self.placed = true;
        Ok(())
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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
        let mut part = match Part::open(target) {
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
            if let Err(err) = part.file.write_all(&buffer[..want]) {
                return Ok(Err(failed(err)));
            }
            left -= want as u64;
        }
        self.check_deadline()?;
        if let Err(err) = part.place(target) {
            return Ok(Err(failed(err)));
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

    fn parts(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(".wharf-part-"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_killed_copys_part_is_taken_over_by_the_next_copy_to_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.bin");
        // A copy killed half-way: its part stays, and the kernel releases
        // its lock (closed without the removal a failed copy does).
        let mut killed = Part::open(&target).unwrap();
        let leftover = killed.path.clone();
        killed.file.write_all(b"half of it").unwrap();
        killed.placed = true;
        drop(killed);
        assert_eq!(parts(dir.path()).len(), 1);
        let mut retry = Part::open(&target).unwrap();
        assert_eq!(retry.path, leftover, "the same part, taken over");
        assert_eq!(std::fs::metadata(&leftover).unwrap().len(), 0, "emptied");
        retry.file.write_all(b"whole").unwrap();
        retry.place(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        assert!(parts(dir.path()).is_empty(), "{:?}", parts(dir.path()));
    }

    #[test]
    fn a_live_copy_to_the_same_key_gets_a_part_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("same");
        let first = Part::open(&target).unwrap();
        let second = Part::open(&target).unwrap();
        assert_ne!(first.path, second.path);
        assert_eq!(parts(dir.path()).len(), 2);
        // A copy that fails leaves nothing.
        drop(first);
        drop(second);
        assert!(parts(dir.path()).is_empty());
    }

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
