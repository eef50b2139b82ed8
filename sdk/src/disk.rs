//! For retention policies: the space of the filesystem the data lives on.

#[cfg(target_arch = "wasm32")]
use crate::__bindings::retention::wharf::plugin::disk as imports;

pub use crate::__bindings::retention::wharf::plugin::disk::DiskSpace;

/// Total and free bytes of the data directory's filesystem.
pub fn space() -> DiskSpace {
    #[cfg(target_arch = "wasm32")]
    return imports::space();
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.disk)
}
