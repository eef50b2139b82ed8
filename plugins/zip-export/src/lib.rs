//! Export format: a zip archive of the dataset's files, stored without
//! compression so that every file's bytes are spliced in by the host with
//! `append-file` and never cross the sandbox boundary. The plugin writes
//! only the headers and the central directory; each file's CRC-32 is
//! computed by the host (`file.crc32`), which reads the file natively.
//!
//! Zip64 records are written only when the archive needs them: 65,535
//! entries or more, or a size or an offset of 4 GiB - 1 or more (each
//! entry gets the zip64 fields it needs; the end record follows Go's
//! `archive/zip`: once zip64, every classic end field is set to its
//! "see zip64" marker). Names are UTF-8 (flag bit 11); dates are the
//! files' modification times in UTC.

use wharf_sdk::output::{append_file, write};
use wharf_sdk::text::file_name;
use wharf_sdk::{Entity, ExportResult, Exporter, FileEntry, Params, PluginError, PluginInfo};

pub struct ZipExport;

impl Exporter for ZipExport {
    fn describe() -> PluginInfo {
        PluginInfo::new("zip-export", env!("CARGO_PKG_VERSION")).description(
            "Exports a dataset's files as one zip archive, stored without compression \
             (zip64 when the archive needs it).",
        )
    }

    fn run(
        entity: Entity,
        files: Vec<FileEntry>,
        _params: Params,
    ) -> Result<ExportResult, PluginError> {
        export(&files, Limits::ZIP)?;
        Ok(ExportResult {
            file_name: format!("{}.zip", file_name(&entity.name)),
            media_type: "application/zip".into(),
        })
    }
}

wharf_sdk::export_exporter!(ZipExport);

/// Where the classic format's 16- and 32-bit fields end. The tests lower
/// them to reach every zip64 record with a few small files.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Entry counts from this one on need zip64 (0xFFFF is itself the marker).
    entries: u64,
    /// Sizes and offsets from this one on need zip64 (0xFFFF_FFFF is the marker).
    bytes: u64,
}

impl Limits {
    const ZIP: Limits = Limits {
        entries: 0xFFFF,
        bytes: 0xFFFF_FFFF,
    };
}

/// Writes the archive of `files`: per file its local header (written by
/// the plugin) and its bytes (appended by the host), then the central
/// directory.
fn export(files: &[FileEntry], limits: Limits) -> Result<(), PluginError> {
    let mut archive = Archive::new(limits);
    for file in files {
        let crc = file.file.crc32(0, file.size)?;
        let header = archive.add(&file.name, file.size, crc, file.modified_ms)?;
        write(&header)?;
        append_file(&file.file, 0, file.size)?;
    }
    for chunk in archive.finish().chunks(1 << 20) {
        write(chunk)?;
    }
    Ok(())
}

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EXTRA: u16 = 0x0001;
/// The version needed to extract: 2.0 for stored files, 4.5 for zip64.
const VERSION_20: u16 = 20;
const VERSION_45: u16 = 45;
/// Made by Unix (3) with spec 4.5, so the external attributes are a mode.
const MADE_BY: u16 = (3 << 8) | VERSION_45;
/// General purpose flag bit 11: the name is UTF-8.
const UTF8_NAME: u16 = 1 << 11;
const STORED: u16 = 0;
/// A regular file, rw-r--r--.
const MODE: u32 = 0o100_644;
const MARKER_16: u16 = 0xFFFF;
const MARKER_32: u32 = 0xFFFF_FFFF;

/// The archive being written: where the next entry starts and the central
/// directory so far.
struct Archive {
    limits: Limits,
    /// Bytes of the archive so far: the offset of the next local header.
    offset: u64,
    entries: u64,
    central: Vec<u8>,
}

impl Archive {
    fn new(limits: Limits) -> Archive {
        Archive {
            limits,
            offset: 0,
            entries: 0,
            central: Vec::new(),
        }
    }

    /// Records a stored file of `size` bytes and returns its local header;
    /// the file's bytes must follow it in the archive.
    fn add(
        &mut self,
        name: &str,
        size: u64,
        crc: u32,
        modified_ms: i64,
    ) -> Result<Vec<u8>, PluginError> {
        check_name(name)?;
        let big_size = size >= self.limits.bytes;
        let big_offset = self.offset >= self.limits.bytes;
        let version = if big_size || big_offset {
            VERSION_45
        } else {
            VERSION_20
        };
        let (date, time) = dos_date_time(modified_ms);
        let size32 = if big_size { MARKER_32 } else { size as u32 };

        // The local header carries both sizes in its zip64 field when they
        // do not fit (APPNOTE 4.5.3); the offset is only in the central one.
        let mut local = Vec::with_capacity(30 + name.len() + 20);
        put32(&mut local, LOCAL_HEADER);
        put16(&mut local, version);
        put16(&mut local, UTF8_NAME);
        put16(&mut local, STORED);
        put16(&mut local, time);
        put16(&mut local, date);
        put32(&mut local, crc);
        put32(&mut local, size32);
        put32(&mut local, size32);
        put16(&mut local, name.len() as u16);
        put16(&mut local, if big_size { 20 } else { 0 });
        local.extend_from_slice(name.as_bytes());
        if big_size {
            put16(&mut local, ZIP64_EXTRA);
            put16(&mut local, 16);
            put64(&mut local, size);
            put64(&mut local, size);
        }

        // The central header's zip64 field holds only what overflowed, in
        // the order uncompressed size, compressed size, offset.
        let mut extra = Vec::new();
        if big_size {
            put64(&mut extra, size);
            put64(&mut extra, size);
        }
        if big_offset {
            put64(&mut extra, self.offset);
        }
        let central = &mut self.central;
        put32(central, CENTRAL_HEADER);
        put16(central, MADE_BY);
        put16(central, version);
        put16(central, UTF8_NAME);
        put16(central, STORED);
        put16(central, time);
        put16(central, date);
        put32(central, crc);
        put32(central, size32);
        put32(central, size32);
        put16(central, name.len() as u16);
        put16(
            central,
            if extra.is_empty() {
                0
            } else {
                4 + extra.len() as u16
            },
        );
        put16(central, 0); // comment length
        put16(central, 0); // disk number
        put16(central, 0); // internal attributes
        put32(central, MODE << 16);
        put32(
            central,
            if big_offset {
                MARKER_32
            } else {
                self.offset as u32
            },
        );
        central.extend_from_slice(name.as_bytes());
        if !extra.is_empty() {
            put16(central, ZIP64_EXTRA);
            put16(central, extra.len() as u16);
            central.extend_from_slice(&extra);
        }

        self.offset = self
            .offset
            .saturating_add(local.len() as u64)
            .saturating_add(size);
        self.entries += 1;
        Ok(local)
    }

    /// The central directory and the end records: the rest of the archive.
    fn finish(self) -> Vec<u8> {
        let directory_offset = self.offset;
        let directory_size = self.central.len() as u64;
        let entries = self.entries;
        let zip64 = entries >= self.limits.entries
            || directory_size >= self.limits.bytes
            || directory_offset >= self.limits.bytes;
        let mut out = self.central;
        if zip64 {
            let end64_offset = directory_offset + directory_size;
            put32(&mut out, ZIP64_END);
            put64(&mut out, 44); // the size of the rest of this record
            put16(&mut out, MADE_BY);
            put16(&mut out, VERSION_45);
            put32(&mut out, 0); // this disk
            put32(&mut out, 0); // the disk the directory starts on
            put64(&mut out, entries);
            put64(&mut out, entries);
            put64(&mut out, directory_size);
            put64(&mut out, directory_offset);
            put32(&mut out, ZIP64_LOCATOR);
            put32(&mut out, 0); // the disk of the zip64 end record
            put64(&mut out, end64_offset);
            put32(&mut out, 1); // disks in all
        }
        let (count, size, offset) = if zip64 {
            (MARKER_16, MARKER_32, MARKER_32)
        } else {
            (
                entries as u16,
                directory_size as u32,
                directory_offset as u32,
            )
        };
        put32(&mut out, END);
        put16(&mut out, 0); // this disk
        put16(&mut out, 0); // the disk the directory starts on
        put16(&mut out, count);
        put16(&mut out, count);
        put32(&mut out, size);
        put32(&mut out, offset);
        put16(&mut out, 0); // comment length
        out
    }
}

/// A name readers can extract safely: relative, `/`-separated, no `.` or
/// `..` parts, short enough for the 16-bit length field.
fn check_name(name: &str) -> Result<(), PluginError> {
    let bad = name.is_empty()
        || name.len() > usize::from(u16::MAX)
        || name.starts_with('/')
        || name.contains(['\\', '\0'])
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(PluginError::Terminal(format!(
            "file name {name:?} cannot be a zip entry (it must be a relative /-separated path \
             of at most 65,535 bytes without empty, . or .. parts)"
        )));
    }
    Ok(())
}

/// MS-DOS date and time (UTC) of a Unix time in milliseconds, clamped to
/// the range the format has (1980-01-01 to 2107-12-31).
fn dos_date_time(modified_ms: i64) -> (u16, u16) {
    let seconds = modified_ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    if year < 1980 {
        return ((1 << 5) | 1, 0);
    }
    if year > 2107 {
        return ((127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29);
    }
    let of_day = seconds.rem_euclid(86_400);
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    let date = (((year - 1980) as u16) << 9) | ((month as u16) << 5) | day as u16;
    let time = ((hour as u16) << 11) | ((minute as u16) << 5) | (second / 2) as u16;
    (date, time)
}

/// The proleptic Gregorian (year, month, day) of a count of days since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::{Cursor, Read};

    use super::*;
    use wharf_sdk::mock::MockHost;

    fn entity(name: &str) -> Entity {
        Entity {
            name: name.into(),
            version: 1,
            last_export_ms: None,
            attributes: Vec::new(),
        }
    }

    fn file(id: u64, name: &str, size: u64) -> FileEntry {
        FileEntry {
            modified_ms: 1_700_000_000_000,
            ..FileEntry::mock(id, name, size)
        }
    }

    /// Every entry of `archive` as (name, stored?, bytes), read by the
    /// `zip` crate, which checks each CRC-32 as it reads.
    fn read_back(archive: &[u8]) -> Vec<(String, bool, Vec<u8>)> {
        let mut zip = zip::ZipArchive::new(Cursor::new(archive)).unwrap();
        (0..zip.len())
            .map(|i| {
                let mut entry = zip.by_index(i).unwrap();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                (
                    entry.name().unwrap().into_owned(),
                    entry.compression() == zip::CompressionMethod::Stored,
                    bytes,
                )
            })
            .collect()
    }

    fn find(haystack: &[u8], signature: u32) -> bool {
        haystack
            .windows(4)
            .any(|window| window == signature.to_le_bytes())
    }

    #[test]
    fn the_zip_crate_reads_every_name_and_content_back_stored_with_the_hosts_crc() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_file(2, big.clone())
            .with_file(3, Vec::new());
        let files = vec![
            file(1, "set 1/a.txt", 5),
            file(2, "set 1/sub/ünïcode.bin", 70_000),
            file(3, "set 1/empty", 0),
        ];
        let result = host
            .run(|| ZipExport::run(entity("set 1/.."), files, vec![]))
            .unwrap();
        assert_eq!(result.file_name, "set_1_...zip");
        assert_eq!(result.media_type, "application/zip");
        assert_eq!(
            read_back(&host.output),
            vec![
                ("set 1/a.txt".to_owned(), true, b"hello".to_vec()),
                ("set 1/sub/ünïcode.bin".to_owned(), true, big),
                ("set 1/empty".to_owned(), true, Vec::new()),
            ]
        );
        // Small archives stay classic: no zip64 record anywhere.
        assert!(!find(&host.output, ZIP64_END));
        // The file's bytes follow its 30-byte header and name verbatim.
        assert_eq!(&host.output[30 + 11..30 + 11 + 5], b"hello");
    }

    #[test]
    fn past_the_entry_and_size_limits_zip64_records_are_written_and_still_read() {
        // Limits lowered so three small files need every zip64 record: more
        // entries than the limit, a file and an offset past the byte limit.
        let limits = Limits {
            entries: 3,
            bytes: 100,
        };
        let contents: Vec<Vec<u8>> = vec![vec![1u8; 150], b"second".to_vec(), vec![3u8; 40]];
        let mut host = MockHost::new();
        for (id, content) in contents.iter().enumerate() {
            host = host.with_file(id as u64 + 1, content.clone());
        }
        let files: Vec<FileEntry> = contents
            .iter()
            .enumerate()
            .map(|(id, content)| file(id as u64 + 1, &format!("f{id}"), content.len() as u64))
            .collect();
        host.run(|| export(&files, limits)).unwrap();
        let out = &host.output;
        assert!(find(out, ZIP64_END) && find(out, ZIP64_LOCATOR));
        // The first local header has the size markers and a 20-byte zip64 field.
        assert_eq!(&out[18..26], &[0xFF; 8]);
        assert_eq!(u16::from_le_bytes([out[28], out[29]]), 20);
        let entries = read_back(out);
        assert_eq!(entries.len(), 3);
        for ((name, stored, bytes), (id, content)) in
            entries.iter().zip(contents.iter().enumerate())
        {
            assert_eq!((name.as_str(), *stored), (format!("f{id}").as_str(), true));
            assert_eq!(bytes, content);
        }
    }

    #[test]
    fn a_size_and_an_offset_past_4_gib_get_zip64_fields_at_the_real_limits() {
        let mut archive = Archive::new(Limits::ZIP);
        let five_gib = 5u64 << 30;
        let local = archive.add("big.raw", five_gib, 0xDEAD_BEEF, 0).unwrap();
        // Sizes are markers; the zip64 field holds both real sizes.
        assert_eq!(&local[18..26], &[0xFF; 8]);
        let extra = &local[30 + 7..];
        assert_eq!(u16::from_le_bytes([extra[0], extra[1]]), ZIP64_EXTRA);
        assert_eq!(u16::from_le_bytes([extra[2], extra[3]]), 16);
        assert_eq!(extra[4..12], five_gib.to_le_bytes());
        assert_eq!(extra[12..20], five_gib.to_le_bytes());
        // The second entry starts past 4 GiB: a small local header, and its
        // central record carries the offset in zip64.
        let small = archive.add("small", 3, 1, 0).unwrap();
        assert_eq!(u16::from_le_bytes([small[28], small[29]]), 0);
        let second_offset = local.len() as u64 + five_gib;
        let end = archive.finish();
        let second_central = 46 + 7 + 20;
        let record = &end[second_central..];
        assert_eq!(record[..4], CENTRAL_HEADER.to_le_bytes());
        assert_eq!(record[42..46], MARKER_32.to_le_bytes());
        assert_eq!(u16::from_le_bytes([record[30], record[31]]), 12);
        assert_eq!(record[46 + 5 + 4..46 + 5 + 12], second_offset.to_le_bytes());
        // The directory starts past 4 GiB too: zip64 end records, and the
        // classic end record points at them with its markers.
        assert!(find(&end, ZIP64_END) && find(&end, ZIP64_LOCATOR));
        let classic = &end[end.len() - 22..];
        assert_eq!(classic[..4], END.to_le_bytes());
        assert_eq!(classic[10..12], MARKER_16.to_le_bytes());
        assert_eq!(classic[16..20], MARKER_32.to_le_bytes());
    }

    #[test]
    fn dates_are_utc_dos_dates_clamped_to_the_formats_range() {
        // 2023-11-14 22:13:20 UTC.
        let (date, time) = dos_date_time(1_700_000_000_000);
        assert_eq!(
            (date >> 9, (date >> 5) & 15, date & 31),
            (2023 - 1980, 11, 14)
        );
        assert_eq!(
            (time >> 11, (time >> 5) & 63, (time & 31) * 2),
            (22, 13, 20)
        );
        // 2000-02-29 (a leap day) at midnight.
        let (date, time) = dos_date_time(951_782_400_000);
        assert_eq!(
            (date >> 9, (date >> 5) & 15, date & 31, time),
            (20, 2, 29, 0)
        );
        assert_eq!(dos_date_time(0), ((1 << 5) | 1, 0));
        assert_eq!(dos_date_time(-5).0, (1 << 5) | 1);
        assert_eq!(dos_date_time(i64::MAX / 4).0 >> 9, 127);
    }

    #[test]
    fn unsafe_names_and_files_not_given_fail_the_export() {
        for name in ["/abs", "a/../b", "a//b", "", "a\\b"] {
            let mut host = MockHost::new().with_file(1, b"x".to_vec());
            let result = host.run(|| ZipExport::run(entity("s"), vec![file(1, name, 1)], vec![]));
            assert!(
                matches!(&result, Err(PluginError::Terminal(m)) if m.contains("zip entry")),
                "{name:?}: {result:?}"
            );
        }
        let mut host = MockHost::new();
        let result = host.run(|| ZipExport::run(entity("s"), vec![file(9, "x", 1)], vec![]));
        assert!(matches!(result, Err(PluginError::AccessDenied(_))));
    }
}
