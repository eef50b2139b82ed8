//! The files handed to a call, as handles: read them, hash them, or give
//! them to [`crate::output::append_file`], [`crate::http`] or
//! [`crate::local`] to move their bytes without reading them yourself.

#[cfg(target_arch = "wasm32")]
use crate::__bindings::exporter::wharf::plugin::files as imports;
use crate::{PluginError, RemoteCopy};

/// A file handed to this call. It is only valid during the call.
#[derive(Debug)]
pub struct File {
    #[cfg(target_arch = "wasm32")]
    pub(crate) inner: imports::File,
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) id: u64,
}

impl File {
    /// A handle to file `id` of the [`crate::mock::MockHost`] (native tests
    /// only; on wasm32 only the host creates files).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn mock(id: u64) -> File {
        File { id }
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        #[cfg(target_arch = "wasm32")]
        return self.inner.size();
        #[cfg(not(target_arch = "wasm32"))]
        crate::mock::with(|host| host.size(self.id))
    }

    /// Reads up to `len` bytes (at most 16 MiB) at `offset`; fewer only at
    /// the end of the file.
    pub fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return self.inner.read(offset, len);
        #[cfg(not(target_arch = "wasm32"))]
        crate::mock::with(|host| host.read(self.id, offset, len))
    }

    /// Lower-case hex sha256 of a byte range, computed by the host.
    pub fn sha256(&self, offset: u64, len: u64) -> Result<String, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return self.inner.sha256(offset, len);
        #[cfg(not(target_arch = "wasm32"))]
        crate::mock::with(|host| host.sha256(self.id, offset, len))
    }

    /// CRC-32 (IEEE) of a byte range, computed by the host.
    pub fn crc32(&self, offset: u64, len: u64) -> Result<u32, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return self.inner.crc32(offset, len);
        #[cfg(not(target_arch = "wasm32"))]
        crate::mock::with(|host| host.crc32(self.id, offset, len))
    }
}

/// A tracked file handed to an exporter or an uploader.
#[derive(Debug)]
pub struct FileEntry {
    pub file: File,
    /// Relative to the tracked files, `/`-separated, e.g. `set-1/a.raw`.
    pub name: String,
    pub size: u64,
    /// Lower-case hex sha256 of the content, as indexed.
    pub sha256: String,
    /// capture | export | backup | ...
    pub kind: String,
    /// When wharf first indexed it, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: i64,
    /// Every verified remote copy of it.
    pub remote_copies: Vec<RemoteCopy>,
}

impl FileEntry {
    /// The indexed sha256 when it is one (64 hex digits), the name uploaders
    /// store and verify a file by; otherwise a terminal error naming the file.
    pub fn checked_sha256(&self) -> Result<&str, PluginError> {
        if self.sha256.len() == 64 && self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(&self.sha256)
        } else {
            Err(PluginError::terminal(format!(
                "file {} has no valid sha256 in the index",
                self.name
            )))
        }
    }

    /// An entry for file `id` of the mock host, with its name and size and
    /// the rest empty (native tests only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn mock(id: u64, name: &str, size: u64) -> FileEntry {
        FileEntry {
            file: File::mock(id),
            name: name.to_owned(),
            size,
            sha256: String::new(),
            kind: "capture".to_owned(),
            created_ms: 0,
            modified_ms: 0,
            remote_copies: Vec::new(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl From<imports::FileEntry> for FileEntry {
    fn from(entry: imports::FileEntry) -> Self {
        FileEntry {
            file: File { inner: entry.file },
            name: entry.name,
            size: entry.size,
            sha256: entry.sha256,
            kind: entry.kind,
            created_ms: entry.created_ms,
            modified_ms: entry.modified_ms,
            remote_copies: entry.remote_copies,
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn an_entry_without_a_valid_sha256_is_a_terminal_error_naming_it() {
        let mut entry = FileEntry::mock(1, "set-1/a.raw", 3);
        entry.sha256 = "ab".repeat(32);
        assert_eq!(entry.checked_sha256().ok(), Some("ab".repeat(32).as_str()));
        for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            entry.sha256 = bad.to_owned();
            match entry.checked_sha256() {
                Err(PluginError::Terminal(message)) => {
                    assert_eq!(message, "file set-1/a.raw has no valid sha256 in the index")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
