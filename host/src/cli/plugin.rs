//! `wharf plugin list`, `wharf plugin inspect` and `wharf plugin new`'s
//! instructions.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::plugins;
use crate::runtime::{
    Allocator, ComponentReport, LoadError, ParamSpec, Plugin, PluginSource, Runtime, RuntimeConfig,
    WIT_VERSION, sha256_hex,
};
use crate::store::DataDir;

pub(super) fn list(data_dir: &DataDir, config: &Config) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(config.runtime_config(&data_dir.compiled_cache_dir()))?;
    let report = plugins::load_all(&runtime, config, &data_dir.plugins_dir());
    println!(
        "{:<20} {:<10} {:<10} {:<16} SOURCE",
        "NAME", "WORLD", "VERSION", "SHA256"
    );
    for plugin in report.registry.iter() {
        let origin = report.origins.get(&plugin.name).map_or("", String::as_str);
        println!(
            "{:<20} {:<10} {:<10} {:<16} {}",
            plugin.name,
            plugin.world.name(),
            plugin.info.version,
            &plugin.sha256[..16],
            origin
        );
    }
    for error in &report.errors {
        eprintln!("not loaded: {error}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) fn inspect(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let runtime = Runtime::new(RuntimeConfig {
        allocator: Allocator::OnDemand,
        max_instances: 1,
        max_memory_bytes: 1 << 30,
        compiled_cache_dir: None,
        quarantine_after: 1,
        epoch_tick: std::time::Duration::from_millis(5),
        // Inspect reads anything; only loading a plugin applies the limit.
        max_component_bytes: 1 << 30,
    })?;
    let report = runtime
        .inspect(&wasm)
        .map_err(|reason| anyhow::anyhow!("{} is not a wharf plugin: {reason}", file.display()))?;
    let sha256 = sha256_hex(&wasm);
    let world = report.world().ok();
    // Describe it too, when it loads: with the default limits, no network.
    let described = world.as_ref().map(|_| {
        runtime.load(PluginSource {
            name: file
                .file_stem()
                .map_or("plugin".into(), |s| s.to_string_lossy().into_owned()),
            wasm: wasm.clone(),
            sha256: sha256.clone(),
            world: None,
            limits: Config::default().plugin_limits(),
            allowed_hosts: Vec::new(),
        })
    });
    if json {
        let value = serde_json::json!({
            "file": file.display().to_string(),
            "sha256": sha256,
            "size": wasm.len(),
            "world": world.as_ref().map(|(w, _)| w.name()),
            "wit_version": world.as_ref().map(|(_, v)| v.clone()),
            "imports": report.imports,
            "exports": report.exports,
            "describe": described.as_ref().map(|d| match d {
                Ok(p) => serde_json::json!({"name": p.info.name, "version": p.info.version, "description": p.info.description,
                    "params": p.info.params.iter().map(param_json).collect::<Vec<_>>()}),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            }),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(loadable(&world_error(&report), described.as_ref()));
    }
    println!("file:        {}", file.display());
    println!("sha256:      {sha256}");
    println!("size:        {} bytes", wasm.len());
    match &world {
        Some((world, version)) => {
            println!("world:       {world}");
            println!(
                "wit:         wharf:plugin@{version} (this host: {})",
                WIT_VERSION
            );
        }
        None => println!(
            "world:       none ({})",
            report.world().err().unwrap_or_default()
        ),
    }
    println!("imports:");
    for import in &report.imports {
        let note = if import.starts_with("wharf:plugin/") {
            ""
        } else {
            "  (denied: calls fail)"
        };
        println!("  {import}{note}");
    }
    println!("exports:");
    for export in &report.exports {
        println!("  {export}");
    }
    match &described {
        Some(Ok(plugin)) => {
            println!(
                "describe:    {} {} — {}",
                plugin.info.name, plugin.info.version, plugin.info.description
            );
            for param in &plugin.info.params {
                println!("  param {}", param_line(param));
            }
        }
        Some(Err(error)) => println!("describe:    not loadable: {error}"),
        None => {}
    }
    Ok(loadable(&world_error(&report), described.as_ref()))
}

fn world_error(report: &ComponentReport) -> Option<String> {
    report.world().err()
}

/// Exit code 0 for a loadable plugin; otherwise 1, after one line on stderr
/// saying why.
fn loadable(
    world_error: &Option<String>,
    described: Option<&Result<Plugin, LoadError>>,
) -> ExitCode {
    let why = match (world_error, described) {
        (Some(reason), _) => reason.clone(),
        (None, Some(Err(error))) => error.to_string(),
        _ => return ExitCode::SUCCESS,
    };
    eprintln!("not loadable: {why}");
    ExitCode::from(1)
}

fn param_line(param: &ParamSpec) -> String {
    let default = match (&param.default_value, param.required) {
        (Some(default), _) => format!(" (default {default})"),
        (None, true) => " (required)".to_owned(),
        (None, false) => String::new(),
    };
    format!("{}{default}: {}", param.name, param.description)
}

fn param_json(param: &ParamSpec) -> serde_json::Value {
    serde_json::json!({
        "name": param.name,
        "description": param.description,
        "required": param.required,
        "default": param.default_value,
    })
}
