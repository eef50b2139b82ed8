//! All `wit-bindgen` output of the SDK lives here: one module per world, with
//! the interfaces the worlds share (`types`, `host`) generated once, in the
//! exporter module, and reused by the others so a `FileInfo` is one type.
#![allow(missing_docs, unreachable_pub, clippy::all)]

pub mod exporter {
    wit_bindgen::generate!({
        path: "wit",
        world: "exporter",
        runtime_path: "crate::__wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_exporter_world",
        default_bindings_module: "wharf_sdk::__bindings::exporter",
    });
}

pub mod retention {
    wit_bindgen::generate!({
        path: "wit",
        world: "retention",
        runtime_path: "crate::__wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_retention_world",
        default_bindings_module: "wharf_sdk::__bindings::retention",
        with: {
            "wharf:plugin/types@0.1.0": crate::__bindings::exporter::wharf::plugin::types,
            "wharf:plugin/host@0.1.0": crate::__bindings::exporter::wharf::plugin::host,
        },
    });
}

pub mod uploader {
    wit_bindgen::generate!({
        path: "wit",
        world: "uploader",
        runtime_path: "crate::__wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_uploader_world",
        default_bindings_module: "wharf_sdk::__bindings::uploader",
        with: {
            "wharf:plugin/types@0.1.0": crate::__bindings::exporter::wharf::plugin::types,
            "wharf:plugin/host@0.1.0": crate::__bindings::exporter::wharf::plugin::host,
        },
    });
}
