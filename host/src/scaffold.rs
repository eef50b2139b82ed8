//! `wharf plugin new`: a plugin crate that builds to wasm32-wasip2 with the
//! SDK and passes its own tests, for each world: one against the SDK's mock
//! host, and one that builds the component and runs it through the real
//! wharf host (`wharf_sdk::real_host!`, `wharf plugin call`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::runtime::World;

/// The SDK of the source tree this wharf was built from.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("sdk")
}

/// Creates the crate `name` in `dir` (which must not exist or be empty).
pub fn new_plugin(kind: World, name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        anyhow::bail!(
            "plugin name {name:?} is not valid: use lower-case letters, digits and dashes, starting with a letter"
        );
    }
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the wharf SDK was not found at {}; pass --sdk PATH",
            sdk.display()
        )
    })?;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!(
            "{} already exists and is not empty; choose another --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let crate_dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let type_name = type_name(name);
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk, &crate_dir)),
        ("rust-toolchain.toml", TOOLCHAIN.to_owned()),
        (".gitignore", "/target\n".to_owned()),
        ("src/lib.rs", lib_rs(kind, name, &type_name)),
        ("README.md", readme(kind, name)),
    ];
    for (file, content) in files {
        std::fs::write(dir.join(file), content).with_context(|| format!("cannot write {file}"))?;
    }
    Ok(())
}

fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

const TOOLCHAIN: &str = "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"wasm32-wasip2\"]\n";

/// How the crate depends on the SDK: a relative path when it lives inside
/// the SDK's source tree (so the two move together), otherwise the SDK's
/// absolute path, with a comment saying how to point it elsewhere.
fn sdk_dependency(sdk: &Path, crate_dir: &Path) -> (String, &'static str) {
    let tree = sdk.parent().unwrap_or(sdk);
    match crate_dir.strip_prefix(tree) {
        Ok(inside) => {
            let up = "../".repeat(inside.components().count());
            let rest = sdk.strip_prefix(tree).unwrap_or(sdk);
            (
                format!("{up}{}", rest.display()),
                "# The SDK of the wharf source tree this crate lives in.\n",
            )
        }
        Err(_) => (
            sdk.display().to_string(),
            "# The SDK of the wharf source tree this crate was created from. If that\n\
             # tree moves, or on another machine, point `path` at a wharf checkout's\n\
             # `sdk/` directory (or create the crate with `wharf plugin new --sdk PATH`).\n",
        ),
    }
}

fn cargo_toml(name: &str, sdk: &Path, crate_dir: &Path) -> String {
    let (path, comment) = sdk_dependency(sdk, crate_dir);
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# A plugin is built on its own, not as part of an enclosing workspace.
[workspace]

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
{comment}wharf-sdk = {{ path = {path:?} }}

[dev-dependencies]
# `host-test`: the test that builds this crate to wasm and runs it through the
# real wharf host (the `wharf` on PATH, or $WHARF).
wharf-sdk = {{ path = {path:?}, features = ["host-test"] }}

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#
    )
}

fn readme(kind: World, name: &str) -> String {
    format!(
        "# {name}\n\nA wharf {kind} plugin.\n\n```sh\n\
         cargo test                                      # the mock host, then the real one (builds the .wasm)\n\
         cargo build --release --target wasm32-wasip2    # target/wasm32-wasip2/release/{file}.wasm\n\
         wharf plugin inspect target/wasm32-wasip2/release/{file}.wasm\n\
         wharf plugin call target/wasm32-wasip2/release/{file}.wasm describe\n\
         wharf plugin install target/wasm32-wasip2/release/{file}.wasm   # into the data directory; a running daemon reloads\n```\n\n\
         `cargo test` runs the real-host test with the `wharf` on PATH, or the one `WHARF` names.\n",
        file = name.replace('-', "_")
    )
}

fn lib_rs(kind: World, name: &str, type_name: &str) -> String {
    let body = match kind {
        World::Exporter => EXPORTER,
        World::Retention => RETENTION,
        World::Uploader => UPLOADER,
    };
    body.replace("{{NAME}}", name)
        .replace("{{TYPE}}", type_name)
}

const EXPORTER: &str = r#"//! {{NAME}}: a wharf export format. This one writes a manifest line per
//! file followed by the file's bytes, which the host appends itself.

use wharf_sdk::output::{append_file, write};
use wharf_sdk::{Entity, ExportResult, Exporter, FileEntry, Params, PluginError, PluginInfo};

pub struct {{TYPE}};

impl Exporter for {{TYPE}} {
    fn describe() -> PluginInfo {
        PluginInfo::new("{{NAME}}", env!("CARGO_PKG_VERSION"))
            .description("Concatenates an entity's files, each after a line naming it.")
    }

    fn run(entity: Entity, files: Vec<FileEntry>, _params: Params) -> Result<ExportResult, PluginError> {
        for entry in &files {
            write(format!("{} {}\n", entry.name, entry.size).as_bytes())?;
            append_file(&entry.file, 0, entry.size)?;
        }
        Ok(ExportResult { file_name: format!("{}.txt", entity.name), media_type: "text/plain".into() })
    }
}

wharf_sdk::export_exporter!({{TYPE}});

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;

    #[test]
    fn writes_each_file_after_its_header() {
        let entity = Entity { name: "set".into(), version: 1, last_export_ms: None, attributes: vec![] };
        let mut host = MockHost::new().with_file(1, b"hi".to_vec());
        let files = vec![FileEntry::mock(1, "a.txt", 2)];
        let result = host.run(|| {{TYPE}}::run(entity, files, vec![])).unwrap();
        assert_eq!(result.file_name, "set.txt");
        assert_eq!(host.output, b"a.txt 2\nhi");
    }

    /// Builds the component and runs it through the real wharf host: what
    /// the sandbox refuses fails here, not in production.
    #[test]
    fn runs_in_the_real_host() {
        let host = wharf_sdk::real_host!();
        let input = host.file("a.txt", b"hi");
        let call = host.call("run", &["--file", &input, "--entity", "set"]);
        let result = call.result();
        assert_eq!(result["file_name"], "set.txt");
        let output = std::fs::read(result["output"].as_str().unwrap()).unwrap();
        assert_eq!(output, b"a.txt 2\nhi");
    }
}
"#;

const RETENTION: &str = r#"//! {{NAME}}: a wharf retention policy. This one deletes files older than
//! `max_age_ms` (a parameter).

use wharf_sdk::{Batch, Decisions, ParamSpec, Params, Planner, PluginError, PluginInfo, Retention, param_parse};

pub struct {{TYPE}};

/// One retention run: what `open` validated, kept for every batch.
pub struct Run {
    cutoff_ms: i64,
    reason: String,
}

impl Retention for {{TYPE}} {
    type Planner = Run;

    fn describe() -> PluginInfo {
        PluginInfo::new("{{NAME}}", env!("CARGO_PKG_VERSION"))
            .description("Deletes files older than max_age_ms.")
            .param(ParamSpec::new("max_age_ms", "age after which a file may go").default("604800000"))
    }

    fn open(params: Params) -> Result<Run, PluginError> {
        let max_age_ms: i64 = param_parse(&params, "max_age_ms", Some(604_800_000))?;
        Ok(Run {
            cutoff_ms: wharf_sdk::host::now_ms() - max_age_ms,
            reason: format!("older than {max_age_ms} ms"),
        })
    }
}

impl Planner for Run {
    fn plan(&mut self, batch: &Batch) -> Result<Decisions, PluginError> {
        let mut decisions = Decisions::new();
        // Reads only the column it needs; file i has id first_id + i.
        for (id, &created_ms) in batch.ids().zip(batch.created_ms()) {
            if created_ms < self.cutoff_ms {
                decisions.delete(id, &self.reason);
            }
        }
        Ok(decisions)
    }
}

wharf_sdk::export_retention!({{TYPE}});

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;
    use wharf_sdk::Candidate;

    fn file(created_ms: i64) -> Candidate {
        Candidate { size: 1, created_ms, modified_ms: created_ms, ..Candidate::default() }
    }

    #[test]
    fn deletes_only_old_files() {
        let mut host = MockHost::new().with_now_ms(10_000);
        let params = vec![("max_age_ms".to_string(), "1000".to_string())];
        let mut batch = Batch::new(1, vec![], vec!["capture".into()]);
        batch.push(file(9_500)); // id 1
        batch.push(file(100)); // id 2
        let decided = host.run(|| {{TYPE}}::open(params)?.plan(&batch)).unwrap();
        assert_eq!(decided.files(), vec![2]);
    }

    /// Builds the component and runs a plan through the real wharf host:
    /// what the sandbox refuses fails here, not in production.
    #[test]
    fn runs_in_the_real_host() {
        let host = wharf_sdk::real_host!();
        let new = host.file("new.bin", b"x");
        let call = host.call("plan", &["--file", &new, "--param", "max_age_ms=3600000"]);
        assert_eq!(call.result()["deleted"], 0, "a file just written is kept");
        let refused = host.call("plan", &["--file", &new, "--param", "max_age_ms=soon"]);
        assert_eq!(refused.error().map(|(class, _)| class), Some("invalid-params"));
    }
}
"#;

const UPLOADER: &str = r#"//! {{NAME}}: a wharf uploader. This one PUTs each file to
//! `<destination>/<sha256>`, the host streaming the body from disk, or has
//! the host copy it into a local destination under its sha256.

use wharf_sdk::http::{Request, send};
use wharf_sdk::{Destination, DestinationKind, FileEntry, Params, PluginError, PluginInfo, UploadResult, Uploader, local};

pub struct {{TYPE}};

impl Uploader for {{TYPE}} {
    fn describe() -> PluginInfo {
        PluginInfo::new("{{NAME}}", env!("CARGO_PKG_VERSION")).description("Uploads files with HTTP PUT.")
    }

    fn run(entry: FileEntry, destination: Destination, _params: Params) -> Result<UploadResult, PluginError> {
        if destination.kind == DestinationKind::Local {
            local::place(&entry.file, 0, entry.size, &entry.sha256)?;
            return Ok(UploadResult { remote_ref: entry.sha256.clone(), remote_sha256: local::sha256(&entry.sha256)? });
        }
        let url = format!("{}/{}", destination.url.trim_end_matches('/'), entry.sha256);
        let response = send(&Request::put(&url).file_range(&entry.file, 0, entry.size))?;
        match response.status {
            200..=299 => Ok(UploadResult { remote_ref: url, remote_sha256: None }),
            status @ (429 | 500..=599) => Err(PluginError::transient(format!("{url}: {status}"))),
            status => Err(PluginError::terminal(format!("{url}: {status}"))),
        }
    }
}

wharf_sdk::export_uploader!({{TYPE}});

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::http::{Method, Response};
    use wharf_sdk::mock::MockHost;

    #[test]
    fn puts_the_file_under_its_hash() {
        let entry = FileEntry { sha256: "ab".into(), ..FileEntry::mock(1, "a", 2) };
        let destination = Destination {
            name: "d".into(), kind: DestinationKind::Remote, url: "http://127.0.0.1:1/b".into(), credentials: vec![],
        };
        let mut host = MockHost::new().with_file(1, b"hi".to_vec()).with_http(|request, body| {
            assert_eq!((request.method, body.as_slice()), (Method::Put, &b"hi"[..]));
            Ok(Response { status: 201, headers: vec![], body: vec![] })
        });
        let result = host.run(|| {{TYPE}}::run(entry, destination, vec![])).unwrap();
        assert_eq!(result.remote_ref, "http://127.0.0.1:1/b/ab");
    }

    /// Builds the component and uploads through the real wharf host into a
    /// local directory: what the sandbox refuses fails here, not in production.
    #[test]
    fn runs_in_the_real_host() {
        let host = wharf_sdk::real_host!();
        let input = host.file("a.bin", b"hi");
        let dest = host.dir("dest");
        let call = host.call("run", &["--file", &input, "--local-dir", &dest]);
        let key = call.result()["remote_ref"].as_str().unwrap().to_owned();
        assert_eq!(std::fs::read(std::path::Path::new(&dest).join(key)).unwrap(), b"hi");
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_rust_type_names() {
        assert_eq!(type_name("my-cool-plugin"), "MyCoolPlugin");
        assert_eq!(type_name("x"), "X");
    }

    #[test]
    fn the_sdk_is_a_relative_path_inside_its_tree_and_documented_outside() {
        let sdk = Path::new("/src/wharf/sdk");
        let (inside, _) = sdk_dependency(sdk, Path::new("/src/wharf/plugins/mine"));
        assert_eq!(inside, "../../sdk");
        let (outside, comment) = sdk_dependency(sdk, Path::new("/home/me/mine"));
        assert_eq!(outside, "/src/wharf/sdk");
        assert!(comment.contains("--sdk"), "{comment}");
    }

    #[test]
    fn bad_names_and_non_empty_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = default_sdk_path();
        for bad in ["", "Upper", "1abc", "a_b", "../x"] {
            let err = new_plugin(World::Retention, bad, &dir.path().join("x"), &sdk).unwrap_err();
            assert!(err.to_string().contains("not valid"), "{bad}: {err}");
        }
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = new_plugin(World::Retention, "ok", dir.path(), &sdk).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
            "mine"
        );
    }
}
