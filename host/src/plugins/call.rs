//! `wharf plugin call`: one function of one plugin, run through the real
//! runtime with the configured limits against files the author names, for
//! the author to see what the host sees: the result, the plugin's log lines
//! and the time.
//!
//! Invariant: a call changes nothing in the data directory. An export goes
//! to a file the author names or a new temporary file, a retention plan
//! only reports its decisions, an upload goes where the author points it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;
use sha2::{Digest, Sha256};
use tracing_subscriber::layer::SubscriberExt;

use super::source_named;
use crate::config::Config;
use crate::index::Index;
use crate::runtime::{
    Batch, CallError, CallFile, DestinationAccess, Entity, ExportResult, Plugin, PluginInfo,
    PluginSource, RemoteAccess, Runtime, UploadResult, UploadTarget, World, sha256_hex,
};
use crate::store::{self, DataDir};

/// Which plugin to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A plugin of this deployment (bundled or installed), by name.
    Named(String),
    /// A component file, loaded with the configured default limits.
    File(PathBuf),
}

impl Target {
    /// A path (with a `/` or ending in `.wasm`) is a file; anything else a name.
    pub fn parse(text: &str) -> Target {
        if text.ends_with(".wasm") || text.contains('/') {
            Target::File(PathBuf::from(text))
        } else {
            Target::Named(text.to_owned())
        }
    }
}

/// The function to run. `run` is the exporter's or the uploader's; `plan`
/// is a retention run over one batch (open, plan, finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Describe,
    Run,
    Plan,
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Function::Describe => "describe",
            Function::Run => "run",
            Function::Plan => "plan",
        }
    }

    fn of(world: World) -> &'static str {
        match world {
            World::Exporter | World::Uploader => "describe, run",
            World::Retention => "describe, plan",
        }
    }
}

impl std::str::FromStr for Function {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "describe" => Ok(Function::Describe),
            "run" => Ok(Function::Run),
            "plan" => Ok(Function::Plan),
            other => Err(format!(
                "unknown function {other:?}: describe (every plugin), run (exporters, uploaders) \
                 or plan (retention)"
            )),
        }
    }
}

/// One `wharf plugin call`.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub target: Target,
    pub function: Function,
    pub params: Vec<(String, String)>,
    /// Files handed to the plugin: index paths (`files/set/a.bin`), paths
    /// into the data directory's store, or any plain file.
    pub files: Vec<PathBuf>,
    /// The entity an exporter exports, and the entity of plain files
    /// [default: the first indexed file's entity, else `plugin-call`].
    pub entity: Option<String>,
    /// Where an export is written [default: a new temporary file].
    pub output: Option<PathBuf>,
    /// An uploader's remote destination: a base URL, whose host is allowed.
    pub destination: Option<String>,
    /// An uploader's local destination directory.
    pub local_dir: Option<PathBuf>,
}

/// A line the plugin logged during the call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// What a retention plan decided about one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub file: String,
    pub delete: bool,
    pub reason: Option<String>,
    /// Whether `finish` named it, rather than the batch's `plan`.
    pub at_finish: bool,
}

/// What a successful call returned.
#[derive(Debug, Clone)]
pub enum CallOutcome {
    Described(PluginInfo),
    Exported {
        result: ExportResult,
        output: PathBuf,
        bytes: u64,
    },
    Planned(Vec<Decision>),
    Uploaded(UploadResult),
}

/// Everything `wharf plugin call` prints.
#[derive(Debug)]
pub struct CallReport {
    pub plugin: String,
    pub world: World,
    pub version: String,
    pub sha256: String,
    /// The file, `bundled`, or the manifest it was loaded from.
    pub source: String,
    pub function: Function,
    pub outcome: Result<CallOutcome, CallError>,
    pub log: Vec<LogLine>,
    /// The call itself, without loading.
    pub elapsed: Duration,
    /// Loading: compiling (or the compiled cache) and `describe`.
    pub load_elapsed: Duration,
}

/// Loads the plugin and runs the function. An `Err` is a problem before
/// the call (the plugin does not load, a file cannot be read, the function
/// is not the plugin's); how the call itself ended is in the report.
pub fn call(
    data_dir: &DataDir,
    config: &Config,
    request: CallRequest,
) -> anyhow::Result<CallReport> {
    let mut runtime_config = config.runtime_config(&data_dir.compiled_cache_dir());
    // An author trying a file outside any deployment gets no data
    // directory created behind their back.
    if !data_dir.root().is_dir() {
        runtime_config.compiled_cache_dir = None;
    }
    let runtime = Runtime::new(runtime_config)?;
    let (source, origin) = match &request.target {
        Target::Named(name) => source_named(config, &data_dir.plugins_dir(), name)?,
        Target::File(path) => (
            file_source(config, path, &request)?,
            path.display().to_string(),
        ),
    };
    let load_started = Instant::now();
    let (plugin, log) = captured(|| runtime.load(source));
    let plugin = plugin.map_err(|error| {
        let logged = log
            .iter()
            .map(|line| format!("\n  plugin log: {}", line.message))
            .collect::<String>();
        anyhow::anyhow!("{origin} is not a loadable plugin: {error}{logged}")
    })?;
    let load_elapsed = load_started.elapsed();
    let prepared = prepare(data_dir, &plugin, &request)?;
    let started = Instant::now();
    let (outcome, log) = captured(|| prepared.run(&plugin, &request));
    let elapsed = started.elapsed();
    Ok(CallReport {
        plugin: plugin.info.name.clone(),
        world: plugin.world,
        version: plugin.info.version.clone(),
        sha256: plugin.sha256.clone(),
        source: origin,
        function: request.function,
        outcome,
        log,
        elapsed,
        load_elapsed,
    })
}

/// A component file as a plugin source: the default limits, and for an
/// uploader called with `--destination`, that destination's host allowed.
fn file_source(
    config: &Config,
    path: &Path,
    request: &CallRequest,
) -> anyhow::Result<PluginSource> {
    let wasm = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_stem().map_or_else(
        || "plugin".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let allowed_hosts = match &request.destination {
        Some(url) => vec![destination_host(url)?],
        None => Vec::new(),
    };
    Ok(PluginSource {
        name,
        sha256: sha256_hex(&wasm),
        wasm,
        world: None,
        limits: config.plugin_limits(),
        allowed_hosts,
    })
}

/// `host:port` of a destination URL.
fn destination_host(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| {
        format!("--destination {url:?} is not a URL like http://127.0.0.1:9000/bucket")
    })?;
    let host = parsed
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("--destination {url:?} has no host"))?;
    Ok(match parsed.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// The call's arguments, built before the clock starts.
enum Prepared {
    Describe,
    Export {
        entity: Entity,
        files: Vec<CallFile>,
        output: PathBuf,
        /// Whether the output is a temporary file to rename to the name
        /// the plugin gives it.
        rename: bool,
    },
    Plan {
        batch: Batch,
        names: Vec<String>,
        disk: PathBuf,
    },
    Upload {
        file: CallFile,
        target: UploadTarget,
    },
}

fn prepare(data_dir: &DataDir, plugin: &Plugin, request: &CallRequest) -> anyhow::Result<Prepared> {
    let wrong = || {
        anyhow::anyhow!(
            "{} is a plugin of the {} world: its functions are {}",
            plugin.info.name,
            plugin.world,
            Function::of(plugin.world)
        )
    };
    let files = || resolve_files(data_dir, &request.files, request.entity.as_deref());
    Ok(match (request.function, plugin.world) {
        (Function::Describe, _) => Prepared::Describe,
        (Function::Run, World::Exporter) => {
            let files = files()?;
            let entity = request
                .entity
                .clone()
                .or_else(|| files.iter().find_map(|(_, entity)| entity.clone()))
                .unwrap_or_else(|| "plugin-call".to_owned());
            let (output, rename) = match &request.output {
                Some(path) => (path.clone(), false),
                None => (new_output_path(&plugin.info.name)?, true),
            };
            if output.exists() {
                anyhow::bail!(
                    "{} exists; pass an --output path that does not, the export never overwrites",
                    output.display()
                );
            }
            Prepared::Export {
                entity: Entity {
                    name: entity,
                    version: 1,
                    last_export_ms: None,
                    attributes: Vec::new(),
                },
                files: files.into_iter().map(|(file, _)| file).collect(),
                output,
                rename,
            }
        }
        (Function::Plan, World::Retention) => {
            let (batch, names) = batch_of(files()?);
            let disk = if data_dir.root().is_dir() {
                data_dir.root().to_path_buf()
            } else {
                std::env::current_dir().context("cannot read the current directory")?
            };
            Prepared::Plan { batch, names, disk }
        }
        (Function::Run, World::Uploader) => {
            let mut files = files()?;
            if files.len() != 1 {
                anyhow::bail!(
                    "an uploader's run takes exactly one --file (got {})",
                    files.len()
                );
            }
            let (file, _) = files.remove(0);
            let target = match (&request.destination, &request.local_dir) {
                (Some(url), None) => UploadTarget {
                    name: "plugin-call".into(),
                    url: url.clone(),
                    access: DestinationAccess::Remote(RemoteAccess {
                        allowed_hosts: vec![destination_host(url)?],
                        ..RemoteAccess::default()
                    }),
                },
                (None, Some(dir)) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    UploadTarget {
                        name: "plugin-call".into(),
                        url: String::new(),
                        access: DestinationAccess::Local { root: dir.clone() },
                    }
                }
                _ => anyhow::bail!(
                    "an uploader's run needs one destination: --destination URL or --local-dir DIR"
                ),
            };
            Prepared::Upload { file, target }
        }
        _ => return Err(wrong()),
    })
}

impl Prepared {
    fn run(self, plugin: &Plugin, request: &CallRequest) -> Result<CallOutcome, CallError> {
        match self {
            Prepared::Describe => plugin.describe().map(CallOutcome::Described),
            Prepared::Export {
                entity,
                files,
                output,
                rename,
            } => {
                let exported = plugin.export(&entity, &files, &request.params, &output)?;
                // The runtime checked the name is a bare file name.
                let named = output.with_file_name(&exported.result.file_name);
                let output = if rename && std::fs::rename(&output, &named).is_ok() {
                    named
                } else {
                    output
                };
                Ok(CallOutcome::Exported {
                    result: exported.result,
                    output,
                    bytes: exported.size,
                })
            }
            Prepared::Plan { batch, names, disk } => {
                plan(plugin, &request.params, &disk, batch, &names)
            }
            Prepared::Upload { file, target } => plugin
                .upload(&file, &target, &request.params)
                .map(CallOutcome::Uploaded),
        }
    }
}

/// A retention run over one batch: every file's decision, in batch order.
fn plan(
    plugin: &Plugin,
    params: &[(String, String)],
    disk: &Path,
    batch: Batch,
    names: &[String],
) -> Result<CallOutcome, CallError> {
    let mut session = plugin.plan_session(&params.to_vec(), disk)?;
    let mut decisions: Vec<Decision> = names
        .iter()
        .map(|name| Decision {
            file: name.clone(),
            delete: false,
            reason: None,
            at_finish: false,
        })
        .collect();
    let planned = session.plan(&batch)?;
    let finished = session.finish()?;
    for (decided, at_finish) in [(planned, false), (finished, true)] {
        for deletion in &decided.deletions {
            if let Some(decision) = decisions.get_mut(deletion.file as usize) {
                decision.delete = true;
                decision.reason = decided.reasons.get(deletion.reason as usize).cloned();
                decision.at_finish = at_finish;
            }
        }
    }
    Ok(CallOutcome::Planned(decisions))
}

/// A new temporary file name for an export.
fn new_output_path(plugin: &str) -> anyhow::Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix("wharf-plugin-call-")
        .tempdir()
        .context("cannot create a temporary directory for the export")?
        .keep();
    Ok(dir.join(format!("{plugin}.out")))
}

/// The named files as the plugin gets them, each with its entity.
fn resolve_files(
    data_dir: &DataDir,
    paths: &[PathBuf],
    entity: Option<&str>,
) -> anyhow::Result<Vec<(CallFile, Option<String>)>> {
    let index = if paths.is_empty() || !data_dir.index_path().exists() {
        None
    } else {
        Some(Index::open(&data_dir.index_path()).with_context(|| {
            format!("cannot open the index {}", data_dir.index_path().display())
        })?)
    };
    paths
        .iter()
        .map(|path| match indexed(data_dir, index.as_ref(), path)? {
            Some(found) => Ok(found),
            None => plain_file(path, entity),
        })
        .collect()
}

/// A file of the index, named by its index path or by a path into the store.
fn indexed(
    data_dir: &DataDir,
    index: Option<&Index>,
    path: &Path,
) -> anyhow::Result<Option<(CallFile, Option<String>)>> {
    let Some(index) = index else {
        return Ok(None);
    };
    let text = path.to_string_lossy();
    let index_path = if store::is_stored_path(&text) && !path.exists() {
        Some(text.into_owned())
    } else {
        let canonical = path.canonicalize().ok();
        let root = data_dir.canonical().ok();
        canonical
            .zip(root)
            .and_then(|(file, root)| root.relative(&file))
    };
    let Some(index_path) = index_path else {
        return Ok(None);
    };
    let Some(row) = index.file_by_path(&index_path)? else {
        return Ok(None);
    };
    let on_disk = data_dir
        .resolve(&row.path)
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", row.path))?;
    let name = row
        .path
        .strip_prefix(store::FILES)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(&row.path)
        .to_owned();
    let file = CallFile {
        name,
        size: row.size,
        sha256: row.sha256,
        kind: row.kind,
        created_ms: row.created_ms,
        modified_ms: row.mtime_ms,
        remote_copies: Vec::new(),
        path: on_disk,
    };
    Ok(Some((file, row.entity)))
}

/// Any readable regular file: named by its file name, hashed now.
fn plain_file(path: &Path, entity: Option<&str>) -> anyhow::Result<(CallFile, Option<String>)> {
    let metadata = std::fs::metadata(path).with_context(|| {
        format!(
            "--file {}: no such file, nor a path in the index",
            path.display()
        )
    })?;
    if !metadata.is_file() {
        anyhow::bail!("--file {} is not a regular file", path.display());
    }
    let modified_ms = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let mut hasher = Sha256::new();
    let mut reader =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = reader
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    let name = path.file_name().map_or_else(
        || "file".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let file = CallFile {
        name,
        size: metadata.len(),
        sha256: hex::encode(hasher.finalize()),
        kind: "capture".into(),
        created_ms: modified_ms,
        modified_ms,
        remote_copies: Vec::new(),
        path: path.to_path_buf(),
    };
    Ok((file, entity.map(str::to_owned)))
}

/// One batch of the named files, ordered as the host orders batches: files
/// of no entity first, then by entity, newest first; with each file's name
/// by run-local id.
fn batch_of(files: Vec<(CallFile, Option<String>)>) -> (Batch, Vec<String>) {
    let mut files = files;
    files.sort_by(|(a, ea), (b, eb)| ea.cmp(eb).then(b.created_ms.cmp(&a.created_ms)));
    let mut entity_indexes: BTreeMap<String, u32> = BTreeMap::new();
    let mut entities = Vec::new();
    let mut kinds: Vec<String> = Vec::new();
    let (mut entity, mut kind) = (Vec::new(), Vec::new());
    for (file, name) in &files {
        let entity_index = match name {
            Some(name) => *entity_indexes.entry(name.clone()).or_insert_with(|| {
                entities.push(Entity {
                    name: name.clone(),
                    version: 1,
                    last_export_ms: None,
                    attributes: Vec::new(),
                });
                entities.len() as u32 - 1
            }),
            None => u32::MAX,
        };
        let kind_index = match kinds.iter().position(|kind| *kind == file.kind) {
            Some(index) => index,
            None => {
                kinds.push(file.kind.clone());
                kinds.len() - 1
            }
        } as u32;
        entity.push(entity_index);
        kind.push(kind_index);
    }
    let column = |f: fn(&CallFile) -> i64| files.iter().map(|(file, _)| f(file)).collect();
    let batch = Batch {
        entities: entities.into(),
        kinds: kinds.into(),
        ids: (0..files.len() as u64).collect(),
        sizes: files.iter().map(|(file, _)| file.size).collect(),
        created_ms: column(|file| file.created_ms),
        modified_ms: column(|file| file.modified_ms),
        last_access_ms: files.iter().map(|_| 0).collect(),
        entity: entity.into(),
        kind: kind.into(),
        flags: files.iter().map(|_| 0).collect(),
    };
    let names = files.into_iter().map(|(file, _)| file.name).collect();
    (batch, names)
}

/// Runs `f` with the plugin's log lines captured instead of printed.
fn captured<R>(f: impl FnOnce() -> R) -> (R, Vec<LogLine>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()));
    let result = tracing::subscriber::with_default(subscriber, f);
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(PoisonError::into_inner));
    (result, lines)
}

/// Collects the events of the runtime's log module: every line a plugin
/// logs goes through it.
struct Capture(Arc<Mutex<Vec<LogLine>>>);

/// The module path of the runtime's plugin log.
const PLUGIN_LOG_TARGET: &str = "wharf::runtime::host";

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !event.metadata().target().starts_with(PLUGIN_LOG_TARGET) {
            return;
        }
        let mut message = MessageField(String::new());
        event.record(&mut message);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(LogLine {
                level: event.metadata().level().as_str().to_ascii_lowercase(),
                message: message.0,
            });
    }
}

struct MessageField(String);

impl tracing::field::Visit for MessageField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_files_and_anything_else_a_name() {
        assert_eq!(
            Target::parse("keep-last"),
            Target::Named("keep-last".into())
        );
        assert_eq!(Target::parse("my.wasm"), Target::File("my.wasm".into()));
        assert_eq!(Target::parse("./x"), Target::File("./x".into()));
    }

    #[test]
    fn a_batch_puts_files_of_no_entity_first_then_each_entity_newest_first() {
        let file = |name: &str, created_ms: i64| CallFile {
            name: name.into(),
            size: 1,
            sha256: String::new(),
            kind: "capture".into(),
            created_ms,
            modified_ms: created_ms,
            remote_copies: Vec::new(),
            path: PathBuf::new(),
        };
        let (batch, names) = batch_of(vec![
            (file("b-old", 1), Some("b".into())),
            (file("loose", 5), None),
            (file("b-new", 9), Some("b".into())),
            (file("a", 3), Some("a".into())),
        ]);
        assert_eq!(names, ["loose", "a", "b-new", "b-old"]);
        assert_eq!(*batch.entity, [u32::MAX, 0, 1, 1]);
        assert_eq!(*batch.ids, [0, 1, 2, 3]);
        assert_eq!(*batch.kinds, ["capture"]);
    }
}
