//! Which plugins this deployment has: the bundled ones, overridden or
//! extended by the manifests in the plugins directory.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Config;
use crate::index::PluginRow;
use crate::runtime::{self, Registry, Runtime};
use crate::store;

/// The outcome of loading every plugin: what loaded, where each came from,
/// and what did not load (one message per plugin, naming it).
pub struct LoadReport {
    pub registry: Registry,
    /// Plugin name → `bundled` or its manifest path.
    pub origins: BTreeMap<String, String>,
    pub errors: Vec<String>,
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

/// Loads the bundled plugins, then every manifest in `plugins_dir` (a
/// manifest with a bundled plugin's name replaces it).
pub fn load_all(runtime: &Runtime, config: &Config, plugins_dir: &Path) -> LoadReport {
    let limits = config.plugin_limits();
    let mut origins = BTreeMap::new();
    let mut sources = runtime::bundled(limits);
    for source in &sources {
        origins.insert(source.name.clone(), "bundled".to_owned());
    }
    let (from_dir, manifest_errors) =
        runtime::read_plugin_dir(plugins_dir, limits, config.plugins.max_memory_bytes);
    for source in &from_dir {
        let manifest = store::plugin_manifest_path(plugins_dir, &source.name);
        origins.insert(source.name.clone(), manifest.display().to_string());
    }
    sources.extend(from_dir);
    let (registry, load_errors) = Registry::load(runtime, sources);
    let errors = manifest_errors
        .iter()
        .map(ToString::to_string)
        .chain(load_errors.iter().map(ToString::to_string))
        .collect();
    LoadReport {
        registry,
        origins,
        errors,
    }
}
