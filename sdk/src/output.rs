//! An exporter's output: small content it writes itself, and ranges of
//! tracked files the host copies without passing them through the plugin.

#[cfg(target_arch = "wasm32")]
use crate::__bindings::exporter::wharf::plugin::output as imports;
use crate::{File, PluginError};

/// Appends bytes the plugin produced.
pub fn write(bytes: &[u8]) -> Result<(), PluginError> {
    #[cfg(target_arch = "wasm32")]
    return imports::write(bytes);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.write(bytes))
}

/// Appends `len` bytes at `offset` of a file handed to this call; a range
/// past its end is `invalid-params` and appends nothing.
pub fn append_file(file: &File, offset: u64, len: u64) -> Result<(), PluginError> {
    #[cfg(target_arch = "wasm32")]
    return imports::append_file(&file.inner, offset, len);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.append_file(file.id, offset, len))
}
