//! Loading plugins: sha256 pin, world and WIT version checks, compilation
//! (through the cache), pre-instantiation, and the set of loaded plugins.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::bindings::{
    PluginInfo, exporter::ExporterPre, retention::RetentionPre, uploader::UploaderPre,
};
use super::cache::{self, CacheOutcome};
use super::call::{CallError, CallState};
use super::engine::{Runtime, RuntimeInner};
use super::host;
use super::inspect::{
    ComponentReport, WIT_VERSION, World, check_component_bytes, wit_version_supported,
};
use super::limits::Limits;

/// Where a plugin comes from and what it may do.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// The name operators and jobs refer to it by.
    pub name: String,
    pub wasm: Vec<u8>,
    /// Lower-case hex sha256 the wasm must have.
    pub sha256: String,
    /// The world it must implement, when the configuration says.
    pub world: Option<World>,
    pub limits: Limits,
    /// Hosts (`host` or `host:port`) an uploader may reach.
    pub allowed_hosts: Vec<String>,
}

/// Why a plugin was not loaded. Each message names the plugin and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "plugin {name}: sha256 mismatch: pinned {expected}, but the file has {found}; \
         if you trust the new file, update the pin"
    )]
    Sha256Mismatch {
        name: String,
        expected: String,
        found: String,
    },
    #[error("plugin {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("plugin {name} is configured as {expected} but is a {found} plugin")]
    WrongWorld {
        name: String,
        expected: World,
        found: World,
    },
    #[error(
        "plugin {name} was built against wharf:plugin@{found}, but this wharf supports \
         wharf:plugin@{expected}; rebuild it with a wharf-sdk for {expected}"
    )]
    UnsupportedWitVersion {
        name: String,
        expected: &'static str,
        found: String,
    },
    #[error("plugin {name}: a {world} plugin may not import {imports}")]
    ForbiddenImport {
        name: String,
        world: World,
        imports: String,
    },
    #[error("plugin {name}: its describe call failed: {error}")]
    Describe { name: String, error: CallError },
}

/// The pre-instantiated component, typed by world.
pub(crate) enum WorldPre {
    Exporter(ExporterPre<CallState>),
    Retention(RetentionPre<CallState>),
    Uploader(UploaderPre<CallState>),
}

/// A loaded plugin, ready to be called from any thread.
pub struct Plugin {
    pub name: String,
    pub world: World,
    pub sha256: String,
    /// What the plugin's `describe` returned at load time.
    pub info: PluginInfo,
    pub limits: Limits,
    pub allowed_hosts: Vec<String>,
    /// Whether it came from the compiled cache.
    pub cache: CacheOutcome,
    pub(crate) pre: WorldPre,
    pub(crate) runtime: Arc<RuntimeInner>,
    pub(crate) consecutive_traps: AtomicU32,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("world", &self.world)
            .field("version", &self.info.version)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Runtime {
    /// Verifies, compiles (or loads from the cache) and pre-instantiates a
    /// plugin, then calls its `describe`.
    pub fn load(&self, source: PluginSource) -> Result<Plugin, LoadError> {
        let name = source.name;
        let invalid = |reason: String| LoadError::Invalid {
            name: name.clone(),
            reason,
        };
        let max = self.inner.config.max_component_bytes;
        if source.wasm.len() as u64 > max {
            return Err(invalid(format!(
                "its wasm file is {} bytes, over the limit of {max} (plugins.max_component_bytes); \
                 build it in release mode, or raise the limit if you trust it",
                source.wasm.len()
            )));
        }
        check_component_bytes(&source.wasm).map_err(invalid)?;
        let found = sha256_hex(&source.wasm);
        if !found.eq_ignore_ascii_case(&source.sha256) {
            return Err(LoadError::Sha256Mismatch {
                name,
                expected: source.sha256,
                found,
            });
        }
        let engine = &self.inner.engine;
        let cache_dir = self.inner.config.compiled_cache_dir.as_deref();
        let (component, cache) =
            cache::load_or_compile(engine, &source.wasm, &found, cache_dir).map_err(invalid)?;
        let report = ComponentReport::of(engine, &component);
        let (world, version) = report.world().map_err(invalid)?;
        if let Some(bad) = report
            .wit_versions()
            .into_iter()
            .find(|v| !wit_version_supported(v))
        {
            return Err(LoadError::UnsupportedWitVersion {
                name,
                expected: WIT_VERSION,
                found: bad,
            });
        }
        if let Some(expected) = source.world.filter(|expected| *expected != world) {
            return Err(LoadError::WrongWorld {
                name,
                expected,
                found: world,
            });
        }
        let forbidden = report.forbidden_imports(world);
        if !forbidden.is_empty() {
            return Err(LoadError::ForbiddenImport {
                name,
                world,
                imports: forbidden.join(", "),
            });
        }
        tracing::debug!(plugin = %name, %world, wit = %version, ?cache, "plugin compiled");
        let pre = self.pre_instantiate(&component, world).map_err(invalid)?;
        let mut plugin = Plugin {
            name: name.clone(),
            world,
            sha256: found,
            info: PluginInfo {
                name: name.clone(),
                version: String::new(),
                description: String::new(),
                params: Vec::new(),
            },
            limits: source.limits,
            allowed_hosts: source.allowed_hosts,
            cache,
            pre,
            runtime: self.inner.clone(),
            consecutive_traps: AtomicU32::new(0),
        };
        plugin.info = plugin
            .describe()
            .map_err(|error| LoadError::Describe { name, error })?;
        Ok(plugin)
    }

    fn pre_instantiate(&self, component: &Component, world: World) -> Result<WorldPre, String> {
        let engine = &self.inner.engine;
        let mut linker = self.inner.linker.clone();
        host::deny_foreign_imports(&mut linker, engine, component)
            .map_err(|err| format!("its imports cannot be linked: {err:#}"))?;
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|err| format!("its imports do not match this host: {err:#}"))?;
        let typed =
            |err: wasmtime::Error| format!("its exports do not match the {world} world: {err:#}");
        Ok(match world {
            World::Exporter => WorldPre::Exporter(ExporterPre::new(instance_pre).map_err(typed)?),
            World::Retention => {
                WorldPre::Retention(RetentionPre::new(instance_pre).map_err(typed)?)
            }
            World::Uploader => WorldPre::Uploader(UploaderPre::new(instance_pre).map_err(typed)?),
        })
    }

    /// Reads a component's world, WIT version and imports without loading it.
    pub fn inspect(&self, wasm: &[u8]) -> Result<ComponentReport, String> {
        check_component_bytes(wasm)?;
        let (component, _) =
            cache::load_or_compile(&self.inner.engine, wasm, &sha256_hex(wasm), None)?;
        Ok(ComponentReport::of(&self.inner.engine, &component))
    }
}

/// The loaded plugins, by name. Replaced as a whole on reload, which also
/// lifts quarantines.
#[derive(Debug, Default)]
pub struct Registry {
    plugins: BTreeMap<String, Arc<Plugin>>,
}

impl Registry {
    /// Loads every source; a plugin that fails to load is reported and
    /// left out, and never stops the others. Later sources with the same
    /// name replace earlier ones (a plugins-directory entry overrides a
    /// bundled plugin).
    pub fn load(runtime: &Runtime, sources: Vec<PluginSource>) -> (Registry, Vec<LoadError>) {
        let mut registry = Registry::default();
        let mut errors = Vec::new();
        for source in sources {
            match runtime.load(source) {
                Ok(plugin) => {
                    registry
                        .plugins
                        .insert(plugin.name.clone(), Arc::new(plugin));
                }
                Err(error) => errors.push(error),
            }
        }
        (registry, errors)
    }

    /// Adds a loaded plugin, replacing one of the same name.
    pub fn insert(&mut self, plugin: Plugin) {
        self.plugins.insert(plugin.name.clone(), Arc::new(plugin));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}
