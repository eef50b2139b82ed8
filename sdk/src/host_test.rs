//! Runs the plugin through the real wharf host from its own `cargo test`
//! (feature `host-test`, native only), so a call the sandbox refuses fails
//! the test run and not the first production call.
//!
//! [`RealHost::build`] (through [`real_host!`](crate::real_host)) builds the
//! calling crate for `wasm32-wasip2`; [`RealHost::call`] runs one function
//! with `wharf plugin call ... --format json`. `wharf` is `$WHARF` if set,
//! else the `wharf` on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The plugin built as a component, and the `wharf` that runs it.
#[derive(Debug)]
pub struct RealHost {
    wharf: PathBuf,
    wasm: PathBuf,
    scratch: PathBuf,
}

/// How one call through the real host ended: `wharf plugin call`'s JSON.
#[derive(Debug)]
pub struct Call {
    pub json: serde_json::Value,
}

impl Call {
    /// Whether the call succeeded.
    pub fn ok(&self) -> bool {
        self.json["ok"] == true
    }

    /// The call's result; panics with the host's error and the plugin's log
    /// when the call failed.
    pub fn result(&self) -> &serde_json::Value {
        assert!(
            self.ok(),
            "the real wharf host failed the call: {}\nplugin log: {}",
            self.json["error"],
            self.json["log"]
        );
        &self.json["result"]
    }

    /// The error class (`invalid-params`, `transient`, `terminal`) and
    /// message of a failed call.
    pub fn error(&self) -> Option<(&str, &str)> {
        let error = &self.json["error"];
        Some((error["class"].as_str()?, error["message"].as_str()?))
    }
}

/// [`RealHost::build`] for the crate this is written in.
#[macro_export]
macro_rules! real_host {
    () => {
        $crate::host_test::RealHost::build(env!("CARGO_MANIFEST_DIR"), env!("CARGO_PKG_NAME"))
    };
}

impl RealHost {
    /// Builds the crate at `manifest_dir` (package `package`) with
    /// `cargo build --release --target wasm32-wasip2` into the target
    /// directory of the running test, and finds `wharf`. Panics, saying
    /// what to do, when either fails.
    pub fn build(manifest_dir: &str, package: &str) -> RealHost {
        let wharf = std::env::var_os("WHARF").map_or_else(|| PathBuf::from("wharf"), PathBuf::from);
        let found = Command::new(&wharf).arg("--version").output();
        assert!(
            found.as_ref().is_ok_and(|output| output.status.success()),
            "cannot run {}: install wharf (`cargo install --path host` in its repository) \
             or set WHARF=/path/to/wharf",
            wharf.display()
        );
        let target = target_dir();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--release", "--lib", "--target", "wasm32-wasip2"])
            .current_dir(manifest_dir)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo runs: it is running this test");
        assert!(
            built.success(),
            "building {package} for wasm32-wasip2 failed (is the target installed? \
             `rustup target add wasm32-wasip2`)"
        );
        let file = format!("{}.wasm", package.replace('-', "_"));
        let scratch = target.join("wharf-host-test").join(package);
        std::fs::create_dir_all(&scratch).expect("the target directory is writable");
        RealHost {
            wharf,
            wasm: target.join("wasm32-wasip2").join("release").join(file),
            scratch,
        }
    }

    /// The component file that was built.
    pub fn wasm(&self) -> &Path {
        &self.wasm
    }

    /// Writes `bytes` to a scratch file named `name` and returns its path,
    /// to hand to a call with `--file`.
    pub fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.scratch.join(name);
        std::fs::write(&path, bytes).expect("the target directory is writable");
        path.display().to_string()
    }

    /// A new, empty scratch directory named `name` (e.g. for `--local-dir`).
    pub fn dir(&self, name: &str) -> String {
        let path = self.scratch.join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("the target directory is writable");
        path.display().to_string()
    }

    /// Runs `function` (`describe`, `run`, `plan`) with `wharf plugin call`
    /// and `args` (`--param k=v`, `--file PATH`, `--entity`, `--local-dir`,
    /// `--destination`, ...).
    pub fn call(&self, function: &str, args: &[&str]) -> Call {
        // A data directory of its own: nothing of a real deployment is used.
        let data = self.scratch.join("data");
        let output = Command::new(&self.wharf)
            .arg("--data-dir")
            .arg(&data)
            .args(["plugin", "call"])
            .arg(&self.wasm)
            .arg(function)
            .args(args)
            .args(["--format", "json"])
            .output()
            .expect("wharf ran for --version a moment ago");
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            panic!(
                "wharf plugin call {function} did not run the plugin: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        Call { json }
    }
}

/// The target directory of the running test binary (`target/debug/deps/x`),
/// or `$CARGO_TARGET_DIR`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}
