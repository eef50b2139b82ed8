//! The queue as the rest of wharf uses it: a [`Request`] names a kind, its
//! single-flight key and what it absorbs; [`Queue::enqueue`] turns it into a
//! row (or folds it into the live job of its key) and logs the trigger.

use std::sync::Arc;

use crate::config::JobsConfig;
use crate::index::{Enqueued, Index, NewJob, now_ms};

use super::{CLEANUP, GC, INGEST, Trigger};

/// Work asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: String,
    /// Single-flight key: one live job per key; a request while it runs
    /// makes exactly one more run follow.
    pub key: Option<String>,
    /// JSON.
    pub payload: String,
    /// A queued job of this key is cancelled: this one's run covers it.
    pub absorbs: Option<String>,
    /// A queued job of this key covers this request.
    pub absorbed_by: Option<String>,
}

/// The single-flight key of the full cleanup.
const CLEANUP_KEY: &str = "cleanup";

impl Request {
    /// A job of `kind` with `payload`, no key: every request runs.
    pub fn new(kind: &str, payload: &str) -> Request {
        Request {
            kind: kind.to_owned(),
            key: None,
            payload: payload.to_owned(),
            absorbs: None,
            absorbed_by: None,
        }
    }

    /// A job of `kind` under single-flight `key`.
    pub fn keyed(kind: &str, key: &str, payload: &str) -> Request {
        Request {
            key: Some(key.to_owned()),
            ..Request::new(kind, payload)
        }
    }

    /// The inbox scan.
    pub fn ingest() -> Request {
        Request::keyed(INGEST, INGEST, "{}")
    }

    /// Every retention policy, then orphan GC: absorbs a pending GC-only run.
    pub fn full_cleanup() -> Request {
        Request {
            absorbs: Some(GC.to_owned()),
            ..Request::keyed(CLEANUP, CLEANUP_KEY, "{}")
        }
    }

    /// Orphan GC only: absorbed by a pending full cleanup.
    pub fn gc() -> Request {
        Request {
            absorbed_by: Some(CLEANUP_KEY.to_owned()),
            ..Request::keyed(GC, GC, "{}")
        }
    }
}

/// Enqueues requests on an index.
#[derive(Debug, Clone)]
pub struct Queue {
    index: Arc<Index>,
    max_attempts: u32,
}

impl Queue {
    pub fn new(index: Arc<Index>, config: &JobsConfig) -> Queue {
        Queue {
            index,
            max_attempts: config.max_attempts,
        }
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Enqueues `request`, due now. Blocking (one SQLite write).
    pub fn enqueue(&self, request: &Request, trigger: Trigger) -> anyhow::Result<Enqueued> {
        let now = now_ms();
        let enqueued = self.index.enqueue_job(&self.new_job(request, now), now)?;
        match enqueued {
            Enqueued::Queued(id) => {
                tracing::info!(job_id = id.0, kind = %request.kind, trigger = %trigger, "job queued");
            }
            other => {
                tracing::debug!(job_id = other.id().0, kind = %request.kind, trigger = %trigger, outcome = ?other, "trigger folded into a live job");
            }
        }
        Ok(enqueued)
    }

    /// Enqueues many requests in one transaction.
    pub fn enqueue_many(&self, requests: &[Request]) -> anyhow::Result<Vec<Enqueued>> {
        let now = now_ms();
        let jobs: Vec<NewJob> = requests.iter().map(|r| self.new_job(r, now)).collect();
        self.index.enqueue_jobs(&jobs, now)
    }

    fn new_job(&self, request: &Request, now: i64) -> NewJob {
        NewJob {
            kind: request.kind.clone(),
            unique_key: request.key.clone(),
            payload: request.payload.clone(),
            max_attempts: self.max_attempts,
            due_ms: now,
            absorbs: request.absorbs.clone(),
            absorbed_by: request.absorbed_by.clone(),
        }
    }
}
