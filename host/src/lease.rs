//! Leases: named, exclusive, time-limited claims that survive nothing but
//! their holder. A holder renews while it works (so a lease never expires
//! under a long job), releases when done, and a lease whose holder died —
//! expired, or held by a process of this host that no longer exists — is
//! taken over.
//!
//! A holder is `scope:pid:start:instance`. `scope` is the host name, the
//! boot id and the PID namespace (`host~boot~pidns`): a pid means something
//! only within one boot of one PID namespace, so only a holder of the same
//! scope can be judged dead from its pid. `start` is the process start time
//! (from `/proc/PID/stat`), which tells a dead holder from a new process
//! that reused its pid, or `?` when it cannot be read; `instance` is random
//! per process, so two processes never share an identity by accident.
//!
//! Architecture invariant: a holder is taken over before its lease expires
//! only when it is provably dead: same scope, a known start time, `/proc`
//! readable, and no process with that pid and start time. Anything else
//! (another host, another namespace, an unreadable start time) waits for
//! expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::index::{Index, LeaseHolder, LeaseOutcome, now_ms};

/// Why a lease was not acquired.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "lease {name} is held by {holder} until {expires_ms} (ms since epoch); gave up after {waited:?}"
    )]
    Timeout {
        name: String,
        holder: String,
        expires_ms: i64,
        waited: Duration,
    },
    #[error(transparent)]
    Index(#[from] anyhow::Error),
}

/// A held lease. Renewed in the background while alive; released on drop.
pub struct Lease {
    name: String,
    owner: String,
    index: Arc<Index>,
    stop: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

/// This process as a lease holder: `scope:pid:start:instance`, the same
/// for the whole life of the process.
pub fn this_process() -> String {
    static IDENTITY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            let pid = std::process::id();
            let start = start_time(pid).map_or_else(|| "?".to_owned(), |t| t.to_string());
            format!("{}:{pid}:{start}:{:016x}", scope(), fastrand::u64(..))
        })
        .clone()
}

/// The pid in a holder's identity, to name it in a message.
pub fn holder_pid(holder: &str) -> Option<u32> {
    let parts: Vec<&str> = holder.rsplitn(4, ':').collect();
    match parts.as_slice() {
        [_instance, _start, pid, _scope] => pid.parse().ok(),
        _ => None,
    }
}

impl Lease {
    /// Acquires `name` for `ttl`, waiting up to `timeout` for its holder to
    /// release it, let it expire or die. The lease is renewed every `ttl / 3`
    /// until dropped.
    pub fn acquire(
        index: Arc<Index>,
        name: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Lease, LeaseError> {
        Lease::acquire_as(index, name, &this_process(), ttl, timeout)
    }

    /// As [`Lease::acquire`], for an explicit holder identity.
    pub fn acquire_as(
        index: Arc<Index>,
        name: &str,
        owner: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Lease, LeaseError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        let mut dead: Option<String> = None;
        loop {
            match index.try_acquire_lease(name, owner, ttl_ms, now_ms(), dead.as_deref())? {
                LeaseOutcome::Acquired => break,
                LeaseOutcome::Held(LeaseHolder {
                    owner: holder,
                    expires_ms,
                }) => {
                    if holder_is_dead(&holder) {
                        tracing::info!(
                            lease = name,
                            holder,
                            "taking over the lease of a dead process"
                        );
                        dead = Some(holder);
                        continue;
                    }
                    let waited = started.elapsed();
                    if waited >= timeout {
                        return Err(LeaseError::Timeout {
                            name: name.to_owned(),
                            holder,
                            expires_ms,
                            waited,
                        });
                    }
                    std::thread::sleep(pause.min(timeout - waited));
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (index, stop) = (index.clone(), stop.clone());
            let (name, owner) = (name.to_owned(), owner.to_owned());
            std::thread::Builder::new()
                .name(format!("lease-{name}"))
                .spawn(move || renew_until_stopped(&index, &name, &owner, ttl, ttl_ms, &stop))
                .map_err(|err| LeaseError::Index(err.into()))?
        };
        Ok(Lease {
            name: name.to_owned(),
            owner: owner.to_owned(),
            index,
            stop,
            renewer: Some(renewer),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether the index still says this lease is ours.
    pub fn is_held(&self) -> bool {
        matches!(self.index.lease_holder(&self.name), Ok(Some(holder)) if holder.owner == self.owner)
    }
}

fn renew_until_stopped(
    index: &Index,
    name: &str,
    owner: &str,
    ttl: Duration,
    ttl_ms: i64,
    stop: &AtomicBool,
) {
    let every = (ttl / 3).max(Duration::from_millis(1));
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10).min(every));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + every;
        match index.renew_lease(name, owner, ttl_ms, now_ms()) {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(lease = name, "lease was lost: another holder took it over");
                return;
            }
            Err(error) => {
                tracing::warn!(lease = name, error = %error, "could not renew the lease; retrying")
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        if let Err(error) = self.index.release_lease(&self.name, &self.owner) {
            tracing::warn!(lease = self.name, error = %error, "could not release the lease; it will expire");
        }
    }
}

/// A holder of this scope (host, boot, PID namespace) whose process is
/// provably gone: no process with its pid, or one started at another time.
/// Holders of another scope, with an unknown start time, or in an old
/// format are never judged dead here: their leases expire instead.
pub fn holder_is_dead(holder: &str) -> bool {
    let parts: Vec<&str> = holder.rsplitn(4, ':').collect();
    let [instance, start, pid, holder_scope] = parts.as_slice() else {
        return false;
    };
    let (Ok(start), Ok(pid)) = (start.parse::<u64>(), pid.parse::<u32>()) else {
        return false;
    };
    if instance.is_empty() || *holder_scope != scope() {
        return false;
    }
    // Without a readable /proc nothing can be proven about another process.
    if start_time(std::process::id()).is_none() {
        return false;
    }
    start_time(pid) != Some(start)
}

/// Where pids mean the same thing: host name, boot id, PID namespace.
fn scope() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().chars().take(8).collect::<String>())
        .unwrap_or_else(|_| "?".to_owned());
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("pid:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".to_owned());
    format!("{}~{boot}~{namespace}", host_name())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().replace(':', "_"))
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Start time of process `pid` in clock ticks since boot, or `None` if there
/// is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_gone_or_reused_pid_is_dead() {
        let me = this_process();
        assert_eq!(me, this_process(), "one identity per process");
        assert!(!holder_is_dead(&me), "{me}");
        assert_eq!(holder_pid(&me), Some(std::process::id()));
        let pid = std::process::id();
        let start = start_time(pid).unwrap();
        let here = scope();
        assert!(
            holder_is_dead(&format!("{here}:{pid}:{}:00ff", start + 1)),
            "pid reused by a later process"
        );
        assert!(
            holder_is_dead(&format!("{here}:{}:1:00ff", u32::MAX - 1)),
            "no such pid"
        );
    }

    #[test]
    fn a_holder_that_cannot_be_proven_dead_is_left_to_expire() {
        let here = scope();
        let gone = u32::MAX - 1;
        for holder in [
            format!("other-host~abc~123:{gone}:1:00ff"),
            // The same host name on another machine or in another PID namespace.
            format!("{}~other~boot:{gone}:1:00ff", host_name()),
            // A holder whose start time could not be read.
            format!("{here}:{gone}:?:00ff"),
            // The old format, without scope details or instance.
            format!("{}:{gone}:1", host_name()),
            "garbage".to_owned(),
        ] {
            assert!(!holder_is_dead(&holder), "{holder}");
        }
    }
}
