//! Export format: a JSON manifest of the dataset, no file contents: its
//! name, version and attributes, and per file its name, size, sha256,
//! kind, dates and verified remote copies. The shape is the JSON Schema
//! `manifest.schema.json` beside this crate; the integration test checks
//! real output against it.
//!
//! Written by hand rather than with serde: the plugin stays a few dozen
//! KiB, and the escaping below is all JSON needs.

use wharf_sdk::output::write;
use wharf_sdk::text::{file_name, json_string};
use wharf_sdk::{
    Entity, ExportResult, Exporter, FileEntry, ParamSpec, Params, PluginError, PluginInfo, param,
};

pub struct ManifestJson;

impl Exporter for ManifestJson {
    fn describe() -> PluginInfo {
        PluginInfo::new("manifest-json", env!("CARGO_PKG_VERSION"))
            .description(
                "Exports a JSON manifest of a dataset: paths, sizes, sha256, attributes, dates.",
            )
            .param(
                ParamSpec::new("pretty", "indent the JSON for people: true or false")
                    .default("false"),
            )
    }

    fn run(
        entity: Entity,
        files: Vec<FileEntry>,
        params: Params,
    ) -> Result<ExportResult, PluginError> {
        let pretty = match param(&params, "pretty").unwrap_or("false") {
            "true" => true,
            "false" => false,
            other => {
                return Err(PluginError::InvalidParams(format!(
                    "pretty = {other:?} must be true or false"
                )));
            }
        };
        write(manifest(&entity, &files, pretty).as_bytes())?;
        Ok(ExportResult {
            file_name: format!("{}.manifest.json", file_name(&entity.name)),
            media_type: "application/json".into(),
        })
    }
}

wharf_sdk::export_exporter!(ManifestJson);

/// The manifest as JSON text.
pub fn manifest(entity: &Entity, files: &[FileEntry], pretty: bool) -> String {
    let (nl, i1, i2, i3, sp) = if pretty {
        ("\n", "  ", "    ", "      ", " ")
    } else {
        ("", "", "", "", "")
    };
    let mut out = String::new();
    out.push('{');
    out.push_str(&format!("{nl}{i1}\"format\":{sp}\"wharf-manifest/1\","));
    out.push_str(&format!(
        "{nl}{i1}\"dataset\":{sp}{},",
        json_string(&entity.name)
    ));
    out.push_str(&format!("{nl}{i1}\"version\":{sp}{},", entity.version));
    let attributes: Vec<String> = entity
        .attributes
        .iter()
        .map(|(key, value)| format!("{nl}{i2}{}:{sp}{}", json_string(key), json_string(value)))
        .collect();
    out.push_str(&format!(
        "{nl}{i1}\"attributes\":{sp}{{{}",
        attributes.join(",")
    ));
    if !attributes.is_empty() {
        out.push_str(&format!("{nl}{i1}"));
    }
    out.push_str("},");
    out.push_str(&format!("{nl}{i1}\"files\":{sp}["));
    for (n, file) in files.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let copies: Vec<String> = file
            .remote_copies
            .iter()
            .map(|copy| {
                format!(
                    "{{\"destination\":{sp}{},{sp}\"remote_ref\":{sp}{},{sp}\"sha256\":{sp}{}}}",
                    json_string(&copy.destination),
                    json_string(&copy.remote_ref),
                    json_string(&copy.sha256)
                )
            })
            .collect();
        out.push_str(&format!("{nl}{i2}{{"));
        out.push_str(&format!(
            "{nl}{i3}\"name\":{sp}{},",
            json_string(&file.name)
        ));
        out.push_str(&format!("{nl}{i3}\"size\":{sp}{},", file.size));
        out.push_str(&format!(
            "{nl}{i3}\"sha256\":{sp}{},",
            json_string(&file.sha256)
        ));
        out.push_str(&format!(
            "{nl}{i3}\"kind\":{sp}{},",
            json_string(&file.kind)
        ));
        out.push_str(&format!("{nl}{i3}\"created_ms\":{sp}{},", file.created_ms));
        out.push_str(&format!(
            "{nl}{i3}\"modified_ms\":{sp}{},",
            file.modified_ms
        ));
        out.push_str(&format!(
            "{nl}{i3}\"remote_copies\":{sp}[{}]",
            copies.join(",")
        ));
        out.push_str(&format!("{nl}{i2}}}"));
    }
    if !files.is_empty() {
        out.push_str(&format!("{nl}{i1}"));
    }
    out.push_str(&format!("]{nl}}}{nl}"));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wharf_sdk::mock::MockHost;

    fn entity() -> Entity {
        Entity {
            name: "set \"1\"".into(),
            version: 4,
            last_export_ms: None,
            attributes: vec![("released".into(), "true\n".into())],
        }
    }

    #[test]
    fn the_manifest_is_json_with_every_file_and_attribute_in_both_layouts() {
        for pretty in ["true", "false"] {
            let mut host = MockHost::new().with_file(1, b"abc".to_vec());
            let files = vec![FileEntry::mock(1, "set/a\u{1}.bin", 3)];
            let result = host
                .run(|| ManifestJson::run(entity(), files, vec![("pretty".into(), pretty.into())]))
                .unwrap();
            assert_eq!(result.file_name, "set__1_.manifest.json");
            let value: serde_json::Value = serde_json::from_slice(&host.output).unwrap();
            assert_eq!(value["dataset"], "set \"1\"");
            assert_eq!(value["version"], 4);
            assert_eq!(value["attributes"]["released"], "true\n");
            assert_eq!(value["files"][0]["name"], "set/a\u{1}.bin");
            assert_eq!(value["files"][0]["size"], 3);
        }
    }

    #[test]
    fn an_empty_dataset_is_an_empty_list_and_a_bad_flag_is_invalid_params() {
        let value: serde_json::Value = serde_json::from_str(&manifest(
            &Entity {
                attributes: Vec::new(),
                ..entity()
            },
            &[],
            true,
        ))
        .unwrap();
        assert_eq!(value["files"].as_array().unwrap().len(), 0);
        let mut host = MockHost::new();
        let result =
            host.run(|| ManifestJson::run(entity(), vec![], vec![("pretty".into(), "yes".into())]));
        assert!(matches!(result, Err(PluginError::InvalidParams(m)) if m.contains("pretty")));
    }
}
