//! Uploader for `local` destinations: places each file in the destination
//! directory through the host's `local-store` import, so the host copies
//! the bytes (into a temporary file, synced and renamed into place: a key
//! holds nothing or the whole file) and the plugin never sees a path.
//!
//! Layout (`layout` parameter): `path` (the default) mirrors the store, a
//! file `files/set1/a.bin` is copied to `set1/a.bin`, so the copy can be
//! browsed and restored with plain tools; a path in the store is never
//! overwritten while it is indexed, so a key's content is stable. `sha256`
//! stores each file under its content hash (`ab/abcdef…`), so two files
//! with the same content are stored once and a path reused after a deletion
//! never replaces an older copy.
//!
//! Idempotent: a key that already holds the file's size and sha256 (a retry
//! after a crash, a second sync) is left alone; anything else there is
//! replaced. The result's sha256 is the host's hash of what the key holds,
//! which wharf checks against the index before marking the file synced.

use wharf_sdk::{
    Destination, DestinationKind, FileEntry, ParamSpec, Params, PluginError, PluginInfo,
    UploadResult, Uploader, local, param,
};

pub struct LocalDir;

/// How keys are made from files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Path,
    Sha256,
}

fn layout(params: &Params) -> Result<Layout, PluginError> {
    match param(params, "layout") {
        None | Some("path") => Ok(Layout::Path),
        Some("sha256") => Ok(Layout::Sha256),
        Some(other) => Err(PluginError::invalid_params(format!(
            "layout = {other:?}: use \"path\" (mirror the store) or \"sha256\" (content-addressed)"
        ))),
    }
}

fn key(file: &FileEntry, layout: Layout) -> String {
    match layout {
        Layout::Path => file.name.clone(),
        Layout::Sha256 => format!("{}/{}", &file.sha256[..2], file.sha256),
    }
}

impl Uploader for LocalDir {
    fn describe() -> PluginInfo {
        PluginInfo::new("local-dir", env!("CARGO_PKG_VERSION"))
            .description(
                "Copies each file into a local destination directory (by the host, atomically), under its path in the store or its sha256.",
            )
            .param(
                ParamSpec::new(
                    "layout",
                    "path: mirror the store's paths (default); sha256: content-addressed keys ab/abcdef...",
                )
                .optional(),
            )
    }

    fn run(
        file: FileEntry,
        destination: Destination,
        params: Params,
    ) -> Result<UploadResult, PluginError> {
        if destination.kind != DestinationKind::Local {
            return Err(PluginError::terminal(format!(
                "destination {} is not a local directory; local-dir only copies into one (use s3 or http-put for {})",
                destination.name, destination.url
            )));
        }
        let layout = layout(&params)?;
        file.checked_sha256()?;
        let key = key(&file, layout);
        let already = local::stat(&key)? == Some(file.size)
            && local::sha256(&key)?.is_some_and(|stored| stored.eq_ignore_ascii_case(&file.sha256));
        if already {
            return Ok(UploadResult {
                remote_ref: key,
                remote_sha256: Some(file.sha256),
            });
        }
        local::place(&file.file, 0, file.size, &key)?;
        let remote_sha256 = local::sha256(&key)?;
        Ok(UploadResult {
            remote_ref: key,
            remote_sha256,
        })
    }
}

wharf_sdk::export_uploader!(LocalDir);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;

    /// sha256("hello").
    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn file(name: &str) -> FileEntry {
        FileEntry {
            sha256: HELLO.into(),
            ..FileEntry::mock(1, name, 5)
        }
    }

    fn local() -> Destination {
        Destination {
            name: "backup".into(),
            kind: DestinationKind::Local,
            url: String::new(),
            credentials: Vec::new(),
        }
    }

    #[test]
    fn a_file_is_copied_under_its_store_path_and_its_stored_sha256_reported() {
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_local_destination();
        let result = host
            .run(|| LocalDir::run(file("set1/a.bin"), local(), vec![]))
            .unwrap();
        assert_eq!(result.remote_ref, "set1/a.bin");
        assert_eq!(result.remote_sha256.as_deref(), Some(HELLO));
        assert_eq!(host.local.unwrap()["set1/a.bin"], b"hello");
    }

    #[test]
    fn the_sha256_layout_stores_content_addressed_keys() {
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_local_destination();
        let params = vec![("layout".into(), "sha256".into())];
        let result = host
            .run(|| LocalDir::run(file("set1/a.bin"), local(), params))
            .unwrap();
        assert_eq!(result.remote_ref, format!("2c/{HELLO}"));
        assert_eq!(host.local.unwrap()[&format!("2c/{HELLO}")], b"hello");
    }

    #[test]
    fn a_copy_already_there_is_not_placed_again_and_a_wrong_one_is_replaced() {
        // The handle's bytes differ from what the index says the file is:
        // had the plugin placed it again, the key would hold them.
        let mut host = MockHost::new()
            .with_file(1, b"HELLO".to_vec())
            .with_local_destination();
        host.local
            .as_mut()
            .unwrap()
            .insert("a.bin".into(), b"hello".to_vec());
        let result = host
            .run(|| LocalDir::run(file("a.bin"), local(), vec![]))
            .unwrap();
        assert_eq!(result.remote_sha256.as_deref(), Some(HELLO));
        assert_eq!(host.local.as_ref().unwrap()["a.bin"], b"hello");
        // Same size, other content: replaced, and the new hash reported.
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_local_destination();
        host.local
            .as_mut()
            .unwrap()
            .insert("a.bin".into(), b"jello".to_vec());
        let result = host
            .run(|| LocalDir::run(file("a.bin"), local(), vec![]))
            .unwrap();
        assert_eq!(result.remote_sha256.as_deref(), Some(HELLO));
        assert_eq!(host.local.unwrap()["a.bin"], b"hello");
    }

    #[test]
    fn a_remote_destination_is_terminal_and_a_bad_layout_invalid_params() {
        let mut host = MockHost::new().with_file(1, b"hello".to_vec());
        let remote = Destination {
            kind: DestinationKind::Remote,
            url: "http://127.0.0.1:9/x".into(),
            ..local()
        };
        let result = host.run(|| LocalDir::run(file("a.bin"), remote, vec![]));
        assert!(
            matches!(result, Err(PluginError::Terminal(_))),
            "{result:?}"
        );
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_local_destination();
        let params = vec![("layout".into(), "flat".into())];
        let result = host.run(|| LocalDir::run(file("a.bin"), local(), params));
        assert!(matches!(result, Err(PluginError::InvalidParams(m)) if m.contains("flat")));
    }
}
