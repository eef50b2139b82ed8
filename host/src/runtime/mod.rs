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
mod registry;

pub use bindings::{
    Deletion, Entity, ExportResult, ParamSpec, PluginError, PluginInfo, RemoteCopy, TransientError,
    UploadResult,
};
pub use cache::CacheOutcome;
pub use call::{
    Batch, CallError, CallFile, Decided, DestinationAccess, ErrorClass, Exported, Params,
    PlanSession, UploadTarget,
};
pub use engine::{Allocator, Runtime, RuntimeConfig};
pub use host::{Credential, RemoteAccess};
pub use inspect::{
    ComponentReport, WIT_VERSION, World, check_component_bytes, wit_version_supported,
};
pub use limits::{Limits, validate_limits};
pub(crate) use registry::sha256_hex;
pub use registry::{LoadError, Plugin, PluginSource, Registry};
