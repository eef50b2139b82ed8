//! What a component is: its world, the WIT version it was built against and
//! its imports, read from the compiled component's type.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::host::WHARF_PACKAGE;

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.2.0";

/// The kinds of plugin, one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Exporter,
    Retention,
    Uploader,
}

impl World {
    pub const ALL: [World; 3] = [World::Exporter, World::Retention, World::Uploader];

    pub fn name(self) -> &'static str {
        match self {
            World::Exporter => "exporter",
            World::Retention => "retention",
            World::Uploader => "uploader",
        }
    }

    /// The interface a component of this world exports.
    fn export_interface(self) -> &'static str {
        match self {
            World::Exporter => "export-format",
            World::Retention => "retention-policy",
            World::Uploader => "transfer",
        }
    }

    /// The wharf interfaces a component of this world may import.
    fn allowed_imports(self) -> &'static [&'static str] {
        match self {
            World::Exporter => &["types", "host", "files", "output"],
            World::Retention => &["types", "host", "disk", "batches"],
            World::Uploader => &["types", "host", "files", "http", "local-store"],
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for World {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        World::ALL
            .into_iter()
            .find(|world| world.name() == s)
            .ok_or_else(|| {
                format!("unknown plugin kind {s:?}: expected exporter, retention or uploader")
            })
    }
}

/// What the first bytes of a file say it is: a component passes; a core
/// module or anything else fails with a one-line message saying what to do.
pub fn check_component_bytes(wasm: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    // The version and layer fields after the magic: 1.0 for a core module,
    // 0x0d with layer 1 for a component.
    const CORE_MODULE: &[u8] = &[0x01, 0x00, 0x00, 0x00];
    const COMPONENT_LAYER: &[u8] = &[0x01, 0x00];
    if wasm.len() < 8 || !wasm.starts_with(MAGIC) {
        return Err("not a WebAssembly file".into());
    }
    if &wasm[4..8] == CORE_MODULE {
        return Err(
            "a core wasm module, not a component: build with `--target wasm32-wasip2`".into(),
        );
    }
    if &wasm[6..8] != COMPONENT_LAYER {
        return Err(
            "a WebAssembly binary of an unknown version; build it with `--target wasm32-wasip2`"
                .into(),
        );
    }
    Ok(())
}

/// A component's imports and exports, as names like `wharf:plugin/host@0.2.0`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentReport {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl ComponentReport {
    pub fn of(engine: &Engine, component: &Component) -> ComponentReport {
        let ty = component.component_type();
        ComponentReport {
            imports: ty
                .imports(engine)
                .map(|(name, _)| name.to_owned())
                .collect(),
            exports: ty
                .exports(engine)
                .map(|(name, _)| name.to_owned())
                .collect(),
        }
    }

    /// The world and WIT version, from the wharf interface it exports.
    pub fn world(&self) -> Result<(World, String), String> {
        for export in &self.exports {
            let Some((interface, version)) = wharf_interface(export) else {
                continue;
            };
            if let Some(world) = World::ALL
                .into_iter()
                .find(|w| w.export_interface() == interface)
            {
                return Ok((world, version.to_owned()));
            }
        }
        Err(format!(
            "a component with no wharf world: it exports no wharf:plugin world interface \
             (found: {}); build it with the wharf SDK (`wharf plugin new`)",
            if self.exports.is_empty() {
                "nothing".to_owned()
            } else {
                self.exports.join(", ")
            }
        ))
    }

    /// wharf imports a component of `world` may not use, e.g. `http` in a
    /// retention plugin.
    pub fn forbidden_imports(&self, world: World) -> Vec<String> {
        self.imports
            .iter()
            .filter(|name| match wharf_interface(name) {
                Some((interface, _)) => !world.allowed_imports().contains(&interface),
                None => false,
            })
            .cloned()
            .collect()
    }

    /// Every wharf interface version the component uses, deduplicated.
    pub fn wit_versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = self
            .imports
            .iter()
            .chain(&self.exports)
            .filter_map(|name| wharf_interface(name).map(|(_, version)| version.to_owned()))
            .collect();
        versions.sort();
        versions.dedup();
        versions
    }
}

/// `wharf:plugin/host@0.2.0` → `("host", "0.1.0")`.
fn wharf_interface(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(WHARF_PACKAGE)?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

/// Whether a plugin built against WIT `found` runs on this host: the same
/// major (minor, before 1.0) version, and nothing newer than the host.
pub fn wit_version_supported(found: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    };
    let (Some(host), Some(plugin)) = (parse(WIT_VERSION), parse(found)) else {
        return false;
    };
    let same_series = if host.0 == 0 {
        plugin.0 == 0 && plugin.1 == host.1
    } else {
        plugin.0 == host.0
    };
    same_series && plugin <= host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_versions_follow_semver_and_never_newer_than_the_host() {
        assert!(wit_version_supported("0.2.0"));
        assert!(!wit_version_supported("0.1.0"));
        assert!(!wit_version_supported("0.2.1"));
        assert!(!wit_version_supported("0.3.0"));
        assert!(!wit_version_supported("1.0.0"));
        assert!(!wit_version_supported(""));
    }

    #[test]
    fn core_modules_and_non_wasm_files_are_named_with_what_to_do() {
        let not_wasm = check_component_bytes(b"hello, world").unwrap_err();
        assert_eq!(not_wasm, "not a WebAssembly file");
        let core = check_component_bytes(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(core.contains("--target wasm32-wasip2"), "{core}");
        assert!(check_component_bytes(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn world_is_read_from_the_exported_interface() {
        let report = ComponentReport {
            imports: vec![
                "wharf:plugin/host@0.2.0".into(),
                "wharf:plugin/http@0.2.0".into(),
            ],
            exports: vec![
                "wharf:plugin/plugin@0.2.0".into(),
                "wharf:plugin/retention-policy@0.2.0".into(),
            ],
        };
        assert_eq!(report.world().unwrap(), (World::Retention, "0.2.0".into()));
        assert_eq!(
            report.forbidden_imports(World::Retention),
            vec!["wharf:plugin/http@0.2.0"]
        );
        assert!(report.forbidden_imports(World::Uploader).is_empty());
    }
}
