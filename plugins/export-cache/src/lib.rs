//! Retention policy for the export cache (CVAT's export cache cleanup):
//! deletes cached exports (files of kind `export`) whose last use — the
//! later of their last hit or download and their creation — is older than
//! the cache TTL, `cache_ttl_ms`.
//!
//! The TTL is `[exports] cache_ttl_ms` in `wharf.toml`: a cleanup fills
//! this parameter from there, so it is configured in one place. The host
//! never deletes an export being written or downloaded (flag
//! `export-held`), nor a leased or unsynced file; this policy leaves them
//! alone itself too, so its plan is what will happen.

use wharf_sdk::{
    Batch, Decisions, ParamSpec, Params, Planner, PluginError, PluginInfo, Retention, param_parse,
};

pub struct ExportCache;

/// The kind of file a cached export's result is.
const EXPORT: &str = "export";

/// One run: exports last used before `cutoff_ms` go.
pub struct Run {
    cutoff_ms: i64,
    reason: String,
}

impl Retention for ExportCache {
    type Planner = Run;

    fn describe() -> PluginInfo {
        PluginInfo::new("export-cache", env!("CARGO_PKG_VERSION"))
            .description(
                "Deletes cached exports not used (hit or downloaded) within the cache TTL.",
            )
            .param(ParamSpec::new(
                "cache_ttl_ms",
                "delete an export whose last hit, download and creation are all older than this; \
                 a cleanup sets it from `[exports] cache_ttl_ms`",
            ))
    }

    fn open(params: Params) -> Result<Run, PluginError> {
        let ttl_ms: i64 = param_parse(&params, "cache_ttl_ms", None)?;
        if ttl_ms <= 0 {
            return Err(PluginError::invalid_params(
                "parameter `cache_ttl_ms` must be positive (it comes from `[exports] cache_ttl_ms`)",
            ));
        }
        Ok(Run {
            cutoff_ms: wharf_sdk::host::now_ms().saturating_sub(ttl_ms),
            reason: format!("export-cache: not used for {ttl_ms} ms (the cache TTL)"),
        })
    }
}

impl Planner for Run {
    fn plan(&mut self, batch: &Batch) -> Result<Decisions, PluginError> {
        let mut decisions = Decisions::new();
        let Some(export) = batch.kinds().iter().position(|k| k == EXPORT) else {
            return Ok(decisions);
        };
        let export = export as u32;
        let reason = decisions.reason(&self.reason);
        let (kind, flags) = (batch.kind(), batch.flags());
        let (created, accessed) = (batch.created_ms(), batch.last_access_ms());
        for ((id, &k), i) in batch.ids().zip(kind).zip(0..) {
            if k != export {
                continue;
            }
            let f = wharf_sdk::FileFlags(flags.get(i).copied().unwrap_or(0));
            if f.leased() || f.export_held() || !f.synced() {
                continue;
            }
            let used = created
                .get(i)
                .copied()
                .unwrap_or(i64::MAX)
                .max(accessed.get(i).copied().unwrap_or(0));
            if used < self.cutoff_ms {
                decisions.delete_for(id, reason);
            }
        }
        if decisions.deletions.is_empty() {
            decisions.reasons.clear();
        }
        Ok(decisions)
    }
}

wharf_sdk::export_retention!(ExportCache);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;
    use wharf_sdk::{Candidate, Entity, FileFlags};

    /// kind 0 = capture, 1 = export.
    fn file(kind: u32, created_ms: i64, last_access_ms: Option<i64>, flags: u8) -> Candidate {
        Candidate {
            size: 1,
            created_ms,
            modified_ms: created_ms,
            last_access_ms,
            entity: Some(0),
            kind,
            flags: FileFlags(flags),
        }
    }

    /// A batch whose files have ids 1, 2, 3, ...
    fn batch(files: Vec<Candidate>) -> Batch<'static> {
        let entity = Entity {
            name: "set".into(),
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

    fn plan(ttl: &str, files: Vec<Candidate>) -> Result<Vec<u64>, PluginError> {
        let mut host = MockHost::new().with_now_ms(100_000);
        host.run(|| {
            let mut run = ExportCache::open(vec![("cache_ttl_ms".into(), ttl.into())])?;
            Ok(run.plan(&batch(files))?.files())
        })
    }

    const S: u8 = FileFlags::SYNCED;

    #[test]
    fn deletes_exports_unused_for_longer_than_the_ttl_and_nothing_else() {
        let decided = plan(
            "10000",
            vec![
                file(1, 1_000, None, S),         // 1: old, never downloaded: goes
                file(1, 1_000, Some(95_000), S), // 2: downloaded recently: stays
                file(1, 95_000, None, S),        // 3: made recently: stays
                file(0, 1_000, None, S),         // 4: not an export
                file(1, 1_000, Some(80_000), S), // 5: last used 20 s ago: goes
            ],
        )
        .unwrap();
        assert_eq!(decided, vec![1, 5]);
    }

    #[test]
    fn an_export_being_written_downloaded_leased_or_unsynced_is_left_alone() {
        let decided = plan(
            "10000",
            vec![
                file(1, 1_000, None, S | FileFlags::EXPORT_HELD),
                file(1, 1_000, None, S | FileFlags::LEASED),
                file(1, 1_000, None, 0),
                file(1, 1_000, None, S),
            ],
        )
        .unwrap();
        assert_eq!(decided, vec![4]);
    }

    #[test]
    fn a_batch_without_exports_decides_nothing() {
        let mut host = MockHost::new().with_now_ms(100_000);
        let decided = host
            .run(|| {
                let mut run = ExportCache::open(vec![("cache_ttl_ms".into(), "1".into())])?;
                let mut only_captures = Batch::new(1, Vec::new(), vec!["capture".into()]);
                only_captures.push(file(0, 1, None, S));
                run.plan(&only_captures)
            })
            .unwrap();
        assert!(decided.deletions.is_empty() && decided.reasons.is_empty());
    }

    #[test]
    fn a_missing_or_bad_ttl_is_invalid_params() {
        for given in [
            &[][..],
            &[("cache_ttl_ms", "0")],
            &[("cache_ttl_ms", "a day")],
        ] {
            let params = given
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let result = ExportCache::open(params);
            assert!(
                matches!(&result, Err(PluginError::InvalidParams(msg)) if msg.contains("cache_ttl_ms")),
                "{given:?}"
            );
        }
    }
}
