//! All `wasmtime::component::bindgen!` output lives here: one module per
//! world, sharing the `types` and `host` interfaces generated once in the
//! exporter module, so a `FileInfo` is one type across worlds.
#![allow(missing_docs, unreachable_pub, clippy::all)]

pub(crate) mod exporter {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "exporter",
        imports: { default: trappable },
    });
}

pub(crate) mod retention {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "retention",
        imports: { default: trappable },
        with: {
            "wharf:plugin/types": crate::runtime::bindings::exporter::wharf::plugin::types,
            "wharf:plugin/host": crate::runtime::bindings::exporter::wharf::plugin::host,
        },
    });
}

pub(crate) mod uploader {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "uploader",
        imports: { default: trappable },
        with: {
            "wharf:plugin/types": crate::runtime::bindings::exporter::wharf::plugin::types,
            "wharf:plugin/host": crate::runtime::bindings::exporter::wharf::plugin::host,
        },
    });
}

pub(crate) use exporter::wharf::plugin::host::Level;
pub(crate) use exporter::wharf::plugin::{
    host as host_api, output as output_api, types as types_api,
};
pub(crate) use uploader::wharf::plugin::http as http_api;

pub use exporter::exports::wharf::plugin::export_format::ExportResult;
pub use exporter::wharf::plugin::types::{
    EntityInfo, FileInfo, ParamSpec, PluginError, PluginInfo,
};
pub use retention::exports::wharf::plugin::retention_policy::Deletion;
pub use uploader::exports::wharf::plugin::transfer::{Destination, UploadResult};
