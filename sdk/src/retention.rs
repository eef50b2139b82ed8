//! Retention policies: a [`Planner`] per run, fed batches of candidates, and
//! [`Decisions`] naming the files that may go, each with a reason.

use std::cell::RefCell;

use crate::__bindings::retention::exports::wharf::plugin::retention_policy as exports;
use crate::{Batch, Candidate, Decisions, Deletion, Entity, Params, PluginError, Retention};

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
        let index = match self.reasons.iter().rposition(|r| r == reason) {
            Some(index) => index,
            None => {
                self.reasons.push(reason.to_owned());
                self.reasons.len() - 1
            }
        };
        self.deletions.push(Deletion {
            file,
            reason: index as u32,
        });
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
