//! An exporter whose `describe` answer carries an invalid variant tag: its
//! one parameter's `default-value` (an `option<string>`) has discriminant 7.
//! The SDK's generated glue cannot produce that, so the export is written by
//! hand over the canonical ABI; the world's type comes from `generate!`.
// Hand-written exports over the canonical ABI are `unsafe` by nature.
#![allow(unreachable_pub, missing_docs, unsafe_code, dead_code)]

wit_bindgen::generate!({
    path: "../../../sdk/wit/v0.2",
    world: "exporter",
});

/// `plugin-info`: name, version, description, params (each pointer, length).
static mut INFO: [u32; 8] = [0; 8];
/// One `param-spec`: name, description, `required` at byte 16, then the
/// `default-value` option: tag at byte 20, string at 24.
static mut SPEC: [u32; 8] = [0; 8];

fn text(bytes: &'static [u8]) -> (u32, u32) {
    (bytes.as_ptr() as u32, bytes.len() as u32)
}

#[cfg(target_arch = "wasm32")]
#[unsafe(export_name = "wharf:plugin/export-format@0.2.0#describe")]
unsafe extern "C" fn describe() -> *const u32 {
    let (name, name_len) = text(b"bad-tag");
    let (version, version_len) = text(b"0.0.1");
    let (about, about_len) = text(b"answers an invalid option tag");
    // SAFETY: one call at a time in this instance; the host reads the
    // statics only until this call returns.
    unsafe {
        SPEC = [name, name_len, about, about_len, 1, 7, name, name_len];
        let spec = &raw const SPEC;
        INFO = [
            name,
            name_len,
            version,
            version_len,
            about,
            about_len,
            spec as u32,
            1,
        ];
        (&raw const INFO).cast()
    }
}

/// Never reached: the load fails at `describe`.
#[cfg(target_arch = "wasm32")]
#[unsafe(export_name = "wharf:plugin/export-format@0.2.0#run")]
unsafe extern "C" fn run(
    _: i32,
    _: i32,
    _: i64,
    _: i32,
    _: i64,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
) -> i32 {
    core::arch::wasm32::unreachable()
}
