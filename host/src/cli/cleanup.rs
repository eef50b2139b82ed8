//! `wharf cleanup [--gc-only] [--wait]` queues a cleanup job (every
//! configured retention policy, then orphan GC) or a GC-only one;
//! `wharf cleanup --dry-run [--policy NEW.wasm --param k=v --like NAME]
//! [--format json]` is the rehearsal: it plans the configured policies (and
//! a candidate) read-only against the live index and prints what each
//! would delete and how they differ. A rehearsal writes nothing but one
//! `events` row saying it ran.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use serde_json::json;

use super::JobsFormat;
use super::status::human_bytes;
use crate::config::Config;
use crate::gc;
use crate::index::{Index, now_ms};
use crate::jobs::Request;
use crate::plugins;
use crate::retention::{self, Cap, Comparison, Planned, PolicyError, Rehearsed, Selection, Side};
use crate::runtime::{PluginSource, Runtime, World, sha256_hex};
use crate::store::DataDir;

/// What `wharf cleanup` was asked.
#[derive(Debug, Clone)]
pub(super) struct CleanupArgs {
    pub(super) gc_only: bool,
    pub(super) dry_run: bool,
    pub(super) wait: bool,
    pub(super) candidate: Option<PathBuf>,
    pub(super) params: Vec<(String, String)>,
    pub(super) like: Option<String>,
    pub(super) format: JobsFormat,
    pub(super) show: usize,
}

pub(super) fn cleanup(
    data_dir: &DataDir,
    config: &Config,
    args: &CleanupArgs,
) -> anyhow::Result<ExitCode> {
    if args.dry_run {
        return rehearse(data_dir, config, args);
    }
    let request = if args.gc_only {
        Request::gc()
    } else {
        Request::full_cleanup()
    };
    super::jobs::enqueue_and_follow(data_dir, config, &request, args.wait)
}

/// Parses `key=value` for `--param`.
pub(super) fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not key=value")),
    }
}

/// The rehearsal's result, before printing.
struct Rehearsal {
    policies: Vec<String>,
    candidate: Option<String>,
    comparison: Comparison,
    only_candidate: Vec<(Planned, Option<String>)>,
    only_configured: Vec<(Planned, Option<String>)>,
    orphans: Vec<gc::Orphan>,
    /// Untracked files under `files/` GC leaves (reported, not removed).
    untracked: Vec<String>,
}

fn rehearse(data_dir: &DataDir, config: &Config, args: &CleanupArgs) -> anyhow::Result<ExitCode> {
    if !data_dir.index_path().exists() {
        anyhow::bail!(
            "there is no index at {}; run `wharf init` first",
            data_dir.index_path().display()
        );
    }
    let index = Index::open(&data_dir.index_path())?;
    let now = now_ms();
    let never = AtomicBool::new(false);
    let mut gc_report = gc::GcReport::default();
    let orphans = gc::scan(
        data_dir,
        &index,
        config.cleanup.orphan_lifetime_ms,
        gc::Untracked::from_config(config.cleanup.remove_untracked_files),
        now,
        &mut gc_report,
    )?;
    let runtime = Runtime::new(config.runtime_config(&data_dir.compiled_cache_dir()))?;
    let mut rehearsal = Rehearsal {
        policies: Vec::new(),
        candidate: None,
        comparison: Comparison::default(),
        only_candidate: Vec::new(),
        only_configured: Vec::new(),
        orphans,
        untracked: gc_report.untracked,
    };
    if !args.gc_only {
        let loaded = plugins::load_all(&runtime, config, &data_dir.plugins_dir());
        let policies = retention::resolve_policies(config, &loaded.registry)?;
        let page = config.cleanup.batch_files as usize;
        let mut configured = Vec::new();
        for policy in &policies {
            let plan = retention::plan(
                &index,
                &policy.plugin,
                &policy.params,
                &policy.selection,
                data_dir.root(),
                page,
                now,
                &never,
            )
            .with_context(|| format!("planning policy {}", policy.name))?;
            configured.push((policy.name.clone(), plan, policy.cap));
        }
        let candidate = match &args.candidate {
            None => None,
            Some(path) => {
                // Like the named policy: its files and its cap.
                let (selection, cap) = match &args.like {
                    None => (Selection::default(), Cap::of(&config.cleanup, None)),
                    Some(name) => policies
                        .iter()
                        .find(|p| &p.name == name)
                        .map(|p| (p.selection.clone(), p.cap))
                        .with_context(|| {
                            format!("--like {name}: no configured policy has that name")
                        })?,
                };
                Some(plan_candidate(
                    &runtime,
                    config,
                    data_dir,
                    &index,
                    path,
                    &args.params,
                    &selection,
                    cap,
                    now,
                )?)
            }
        };
        rehearsal.policies = policies.iter().map(|p| p.name.clone()).collect();
        rehearsal.candidate = candidate.as_ref().map(|(name, _, _)| name.clone());
        rehearsal.comparison = retention::compare(&configured, candidate.as_ref());
        let first = |planned: &[Planned]| -> anyhow::Result<Vec<(Planned, Option<String>)>> {
            let first: Vec<Planned> = planned.iter().take(args.show).cloned().collect();
            let ids: Vec<_> = first.iter().map(|p| p.file).collect();
            Ok(first.into_iter().zip(index.file_paths(&ids)?).collect())
        };
        rehearsal.only_candidate = first(&rehearsal.comparison.only_candidate)?;
        rehearsal.only_configured = first(&rehearsal.comparison.only_configured)?;
    }
    index.record_event(
        "rehearsal",
        None,
        rehearsal.candidate.as_deref(),
        &summary(&rehearsal),
    )?;
    let mut out = std::io::stdout().lock();
    match args.format {
        JobsFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &to_json(&rehearsal))?;
            writeln!(out)?;
        }
        JobsFormat::Table => print(&mut out, &rehearsal, args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the candidate plugin from `path`, checks its parameters and plans it.
#[allow(clippy::too_many_arguments)]
fn plan_candidate(
    runtime: &Runtime,
    config: &Config,
    data_dir: &DataDir,
    index: &Index,
    path: &Path,
    params: &[(String, String)],
    selection: &Selection,
    cap: Cap,
    now: i64,
) -> anyhow::Result<Rehearsed> {
    let wasm = std::fs::read(path)
        .with_context(|| format!("--policy {}: cannot read it", path.display()))?;
    let name = path.file_stem().map_or_else(
        || "candidate".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let plugin = runtime
        .load(PluginSource {
            name: name.clone(),
            sha256: sha256_hex(&wasm),
            wasm,
            world: Some(World::Retention),
            limits: config.plugin_limits(),
            allowed_hosts: Vec::new(),
        })
        .with_context(|| format!("--policy {}", path.display()))?;
    let params = params.to_vec();
    retention::check_params("--policy", &plugin, &params).map_err(|error| match error {
        PolicyError::UnknownParam {
            key, plugin, known, ..
        } => anyhow::anyhow!(
            "--param {key}: plugin {plugin} has no parameter `{key}`; it takes: {known}"
        ),
        PolicyError::MissingParam { key, plugin, .. } => {
            anyhow::anyhow!("plugin {plugin} requires a parameter: add --param {key}=...")
        }
        other => other.into(),
    })?;
    let params =
        retention::with_host_params("--policy", &plugin, config, params).map_err(|error| {
            match error {
                PolicyError::HostParam { key, from, .. } => anyhow::anyhow!(
                    "--param {key}: the host sets it from `{from}` in wharf.toml; set it there"
                ),
                other => other.into(),
            }
        })?;
    let plan = retention::plan(
        index,
        &plugin,
        &params,
        selection,
        data_dir.root(),
        config.cleanup.batch_files as usize,
        now,
        &AtomicBool::new(false),
    )
    .with_context(|| format!("planning the candidate {}", path.display()))?;
    Ok((name, plan, cap))
}

fn summary(r: &Rehearsal) -> String {
    let c = &r.comparison;
    let mut text = format!(
        "dry run: configured policies would delete {} files ({} bytes)",
        c.configured.files, c.configured.bytes
    );
    if let (Some(name), Some(side)) = (&r.candidate, &c.candidate) {
        text.push_str(&format!(
            "; candidate {name} {} files ({} bytes), {} only by it, {} only by the configured",
            side.files,
            side.bytes,
            c.only_candidate.len(),
            c.only_configured.len()
        ));
    }
    text
}

fn side_line(side: &Side) -> String {
    let mut line = format!(
        "{} of {} files, {}",
        side.files,
        side.candidates,
        human_bytes(side.bytes)
    );
    if side.refused > 0 {
        line.push_str(&format!(
            "; {} more asked for but protected (leased, export-held or unsynced)",
            side.refused
        ));
    }
    if !side.over_cap.is_empty() {
        line.push_str(&format!(
            "; a real run would stop and delete nothing, over the deletion cap: {} (raise max_delete_percent in [cleanup] or the policy to allow it)",
            side.over_cap.join(", ")
        ));
    }
    line
}

fn print(out: &mut impl Write, r: &Rehearsal, args: &CleanupArgs) -> anyhow::Result<()> {
    let c = &r.comparison;
    if !args.gc_only {
        if r.policies.is_empty() {
            writeln!(
                out,
                "no [[cleanup.policy]] configured: a cleanup runs orphan GC only"
            )?;
        } else {
            writeln!(
                out,
                "configured ({}): would delete {}",
                r.policies.join(", "),
                side_line(&c.configured)
            )?;
        }
        let mut lists = Vec::new();
        if let (Some(name), Some(side)) = (&r.candidate, &c.candidate) {
            writeln!(out, "candidate ({name}): would delete {}", side_line(side))?;
            lists.push((
                "only the candidate deletes",
                &c.only_candidate,
                &r.only_candidate,
            ));
            lists.push((
                "only the configured policies delete",
                &c.only_configured,
                &r.only_configured,
            ));
        } else if !r.policies.is_empty() {
            lists.push(("they delete", &c.only_configured, &r.only_configured));
        }
        for (label, all, first) in lists {
            let bytes: u64 = all.iter().map(|p| p.size).sum();
            let colon = if all.is_empty() { "" } else { ":" };
            writeln!(
                out,
                "{label} {} files, {}{colon}",
                all.len(),
                human_bytes(bytes)
            )?;
            for (planned, path) in first {
                writeln!(
                    out,
                    "  {:<28}  {:>9}  {}",
                    path.as_deref().unwrap_or("?"),
                    human_bytes(planned.size),
                    planned.reason
                )?;
            }
            if all.len() > first.len() {
                writeln!(out, "  … and {} more", all.len() - first.len())?;
            }
        }
    }
    let orphan_bytes: u64 = r.orphans.iter().map(|o| o.size).sum();
    writeln!(
        out,
        "orphan GC: would remove {} files, {}",
        r.orphans.len(),
        human_bytes(orphan_bytes)
    )?;
    if let Some(first) = r.untracked.first() {
        writeln!(
            out,
            "untracked: {} files (e.g. {first}) left in place; `wharf fsck --repair` indexes them",
            r.untracked.len()
        )?;
    }
    writeln!(out, "(dry run: nothing was deleted)")?;
    Ok(())
}

fn side_json(side: &Side) -> serde_json::Value {
    json!({
        "candidates": side.candidates,
        "files": side.files,
        "bytes": side.bytes,
        "refused": side.refused,
        "over_cap": side.over_cap,
    })
}

fn first_json(all: &[Planned], first: &[(Planned, Option<String>)]) -> serde_json::Value {
    json!({
        "files": all.len(),
        "bytes": all.iter().map(|p| p.size).sum::<u64>(),
        "first": first.iter().map(|(p, path)| json!({
            "id": p.file.0,
            "path": path,
            "bytes": p.size,
            "reason": p.reason,
        })).collect::<Vec<_>>(),
    })
}

fn to_json(r: &Rehearsal) -> serde_json::Value {
    let c = &r.comparison;
    json!({
        "policies": r.policies,
        "configured": side_json(&c.configured),
        "candidate": match (&r.candidate, &c.candidate) {
            (Some(name), Some(side)) => {
                let mut value = side_json(side);
                value["name"] = json!(name);
                value
            }
            _ => serde_json::Value::Null,
        },
        "only_candidate": first_json(&c.only_candidate, &r.only_candidate),
        "only_configured": first_json(&c.only_configured, &r.only_configured),
        "orphans": {
            "files": r.orphans.len(),
            "bytes": r.orphans.iter().map(|o| o.size).sum::<u64>(),
        },
        "untracked": r.untracked,
    })
}
