//! All `wasmtime::component::bindgen!` output lives here: one module per
//! wharf world, sharing the interfaces the worlds have in common (`types`,
//! `host`, `files`) generated once in the exporter module, so an `Entity` is
//! one type across worlds; and the WASI subset every plugin gets (`sandbox`).
#![allow(missing_docs, unreachable_pub, clippy::all)]

pub(crate) mod exporter {
    wasmtime::component::bindgen!({
        path: "../sdk/wit/v0.2",
        world: "exporter",
        imports: { default: trappable },
        with: {
            "wharf:plugin/files.file": crate::runtime::host::GrantedFile,
        },
    });
}

pub(crate) mod retention {
    wasmtime::component::bindgen!({
        path: "../sdk/wit/v0.2",
        world: "retention",
        imports: { default: trappable },
        with: {
            "wharf:plugin/types": crate::runtime::bindings::exporter::wharf::plugin::types,
            "wharf:plugin/host": crate::runtime::bindings::exporter::wharf::plugin::host,
            "wharf:plugin/batches.batch": crate::runtime::host::HostBatch,
        },
    });
}

pub(crate) mod uploader {
    wasmtime::component::bindgen!({
        path: "../sdk/wit/v0.2",
        world: "uploader",
        imports: { default: trappable },
        with: {
            "wharf:plugin/types": crate::runtime::bindings::exporter::wharf::plugin::types,
            "wharf:plugin/host": crate::runtime::bindings::exporter::wharf::plugin::host,
            "wharf:plugin/files": crate::runtime::bindings::exporter::wharf::plugin::files,
        },
    });
}

/// The WASI 0.2 interfaces the host provides (see `host/wit/sandbox.wit`).
pub(crate) mod sandbox {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "wharf:host/sandbox",
        imports: { default: trappable },
        with: {
            "wasi:io/streams.output-stream": crate::runtime::host::LogStream,
            "wasi:io/streams.input-stream": crate::runtime::host::NoInput,
            "wasi:io/poll.pollable": crate::runtime::host::ReadyPollable,
            "wasi:io/error.error": crate::runtime::host::NoError,
        },
    });
}

pub(crate) use exporter::wharf::plugin::host::Level;
pub(crate) use exporter::wharf::plugin::{
    files as files_api, host as host_api, output as output_api, types as types_api,
};
pub(crate) use retention::wharf::plugin::disk as disk_api;
pub(crate) use uploader::wharf::plugin::{http as http_api, local_store as local_api};

pub use exporter::exports::wharf::plugin::export_format::ExportResult;
pub use exporter::wharf::plugin::files::RemoteCopy;
pub use exporter::wharf::plugin::types::{
    Entity, ParamSpec, PluginError, PluginInfo, TransientError,
};
pub use retention::exports::wharf::plugin::retention_policy::{Decisions, Deletion};
pub use uploader::exports::wharf::plugin::transfer::{Destination, DestinationKind, UploadResult};
