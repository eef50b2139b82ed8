//! The `batches` interface: a retention batch the host keeps for the length
//! of one `plan` call, read by the plugin column by column. Each column is
//! copied into the plugin only when it asks, so a policy pays for what it
//! reads.
//!
//! Linked by hand rather than through `bindgen!`'s `HostBatch` trait, whose
//! methods must return an owned `Vec`: a column here is an `Arc<[T]>` shared
//! with the caller's batch, lowered straight into the plugin's memory, with
//! no copy on the host.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};

use crate::runtime::call::{Batch, CallState};
use crate::runtime::inspect::WIT_VERSION;

/// The `batch` resource: the caller's batch (its columns; the session keeps
/// the caller's ids), the run-local id of its first file and its length.
#[derive(Debug)]
#[allow(unreachable_pub)] // `bindgen!` re-exports it as the `batch` resource.
pub struct HostBatch {
    pub(crate) first_id: u64,
    pub(crate) len: u64,
    pub(crate) batch: Batch,
}

type Store<'a> = StoreContextMut<'a, CallState>;

fn lent<'a>(
    store: &'a mut Store<'_>,
    batch: &Resource<HostBatch>,
) -> wasmtime::Result<&'a HostBatch> {
    let state = store.data_mut();
    state.check_deadline()?;
    Ok(state.table.get(batch)?)
}

/// Adds `wharf:plugin/batches` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    let mut batches = linker.instance(&format!("wharf:plugin/batches@{WIT_VERSION}"))?;
    // The host owns batches; a plugin only ever borrows one, so this runs
    // only if a plugin somehow came to own a handle.
    batches.resource(
        "batch",
        ResourceType::host::<HostBatch>(),
        |mut store, rep| {
            store
                .data_mut()
                .table
                .delete(Resource::<HostBatch>::new_own(rep))?;
            Ok(())
        },
    )?;
    batches.func_wrap(
        "[method]batch.len",
        |mut store: Store<'_>, (batch,): (Resource<HostBatch>,)| {
            let len = lent(&mut store, &batch)?.len;
            Ok((u32::try_from(len).unwrap_or(u32::MAX),))
        },
    )?;
    batches.func_wrap(
        "[method]batch.first-id",
        |mut store: Store<'_>, (batch,): (Resource<HostBatch>,)| {
            Ok((lent(&mut store, &batch)?.first_id,))
        },
    )?;
    // Each column: a share of the caller's, lowered into the plugin.
    macro_rules! column {
        ($($name:literal => $field:ident),* $(,)?) => {$(
            batches.func_wrap(
                concat!("[method]batch.", $name),
                |mut store: Store<'_>, (batch,): (Resource<HostBatch>,)| {
                    Ok((lent(&mut store, &batch)?.batch.$field.clone(),))
                },
            )?;
        )*};
    }
    column! {
        "entities" => entities,
        "kinds" => kinds,
        "sizes" => sizes,
        "created-ms" => created_ms,
        "modified-ms" => modified_ms,
        "last-access-ms" => last_access_ms,
        "entity" => entity,
        "kind" => kind,
        "flags" => flags,
    }
    Ok(())
}
