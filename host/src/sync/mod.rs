//! Sync: every indexed file copied to every configured `[[destination]]`
//! by that destination's uploader plugin, as the `sync` job kind on the jobs
//! engine.
//!
//! - `destination.rs`: `[[destination]]` and `[credential.NAME]` turned into
//!   what an upload call needs (the plugin's view: a base URL and credential
//!   names; the host's: allowlist, secrets, a local root), the reachability
//!   probe, and the rows of the `destinations` table.
//! - `lane.rs`: the `sync` handler. A sync is `sync.workers` jobs ("lanes"),
//!   each taking one due `sync_status` row at a time from the index (the
//!   claim is the bounded hand-off: nothing is queued in memory), calling
//!   the plugin, verifying the remote sha256 and recording the outcome with
//!   the engine's backoff; connectivity changes and throughput are logged.
//!
//! Invariants: a file is `synced` only when the sha256 the plugin reports
//! for the stored copy equals the index's; a secret is read from the
//! environment or a 0600 file when a sync starts and only ever reaches the
//! runtime's signer, never a plugin, a log line or the index; empty files
//! and exports get no row (nothing to upload; a cache made again on demand).

mod destination;
mod lane;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use destination::{Destination, Resolved, destination_specs, probe, resolve};
pub use lane::SyncJob;

use crate::config::Config;
use crate::index::{DestinationId, Index};
use crate::jobs::Request;

/// The job kind.
pub const SYNC: &str = "sync";

/// What one `sync` job (a lane) is asked: which destination (all when
/// none), and its lane number, which only makes its single-flight key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPayload {
    #[serde(default)]
    pub destination: Option<String>,
    #[serde(default)]
    pub lane: u32,
}

/// The requests of one sync over `lanes` lanes, of `destination` or of all.
/// Each lane is keyed, so a trigger while it runs makes one more run follow
/// rather than a second lane.
pub fn requests(lanes: usize, destination: Option<&str>) -> Vec<Request> {
    (0..lanes.max(1))
        .map(|lane| {
            let payload = SyncPayload {
                destination: destination.map(str::to_owned),
                lane: u32::try_from(lane).unwrap_or(u32::MAX),
            };
            let key = format!("sync/{}/{lane}", destination.unwrap_or("*"));
            Request::keyed(
                SYNC,
                &key,
                &serde_json::to_string(&payload).unwrap_or_else(|_| "{}".to_owned()),
            )
        })
        .collect()
}

/// Records the configured destinations in the index (so retention sees
/// which are required) and returns their ids by name.
pub fn register_destinations(
    index: &Index,
    config: &Config,
) -> anyhow::Result<BTreeMap<String, DestinationId>> {
    let specs = destination_specs(config);
    let ids = index.set_destinations(&specs)?;
    Ok(specs.into_iter().map(|s| s.name).zip(ids).collect())
}

/// The uploader plugins loaded, by name.
pub type Uploaders = crate::plugins::WorldPlugins;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lane_has_its_own_single_flight_key_per_destination() {
        let all = requests(2, None);
        let one = requests(2, Some("backup"));
        let keys: Vec<_> = all.iter().chain(&one).map(|r| r.key.clone()).collect();
        assert_eq!(
            keys,
            [
                Some("sync/*/0".to_owned()),
                Some("sync/*/1".to_owned()),
                Some("sync/backup/0".to_owned()),
                Some("sync/backup/1".to_owned()),
            ]
        );
        let payload: SyncPayload = serde_json::from_str(&one[1].payload).unwrap();
        assert_eq!(payload.destination.as_deref(), Some("backup"));
        assert_eq!(requests(0, None).len(), 1, "at least one lane");
    }
}
