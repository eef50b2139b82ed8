//! The wharf plugin SDK: write an exporter, a retention policy or an uploader
//! as a plain Rust type, export it with one macro, and unit-test it on the
//! native target with [`mock::MockHost`].
//!
//! ```
//! use wharf_sdk::{Deletion, FileInfo, Params, PluginError, PluginInfo, Retention};
//!
//! pub struct KeepNothing;
//!
//! impl Retention for KeepNothing {
//!     fn describe() -> PluginInfo {
//!         wharf_sdk::plugin_info("keep-nothing", "0.1.0", "deletes everything", &[])
//!     }
//!     fn plan(batch: Vec<FileInfo>, _: Params) -> Result<Vec<Deletion>, PluginError> {
//!         Ok(batch.into_iter().map(|f| Deletion { file: f.id, reason: "keep-nothing".into() }).collect())
//!     }
//! }
//!
//! wharf_sdk::export_retention!(KeepNothing);
//! # assert!(KeepNothing::plan(vec![], vec![]).unwrap().is_empty());
//! ```
//!
//! The same source builds to `wasm32-wasip2` (where the host functions in
//! [`host`], [`output`] and [`http`] call the wharf host) and natively (where
//! they call the mock host installed by [`mock::MockHost::run`]).

#[doc(hidden)]
pub mod bindings;
pub mod host;
pub mod http;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock;
pub mod output;
mod params;

pub use params::{param, param_parse};

#[doc(hidden)]
pub use bindings as __bindings;
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::exporter::exports::wharf::plugin::export_format::ExportResult;
pub use bindings::exporter::wharf::plugin::types::{
    EntityInfo, FileId, FileInfo, ParamSpec, Params, PluginError, PluginInfo,
};
pub use bindings::retention::exports::wharf::plugin::retention_policy::Deletion;
pub use bindings::uploader::exports::wharf::plugin::transfer::{Destination, UploadResult};

/// The version of the WIT package (`wharf:plugin@X.Y.Z`) this SDK targets.
pub const WIT_VERSION: &str = "0.1.0";

/// An export format: turns an entity's files into one output file through
/// [`output::write`] and [`output::append_file`].
pub trait Exporter {
    fn describe() -> PluginInfo;
    fn run(
        entity: EntityInfo,
        files: Vec<FileInfo>,
        params: Params,
    ) -> Result<ExportResult, PluginError>;
}

/// A retention policy: returns the files of a batch that may be deleted.
/// Batches are ordered by (entity, created desc) and never split an entity.
pub trait Retention {
    fn describe() -> PluginInfo;
    fn plan(batch: Vec<FileInfo>, params: Params) -> Result<Vec<Deletion>, PluginError>;
}

/// An uploader: sends one file to a destination through [`http::send`].
pub trait Uploader {
    fn describe() -> PluginInfo;
    fn run(
        file: FileInfo,
        destination: Destination,
        params: Params,
    ) -> Result<UploadResult, PluginError>;
}

/// Builds a [`PluginInfo`] for `describe`.
///
/// `params` are `(name, description, default)`; a parameter without a default
/// is required.
pub fn plugin_info(
    name: &str,
    version: &str,
    description: &str,
    params: &[(&str, &str, Option<&str>)],
) -> PluginInfo {
    PluginInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        description: description.to_owned(),
        params: params
            .iter()
            .map(|(name, description, default)| ParamSpec {
                name: (*name).to_owned(),
                description: (*description).to_owned(),
                required: default.is_none(),
                default_value: default.map(str::to_owned),
            })
            .collect(),
    }
}

/// Called at the start of every exported function: routes panic messages to
/// the host log (a plugin has no stderr) before the panic traps.
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
        impl $crate::__bindings::exporter::exports::wharf::plugin::export_format::Guest for $plugin {
            fn describe() -> $crate::PluginInfo {
                $crate::__enter();
                <$plugin as $crate::Exporter>::describe()
            }
            fn run(
                entity: $crate::EntityInfo,
                files: ::std::vec::Vec<$crate::FileInfo>,
                params: $crate::Params,
            ) -> ::std::result::Result<$crate::ExportResult, $crate::PluginError> {
                $crate::__enter();
                <$plugin as $crate::Exporter>::run(entity, files, params)
            }
        }
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__bindings::exporter::export_exporter_world!($plugin with_types_in $crate::__bindings::exporter);
        };
    };
}

/// Exports a type implementing [`Retention`] as the plugin's `retention` world.
#[macro_export]
macro_rules! export_retention {
    ($plugin:ident) => {
        impl $crate::__bindings::retention::exports::wharf::plugin::retention_policy::Guest for $plugin {
            fn describe() -> $crate::PluginInfo {
                $crate::__enter();
                <$plugin as $crate::Retention>::describe()
            }
            fn plan(
                batch: ::std::vec::Vec<$crate::FileInfo>,
                params: $crate::Params,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Deletion>, $crate::PluginError> {
                $crate::__enter();
                <$plugin as $crate::Retention>::plan(batch, params)
            }
        }
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__bindings::retention::export_retention_world!($plugin with_types_in $crate::__bindings::retention);
        };
    };
}

/// Exports a type implementing [`Uploader`] as the plugin's `uploader` world.
#[macro_export]
macro_rules! export_uploader {
    ($plugin:ident) => {
        impl $crate::__bindings::uploader::exports::wharf::plugin::transfer::Guest for $plugin {
            fn describe() -> $crate::PluginInfo {
                $crate::__enter();
                <$plugin as $crate::Uploader>::describe()
            }
            fn run(
                file: $crate::FileInfo,
                destination: $crate::Destination,
                params: $crate::Params,
            ) -> ::std::result::Result<$crate::UploadResult, $crate::PluginError> {
                $crate::__enter();
                <$plugin as $crate::Uploader>::run(file, destination, params)
            }
        }
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__bindings::uploader::export_uploader_world!($plugin with_types_in $crate::__bindings::uploader);
        };
    };
}
