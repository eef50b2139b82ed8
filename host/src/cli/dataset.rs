//! `wharf dataset list|show|set|unset`: the index's entities, what they
//! hold and their attributes.

use std::io::Write;
use std::process::ExitCode;

use super::JobsFormat;
use crate::index::AttributeChange;
use crate::store::DataDir;
use crate::views::{dataset_json, export_json};

fn no_such(name: &str) -> anyhow::Error {
    anyhow::anyhow!("there is no dataset {name:?}; `wharf dataset list` shows them")
}

pub(super) fn list(data_dir: &DataDir, format: JobsFormat) -> anyhow::Result<ExitCode> {
    let index = super::jobs::open(data_dir)?;
    let rows = index.datasets()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        JobsFormat::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &rows.iter().map(dataset_json).collect::<Vec<_>>(),
            )?;
            writeln!(out)?;
        }
        JobsFormat::Table => {
            writeln!(
                out,
                "{:<24}  {:>8}  {:>14}  {:>7}  {:>7}  last export (ms)",
                "NAME", "FILES", "BYTES", "VERSION", "EXPORTS"
            )?;
            for row in &rows {
                writeln!(
                    out,
                    "{:<24}  {:>8}  {:>14}  {:>7}  {:>7}  {}",
                    row.name,
                    row.files,
                    row.bytes,
                    row.version,
                    row.exports,
                    row.last_export_ms
                        .map_or_else(|| "-".to_owned(), |ms| ms.to_string())
                )?;
            }
            if rows.is_empty() {
                writeln!(
                    out,
                    "(no datasets: `wharf add DIR` makes one per directory)"
                )?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn show(data_dir: &DataDir, name: &str, format: JobsFormat) -> anyhow::Result<ExitCode> {
    let index = super::jobs::open(data_dir)?;
    let row = index.dataset(name)?.ok_or_else(|| no_such(name))?;
    let exports = index.exports(Some(name), None, 100)?;
    let mut out = std::io::stdout().lock();
    match format {
        JobsFormat::Json => {
            let mut value = dataset_json(&row);
            value["cached_exports"] = exports.iter().map(export_json).collect();
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        JobsFormat::Table => {
            writeln!(out, "dataset      {}", row.name)?;
            writeln!(out, "files        {}", row.files)?;
            writeln!(out, "bytes        {}", row.bytes)?;
            writeln!(out, "version      {}", row.version)?;
            writeln!(
                out,
                "last export  {}",
                row.last_export_ms
                    .map_or_else(|| "never".to_owned(), |ms| format!("{ms} (ms since epoch)"))
            )?;
            writeln!(
                out,
                "attributes   {}",
                if row.attributes.is_empty() {
                    "(none)"
                } else {
                    ""
                }
            )?;
            for (key, value) in &row.attributes {
                writeln!(out, "  {key} = {value}")?;
            }
            writeln!(
                out,
                "cached exports {}",
                if exports.is_empty() { "(none)" } else { "" }
            )?;
            for export in &exports {
                writeln!(
                    out,
                    "  {:>6}  {:<14}  v{:<5} {}  {}",
                    export.id.0,
                    export.format,
                    export.entity_version,
                    if export.current { "current" } else { "old    " },
                    export.path.as_deref().unwrap_or("(file gone)")
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn change(
    data_dir: &DataDir,
    name: &str,
    change: AttributeChange,
) -> anyhow::Result<ExitCode> {
    if let AttributeChange::Set(pairs) = &change {
        for (key, value) in pairs {
            if key.is_empty() || key.len() > 128 || value.len() > 4096 {
                anyhow::bail!("attribute {key:?}: keys are 1 to 128 bytes and values at most 4096");
            }
        }
    }
    let index = super::jobs::open(data_dir)?;
    if !index.change_attributes(name, &change)? {
        return Err(no_such(name));
    }
    let row = index.dataset(name)?.ok_or_else(|| no_such(name))?;
    println!("dataset {name} is at version {}", row.version);
    Ok(ExitCode::SUCCESS)
}
