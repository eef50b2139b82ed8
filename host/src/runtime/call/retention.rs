//! Retention runs: one instance and one `planner` for a whole run, fed
//! batches, each call with its own deadline, then `finish`.
//!
//! Candidates get run-local ids (0, 1, 2, … across the run) before they cross
//! the boundary, so checking an answer is a range check and a bit per file,
//! and a plugin cannot name any file the run did not show it. Every answer
//! is checked: each file at most once in the whole run, only files of the
//! batch (of the run, for `finish`), reasons that exist and are short.

use std::path::Path;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Resource, ResourceAny};

use super::{CallError, CallState, Grants, Params, entered};
use crate::runtime::bindings::retention::Retention;
use crate::runtime::bindings::{Decisions, Deletion, Entity};
use crate::runtime::host::HostBatch;
use crate::runtime::registry::{Plugin, WorldPre};

/// One retention batch, in columns: entry `i` of every column is file `i`.
/// The plugin reads it through the `batches` interface, column by column;
/// it sees the files as run-local ids, never `ids`. The columns are shared
/// (`Arc`), so lending a batch to a plugin, and a column into its memory,
/// copies nothing on the host.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The entities of the files, each once.
    pub entities: Arc<[Entity]>,
    /// The kinds of the files, each once.
    pub kinds: Arc<[String]>,
    /// The caller's id of each file; deletions come back in these.
    pub ids: Arc<[u64]>,
    pub sizes: Arc<[u64]>,
    pub created_ms: Arc<[i64]>,
    pub modified_ms: Arc<[i64]>,
    /// 0 when never read for an export or sync.
    pub last_access_ms: Arc<[i64]>,
    /// Index into `entities`, or `u32::MAX` for a file of no entity.
    pub entity: Arc<[u32]>,
    /// Index into `kinds`.
    pub kind: Arc<[u32]>,
    /// Bits: 1 synced to every required destination, 2 held by an export
    /// being made or downloaded, 4 leased (the contract's `batch.flags`,
    /// with bit 2 as the SDK's `FileFlags::EXPORT_HELD` states it).
    pub flags: Arc<[u8]>,
}

/// Longest reason kept, in bytes; it goes to the audit log.
const MAX_REASON: usize = 1024;
/// Reasons an answer may carry beyond one per deletion.
const SPARE_REASONS: usize = 16;

/// What a planner let go, in the caller's ids.
#[derive(Debug, Clone, Default)]
pub struct Decided {
    pub reasons: Vec<String>,
    /// `file` is the id the caller gave the candidate; `reason` indexes
    /// `reasons`.
    pub deletions: Vec<Deletion>,
}

/// A retention run on one instance (see [`Plugin::plan_session`]).
pub struct PlanSession<'a> {
    plugin: &'a Plugin,
    store: Store<CallState>,
    instance: Retention,
    planner: ResourceAny,
    /// The caller's ids of each batch of the run (shared with the batch,
    /// never copied), with the run-local id of the first.
    batches: Vec<(u64, Arc<[u64]>)>,
    /// Run-local ids handed out so far.
    len: u64,
    /// One bit per run-local id: already named for deletion.
    named: Vec<u64>,
    broken: bool,
    finished: bool,
}

impl Plugin {
    /// Starts a retention run: instantiates the plugin once and opens its
    /// planner with `params` (`invalid-params` here stops the run before any
    /// batch). `disk` is a directory on the filesystem whose space the
    /// plugin's `disk.space` reports.
    pub fn plan_session(&self, params: &Params, disk: &Path) -> Result<PlanSession<'_>, CallError> {
        let WorldPre::Retention(pre) = &self.pre else {
            return Err(self.wrong_world("retention"));
        };
        self.check_quarantine()?;
        let span = self.span("open");
        let _entered = span.enter();
        let grants = Grants {
            disk: Some(disk.to_path_buf()),
            ..Grants::default()
        };
        let mut store = self.new_store(grants);
        let started = self.arm(&mut store);
        let opened = entered(&mut store, |store| pre.instantiate(store)).and_then(|instance| {
            let planner = instance
                .wharf_plugin_retention_policy()
                .planner()
                .call_open(&mut store, params)?;
            Ok(planner.map(|planner| (instance, planner)))
        });
        let (instance, planner) = self.settle(opened, store.data_mut(), started)?;
        Ok(PlanSession {
            plugin: self,
            store,
            instance,
            planner,
            batches: Vec::new(),
            len: 0,
            named: Vec::new(),
            broken: false,
            finished: false,
        })
    }
}

/// Every column of a batch describes the same files.
fn check_columns(batch: &Batch) -> Result<(), CallError> {
    let len = batch.ids.len();
    let lengths = [
        batch.sizes.len(),
        batch.created_ms.len(),
        batch.modified_ms.len(),
        batch.last_access_ms.len(),
        batch.entity.len(),
        batch.kind.len(),
        batch.flags.len(),
    ];
    if lengths.iter().any(|&l| l != len) {
        return Err(CallError::Host(format!(
            "a retention batch's columns differ in length ({len} ids, others {lengths:?})"
        )));
    }
    Ok(())
}

impl PlanSession<'_> {
    /// Plans one batch. The plugin sees its files as run-local ids; the
    /// deletions come back in the batch's `ids`. The session keeps a share
    /// of the batch's ids (for `finish`'s answers), nothing else. After a
    /// fault the instance is gone and every later call of the session fails.
    pub fn plan(&mut self, batch: &Batch) -> Result<Decided, CallError> {
        self.usable()?;
        check_columns(batch)?;
        let first = self.len;
        self.len += batch.ids.len() as u64;
        self.batches.push((first, batch.ids.clone()));
        self.named.resize((self.len as usize).div_ceil(64), 0);
        let lent = HostBatch {
            first_id: first,
            len: self.len - first,
            batch: batch.clone(),
        };
        let handle = self
            .store
            .data_mut()
            .table
            .push(lent)
            .map_err(|err| CallError::Host(format!("cannot lend the batch: {err}")))?;
        let borrowed = Resource::<HostBatch>::new_borrow(handle.rep());
        let plugin = self.plugin;
        let span = plugin.span("plan");
        let _entered = span.enter();
        let started = plugin.arm(&mut self.store);
        let outcome = self
            .instance
            .wharf_plugin_retention_policy()
            .planner()
            .call_plan(&mut self.store, self.planner, borrowed);
        let _ = self.store.data_mut().table.delete(handle);
        let result = plugin.settle(outcome, self.store.data_mut(), started);
        self.check(result, first)
    }

    /// Ends the run: the planner may name any file of the run not named yet.
    pub fn finish(&mut self) -> Result<Decided, CallError> {
        self.usable()?;
        self.finished = true;
        let plugin = self.plugin;
        let span = plugin.span("finish");
        let _entered = span.enter();
        let started = plugin.arm(&mut self.store);
        let outcome = self
            .instance
            .wharf_plugin_retention_policy()
            .planner()
            .call_finish(&mut self.store, self.planner);
        let result = plugin.settle(outcome, self.store.data_mut(), started);
        self.check(result, 0)
    }

    fn usable(&self) -> Result<(), CallError> {
        if self.broken {
            return Err(CallError::Trap(
                "an earlier call of this retention run failed the plugin".into(),
            ));
        }
        if self.finished {
            return Err(CallError::Host("this retention run has finished".into()));
        }
        self.plugin.check_quarantine()
    }

    /// Validates an answer naming run-local ids from `first` on and maps it
    /// back to the caller's ids. A plugin fault breaks the session.
    fn check(
        &mut self,
        result: Result<Decisions, CallError>,
        first: u64,
    ) -> Result<Decided, CallError> {
        let mut decisions = match result {
            Ok(decisions) => decisions,
            Err(error) => {
                self.broken = error.is_trap();
                return Err(error);
            }
        };
        match self.validate(&mut decisions, first) {
            Ok(()) => Ok(Decided {
                deletions: decisions.deletions,
                reasons: decisions.reasons,
            }),
            Err(reason) => {
                self.broken = true;
                Err(self.plugin.invalid_output(reason))
            }
        }
    }

    /// The caller's id of run-local `id`, which [`Self::validate`] found in
    /// the run: in the last batch (every answer of `plan`), found directly;
    /// in an earlier one (only `finish` names those), by a binary search.
    fn caller_id(&self, id: u64) -> u64 {
        let batch = match self.batches.last() {
            Some((first, _)) if *first <= id => self.batches.len(),
            _ => self.batches.partition_point(|(first, _)| *first <= id),
        };
        let (first, ids) = &self.batches[batch - 1];
        ids[(id - first) as usize]
    }

    /// Checks an answer naming run-local ids from `first` on, and rewrites
    /// its deletions into the caller's ids.
    fn validate(&mut self, decisions: &mut Decisions, first: u64) -> Result<(), String> {
        let Decisions { reasons, deletions } = decisions;
        if reasons.len() > deletions.len() + SPARE_REASONS {
            return Err(format!(
                "{} reasons for {} deletions; give each reason once",
                reasons.len(),
                deletions.len()
            ));
        }
        if let Some(long) = reasons.iter().find(|r| r.len() > MAX_REASON) {
            return Err(format!(
                "a reason of {} bytes; at most {MAX_REASON}",
                long.len()
            ));
        }
        let end = self.len;
        for deletion in deletions.iter_mut() {
            let id = deletion.file;
            if id < first || id >= end {
                return Err(format!(
                    "asked to delete file {id}, which is not in its batch (ids {first} to {})",
                    end.saturating_sub(1)
                ));
            }
            if deletion.reason as usize >= reasons.len() {
                return Err(format!(
                    "deletion of file {id} names reason {} of {}",
                    deletion.reason,
                    reasons.len()
                ));
            }
            let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
            if self.named[word] & bit != 0 {
                return Err(format!("named file {id} for deletion twice"));
            }
            self.named[word] |= bit;
            deletion.file = self.caller_id(id);
        }
        Ok(())
    }
}
