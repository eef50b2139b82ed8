//! The wharf plugin SDK: write an exporter, a retention policy or an uploader
//! as a plain Rust type, export it with one macro, and unit-test it on the
//! native target with [`mock::MockHost`].
//!
//! ```
//! use wharf_sdk::{Batch, Decisions, ParamSpec, Params, Planner, PluginError, PluginInfo, Retention};
//!
//! pub struct KeepNothing;
//! pub struct Run { reason: String }
//!
//! impl Retention for KeepNothing {
//!     type Planner = Run;
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("keep-nothing", "0.1.0")
//!             .description("deletes everything")
//!             .param(ParamSpec::new("reason", "what the audit log says").default("keep-nothing"))
//!     }
//!     fn open(params: Params) -> Result<Run, PluginError> {
//!         let reason = wharf_sdk::param(&params, "reason").unwrap_or("keep-nothing").to_owned();
//!         Ok(Run { reason })
//!     }
//! }
//!
//! impl Planner for Run {
//!     fn plan(&mut self, batch: &Batch) -> Result<Decisions, PluginError> {
//!         let mut decisions = Decisions::new();
//!         for id in batch.ids() {
//!             decisions.delete(id, &self.reason);
//!         }
//!         Ok(decisions)
//!     }
//! }
//!
//! wharf_sdk::export_retention!(KeepNothing);
//! # let batch = Batch::new(0, vec![], vec![]);
//! # assert!(KeepNothing::open(vec![]).unwrap().plan(&batch).unwrap().deletions.is_empty());
//! ```
//!
//! The same source builds to `wasm32-wasip2` (where the functions in
//! [`host`], [`files`], [`output`], [`http`], [`local`] and [`disk`] call the
//! wharf host) and natively (where they call the mock host installed by
//! [`mock::MockHost::run`]).

#[doc(hidden)]
pub mod bindings;
/// The plugin author's guide (`sdk/README.md`); its examples are tested.
#[doc = include_str!("../README.md")]
pub mod guide {}
pub mod disk;
mod error;
pub mod files;
pub mod host;
#[cfg(all(feature = "host-test", not(target_arch = "wasm32")))]
pub mod host_test;
pub mod http;
mod info;
pub mod local;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock;
pub mod output;
mod params;
mod retention;
pub mod text;

pub use files::{File, FileEntry};
pub use params::{param, param_parse};
pub use retention::{Batch, Candidate, FileFlags, NO_ENTITY, Planner};

#[doc(hidden)]
pub use bindings as __bindings;
#[doc(hidden)]
pub use retention::PlannerCell as __PlannerCell;
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::exporter::exports::wharf::plugin::export_format::ExportResult;
pub use bindings::exporter::wharf::plugin::files::RemoteCopy;
pub use bindings::exporter::wharf::plugin::types::{
    Attributes, Entity, ParamSpec, Params, PluginError, PluginInfo, TransientError,
};
pub use bindings::retention::exports::wharf::plugin::retention_policy::{Decisions, Deletion};
pub use bindings::uploader::exports::wharf::plugin::transfer::{
    Destination, DestinationKind, UploadResult,
};

/// The version of the WIT package (`wharf:plugin@X.Y.Z`) this SDK targets.
pub const WIT_VERSION: &str = "0.2.0";

/// An export format: turns an entity's files into one output file through
/// [`output::write`] and [`output::append_file`].
pub trait Exporter {
    fn describe() -> PluginInfo;
    fn run(
        entity: Entity,
        files: Vec<FileEntry>,
        params: Params,
    ) -> Result<ExportResult, PluginError>;
}

/// A retention policy: opens one [`Planner`] per run.
pub trait Retention {
    type Planner: Planner;
    fn describe() -> PluginInfo;
    /// Validates the parameters and starts a run; `invalid-params` here stops
    /// the run before any batch.
    fn open(params: Params) -> Result<Self::Planner, PluginError>;
}

/// An uploader: copies one file to a destination through [`http`] (remote)
/// or [`local`] (a local directory).
pub trait Uploader {
    fn describe() -> PluginInfo;
    fn run(
        file: FileEntry,
        destination: Destination,
        params: Params,
    ) -> Result<UploadResult, PluginError>;
}

/// Called at the start of every exported function: routes panic messages to
/// the host log before the panic traps.
#[doc(hidden)]
pub fn __enter() {
    #[cfg(target_arch = "wasm32")]
    {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                host::log(host::Level::Error, &format!("plugin panicked: {info}"));
            }));
        });
    }
}

/// Exports a type implementing [`Exporter`] as the plugin's `exporter` world.
#[macro_export]
macro_rules! export_exporter {
    ($plugin:ident) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__bindings::exporter as world;
            impl world::exports::wharf::plugin::export_format::Guest for $plugin {
                fn describe() -> $crate::PluginInfo {
                    $crate::__enter();
                    <$plugin as $crate::Exporter>::describe()
                }
                fn run(
                    entity: $crate::Entity,
                    files: ::std::vec::Vec<
                        $crate::__bindings::exporter::wharf::plugin::files::FileEntry,
                    >,
                    params: $crate::Params,
                ) -> ::std::result::Result<$crate::ExportResult, $crate::PluginError> {
                    $crate::__enter();
                    let files = files.into_iter().map($crate::FileEntry::from).collect();
                    <$plugin as $crate::Exporter>::run(entity, files, params)
                }
            }
    world::export_exporter_world!($plugin with_types_in $crate::__bindings::exporter);
        };
    };
}

/// Exports a type implementing [`Retention`] as the plugin's `retention` world.
#[macro_export]
macro_rules! export_retention {
    ($plugin:ident) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__bindings::retention as world;
            impl world::exports::wharf::plugin::retention_policy::Guest for $plugin {
                fn describe() -> $crate::PluginInfo {
                    $crate::__enter();
                    <$plugin as $crate::Retention>::describe()
                }
                type Planner = $crate::__PlannerCell<$plugin>;
            }
    world::export_retention_world!($plugin with_types_in $crate::__bindings::retention);
        };
    };
}

/// Exports a type implementing [`Uploader`] as the plugin's `uploader` world.
#[macro_export]
macro_rules! export_uploader {
    ($plugin:ident) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__bindings::uploader as world;
            impl world::exports::wharf::plugin::transfer::Guest for $plugin {
                fn describe() -> $crate::PluginInfo {
                    $crate::__enter();
                    <$plugin as $crate::Uploader>::describe()
                }
                fn run(
                    file: $crate::__bindings::exporter::wharf::plugin::files::FileEntry,
                    destination: $crate::Destination,
                    params: $crate::Params,
                ) -> ::std::result::Result<$crate::UploadResult, $crate::PluginError> {
                    $crate::__enter();
                    <$plugin as $crate::Uploader>::run(
                        $crate::FileEntry::from(file),
                        destination,
                        params,
                    )
                }
            }
    world::export_uploader_world!($plugin with_types_in $crate::__bindings::uploader);
        };
    };
}
