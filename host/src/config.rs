//! `wharf.toml`: every setting, its default (defined here, once) and its
//! validation. A missing file means all defaults; an unknown key, a zero or
//! an absurd value is rejected with a message naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    pub sync: SyncConfig,
    /// The sync destinations, each `[[destination]]` (default none: nothing
    /// is synced). Left out of the written defaults when empty, so an
    /// operator can append `[[destination]]` tables to what `wharf init`
    /// wrote.
    #[serde(rename = "destination", skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<DestinationConfig>,
    /// Named credentials a destination refers to, each `[credential.NAME]`
    /// (default none).
    #[serde(rename = "credential", skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, CredentialConfig>,
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
    /// the next reload (default 5). A call whose time ran out while the host
    /// waited on a destination's network does not count.
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
    /// How long a job that can pause (a sync lane, between two files) keeps
    /// its worker while another job waits for one, in milliseconds; then it
    /// makes way and is queued again behind the waiting job, so a long sync
    /// never holds an ingest, a cleanup or an export back (default 2000).
    pub time_slice_ms: u64,
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
            time_slice_ms: 2_000,
        }
    }
}

impl JobsConfig {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    fn validate(&self) -> Result<(), String> {
        let ranges: [(&str, u64, u64, u64); 8] = [
            ("workers", u64::from(self.workers), 0, 1024),
            ("max_attempts", u64::from(self.max_attempts), 1, 1000),
            ("backoff_base_ms", self.backoff_base_ms, 1, Self::DAY_MS),
            ("backoff_cap_ms", self.backoff_cap_ms, 1, 7 * Self::DAY_MS),
            ("lease_ttl_ms", self.lease_ttl_ms, 300, Self::DAY_MS),
            ("drain_timeout_ms", self.drain_timeout_ms, 0, Self::DAY_MS),
            ("stagger_ms", self.stagger_ms, 0, Self::DAY_MS),
            ("time_slice_ms", self.time_slice_ms, 10, Self::DAY_MS),
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

/// `[sync]`: how files reach the `[[destination]]`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Sync jobs uploading at once, each one file at a time; 0 means half
    /// the cores, at least one (default 0). They run on the jobs pool
    /// (`jobs.workers`), so more than that many only wait.
    pub workers: u32,
    /// How often the daemon looks for files due to sync, in milliseconds;
    /// an ingest that adds files also starts a sync (default 10000).
    pub interval_ms: u64,
    /// A file modified less than this many milliseconds ago is not synced
    /// yet: it waits for a later sync (default 10000).
    pub file_last_modified_ms: u64,
    /// Attempts of one file to one destination that fail transiently
    /// (network, server errors) before it is `failed` for good; the delay
    /// between them follows `jobs.backoff_base_ms` and `jobs.backoff_cap_ms`
    /// (default 100: with the one-hour cap, about four days).
    pub max_attempts: u32,
    /// How often throughput (files, bytes, rate, failures) is logged while
    /// files sync, in milliseconds (default 60000).
    pub log_interval_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            workers: 0,
            interval_ms: 10_000,
            file_last_modified_ms: 10_000,
            max_attempts: 100,
            log_interval_ms: 60_000,
        }
    }
}

impl SyncConfig {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    fn validate(&self) -> Result<(), String> {
        let ranges: [(&str, u64, u64, u64); 5] = [
            ("workers", u64::from(self.workers), 0, 1024),
            ("interval_ms", self.interval_ms, 100, Self::DAY_MS),
            (
                "file_last_modified_ms",
                self.file_last_modified_ms,
                0,
                Self::DAY_MS,
            ),
            ("max_attempts", u64::from(self.max_attempts), 1, 100_000),
            ("log_interval_ms", self.log_interval_ms, 100, Self::DAY_MS),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(format!(
                    "sync.{key} = {value} must be between {min} and {max}"
                ));
            }
        }
        Ok(())
    }

    /// Sync jobs to run: `workers`, or half the cores, at least one.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1),
            n => n as usize,
        }
    }
}

/// What a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    /// A directory on this machine (`path`).
    Local,
    /// An S3-compatible bucket (`endpoint`, `bucket`, `prefix`, `region`,
    /// `path_style`, `credential`).
    S3,
    /// Any HTTP(S) server taking PUTs under a base `url` (optionally with a
    /// bearer `credential`).
    Http,
}

impl DestinationKind {
    /// The uploader plugin used unless `plugin` names another.
    pub fn default_plugin(self) -> &'static str {
        match self {
            DestinationKind::Local => "local-dir",
            DestinationKind::S3 => "s3",
            DestinationKind::Http => "http-put",
        }
    }
}

impl std::fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DestinationKind::Local => "local",
            DestinationKind::S3 => "s3",
            DestinationKind::Http => "http",
        })
    }
}

/// `[[destination]]`: where files are synced to. Which keys apply depends
/// on `kind`; a key of another kind is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// The destination's name, unique, used in `wharf sync --destination`,
    /// status and logs.
    pub name: String,
    /// `local`, `s3` or `http`.
    pub kind: DestinationKind,
    /// The uploader plugin (default: `local-dir` for local, `s3` for s3,
    /// `http-put` for http).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The plugin's parameters (default empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamValue>,
    /// Retention never deletes a file not yet synced here (default false).
    #[serde(default)]
    pub required: bool,
    /// local: the directory files are copied into (created if missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// s3: the endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://127.0.0.1:9000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// s3: the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// s3: a key prefix inside the bucket, without leading or trailing `/`
    /// (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// s3: the signing region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// s3: address the bucket as `endpoint/bucket` instead of
    /// `bucket.endpoint-host` (default false; most self-hosted stores want true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// http: the base URL files are PUT under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// s3 (required) and http (optional): the `[credential.NAME]` to sign with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl DestinationConfig {
    /// The uploader plugin it uses.
    pub fn plugin_name(&self) -> &str {
        self.plugin
            .as_deref()
            .unwrap_or_else(|| self.kind.default_plugin())
    }

    /// The signing region of an s3 destination.
    pub fn region_or_default(&self) -> &str {
        self.region.as_deref().unwrap_or("us-east-1")
    }

    fn validate(
        &self,
        key: &str,
        credentials: &BTreeMap<String, CredentialConfig>,
    ) -> Result<(), String> {
        if self.name.trim().is_empty()
            || self.name.len() > 128
            || self.name.chars().any(|c| c.is_control() || c == '/')
        {
            return Err(format!(
                "{key}.name = {:?} must be 1 to 128 characters without / or control characters",
                self.name
            ));
        }
        if self.plugin.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(format!(
                "{key}.plugin must name an uploader plugin (see `wharf plugin list`) or be left out"
            ));
        }
        let given: [(&str, bool); 8] = [
            ("path", self.path.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("bucket", self.bucket.is_some()),
            ("prefix", self.prefix.is_some()),
            ("region", self.region.is_some()),
            ("path_style", self.path_style.is_some()),
            ("url", self.url.is_some()),
            ("credential", self.credential.is_some()),
        ];
        let allowed: &[&str] = match self.kind {
            DestinationKind::Local => &["path"],
            DestinationKind::S3 => &[
                "endpoint",
                "bucket",
                "prefix",
                "region",
                "path_style",
                "credential",
            ],
            DestinationKind::Http => &["url", "credential"],
        };
        if let Some((extra, _)) = given
            .iter()
            .find(|(name, set)| *set && !allowed.contains(name))
        {
            return Err(format!(
                "{key}.{extra} does not apply to a destination of kind {}; its keys are: {}",
                self.kind,
                allowed.join(", ")
            ));
        }
        match self.kind {
            DestinationKind::Local => match &self.path {
                None => Err(format!(
                    "{key}.path is missing: a local destination needs the directory to copy into"
                )),
                Some(path) if !path.is_absolute() => Err(format!(
                    "{key}.path = {:?} must be an absolute path",
                    path.display().to_string()
                )),
                Some(_) => Ok(()),
            },
            DestinationKind::S3 => self.validate_s3(key, credentials),
            DestinationKind::Http => {
                let Some(url) = &self.url else {
                    return Err(format!(
                        "{key}.url is missing: an http destination needs the base URL to PUT under"
                    ));
                };
                check_http_url(&format!("{key}.url"), url)?;
                self.check_credential(key, credentials, false)
            }
        }
    }

    fn validate_s3(
        &self,
        key: &str,
        credentials: &BTreeMap<String, CredentialConfig>,
    ) -> Result<(), String> {
        let Some(endpoint) = &self.endpoint else {
            return Err(format!(
                "{key}.endpoint is missing: an s3 destination needs its endpoint URL, e.g. https://s3.us-east-1.amazonaws.com"
            ));
        };
        let url = check_http_url(&format!("{key}.endpoint"), endpoint)?;
        if url.path() != "/" || url.query().is_some() {
            return Err(format!(
                "{key}.endpoint = {endpoint:?} must be a scheme, host and port only; put the bucket in bucket and the key prefix in prefix"
            ));
        }
        let Some(bucket) = &self.bucket else {
            return Err(format!("{key}.bucket is missing"));
        };
        // The S3 bucket naming rules, enough to keep a URL well formed.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && bucket
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(format!(
                "{key}.bucket = {bucket:?} is not a valid bucket name: 3 to 63 lower-case letters, digits, - and ., starting with a letter or digit"
            ));
        }
        if let Some(prefix) = &self.prefix {
            let prefix_ok = !prefix.starts_with('/')
                && !prefix.ends_with('/')
                && !prefix.contains("//")
                && prefix.len() <= 512
                && !prefix.chars().any(|c| c.is_control() || c == '\\');
            if !prefix_ok {
                return Err(format!(
                    "{key}.prefix = {prefix:?} must be /-separated names without a leading or trailing /"
                ));
            }
        }
        if let Some(region) = &self.region {
            let region_ok = !region.is_empty()
                && region.len() <= 64
                && region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !region_ok {
                return Err(format!(
                    "{key}.region = {region:?} must be a region name such as us-east-1"
                ));
            }
        }
        self.check_credential(key, credentials, true)
    }

    fn check_credential(
        &self,
        key: &str,
        credentials: &BTreeMap<String, CredentialConfig>,
        required: bool,
    ) -> Result<(), String> {
        let Some(name) = &self.credential else {
            return if required {
                Err(format!(
                    "{key}.credential is missing: name a [credential.NAME] table holding its access keys"
                ))
            } else {
                Ok(())
            };
        };
        let Some(credential) = credentials.get(name) else {
            return Err(format!(
                "{key}.credential = {name:?} names no [credential.{name}] table"
            ));
        };
        let wants_keys = self.kind == DestinationKind::S3;
        match (wants_keys, credential.is_bearer()) {
            (true, Some(true)) => Err(format!(
                "{key}.credential = {name:?} is a bearer token; an s3 destination needs access keys (access_key_env and secret_key_env, or a file)"
            )),
            (false, Some(false)) => Err(format!(
                "{key}.credential = {name:?} holds access keys; an http destination signs with a bearer token (token_env, or a file)"
            )),
            _ => Ok(()),
        }
    }
}

/// A URL of `http` or `https` with a host.
fn check_http_url(key: &str, text: &str) -> Result<url::Url, String> {
    let url =
        url::Url::parse(text).map_err(|err| format!("{key} = {text:?} is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{key} = {text:?} must be an http:// or https:// URL with a host"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{key} = {text:?} must not carry a user or password; use a [credential.NAME] table"
        ));
    }
    Ok(url)
}

/// `[credential.NAME]`: a secret, read from the environment or from a file
/// only its owner can read (mode 0600), when a sync starts. The
/// configuration holds where the secret is, never the secret itself; it is
/// never logged, stored in the index or handed to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// The environment variable holding the S3 access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_env: Option<String>,
    /// The environment variable holding the S3 secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_env: Option<String>,
    /// The environment variable holding a session token for temporary S3
    /// credentials (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_env: Option<String>,
    /// The environment variable holding a bearer token (http destinations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// A TOML file of mode 0600 with `access_key` and `secret_key` (and
    /// optionally `session_token`), or `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl CredentialConfig {
    /// Some(true) for a bearer token, Some(false) for access keys, None
    /// when only the file knows.
    pub fn is_bearer(&self) -> Option<bool> {
        if self.token_env.is_some() {
            Some(true)
        } else if self.access_key_env.is_some() {
            Some(false)
        } else {
            None
        }
    }

    fn validate(&self, key: &str) -> Result<(), String> {
        let keys = self.access_key_env.is_some() || self.secret_key_env.is_some();
        let sources = [keys, self.token_env.is_some(), self.file.is_some()];
        if sources.iter().filter(|set| **set).count() != 1 {
            return Err(format!(
                "{key} must have exactly one source: access_key_env and secret_key_env, token_env, or file"
            ));
        }
        if keys && (self.access_key_env.is_none() || self.secret_key_env.is_none()) {
            return Err(format!(
                "{key} needs both access_key_env and secret_key_env"
            ));
        }
        if self.session_token_env.is_some() && !keys {
            return Err(format!(
                "{key}.session_token_env goes with access_key_env and secret_key_env"
            ));
        }
        if let Some(file) = &self.file
            && !file.is_absolute()
        {
            return Err(format!(
                "{key}.file = {:?} must be an absolute path",
                file.display().to_string()
            ));
        }
        Ok(())
    }
}

fn validate_destinations(
    destinations: &[DestinationConfig],
    credentials: &BTreeMap<String, CredentialConfig>,
) -> Result<(), String> {
    for (name, credential) in credentials {
        credential.validate(&format!("credential.{name}"))?;
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, destination) in destinations.iter().enumerate() {
        let key = format!("destination[{i}]");
        destination.validate(&key, credentials)?;
        if !names.insert(destination.name.as_str()) {
            return Err(format!(
                "{key}.name = {:?} is used by an earlier destination; names must be unique",
                destination.name
            ));
        }
    }
    Ok(())
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
        self.api.validate()?;
        self.sync.validate()?;
        validate_destinations(&self.destinations, &self.credentials)
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

    #[test]
    fn destinations_read_per_kind_with_plugin_defaults_and_survive_the_written_defaults() {
        let text = format!(
            "{}\n[[destination]]\nname = \"backup\"\nkind = \"local\"\npath = \"/srv/backup\"\nrequired = true\n\
             [[destination]]\nname = \"s3\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"wharf\"\n\
             path_style = true\ncredential = \"minio\"\nparams = {{ part_size = 8388608 }}\n\
             [credential.minio]\naccess_key_env = \"K\"\nsecret_key_env = \"S\"\n",
            Config::default().to_toml()
        );
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.destinations.len(), 2);
        assert_eq!(config.destinations[0].plugin_name(), "local-dir");
        assert!(config.destinations[0].required);
        assert_eq!(config.destinations[1].plugin_name(), "s3");
        assert_eq!(config.destinations[1].region_or_default(), "us-east-1");
        assert_eq!(
            config.destinations[1].params["part_size"].to_string(),
            "8388608"
        );
        // What init would write with them reads back the same.
        assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn bad_destinations_and_credentials_are_rejected_naming_the_key() {
        let s3 = "[[destination]]\nname = \"a\"\nkind = \"local\"\npath = \"/a\"\n[[destination]]\nname = \"s\"\nkind = \"s3\"\n";
        let keys = "\n[credential.c]\naccess_key_env = \"K\"\nsecret_key_env = \"S\"\n";
        for (text, key) in [
            ("[[destination]]\nname = \"a\"\nkind = \"local\"\n".to_owned(), "destination[0].path"),
            ("[[destination]]\nname = \"a\"\nkind = \"local\"\npath = \"rel\"\n".to_owned(), "destination[0].path"),
            ("[[destination]]\nname = \"a\"\nkind = \"local\"\npath = \"/a\"\nbucket = \"b\"\n".to_owned(), "destination[0].bucket"),
            ("[[destination]]\nname = \"\"\nkind = \"local\"\npath = \"/a\"\n".to_owned(), "destination[0].name"),
            ("[[destination]]\nname = \"a\"\nkind = \"ftp\"\n".to_owned(), "kind"),
            (format!("{s3}endpoint = \"http://h:9000\"\ncredential = \"c\"{keys}"), "destination[1].bucket"),
            (format!("{s3}endpoint = \"ftp://h\"\nbucket = \"bkt\"\ncredential = \"c\"{keys}"), "destination[1].endpoint"),
            (format!("{s3}endpoint = \"http://h/x\"\nbucket = \"bkt\"\ncredential = \"c\"{keys}"), "destination[1].endpoint"),
            (format!("{s3}endpoint = \"http://h\"\nbucket = \"B_ad\"\ncredential = \"c\"{keys}"), "destination[1].bucket"),
            (format!("{s3}endpoint = \"http://h\"\nbucket = \"bkt\"\nprefix = \"/p/\"\ncredential = \"c\"{keys}"), "destination[1].prefix"),
            (format!("{s3}endpoint = \"http://h\"\nbucket = \"bkt\"{keys}"), "destination[1].credential"),
            (format!("{s3}endpoint = \"http://h\"\nbucket = \"bkt\"\ncredential = \"nope\"{keys}"), "destination[1].credential"),
            (format!("{s3}endpoint = \"http://h\"\nbucket = \"bkt\"\ncredential = \"c\"\n[credential.c]\ntoken_env = \"T\"\n"), "destination[1].credential"),
            ("[credential.c]\naccess_key_env = \"K\"\n".to_owned(), "credential.c"),
            ("[credential.c]\nfile = \"rel.toml\"\n".to_owned(), "credential.c.file"),
            ("[credential.c]\ntoken_env = \"T\"\nfile = \"/k.toml\"\n".to_owned(), "credential.c"),
            ("[[destination]]\nname = \"a\"\nkind = \"local\"\npath = \"/a\"\n[[destination]]\nname = \"a\"\nkind = \"local\"\npath = \"/b\"\n".to_owned(), "destination[1].name"),
            ("[sync]\nmax_attempts = 0".to_owned(), "sync.max_attempts"),
            ("[sync]\ninterval_ms = 1".to_owned(), "sync.interval_ms"),
        ] {
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        assert!(SyncConfig::default().worker_count() >= 1);
    }
}
