//! Retention policies: a [`Planner`] per run, fed batches of candidates (in
//! columns; [`Batch::files`] reads them as [`Candidate`]s), and
//! [`Decisions`] naming the files that may go, each with a reason.

use std::cell::RefCell;

use crate::__bindings::retention::exports::wharf::plugin::retention_policy as exports;
use crate::{Batch, Decisions, Deletion, Entity, Params, PluginError, Retention};

/// The `entity` column's value for a file of no entity.
pub const NO_ENTITY: u32 = u32::MAX;

/// What the host knows of a candidate (the `flags` column's bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileFlags(pub u8);

impl FileFlags {
    /// A verified copy exists on every destination marked required.
    pub const SYNCED: u8 = 1;
    /// A running or cached export holds it.
    pub const EXPORT_HELD: u8 = 2;
    /// A lease is held on it.
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

/// One file of a batch, read from its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: u64,
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
    fn plan(&mut self, batch: Batch) -> Result<Decisions, PluginError>;

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

impl Batch {
    /// An empty batch, to fill with [`Batch::push`] (tests, mostly).
    pub fn new(entities: Vec<Entity>, kinds: Vec<String>) -> Self {
        Batch {
            entities,
            kinds,
            ids: Vec::new(),
            sizes: Vec::new(),
            created_ms: Vec::new(),
            modified_ms: Vec::new(),
            last_access_ms: Vec::new(),
            entity: Vec::new(),
            kind: Vec::new(),
            flags: Vec::new(),
        }
    }

    /// Appends a file to every column.
    pub fn push(&mut self, file: Candidate) {
        self.ids.push(file.id);
        self.sizes.push(file.size);
        self.created_ms.push(file.created_ms);
        self.modified_ms.push(file.modified_ms);
        self.last_access_ms.push(file.last_access_ms.unwrap_or(0));
        self.entity.push(file.entity.unwrap_or(NO_ENTITY));
        self.kind.push(file.kind);
        self.flags.push(file.flags.0);
    }

    /// How many files the batch holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// File `i` of the batch.
    pub fn file(&self, i: usize) -> Candidate {
        let at = |column: &[u32]| column.get(i).copied().unwrap_or(NO_ENTITY);
        let entity = at(&self.entity);
        let last_access = self.last_access_ms.get(i).copied().unwrap_or(0);
        Candidate {
            id: self.ids[i],
            size: self.sizes.get(i).copied().unwrap_or(0),
            created_ms: self.created_ms.get(i).copied().unwrap_or(0),
            modified_ms: self.modified_ms.get(i).copied().unwrap_or(0),
            last_access_ms: (last_access != 0).then_some(last_access),
            entity: (entity != NO_ENTITY).then_some(entity),
            kind: self.kind.get(i).copied().unwrap_or(0),
            flags: FileFlags(self.flags.get(i).copied().unwrap_or(0)),
        }
    }

    /// Every file of the batch, in order.
    pub fn files(&self) -> impl Iterator<Item = Candidate> + '_ {
        (0..self.len()).map(|i| self.file(i))
    }

    /// The entity of a candidate, if it has one.
    pub fn entity_of(&self, candidate: &Candidate) -> Option<&Entity> {
        candidate
            .entity
            .and_then(|index| self.entities.get(index as usize))
    }

    /// The kind of a candidate (`capture`, `export`, …).
    pub fn kind_of(&self, candidate: &Candidate) -> &str {
        self.kinds
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

    fn plan(&self, batch: Batch) -> Result<Decisions, PluginError> {
        self.0.borrow_mut().plan(batch)
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
        let mut batch = Batch::new(Vec::new(), vec!["capture".into()]);
        let file = Candidate {
            id: 7,
            size: 3,
            created_ms: 10,
            modified_ms: 11,
            last_access_ms: None,
            entity: None,
            kind: 0,
            flags: FileFlags(FileFlags::SYNCED | FileFlags::LEASED),
        };
        batch.push(file);
        assert_eq!(batch.files().collect::<Vec<_>>(), vec![file]);
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
