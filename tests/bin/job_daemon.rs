//! Test helper: `wharf run` with test job kinds registered beside the
//! built-in ones, so the integration tests can drive real daemon processes.
//!
//! `job-daemon DATA_DIR RECORD_FILE` serves DATA_DIR (configured by its
//! wharf.toml) until SIGTERM, with the kinds:
//! - `test-record`: payload `{"ms": N}`; appends `start ID` to RECORD_FILE,
//!   works N ms (stopping early if cancelled), then appends `end ID`; with
//!   `"pausable": true` it also makes way when the pool asks, appending
//!   `yield ID`, and works N ms again on its next run;
//! - `test-panic`: panics with `boom in job ID`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf::jobs::{Handler, Handlers, JobContext, JobError};

struct Record(PathBuf);

impl Record {
    fn append(&self, line: &str) -> Result<(), JobError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .map_err(|e| JobError::Transient(e.into()))?;
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| JobError::Transient(e.into()))
    }
}

impl Handler for Record {
    fn run(&self, job: &JobContext<'_>) -> Result<(), JobError> {
        let payload: serde_json::Value =
            serde_json::from_str(job.payload).map_err(|e| JobError::Terminal(e.into()))?;
        let ms = payload["ms"].as_u64().unwrap_or(0);
        let pausable = payload["pausable"].as_bool().unwrap_or(false);
        self.append(&format!("start {}", job.id))?;
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            if job.cancelled() {
                self.append(&format!("cancelled {}", job.id))?;
                return Err(JobError::Cancelled);
            }
            if pausable && job.should_yield() {
                self.append(&format!("yield {}", job.id))?;
                return Err(JobError::Yielded);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.append(&format!("end {}", job.id))
    }
}

struct Panic;

impl Handler for Panic {
    fn run(&self, job: &JobContext<'_>) -> Result<(), JobError> {
        panic!("boom in job {}", job.id);
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, data_dir, record] = args.as_slice() else {
        eprintln!("usage: job-daemon DATA_DIR RECORD_FILE");
        return std::process::ExitCode::from(2);
    };
    let data_dir = wharf::store::DataDir::new(data_dir);
    let config = match wharf::config::Config::load(&data_dir.config_path()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut handlers = Handlers::new();
    handlers.register("test-record", Arc::new(Record(record.into())));
    handlers.register("test-panic", Arc::new(Panic));
    match wharf::cli::serve(data_dir, config, handlers) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
