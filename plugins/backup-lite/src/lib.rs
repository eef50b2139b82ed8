//! Export format: a lightweight backup. A JSON manifest of the dataset
//! (name, version, attributes) whose entries point at each file's verified
//! remote copy on one sync destination, the parameter `destination`; no
//! file bytes. Restoring is fetching each entry's `remote_ref` from that
//! destination and checking it against its `sha256`.
//!
//! A backup that silently left files out would be worse than none: a file
//! without a verified copy on the destination (one whose verified sha256 is
//! the file's) fails the export with `invalid-params`, naming the
//! destination and the first files missing. The host checks the same
//! before it queues the export (an HTTP 409 that names them), and caches
//! nothing when the plugin fails.
//!
//! The manifest, `wharf-backup-lite/1`:
//! `{"format", "dataset", "version", "destination", "attributes": {k: v},
//! "files": [{"name", "size", "sha256", "kind", "created_ms",
//! "modified_ms", "remote_ref"}]}`, files in the order the host gave them
//! (by name).

use wharf_sdk::output::write;
use wharf_sdk::text::{file_name, json_string};
use wharf_sdk::{
    Entity, ExportResult, Exporter, FileEntry, ParamSpec, Params, PluginError, PluginInfo,
    RemoteCopy, param,
};

pub struct BackupLite;

/// How many missing files an error names before "and N more".
const NAMED: usize = 5;

impl Exporter for BackupLite {
    fn describe() -> PluginInfo {
        PluginInfo::new("backup-lite", env!("CARGO_PKG_VERSION"))
            .description(
                "A manifest-only backup: each file points at its verified copy on a sync \
                 destination; fails when a file has none.",
            )
            .param(ParamSpec::new(
                "destination",
                "the sync destination whose verified copies the backup points at",
            ))
    }

    fn run(
        entity: Entity,
        files: Vec<FileEntry>,
        params: Params,
    ) -> Result<ExportResult, PluginError> {
        let destination = match param(&params, "destination") {
            Some(name) if !name.is_empty() => name,
            _ => {
                return Err(PluginError::InvalidParams(
                    "destination is required: the name of the sync destination whose copies the \
                     backup points at"
                        .into(),
                ));
            }
        };
        let copies = verified_copies(&files, destination)?;
        write(manifest(&entity, destination, &files, &copies).as_bytes())?;
        Ok(ExportResult {
            file_name: format!("{}.backup.json", file_name(&entity.name)),
            media_type: "application/json".into(),
        })
    }
}

wharf_sdk::export_exporter!(BackupLite);

/// Each file's verified copy on `destination`, or the error naming the
/// first files that have none.
fn verified_copies<'a>(
    files: &'a [FileEntry],
    destination: &str,
) -> Result<Vec<&'a RemoteCopy>, PluginError> {
    let mut copies = Vec::with_capacity(files.len());
    let mut missing = Vec::new();
    for file in files {
        let copy = file
            .remote_copies
            .iter()
            .find(|copy| copy.destination == destination && copy.sha256 == file.sha256);
        match copy {
            Some(copy) => copies.push(copy),
            None => missing.push(file.name.as_str()),
        }
    }
    if missing.is_empty() {
        return Ok(copies);
    }
    let more = missing.len().saturating_sub(NAMED);
    let named = missing[..missing.len().min(NAMED)].join(", ");
    Err(PluginError::InvalidParams(format!(
        "destination {destination:?} has no verified copy of {} of the {} files ({named}{}); \
         sync them to it, or choose a destination that has them all",
        missing.len(),
        files.len(),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )))
}

/// The manifest as JSON text (one line).
fn manifest(
    entity: &Entity,
    destination: &str,
    files: &[FileEntry],
    copies: &[&RemoteCopy],
) -> String {
    let mut out = String::new();
    out.push_str("{\"format\":\"wharf-backup-lite/1\"");
    out.push_str(&format!(",\"dataset\":{}", json_string(&entity.name)));
    out.push_str(&format!(",\"version\":{}", entity.version));
    out.push_str(&format!(",\"destination\":{}", json_string(destination)));
    let attributes: Vec<String> = entity
        .attributes
        .iter()
        .map(|(key, value)| format!("{}:{}", json_string(key), json_string(value)))
        .collect();
    out.push_str(&format!(",\"attributes\":{{{}}}", attributes.join(",")));
    out.push_str(",\"files\":[");
    for (n, (file, copy)) in files.iter().zip(copies).enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"name\":{},\"size\":{},\"sha256\":{},\"kind\":{},\"created_ms\":{},\"modified_ms\":{},\"remote_ref\":{}}}",
            json_string(&file.name),
            file.size,
            json_string(&file.sha256),
            json_string(&file.kind),
            file.created_ms,
            file.modified_ms,
            json_string(&copy.remote_ref),
        ));
    }
    out.push_str("]}\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wharf_sdk::mock::MockHost;

    fn entity() -> Entity {
        Entity {
            name: "set \"1\"".into(),
            version: 7,
            last_export_ms: None,
            attributes: vec![("released".into(), "true".into())],
        }
    }

    fn copy(destination: &str, remote_ref: &str, sha256: &str) -> RemoteCopy {
        RemoteCopy {
            destination: destination.into(),
            remote_ref: remote_ref.into(),
            sha256: sha256.into(),
        }
    }

    /// File `id` named `name` whose sha256 is `id` repeated, with `copies`.
    fn file(id: u64, name: &str, copies: Vec<RemoteCopy>) -> FileEntry {
        FileEntry {
            sha256: id.to_string().repeat(64),
            remote_copies: copies,
            created_ms: 5,
            modified_ms: 6,
            ..FileEntry::mock(id, name, 10)
        }
    }

    fn destination(name: &str) -> Params {
        vec![("destination".into(), name.into())]
    }

    #[test]
    fn every_file_points_at_its_verified_copy_on_the_destination_and_no_bytes_are_read() {
        // The mock host holds no file: reading or appending one would fail.
        let mut host = MockHost::new();
        let files = vec![
            file(
                1,
                "set/a.raw",
                vec![
                    copy("local", "/backup/a", &"1".repeat(64)),
                    copy("s3", "s3://bucket/a", &"1".repeat(64)),
                ],
            ),
            file(
                2,
                "set/b.raw",
                vec![copy("s3", "s3://bucket/b", &"2".repeat(64))],
            ),
        ];
        let result = host
            .run(|| BackupLite::run(entity(), files, destination("s3")))
            .unwrap();
        assert_eq!(result.file_name, "set__1_.backup.json");
        assert_eq!(result.media_type, "application/json");
        let value: serde_json::Value = serde_json::from_slice(&host.output).unwrap();
        assert_eq!(value["format"], "wharf-backup-lite/1");
        assert_eq!(value["dataset"], "set \"1\"");
        assert_eq!(value["version"], 7);
        assert_eq!(value["destination"], "s3");
        assert_eq!(value["attributes"]["released"], "true");
        let files = value["files"].as_array().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0]["name"], "set/a.raw");
        assert_eq!(files[0]["remote_ref"], "s3://bucket/a");
        assert_eq!(files[0]["sha256"], "1".repeat(64));
        assert_eq!(files[1]["remote_ref"], "s3://bucket/b");
        assert_eq!(
            (files[1]["size"].as_u64(), files[1]["modified_ms"].as_i64()),
            (Some(10), Some(6))
        );
    }

    #[test]
    fn a_file_without_a_verified_copy_fails_naming_the_destination_and_the_first_missing() {
        let mut host = MockHost::new();
        let mut files: Vec<FileEntry> = (1..=8)
            .map(|id| file(id, &format!("set/f{id}"), Vec::new()))
            .collect();
        files[0].remote_copies = vec![copy("s3", "k", &"1".repeat(64))];
        // A copy whose verified sha256 is not the file's does not count.
        files[1].remote_copies = vec![copy("s3", "k", &"0".repeat(64))];
        // Nor does a copy on another destination.
        files[2].remote_copies = vec![copy("local", "k", &"3".repeat(64))];
        let result = host.run(|| BackupLite::run(entity(), files, destination("s3")));
        let Err(PluginError::InvalidParams(message)) = result else {
            panic!("{result:?}")
        };
        assert!(message.contains("destination \"s3\""), "{message}");
        assert!(message.contains("7 of the 8 files"), "{message}");
        assert!(
            message.contains("set/f2, set/f3, set/f4, set/f5, set/f6 and 2 more"),
            "{message}"
        );
        assert!(host.output.is_empty(), "nothing is written");
    }

    #[test]
    fn the_destination_is_required_and_an_empty_dataset_is_an_empty_backup() {
        let mut host = MockHost::new();
        let result = host.run(|| BackupLite::run(entity(), Vec::new(), Vec::new()));
        assert!(
            matches!(result, Err(PluginError::InvalidParams(m)) if m.contains("destination is required"))
        );
        host.run(|| BackupLite::run(entity(), Vec::new(), destination("s3")))
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&host.output).unwrap();
        assert_eq!(value["files"], serde_json::json!([]));
        assert!(BackupLite::describe().params[0].required);
    }
}
