//! The on-disk cache of compiled plugins.
//!
//! Entries are keyed by the wasm's sha256 and the engine's compatibility hash
//! (wasmtime version and every setting that affects code generation), so an
//! engine upgrade never loads a stale artifact. Deserializing runs the
//! artifact as native code, so each entry's own sha256 is written beside it
//! when wharf creates it and checked before every load; a missing, corrupt or
//! mismatched entry is a cache miss that recompiles, never a failure.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    /// Not cached yet, or the entry was unusable; compiled and stored.
    Miss,
    Disabled,
}

/// Compiles `wasm`, or loads it from `cache_dir` when a valid entry exists.
pub(crate) fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    wasm_sha256: &str,
    cache_dir: Option<&Path>,
) -> Result<(Component, CacheOutcome), String> {
    let Some(dir) = cache_dir else {
        return compile(engine, wasm).map(|c| (c, CacheOutcome::Disabled));
    };
    let artifact = dir.join(format!("{wasm_sha256}-{}.cwasm", engine_key(engine)));
    match load_verified(engine, &artifact) {
        Ok(component) => return Ok((component, CacheOutcome::Hit)),
        Err(reason) if artifact.exists() => {
            tracing::warn!(artifact = %artifact.display(), reason, "ignoring unusable compiled plugin; recompiling");
        }
        Err(_) => {}
    }
    let component = compile(engine, wasm)?;
    let stored = component
        .serialize()
        .map_err(|err| err.to_string())
        .and_then(|bytes| store(dir, &artifact, &bytes).map_err(|err| err.to_string()));
    if let Err(err) = stored {
        tracing::warn!(dir = %dir.display(), error = %err, "could not cache a compiled plugin");
    }
    Ok((component, CacheOutcome::Miss))
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component, String> {
    Component::new(engine, wasm).map_err(|err| format!("it is not a valid component: {err:#}"))
}

/// A short, stable hex key of everything that makes an artifact loadable.
fn engine_key(engine: &Engine) -> String {
    // SipHash with fixed keys: stable across runs; a change between Rust
    // releases only costs a recompilation.
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn sidecar(artifact: &Path) -> PathBuf {
    artifact.with_extension("cwasm.sha256")
}

/// The single place that deserializes an artifact from disk.
fn load_verified(engine: &Engine, artifact: &Path) -> Result<Component, String> {
    let expected =
        fs::read_to_string(sidecar(artifact)).map_err(|err| format!("no checksum: {err}"))?;
    let bytes = fs::read(artifact).map_err(|err| format!("unreadable: {err}"))?;
    let found = hex::encode(Sha256::digest(&bytes));
    if found != expected.trim() {
        return Err(format!(
            "checksum mismatch: recorded {}, found {found}",
            expected.trim()
        ));
    }
    // SAFETY: deserializing trusts the bytes to be an artifact this engine
    // produced. They are: wharf wrote them with `precompile_component`,
    // recorded their sha256 at the same time in a directory only this user
    // can write (0700), and the sha256 was checked just above. wasmtime also
    // rejects artifacts from an incompatible engine on its own.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &bytes) };
    component.map_err(|err| format!("rejected by the engine: {err:#}"))
}

fn store(dir: &Path, artifact: &Path, serialized: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    write_atomically(artifact, serialized)?;
    write_atomically(
        &sidecar(artifact),
        hex::encode(Sha256::digest(serialized)).as_bytes(),
    )
}

/// Creates `dir` (and parents) readable and writable by this user only.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Write to a unique temporary name, fsync, rename: readers see the old
/// entry or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{unique}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}
