//! An exporter whose `describe` answers 100 KiB of text. The host keeps a
//! plugin's description for its lifetime, so it refuses the load rather
//! than pin that much memory at every reload.

use wharf_sdk::{Entity, ExportResult, Exporter, FileEntry, Params, PluginError, PluginInfo};

pub struct BigDescribe;

impl Exporter for BigDescribe {
    fn describe() -> PluginInfo {
        PluginInfo::new("big-describe", "0.0.1").description("x".repeat(100 << 10))
    }

    fn run(_: Entity, _: Vec<FileEntry>, _: Params) -> Result<ExportResult, PluginError> {
        Err(PluginError::terminal("never loaded"))
    }
}

wharf_sdk::export_exporter!(BigDescribe);
