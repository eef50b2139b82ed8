//! The `disk` interface: total and free space of the filesystem the data
//! lives on, for retention policies that act on disk pressure.

use crate::runtime::bindings::disk_api;
use crate::runtime::call::{CallState, Fault};

impl disk_api::Host for CallState {
    fn space(&mut self) -> wasmtime::Result<disk_api::DiskSpace> {
        self.check_deadline()?;
        let Some(path) = self.disk.clone() else {
            return Err(self.trap(Fault::AccessDenied("this call has no disk".into())));
        };
        let stat = match rustix::fs::statvfs(&path) {
            Ok(stat) => stat,
            Err(err) => {
                let why = format!("cannot read the free space of {}: {err}", path.display());
                return Err(self.trap(Fault::Host(why)));
            }
        };
        Ok(disk_api::DiskSpace {
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        })
    }
}
