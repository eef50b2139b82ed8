//! Test helper: takes a lease in its own process and holds it.
//!
//! `lease-holder INDEX NAME TTL_MS HOLD_MS` prints `acquired` and holds the
//! lease (renewing it) for HOLD_MS, or prints `busy HOLDER` and exits 3.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, index, name, ttl_ms, hold_ms] = args.as_slice() else {
        eprintln!("usage: lease-holder INDEX NAME TTL_MS HOLD_MS");
        return std::process::ExitCode::from(2);
    };
    let parse = |value: &str| value.parse::<u64>().map(Duration::from_millis);
    let (Ok(ttl), Ok(hold)) = (parse(ttl_ms), parse(hold_ms)) else {
        eprintln!("TTL_MS and HOLD_MS must be integers");
        return std::process::ExitCode::from(2);
    };
    let index = match wharf::index::Index::open(std::path::Path::new(index)) {
        Ok(index) => Arc::new(index),
        Err(error) => {
            eprintln!("{error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match wharf::lease::Lease::acquire(index, name, ttl, Duration::ZERO) {
        Ok(lease) => {
            println!("acquired");
            let _ = std::io::stdout().flush();
            std::thread::sleep(hold);
            drop(lease);
            std::process::ExitCode::SUCCESS
        }
        Err(wharf::lease::LeaseError::Timeout { holder, .. }) => {
            println!("busy {holder}");
            std::process::ExitCode::from(3)
        }
        Err(error) => {
            eprintln!("{error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
