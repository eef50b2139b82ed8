//! An exporter whose `describe` panics, so its load fails: the panic's
//! message must reach the operator's "not loaded" line, not only the log.

use wharf_sdk::{Entity, ExportResult, Exporter, FileEntry, Params, PluginError, PluginInfo};

pub struct PanicsAtLoad;

impl Exporter for PanicsAtLoad {
    fn describe() -> PluginInfo {
        panic!("the configuration baked into this plugin is missing");
    }

    fn run(_: Entity, _: Vec<FileEntry>, _: Params) -> Result<ExportResult, PluginError> {
        Err(PluginError::terminal("never loaded"))
    }
}

wharf_sdk::export_exporter!(PanicsAtLoad);
