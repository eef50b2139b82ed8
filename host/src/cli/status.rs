//! `wharf status`: a human summary of the index, read-only so it runs beside
//! the daemon: files by state and kind, partial files in `tmp/`, the sync
//! backlog, jobs, failures, leases.

use std::io::Write;
use std::process::ExitCode;

use crate::index::{ReadOnlyIndex, Status, now_ms};
use crate::store::{DataDir, TmpKind};

/// The `*.part` files in `tmp/`: being written, or left by a killed writer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Partials {
    files: u64,
    bytes: u64,
    /// Of them, ingest's copies (`ingest.*.part`).
    ingest: u64,
}

impl Partials {
    /// What `tmp/` holds; an error says why it cannot be listed, which the
    /// summary shows instead (the rest of it still helps).
    fn of(data_dir: &DataDir) -> Result<Partials, String> {
        let files = data_dir.tmp_files().map_err(|error| {
            format!("{} cannot be listed: {error}", data_dir.tmp_dir().display())
        })?;
        let mut partials = Partials::default();
        for file in files.iter().filter(|f| f.kind.is_part()) {
            partials.files += 1;
            partials.bytes += file.metadata.len();
            partials.ingest += u64::from(file.kind == TmpKind::IngestCopy);
        }
        Ok(partials)
    }
}

pub(super) fn status(data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let index = ReadOnlyIndex::open(&data_dir.index_path())?;
    let status = index.status(now_ms())?;
    let partials = Partials::of(data_dir);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "index: {} (schema version {})",
        index.path().display(),
        index.schema_version()?
    )?;
    write_status(&mut out, &status, partials)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn write_status(
    out: &mut impl Write,
    status: &Status,
    partials: Result<Partials, String>,
) -> std::io::Result<()> {
    let files: u64 = status.files.iter().map(|c| c.files).sum();
    let bytes: u64 = status.files.iter().map(|c| c.bytes).sum();
    if files == 0 {
        writeln!(out, "\nfiles: none")?;
    } else {
        writeln!(
            out,
            "\nfiles: {} ({})",
            thousands(files),
            human_bytes(bytes)
        )?;
        let rows = status.files.iter().map(|c| {
            vec![
                c.state.clone(),
                c.kind.clone(),
                thousands(c.files),
                human_bytes(c.bytes),
            ]
        });
        write_table(
            out,
            &["state", "kind", "files", "bytes"],
            &[false, false, true, true],
            rows,
        )?;
    }

    match partials {
        Err(error) => writeln!(out, "\ntmp: {error}")?,
        Ok(partials) if partials.files == 0 => writeln!(out, "\ntmp: no partial files")?,
        Ok(partials) => writeln!(
            out,
            "\ntmp: {} partial file(s) ({}), {} of them ingest copies: being written, or left by a \
             killed run (the next `wharf add` or inbox scan removes ingest copies, orphan GC any \
             after cleanup.orphan_lifetime_ms)",
            thousands(partials.files),
            human_bytes(partials.bytes),
            thousands(partials.ingest)
        )?,
    }

    let backlog: u64 = status.sync_backlog.iter().map(|c| c.files).sum();
    if backlog == 0 {
        writeln!(out, "\nsync backlog: none")?;
    } else {
        let bytes: u64 = status.sync_backlog.iter().map(|c| c.bytes).sum();
        let due: u64 = status.sync_backlog.iter().map(|c| c.due).sum();
        writeln!(
            out,
            "\nsync backlog: {} files ({}), {} due now",
            thousands(backlog),
            human_bytes(bytes),
            thousands(due)
        )?;
        let rows = status.sync_backlog.iter().map(|c| {
            vec![
                c.destination.clone(),
                c.state.clone(),
                thousands(c.files),
                human_bytes(c.bytes),
                thousands(c.due),
            ]
        });
        let header = ["destination", "state", "files", "bytes", "due now"];
        write_table(out, &header, &[false, false, true, true, true], rows)?;
    }

    writeln!(
        out,
        "\njobs: {} queued, {} running, {} failed (wharf jobs list)",
        thousands(status.jobs.queued),
        thousands(status.jobs.running),
        thousands(status.jobs.failed)
    )?;

    if status.failures == 0 {
        writeln!(out, "\nfailures: none")?;
    } else {
        let shown = status.latest_failures.len();
        writeln!(
            out,
            "\nfailures: {} (latest {shown}; all: wharf sql \"SELECT * FROM failures\")",
            thousands(status.failures)
        )?;
        let rows = status.latest_failures.iter().map(|f| {
            let when = f
                .at_ms
                .map_or_else(String::new, |at| relative(at, status.now_ms));
            let error = f.error.as_deref().unwrap_or("").replace(['\n', '\r'], " ");
            vec![f.what.clone(), f.id.clone(), f.kind.clone(), when, error]
        });
        write_table(
            out,
            &["what", "id", "kind", "when", "error"],
            &[false; 5],
            rows,
        )?;
    }

    if status.leases.is_empty() {
        writeln!(out, "\nleases: none")?;
    } else {
        let stale = status.leases.iter().filter(|l| l.stale).count();
        writeln!(out, "\nleases: {} ({stale} stale)", status.leases.len())?;
        let rows = status.leases.iter().map(|l| {
            let expiry = if l.stale {
                format!(
                    "expired {} (stale: the next acquirer takes it over)",
                    relative(l.expires_ms, status.now_ms)
                )
            } else {
                format!("expires {}", relative(l.expires_ms, status.now_ms))
            };
            vec![l.name.clone(), l.owner.clone(), expiry]
        });
        write_table(out, &["lease", "holder", "expiry"], &[false; 3], rows)?;
    }
    Ok(())
}

/// Aligned columns under a header, indented under their heading.
fn write_table(
    out: &mut impl Write,
    header: &[&str],
    right: &[bool],
    rows: impl Iterator<Item = Vec<String>>,
) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (column, cell) in row.iter().enumerate() {
            widths[column] = widths[column].max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::from(" ");
        for (column, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[column] - cell.chars().count());
            line.push(' ');
            if right[column] {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
            line.push(' ');
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// Bytes in binary units: "512 B", "1.5 KiB", "931.3 GiB".
pub(super) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A time relative to now: "in 25s", "3m ago".
fn relative(at_ms: i64, now_ms: i64) -> String {
    let delta = at_ms.saturating_sub(now_ms);
    let seconds = delta.unsigned_abs() / 1000;
    let amount = match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    };
    if delta >= 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Failure, FileCount, JobCounts, LeaseStatus, SyncCount};

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(relative(26_000, 1_000), "in 25s");
        assert_eq!(relative(0, 180_000), "3m ago");
        assert_eq!(relative(0, 2 * 86_400_000), "2d ago");
    }

    #[test]
    fn the_summary_shows_every_section() {
        let status = Status {
            now_ms: 100_000,
            files: vec![
                FileCount {
                    state: "ready".into(),
                    kind: "capture".into(),
                    files: 1200,
                    bytes: 2048,
                },
                FileCount {
                    state: "lost".into(),
                    kind: "capture".into(),
                    files: 1,
                    bytes: 10,
                },
            ],
            sync_backlog: vec![SyncCount {
                destination: "s3".into(),
                state: "pending".into(),
                files: 3,
                bytes: 30,
                due: 2,
            }],
            failures: 1,
            latest_failures: vec![Failure {
                what: "sync".into(),
                id: "files/a".into(),
                kind: "s3".into(),
                error: Some("403\nforbidden".into()),
                at_ms: Some(40_000),
            }],
            leases: vec![LeaseStatus {
                name: "gc".into(),
                owner: "host:1:2".into(),
                acquired_ms: 0,
                expires_ms: 70_000,
                stale: true,
            }],
            jobs: JobCounts {
                queued: 2,
                running: 1,
                failed: 1_000,
            },
        };
        let mut out = Vec::new();
        let partials = Partials {
            files: 213,
            bytes: 62 << 20,
            ingest: 212,
        };
        write_status(&mut out, &status, Ok(partials)).unwrap();
        let text = String::from_utf8(out).unwrap();
        for expected in [
            "files: 1,201 (2.0 KiB)",
            "tmp: 213 partial file(s) (62.0 MiB), 212 of them ingest copies",
            "  ready  capture  1,200  2.0 KiB",
            "sync backlog: 3 files (30 B), 2 due now",
            "failures: 1",
            "  sync  files/a  s3    1m ago  403 forbidden",
            "jobs: 2 queued, 1 running, 1,000 failed",
            "leases: 1 (1 stale)",
            "  gc     host:1:2  expired 30s ago (stale",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
    }
}
