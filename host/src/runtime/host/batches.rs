//! The `batches` interface: a retention batch the host keeps for the length
//! of one `plan` call, read by the plugin column by column. Each column is
//! copied into the plugin only when it asks, so a policy pays for what it
//! reads.

use wasmtime::component::Resource;

use crate::runtime::bindings::{Entity, batches_api};
use crate::runtime::call::{Batch, CallState};

/// The `batch` resource: the caller's batch (its columns; the session keeps
/// the caller's ids), the run-local id of its first file and its length.
#[derive(Debug)]
#[allow(unreachable_pub)] // `bindgen!` re-exports it as the `batch` resource.
pub struct HostBatch {
    pub(crate) first_id: u64,
    pub(crate) len: u64,
    pub(crate) batch: Batch,
}

impl CallState {
    fn batch(&mut self, batch: &Resource<HostBatch>) -> wasmtime::Result<&Batch> {
        self.check_deadline()?;
        Ok(&self.table.get(batch)?.batch)
    }
}

impl batches_api::Host for CallState {}

impl batches_api::HostBatch for CallState {
    fn len(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<u32> {
        self.check_deadline()?;
        let len = self.table.get(&batch)?.len;
        Ok(u32::try_from(len).unwrap_or(u32::MAX))
    }

    fn first_id(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<u64> {
        self.check_deadline()?;
        Ok(self.table.get(&batch)?.first_id)
    }

    fn entities(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<Vec<Entity>> {
        Ok(self.batch(&batch)?.entities.clone())
    }

    fn kinds(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<Vec<String>> {
        Ok(self.batch(&batch)?.kinds.clone())
    }

    fn sizes(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<Vec<u64>> {
        Ok(self.batch(&batch)?.sizes.clone())
    }

    fn created_ms(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<Vec<i64>> {
        Ok(self.batch(&batch)?.created_ms.clone())
    }

    fn modified_ms(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<Vec<i64>> {
        Ok(self.batch(&batch)?.modified_ms.clone())
    }

    fn last_access_ms(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<Vec<i64>> {
        Ok(self.batch(&batch)?.last_access_ms.clone())
    }

    fn entity(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.batch(&batch)?.entity.clone())
    }

    fn kind(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.batch(&batch)?.kind.clone())
    }

    fn flags(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.batch(&batch)?.flags.clone())
    }

    fn drop(&mut self, batch: Resource<HostBatch>) -> wasmtime::Result<()> {
        // The host owns batches; a plugin only ever borrows one.
        self.table.delete(batch)?;
        Ok(())
    }
}
