//! Compiles the test plugins in `tests/guests/` to wasm32-wasip2 components
//! and exports their paths as constants (`GUEST_<NAME>`).

#[path = "../host/build_wasm.rs"]
mod build_wasm;

use std::fmt::Write;
use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir)
        .parent()
        .expect("tests/ lives in the workspace root");
    let guests = build_wasm::build_guests(root, &root.join("tests/guests"));
    let mut code = String::new();
    for guest in &guests {
        let constant = guest.package.to_uppercase().replace('-', "_");
        writeln!(code, "/// The `{}` test plugin.", guest.package).expect("writing to a String");
        writeln!(code, "pub const {constant}: &str = {:?};", guest.wasm)
            .expect("writing to a String");
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("guests.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
