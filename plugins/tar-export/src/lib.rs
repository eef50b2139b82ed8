//! Export format: a POSIX ustar archive of the entity's files.
//!
//! The plugin writes only the 512-byte headers and padding; file contents are
//! spliced in by the host with `append-file`, so media never crosses the
//! sandbox boundary.

use wharf_sdk::output::{append_file, write};
use wharf_sdk::text::file_name;
use wharf_sdk::{Entity, ExportResult, Exporter, FileEntry, Params, PluginError, PluginInfo};

const BLOCK: usize = 512;

pub struct TarExport;

impl Exporter for TarExport {
    fn describe() -> PluginInfo {
        PluginInfo::new("tar-export", env!("CARGO_PKG_VERSION"))
            .description("Exports an entity's files as one uncompressed POSIX tar archive.")
    }

    fn run(
        entity: Entity,
        files: Vec<FileEntry>,
        _params: Params,
    ) -> Result<ExportResult, PluginError> {
        for file in &files {
            write(&header(file)?)?;
            append_file(&file.file, 0, file.size)?;
            let padding = (BLOCK - (file.size % BLOCK as u64) as usize) % BLOCK;
            if padding > 0 {
                write(&[0u8; BLOCK][..padding])?;
            }
        }
        // Two zero blocks end the archive.
        write(&[0u8; 2 * BLOCK])?;
        Ok(ExportResult {
            file_name: format!("{}.tar", file_name(&entity.name)),
            media_type: "application/x-tar".into(),
        })
    }
}

wharf_sdk::export_exporter!(TarExport);

fn header(file: &FileEntry) -> Result<[u8; BLOCK], PluginError> {
    let mut block = [0u8; BLOCK];
    let (prefix, name) = split_name(&file.name)?;
    block[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut block[100..108], 0o644);
    octal(&mut block[108..116], 0);
    octal(&mut block[116..124], 0);
    size_field(&mut block[124..136], file.size);
    octal(
        &mut block[136..148],
        (file.modified_ms.max(0) / 1000) as u64,
    );
    block[156] = b'0';
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is computed with its own field filled with spaces.
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(digits.as_bytes());
    Ok(block)
}

/// Splits a name into ustar's prefix (≤155 bytes) and name (≤100 bytes) at a `/`.
fn split_name(full: &str) -> Result<(&str, &str), PluginError> {
    if full.len() <= 100 {
        return Ok(("", full));
    }
    for (at, _) in full.match_indices('/') {
        let (prefix, name) = (&full[..at], &full[at + 1..]);
        if prefix.len() <= 155 && name.len() <= 100 && !name.is_empty() {
            return Ok((prefix, name));
        }
    }
    Err(PluginError::Terminal(format!(
        "file name is too long for a ustar archive (255 bytes at most): {full}"
    )))
}

/// Writes `value` as zero-padded octal digits followed by a NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[field.len() - 1] = 0;
}

/// Sizes from 8 GiB on do not fit 11 octal digits: GNU base-256 encoding.
fn size_field(field: &mut [u8], size: u64) {
    if size < 0o77777777777 {
        octal(field, size);
        return;
    }
    field.fill(0);
    field[0] = 0x80;
    let start = field.len() - 8;
    field[start..].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;

    fn file(id: u64, name: &str, size: u64) -> FileEntry {
        FileEntry {
            modified_ms: 1_700_000_000_000,
            ..FileEntry::mock(id, name, size)
        }
    }

    fn entity(name: &str) -> Entity {
        Entity {
            name: name.into(),
            version: 1,
            last_export_ms: None,
            attributes: Vec::new(),
        }
    }

    #[test]
    fn archive_has_headers_contents_and_padding() {
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_file(2, vec![7u8; 512]);
        let files = vec![file(1, "a/hello.txt", 5), file(2, "b.bin", 512)];
        let result = host
            .run(|| TarExport::run(entity("set 1/.."), files, vec![]))
            .unwrap();
        assert_eq!(result.file_name, "set_1_...tar");
        let out = &host.output;
        assert_eq!(out.len(), 512 + 512 + 512 + 512 + 1024);
        assert_eq!(&out[..11], b"a/hello.txt");
        assert_eq!(&out[257..263], b"ustar\0");
        assert_eq!(&out[512..517], b"hello");
        assert!(out[517..1024].iter().all(|&b| b == 0));
        assert_eq!(&out[1024..1029], b"b.bin");
        assert!(out[1536..2048].iter().all(|&b| b == 7));
    }

    #[test]
    fn header_checksum_matches_tar_rules() {
        let block = header(&file(1, "x", 3)).unwrap();
        let stored =
            u32::from_str_radix(std::str::from_utf8(&block[148..154]).unwrap(), 8).unwrap();
        let mut copy = block;
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
    }

    #[test]
    fn long_names_use_the_prefix_field_or_fail_clearly() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let (prefix, name) = split_name(&long).unwrap();
        assert_eq!((prefix.len(), name.len()), (120, 90));
        let too_long = "x".repeat(300);
        assert!(
            matches!(split_name(&too_long), Err(PluginError::Terminal(m)) if m.contains("too long"))
        );
    }

    #[test]
    fn a_file_not_given_to_the_call_fails_the_export() {
        let mut host = MockHost::new();
        let result = host.run(|| TarExport::run(entity("s"), vec![file(9, "x", 1)], vec![]));
        assert!(matches!(result, Err(PluginError::AccessDenied(_))));
    }
}
