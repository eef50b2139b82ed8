//! wharf's integration tests, one binary so they link once.
#![allow(clippy::unwrap_used)]

mod api;
mod bundled;
mod cli;
mod contract;
mod exports;
mod fsck;
mod http;
mod http_server;
mod ingest;
mod inspect;
mod jobs;
mod lease;
mod plugin_cli;
mod retention;
mod s3;
mod s3_faults;
mod sandbox;
mod support;
mod sync;
