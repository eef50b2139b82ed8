//! Leases across threads and processes: exactly one holder, renewal under
//! long work, takeover after expiry or when the holder's process died.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf::index::Index;
use wharf::lease::{Lease, LeaseError};

fn index(dir: &std::path::Path) -> Arc<Index> {
    Arc::new(Index::open(&dir.join("index.sqlite")).unwrap())
}

/// Starts a `lease-holder` process and waits for its first line.
fn holder(dir: &std::path::Path, name: &str, ttl_ms: u64, hold_ms: u64) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lease-holder"))
        .arg(dir.join("index.sqlite"))
        .args([name, &ttl_ms.to_string(), &hold_ms.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

#[test]
fn eight_threads_racing_for_a_lease_get_exactly_one_holder() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let results: Vec<_> = (0..8)
        .map(|i| {
            let (index, barrier) = (index.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let owner = format!("thread-{i}");
                Lease::acquire_as(index, "gc", &owner, Duration::from_secs(30), Duration::ZERO)
            })
        })
        .collect();
    let outcomes: Vec<_> = results.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    let winner = winners[0].owner().to_owned();
    for outcome in &outcomes {
        if let Err(LeaseError::Timeout { holder, .. }) = outcome {
            assert_eq!(holder, &winner, "losers are told who holds it");
        }
    }
}

#[test]
fn two_processes_get_exactly_one_holder_and_a_killed_holder_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let (mut first, said) = holder(dir.path(), "export", 60_000, 60_000);
    assert_eq!(said, "acquired");
    let (mut second, said) = holder(dir.path(), "export", 60_000, 0);
    assert!(said.starts_with("busy "), "{said}");
    assert_eq!(second.wait().unwrap().code(), Some(3));
    let err = Lease::acquire(
        index.clone(),
        "export",
        Duration::from_secs(60),
        Duration::from_millis(50),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("held by"), "{err}");
    // kill -9: no release, and the lease has 60 s left.
    first.kill().unwrap();
    first.wait().unwrap();
    let started = Instant::now();
    let lease = Lease::acquire(
        index,
        "export",
        Duration::from_secs(60),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took over without waiting for the TTL"
    );
    assert!(lease.is_held());
}

#[test]
fn an_expired_lease_of_another_host_is_taken_over_after_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let now = wharf::index::now_ms();
    // Another host's holder is never judged dead from here: only expiry frees it.
    index
        .try_acquire_lease("sync", "other-host:1:1", 300, now, None)
        .unwrap();
    assert!(
        Lease::acquire(
            index.clone(),
            "sync",
            Duration::from_secs(5),
            Duration::ZERO
        )
        .is_err()
    );
    let started = Instant::now();
    let lease = Lease::acquire(
        index,
        "sync",
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "waited for expiry"
    );
    assert!(lease.is_held());
}

#[test]
fn a_lease_is_renewed_while_held_so_it_never_expires_under_long_work() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path());
    let lease = Lease::acquire_as(
        index.clone(),
        "long",
        "worker",
        Duration::from_millis(150),
        Duration::ZERO,
    )
    .unwrap();
    let until = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < until {
        let other = Lease::acquire_as(
            index.clone(),
            "long",
            "thief",
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert!(other.is_err(), "lease expired under its holder");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lease.is_held());
    drop(lease);
    // Released on drop: free at once.
    Lease::acquire_as(
        index,
        "long",
        "thief",
        Duration::from_secs(1),
        Duration::ZERO,
    )
    .unwrap();
}
