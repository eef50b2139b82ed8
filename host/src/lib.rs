//! wharf: a daemon that keeps a directory of data files under control,
//! with exports, retention and uploads done by sandboxed WebAssembly plugins.
//! See ARCHITECTURE.md at the repository root for the map.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod export;
pub mod fsck;
pub mod gc;
pub mod index;
pub mod ingest;
pub mod jobs;
pub mod lease;
pub mod plugins;
pub mod retention;
pub mod runtime;
pub mod scaffold;
pub mod store;
pub mod sync;
#[cfg(test)]
mod tidy;
pub mod views;
