//! Which plugins this deployment has: the bundled ones, overridden or
//! extended by the manifests in the plugins directory (`manifest.rs`);
//! installing and removing them (`install.rs`); and running one function of
//! one plugin for its author (`call.rs`, `wharf plugin call`).
//!
//! Invariant: a plugin is recorded under the source it was loaded from. A
//! manifest that replaces a bundled plugin but fails to load leaves the
//! bundled one, recorded as bundled, and reports the manifest's error.

mod call;
mod install;
mod manifest;
mod world;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::config::Config;
use crate::index::PluginRow;
use crate::runtime::{Limits, LoadError, Plugin, PluginSource, Registry, Runtime};
use crate::store;

pub use call::{CallOutcome, CallReport, CallRequest, Decision, Function, LogLine, Target, call};
pub use install::{Installed, install, remove};
pub use manifest::{ManifestError, read_plugin_dir};
pub use world::WorldPlugins;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
}

/// The plugins compiled into this binary, each pinned to its build-time
/// sha256 and given `limits`.
pub fn bundled(limits: Limits) -> Vec<PluginSource> {
    embedded::BUNDLED
        .iter()
        .map(|(name, wasm, sha256)| PluginSource {
            name: (*name).to_owned(),
            wasm: wasm.to_vec(),
            sha256: (*sha256).to_owned(),
            world: None,
            limits,
            allowed_hosts: Vec::new(),
        })
        .collect()
}

/// Where a loaded plugin came from.
pub const BUNDLED: &str = "bundled";

/// The outcome of loading every plugin: what loaded, where each came from,
/// what did not load (one message per plugin, naming it) and what loaded
/// but looks wrong.
pub struct LoadReport {
    pub registry: Registry,
    /// Plugin name → `bundled` or its manifest path.
    pub origins: BTreeMap<String, String>,
    pub errors: Vec<String>,
    /// Problems that do not stop a load: a `.wasm` no manifest names, a
    /// manifest named differently from the plugin's own `describe` name.
    pub warnings: Vec<String>,
}

impl LoadReport {
    /// Rows for the index's `plugins` table.
    pub fn rows(&self) -> Vec<PluginRow> {
        self.registry
            .iter()
            .map(|plugin| PluginRow {
                name: plugin.name.clone(),
                version: plugin.info.version.clone(),
                world: plugin.world.name().to_owned(),
                sha256: plugin.sha256.clone(),
                source: self.origins.get(&plugin.name).cloned().unwrap_or_default(),
            })
            .collect()
    }
}

/// Every plugin source of a deployment with where it comes from: the
/// bundled ones first, then the manifests of `plugins_dir` in name order.
pub struct Sources {
    pub sources: Vec<(PluginSource, String)>,
    pub errors: Vec<ManifestError>,
    /// `.wasm` files of the plugins directory no manifest names.
    pub unreferenced: Vec<PathBuf>,
}

/// Reads the bundled plugins and the manifests of `plugins_dir`.
pub fn sources(config: &Config, plugins_dir: &Path) -> Sources {
    let limits = config.plugin_limits();
    let mut sources: Vec<(PluginSource, String)> = bundled(limits)
        .into_iter()
        .map(|source| (source, BUNDLED.to_owned()))
        .collect();
    let scan = read_plugin_dir(plugins_dir, limits, config.plugins.max_memory_bytes);
    for source in scan.sources {
        let manifest = store::plugin_manifest_path(plugins_dir, &source.name);
        sources.push((source, manifest.display().to_string()));
    }
    Sources {
        sources,
        errors: scan.errors,
        unreferenced: scan.unreferenced,
    }
}

/// Loads the bundled plugins, then every manifest in `plugins_dir` (a
/// manifest with a bundled plugin's name replaces it). Each load is bounded
/// by `[plugins] load_timeout_ms`.
pub fn load_all(runtime: &Runtime, config: &Config, plugins_dir: &Path) -> LoadReport {
    let Sources {
        sources,
        errors: manifest_errors,
        unreferenced,
    } = sources(config, plugins_dir);
    let timeout = Duration::from_millis(config.plugins.load_timeout_ms);
    let mut registry = Registry::default();
    let mut origins = BTreeMap::new();
    let mut errors: Vec<String> = manifest_errors.iter().map(ToString::to_string).collect();
    let mut warnings: Vec<String> = unreferenced
        .iter()
        .map(|wasm| {
            format!(
                "{} is in the plugins directory but no manifest names it, so it is not loaded; \
                 install it with `wharf plugin install {}`",
                wasm.display(),
                wasm.display()
            )
        })
        .collect();
    for (source, origin) in sources {
        let name = source.name.clone();
        match load_bounded(runtime, source, timeout) {
            Ok(plugin) => {
                if origin != BUNDLED && plugin.info.name != plugin.name {
                    warnings.push(format!(
                        "{origin}: loaded as {name}, but the plugin calls itself {}; \
                         rename the manifest to {}.toml if that is the name you mean",
                        plugin.info.name, plugin.info.name
                    ));
                }
                origins.insert(name, origin);
                registry.insert(plugin);
            }
            Err(error) => errors.push(error.to_string()),
        }
    }
    LoadReport {
        registry,
        origins,
        errors,
        warnings,
    }
}

/// Loads one plugin on a thread of its own, waiting at most `timeout`.
/// Compiling cannot be interrupted: a load over time is abandoned (its
/// thread finishes on its own and its result is dropped) and reported.
pub fn load_bounded(
    runtime: &Runtime,
    source: PluginSource,
    timeout: Duration,
) -> Result<Plugin, LoadError> {
    let name = source.name.clone();
    let (sender, receiver) = mpsc::sync_channel(1);
    let loader = runtime.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("wharf-load-{name}"))
        .spawn(move || {
            let _ = sender.send(loader.load(source));
        });
    if let Err(error) = spawned {
        return Err(LoadError::Invalid {
            name,
            reason: format!("no thread to load it on: {error}"),
        });
    }
    match receiver.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => Err(LoadError::Invalid {
            name,
            reason: format!(
                "loading it (compiling and `describe`) took longer than {} ms \
                 (plugins.load_timeout_ms); make the component smaller or raise the limit",
                timeout.as_millis()
            ),
        }),
    }
}

/// The source of the plugin operators call `name`, and where it comes
/// from: its manifest if it has one, else the bundled plugin.
pub fn source_named(
    config: &Config,
    plugins_dir: &Path,
    name: &str,
) -> anyhow::Result<(PluginSource, String)> {
    let Sources {
        sources, errors, ..
    } = sources(config, plugins_dir);
    let manifest = store::plugin_manifest_path(plugins_dir, name);
    if let Some(error) = errors.into_iter().find(|e| e.path == manifest) {
        anyhow::bail!("{error}");
    }
    sources
        .into_iter()
        .rev()
        .find(|(source, _)| source.name == name)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no plugin is named {name}: see `wharf plugin list`, or pass the path of a .wasm file"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_plugin_is_pinned() {
        let bundled = bundled(Config::default().plugin_limits());
        // One per crate under plugins/ in the source tree.
        let crates = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins"))
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().path().join("Cargo.toml").exists())
            .count();
        assert_eq!(bundled.len(), crates);
        for source in bundled {
            assert_eq!(source.sha256.len(), 64, "{}", source.name);
        }
    }
}
