//! The loaded plugins of one world, by name: what the export planner and
//! the sync lanes look plugins up in, replaced as a whole on reload.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::runtime::{Plugin, Registry, World};

/// The plugins of `world` in a registry, by name.
#[derive(Debug)]
pub struct WorldPlugins {
    world: World,
    by_name: RwLock<BTreeMap<String, Arc<Plugin>>>,
}

impl WorldPlugins {
    pub fn new(world: World, registry: &Registry) -> WorldPlugins {
        let plugins = WorldPlugins {
            world,
            by_name: RwLock::default(),
        };
        plugins.replace(registry);
        plugins
    }

    /// Takes this world's plugins of `registry` in place of the ones held.
    pub fn replace(&self, registry: &Registry) {
        let by_name = registry
            .iter()
            .filter(|plugin| plugin.world == self.world)
            .map(|plugin| (plugin.name.clone(), plugin.clone()))
            .collect();
        *self.by_name.write().unwrap_or_else(PoisonError::into_inner) = by_name;
    }

    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The names there are, in name order.
    pub fn names(&self) -> Vec<String> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}
