//! Exporter calls: the files handed over as `file` handles, the output file
//! the host writes, and the checks on the name and media type the plugin
//! returns (both reach the disk and HTTP headers).

use std::path::{Path, PathBuf};

use wasmtime::Store;

use super::{CallError, CallState, Grants, Params, entered};
use crate::runtime::bindings::{Entity, ExportResult, RemoteCopy, files_api};
use crate::runtime::host::{GrantedFile, Output};

/// What an export call made: the plugin's answer and its output's size and
/// sha256 (hashed while it was written).
#[derive(Debug, Clone)]
pub struct Exported {
    pub result: ExportResult,
    pub size: u64,
    pub sha256: String,
}
use crate::runtime::registry::{Plugin, WorldPre};

/// A tracked file handed to an exporter or uploader: what the plugin is told
/// about it, and where the host reads it (never shown to the plugin).
#[derive(Debug, Clone)]
pub struct CallFile {
    /// Relative to the tracked files, `/`-separated.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub kind: String,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub remote_copies: Vec<RemoteCopy>,
    pub path: PathBuf,
}

impl CallFile {
    /// Puts a handle to this file into the call's store and describes it.
    pub(crate) fn grant(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<files_api::FileEntry> {
        let file = store.data_mut().table.push(GrantedFile {
            path: self.path.clone(),
        })?;
        Ok(files_api::FileEntry {
            file,
            name: self.name.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            kind: self.kind.clone(),
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            remote_copies: self.remote_copies.clone(),
        })
    }
}

impl Plugin {
    /// Runs an exporter over `files`, writing its output to `output_path`,
    /// which must not exist, fsynced. On failure the partial output is
    /// removed.
    pub fn export(
        &self,
        entity: &Entity,
        files: &[CallFile],
        params: &Params,
        output_path: &Path,
    ) -> Result<Exported, CallError> {
        let WorldPre::Exporter(pre) = &self.pre else {
            return Err(self.wrong_world("exporter"));
        };
        let output = Output::create(output_path, self.limits.output_bytes).map_err(|err| {
            CallError::Host(format!("could not create {}: {err}", output_path.display()))
        })?;
        let grants = Grants {
            output: Some(output),
            ..Grants::default()
        };
        let result = self
            .invoke("export", grants, |store| {
                let entries = files
                    .iter()
                    .map(|file| file.grant(store))
                    .collect::<wasmtime::Result<Vec<_>>>()?;
                entered(store, |store| pre.instantiate(store))?
                    .wharf_plugin_export_format()
                    .call_run(store, entity, &entries, params)
            })
            .and_then(|(result, state)| {
                if let Err(reason) =
                    bare_file_name(&result.file_name).and_then(|()| media_type(&result.media_type))
                {
                    return Err(self.invalid_output(reason));
                }
                let output = state
                    .output
                    .ok_or_else(|| CallError::Host("output vanished".into()))?;
                let written = output
                    .finish()
                    .map_err(|err| CallError::Host(format!("could not write the export: {err}")))?;
                Ok(Exported {
                    result,
                    size: written.size,
                    sha256: written.sha256,
                })
            });
        if result.is_err() {
            let _ = std::fs::remove_file(output_path);
        }
        result
    }
}

/// Characters that reorder or break displayed text: bidirectional controls
/// and line/paragraph separators.
fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// A name a plugin returned must be a bare file name: it is joined to a
/// directory of the host's, and must never leave it or mislead a reader.
fn bare_file_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(|c| c.is_control() || is_deceptive(c));
    if bad {
        return Err(format!(
            "{name:?} is not a bare file name (1 to 255 bytes, no / \\ control or \
             bidirectional characters, not . or ..)"
        ));
    }
    Ok(())
}

/// An RFC 6838 media type `type/subtype` of at most 127 bytes, no parameters.
fn media_type(value: &str) -> Result<(), String> {
    // restricted-name-chars of RFC 6838 section 4.2.
    let name = |part: &str| {
        !part.is_empty()
            && part.len() <= 63
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    match value.split_once('/') {
        Some((kind, subtype)) if value.len() <= 127 && name(kind) && name(subtype) => Ok(()),
        _ => Err(format!(
            "{:?} is not a media type like application/x-tar (RFC 6838, at most 127 bytes, no parameters)",
            value.chars().take(80).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_directory_or_mislead_are_rejected() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            "a\nb",
            "invoice\u{202E}rat.exe",
            "a\u{2028}b",
        ] {
            assert!(bare_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(bare_file_name("set-1.tar").is_ok());
        assert!(bare_file_name("..tar").is_ok());
        assert!(bare_file_name("données.tar").is_ok());
    }

    #[test]
    fn media_types_follow_rfc_6838() {
        for good in [
            "application/x-tar",
            "text/plain",
            "application/vnd.wharf+json",
        ] {
            assert!(media_type(good).is_ok(), "{good}");
        }
        let long = format!("application/{}", "x".repeat(200));
        for bad in [
            "",
            "text",
            "text/",
            "/plain",
            "text/plain; charset=utf-8",
            "text/plain\r\nSet-Cookie: a=b",
            "a/b/c",
            long.as_str(),
        ] {
            assert!(media_type(bad).is_err(), "{bad:?}");
        }
    }
}
