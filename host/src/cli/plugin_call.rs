//! `wharf plugin call`: prints what one plugin call returned, logged and took.

use std::process::ExitCode;

use crate::config::Config;
use crate::plugins::{self, CallOutcome, CallReport, CallRequest};
use crate::runtime::{CallError, ErrorClass};
use crate::store::DataDir;

use super::CallFormat;

pub(super) fn call(
    data_dir: &DataDir,
    config: &Config,
    request: CallRequest,
    format: CallFormat,
) -> anyhow::Result<ExitCode> {
    let report = plugins::call(data_dir, config, request)?;
    match format {
        CallFormat::Json => println!("{}", serde_json::to_string_pretty(&json(&report))?),
        CallFormat::Text => print_text(&report),
    }
    Ok(if report.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn class(error: &CallError) -> &'static str {
    match error.class() {
        ErrorClass::InvalidParams => "invalid-params",
        ErrorClass::Transient => "transient",
        ErrorClass::Terminal => "terminal",
    }
}

fn json(report: &CallReport) -> serde_json::Value {
    let (result, error) = match &report.outcome {
        Ok(outcome) => (result_json(outcome), serde_json::Value::Null),
        Err(error) => (
            serde_json::Value::Null,
            serde_json::json!({"class": class(error), "message": error.to_string()}),
        ),
    };
    serde_json::json!({
        "plugin": report.plugin,
        "world": report.world.name(),
        "version": report.version,
        "sha256": report.sha256,
        "source": report.source,
        "function": report.function.name(),
        "ok": report.outcome.is_ok(),
        "result": result,
        "error": error,
        "log": report.log,
        "elapsed_ms": report.elapsed.as_secs_f64() * 1000.0,
        "load_ms": report.load_elapsed.as_secs_f64() * 1000.0,
    })
}

fn result_json(outcome: &CallOutcome) -> serde_json::Value {
    match outcome {
        CallOutcome::Described(info) => serde_json::json!({
            "name": info.name,
            "version": info.version,
            "description": info.description,
            "params": info.params.iter().map(|p| serde_json::json!({
                "name": p.name, "description": p.description, "required": p.required, "default": p.default_value,
            })).collect::<Vec<_>>(),
        }),
        CallOutcome::Exported {
            result,
            output,
            bytes,
        } => serde_json::json!({
            "file_name": result.file_name,
            "media_type": result.media_type,
            "output": output.display().to_string(),
            "bytes": bytes,
        }),
        CallOutcome::Planned(decisions) => serde_json::json!({
            "decisions": decisions,
            "deleted": decisions.iter().filter(|d| d.delete).count(),
        }),
        CallOutcome::Uploaded(result) => serde_json::json!({
            "remote_ref": result.remote_ref,
            "remote_sha256": result.remote_sha256,
        }),
    }
}

fn print_text(report: &CallReport) {
    println!(
        "plugin:   {} {} ({}, {})",
        report.plugin, report.version, report.world, report.source
    );
    println!("function: {}", report.function.name());
    match &report.outcome {
        Ok(outcome) => print_outcome(outcome),
        Err(error) => println!("error:    {} ({})", error, class(error)),
    }
    if !report.log.is_empty() {
        println!("log:");
        for line in &report.log {
            println!("  {:<5} {}", line.level, line.message);
        }
    }
    println!(
        "time:     {:.1} ms (loading {:.1} ms)",
        report.elapsed.as_secs_f64() * 1000.0,
        report.load_elapsed.as_secs_f64() * 1000.0
    );
}

fn print_outcome(outcome: &CallOutcome) {
    match outcome {
        CallOutcome::Described(info) => {
            println!(
                "result:   {} {} — {}",
                info.name, info.version, info.description
            );
            for param in &info.params {
                let default = param
                    .default_value
                    .as_ref()
                    .map_or_else(String::new, |d| format!(" (default {d})"));
                println!("  param {}{default}: {}", param.name, param.description);
            }
        }
        CallOutcome::Exported {
            result,
            output,
            bytes,
        } => {
            println!("result:   {} ({})", result.file_name, result.media_type);
            println!("output:   {} ({bytes} bytes)", output.display());
        }
        CallOutcome::Planned(decisions) => {
            let deleted = decisions.iter().filter(|d| d.delete).count();
            println!(
                "result:   {deleted} of {} files would be deleted (nothing was)",
                decisions.len()
            );
            for decision in decisions {
                match (&decision.reason, decision.delete) {
                    (_, false) => println!("  keep    {}", decision.file),
                    (reason, true) => println!(
                        "  delete  {}: {}{}",
                        decision.file,
                        reason.as_deref().unwrap_or(""),
                        if decision.at_finish {
                            " (at finish)"
                        } else {
                            ""
                        }
                    ),
                }
            }
        }
        CallOutcome::Uploaded(result) => {
            println!("result:   stored as {}", result.remote_ref);
            if let Some(sha256) = &result.remote_sha256 {
                println!("  remote sha256 {sha256}");
            }
        }
    }
}
