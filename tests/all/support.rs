//! Fixtures shared by the integration tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wharf::runtime::{
    Allocator, CallFile, EntityInfo, FileInfo, Limits, Plugin, PluginSource, Runtime,
    RuntimeConfig, World,
};

pub(crate) fn limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        timeout: Duration::from_millis(300),
        output_bytes: 1 << 20,
        http_response_bytes: 1 << 20,
    }
}

pub(crate) fn runtime_config(cache_dir: Option<PathBuf>) -> RuntimeConfig {
    RuntimeConfig {
        allocator: Allocator::Pooling,
        max_instances: 32,
        max_memory_bytes: 1 << 30,
        compiled_cache_dir: cache_dir,
        quarantine_after: 5,
        epoch_tick: Duration::from_millis(2),
    }
}

/// A runtime with a compiled cache in `dir`.
pub(crate) fn runtime(dir: &Path) -> Runtime {
    Runtime::new(runtime_config(Some(dir.join("compiled")))).unwrap()
}

pub(crate) fn source(name: &str, wasm: Vec<u8>, world: Option<World>) -> PluginSource {
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    PluginSource {
        name: name.into(),
        wasm,
        sha256,
        world,
        limits: limits(),
        allowed_hosts: Vec::new(),
    }
}

pub(crate) fn guest(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

pub(crate) fn bundled(name: &str) -> PluginSource {
    wharf::runtime::bundled(limits())
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

pub(crate) fn load_hostile(runtime: &Runtime) -> Plugin {
    runtime
        .load(source(
            "hostile",
            guest(wharf_tests::HOSTILE),
            Some(World::Exporter),
        ))
        .unwrap()
}

pub(crate) fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

pub(crate) fn entity(id: &str) -> EntityInfo {
    EntityInfo {
        id: id.into(),
        version: 1,
        last_export_ms: None,
    }
}

pub(crate) fn file_info(
    id: u64,
    name: &str,
    size: u64,
    entity: Option<&str>,
    created_ms: i64,
) -> FileInfo {
    FileInfo {
        id,
        name: name.into(),
        size,
        mtime_ms: created_ms,
        sha256: "0".repeat(64),
        kind: "capture".into(),
        entity: entity.map(str::to_owned),
        created_ms,
    }
}

/// Writes `content` to `dir/name` and describes it as file `id`.
pub(crate) fn call_file(dir: &Path, id: u64, name: &str, content: &[u8]) -> CallFile {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    CallFile {
        info: file_info(id, name, content.len() as u64, Some("set"), 0),
        path,
    }
}
