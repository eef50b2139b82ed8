//! Capabilities every plugin has: logging and the clock. (`println!`,
//! `eprintln!` and `std::time` work too: the host routes stdout and stderr
//! to its log and provides WASI's clocks.)

#[cfg(target_arch = "wasm32")]
use crate::__bindings::exporter::wharf::plugin::host as imports;

pub use crate::__bindings::exporter::wharf::plugin::host::Level;

/// Logs a message; the host tags it with the plugin's name.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    imports::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.log(level, message));
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    return imports::now_ms();
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.now_ms)
}
