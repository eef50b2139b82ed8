//! Retention policies: a [`Planner`] per run, fed [`Batch`]es of candidates
//! (read column by column; [`Batch::files`] reads them as [`Candidate`]s),
//! and [`Decisions`] naming the files that may go, each with a reason.

use std::cell::{OnceCell, RefCell};

use crate::__bindings::retention::exports::wharf::plugin::retention_policy as exports;
#[cfg(target_arch = "wasm32")]
use crate::__bindings::retention::wharf::plugin::batches::Batch as HostBatch;
use crate::{Decisions, Deletion, Entity, Params, PluginError, Retention};

/// The `entity` column's value for a file of no entity.
pub const NO_ENTITY: u32 = u32::MAX;

/// What the host knows of a candidate (the `flags` column's bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileFlags(pub u8);

impl FileFlags {
    /// A verified copy exists on every destination marked required.
    pub const SYNCED: u8 = 1;
    /// An export being written or downloaded holds it (a download of it is
    /// in progress, or an export of its dataset is being made). A cached
    /// export's result is not held for being cached: the `export-cache`
    /// policy decides when it goes. (The WIT's older wording, "a cached
    /// export", is frozen with contract 0.2; the host sends this meaning.)
    pub const EXPORT_HELD: u8 = 2;
    /// A lease is held on it (e.g. a running export or upload reads it).
    pub const LEASED: u8 = 4;

    pub fn synced(self) -> bool {
        self.0 & Self::SYNCED != 0
    }

    pub fn export_held(self) -> bool {
        self.0 & Self::EXPORT_HELD != 0
    }

    pub fn leased(self) -> bool {
        self.0 & Self::LEASED != 0
    }
}

/// One file of a batch, read from its columns (its id is the batch's
/// `first_id()` plus its position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Candidate {
    pub size: u64,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// When it was last read for an export or sync, if ever.
    pub last_access_ms: Option<i64>,
    /// Index into the batch's entities; `None` for a file of no entity.
    pub entity: Option<u32>,
    /// Index into the batch's kinds.
    pub kind: u32,
    pub flags: FileFlags,
}

/// One retention run. State kept in it lasts for the whole run.
pub trait Planner {
    /// Decides about one batch (ordered by entity, newest first; an entity
    /// is never split across batches). Files not named are kept.
    fn plan(&mut self, batch: &Batch<'_>) -> Result<Decisions, PluginError>;

    /// Called once after the last batch; may name any file of the run not
    /// named before. Most policies have nothing to add.
    fn finish(&mut self) -> Result<Decisions, PluginError> {
        Ok(Decisions::new())
    }
}

impl Decisions {
    /// No deletions yet.
    pub fn new() -> Self {
        Decisions {
            reasons: Vec::new(),
            deletions: Vec::new(),
        }
    }

    /// Lets `file` go for `reason`. Each reason is sent once however many
    /// files share it.
    pub fn delete(&mut self, file: u64, reason: &str) {
        let reason = self.reason(reason);
        self.delete_for(file, reason);
    }

    /// The index of `reason`, added if new: for hot loops, with
    /// [`Decisions::delete_for`].
    pub fn reason(&mut self, reason: &str) -> u32 {
        let index = match self.reasons.iter().rposition(|r| r == reason) {
            Some(index) => index,
            None => {
                self.reasons.push(reason.to_owned());
                self.reasons.len() - 1
            }
        };
        index as u32
    }

    /// Lets `file` go for the reason of index `reason` (from [`Decisions::reason`]).
    pub fn delete_for(&mut self, file: u64, reason: u32) {
        self.deletions.push(Deletion { file, reason });
    }

    /// The files named, with their reasons.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        self.deletions
            .iter()
            .map(|d| (d.file, self.reasons[d.reason as usize].as_str()))
    }

    /// The ids of the files named, in order.
    pub fn files(&self) -> Vec<u64> {
        self.deletions.iter().map(|d| d.file).collect()
    }
}

impl Default for Decisions {
    fn default() -> Self {
        Decisions::new()
    }
}

/// One retention batch. On the host, each column is fetched on first use
/// (one copy, no allocation per file) and kept for the rest of the call, so
/// a policy pays only for the columns it reads. In native tests, build one
/// with [`Batch::new`] and [`Batch::push`].
pub struct Batch<'a> {
    #[cfg(target_arch = "wasm32")]
    host: Option<&'a HostBatch>,
    #[cfg(not(target_arch = "wasm32"))]
    host: std::marker::PhantomData<&'a ()>,
    /// Fetched on first use, like the columns: a policy that never asks
    /// makes no host call for it.
    len: OnceCell<usize>,
    first_id: OnceCell<u64>,
    entities: OnceCell<Vec<Entity>>,
    kinds: OnceCell<Vec<String>>,
    sizes: OnceCell<Vec<u64>>,
    created_ms: OnceCell<Vec<i64>>,
    modified_ms: OnceCell<Vec<i64>>,
    last_access_ms: OnceCell<Vec<i64>>,
    entity: OnceCell<Vec<u32>>,
    kind: OnceCell<Vec<u32>>,
    flags: OnceCell<Vec<u8>>,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.len())
            .field("first_id", &self.first_id())
            .finish_non_exhaustive()
    }
}

/// Reads a column: the cached one, else from the host (wasm32 only).
macro_rules! column {
    ($self:ident, $field:ident, $fetch:ident) => {
        $self.$field.get_or_init(|| {
            #[cfg(target_arch = "wasm32")]
            if let Some(host) = $self.host {
                return host.$fetch();
            }
            Vec::new()
        })
    };
}

impl Batch<'static> {
    /// An empty batch whose first file will have id `first_id`, to fill with
    /// [`Batch::push`] (native tests).
    pub fn new(first_id: u64, entities: Vec<Entity>, kinds: Vec<String>) -> Self {
        Batch {
            #[cfg(target_arch = "wasm32")]
            host: None,
            #[cfg(not(target_arch = "wasm32"))]
            host: std::marker::PhantomData,
            len: OnceCell::from(0),
            first_id: OnceCell::from(first_id),
            entities: OnceCell::from(entities),
            kinds: OnceCell::from(kinds),
            sizes: OnceCell::from(Vec::new()),
            created_ms: OnceCell::from(Vec::new()),
            modified_ms: OnceCell::from(Vec::new()),
            last_access_ms: OnceCell::from(Vec::new()),
            entity: OnceCell::from(Vec::new()),
            kind: OnceCell::from(Vec::new()),
            flags: OnceCell::from(Vec::new()),
        }
    }

    /// Appends a file to every column and returns its id.
    pub fn push(&mut self, file: Candidate) -> u64 {
        fn push<T>(cell: &mut OnceCell<Vec<T>>, value: T) {
            if let Some(column) = cell.get_mut() {
                column.push(value);
            }
        }
        push(&mut self.sizes, file.size);
        push(&mut self.created_ms, file.created_ms);
        push(&mut self.modified_ms, file.modified_ms);
        push(&mut self.last_access_ms, file.last_access_ms.unwrap_or(0));
        push(&mut self.entity, file.entity.unwrap_or(NO_ENTITY));
        push(&mut self.kind, file.kind);
        push(&mut self.flags, file.flags.0);
        let len = self.len() + 1;
        self.len = OnceCell::from(len);
        self.first_id() + len as u64 - 1
    }
}

impl<'a> Batch<'a> {
    /// The batch the host handed to `plan`.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_host(host: &'a HostBatch) -> Self {
        Batch {
            host: Some(host),
            len: OnceCell::new(),
            first_id: OnceCell::new(),
            entities: OnceCell::new(),
            kinds: OnceCell::new(),
            sizes: OnceCell::new(),
            created_ms: OnceCell::new(),
            modified_ms: OnceCell::new(),
            last_access_ms: OnceCell::new(),
            entity: OnceCell::new(),
            kind: OnceCell::new(),
            flags: OnceCell::new(),
        }
    }

    /// How many files the batch holds.
    pub fn len(&self) -> usize {
        *self.len.get_or_init(|| {
            #[cfg(target_arch = "wasm32")]
            if let Some(host) = self.host {
                return host.len() as usize;
            }
            0
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of file 0; file `i` has id `first_id() + i`.
    pub fn first_id(&self) -> u64 {
        *self.first_id.get_or_init(|| {
            #[cfg(target_arch = "wasm32")]
            if let Some(host) = self.host {
                return host.first_id();
            }
            0
        })
    }

    /// The ids of the batch's files, in order.
    pub fn ids(&self) -> std::ops::Range<u64> {
        let first = self.first_id();
        first..first + self.len() as u64
    }

    /// The entities of this batch's files, each once.
    pub fn entities(&self) -> &[Entity] {
        column!(self, entities, entities)
    }

    /// The kinds of this batch's files, each once.
    pub fn kinds(&self) -> &[String] {
        column!(self, kinds, kinds)
    }

    /// Each file's size in bytes.
    pub fn sizes(&self) -> &[u64] {
        column!(self, sizes, sizes)
    }

    /// When wharf first indexed each file, ms since the Unix epoch.
    pub fn created_ms(&self) -> &[i64] {
        column!(self, created_ms, created_ms)
    }

    /// Each file's last modification, ms since the Unix epoch.
    pub fn modified_ms(&self) -> &[i64] {
        column!(self, modified_ms, modified_ms)
    }

    /// When each file was last read for an export or sync; 0 if never.
    pub fn last_access_ms(&self) -> &[i64] {
        column!(self, last_access_ms, last_access_ms)
    }

    /// Index into [`Batch::entities`] of each file's entity, or [`NO_ENTITY`].
    pub fn entity(&self) -> &[u32] {
        column!(self, entity, entity)
    }

    /// Index into [`Batch::kinds`] of each file's kind.
    pub fn kind(&self) -> &[u32] {
        column!(self, kind, kind)
    }

    /// What the host knows of each file, as [`FileFlags`] bits.
    pub fn flags(&self) -> &[u8] {
        column!(self, flags, flags)
    }

    /// File `i` of the batch, every column read.
    pub fn file(&self, i: usize) -> Candidate {
        let entity = self.entity().get(i).copied().unwrap_or(NO_ENTITY);
        let last_access = self.last_access_ms().get(i).copied().unwrap_or(0);
        Candidate {
            size: self.sizes().get(i).copied().unwrap_or(0),
            created_ms: self.created_ms().get(i).copied().unwrap_or(0),
            modified_ms: self.modified_ms().get(i).copied().unwrap_or(0),
            last_access_ms: (last_access != 0).then_some(last_access),
            entity: (entity != NO_ENTITY).then_some(entity),
            kind: self.kind().get(i).copied().unwrap_or(0),
            flags: FileFlags(self.flags().get(i).copied().unwrap_or(0)),
        }
    }

    /// Every file of the batch with its id, in order (reads every column;
    /// hot loops read just the columns they need).
    pub fn files(&self) -> impl Iterator<Item = (u64, Candidate)> + '_ {
        let first = self.first_id();
        (0..self.len()).map(move |i| (first + i as u64, self.file(i)))
    }

    /// The entity of a candidate, if it has one.
    pub fn entity_of(&self, candidate: &Candidate) -> Option<&Entity> {
        candidate
            .entity
            .and_then(|index| self.entities().get(index as usize))
    }

    /// The kind of a candidate (`capture`, `export`, …).
    pub fn kind_of(&self, candidate: &Candidate) -> &str {
        self.kinds()
            .get(candidate.kind as usize)
            .map_or("", String::as_str)
    }
}

impl Entity {
    /// The value of attribute `key`, if set.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The exported `planner` resource of a plugin `R`: the host may call its
/// methods through shared references, so the planner lives in a `RefCell`.
#[doc(hidden)]
pub struct PlannerCell<R: Retention>(RefCell<R::Planner>);

impl<R: Retention + 'static> exports::GuestPlanner for PlannerCell<R> {
    fn open(params: Params) -> Result<exports::Planner, PluginError> {
        crate::__enter();
        let planner = R::open(params)?;
        Ok(exports::Planner::new(PlannerCell::<R>(RefCell::new(
            planner,
        ))))
    }

    #[cfg(target_arch = "wasm32")]
    fn plan(&self, batch: &HostBatch) -> Result<Decisions, PluginError> {
        self.0.borrow_mut().plan(&Batch::from_host(batch))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn plan(
        &self,
        _: &crate::__bindings::retention::wharf::plugin::batches::Batch,
    ) -> Result<Decisions, PluginError> {
        unreachable!("the host calls plan only on wasm32")
    }

    fn finish(&self) -> Result<Decisions, PluginError> {
        self.0.borrow_mut().finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_what_was_pushed() {
        let mut batch = Batch::new(7, Vec::new(), vec!["capture".into()]);
        let file = Candidate {
            size: 3,
            created_ms: 10,
            modified_ms: 11,
            last_access_ms: None,
            entity: None,
            kind: 0,
            flags: FileFlags(FileFlags::SYNCED | FileFlags::LEASED),
        };
        assert_eq!(batch.push(file), 7);
        assert_eq!(batch.files().collect::<Vec<_>>(), vec![(7, file)]);
        assert_eq!(batch.ids(), 7..8);
        assert!(file.flags.synced() && file.flags.leased() && !file.flags.export_held());
        assert_eq!(batch.kind_of(&file), "capture");
        assert!(batch.entity_of(&file).is_none());
    }

    #[test]
    fn reasons_are_sent_once() {
        let mut decisions = Decisions::new();
        decisions.delete(1, "old");
        decisions.delete(2, "old");
        decisions.delete(3, "big");
        assert_eq!(decisions.reasons, vec!["old", "big"]);
        assert_eq!(
            decisions.iter().collect::<Vec<_>>(),
            vec![(1, "old"), (2, "old"), (3, "big")]
        );
    }
}
