//! Fixtures shared by the integration tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wharf::runtime::{
    Allocator, Batch, CallError, CallFile, Entity, ErrorClass, Limits, Plugin, PluginSource,
    Runtime, RuntimeConfig, World,
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

/// A runtime that quarantines a plugin at its first fault, so a test sees
/// whether a failure counted towards quarantine.
pub(crate) fn strict_runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        quarantine_after: 1,
        ..runtime_config(Some(dir.join("compiled")))
    })
    .unwrap()
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
    let column = |f: fn(&Candidate) -> i64| files.iter().map(f).collect();
    Batch {
        entities: (0..entities).map(|i| entity(&format!("e{i}"))).collect(),
        kinds: ["capture".to_owned()].into(),
        ids: files.iter().map(|file| file.id).collect(),
        sizes: files.iter().map(|_| 1).collect(),
        created_ms: column(|file| file.created_ms),
        modified_ms: column(|file| file.created_ms),
        last_access_ms: column(|_| 0),
        entity: files
            .iter()
            .map(|file| file.entity.unwrap_or(u32::MAX))
            .collect(),
        kind: files.iter().map(|_| 0).collect(),
        flags: files.iter().map(|_| 0).collect(),
    }
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
    batch: Batch,
    params: &[(String, String)],
) -> Result<Vec<u64>, wharf::runtime::CallError> {
    let mut session = plugin.plan_session(&params.to_vec(), &std::env::temp_dir())?;
    let mut files: Vec<u64> = session
        .plan(&batch)?
        .deletions
        .iter()
        .map(|d| d.file)
        .collect();
    files.extend(session.finish()?.deletions.iter().map(|d| d.file));
    Ok(files)
}

pub(crate) fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// After an attack: the same plugin (unless quarantined) and another plugin
/// both answer normally.
pub(crate) fn assert_host_still_serves(runtime: &Runtime, plugin: &Plugin, dir: &Path) {
    let out = dir.join(format!("ok-{}", rand_suffix()));
    let result = plugin
        .export(&entity("set"), &[], &params(&[("mode", "ok")]), &out)
        .unwrap()
        .result;
    assert_eq!(result.file_name, "ok.txt");
    assert_eq!(std::fs::read(&out).unwrap(), b"ok");
    let other = runtime.load(bundled("keep-last")).unwrap();
    let files = vec![candidate(1, Some(0), 2), candidate(2, Some(0), 1)];
    let deleted = plan_once(&other, batch(1, files), &params(&[("keep", "1")])).unwrap();
    assert_eq!(deleted, vec![2]);
}

/// What a mode of a hostile test plugin must come to. Each plugin lists its
/// modes (`wharf_tests::hostile::MODES`, ...) and refuses any other; its
/// tests hold a table of `(mode, Expect)` that must name every one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    Succeeds,
    /// An error the plugin returned on purpose: retried, never counted
    /// towards quarantine.
    Transient(&'static str),
    InvalidParams(&'static str),
    // The plugin's faults: terminal and counted towards quarantine.
    Deadline,
    MemoryLimit,
    StackOverflow,
    OutputLimit,
    Trap(&'static str),
    InvalidOutput(&'static str),
    AccessDenied(&'static str),
    /// Needs limits of its own: the named test runs it.
    TestedBy(&'static str),
}

impl Expect {
    /// A fault of the plugin's, never the host's: terminal and counted
    /// towards quarantine.
    pub(crate) fn is_fault(self) -> bool {
        !matches!(
            self,
            Expect::Succeeds
                | Expect::Transient(_)
                | Expect::InvalidParams(_)
                | Expect::TestedBy(_)
        )
    }

    /// Asserts `result` is the exact outcome expected, in the right class.
    pub(crate) fn check<T: std::fmt::Debug>(self, mode: &str, result: &Result<T, CallError>) {
        let limits = limits();
        let matched = match (self, result) {
            (Expect::Succeeds, Ok(_)) => true,
            (Expect::Transient(why), Err(CallError::Transient { message, .. })) => {
                message.contains(why)
            }
            (Expect::InvalidParams(why), Err(CallError::InvalidParams(what))) => what.contains(why),
            (Expect::Deadline, Err(CallError::Deadline(timeout))) => *timeout == limits.timeout,
            (Expect::MemoryLimit, Err(CallError::MemoryLimit(bytes))) => {
                *bytes == limits.memory_bytes
            }
            (Expect::StackOverflow, Err(CallError::StackOverflow)) => true,
            (Expect::OutputLimit, Err(CallError::OutputLimit(bytes))) => {
                *bytes == limits.output_bytes
            }
            (Expect::Trap(why), Err(CallError::Trap(what)))
            | (Expect::InvalidOutput(why), Err(CallError::InvalidOutput(what)))
            | (Expect::AccessDenied(why), Err(CallError::AccessDenied(what))) => what.contains(why),
            _ => false,
        };
        assert!(matched, "mode {mode}: expected {self:?}, got {result:?}");
        if let Err(error) = result {
            let class = match self {
                Expect::Transient(_) => ErrorClass::Transient,
                Expect::InvalidParams(_) => ErrorClass::InvalidParams,
                _ => ErrorClass::Terminal,
            };
            assert_eq!(error.class(), class, "mode {mode}: {error:?}");
        }
    }
}

/// Fails naming each mode a hostile plugin has and `table` does not, and
/// each row for a mode the plugin does not have.
pub(crate) fn assert_table_covers(plugin: &str, modes: &[&str], table: &[(&str, Expect)]) {
    let missing: Vec<&str> = modes
        .iter()
        .copied()
        .filter(|mode| !table.iter().any(|(row, _)| row == mode))
        .collect();
    assert!(
        missing.is_empty(),
        "modes of {plugin} with no expected outcome; add a row for each: {missing:?}"
    );
    let stale: Vec<&str> = table
        .iter()
        .map(|(row, _)| *row)
        .filter(|row| !modes.contains(row))
        .collect();
    assert!(
        stale.is_empty(),
        "rows for modes {plugin} does not have: {stale:?}"
    );
}

/// A daemon (or any long-running child) that is killed and reaped when
/// dropped, so a test that fails half-way leaves no process behind holding
/// the API's port or working in a deleted directory.
pub(crate) struct Daemon(Option<std::process::Child>);

impl Daemon {
    pub(crate) fn new(child: std::process::Child) -> Daemon {
        Daemon(Some(child))
    }

    /// The child, no longer killed on drop.
    pub(crate) fn into_child(mut self) -> std::process::Child {
        self.0
            .take()
            .expect("a daemon holds its child until dropped")
    }
}

impl std::ops::Deref for Daemon {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        self.0
            .as_ref()
            .expect("a daemon holds its child until dropped")
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0
            .as_mut()
            .expect("a daemon holds its child until dropped")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
