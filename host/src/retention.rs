//! Retention: plan with the index, call the policy plugin, apply safely.
//!
//! Today this module plans: [`rehearse`] pages the index into batches that
//! never split an entity, runs one planner over all of them (then `finish`),
//! and returns what the policy would delete, with its reasons; nothing is
//! deleted. Applying the plan (host-side safety: never a leased,
//! export-held or unsynced-when-required file) is built on it.
//!
//! Invariant: a batch holds whole entities; the ids a plugin sees are
//! run-local (the runtime renumbers them), and every answer is mapped back
//! to index `FileId`s here.

use std::path::Path;

use crate::index::{FileId, Index, RetentionCursor, RetentionPage};
use crate::runtime::{Batch, CallError, Decided, Entity, Params, Plugin};

/// A file the policy lets go, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub file: FileId,
    pub reason: String,
}

/// Why a rehearsal stopped.
#[derive(Debug, thiserror::Error)]
pub enum RehearseError {
    #[error("retention policy {plugin}: {error}")]
    Plugin { plugin: String, error: CallError },
    #[error("reading the index: {0:#}")]
    Index(anyhow::Error),
}

/// Runs `plugin` over every ready file of the index, `page_size` files per
/// batch (whole entities: a batch may be larger), and returns what it would
/// delete. `disk` is the directory whose filesystem `disk.space` reports.
pub fn rehearse(
    index: &Index,
    plugin: &Plugin,
    params: &Params,
    disk: &Path,
    page_size: usize,
    now_ms: i64,
) -> Result<Vec<Planned>, RehearseError> {
    let failed = |error| RehearseError::Plugin {
        plugin: plugin.name.clone(),
        error,
    };
    let mut session = plugin.plan_session(params, disk).map_err(failed)?;
    let mut planned = Vec::new();
    let mut cursor = Some(RetentionCursor::START);
    while let Some(after) = cursor {
        let page = index
            .retention_page(after, page_size, now_ms)
            .map_err(RehearseError::Index)?;
        if page.files.is_empty() {
            break;
        }
        cursor = page.next;
        let mut batch = batch(page);
        let decided = session.plan(&mut batch).map_err(failed)?;
        planned.extend(planned_files(&decided));
    }
    let decided = session.finish().map_err(failed)?;
    planned.extend(planned_files(&decided));
    Ok(planned)
}

fn planned_files(decided: &Decided) -> impl Iterator<Item = Planned> + '_ {
    decided.deletions.iter().map(|d| Planned {
        file: FileId(d.file as i64),
        reason: decided.reasons[d.reason as usize].clone(),
    })
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
        kinds: page.kinds,
        ids: page.files.iter().map(|f| f.0 as u64).collect(),
        sizes: page.sizes,
        created_ms: page.created_ms,
        modified_ms: page.modified_ms,
        last_access_ms: page.last_access_ms,
        entity: page.entity,
        kind: page.kind,
        flags: page.flags,
    }
}
