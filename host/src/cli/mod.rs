//! The `wharf` command line: argument parsing and output only; the work is
//! done by the library modules. Errors become exit codes in exactly one
//! place, [`main`].

mod add;
mod cleanup;
mod dataset;
mod export;
mod fsck;
mod init;
mod jobs;
mod plugin;
mod plugin_call;
mod plugin_install;
mod run;
mod sql;
mod status;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use run::serve;

use crate::config::Config;
use crate::scaffold;
use crate::store::DataDir;

/// wharf keeps a directory of data files under control: it indexes them in
/// SQLite, and runs export formats, retention policies and uploaders as
/// sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about, long_about = None)]
pub struct Cli {
    /// The data directory: index, plugins, caches and tracked files.
    #[arg(
        long,
        env = "WHARF_DATA_DIR",
        default_value = "./wharf-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Configuration file [default: DATA_DIR/wharf.toml; missing means defaults].
    #[arg(long, env = "WHARF_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr. Verbosity comes from WHARF_LOG (e.g. `debug`, `wharf=trace`).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory, a wharf.toml with every default, and the index.
    Init,
    /// Run the daemon until SIGTERM or Ctrl-C (SIGHUP reloads plugins,
    /// SIGUSR1 queues a full cleanup). One daemon per data directory: a
    /// second one names the first's pid and exits with 2.
    Run,
    /// Queue an inbox scan (the `ingest` job) now.
    ///
    /// With --wait, follow it to its end with a progress bar; without a
    /// daemon running, --wait runs it in this process. Exits with 1 if the
    /// job failed or was cancelled.
    Ingest {
        /// Wait for the job to end.
        #[arg(long)]
        wait: bool,
    },
    /// The job queue: list, show, retry or cancel jobs.
    Jobs {
        #[command(subcommand)]
        command: Option<JobsCommand>,
        /// `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = JobsFormat::Table, global = true)]
        format: JobsFormat,
    },
    /// Compare the index with the disk: missing files become `lost`, changed
    /// ones `corrupt`; untracked files are reported (indexed with --repair).
    /// Exits with 1 while problems remain.
    Fsck {
        /// Index untracked files found under DATA_DIR/files.
        #[arg(long)]
        repair: bool,
    },
    /// Summarize the index: files by state and kind, partial files in tmp/, sync backlog, jobs,
    /// failures, leases.
    ///
    /// Reads the index read-only, so it works while the daemon runs.
    Status,
    /// Run one read-only SQL statement on the index and print its result.
    ///
    /// The index is opened read-only: a statement that would change it fails
    /// and changes nothing. It works while the daemon runs.
    #[command(after_help = SQL_HELP)]
    Sql {
        /// The statement, e.g. "SELECT * FROM disk_usage".
        query: String,
        /// `table` for people; `csv` (RFC 4180) or `json` (an array of objects) for scripts.
        #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
    },
    /// Ingest files and directories into the store and the index.
    ///
    /// A file `x/name.bin` goes to DATA_DIR/files/name.bin, a directory `dir`
    /// to DATA_DIR/files/dir/...; the entity is --entity, else the directory's
    /// name. Files on the store's filesystem are moved, others copied and then
    /// removed. Empty and recently modified files are skipped and left in place.
    /// Exits with 1 when some file was skipped or failed, after doing all the
    /// rest.
    Add {
        /// Files and directories to ingest (symlinks are never followed).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The entity (dataset) of every file [default: the first directory under files/].
        #[arg(long)]
        entity: Option<String>,
        /// The kind recorded for every file.
        #[arg(long, default_value = "capture")]
        kind: String,
    },
    /// Queue a cleanup: finish interrupted deletions, run every
    /// [[cleanup.policy]] of wharf.toml, then orphan GC.
    ///
    /// With --wait, follow the job to its end (in this process if no daemon
    /// runs; exit 1 if it failed). With --dry-run, delete nothing: print what
    /// the configured policies, and a candidate given with --policy, would
    /// delete, and how they differ.
    #[command(after_help = CLEANUP_HELP)]
    Cleanup {
        /// Orphan GC only (untracked files under files/, leftovers in tmp/).
        #[arg(long)]
        gc_only: bool,
        /// Plan only, read-only; nothing is deleted.
        #[arg(long)]
        dry_run: bool,
        /// Wait for the job to end.
        #[arg(long, conflicts_with = "dry_run")]
        wait: bool,
        /// With --dry-run: a candidate retention plugin (.wasm) to compare
        /// with the configured policies.
        #[arg(long = "policy", value_name = "NEW.wasm", requires = "dry_run")]
        candidate: Option<PathBuf>,
        /// A parameter of the candidate, key=value; repeat for more.
        #[arg(long = "param", value_name = "KEY=VALUE", requires = "candidate", value_parser = cleanup::parse_param)]
        params: Vec<(String, String)>,
        /// The configured policy whose files (kinds, attributes) the
        /// candidate applies to [default: every file].
        #[arg(long, value_name = "POLICY", requires = "candidate")]
        like: Option<String>,
        /// With --dry-run: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = JobsFormat::Table)]
        format: JobsFormat,
        /// With --dry-run: how many differing files to list per side.
        #[arg(long, default_value_t = 10)]
        show: usize,
    },
    /// Export a dataset in a format (an exporter plugin), through the
    /// export cache.
    ///
    /// A cached export of the dataset's present version with the same
    /// parameters is answered at once; otherwise an `export` job makes it
    /// (followed with --wait or -o; in this process when no daemon runs).
    /// Prints where the result is. Exits with 1 if the job failed, 2 when
    /// the request is refused (unknown dataset or format, bad parameter).
    #[command(after_help = EXPORT_HELP)]
    Export {
        /// The dataset (`wharf dataset list`).
        dataset: String,
        /// The format: an exporter plugin's name (`wharf plugin list`).
        #[arg(long)]
        format: String,
        /// A parameter of the format, repeatable: --param key=value.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Copy the result to this file (implies --wait).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Wait for the job to end.
        #[arg(long)]
        wait: bool,
    },
    /// Datasets (the index's entities): list, show, set or unset attributes.
    Dataset {
        #[command(subcommand)]
        command: Option<DatasetCommand>,
        /// `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = JobsFormat::Table, global = true)]
        format: JobsFormat,
    },
    /// Sync files to the [[destination]]s of wharf.toml (a local
    /// directory, S3, an HTTP server).
    ///
    /// Queues a sync of every file not yet synced; with --wait, follows it
    /// with a progress bar (in this process if no daemon runs) and prints
    /// each destination's state; exits with 1 if files failed for good.
    /// The daemon also syncs every sync.interval_ms and after an ingest.
    #[command(after_help = SYNC_HELP, args_conflicts_with_subcommands = true)]
    Sync {
        #[command(subcommand)]
        command: Option<SyncCommand>,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Wait for the sync to end.
        #[arg(long)]
        wait: bool,
        /// `table` for people, `json` for scripts (sync status).
        #[arg(long, value_enum, default_value_t = JobsFormat::Table, global = true)]
        format: JobsFormat,
    },
    /// Manage plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

const SYNC_HELP: &str = "\
Examples:
  wharf sync --wait                         # sync every file to every destination now
  wharf sync --destination backup --wait    # one destination
  wharf sync status                         # pending / in progress / synced / failed per destination
  wharf sync retry-failed                   # queue the files that failed for good again";

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Each destination's files by state (pending, in progress, synced,
    /// retrying, failed), their bytes and the last error.
    Status,
    /// Queue every failed file again, its attempts reset.
    RetryFailed {
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
    },
}

const CLEANUP_HELP: &str = "\
Examples:
  wharf cleanup --wait                   # run every policy, then orphan GC, now
  wharf cleanup --gc-only                # orphan GC only
  wharf cleanup --dry-run                # what the configured policies would delete
  wharf cleanup --dry-run --policy ttl.wasm --param max_age_ms=86400000 --format json";

const EXPORT_HELP: &str = "\
Examples:
  wharf export set1 --format tar-export -o set1.tar
  wharf export set1 --format tar-export --wait      # prints where the cached export is
  wharf export set1 --format tar-export             # queue it for the daemon";

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Every dataset: files, bytes, version, cached exports, last export (the default).
    List,
    /// One dataset: its counts, attributes and cached exports.
    Show { name: String },
    /// Set attributes (key=value...); a change bumps the dataset's version.
    Set {
        name: String,
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_param)]
        attributes: Vec<(String, String)>,
    },
    /// Remove attributes by key; a change bumps the dataset's version.
    Unset {
        name: String,
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

const SQL_HELP: &str = "\
Tables: files, entities, exports, locks, destinations, sync_status, jobs, plugins, events.
Views: sync_backlog, disk_usage, stale_locks, export_cache, failures.
Every table and view is documented in schema.sql; times are ms since the Unix epoch.

Examples:
  wharf sql \"SELECT * FROM disk_usage\"
  wharf sql \"SELECT * FROM sync_backlog WHERE due LIMIT 20\"
  wharf sql --format csv \"SELECT path, size, sha256 FROM files\" > files.csv";

/// How `wharf sql` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqlFormat {
    /// Aligned columns under a header, NULL as empty.
    Table,
    /// RFC 4180 quoting, a header line, NULL as an empty field, BLOBs in hex.
    Csv,
    /// An array of objects, one per row; NULL as null, BLOBs in hex.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// The newest jobs first (the default).
    List {
        /// Only jobs in this state: queued, running, done, failed, cancelled.
        #[arg(long, value_parser = parse_job_state)]
        state: Option<crate::index::JobState>,
        /// How many jobs at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Every field of one job.
    Show { id: i64 },
    /// Queue a failed or cancelled job again, its attempts reset.
    Retry { id: i64 },
    /// Cancel a queued job, or ask the worker of a running one to stop it.
    Cancel { id: i64 },
}

/// How `wharf jobs` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobsFormat {
    Table,
    Json,
}

fn parse_job_state(text: &str) -> Result<crate::index::JobState, String> {
    crate::index::JobState::ALL
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| {
            format!("{text:?} is not a job state: queued, running, done, failed or cancelled")
        })
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List the plugins the daemon would load (exit code 1 if any fails to load).
    List,
    /// Show a component's world, WIT version, sha256, imports and parameters.
    Inspect {
        /// The plugin's .wasm file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one function of a plugin through the real runtime, with the
    /// configured limits, and print its result, its log lines and the time.
    ///
    /// Nothing in the data directory changes: an export goes to --output or
    /// a new temporary file, a retention plan only prints its decisions, an
    /// upload goes to --destination or --local-dir. Exits with 1 when the
    /// call fails (the error says whose fault it is), 2 when the plugin
    /// cannot be loaded.
    #[command(after_help = CALL_HELP)]
    Call {
        /// An installed or bundled plugin's name, or a .wasm file.
        plugin: String,
        /// describe (every plugin), run (exporter, uploader) or plan (retention).
        function: crate::plugins::Function,
        /// A parameter for the plugin, repeatable: --param keep=3.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// A file to hand to the plugin, repeatable: an index path
        /// (files/set/a.bin), a path into the store, or any plain file.
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<PathBuf>,
        /// The entity exported, and the entity of plain files (retention
        /// batches group by it) [default: the first indexed file's entity].
        #[arg(long)]
        entity: Option<String>,
        /// Exporters: where the export is written (must not exist) [default: a new temporary file].
        #[arg(long)]
        output: Option<PathBuf>,
        /// Uploaders: a remote destination's base URL; its host is allowed.
        #[arg(long, conflicts_with = "local_dir")]
        destination: Option<String>,
        /// Uploaders: a local destination directory.
        #[arg(long)]
        local_dir: Option<PathBuf>,
        /// `text` for people, `json` for scripts and tests.
        #[arg(long, value_enum, default_value_t = CallFormat::Text)]
        format: CallFormat,
    },
    /// Install a plugin: copy the component into DATA_DIR/plugins, write its
    /// manifest (sha256 pin, world) and make a running daemon reload.
    ///
    /// The file must load (it is compiled and described first). Its name is
    /// the one its describe gives, unless --name says otherwise; an existing
    /// plugin of that name (installed or bundled) is replaced only with
    /// --force, keeping the old manifest's limits and allowed hosts.
    Install {
        /// The component, e.g. target/wasm32-wasip2/release/my_rule.wasm.
        file: PathBuf,
        /// The name to install it under [default: its describe name].
        #[arg(long)]
        name: Option<String>,
        /// Replace a plugin of the same name.
        #[arg(long)]
        force: bool,
    },
    /// Remove an installed plugin (its manifest and .wasm) and make a
    /// running daemon reload; a bundled plugin it replaced comes back.
    Remove {
        /// The installed plugin's name.
        name: String,
    },
    /// Create a new plugin crate that builds to wasm and passes its own test.
    New {
        /// exporter, retention or uploader.
        kind: crate::runtime::World,
        /// Crate name: lower-case letters, digits and dashes.
        name: String,
        /// Directory to create the crate in [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path of the wharf-sdk crate [default: the SDK of this wharf's source tree].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

const CALL_HELP: &str = "\
Examples:
  wharf plugin call target/wasm32-wasip2/release/my_rule.wasm describe
  wharf plugin call keep-last plan --param keep=1 --file a.bin --file b.bin --entity set
  wharf plugin call tar-export run --file set1/a.bin --file set1/b.bin --output set1.tar
  wharf plugin call http-put run --file a.bin --destination http://127.0.0.1:9000/bucket
  wharf plugin call my.wasm run --file a.bin --local-dir ./dest --format json";

/// How `wharf plugin call` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CallFormat {
    Text,
    /// One object: plugin, function, ok, result or error, log, elapsed_ms.
    Json,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// Parses the arguments, runs the command and maps the outcome to an exit
/// code: 0 success, 1 the command ran and found problems, 2 an error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match execute(cli) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a parsed command line; the tests call this directly.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::new(&cli.data_dir);
    let config_path = cli.config.clone().unwrap_or_else(|| data_dir.config_path());
    let config = || Config::load(&config_path);
    match cli.command {
        Command::Init => init::init(&data_dir, &config_path),
        Command::Run => run::run(data_dir, config()?),
        Command::Ingest { wait } => jobs::ingest(&data_dir, &config()?, wait),
        Command::Jobs { command, format } => match command.unwrap_or(JobsCommand::List {
            state: None,
            limit: 20,
        }) {
            JobsCommand::List { state, limit } => jobs::list(&data_dir, state, limit, format),
            JobsCommand::Show { id } => jobs::show(&data_dir, id, format),
            JobsCommand::Retry { id } => jobs::retry(&data_dir, id),
            JobsCommand::Cancel { id } => jobs::cancel(&data_dir, id),
        },
        Command::Status => status::status(&data_dir),
        Command::Sql { query, format } => sql::sql(&data_dir, &query, format),
        Command::Fsck { repair } => fsck::run(&data_dir, &config()?, repair),
        Command::Add {
            paths,
            entity,
            kind,
        } => add::add(
            &data_dir,
            &config()?,
            add::AddArgs {
                paths,
                entity,
                kind,
            },
        ),
        Command::Cleanup {
            gc_only,
            dry_run,
            wait,
            candidate,
            params,
            like,
            format,
            show,
        } => cleanup::cleanup(
            &data_dir,
            &config()?,
            &cleanup::CleanupArgs {
                gc_only,
                dry_run,
                wait,
                candidate,
                params,
                like,
                format,
                show,
            },
        ),
        Command::Export {
            dataset,
            format,
            params,
            output,
            wait,
        } => export::export(
            &data_dir,
            &config()?,
            export::ExportArgs {
                dataset,
                format,
                params,
                output,
                wait,
            },
        ),
        Command::Dataset { command, format } => match command.unwrap_or(DatasetCommand::List) {
            DatasetCommand::List => dataset::list(&data_dir, format),
            DatasetCommand::Show { name } => dataset::show(&data_dir, &name, format),
            DatasetCommand::Set { name, attributes } => dataset::change(
                &data_dir,
                &name,
                crate::index::AttributeChange::Set(attributes),
            ),
            DatasetCommand::Unset { name, keys } => {
                dataset::change(&data_dir, &name, crate::index::AttributeChange::Unset(keys))
            }
        },
        Command::Sync {
            command,
            destination,
            wait,
            format,
        } => match command {
            None => sync::sync(&data_dir, &config()?, destination.as_deref(), wait),
            Some(SyncCommand::Status) => sync::status(&data_dir, &config()?, format),
            Some(SyncCommand::RetryFailed { destination }) => {
                sync::retry_failed(&data_dir, &config()?, destination.as_deref())
            }
        },
        Command::Plugin(PluginCommand::List) => plugin::list(&data_dir, &config()?),
        Command::Plugin(PluginCommand::Inspect { file, json }) => plugin::inspect(&file, json),
        Command::Plugin(PluginCommand::Call {
            plugin,
            function,
            params,
            files,
            entity,
            output,
            destination,
            local_dir,
            format,
        }) => plugin_call::call(
            &data_dir,
            &config()?,
            crate::plugins::CallRequest {
                target: crate::plugins::Target::parse(&plugin),
                function,
                params,
                files,
                entity,
                output,
                destination,
                local_dir,
            },
            format,
        ),
        Command::Plugin(PluginCommand::Install { file, name, force }) => {
            plugin_install::install(&data_dir, &config()?, &file, name.as_deref(), force)
        }
        Command::Plugin(PluginCommand::Remove { name }) => plugin_install::remove(&data_dir, &name),
        Command::Plugin(PluginCommand::New {
            kind,
            name,
            dir,
            sdk,
        }) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let sdk = sdk.unwrap_or_else(scaffold::default_sdk_path);
            scaffold::new_plugin(kind, &name, &dir, &sdk)?;
            println!("created {kind} plugin `{name}` in {}", dir.display());
            println!("  test it:   cd {} && cargo test", dir.display());
            println!("  build it:  cargo build --release --target wasm32-wasip2");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
