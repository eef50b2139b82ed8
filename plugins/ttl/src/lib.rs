//! Retention policy: delete files not accessed for `max_age_ms` — the
//! newest of their last access (an export or a sync read), modification
//! and indexing times is older than that. `kind` limits it to one kind.
//!
//! The host still refuses leased, export-held and unsynced files; this
//! policy also leaves them alone itself, so its plan is what will happen.

use wharf_sdk::{
    Batch, Decisions, ParamSpec, Params, Planner, PluginError, PluginInfo, Retention, param,
    param_parse,
};

pub struct Ttl;

/// One run: files last touched before `cutoff_ms` go.
pub struct Run {
    cutoff_ms: i64,
    kind: Option<String>,
    reason: String,
}

impl Retention for Ttl {
    type Planner = Run;

    fn describe() -> PluginInfo {
        PluginInfo::new("ttl", env!("CARGO_PKG_VERSION"))
            .description("Deletes files not accessed, modified or indexed for a duration.")
            .param(
                ParamSpec::new(
                    "max_age_ms",
                    "delete a file whose last access, modification and indexing are all older than this",
                ),
            )
            .param(
                ParamSpec::new(
                    "kind",
                    "only files of this kind (e.g. `export`); every kind when unset",
                )
                .optional(),
            )
    }

    fn open(params: Params) -> Result<Run, PluginError> {
        let max_age_ms: i64 = param_parse(&params, "max_age_ms", None)?;
        if max_age_ms <= 0 {
            return Err(PluginError::invalid_params(
                "parameter `max_age_ms` must be positive",
            ));
        }
        let kind = param(&params, "kind").map(str::to_owned);
        Ok(Run {
            cutoff_ms: wharf_sdk::host::now_ms().saturating_sub(max_age_ms),
            reason: format!("ttl: not accessed for {max_age_ms} ms"),
            kind,
        })
    }
}

impl Planner for Run {
    fn plan(&mut self, batch: &Batch) -> Result<Decisions, PluginError> {
        let mut decisions = Decisions::new();
        let reason = decisions.reason(&self.reason);
        for (id, file) in batch.files() {
            if let Some(kind) = &self.kind
                && batch.kind_of(&file) != kind
            {
                continue;
            }
            let flags = file.flags;
            if flags.leased() || flags.export_held() || !flags.synced() {
                continue;
            }
            let touched = file
                .created_ms
                .max(file.modified_ms)
                .max(file.last_access_ms.unwrap_or(0));
            if touched < self.cutoff_ms {
                decisions.delete_for(id, reason);
            }
        }
        if decisions.deletions.is_empty() {
            decisions.reasons.clear();
        }
        Ok(decisions)
    }
}

wharf_sdk::export_retention!(Ttl);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;
    use wharf_sdk::{Candidate, Entity, FileFlags};

    fn file(kind: u32, created_ms: i64, last_access_ms: Option<i64>) -> Candidate {
        Candidate {
            size: 1,
            created_ms,
            modified_ms: created_ms,
            last_access_ms,
            entity: Some(0),
            kind,
            flags: FileFlags(FileFlags::SYNCED),
        }
    }

    /// A batch whose files have ids 1, 2, 3, ...
    fn batch(files: Vec<Candidate>) -> Batch<'static> {
        let entity = Entity {
            name: "a".into(),
            version: 1,
            last_export_ms: None,
            attributes: Vec::new(),
        };
        let mut batch = Batch::new(1, vec![entity], vec!["capture".into(), "export".into()]);
        for file in files {
            batch.push(file);
        }
        batch
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn deletes_files_untouched_for_longer_than_the_ttl_counting_their_last_access() {
        let mut host = MockHost::new().with_now_ms(10_000);
        let decided = host
            .run(|| {
                let mut run = Ttl::open(params(&[("max_age_ms", "1000")]))?;
                run.plan(&batch(vec![
                    file(0, 100, None),        // 1: old, never read: goes
                    file(0, 100, Some(9_500)), // 2: old, but read recently
                    file(0, 9_800, None),      // 3: young
                    file(1, 100, Some(200)),   // 4: old export
                ]))
            })
            .unwrap();
        assert_eq!(decided.files(), vec![1, 4]);
        assert!(decided.reasons[0].contains("1000 ms"));
    }

    #[test]
    fn kind_limits_it_and_protected_files_are_left_alone() {
        let mut host = MockHost::new().with_now_ms(10_000);
        let decided = host
            .run(|| {
                let mut run = Ttl::open(params(&[("max_age_ms", "1000"), ("kind", "export")]))?;
                let mut leased = file(1, 100, None);
                leased.flags = FileFlags(FileFlags::SYNCED | FileFlags::LEASED);
                let mut unsynced = file(1, 100, None);
                unsynced.flags = FileFlags(0);
                run.plan(&batch(vec![
                    file(0, 100, None), // 1: not an export
                    file(1, 100, None), // 2: goes
                    leased,             // 3
                    unsynced,           // 4
                ]))
            })
            .unwrap();
        assert_eq!(decided.files(), vec![2]);
    }

    #[test]
    fn a_missing_or_bad_ttl_is_invalid_params() {
        for given in [&[][..], &[("max_age_ms", "0")], &[("max_age_ms", "soon")]] {
            let result = Ttl::open(params(given));
            assert!(
                matches!(&result, Err(PluginError::InvalidParams(msg)) if msg.contains("max_age_ms")),
                "{given:?}"
            );
        }
    }
}
