//! Rows of `locks`: leases with an owner and an expiry. The policy (who is
//! dead, how long to wait) lives in `crate::lease`; here is only the atomic
//! compare-and-set on the row.

use rusqlite::{OptionalExtension, params};

use super::Index;

/// Who holds a lease and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub owner: String,
    pub expires_ms: i64,
}

/// The result of one acquisition attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    Acquired,
    Held(LeaseHolder),
}

impl Index {
    /// Takes lease `name` for `owner` until `now_ms + ttl_ms` if it is free,
    /// expired, already `owner`'s, or held by `dead_owner` (a holder the
    /// caller knows to be dead). Atomic across threads and processes.
    pub fn try_acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
        dead_owner: Option<&str>,
    ) -> anyhow::Result<LeaseOutcome> {
        self.write(|tx| {
            let changed = tx.execute(
                "INSERT INTO locks (name, owner, acquired_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, acquired_ms = excluded.acquired_ms,
                     expires_ms = excluded.expires_ms
                 WHERE locks.expires_ms <= ?3 OR locks.owner = ?2 OR locks.owner = ?5",
                params![name, owner, now_ms, now_ms + ttl_ms, dead_owner],
            )?;
            if changed == 1 {
                return Ok(LeaseOutcome::Acquired);
            }
            let holder = tx.query_row("SELECT owner, expires_ms FROM locks WHERE name = ?1", [name], |row| {
                Ok(LeaseHolder { owner: row.get(0)?, expires_ms: row.get(1)? })
            })?;
            Ok(LeaseOutcome::Held(holder))
        })
    }

    /// Extends `owner`'s lease; false if it is no longer theirs.
    pub fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> anyhow::Result<bool> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE locks SET expires_ms = ?3 WHERE name = ?1 AND owner = ?2",
                params![name, owner, now_ms + ttl_ms],
            )?;
            Ok(changed == 1)
        })
    }

    /// Gives `owner`'s lease up; false if it was not theirs any more.
    pub fn release_lease(&self, name: &str, owner: &str) -> anyhow::Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM locks WHERE name = ?1 AND owner = ?2",
                params![name, owner],
            )? == 1)
        })
    }

    /// The current holder of `name`, if any.
    pub fn lease_holder(&self, name: &str) -> anyhow::Result<Option<LeaseHolder>> {
        self.read(|db| {
            db.query_row(
                "SELECT owner, expires_ms FROM locks WHERE name = ?1",
                [name],
                |row| {
                    Ok(LeaseHolder {
                        owner: row.get(0)?,
                        expires_ms: row.get(1)?,
                    })
                },
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_exclusive_until_it_expires_or_its_holder_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.sqlite")).unwrap();
        assert_eq!(
            index.try_acquire_lease("gc", "a", 100, 1000, None).unwrap(),
            LeaseOutcome::Acquired
        );
        let held = index.try_acquire_lease("gc", "b", 100, 1050, None).unwrap();
        assert_eq!(
            held,
            LeaseOutcome::Held(LeaseHolder {
                owner: "a".into(),
                expires_ms: 1100
            })
        );
        // The holder itself may re-acquire; renewal moves the expiry.
        assert!(index.renew_lease("gc", "a", 100, 1090).unwrap());
        assert!(matches!(
            index.try_acquire_lease("gc", "b", 100, 1150, None).unwrap(),
            LeaseOutcome::Held(_)
        ));
        // Past expiry anyone may take over, and the old holder can no longer renew.
        assert_eq!(
            index.try_acquire_lease("gc", "b", 100, 1190, None).unwrap(),
            LeaseOutcome::Acquired
        );
        assert!(!index.renew_lease("gc", "a", 100, 1191).unwrap());
        // A holder known to be dead is taken over before expiry.
        assert_eq!(
            index
                .try_acquire_lease("gc", "c", 100, 1195, Some("b"))
                .unwrap(),
            LeaseOutcome::Acquired
        );
        assert!(!index.release_lease("gc", "b").unwrap());
        assert!(index.release_lease("gc", "c").unwrap());
        assert_eq!(index.lease_holder("gc").unwrap(), None);
    }
}
