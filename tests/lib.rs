//! Paths of the test plugins (`tests/guests/*`), compiled to wasm32-wasip2 by
//! this crate's build script, for the integration tests in `all/`.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
