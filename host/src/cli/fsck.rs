//! `wharf fsck [--repair]`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::fsck::fsck;
use crate::index::Index;
use crate::ingest::IngestOptions;
use crate::store::DataDir;

pub(super) fn run(data_dir: &DataDir, config: &Config, repair: bool) -> anyhow::Result<ExitCode> {
    let index_path = data_dir.index_path();
    if !index_path.exists() {
        anyhow::bail!(
            "there is no index at {}; run `wharf init` first",
            index_path.display()
        );
    }
    let index = Index::open(&index_path)
        .with_context(|| format!("cannot open the index {}", index_path.display()))?;
    let options = IngestOptions::new(&config.ingest);
    let report = fsck(data_dir, &index, repair.then_some(&options))?;
    let mut out = std::io::stdout().lock();
    for path in &report.deletions_finished {
        writeln!(
            out,
            "deleted    {path}  (finished a deletion a crash interrupted)"
        )?;
    }
    for path in &report.lost {
        writeln!(out, "lost       {path}  (in the index, missing on disk)")?;
    }
    for path in &report.corrupt {
        writeln!(
            out,
            "corrupt    {path}  (content differs from the index; see `wharf sql \"select * from events\"`)"
        )?;
    }
    for path in &report.restored {
        writeln!(out, "restored   {path}  (found intact again)")?;
    }
    for path in &report.indexed {
        writeln!(out, "indexed    {path}  (was on disk but not in the index)")?;
    }
    for path in &report.untracked {
        writeln!(
            out,
            "untracked  {path}  (on disk, not in the index; `wharf fsck --repair` indexes it)"
        )?;
    }
    for error in &report.errors {
        writeln!(out, "error      {error}")?;
    }
    writeln!(
        out,
        "checked {} files: {} lost, {} corrupt, {} untracked, {} restored, {} indexed, {} errors",
        report.checked,
        report.lost.len(),
        report.corrupt.len(),
        report.untracked.len(),
        report.restored.len(),
        report.indexed.len(),
        report.errors.len()
    )?;
    Ok(if report.problems() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
