//! Retention: plan with the index, call the policy plugin, apply safely.
//!
//! [`plan`] pages the index into batches that never split an entity, keeps
//! the files a policy applies to (kinds, entity attributes), runs one
//! planner over all of them (then `finish`) and returns what the policy
//! would delete, with its reasons. [`apply`] deletes a plan in the
//! crash-safe order (row → `deleting` with its `events` row, unlink, row
//! removed), refusing, whatever the plugin said, every file that is leased,
//! held by an export, not `ready`, or not synced to a destination the policy
//! requires; the check and the mark are one write transaction.
//! [`run_policy`] is one policy's run with the deletion cap ([`Cap`]: a
//! share of the candidates, from a minimum number of them);
//! [`finish_deletions`] completes deletions a crash interrupted;
//! [`compare`] is the rehearsal of a candidate policy against the configured
//! ones.
//!
//! A policy with `older_than_ms` is shown only the files whose indexing,
//! modification and last access are all older than that (an indexed range
//! scan instead of every file); its cap then compares a plan with every
//! ready file, the set it was chosen from. Parameters the host provides
//! ([`HOST_PARAMS`], e.g. the export cache's TTL) are filled in from their
//! one place in `wharf.toml`.
//!
//! Invariant: a batch holds whole entities; the ids a plugin sees are
//! run-local (the runtime renumbers them and rejects unknown or repeated ids
//! as invalid output, failing the run), and every answer is mapped back to
//! index `FileId`s here. Nothing here deletes a file except through
//! [`Index::mark_deleting`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{CleanupConfig, Config};
use crate::index::{
    CandidateFlags, DeletionGuard, DeletionRequest, FileId, Index, JobId, NO_ENTITY, Refused,
    RetentionCursor, RetentionPage,
};
use crate::runtime::{
    Batch, CallError, Decided, Entity, ErrorClass, Params, Plugin, Registry, World,
};
use crate::store::DataDir;

/// Files marked, unlinked and removed per transaction when applying.
const APPLY_CHUNK: usize = 512;

/// A file the policy lets go, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub file: FileId,
    pub reason: String,
    pub size: u64,
    /// What the host knew of it when planning ([`CandidateFlags`]): a
    /// leased, export-held or unsynced file will be refused.
    pub flags: u8,
}

impl Planned {
    /// Whether the host would refuse it, as far as the page said.
    pub fn protected(&self) -> bool {
        self.flags & (CandidateFlags::LEASED | CandidateFlags::EXPORT_HELD) != 0
            || self.flags & CandidateFlags::SYNCED == 0
    }
}

/// Which files a policy applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Empty: every kind.
    pub kinds: Vec<String>,
    /// Each must be an attribute of the file's entity; empty: every file.
    pub attributes: Vec<(String, String)>,
    /// Only files whose indexing, modification and last access are all
    /// older than this many milliseconds (an indexed preselection).
    pub older_than_ms: Option<u64>,
}

impl Selection {
    fn keeps_entity(&self, attributes: &[(String, String)]) -> bool {
        self.attributes.iter().all(|want| attributes.contains(want))
    }
}

/// A configured policy, resolved against the loaded plugins.
#[derive(Clone)]
pub struct Policy {
    pub name: String,
    pub plugin: Arc<Plugin>,
    pub params: Params,
    pub selection: Selection,
    pub require_synced: Vec<String>,
    pub cap: Cap,
}

/// The deletion cap of a policy's run: a plan deleting more than `percent`
/// of the files it was chosen from stops the policy, unless there are
/// fewer than `min_candidates` of them (on a few files any share is a
/// handful: keep 1 of 3 is 67 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub percent: u32,
    pub min_candidates: u64,
}

impl Cap {
    /// The cap of `[cleanup]`, or of a policy overriding its percentage.
    pub fn of(config: &CleanupConfig, percent: Option<u32>) -> Cap {
        Cap {
            percent: percent.unwrap_or(config.max_delete_percent),
            min_candidates: config.max_delete_min_candidates,
        }
    }
}

/// A parameter the host provides to any retention plugin declaring it,
/// from its one place in `wharf.toml`. A policy may not set it itself.
pub struct HostParam {
    pub name: &'static str,
    /// Where it is set in `wharf.toml`.
    pub key: &'static str,
    pub value: fn(&Config) -> String,
}

/// The parameters the host provides.
pub const HOST_PARAMS: &[HostParam] = &[HostParam {
    name: "cache_ttl_ms",
    key: "exports.cache_ttl_ms",
    value: |config| config.exports.cache_ttl_ms.to_string(),
}];

/// Adds to `params` every [`HOST_PARAMS`] entry `plugin` declares; `at`
/// names where `params` were given, for the error when one of them is
/// given there.
pub fn with_host_params(
    at: &str,
    plugin: &Plugin,
    config: &Config,
    mut params: Params,
) -> Result<Params, PolicyError> {
    for host in HOST_PARAMS {
        if !plugin.info.params.iter().any(|spec| spec.name == host.name) {
            continue;
        }
        if params.iter().any(|(given, _)| given == host.name) {
            return Err(PolicyError::HostParam {
                at: at.to_owned(),
                key: host.name.to_owned(),
                from: host.key,
            });
        }
        params.push((host.name.to_owned(), (host.value)(config)));
    }
    Ok(params)
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("plugin", &self.plugin.name)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// A policy that does not fit the loaded plugins. `at` names where it was
/// given: `cleanup.policy[0]` in wharf.toml, or the command line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{at}.plugin = {plugin:?}: no plugin of that name is loaded; `wharf plugin list` shows them"
    )]
    UnknownPlugin { at: String, plugin: String },
    #[error("{at}: {plugin} is an {world} plugin; a policy needs a retention plugin")]
    NotRetention {
        at: String,
        plugin: String,
        world: &'static str,
    },
    #[error("{at}.params.{key}: plugin {plugin} has no parameter `{key}`; it takes: {known}")]
    UnknownParam {
        at: String,
        plugin: String,
        key: String,
        known: String,
    },
    #[error("{at}.params.{key}: plugin {plugin} requires it; give it a value")]
    MissingParam {
        at: String,
        plugin: String,
        key: String,
    },
    #[error("{at}.params.{key}: the host sets it from `{from}` in wharf.toml; set it there")]
    HostParam {
        at: String,
        key: String,
        from: &'static str,
    },
}

/// Checks every `[[cleanup.policy]]` against the loaded plugins: the plugin
/// exists and is a retention plugin, each parameter is one it declares, and
/// each parameter it requires is given (the host's own, [`HOST_PARAMS`],
/// filled in from `config`).
pub fn resolve_policies(config: &Config, registry: &Registry) -> Result<Vec<Policy>, PolicyError> {
    let cleanup = &config.cleanup;
    cleanup
        .policies
        .iter()
        .enumerate()
        .map(|(index, policy)| {
            let at = format!("cleanup.policy[{index}]");
            let Some(plugin) = registry.get(&policy.plugin) else {
                return Err(PolicyError::UnknownPlugin {
                    at,
                    plugin: policy.plugin.clone(),
                });
            };
            let params: Params = policy
                .params
                .iter()
                .map(|(key, value)| (key.clone(), value.to_string()))
                .collect();
            check_params(&at, plugin, &params)?;
            let params = with_host_params(&at, plugin, config, params)?;
            Ok(Policy {
                name: policy.name.clone(),
                plugin: plugin.clone(),
                params,
                selection: Selection {
                    kinds: policy.kinds.clone(),
                    attributes: policy
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    older_than_ms: policy.older_than_ms,
                },
                require_synced: policy.require_synced.clone(),
                cap: Cap::of(cleanup, policy.max_delete_percent),
            })
        })
        .collect()
}

/// Checks `params` against what `plugin` declares (its `describe`);
/// `at` names where they were given.
pub fn check_params(at: &str, plugin: &Plugin, params: &Params) -> Result<(), PolicyError> {
    if plugin.world != World::Retention {
        return Err(PolicyError::NotRetention {
            at: at.to_owned(),
            plugin: plugin.name.clone(),
            world: plugin.world.name(),
        });
    }
    let specs = &plugin.info.params;
    for (key, _) in params {
        if !specs.iter().any(|spec| &spec.name == key) {
            let known: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
            return Err(PolicyError::UnknownParam {
                at: at.to_owned(),
                plugin: plugin.name.clone(),
                key: key.clone(),
                known: if known.is_empty() {
                    "no parameters".into()
                } else {
                    known.join(", ")
                },
            });
        }
    }
    let host_given = |name: &str| HOST_PARAMS.iter().any(|host| host.name == name);
    if let Some(spec) = specs.iter().find(|spec| {
        spec.required && !host_given(&spec.name) && !params.iter().any(|(key, _)| key == &spec.name)
    }) {
        return Err(PolicyError::MissingParam {
            at: at.to_owned(),
            plugin: plugin.name.clone(),
            key: spec.name.clone(),
        });
    }
    Ok(())
}

/// Why a policy's run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("retention policy {plugin}: {error}")]
    Plugin { plugin: String, error: CallError },
    #[error("reading or writing the index: {0:#}")]
    Index(anyhow::Error),
    #[error(
        "policy {policy} would delete {planned} of its {candidates} files, more than its cap of {percent}%; \
         nothing was deleted. Check the policy's parameters (`wharf cleanup --dry-run` shows the plan); \
         if the plan is right, raise the cap in wharf.toml: `max_delete_percent` in this [[cleanup.policy]] \
         (for this policy only) or `cleanup.max_delete_percent` (for every policy; now {global}%). \
         Policies with fewer than `cleanup.max_delete_min_candidates` = {min} candidates are not capped"
    )]
    OverCap {
        policy: String,
        planned: u64,
        candidates: u64,
        percent: u32,
        global: u32,
        min: u64,
    },
    #[error(
        "policy {policy} requires files synced to {names:?}, which no destination is called; nothing was deleted"
    )]
    UnknownDestination { policy: String, names: Vec<String> },
    #[error("cancelled")]
    Cancelled,
}

impl RetentionError {
    /// Whether running again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RetentionError::Plugin { error, .. } => error.class() == ErrorClass::Transient,
            RetentionError::Index(_) => true,
            _ => false,
        }
    }
}

/// What a policy would delete, from the files it applies to.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Files the policy was shown.
    pub candidates: u64,
    pub candidate_bytes: u64,
    /// The files the candidates were chosen from, which the cap compares
    /// the plan with: the candidates, or with an age preselection every
    /// ready file.
    pub chosen_from: u64,
    pub planned: Vec<Planned>,
}

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.planned.iter().map(|p| p.size).sum()
    }

    /// Whether deleting it would exceed the cap.
    pub fn over_cap(&self, cap: Cap) -> bool {
        self.chosen_from >= cap.min_candidates
            && (self.planned.len() as u128) * 100
                > u128::from(self.chosen_from) * u128::from(cap.percent)
    }
}

/// Runs `plugin` over every ready file of the index that `selection`
/// keeps, `page_size` files per page (whole entities: a batch may be
/// larger), and returns what it would delete. `disk` is the directory whose
/// filesystem `disk.space` reports; `now_ms` decides which leases hold.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    index: &Index,
    plugin: &Plugin,
    params: &Params,
    selection: &Selection,
    disk: &Path,
    page_size: usize,
    now_ms: i64,
    cancel: &AtomicBool,
) -> Result<Plan, RetentionError> {
    let failed = |error| RetentionError::Plugin {
        plugin: plugin.name.clone(),
        error,
    };
    let mut session = plugin.plan_session(params, disk).map_err(failed)?;
    let mut plan = Plan::default();
    // What the run showed the plugin, for `finish`'s answers.
    let mut shown: HashMap<FileId, (u64, u8)> = HashMap::new();
    let mut feed = |page: RetentionPage| -> Result<(), RetentionError> {
        if cancel.load(Ordering::Relaxed) {
            return Err(RetentionError::Cancelled);
        }
        let page = select(page, selection);
        if page.files.is_empty() {
            return Ok(());
        }
        plan.candidates += page.files.len() as u64;
        plan.candidate_bytes += page.sizes.iter().sum::<u64>();
        for (i, file) in page.files.iter().enumerate() {
            shown.insert(*file, (page.sizes[i], page.flags[i]));
        }
        let decided = session.plan(&batch(page)).map_err(failed)?;
        plan.planned.extend(planned_files(&decided, &shown));
        Ok(())
    };
    match selection.older_than_ms {
        None => {
            let mut cursor = Some(RetentionCursor::START);
            while let Some(after) = cursor {
                let page = index
                    .retention_page(after, page_size, now_ms)
                    .map_err(RetentionError::Index)?;
                if page.files.is_empty() {
                    break;
                }
                cursor = page.next;
                feed(page)?;
            }
        }
        Some(older_than_ms) => {
            let cutoff = now_ms.saturating_sub(i64::try_from(older_than_ms).unwrap_or(i64::MAX));
            let mut stopped = None;
            index
                .for_each_aged_page(cutoff, page_size, now_ms, |page| match feed(page) {
                    Ok(()) => true,
                    Err(error) => {
                        stopped = Some(error);
                        false
                    }
                })
                .map_err(RetentionError::Index)?;
            if let Some(error) = stopped {
                return Err(error);
            }
        }
    }
    let decided = session.finish().map_err(failed)?;
    plan.planned.extend(planned_files(&decided, &shown));
    plan.chosen_from = match selection.older_than_ms {
        None => plan.candidates,
        Some(_) => index.ready_files().map_err(RetentionError::Index)?,
    };
    Ok(plan)
}

/// [`plan`] over every file, without cancellation: what the policy would
/// delete.
pub fn rehearse(
    index: &Index,
    plugin: &Plugin,
    params: &Params,
    disk: &Path,
    page_size: usize,
    now_ms: i64,
) -> Result<Vec<Planned>, RetentionError> {
    let never = AtomicBool::new(false);
    let selection = Selection::default();
    plan(
        index, plugin, params, &selection, disk, page_size, now_ms, &never,
    )
    .map(|plan| plan.planned)
}

fn planned_files<'a>(
    decided: &'a Decided,
    shown: &'a HashMap<FileId, (u64, u8)>,
) -> impl Iterator<Item = Planned> + 'a {
    decided.deletions.iter().map(|d| {
        let file = FileId(d.file as i64);
        // The runtime only lets a plugin name files it was shown.
        let (size, flags) = shown.get(&file).copied().unwrap_or((0, 0));
        Planned {
            file,
            reason: decided.reasons[d.reason as usize].clone(),
            size,
            flags,
        }
    })
}

/// The files of `page` that `selection` keeps, entities and kinds
/// renumbered so the page lists only those its files use.
fn select(page: RetentionPage, selection: &Selection) -> RetentionPage {
    if selection.kinds.is_empty() && selection.attributes.is_empty() {
        return page;
    }
    let keep_entity: Vec<bool> = page
        .entities
        .iter()
        .map(|e| selection.keeps_entity(&e.attributes))
        .collect();
    let keep_kind: Vec<bool> = page
        .kinds
        .iter()
        .map(|k| selection.kinds.is_empty() || selection.kinds.contains(k))
        .collect();
    let mut out = RetentionPage {
        next: page.next,
        ..RetentionPage::default()
    };
    let mut entity_slot: HashMap<u32, u32> = HashMap::new();
    let mut kind_slot: HashMap<u32, u32> = HashMap::new();
    for i in 0..page.files.len() {
        let (entity, kind) = (page.entity[i], page.kind[i]);
        let entity_kept = if entity == NO_ENTITY {
            selection.attributes.is_empty()
        } else {
            keep_entity[entity as usize]
        };
        if !entity_kept || !keep_kind[kind as usize] {
            continue;
        }
        let entity = if entity == NO_ENTITY {
            NO_ENTITY
        } else {
            *entity_slot.entry(entity).or_insert_with(|| {
                out.entities.push(page.entities[entity as usize].clone());
                (out.entities.len() - 1) as u32
            })
        };
        let kind = *kind_slot.entry(kind).or_insert_with(|| {
            out.kinds.push(page.kinds[kind as usize].clone());
            (out.kinds.len() - 1) as u32
        });
        out.files.push(page.files[i]);
        out.sizes.push(page.sizes[i]);
        out.created_ms.push(page.created_ms[i]);
        out.modified_ms.push(page.modified_ms[i]);
        out.last_access_ms.push(page.last_access_ms[i]);
        out.entity.push(entity);
        out.kind.push(kind);
        out.flags.push(page.flags[i]);
    }
    out
}

/// A page of the index as the plugin contract's batch, its ids the index's.
fn batch(page: RetentionPage) -> Batch {
    Batch {
        entities: page
            .entities
            .into_iter()
            .map(|e| Entity {
                name: e.name,
                version: e.version,
                last_export_ms: e.last_export_ms,
                attributes: e.attributes,
            })
            .collect(),
        kinds: page.kinds.into(),
        ids: page.files.iter().map(|f| f.0 as u64).collect(),
        sizes: page.sizes.into(),
        created_ms: page.created_ms.into(),
        modified_ms: page.modified_ms.into(),
        last_access_ms: page.last_access_ms.into(),
        entity: page.entity.into(),
        kind: page.kind.into(),
        flags: page.flags.into(),
    }
}

/// What applying a plan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// Deletions the host refused, by why.
    pub refused: Refused,
    /// Files marked `deleting` whose unlink failed (path: error); the next
    /// cleanup or fsck tries again.
    pub unlink_failed: Vec<String>,
}

/// Who applies a plan, for the audit log and the safety checks.
#[derive(Debug, Clone, Copy)]
pub struct ApplyAs<'a> {
    pub plugin: &'a str,
    pub job: Option<JobId>,
    pub require_synced: &'a [String],
    pub now_ms: i64,
}

/// Deletes what `planned` names, `APPLY_CHUNK` files at a time: each chunk
/// is marked `deleting` where still safe (with an `events` row per file),
/// unlinked, and its rows removed. A file named twice is deleted once.
/// Stops between chunks when `cancel` is set.
pub fn apply(
    index: &Index,
    data_dir: &DataDir,
    planned: &[Planned],
    who: &ApplyAs<'_>,
    cancel: &AtomicBool,
) -> Result<Applied, RetentionError> {
    let mut applied = Applied::default();
    let mut seen = HashSet::with_capacity(planned.len());
    let unique: Vec<&Planned> = planned.iter().filter(|p| seen.insert(p.file)).collect();
    let guard = DeletionGuard {
        plugin: who.plugin,
        job: who.job,
        require_synced: who.require_synced,
        now_ms: who.now_ms,
    };
    for chunk in unique.chunks(APPLY_CHUNK) {
        if cancel.load(Ordering::Relaxed) {
            return Err(RetentionError::Cancelled);
        }
        let requests: Vec<DeletionRequest<'_>> = chunk
            .iter()
            .map(|p| DeletionRequest {
                file: p.file,
                reason: &p.reason,
            })
            .collect();
        let (marked, refused) = index
            .mark_deleting(&requests, &guard)
            .map_err(RetentionError::Index)?;
        applied.refused.add(&refused);
        let mut removed = Vec::with_capacity(marked.len());
        for file in marked {
            match unlink(data_dir, &file.path) {
                Ok(()) => {
                    applied.deleted += 1;
                    applied.deleted_bytes += file.size;
                    removed.push(file.file);
                }
                Err(error) => applied
                    .unlink_failed
                    .push(format!("{}: {error}", file.path)),
            }
        }
        index
            .remove_deleted(&removed)
            .map_err(RetentionError::Index)?;
    }
    Ok(applied)
}

/// Removes a tracked file; one already gone counts as removed.
fn unlink(data_dir: &DataDir, path: &str) -> Result<(), String> {
    let real = data_dir.resolve(path)?;
    match std::fs::remove_file(&real) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

/// What [`finish_deletions`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// Index paths whose deletion was completed.
    pub finished: Vec<String>,
    /// Those that still could not be unlinked (path: error).
    pub failed: Vec<String>,
}

/// Completes every deletion a crash interrupted: a row still `deleting`
/// had its `events` row and its safety check when it was marked, so its
/// file is unlinked (if still there) and the row removed.
pub fn finish_deletions(index: &Index, data_dir: &DataDir) -> anyhow::Result<Finished> {
    let mut finished = Finished::default();
    let mut removed = Vec::new();
    for (file, path) in index.unfinished_deletions()? {
        match unlink(data_dir, &path) {
            Ok(()) => {
                removed.push(file);
                finished.finished.push(path);
            }
            Err(error) => finished.failed.push(format!("{path}: {error}")),
        }
    }
    index.remove_deleted(&removed)?;
    Ok(finished)
}

/// One policy's run: what it was shown, planned and deleted.
#[derive(Debug, Clone, Default)]
pub struct PolicyReport {
    pub policy: String,
    pub plugin: String,
    pub candidates: u64,
    pub planned: u64,
    pub applied: Applied,
}

/// Plans `policy` and applies the plan, unless it exceeds the policy's
/// [`Cap`] or names a destination that does not exist: then nothing is
/// deleted and the error says why.
pub fn run_policy(
    index: &Index,
    data_dir: &DataDir,
    policy: &Policy,
    config: &CleanupConfig,
    job: Option<JobId>,
    cancel: &AtomicBool,
) -> Result<PolicyReport, RetentionError> {
    let unknown = index
        .unknown_destinations(&policy.require_synced)
        .map_err(RetentionError::Index)?;
    if !unknown.is_empty() {
        return Err(RetentionError::UnknownDestination {
            policy: policy.name.clone(),
            names: unknown,
        });
    }
    let now = crate::index::now_ms();
    let plan = plan(
        index,
        &policy.plugin,
        &policy.params,
        &policy.selection,
        data_dir.root(),
        config.batch_files as usize,
        now,
        cancel,
    )?;
    if plan.over_cap(policy.cap) {
        return Err(RetentionError::OverCap {
            policy: policy.name.clone(),
            planned: plan.planned.len() as u64,
            candidates: plan.chosen_from,
            percent: policy.cap.percent,
            global: config.max_delete_percent,
            min: config.max_delete_min_candidates,
        });
    }
    let who = ApplyAs {
        plugin: &policy.plugin.name,
        job,
        require_synced: &policy.require_synced,
        now_ms: now,
    };
    let applied = apply(index, data_dir, &plan.planned, &who, cancel)?;
    Ok(PolicyReport {
        policy: policy.name.clone(),
        plugin: policy.plugin.name.clone(),
        candidates: plan.candidates,
        planned: plan.planned.len() as u64,
        applied,
    })
}

/// One side of a rehearsal: what a policy (or the configured ones
/// together) would delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Side {
    pub candidates: u64,
    pub files: u64,
    pub bytes: u64,
    /// Asked for, but the host would refuse them (leased, export-held, unsynced).
    pub refused: u64,
    /// Policies whose plan exceeds the deletion cap (they would delete
    /// nothing), each as "name (planned N of M files, cap P %)".
    pub over_cap: Vec<String>,
}

/// A rehearsal: the configured policies beside a candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    pub configured: Side,
    pub candidate: Option<Side>,
    /// Deleted only by the candidate / only by the configured policies
    /// (without a candidate: everything the configured ones delete), in
    /// index order.
    pub only_candidate: Vec<Planned>,
    pub only_configured: Vec<Planned>,
}

/// A policy's plan for a rehearsal: (name, plan, its cap).
pub type Rehearsed = (String, Plan, Cap);

/// What a set of plans would delete, the host's refusals and the cap
/// taken into account, by file.
fn side(plans: &[Rehearsed]) -> (Side, BTreeMap<FileId, Planned>) {
    let mut side = Side::default();
    let mut deleted = BTreeMap::new();
    for (name, plan, cap) in plans {
        side.candidates += plan.candidates;
        if plan.over_cap(*cap) {
            side.over_cap.push(format!(
                "{name} (planned {} of {} files, cap {} %)",
                plan.planned.len(),
                plan.chosen_from,
                cap.percent
            ));
            continue;
        }
        for planned in &plan.planned {
            if planned.protected() {
                side.refused += 1;
            } else {
                deleted
                    .entry(planned.file)
                    .or_insert_with(|| planned.clone());
            }
        }
    }
    side.files = deleted.len() as u64;
    side.bytes = deleted.values().map(|p| p.size).sum();
    (side, deleted)
}

/// Compares the configured policies' plans with a candidate's (if any):
/// files and bytes each would delete, and what only one of them deletes.
pub fn compare(configured: &[Rehearsed], candidate: Option<&Rehearsed>) -> Comparison {
    let (configured_side, old) = side(configured);
    let Some(candidate) = candidate else {
        // With nothing to compare with, everything is "only configured".
        return Comparison {
            configured: configured_side,
            only_configured: old.into_values().collect(),
            ..Comparison::default()
        };
    };
    let (candidate_side, new) = side(std::slice::from_ref(candidate));
    let only = |a: &BTreeMap<FileId, Planned>, b: &BTreeMap<FileId, Planned>| -> Vec<Planned> {
        a.iter()
            .filter(|(file, _)| !b.contains_key(file))
            .map(|(_, p)| p.clone())
            .collect()
    };
    Comparison {
        only_candidate: only(&new, &old),
        only_configured: only(&old, &new),
        configured: configured_side,
        candidate: Some(candidate_side),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(file: i64, size: u64, flags: u8) -> Planned {
        Planned {
            file: FileId(file),
            reason: format!("r{file}"),
            size,
            flags,
        }
    }

    fn plan_of(candidates: u64, n: i64) -> Plan {
        Plan {
            candidates,
            candidate_bytes: 0,
            chosen_from: candidates,
            planned: (0..n)
                .map(|i| planned(i, 1, CandidateFlags::SYNCED))
                .collect(),
        }
    }

    const fn cap(percent: u32, min_candidates: u64) -> Cap {
        Cap {
            percent,
            min_candidates,
        }
    }

    #[test]
    fn the_cap_allows_exactly_the_configured_share_of_candidates() {
        assert!(!plan_of(10, 5).over_cap(cap(50, 0)));
        assert!(plan_of(10, 6).over_cap(cap(50, 0)));
        assert!(plan_of(3, 2).over_cap(cap(50, 0)));
        assert!(!plan_of(3, 3).over_cap(cap(100, 0)));
        assert!(!plan_of(0, 0).over_cap(cap(1, 0)));
    }

    /// Regression: the 50 % default stopped keep-last keeping 1 of 3.
    #[test]
    fn the_cap_spares_plans_over_fewer_than_the_minimum_of_candidates() {
        assert!(!plan_of(3, 2).over_cap(cap(50, 10)), "keep 1 of 3");
        assert!(!plan_of(9, 9).over_cap(cap(50, 10)));
        assert!(
            plan_of(10, 6).over_cap(cap(50, 10)),
            "from 10 candidates on"
        );
        // With an age preselection the plan is measured against every
        // ready file, not the few old ones it was shown.
        let mut aged = plan_of(4, 4);
        aged.chosen_from = 100;
        assert!(!aged.over_cap(cap(50, 10)));
    }

    #[test]
    fn a_comparison_lists_what_only_one_side_deletes_without_refused_files() {
        const S: u8 = CandidateFlags::SYNCED;
        let old = Plan {
            candidates: 10,
            candidate_bytes: 100,
            chosen_from: 10,
            planned: vec![
                planned(1, 10, S),
                planned(2, 20, S),
                planned(3, 5, S | CandidateFlags::LEASED),
            ],
        };
        let new = Plan {
            candidates: 10,
            candidate_bytes: 100,
            chosen_from: 10,
            planned: vec![planned(2, 20, S), planned(4, 40, S), planned(5, 1, 0)],
        };
        let c = compare(
            &[("old".into(), old, cap(50, 10))],
            Some(&("new".into(), new, cap(50, 10))),
        );
        assert_eq!(
            (c.configured.files, c.configured.bytes, c.configured.refused),
            (2, 30, 1)
        );
        let candidate = c.candidate.unwrap();
        assert_eq!(
            (candidate.files, candidate.bytes, candidate.refused),
            (2, 60, 1)
        );
        assert_eq!(
            c.only_candidate
                .iter()
                .map(|p| p.file.0)
                .collect::<Vec<_>>(),
            [4]
        );
        assert_eq!(
            c.only_configured
                .iter()
                .map(|p| p.file.0)
                .collect::<Vec<_>>(),
            [1]
        );
    }

    #[test]
    fn a_rehearsal_names_what_a_capped_policy_planned() {
        let c = compare(&[("keep".into(), plan_of(10, 6), cap(50, 10))], None);
        assert_eq!(c.configured.files, 0, "a capped policy deletes nothing");
        assert_eq!(
            c.configured.over_cap,
            ["keep (planned 6 of 10 files, cap 50 %)"]
        );
    }
}
