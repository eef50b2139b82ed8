//! An uploader for the contract tests. Its `mode` parameter picks which
//! import to use and how: honest placement under a `key`, and misuses the
//! host must refuse without placing anything.

use wharf_sdk::http::{self, Request};
use wharf_sdk::{
    Destination, FileEntry, ParamSpec, Params, PluginError, PluginInfo, UploadResult, Uploader,
    local, param,
};

pub struct HostileUploader;

impl Uploader for HostileUploader {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-uploader", "0.0.1")
            .description("misuses the transfer imports on purpose")
            .param(ParamSpec::new("mode", "how").default("place"))
            .param(ParamSpec::new("key", "where to place").default("a/b.bin"))
    }

    fn run(
        entry: FileEntry,
        destination: Destination,
        params: Params,
    ) -> Result<UploadResult, PluginError> {
        let key = param(&params, "key").unwrap_or("a/b.bin");
        let placed = |key: &str| -> Result<UploadResult, PluginError> {
            Ok(UploadResult {
                remote_ref: key.to_owned(),
                remote_sha256: local::sha256(key)?,
            })
        };
        match param(&params, "mode").unwrap_or("place") {
            "place" => {
                local::place(&entry.file, 0, entry.size, key)?;
                placed(key)
            }
            "place-range" => {
                local::place(&entry.file, 1, entry.size - 2, key)?;
                placed(key)
            }
            "past-end" => {
                local::place(&entry.file, 0, entry.size + 1, key)?;
                placed(key)
            }
            "stat" => Ok(UploadResult {
                remote_ref: format!("{:?}", local::stat(key)?),
                remote_sha256: None,
            }),
            "http" => {
                let response = http::send(&Request::get(format!("{}/x", destination.url)))?;
                Ok(UploadResult {
                    remote_ref: response.status.to_string(),
                    remote_sha256: None,
                })
            }
            "credential" => {
                // A credential this destination does not own; ignores the refusal.
                let _ = http::send(&Request::get(&destination.url).credential("someone-else"));
                Ok(UploadResult {
                    remote_ref: "sent".into(),
                    remote_sha256: None,
                })
            }
            other => Err(PluginError::invalid_params(format!("unknown mode {other}"))),
        }
    }
}

wharf_sdk::export_uploader!(HostileUploader);
