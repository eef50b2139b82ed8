//! The sandboxed plugin runtime: mechanism only (engine, limits,
//! instantiation, host capabilities); the plugins are the policy.
//!
//! Architecture invariant: nothing here knows about jobs, the index or the
//! data directory layout. Callers hand in wasm bytes, limits, files (by id
//! and path) and an output path; plugins never see a host path.

mod bindings;
mod cache;
mod call;
mod engine;
mod host;
mod inspect;
mod limits;
mod manifest;
mod registry;

pub use bindings::{
    Deletion, Entity, ExportResult, ParamSpec, PluginError, PluginInfo, RemoteCopy, TransientError,
    UploadResult,
};
pub use cache::CacheOutcome;
pub use call::{
    Batch, CallError, CallFile, Decided, DestinationAccess, ErrorClass, Params, PlanSession,
    UploadTarget,
};
pub use engine::{Allocator, Runtime, RuntimeConfig};
pub use host::{Credential, RemoteAccess};
pub use inspect::{ComponentReport, WIT_VERSION, World, wit_version_supported};
pub use limits::Limits;
pub use manifest::{ManifestError, read_plugin_dir, validate_limits};
pub(crate) use registry::sha256_hex;
pub use registry::{LoadError, Plugin, PluginSource, Registry};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
}

/// The plugins compiled into this binary, each pinned to its build-time
/// sha256 and given `limits`.
pub fn bundled(limits: Limits) -> Vec<PluginSource> {
    embedded::BUNDLED
        .iter()
        .map(|(name, wasm, sha256)| PluginSource {
            name: (*name).to_owned(),
            wasm: wasm.to_vec(),
            sha256: (*sha256).to_owned(),
            world: None,
            limits,
            allowed_hosts: Vec::new(),
        })
        .collect()
}
