//! Retention policy, viam-rdk's `delete_every_nth_when_disk_full`: while
//! the data directory's filesystem has less than `min_free_percent` free,
//! delete every `nth` file (default 5) among the oldest, already synced to
//! every required destination, until the planned deletions would bring the
//! free space back to the threshold. Thinning every nth keeps a sparse
//! history instead of losing all old data.
//!
//! The whole run is seen before deciding (oldest first across entities),
//! so it decides in `finish`; it keeps only (created, id, size) per file.

use wharf_sdk::{
    Batch, Decisions, ParamSpec, Params, Planner, PluginError, PluginInfo, Retention, param_parse,
};

pub struct DiskPressure;

/// One run: the candidates seen so far and how many bytes must go.
pub struct Run {
    nth: u64,
    /// Bytes to free; 0 when there is no pressure.
    to_free: u64,
    /// (created, id, size) of every deletable file seen.
    seen: Vec<(i64, u64, u64)>,
    reason: String,
}

impl Retention for DiskPressure {
    type Planner = Run;

    fn describe() -> PluginInfo {
        PluginInfo::new("disk-pressure", env!("CARGO_PKG_VERSION"))
            .description("While free space is low, deletes every nth oldest synced file.")
            .param(
                ParamSpec::new(
                    "min_free_percent",
                    "act while less than this share of the filesystem is free",
                )
                .default("10"),
            )
            .param(ParamSpec::new("nth", "delete every nth of the oldest files").default("5"))
    }

    fn open(params: Params) -> Result<Run, PluginError> {
        let min_free_percent: u64 = param_parse(&params, "min_free_percent", Some(10))?;
        let nth: u64 = param_parse(&params, "nth", Some(5))?;
        if !(1..=99).contains(&min_free_percent) {
            return Err(PluginError::invalid_params(
                "parameter `min_free_percent` must be between 1 and 99",
            ));
        }
        if nth == 0 {
            return Err(PluginError::invalid_params(
                "parameter `nth` must be at least 1",
            ));
        }
        let space = wharf_sdk::disk::space();
        let wanted = (u128::from(space.total_bytes) * u128::from(min_free_percent) / 100) as u64;
        Ok(Run {
            nth,
            to_free: wanted.saturating_sub(space.free_bytes),
            seen: Vec::new(),
            reason: format!(
                "disk-pressure: under {min_free_percent}% free; every {nth}th oldest synced file"
            ),
        })
    }
}

impl Planner for Run {
    fn plan(&mut self, batch: &Batch) -> Result<Decisions, PluginError> {
        if self.to_free > 0 {
            for (id, file) in batch.files() {
                let flags = file.flags;
                if flags.synced() && !flags.leased() && !flags.export_held() {
                    self.seen.push((file.created_ms, id, file.size));
                }
            }
        }
        Ok(Decisions::new())
    }

    fn finish(&mut self) -> Result<Decisions, PluginError> {
        let mut decisions = Decisions::new();
        if self.to_free == 0 {
            return Ok(decisions);
        }
        self.seen.sort_unstable();
        let reason = decisions.reason(&self.reason);
        let mut freed = 0u64;
        let every = self.nth as usize;
        for (i, &(_, id, size)) in self.seen.iter().enumerate() {
            if freed >= self.to_free {
                break;
            }
            if (i + 1) % every == 0 {
                decisions.delete_for(id, reason);
                freed += size;
            }
        }
        if decisions.deletions.is_empty() {
            decisions.reasons.clear();
        }
        Ok(decisions)
    }
}

wharf_sdk::export_retention!(DiskPressure);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;
    use wharf_sdk::{Candidate, Entity, FileFlags};

    fn file(created_ms: i64, size: u64) -> Candidate {
        Candidate {
            size,
            created_ms,
            modified_ms: created_ms,
            last_access_ms: None,
            entity: Some(0),
            kind: 0,
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
        let mut batch = Batch::new(1, vec![entity], vec!["capture".into()]);
        for file in files {
            batch.push(file);
        }
        batch
    }

    fn run_with(total: u64, free: u64, params: &[(&str, &str)], files: Vec<Candidate>) -> Vec<u64> {
        let mut host = MockHost::new().with_disk(total, free);
        let params: Params = params
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        host.run(|| {
            let mut run = DiskPressure::open(params)?;
            let planned = run.plan(&batch(files))?;
            assert!(planned.deletions.is_empty(), "it decides in finish");
            run.finish()
        })
        .unwrap()
        .files()
    }

    #[test]
    fn without_pressure_nothing_goes() {
        let files = (1..=20).map(|i| file(i, 10)).collect();
        assert!(run_with(1000, 500, &[], files).is_empty());
    }

    #[test]
    fn under_pressure_every_nth_oldest_goes_until_enough_is_freed() {
        // 5% free of 1000, threshold 10%: 50 bytes to free, files of 10.
        // Oldest first (ids 20, 19, …): every 5th, until 50 bytes.
        let files = (1..=40).map(|i| file(1000 - i, 10)).collect();
        let deleted = run_with(1000, 50, &[], files);
        assert_eq!(deleted, vec![36, 31, 26, 21, 16]);
    }

    #[test]
    fn unsynced_and_held_files_are_never_counted_or_named() {
        let mut files: Vec<Candidate> = (1..=4).map(|i| file(i, 100)).collect();
        files[0].flags = FileFlags(0);
        files[1].flags = FileFlags(FileFlags::SYNCED | FileFlags::LEASED);
        let deleted = run_with(10_000, 0, &[("nth", "1")], files);
        assert_eq!(deleted, vec![3, 4]);
    }

    #[test]
    fn bad_parameters_are_invalid_params() {
        for (key, value) in [("nth", "0"), ("min_free_percent", "100"), ("nth", "x")] {
            let result = DiskPressure::open(vec![(key.into(), value.into())]);
            assert!(
                matches!(&result, Err(PluginError::InvalidParams(msg)) if msg.contains(key)),
                "{key}={value}"
            );
        }
    }
}
