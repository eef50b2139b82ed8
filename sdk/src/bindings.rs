//! All `wit-bindgen` output of the SDK lives here: one module per world, with
//! the interfaces the worlds share (`types`, `host`, `files`) generated once,
//! in the exporter module, and reused by the others so an `Entity` is one
//! type. Plugin code uses the SDK's own types and functions, never these
//! directly: the generated imports only exist on wasm32.
#![allow(missing_docs, unreachable_pub, clippy::all)]

pub mod exporter {
    wit_bindgen::generate!({
        path: "wit/v0.2",
        world: "exporter",
        runtime_path: "crate::__wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_exporter_world",
        default_bindings_module: "wharf_sdk::__bindings::exporter",
    });
}

pub mod retention {
    wit_bindgen::generate!({
        path: "wit/v0.2",
        world: "retention",
        runtime_path: "crate::__wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_retention_world",
        default_bindings_module: "wharf_sdk::__bindings::retention",
        with: {
            "wharf:plugin/types@0.2.0": crate::__bindings::exporter::wharf::plugin::types,
            "wharf:plugin/host@0.2.0": crate::__bindings::exporter::wharf::plugin::host,
        },
    });
}

pub mod uploader {
    wit_bindgen::generate!({
        path: "wit/v0.2",
        world: "uploader",
        runtime_path: "crate::__wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_uploader_world",
        default_bindings_module: "wharf_sdk::__bindings::uploader",
        with: {
            "wharf:plugin/types@0.2.0": crate::__bindings::exporter::wharf::plugin::types,
            "wharf:plugin/host@0.2.0": crate::__bindings::exporter::wharf::plugin::host,
            "wharf:plugin/files@0.2.0": crate::__bindings::exporter::wharf::plugin::files,
        },
    });
}
