//! Compiles guest crates of this workspace (bundled plugins, test plugins) to
//! `wasm32-wasip2` components from a build script.
//!
//! Shared by `host/build.rs` and `tests/build.rs` through `#[path]`. The guests
//! are built by a nested cargo with its own target directory (so it never
//! waits on the lock of the outer build) and with the `wasm-guest` profile.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm-guest";

/// A compiled guest: its package name and the path of its component.
pub(crate) struct Guest {
    pub(crate) package: String,
    pub(crate) wasm: PathBuf,
}

/// Builds every crate directly under `guests_dir` and returns their components.
pub(crate) fn build_guests(workspace_root: &Path, guests_dir: &Path) -> Vec<Guest> {
    println!("cargo:rerun-if-changed={}", guests_dir.display());
    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join("sdk").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join("Cargo.lock").display()
    );
    // The `wasm-guest` profile lives in the workspace manifest.
    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join("Cargo.toml").display()
    );
    let packages = guest_packages(guests_dir);
    if packages.is_empty() {
        return Vec::new();
    }
    ensure_wasm_target();

    let target_dir = nested_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace_root.join("Cargo.toml"))
        .args(["--target", TARGET, "--profile", PROFILE])
        .env("CARGO_TARGET_DIR", &target_dir)
        // Flags meant for the outer (native) build must not leak into the wasm one.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    for package in &packages {
        command.args(["-p", package]);
    }
    let status = command
        .status()
        .unwrap_or_else(|err| panic!("could not run cargo to build the wasm plugins: {err}"));
    assert!(
        status.success(),
        "building the wasm plugins in {} failed; see the errors above",
        guests_dir.display()
    );

    packages
        .into_iter()
        .map(|package| {
            let wasm = target_dir
                .join(TARGET)
                .join(PROFILE)
                .join(format!("{}.wasm", package.replace('-', "_")));
            assert!(wasm.exists(), "cargo did not produce {}", wasm.display());
            Guest { package, wasm }
        })
        .collect()
}

/// Package names of the crates directly under `dir`, sorted.
fn guest_packages(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut packages: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("Cargo.toml")).ok())
        .filter_map(|manifest| {
            manifest.lines().find_map(|line| {
                let value = line.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
                Some(value.trim().trim_matches('"').to_owned())
            })
        })
        .collect();
    packages.sort();
    packages
}

/// `<target>/wasm-guests`, shared by every build script and profile; falls
/// back to `OUT_DIR` when the layout is not cargo's usual one.
fn nested_target_dir() -> PathBuf {
    let out_dir =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    match out_dir.ancestors().nth(4) {
        Some(target) if target.join("CACHEDIR.TAG").exists() || target.ends_with("target") => {
            target.join("wasm-guests")
        }
        _ => out_dir.join("wasm-guests"),
    }
}

/// rustup does not add the toolchain file's targets to an already installed
/// toolchain, so add it here rather than fail with "can't find crate for `core`".
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if sysroot.is_some_and(|sysroot| sysroot.join("lib/rustlib").join(TARGET).exists()) {
        return;
    }
    println!("cargo:warning=the {TARGET} target is missing; running `rustup target add {TARGET}`");
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    match rustup.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`rustup target add {TARGET}` failed ({status}); install the target by hand and rebuild"
        ),
        Err(err) => panic!(
            "the {TARGET} target is not installed and rustup could not be run ({err}); \
             install the target for this toolchain (see rust-toolchain.toml) and rebuild"
        ),
    }
}
