//! Compiles the bundled plugins (`plugins/*`) to wasm32-wasip2 and embeds
//! them, with their sha256 pins, through `$OUT_DIR/bundled.rs`.

#[path = "build_wasm.rs"]
mod build_wasm;

use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir)
        .parent()
        .expect("host/ lives in the workspace root");
    let guests = build_wasm::build_guests(root, &root.join("plugins"));

    let mut code =
        String::from("/// Plugins compiled into this binary: (name, wasm bytes, sha256).\n");
    code.push_str("pub(crate) const BUNDLED: &[(&str, &[u8], &str)] = &[\n");
    for guest in &guests {
        let bytes = std::fs::read(&guest.wasm).expect("the wasm file was just built");
        let sha = hex::encode(Sha256::digest(&bytes));
        writeln!(
            code,
            "    ({:?}, include_bytes!({:?}), {:?}),",
            guest.package, guest.wasm, sha
        )
        .expect("writing to a String cannot fail");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bundled.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
