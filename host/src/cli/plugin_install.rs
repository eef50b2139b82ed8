//! `wharf plugin install` and `wharf plugin remove`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::plugins;
use crate::store::DataDir;

pub(super) fn install(
    data_dir: &DataDir,
    config: &Config,
    file: &Path,
    name: Option<&str>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let installed = plugins::install(data_dir, config, file, name, force)?;
    println!(
        "installed {} {} ({}) as {}",
        installed.name,
        installed.version,
        installed.world,
        installed.manifest.display()
    );
    println!("  wasm:    {}", installed.wasm.display());
    println!("  sha256:  {}", installed.sha256);
    if let Some(replaced) = &installed.replaced {
        println!("  replaces the plugin of that name from {replaced}");
    }
    print_reload(installed.reloaded_pid, "load it");
    Ok(ExitCode::SUCCESS)
}

pub(super) fn remove(data_dir: &DataDir, name: &str) -> anyhow::Result<ExitCode> {
    let reloaded = plugins::remove(data_dir, name)?;
    println!("removed {name}");
    print_reload(reloaded, "run without it");
    Ok(ExitCode::SUCCESS)
}

fn print_reload(pid: Option<u32>, next_start: &str) {
    match pid {
        Some(pid) => println!("  the daemon (pid {pid}) is reloading its plugins"),
        None => println!("  no daemon is running; the next `wharf run` will {next_start}"),
    }
}
