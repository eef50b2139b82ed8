//! Retention policy: keep the newest `keep` files of each entity and let the
//! rest go, but never a file younger than `min_age_ms`.
//!
//! Batches arrive ordered by (entity, created desc) and never split an
//! entity, so counting per entity within a batch is exact.

use wharf_sdk::{Deletion, FileInfo, Params, PluginError, PluginInfo, Retention, param_parse};

pub struct KeepLast;

impl Retention for KeepLast {
    fn describe() -> PluginInfo {
        wharf_sdk::plugin_info(
            "keep-last",
            env!("CARGO_PKG_VERSION"),
            "Keeps the newest N files of each entity; deletes older ones.",
            &[
                (
                    "keep",
                    "how many of the newest files to keep per entity",
                    Some("10"),
                ),
                (
                    "min_age_ms",
                    "never delete a file created less than this long ago",
                    Some("0"),
                ),
            ],
        )
    }

    fn plan(batch: Vec<FileInfo>, params: Params) -> Result<Vec<Deletion>, PluginError> {
        let keep: u64 = param_parse(&params, "keep", Some(10))?;
        let min_age_ms: i64 = param_parse(&params, "min_age_ms", Some(0))?;
        if min_age_ms < 0 {
            return Err(PluginError::InvalidParams(
                "parameter `min_age_ms` must not be negative".into(),
            ));
        }
        let cutoff = if min_age_ms == 0 {
            i64::MAX
        } else {
            wharf_sdk::host::now_ms().saturating_sub(min_age_ms)
        };
        let mut deletions = Vec::new();
        let mut current: Option<&Option<String>> = None;
        let mut seen = 0u64;
        for file in &batch {
            if current != Some(&file.entity) {
                current = Some(&file.entity);
                seen = 0;
            }
            seen += 1;
            if seen > keep && file.created_ms <= cutoff {
                deletions.push(Deletion {
                    file: file.id,
                    reason: format!("keep-last: older than the newest {keep} of its entity"),
                });
            }
        }
        Ok(deletions)
    }
}

wharf_sdk::export_retention!(KeepLast);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;

    fn file(id: u64, entity: &str, created_ms: i64) -> FileInfo {
        FileInfo {
            id,
            name: format!("{entity}/{id}"),
            size: 1,
            mtime_ms: created_ms,
            sha256: String::new(),
            kind: "capture".into(),
            entity: Some(entity.into()),
            created_ms,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn keeps_the_newest_per_entity() {
        let batch = vec![
            file(1, "a", 30),
            file(2, "a", 20),
            file(3, "a", 10),
            file(4, "b", 5),
        ];
        let deleted = KeepLast::plan(batch, params(&[("keep", "2")])).unwrap();
        assert_eq!(deleted.iter().map(|d| d.file).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn young_files_survive_even_past_the_count() {
        let mut host = MockHost::new().with_now_ms(1_000);
        let batch = vec![file(1, "a", 990), file(2, "a", 980), file(3, "a", 100)];
        let deleted = host
            .run(|| KeepLast::plan(batch, params(&[("keep", "0"), ("min_age_ms", "50")])))
            .unwrap();
        assert_eq!(deleted.iter().map(|d| d.file).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn bad_keep_is_invalid_params() {
        let result = KeepLast::plan(vec![], params(&[("keep", "-1")]));
        assert!(matches!(result, Err(PluginError::InvalidParams(msg)) if msg.contains("keep")));
    }
}
