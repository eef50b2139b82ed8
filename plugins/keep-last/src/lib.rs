//! Retention policy: keep the newest `keep` files of each entity and let the
//! rest go, but never a file younger than `min_age_ms`.
//!
//! Batches arrive ordered by (entity, created desc) and never split an
//! entity, so counting per entity within a batch is exact.

use wharf_sdk::{
    Batch, Decisions, ParamSpec, Params, Planner, PluginError, PluginInfo, Retention, param_parse,
};

mod select;

pub struct KeepLast;

/// One run: the validated parameters and the reason every deletion gives.
pub struct Run {
    keep: u64,
    /// Files created after this are never deleted.
    cutoff_ms: i64,
    reason: String,
}

impl Retention for KeepLast {
    type Planner = Run;

    fn describe() -> PluginInfo {
        PluginInfo::new("keep-last", env!("CARGO_PKG_VERSION"))
            .description("Keeps the newest N files of each entity; deletes older ones.")
            .param(
                ParamSpec::new("keep", "how many of the newest files to keep per entity")
                    .default("10"),
            )
            .param(
                ParamSpec::new(
                    "min_age_ms",
                    "never delete a file created less than this long ago",
                )
                .default("0"),
            )
    }

    fn open(params: Params) -> Result<Run, PluginError> {
        let keep: u64 = param_parse(&params, "keep", Some(10))?;
        let min_age_ms: i64 = param_parse(&params, "min_age_ms", Some(0))?;
        if min_age_ms < 0 {
            return Err(PluginError::invalid_params(
                "parameter `min_age_ms` must not be negative",
            ));
        }
        let cutoff_ms = if min_age_ms == 0 {
            i64::MAX
        } else {
            wharf_sdk::host::now_ms().saturating_sub(min_age_ms)
        };
        Ok(Run {
            keep,
            cutoff_ms,
            reason: format!("keep-last: older than the newest {keep} of its entity"),
        })
    }
}

impl Planner for Run {
    fn plan(&mut self, batch: &Batch) -> Result<Decisions, PluginError> {
        let mut decisions = Decisions::new();
        let reason = decisions.reason(&self.reason);
        // Only the columns it needs: the creation times only when a minimum
        // age makes them matter.
        let created = (self.cutoff_ms != i64::MAX).then(|| batch.created_ms());
        let first = batch.first_id();
        select::select(batch.entity(), created, self.keep, self.cutoff_ms, |i| {
            decisions.delete_for(first + i as u64, reason);
        });
        if decisions.deletions.is_empty() {
            decisions.reasons.clear();
        }
        Ok(decisions)
    }
}

wharf_sdk::export_retention!(KeepLast);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;
    use wharf_sdk::{Candidate, Entity, FileFlags};

    fn file(entity: u32, created_ms: i64) -> Candidate {
        Candidate {
            size: 1,
            created_ms,
            modified_ms: created_ms,
            last_access_ms: None,
            entity: Some(entity),
            kind: 0,
            flags: FileFlags::default(),
        }
    }

    /// A batch whose files get ids 1, 2, 3, ...
    fn batch(files: Vec<Candidate>) -> Batch<'static> {
        let entity = |name: &str| Entity {
            name: name.into(),
            version: 1,
            last_export_ms: None,
            attributes: Vec::new(),
        };
        let mut batch = Batch::new(1, vec![entity("a"), entity("b")], vec!["capture".into()]);
        files.into_iter().for_each(|file| {
            batch.push(file);
        });
        batch
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    /// The files keep-last lets go, one file at a time.
    fn model(entity: &[u32], keep: usize) -> Vec<usize> {
        let mut deleted = Vec::new();
        let mut seen = 0;
        for i in 0..entity.len() {
            seen = if i > 0 && entity[i] == entity[i - 1] {
                seen + 1
            } else {
                1
            };
            if seen > keep {
                deleted.push(i);
            }
        }
        deleted
    }

    #[test]
    fn groups_of_every_length_around_the_eight_a_round_scan_match_the_model() {
        for first in 1..=40 {
            for second in [1, 7, 8, 9, 17] {
                // Groups of `first`, `second` and `first + 1` files; the
                // last two share nothing with a neighbour's index.
                let entity: Vec<u32> = [(5, first), (u32::MAX, second), (6, first + 1)]
                    .iter()
                    .flat_map(|&(group, len)| std::iter::repeat_n(group, len))
                    .collect();
                for keep in 0..=10 {
                    let mut deleted = Vec::new();
                    select::select(&entity, None, keep as u64, i64::MAX, |i| deleted.push(i));
                    assert_eq!(
                        deleted,
                        model(&entity, keep),
                        "{first} {second} keep {keep}"
                    );
                }
            }
        }
    }

    #[test]
    fn keeps_the_newest_per_entity() {
        let mut run = KeepLast::open(params(&[("keep", "2")])).unwrap();
        let files = vec![file(0, 30), file(0, 20), file(0, 10), file(1, 5)];
        let decided = run.plan(&batch(files)).unwrap();
        assert_eq!(decided.files(), vec![3]);
        assert!(decided.reasons[0].contains("newest 2"));
    }

    #[test]
    fn young_files_survive_even_past_the_count() {
        let mut host = MockHost::new().with_now_ms(1_000);
        let decided = host
            .run(|| {
                let mut run = KeepLast::open(params(&[("keep", "0"), ("min_age_ms", "50")]))?;
                run.plan(&batch(vec![file(0, 990), file(0, 980), file(0, 100)]))
            })
            .unwrap();
        assert_eq!(decided.files(), vec![3]);
    }

    #[test]
    fn bad_keep_is_invalid_params() {
        let result = KeepLast::open(params(&[("keep", "-1")]));
        assert!(matches!(result, Err(PluginError::InvalidParams(msg)) if msg.contains("keep")));
    }
}
