//! `wharf.toml`: every setting, its default (defined here, once) and its
//! validation. A missing file means all defaults; an unknown key, a zero or
//! an absurd value is rejected with a message naming the key.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runtime::{Allocator, Limits, RuntimeConfig, validate_limits};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub plugins: PluginsConfig,
    pub ingest: IngestConfig,
    pub jobs: JobsConfig,
    pub cleanup: CleanupConfig,
    pub exports: ExportsConfig,
    pub api: ApiConfig,
}

/// `[exports]`: the export cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportsConfig {
    /// How long a cached export lives after its last use (a hit or a
    /// download), in milliseconds; cleanup removes older ones (default
    /// 86400000, a day).
    pub cache_ttl_ms: u64,
    /// The lease one export holds on its cache key while it runs, renewed
    /// every third of it, in milliseconds (default 30000).
    pub lease_ttl_ms: u64,
    /// How long an export waits for another run of the same cache key
    /// before it gives up and asks to be retried, in milliseconds
    /// (default 50000).
    pub acquire_timeout_ms: u64,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        ExportsConfig {
            cache_ttl_ms: 24 * 60 * 60 * 1000,
            lease_ttl_ms: 30_000,
            acquire_timeout_ms: 50_000,
        }
    }
}

impl ExportsConfig {
    fn validate(&self) -> Result<(), String> {
        const DAY_MS: u64 = 24 * 60 * 60 * 1000;
        let ranges: [(&str, u64, u64, u64); 3] = [
            ("cache_ttl_ms", self.cache_ttl_ms, 1000, 365 * DAY_MS),
            ("lease_ttl_ms", self.lease_ttl_ms, 300, DAY_MS),
            ("acquire_timeout_ms", self.acquire_timeout_ms, 0, DAY_MS),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(format!(
                    "exports.{key} = {value} must be between {min} and {max}"
                ));
            }
        }
        Ok(())
    }
}

/// `[api]`: the HTTP API `wharf run` serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API at all (default true).
    pub enabled: bool,
    /// Address and port to listen on; loopback unless you put a proxy with
    /// TLS in front (default 127.0.0.1:8270; port 0 picks a free one,
    /// written to DATA_DIR/api-address).
    pub bind: String,
    /// Requests handled at once; more get 429 with Retry-After (default 64).
    pub max_in_flight: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            bind: "127.0.0.1:8270".into(),
            max_in_flight: 64,
        }
    }
}

impl ApiConfig {
    fn validate(&self) -> Result<(), String> {
        if self.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "api.bind = {:?} must be an address and port such as 127.0.0.1:8270",
                self.bind
            ));
        }
        if !(1..=100_000).contains(&self.max_in_flight) {
            return Err(format!(
                "api.max_in_flight = {} must be between 1 and 100000",
                self.max_in_flight
            ));
        }
        Ok(())
    }
}

/// `[plugins]`: the sandbox every plugin call runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Linear memory one plugin call may use, in bytes (default 64 MiB).
    pub memory_bytes: u64,
    /// Wall-clock budget of one plugin call, guest and host time together,
    /// in milliseconds (default 30 s).
    pub timeout_ms: u64,
    /// Largest output of one export, in bytes (default 64 GiB).
    pub output_bytes: u64,
    /// Largest HTTP response body handed to an uploader, in bytes (default 1 MiB).
    pub http_response_bytes: u64,
    /// Upper bound of any plugin's `memory_bytes`; sizes the instance pool's
    /// address-space reservation (default 1 GiB).
    pub max_memory_bytes: u64,
    /// Plugin instances alive at once (default 64).
    pub max_instances: u32,
    /// Consecutive trapping calls after which a plugin is quarantined until
    /// the next reload (default 5).
    pub quarantine_after: u32,
    /// Largest plugin component (`.wasm` file) loaded, in bytes; compiling
    /// is the one step of a load no deadline interrupts (default 16 MiB).
    pub max_component_bytes: u64,
    /// How long loading one plugin (compiling it and its `describe` call)
    /// may take, in milliseconds; a slower plugin is not loaded, the others
    /// are (default 60000).
    pub load_timeout_ms: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            memory_bytes: 64 << 20,
            timeout_ms: 30_000,
            output_bytes: 64 << 30,
            http_response_bytes: 1 << 20,
            max_memory_bytes: 1 << 30,
            max_instances: 64,
            quarantine_after: 5,
            max_component_bytes: 16 << 20,
            load_timeout_ms: 60_000,
        }
    }
}

/// `[ingest]`: how `wharf add` and the inbox scan take files in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// A file modified less than this many milliseconds ago is still being
    /// written: it is skipped and picked up by a later scan (default 10000).
    pub file_last_modified_ms: u64,
    /// Largest file accepted, in bytes; bigger ones are refused with an
    /// error (default 1 TiB).
    pub max_file_size_bytes: u64,
    /// How often the daemon scans `DATA_DIR/inbox`, in milliseconds
    /// (default 5000).
    pub scan_interval_ms: u64,
    /// Threads hashing files; 0 means one per core (default 0).
    pub hash_threads: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            file_last_modified_ms: 10_000,
            max_file_size_bytes: 1 << 40,
            scan_interval_ms: 5_000,
            hash_threads: 0,
        }
    }
}

/// `[jobs]`: the queue, the scheduler and the worker pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Worker threads running jobs; 0 means half the cores, at least one
    /// (default 0).
    pub workers: u32,
    /// Attempts of a job before a transient failure becomes terminal
    /// (default 5).
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; it doubles with each
    /// attempt, with jitter (default 200).
    pub backoff_base_ms: u64,
    /// Longest delay between retries, in milliseconds (default 3600000, one hour).
    pub backoff_cap_ms: u64,
    /// Lease of a running job (and of the daemon on its data directory), in
    /// milliseconds; renewed every third of it, so it only runs out when its
    /// holder stopped (default 30000).
    pub lease_ttl_ms: u64,
    /// On SIGTERM, how long running jobs may finish before they are
    /// cancelled and left queued for the next start, in milliseconds
    /// (default 10000).
    pub drain_timeout_ms: u64,
    /// Offset between the periodic schedules of different kinds, so they do
    /// not fire together, in milliseconds (default 1000).
    pub stagger_ms: u64,
    /// How often a full cleanup (every `[[cleanup.policy]]`, then orphan
    /// GC) is scheduled, in milliseconds (default 3600000).
    pub cleanup_interval_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            workers: 0,
            max_attempts: 5,
            backoff_base_ms: 200,
            backoff_cap_ms: 3_600_000,
            lease_ttl_ms: 30_000,
            drain_timeout_ms: 10_000,
            stagger_ms: 1_000,
            cleanup_interval_ms: 3_600_000,
        }
    }
}

impl JobsConfig {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    fn validate(&self) -> Result<(), String> {
        let ranges: [(&str, u64, u64, u64); 7] = [
            ("workers", u64::from(self.workers), 0, 1024),
            ("max_attempts", u64::from(self.max_attempts), 1, 1000),
            ("backoff_base_ms", self.backoff_base_ms, 1, Self::DAY_MS),
            ("backoff_cap_ms", self.backoff_cap_ms, 1, 7 * Self::DAY_MS),
            ("lease_ttl_ms", self.lease_ttl_ms, 300, Self::DAY_MS),
            ("drain_timeout_ms", self.drain_timeout_ms, 0, Self::DAY_MS),
            ("stagger_ms", self.stagger_ms, 0, Self::DAY_MS),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(format!(
                    "jobs.{key} = {value} must be between {min} and {max}"
                ));
            }
        }
        if self.backoff_cap_ms < self.backoff_base_ms {
            return Err(format!(
                "jobs.backoff_cap_ms = {} must be at least jobs.backoff_base_ms = {}",
                self.backoff_cap_ms, self.backoff_base_ms
            ));
        }
        if !(1000..=7 * Self::DAY_MS).contains(&self.cleanup_interval_ms) {
            return Err(format!(
                "jobs.cleanup_interval_ms = {} must be between 1000 and 604800000 (a week)",
                self.cleanup_interval_ms
            ));
        }
        Ok(())
    }

    /// Worker threads to run: `workers`, or half the cores, at least one.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1),
            n => n as usize,
        }
    }
}

/// `[cleanup]`: retention policies and orphan GC, run by the `cleanup`
/// job (every `jobs.cleanup_interval_ms`, on SIGUSR1 and `wharf cleanup`)
/// and the `gc` job (`wharf cleanup --gc-only`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanupConfig {
    /// Largest share of a policy's candidates one run may delete, in
    /// percent; a plan asking for more deletes nothing and stops that policy
    /// with an error event. A policy may set its own (`max_delete_percent`
    /// in its `[[cleanup.policy]]`) (default 50).
    pub max_delete_percent: u32,
    /// The cap (`max_delete_percent`) applies to a policy's run from this
    /// many candidates on; over fewer, a plan may delete any share of them
    /// (keeping 1 of 3 files deletes 67 %) (default 10).
    pub max_delete_min_candidates: u64,
    /// Leftovers in `tmp/` (and untracked files under `files/`, with
    /// `remove_untracked_files`) are removed once neither modified nor moved
    /// for this long, in milliseconds (default 600000, ten minutes).
    pub orphan_lifetime_ms: u64,
    /// Whether orphan GC removes files under `files/` that the index does not
    /// track. Off by default: such a file may be the only copy of one an
    /// ingest placed just before a crash, and `wharf fsck --repair` indexes
    /// it; GC then only reports them (default false).
    pub remove_untracked_files: bool,
    /// Files per retention batch handed to a policy; an entity is never
    /// split, so a batch may be larger (default 10000).
    pub batch_files: u32,
    /// The retention policies, each `[[cleanup.policy]]`; `policy = []`
    /// means a cleanup only runs orphan GC. Listing policies replaces the
    /// default list, so keep the `export-cache` one among them to keep
    /// enforcing `exports.cache_ttl_ms` (default: one policy, `export-cache`,
    /// over files of kind `export`, uncapped since a cache may expire
    /// whole).
    /// (Written last in `[cleanup]`, so an operator can append
    /// `[[cleanup.policy]]` tables to what `wharf init` wrote.)
    #[serde(rename = "policy")]
    pub policies: Vec<PolicyConfig>,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        CleanupConfig {
            max_delete_percent: 50,
            max_delete_min_candidates: 10,
            orphan_lifetime_ms: 600_000,
            remove_untracked_files: false,
            batch_files: 10_000,
            policies: vec![PolicyConfig::export_cache()],
        }
    }
}

/// `[[cleanup.policy]]`: one retention plugin applied to some files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy's name, unique, used in events and logs.
    pub name: String,
    /// The retention plugin (see `wharf plugin list`).
    pub plugin: String,
    /// The kinds of file it applies to; empty means every kind (default empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Entity attributes a file's entity must all have (e.g. `{ branch =
    /// "main" }`); empty means every file, also those of no entity
    /// (default empty).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The plugin's parameters, checked against what it declares
    /// (`wharf plugin inspect`); those the host provides (the export
    /// cache's `cache_ttl_ms`, from `exports.cache_ttl_ms`) are filled in
    /// and may not be given here (default empty).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, ParamValue>,
    /// Destinations (by name) a file must be synced to before this policy
    /// may delete it, beyond those marked required (default empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_synced: Vec<String>,
    /// This policy's own deletion cap, in percent of its candidates,
    /// instead of `cleanup.max_delete_percent` (default: that one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delete_percent: Option<u32>,
    /// Show the policy only files whose indexing, modification and last
    /// access are all older than this, in milliseconds: an indexed
    /// preselection for policies that only ever delete old files (e.g.
    /// `ttl` with the same `max_age_ms`), so a run reads the old files
    /// instead of every file. Its cap then compares a plan with every ready
    /// file (default: every file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than_ms: Option<u64>,
}

impl PolicyConfig {
    /// The default policy: the export cache's TTL (`exports.cache_ttl_ms`)
    /// enforced by the bundled `export-cache` plugin. Uncapped, since a
    /// whole cache may expire at once and every export can be made again.
    pub fn export_cache() -> PolicyConfig {
        PolicyConfig {
            name: "export-cache".into(),
            plugin: "export-cache".into(),
            kinds: vec!["export".into()],
            attributes: Default::default(),
            params: Default::default(),
            require_synced: Vec::new(),
            max_delete_percent: Some(100),
            older_than_ms: None,
        }
    }
}

/// A parameter value as written in TOML: `keep = 3`, `keep = "3"` and
/// `released = true` all reach the plugin as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Text(String),
    Integer(i64),
    Bool(bool),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Text(text) => f.write_str(text),
            ParamValue::Integer(n) => write!(f, "{n}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl CleanupConfig {
    const WEEK_MS: u64 = 7 * 24 * 60 * 60 * 1000;

    fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.max_delete_percent) {
            return Err(format!(
                "cleanup.max_delete_percent = {} must be between 1 and 100",
                self.max_delete_percent
            ));
        }
        if self.orphan_lifetime_ms > Self::WEEK_MS {
            return Err(format!(
                "cleanup.orphan_lifetime_ms = {} must be between 0 and 604800000 (a week)",
                self.orphan_lifetime_ms
            ));
        }
        if !(1..=1_000_000).contains(&self.batch_files) {
            return Err(format!(
                "cleanup.batch_files = {} must be between 1 and 1000000",
                self.batch_files
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, policy) in self.policies.iter().enumerate() {
            let key = format!("cleanup.policy[{i}]");
            if policy.name.trim().is_empty() {
                return Err(format!("{key}.name must not be empty"));
            }
            if !names.insert(policy.name.as_str()) {
                return Err(format!(
                    "{key}.name = {:?} is used by an earlier policy; names must be unique",
                    policy.name
                ));
            }
            if policy.plugin.trim().is_empty() {
                return Err(format!(
                    "{key}.plugin must name a retention plugin (see `wharf plugin list`)"
                ));
            }
            if let Some(percent) = policy.max_delete_percent.filter(|p| !(1..=100).contains(p)) {
                return Err(format!(
                    "{key}.max_delete_percent = {percent} must be between 1 and 100"
                ));
            }
            if let Some(age) = policy
                .older_than_ms
                .filter(|&age| age == 0 || age > 100 * 365 * 24 * 60 * 60 * 1000)
            {
                return Err(format!(
                    "{key}.older_than_ms = {age} must be between 1 and 3153600000000 (a century); \
                     leave it out to show the policy every file"
                ));
            }
        }
        Ok(())
    }
}

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid wharf configuration: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Reads and validates `path`; a missing file is the default configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: shown,
                    source,
                });
            }
        };
        Config::parse(&text).map_err(|err| match err {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: shown.clone(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: shown.clone(),
                message,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: String::new(),
            message: err.to_string(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: String::new(),
            message,
        })?;
        Ok(config)
    }

    /// Checks every value; the message names the key and the allowed range.
    pub fn validate(&self) -> Result<(), String> {
        let plugins = &self.plugins;
        if !((16 << 20)..=(16u64 << 30)).contains(&plugins.max_memory_bytes) {
            return Err(format!(
                "plugins.max_memory_bytes = {} must be between 16 MiB and 16 GiB",
                plugins.max_memory_bytes
            ));
        }
        if !(1..=10_000).contains(&plugins.max_instances) {
            return Err(format!(
                "plugins.max_instances = {} must be between 1 and 10000",
                plugins.max_instances
            ));
        }
        if !(1..=1000).contains(&plugins.quarantine_after) {
            return Err(format!(
                "plugins.quarantine_after = {} must be between 1 and 1000",
                plugins.quarantine_after
            ));
        }
        if !(1024..=(1u64 << 30)).contains(&plugins.max_component_bytes) {
            return Err(format!(
                "plugins.max_component_bytes = {} must be between 1024 and 1073741824 (1 GiB)",
                plugins.max_component_bytes
            ));
        }
        if !(100..=3_600_000).contains(&plugins.load_timeout_ms) {
            return Err(format!(
                "plugins.load_timeout_ms = {} must be between 100 and 3600000 (an hour)",
                plugins.load_timeout_ms
            ));
        }
        validate_limits(&self.plugin_limits(), plugins.max_memory_bytes)
            .map_err(|err| format!("plugins.{err}"))?;
        self.ingest.validate()?;
        self.jobs.validate()?;
        self.cleanup.validate()?;
        self.exports.validate()?;
        self.api.validate()
    }

    /// The limits every plugin gets unless its manifest says otherwise.
    pub fn plugin_limits(&self) -> Limits {
        Limits {
            memory_bytes: self.plugins.memory_bytes,
            timeout: Duration::from_millis(self.plugins.timeout_ms),
            output_bytes: self.plugins.output_bytes,
            http_response_bytes: self.plugins.http_response_bytes,
        }
    }

    /// The runtime this configuration asks for, caching compiled plugins in
    /// `compiled_cache_dir`.
    pub fn runtime_config(&self, compiled_cache_dir: &Path) -> RuntimeConfig {
        RuntimeConfig {
            allocator: Allocator::Pooling,
            max_instances: self.plugins.max_instances,
            max_memory_bytes: self.plugins.max_memory_bytes,
            compiled_cache_dir: Some(compiled_cache_dir.to_path_buf()),
            quarantine_after: self.plugins.quarantine_after,
            epoch_tick: Duration::from_millis(5),
            max_component_bytes: self.plugins.max_component_bytes,
        }
    }

    /// The configuration as TOML, every key present: what `wharf init` writes.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

impl IngestConfig {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    fn validate(&self) -> Result<(), String> {
        if self.file_last_modified_ms > Self::DAY_MS {
            return Err(format!(
                "ingest.file_last_modified_ms = {} must be between 0 and 86400000 (one day)",
                self.file_last_modified_ms
            ));
        }
        if self.max_file_size_bytes == 0 {
            return Err("ingest.max_file_size_bytes = 0 must be at least 1".into());
        }
        if !(100..=Self::DAY_MS).contains(&self.scan_interval_ms) {
            return Err(format!(
                "ingest.scan_interval_ms = {} must be between 100 and 86400000 (one day)",
                self.scan_interval_ms
            ));
        }
        if self.hash_threads > 1024 {
            return Err(format!(
                "ingest.hash_threads = {} must be between 0 (one per core) and 1024",
                self.hash_threads
            ));
        }
        Ok(())
    }

    /// Hashing threads to run: `hash_threads`, or the number of cores.
    pub fn threads(&self) -> usize {
        match self.hash_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults_and_defaults_are_valid() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        Config::default().validate().unwrap();
    }

    #[test]
    fn written_defaults_read_back_identically() {
        let text = Config::default().to_toml();
        assert!(text.contains("timeout_ms = 30000"), "{text}");
        assert!(text.contains("file_last_modified_ms = 10000"), "{text}");
        assert_eq!(Config::parse(&text).unwrap(), Config::default());
        // The export cache's policy is written out, and a policy appended
        // to the written defaults reads after it.
        assert!(text.contains("plugin = \"export-cache\""), "{text}");
        let appended =
            format!("{text}\n[[cleanup.policy]]\nname = \"a\"\nplugin = \"keep-last\"\n");
        let policies = Config::parse(&appended).unwrap().cleanup.policies;
        assert_eq!(
            policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["export-cache", "a"]
        );
        // `policy = []` is a cleanup of orphan GC only.
        let none = Config::parse("[cleanup]\npolicy = []\n").unwrap();
        assert!(none.cleanup.policies.is_empty());
    }

    #[test]
    fn a_policy_reads_kinds_attributes_and_params_of_any_scalar_type() {
        let config = Config::parse(
            "[[cleanup.policy]]\nname = \"main\"\nplugin = \"keep-last\"\nkinds = [\"capture\"]\n\
             attributes = { branch = \"main\" }\nparams = { keep = 3, min_age_ms = \"60000\" }\n",
        )
        .unwrap();
        let policy = &config.cleanup.policies[0];
        assert_eq!(policy.kinds, ["capture"]);
        assert_eq!(policy.attributes["branch"], "main");
        assert_eq!(policy.params["keep"].to_string(), "3");
        assert_eq!(policy.params["min_age_ms"].to_string(), "60000");
        let err = Config::parse("[[cleanup.policy]]\nname = \"x\"\nplugin = \"p\"\nkind = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kind"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_naming_them() {
        let err = Config::parse("[plugins]\ntimeout = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeout"), "{err}");
    }

    #[test]
    fn absurd_values_are_rejected_naming_the_key() {
        for (text, key) in [
            ("[plugins]\ntimeout_ms = 0", "timeout_ms"),
            ("[plugins]\nmemory_bytes = 10", "memory_bytes"),
            ("[plugins]\nmemory_bytes = 4294967296", "memory_bytes"),
            ("[plugins]\nmax_instances = 0", "max_instances"),
            ("[plugins]\nquarantine_after = 0", "quarantine_after"),
            ("[plugins]\noutput_bytes = 0", "output_bytes"),
            ("[plugins]\nmax_component_bytes = 0", "max_component_bytes"),
            ("[plugins]\nload_timeout_ms = 0", "load_timeout_ms"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(&format!("plugins.{key}")), "{text}: {err}");
        }
        for (text, key) in [
            (
                "[ingest]\nfile_last_modified_ms = 100000000",
                "file_last_modified_ms",
            ),
            ("[ingest]\nmax_file_size_bytes = 0", "max_file_size_bytes"),
            ("[ingest]\nscan_interval_ms = 0", "scan_interval_ms"),
            ("[ingest]\nhash_threads = 5000", "hash_threads"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(&format!("ingest.{key}")), "{text}: {err}");
        }
        for (text, key) in [
            ("[jobs]\nmax_attempts = 0", "max_attempts"),
            ("[jobs]\nbackoff_base_ms = 0", "backoff_base_ms"),
            (
                "[jobs]\nbackoff_cap_ms = 100\nbackoff_base_ms = 200",
                "backoff_cap_ms",
            ),
            ("[jobs]\nlease_ttl_ms = 10", "lease_ttl_ms"),
            ("[jobs]\nworkers = 100000", "workers"),
            ("[jobs]\ncleanup_interval_ms = 5", "cleanup_interval_ms"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(&format!("jobs.{key}")), "{text}: {err}");
        }
        for (text, key) in [
            (
                "[cleanup]\nmax_delete_percent = 0",
                "cleanup.max_delete_percent",
            ),
            (
                "[cleanup]\nmax_delete_percent = 101",
                "cleanup.max_delete_percent",
            ),
            (
                "[[cleanup.policy]]\nname = \"a\"\nplugin = \"ttl\"\nmax_delete_percent = 0",
                "cleanup.policy[0].max_delete_percent",
            ),
            (
                "[[cleanup.policy]]\nname = \"a\"\nplugin = \"ttl\"\nolder_than_ms = 0",
                "cleanup.policy[0].older_than_ms",
            ),
            (
                "[cleanup]\norphan_lifetime_ms = 999999999999",
                "cleanup.orphan_lifetime_ms",
            ),
            ("[cleanup]\nbatch_files = 0", "cleanup.batch_files"),
            (
                "[[cleanup.policy]]\nname = \"a\"\nplugin = \"keep-last\"\n[[cleanup.policy]]\nname = \"a\"\nplugin = \"ttl\"",
                "cleanup.policy[1].name",
            ),
            (
                "[[cleanup.policy]]\nname = \"a\"\nplugin = \"\"",
                "cleanup.policy[0].plugin",
            ),
            ("[exports]\ncache_ttl_ms = 0", "exports.cache_ttl_ms"),
            ("[exports]\nlease_ttl_ms = 1", "exports.lease_ttl_ms"),
            ("[api]\nbind = \"localhost\"", "api.bind"),
            ("[api]\nmax_in_flight = 0", "api.max_in_flight"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        assert!(JobsConfig::default().worker_count() >= 1);
        let err = Config::parse("[plugins]\ntimeout_ms = -1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeout_ms"), "{err}");
    }
}
