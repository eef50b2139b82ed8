//! The capabilities a plugin may call, one file per WIT interface, and the
//! function that puts them into a `Linker`.
//!
//! Invariant: a plugin reaches the host's files only through the `file`
//! handles of the current call, the network only through `http` and its
//! destination's allowlist, a local destination only through `local-store`
//! under its root, and of WASI only clocks, randomness and stdout/stderr
//! (into the log). Every other WASI import a component declares (Rust's std
//! declares several even when unused) is linked to a function that fails the
//! call with a typed access-denied error.

mod batches;
mod disk;
mod files;
mod http;
mod local;
mod log;
mod output;
mod wasi;

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker, ResourceType};

use super::bindings::{
    disk_api, files_api, host_api, http_api, local_api, output_api, sandbox, types_api,
};
use super::call::CallState;

// `bindgen!` re-exports the resource types, so they are `pub` here.
#[allow(unreachable_pub)]
pub use batches::HostBatch;
#[allow(unreachable_pub)]
pub use files::GrantedFile;
pub(crate) use files::open_range;
pub use http::{Credential, RemoteAccess};
pub(crate) use http::{HttpAccess, HttpAgents};
pub(crate) use local::LocalAccess;
pub(crate) use log::LogBudget;
pub(crate) use output::Output;
#[allow(unreachable_pub)]
pub use wasi::{LogStream, NoError, NoInput, ReadyPollable};

/// Prefix of every import and export of the wharf WIT package.
pub(crate) const WHARF_PACKAGE: &str = "wharf:plugin/";

/// The WASI interfaces `wasi.rs` implements; any version 0.2.x of them links
/// to it. Every other WASI import is denied.
const PROVIDED_WASI: &[&str] = &[
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:io/streams",
    "wasi:io/error",
    "wasi:io/poll",
];

/// The linker every plugin's own linker starts from: all wharf interfaces
/// and the provided WASI. Which wharf interfaces a plugin may import is
/// checked per world at load time.
pub(crate) fn base_linker(engine: &Engine) -> anyhow::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    let add = |result: wasmtime::Result<()>| {
        result.map_err(|err| anyhow::anyhow!("could not link the plugin host interfaces: {err:#}"))
    };
    type State = HasSelf<CallState>;
    fn get(state: &mut CallState) -> &mut CallState {
        state
    }
    add(types_api::add_to_linker::<_, State>(&mut linker, get))?;
    add(host_api::add_to_linker::<_, State>(&mut linker, get))?;
    add(files_api::add_to_linker::<_, State>(&mut linker, get))?;
    add(output_api::add_to_linker::<_, State>(&mut linker, get))?;
    add(http_api::add_to_linker::<_, State>(&mut linker, get))?;
    add(local_api::add_to_linker::<_, State>(&mut linker, get))?;
    add(disk_api::add_to_linker::<_, State>(&mut linker, get))?;
    add(batches::add_to_linker(&mut linker))?;
    add(sandbox::Sandbox::add_to_linker::<_, State>(
        &mut linker,
        get,
    ))?;
    Ok(linker)
}

impl types_api::Host for CallState {}

/// The error a denied (non-wharf, not provided) import fails with.
#[derive(Debug, thiserror::Error)]
#[error("plugins have no `{0}`: use the wharf host imports instead")]
pub(crate) struct DeniedImport(pub(crate) String);

/// Whether an import name (e.g. `wasi:cli/stdout@0.2.4`) is one of the WASI
/// interfaces the host provides.
fn is_provided_wasi(name: &str) -> bool {
    let unversioned = name.split_once('@').map_or(name, |(base, _)| base);
    let version = name.split_once('@').map_or("", |(_, v)| v);
    PROVIDED_WASI.contains(&unversioned) && version.starts_with("0.2.")
}

/// Links every import of `component` outside the wharf package and the
/// provided WASI to a function that fails with [`DeniedImport`], so merely
/// declaring WASI imports is fine but using them is not.
pub(crate) fn deny_foreign_imports(
    linker: &mut Linker<CallState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    let component_type = component.component_type();
    for (name, item) in component_type.imports(engine) {
        if name.starts_with(WHARF_PACKAGE) || is_provided_wasi(name) {
            continue;
        }
        match item.ty {
            ComponentItem::ComponentInstance(instance) => {
                let mut linker_instance = linker.instance(name)?;
                for (export, export_item) in instance.exports(engine) {
                    let qualified = format!("{name}#{export}");
                    match export_item.ty {
                        ComponentItem::ComponentFunc(_) => {
                            linker_instance.func_new(export, move |_, _, _, _| {
                                Err(wasmtime::Error::new(DeniedImport(qualified.clone())))
                            })?;
                        }
                        ComponentItem::Resource(_) => {
                            linker_instance.resource(
                                export,
                                provided_resource(export),
                                |_, _| Ok(()),
                            )?;
                        }
                        _ => {}
                    }
                }
            }
            ComponentItem::ComponentFunc(_) => {
                let qualified = name.to_owned();
                linker.root().func_new(name, move |_, _, _, _| {
                    Err(wasmtime::Error::new(DeniedImport(qualified.clone())))
                })?;
            }
            ComponentItem::Resource(_) => {
                linker.root().resource(
                    name,
                    ResourceType::host::<DeniedImport>(),
                    |_, _| Ok(()),
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The host type of a resource a denied WASI interface exports. Denied
/// interfaces re-export `wasi:io`'s streams, errors and pollables (e.g.
/// `wasi:cli/stdin` and `wasi:filesystem/types` use `input-stream`), which
/// must be the very types `wasi.rs` provides; their own resources get a type
/// no function can produce.
fn provided_resource(name: &str) -> ResourceType {
    match name {
        "input-stream" => ResourceType::host::<NoInput>(),
        "output-stream" => ResourceType::host::<LogStream>(),
        "pollable" => ResourceType::host::<ReadyPollable>(),
        "error" => ResourceType::host::<NoError>(),
        _ => ResourceType::host::<DeniedImport>(),
    }
}

/// Chunk size for host-side copies and hashes; the deadline is checked
/// between chunks so one huge range cannot outlive the call.
const CHUNK: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_wasi_02_interfaces_are_provided() {
        assert!(is_provided_wasi("wasi:cli/stdout@0.2.4"));
        assert!(is_provided_wasi("wasi:random/insecure-seed@0.2.0"));
        assert!(!is_provided_wasi("wasi:cli/environment@0.2.4"));
        assert!(!is_provided_wasi("wasi:filesystem/preopens@0.2.4"));
        assert!(!is_provided_wasi("wasi:cli/stdout@0.3.0"));
    }
}
