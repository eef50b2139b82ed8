//! Fixtures shared by the integration tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wharf::runtime::{
    Allocator, Batch, CallFile, Entity, Limits, Plugin, PluginSource, Runtime, RuntimeConfig, World,
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
        max_component_bytes: 16 << 20,
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
    wharf::plugins::bundled(limits())
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

pub(crate) fn entity(name: &str) -> Entity {
    Entity {
        name: name.into(),
        version: 1,
        last_export_ms: None,
        attributes: Vec::new(),
    }
}

/// A retention candidate: its id, the index of its entity in the batch (if
/// any) and when it was created.
pub(crate) struct Candidate {
    id: u64,
    entity: Option<u32>,
    created_ms: i64,
}

pub(crate) fn candidate(id: u64, entity: Option<u32>, created_ms: i64) -> Candidate {
    Candidate {
        id,
        entity,
        created_ms,
    }
}

/// A batch of `files` (1 byte each, kind `capture`, no flags) over entities
/// `e0`, `e1`, ... (as many as named).
pub(crate) fn batch(entities: usize, files: Vec<Candidate>) -> Batch {
    let mut batch = Batch {
        entities: (0..entities).map(|i| entity(&format!("e{i}"))).collect(),
        kinds: vec!["capture".into()],
        ..Batch::default()
    };
    for file in files {
        batch.ids.push(file.id);
        batch.sizes.push(1);
        batch.created_ms.push(file.created_ms);
        batch.modified_ms.push(file.created_ms);
        batch.last_access_ms.push(0);
        batch.entity.push(file.entity.unwrap_or(u32::MAX));
        batch.kind.push(0);
        batch.flags.push(0);
    }
    batch
}

/// Writes `content` to `dir/name` and describes it as a tracked file.
pub(crate) fn call_file(dir: &Path, name: &str, content: &[u8]) -> CallFile {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    CallFile {
        name: name.into(),
        size: content.len() as u64,
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content)),
        kind: "capture".into(),
        created_ms: 0,
        modified_ms: 0,
        remote_copies: Vec::new(),
        path,
    }
}

/// One retention run over one batch: open, plan, finish; the caller's ids
/// of the files let go.
pub(crate) fn plan_once(
    plugin: &Plugin,
    mut batch: Batch,
    params: &[(String, String)],
) -> Result<Vec<u64>, wharf::runtime::CallError> {
    let mut session = plugin.plan_session(&params.to_vec(), &std::env::temp_dir())?;
    let mut files: Vec<u64> = session
        .plan(&mut batch)?
        .deletions
        .iter()
        .map(|d| d.file)
        .collect();
    files.extend(session.finish()?.deletions.iter().map(|d| d.file));
    Ok(files)
}
