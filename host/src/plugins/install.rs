//! `wharf plugin install` and `wharf plugin remove`: a component copied into
//! the plugins directory with a manifest pinning its sha256 and world, or
//! taken out again; a running daemon is asked to reload either way.
//!
//! Invariant: nothing is written for a file that does not load; the wasm
//! and the manifest are each replaced atomically, wasm first, so a reload
//! between the two sees the old manifest refuse the new bytes (a pin
//! mismatch) rather than a manifest naming a missing file.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{BUNDLED, bundled};
use crate::config::Config;
use crate::daemon;
use crate::runtime::{PluginSource, Runtime, World, sha256_hex};
use crate::store::{self, DataDir};

/// What `install` did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub name: String,
    pub world: World,
    pub version: String,
    pub sha256: String,
    pub manifest: PathBuf,
    pub wasm: PathBuf,
    /// Whether it replaced an installed or bundled plugin of that name.
    pub replaced: Option<String>,
    /// The daemon asked to reload, if one runs.
    pub reloaded_pid: Option<u32>,
}

/// Installs the component at `file` as plugin `name` (by default the name
/// its `describe` gives), refusing a file that does not load and an
/// existing name unless `force`.
pub fn install(
    data_dir: &DataDir,
    config: &Config,
    file: &Path,
    name: Option<&str>,
    force: bool,
) -> anyhow::Result<Installed> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let sha256 = sha256_hex(&wasm);
    let runtime = Runtime::new(config.runtime_config(&data_dir.compiled_cache_dir()))?;
    let stem = file.file_stem().map_or_else(
        || "plugin".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let plugin = runtime
        .load(PluginSource {
            name: name.map_or(stem, str::to_owned),
            wasm: wasm.clone(),
            sha256: sha256.clone(),
            world: None,
            limits: config.plugin_limits(),
            allowed_hosts: Vec::new(),
        })
        .map_err(|error| anyhow::anyhow!("{} cannot be installed: {error}", file.display()))?;
    let name = name.unwrap_or(&plugin.info.name).to_owned();
    check_name(&name)?;
    let plugins_dir = data_dir.plugins_dir();
    let manifest = store::plugin_manifest_path(&plugins_dir, &name);
    let target = store::plugin_wasm_path(&plugins_dir, &name);
    let replaced = if manifest.exists() {
        Some(manifest.display().to_string())
    } else if bundled(config.plugin_limits())
        .iter()
        .any(|source| source.name == name)
    {
        Some(BUNDLED.to_owned())
    } else {
        None
    };
    if let Some(existing) = &replaced
        && !force
    {
        anyhow::bail!(
            "a plugin named {name} is already installed ({existing}); pass --force to replace it, \
             or --name to install this one under another name"
        );
    }
    let text = manifest_text(&manifest, &target, &sha256, plugin.world)?;
    store::replace_file(&target, &wasm)
        .with_context(|| format!("cannot write {}", target.display()))?;
    store::replace_file(&manifest, text.as_bytes())
        .with_context(|| format!("cannot write {}", manifest.display()))?;
    let reloaded_pid = daemon::request_reload(data_dir)?;
    Ok(Installed {
        name,
        world: plugin.world,
        version: plugin.info.version.clone(),
        sha256,
        manifest,
        wasm: target,
        replaced,
        reloaded_pid,
    })
}

/// Removes installed plugin `name`: its manifest and the wasm file it names
/// in the plugins directory. A bundled plugin it replaced comes back.
/// Returns the pid of the daemon asked to reload, if one runs.
pub fn remove(data_dir: &DataDir, name: &str) -> anyhow::Result<Option<u32>> {
    check_name(name)?;
    let plugins_dir = data_dir.plugins_dir();
    let manifest = store::plugin_manifest_path(&plugins_dir, name);
    let text = match std::fs::read_to_string(&manifest) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "no plugin {name} is installed ({} does not exist); bundled plugins cannot be \
                 removed, see `wharf plugin list`",
                manifest.display()
            )
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", manifest.display()));
        }
    };
    // The wasm the manifest names, if it lives in the plugins directory:
    // a manifest pointing elsewhere never gets files outside it deleted.
    let wasm = wasm_named(&text)
        .filter(|wasm| wasm.components().count() == 1)
        .map(|wasm| plugins_dir.join(wasm));
    std::fs::remove_file(&manifest)
        .with_context(|| format!("cannot remove {}", manifest.display()))?;
    // Another manifest may name the same file.
    let wasm = wasm.filter(|wasm| !named_by_a_manifest(&plugins_dir, wasm));
    if let Some(wasm) = wasm
        && let Err(error) = std::fs::remove_file(&wasm)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        return Err(error).with_context(|| format!("cannot remove {}", wasm.display()));
    }
    daemon::request_reload(data_dir)
}

/// The `wasm` a manifest's text names.
fn wasm_named(manifest: &str) -> Option<PathBuf> {
    let table = toml::from_str::<toml::Table>(manifest).ok()?;
    table.get("wasm")?.as_str().map(PathBuf::from)
}

/// Whether a manifest of `plugins_dir` names `wasm`.
fn named_by_a_manifest(plugins_dir: &Path, wasm: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(plugins_dir) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter_map(|text| wasm_named(&text))
        .any(|named| plugins_dir.join(named) == wasm)
}

/// A plugin name is also a file name in the plugins directory.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        anyhow::bail!(
            "{name:?} cannot be a plugin name: use lower-case letters, digits, `-` and `_` \
             (pass --name)"
        );
    }
    Ok(())
}

/// The manifest to write: the previous one's other settings (limits,
/// allowed hosts) kept, with the new file, pin and world.
fn manifest_text(
    manifest: &Path,
    wasm: &Path,
    sha256: &str,
    world: World,
) -> anyhow::Result<String> {
    let mut table = std::fs::read_to_string(manifest)
        .ok()
        .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
        .unwrap_or_default();
    let file_name = wasm
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    table.insert("wasm".into(), file_name.into());
    table.insert("sha256".into(), sha256.into());
    table.insert("world".into(), world.name().into());
    let body = toml::to_string(&table).context("cannot write the manifest")?;
    Ok(format!(
        "# Written by `wharf plugin install`; the plugin is refused if its sha256 differs.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_file_names() {
        for bad in ["", "../x", "a/b", "Upper", "-x", "a.b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["keep-last", "my_rule", "x1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_replaced_manifest_keeps_its_limits_and_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("p.toml");
        std::fs::write(
            &manifest,
            "wasm = \"old.wasm\"\nsha256 = \"00\"\nallowed_hosts = [\"h:1\"]\n[limits]\ntimeout_ms = 5\n",
        )
        .unwrap();
        let text =
            manifest_text(&manifest, &dir.path().join("p.wasm"), "ab", World::Uploader).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(table["wasm"].as_str(), Some("p.wasm"));
        assert_eq!(table["sha256"].as_str(), Some("ab"));
        assert_eq!(table["world"].as_str(), Some("uploader"));
        assert_eq!(table["limits"]["timeout_ms"].as_integer(), Some(5));
        assert_eq!(table["allowed_hosts"][0].as_str(), Some("h:1"));
    }
}
