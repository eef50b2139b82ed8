//! Paths of the test plugins (`tests/guests/*`), compiled to wasm32-wasip2 by
//! this crate's build script, for the integration tests in `all/`.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The modes of the `hostile` test exporter, from the list the plugin itself
/// checks: each needs an expected outcome in the sandbox tests.
pub mod hostile {
    include!("guests/hostile/src/modes.rs");
}

/// The modes of the `hostile-retention` test plugin, from the list the plugin
/// itself checks: each needs an expected outcome in the contract tests.
pub mod hostile_retention {
    include!("guests/hostile-retention/src/modes.rs");
}
