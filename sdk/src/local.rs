//! For uploaders to a `local` destination: a directory the host owns and
//! writes into. Keys are relative `/`-separated paths of plain names.

#[cfg(target_arch = "wasm32")]
use crate::__bindings::uploader::wharf::plugin::local_store as imports;
use crate::{File, PluginError};

/// Stores `len` bytes at `offset` of `file` under `key`, atomically: the key
/// holds either its old content or the whole range. Replaces what is there.
pub fn place(file: &File, offset: u64, len: u64, key: &str) -> Result<(), PluginError> {
    #[cfg(target_arch = "wasm32")]
    return imports::place(&file.inner, offset, len, key);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.place(file.id, offset, len, key))
}

/// The size of what is stored under `key`, if anything.
pub fn stat(key: &str) -> Result<Option<u64>, PluginError> {
    #[cfg(target_arch = "wasm32")]
    return imports::stat(key);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.stat(key))
}

/// Lower-case hex sha256 of what is stored under `key`, if anything.
pub fn sha256(key: &str) -> Result<Option<String>, PluginError> {
    #[cfg(target_arch = "wasm32")]
    return imports::sha256(key);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.stored_sha256(key))
}
