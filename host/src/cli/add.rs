//! `wharf add PATH...`: ingests files and directories into the store, with
//! a progress bar when stderr is a terminal, and says what was not ingested
//! and why, and what it finished of an interrupted run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::index::Index;
use crate::ingest::{self, IngestOptions, Outcome, Progress};
use crate::store::DataDir;

/// The arguments of `wharf add`.
pub(super) struct AddArgs {
    pub(super) paths: Vec<PathBuf>,
    pub(super) entity: Option<String>,
    pub(super) kind: String,
}

pub(super) fn add(data_dir: &DataDir, config: &Config, args: AddArgs) -> anyhow::Result<ExitCode> {
    for (flag, value) in [
        ("--entity", args.entity.as_deref()),
        ("--kind", Some(args.kind.as_str())),
    ] {
        if value.is_some_and(|v| v.trim().is_empty() || v.chars().any(char::is_control)) {
            anyhow::bail!("{flag} must be a non-empty name without control characters");
        }
    }
    let shown = data_dir.root().display();
    data_dir
        .create()
        .with_context(|| format!("cannot create the data directory {shown}"))?;
    let index = Index::open(&data_dir.index_path())?;
    let mut options = IngestOptions::new(&config.ingest);
    options.kind = args.kind;
    options.entity = args.entity;
    let bar = Bar::new();
    let report = ingest::add(data_dir, &index, &args.paths, &options, &bar)?;
    if let Some(bar) = &bar.0 {
        bar.finish_and_clear();
    }

    let recovered = &report.recovered;
    let tmp = data_dir.tmp_dir();
    let mut finished = Vec::new();
    if !recovered.indexed.is_empty() {
        finished.push(format!(
            "indexed {} file(s) it had placed",
            recovered.indexed.len()
        ));
    }
    if recovered.copies_removed > 0 {
        finished.push(format!(
            "removed {} copy(ies) it left in {} ({})",
            recovered.copies_removed,
            tmp.display(),
            indicatif::HumanBytes(recovered.copies_removed_bytes)
        ));
    }
    if !finished.is_empty() {
        eprintln!("finished an interrupted ingest: {}", finished.join(", "));
    }
    for problem in &recovered.problems {
        eprintln!(
            "warning: an interrupted ingest's leftover: {problem}; `wharf fsck` reports what is \
             left, orphan GC removes old files from {}",
            tmp.display()
        );
    }
    for file in &report.files {
        match &file.outcome {
            Outcome::Ingested { .. } => {}
            Outcome::Duplicate { .. } => eprintln!("duplicate: {file}"),
            Outcome::Skipped(_) => eprintln!("skipped: {file}"),
            Outcome::Failed(_) => eprintln!("error: {file}"),
        }
    }
    let counts = report.counts();
    println!(
        "ingested {} file(s), {}; {} duplicate(s), {} skipped, {} failed",
        counts.ingested,
        indicatif::HumanBytes(counts.ingested_bytes),
        counts.duplicates,
        counts.skipped,
        counts.failed
    );
    Ok(if counts.skipped + counts.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A byte-counting progress bar on stderr, only on a terminal.
struct Bar(Option<ProgressBar>);

impl Bar {
    fn new() -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let style = ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        Bar(Some(ProgressBar::new(0).with_style(style)))
    }
}

impl Progress for Bar {
    fn planned(&self, files: u64, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(bytes);
            bar.set_message(format!("{files} file(s)"));
        }
    }

    fn advanced(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }
}
