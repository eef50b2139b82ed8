//! The capabilities a plugin may call, one file per WIT interface, and the
//! function that puts them into a `Linker`.
//!
//! Invariant: a plugin reaches the host's files only through ids handed to
//! the current call, the network only through `http` and its allowlist, and
//! nothing of WASI: every WASI import a component declares (Rust's std
//! declares several even when unused) is linked to a function that fails with
//! a typed access-denied error.

mod files;
mod http;
mod output;

use std::fs::File;
use std::io::{Seek, SeekFrom};

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker, ResourceType};

use super::bindings::{PluginError, host_api, http_api, output_api, types_api};
use super::call::CallState;

pub(crate) use http::HttpAccess;
pub(crate) use output::Output;

/// Prefix of every import and export of the wharf WIT package.
pub(crate) const WHARF_PACKAGE: &str = "wharf:plugin/";

/// The linker every plugin's own linker starts from: all wharf interfaces.
/// Which of them a plugin may import is checked per world at load time.
pub(crate) fn base_linker(engine: &Engine) -> anyhow::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    let add = |result: wasmtime::Result<()>| {
        result.map_err(|err| anyhow::anyhow!("could not link the plugin host interfaces: {err:#}"))
    };
    add(types_api::add_to_linker::<_, HasSelf<CallState>>(
        &mut linker,
        |state| state,
    ))?;
    add(host_api::add_to_linker::<_, HasSelf<CallState>>(
        &mut linker,
        |state| state,
    ))?;
    add(output_api::add_to_linker::<_, HasSelf<CallState>>(
        &mut linker,
        |state| state,
    ))?;
    add(http_api::add_to_linker::<_, HasSelf<CallState>>(
        &mut linker,
        |state| state,
    ))?;
    Ok(linker)
}

impl types_api::Host for CallState {}

/// The error a denied (non-wharf) import fails with.
#[derive(Debug, thiserror::Error)]
#[error("plugins have no `{0}`: use the wharf host imports instead")]
pub(crate) struct DeniedImport(pub(crate) String);

/// Links every import of `component` outside the wharf package to a function
/// that fails with [`DeniedImport`], so merely declaring WASI imports is fine
/// but using them is not.
pub(crate) fn deny_foreign_imports(
    linker: &mut Linker<CallState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    let component_type = component.component_type();
    for (name, item) in component_type.imports(engine) {
        if name.starts_with(WHARF_PACKAGE) {
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
                                ResourceType::host::<DeniedImport>(),
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

/// Opens a byte range of a file handed to this call, positioned at `offset`.
/// A file not handed to the call is an access violation; a range past the end
/// of the file is the plugin's mistake.
fn open_range(
    state: &mut CallState,
    file: u64,
    offset: u64,
    len: u64,
) -> Result<File, PluginError> {
    let Some(path) = state.files.get(&file) else {
        return Err(state.deny(format!("file {file} was not given to this call")));
    };
    let mut handle = File::open(path)
        .map_err(|err| PluginError::Transient(format!("file {file} cannot be opened: {err}")))?;
    let size = handle
        .metadata()
        .map_err(|err| PluginError::Transient(format!("file {file} cannot be read: {err}")))?
        .len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(PluginError::InvalidParams(format!(
            "range {offset}+{len} is past the end of file {file} ({size} bytes)"
        )));
    }
    handle
        .seek(SeekFrom::Start(offset))
        .map_err(|err| PluginError::Transient(format!("file {file} cannot be read: {err}")))?;
    Ok(handle)
}

/// Size of a granted file, for clipping reads at its end.
fn granted_size(state: &mut CallState, file: u64) -> Result<u64, PluginError> {
    let Some(path) = state.files.get(&file) else {
        return Err(state.deny(format!("file {file} was not given to this call")));
    };
    std::fs::metadata(path)
        .map(|meta| meta.len())
        .map_err(|err| PluginError::Transient(format!("file {file} cannot be read: {err}")))
}

/// Chunk size for host-side copies and hashes; the deadline is checked
/// between chunks so one huge range cannot outlive the call.
const CHUNK: u64 = 1 << 20;
