//! Plugin manifests: one `NAME.toml` per plugin in the plugins directory,
//! saying where its wasm is, the sha256 it is pinned to, what world it must
//! implement, its limits and the hosts it may reach.
//!
//! ```toml
//! wasm = "my-exporter.wasm"   # relative to this file
//! sha256 = "9f86d08…"          # required: the plugin is not loaded otherwise
//! world = "exporter"          # optional: exporter | retention | uploader
//! allowed_hosts = ["127.0.0.1:9000"]
//! [limits]                    # optional, each key too
//! memory_bytes = 67108864
//! timeout_ms = 30000
//! output_bytes = 1073741824
//! http_response_bytes = 1048576
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::runtime::{Limits, PluginSource, World, validate_limits};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    wasm: PathBuf,
    sha256: String,
    world: Option<World>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    limits: LimitOverrides,
}

/// Per-plugin limits; each one left out keeps the configured default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitOverrides {
    memory_bytes: Option<u64>,
    timeout_ms: Option<u64>,
    output_bytes: Option<u64>,
    http_response_bytes: Option<u64>,
}

/// A manifest that could not be turned into a plugin source.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ManifestError {
    pub path: PathBuf,
    pub reason: String,
}

/// What a plugins directory holds.
#[derive(Debug, Default)]
pub struct DirScan {
    pub sources: Vec<PluginSource>,
    pub errors: Vec<ManifestError>,
    /// `.wasm` files that no manifest names.
    pub unreferenced: Vec<PathBuf>,
}

/// Reads every `*.toml` manifest in `dir`, in name order. A missing directory
/// has no plugins; a bad manifest is reported and skipped.
pub fn read_plugin_dir(dir: &Path, defaults: Limits, max_memory_bytes: u64) -> DirScan {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect(),
        Err(_) => return DirScan::default(),
    };
    paths.sort();
    let mut scan = DirScan::default();
    let mut referenced = Vec::new();
    for path in paths.iter().filter(|p| has_extension(p, "toml")) {
        match read_manifest(path, defaults, max_memory_bytes) {
            Ok((source, wasm)) => {
                referenced.push(wasm);
                scan.sources.push(source);
            }
            Err((reason, wasm)) => {
                referenced.extend(wasm);
                scan.errors.push(ManifestError {
                    path: path.clone(),
                    reason,
                });
            }
        }
    }
    scan.unreferenced = paths
        .into_iter()
        .filter(|p| has_extension(p, "wasm") && !referenced.contains(p))
        .collect();
    scan
}

fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|ext| ext == extension)
}

/// A manifest's plugin source and the path of its wasm; on failure, why and
/// the wasm path if the manifest got as far as naming one.
type ReadResult = Result<(PluginSource, PathBuf), (String, Option<PathBuf>)>;

fn read_manifest(path: &Path, defaults: Limits, max_memory_bytes: u64) -> ReadResult {
    let unnamed = |reason: String| (reason, None);
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .ok_or_else(|| unnamed("the manifest's file name must be valid UTF-8".into()))?
        .to_owned();
    let text =
        std::fs::read_to_string(path).map_err(|err| unnamed(format!("cannot be read: {err}")))?;
    let manifest: Manifest = toml::from_str(&text)
        .map_err(|err| unnamed(format!("is not a valid plugin manifest: {err}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let wasm_path = base.join(&manifest.wasm);
    let named = |reason: String| (reason, Some(wasm_path.clone()));
    let sha256 = manifest.sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(named(
            "`sha256` must be the 64 hex digits of the wasm file's sha256 (see `sha256sum`)".into(),
        ));
    }
    let limits = apply(manifest.limits, defaults, max_memory_bytes).map_err(named)?;
    let wasm = std::fs::read(&wasm_path).map_err(|err| {
        named(format!(
            "its wasm file {} cannot be read: {err}",
            wasm_path.display()
        ))
    })?;
    let source = PluginSource {
        name,
        wasm,
        sha256,
        world: manifest.world,
        limits,
        allowed_hosts: manifest.allowed_hosts,
    };
    Ok((source, wasm_path))
}

fn apply(
    overrides: LimitOverrides,
    defaults: Limits,
    max_memory_bytes: u64,
) -> Result<Limits, String> {
    let limits = Limits {
        memory_bytes: overrides.memory_bytes.unwrap_or(defaults.memory_bytes),
        timeout: overrides
            .timeout_ms
            .map_or(defaults.timeout, Duration::from_millis),
        output_bytes: overrides.output_bytes.unwrap_or(defaults.output_bytes),
        http_response_bytes: overrides
            .http_response_bytes
            .unwrap_or(defaults.http_response_bytes),
    };
    validate_limits(&limits, max_memory_bytes).map_err(|err| format!("limits.{err}"))?;
    Ok(limits)
}
