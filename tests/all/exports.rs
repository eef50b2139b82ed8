//! Exports end to end through the CLI and the jobs engine, on real data
//! directories: the bundled `tar-export` read back by GNU tar, the export
//! cache (hit, version bump, touch), refusals that name what is wrong, and
//! single-flight per cache key.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;

use clap::Parser;
use wharf::cli::{Cli, execute};
use wharf::export::{self, ExportRequest, Planned};
use wharf::index::{Enqueued, Index};
use wharf::jobs::{Queue, Trigger};

pub(crate) fn wharf(data: &Path, args: &[&str]) -> anyhow::Result<ExitCode> {
    let mut argv = vec!["wharf", "--data-dir", data.to_str().unwrap()];
    argv.extend_from_slice(args);
    execute(Cli::try_parse_from(argv)?)
}

/// A data directory holding dataset `set1` (two files, one in a
/// subdirectory), ingested by `wharf add`.
pub(crate) fn dataset(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::write(
        dir.join("wharf.toml"),
        "[ingest]\nfile_last_modified_ms = 0\n",
    )
    .unwrap();
    let config = dir.join("wharf.toml");
    let config = config.to_str().unwrap();
    wharf(&data, &["--config", config, "init"]).unwrap();
    let source = dir.join("set1");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    std::fs::write(source.join("a.bin"), b"first file\n").unwrap();
    std::fs::write(source.join("sub/b.bin"), vec![7u8; 70_000]).unwrap();
    assert_eq!(
        wharf(
            &data,
            &["--config", config, "add", source.to_str().unwrap()]
        )
        .unwrap(),
        ExitCode::SUCCESS
    );
    data
}

pub(crate) fn rows(data: &Path, sql: &str) -> Vec<String> {
    let db = wharf::index::open_read_only(&data.join("index.sqlite")).unwrap();
    let mut query = db.prepare(sql).unwrap();
    query
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn export_without_a_daemon_writes_a_tar_that_gnu_tar_lists_and_a_repeat_is_a_cache_hit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let out = dir.path().join("set1.tar");
    assert_eq!(
        wharf(
            &data,
            &[
                "export",
                "set1",
                "--format",
                "tar-export",
                "-o",
                out.to_str().unwrap()
            ]
        )
        .unwrap(),
        ExitCode::SUCCESS
    );
    let listing = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    assert!(listing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "set1/a.bin\nset1/sub/b.bin\n"
    );
    let extracted = dir.path().join("x");
    std::fs::create_dir_all(&extracted).unwrap();
    assert!(
        Command::new("tar")
            .arg("-xf")
            .arg(&out)
            .arg("-C")
            .arg(&extracted)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        std::fs::read(extracted.join("set1/sub/b.bin")).unwrap(),
        vec![7u8; 70_000]
    );
    let export_rows = "SELECT x.id || ' ' || f.path || ' ' || f.kind || ' ' || x.media_type FROM exports x JOIN files f ON f.id = x.file_id";
    let first = rows(&data, export_rows);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].ends_with(" export application/x-tar"), "{first:?}");
    let accessed = rows(&data, "SELECT CAST(last_access_ms AS TEXT) FROM exports");
    // The repeat is answered from the cache: no new job, the same bytes.
    let again = dir.path().join("again.tar");
    wharf(
        &data,
        &[
            "export",
            "set1",
            "--format",
            "tar-export",
            "-o",
            again.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&out).unwrap());
    assert_eq!(
        rows(&data, "SELECT kind FROM jobs WHERE kind = 'export'").len(),
        1
    );
    assert_eq!(rows(&data, export_rows), first);
    assert!(rows(&data, "SELECT CAST(last_access_ms AS TEXT) FROM exports")[0] >= accessed[0]);
    assert!(
        std::fs::read_dir(data.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "nothing is left in tmp/"
    );
    // The export is not one of the dataset's files.
    assert_eq!(
        rows(&data, "SELECT CAST(version AS TEXT) FROM entities"),
        vec!["2".to_owned()]
    );
}

#[test]
fn a_changed_dataset_is_exported_again_and_the_old_entry_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    wharf(
        &data,
        &["export", "set1", "--format", "tar-export", "--wait"],
    )
    .unwrap();
    wharf(&data, &["dataset", "set", "set1", "released=true"]).unwrap();
    let out = dir.path().join("v3.tar");
    wharf(
        &data,
        &[
            "export",
            "set1",
            "--format",
            "tar-export",
            "-o",
            out.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(
        rows(
            &data,
            "SELECT entity_version || ':' || current FROM export_cache ORDER BY entity_version"
        ),
        vec!["2:0".to_owned(), "3:1".to_owned()]
    );
    wharf(&data, &["dataset", "unset", "set1", "released"]).unwrap();
    assert_eq!(
        wharf(&data, &["dataset", "show", "set1"]).unwrap(),
        ExitCode::SUCCESS
    );
    assert_eq!(
        wharf(&data, &["dataset", "list", "--format", "json"]).unwrap(),
        ExitCode::SUCCESS
    );
}

#[test]
fn export_refusals_name_the_dataset_the_formats_and_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let message = |args: &[&str]| format!("{:#}", wharf(&data, args).unwrap_err());
    let unknown = message(&["export", "nope", "--format", "tar-export"]);
    assert!(
        unknown.contains("no dataset \"nope\"") && unknown.contains("wharf dataset list"),
        "{unknown}"
    );
    let format = message(&["export", "set1", "--format", "zap"]);
    assert!(
        format.contains("\"zap\"") && format.contains("tar-export"),
        "{format}"
    );
    let param = message(&[
        "export",
        "set1",
        "--format",
        "tar-export",
        "--param",
        "level=9",
    ]);
    assert!(
        param.contains("\"level\"") && param.contains("takes none"),
        "{param}"
    );
    let missing = message(&["dataset", "show", "nope"]);
    assert!(missing.contains("no dataset \"nope\""), "{missing}");
    assert!(rows(&data, "SELECT kind FROM jobs WHERE kind = 'export'").is_empty());
}

#[test]
fn twenty_concurrent_identical_requests_make_one_job_and_one_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let config = wharf::config::Config::default();
    let data_dir = wharf::store::DataDir::new(&data);
    let exporters = Arc::new(export::load_exporters(&config, &data_dir).unwrap());
    let index = Arc::new(Index::open(&data.join("index.sqlite")).unwrap());
    let request = ExportRequest {
        dataset: "set1".into(),
        format: "tar-export".into(),
        params: Vec::new(),
    };
    let ids: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let (index, exporters, request) =
                    (index.clone(), exporters.clone(), request.clone());
                scope.spawn(move || {
                    let Planned::Run { request, .. } =
                        export::plan(&index, &exporters, &request).unwrap()
                    else {
                        panic!("nothing is cached yet")
                    };
                    let queue = Queue::new(index.clone(), &wharf::config::JobsConfig::default());
                    queue.enqueue(&request, Trigger::Cli).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let queued: Vec<_> = ids
        .iter()
        .filter(|e| matches!(e, Enqueued::Queued(_)))
        .collect();
    assert_eq!(queued.len(), 1, "{ids:?}");
    assert!(ids.iter().all(|e| e.id() == ids[0].id()), "{ids:?}");
    // Whoever follows it runs it, once.
    wharf(
        &data,
        &["export", "set1", "--format", "tar-export", "--wait"],
    )
    .unwrap();
    assert_eq!(
        rows(&data, "SELECT path FROM files WHERE kind = 'export'").len(),
        1
    );
}

#[test]
fn an_export_that_crashed_before_its_commit_leaves_nothing_visible_and_the_rerun_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let config = wharf::config::Config::default();
    let data_dir = wharf::store::DataDir::new(&data);
    let exporters = export::load_exporters(&config, &data_dir).unwrap();
    let index = Index::open(&data.join("index.sqlite")).unwrap();
    let request = ExportRequest {
        dataset: "set1".into(),
        format: "tar-export".into(),
        params: Vec::new(),
    };
    let Planned::Run { key, .. } = export::plan(&index, &exporters, &request).unwrap() else {
        panic!("nothing is cached yet")
    };
    // What a run killed between its rename and its commit leaves: a
    // half-written file in tmp/ and an unindexed file at the key's path.
    let placed = data_dir
        .resolve(&wharf::store::export_path(
            key.entity.0,
            key.version,
            &key.format,
            &key.params_sha256,
            "set1.tar",
        ))
        .unwrap();
    std::fs::create_dir_all(placed.parent().unwrap()).unwrap();
    std::fs::write(&placed, b"half a tar").unwrap();
    std::fs::write(data.join("tmp/1.0.tar-export.part"), b"half a tar").unwrap();
    assert!(rows(&data, "SELECT path FROM files WHERE kind = 'export'").is_empty());
    assert!(
        index.cached_export(&key).unwrap().is_none(),
        "nothing visible"
    );
    let out = dir.path().join("set1.tar");
    assert_eq!(
        wharf(
            &data,
            &[
                "export",
                "set1",
                "--format",
                "tar-export",
                "-o",
                out.to_str().unwrap()
            ]
        )
        .unwrap(),
        ExitCode::SUCCESS
    );
    let listing = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "set1/a.bin\nset1/sub/b.bin\n"
    );
    assert_eq!(
        std::fs::read(&placed).unwrap(),
        std::fs::read(&out).unwrap()
    );
}

/// Checks `value` against the subset of JSON Schema the manifest's schema
/// uses: type, required, additionalProperties, properties, items, const,
/// pattern of hex digits, minimum.
fn conforms(value: &serde_json::Value, schema: &serde_json::Value, at: &str) {
    use serde_json::Value;
    if let Some(expected) = schema.get("const") {
        assert_eq!(value, expected, "{at}");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("{at} is not an object"));
            for key in schema["required"].as_array().into_iter().flatten() {
                assert!(
                    object.contains_key(key.as_str().unwrap()),
                    "{at} lacks {key}"
                );
            }
            for (key, item) in object {
                match schema.get("properties").and_then(|p| p.get(key)) {
                    Some(property) => conforms(item, property, &format!("{at}.{key}")),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => panic!("{at}.{key} is not in the schema"),
                        Some(extra @ Value::Object(_)) => {
                            conforms(item, extra, &format!("{at}.{key}"))
                        }
                        _ => {}
                    },
                }
            }
        }
        Some("array") => {
            for (i, item) in value
                .as_array()
                .unwrap_or_else(|| panic!("{at} is not an array"))
                .iter()
                .enumerate()
            {
                conforms(item, &schema["items"], &format!("{at}[{i}]"));
            }
        }
        Some("string") => {
            let text = value
                .as_str()
                .unwrap_or_else(|| panic!("{at} is not a string"));
            if schema.get("pattern").is_some() {
                assert!(
                    text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()),
                    "{at}"
                );
            }
        }
        Some("integer") => {
            let number = value
                .as_i64()
                .unwrap_or_else(|| panic!("{at} is not an integer"));
            if let Some(minimum) = schema.get("minimum").and_then(Value::as_i64) {
                assert!(number >= minimum, "{at}");
            }
        }
        _ => {}
    }
}

#[test]
fn manifest_json_follows_its_schema_and_different_parameters_are_cached_apart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    wharf(&data, &["dataset", "set", "set1", "released=true"]).unwrap();
    let schema: serde_json::Value = serde_json::from_str(include_str!(
        "../../plugins/manifest-json/manifest.schema.json"
    ))
    .unwrap();
    let (compact, pretty) = (
        dir.path().join("compact.json"),
        dir.path().join("pretty.json"),
    );
    for (out, flag) in [(&compact, "pretty=false"), (&pretty, "pretty=true")] {
        assert_eq!(
            wharf(
                &data,
                &[
                    "export",
                    "set1",
                    "--format",
                    "manifest-json",
                    "--param",
                    flag,
                    "-o",
                    out.to_str().unwrap()
                ]
            )
            .unwrap(),
            ExitCode::SUCCESS
        );
    }
    let (compact_bytes, pretty_bytes) = (
        std::fs::read(&compact).unwrap(),
        std::fs::read(&pretty).unwrap(),
    );
    assert_ne!(
        compact_bytes, pretty_bytes,
        "different parameters, different entries"
    );
    for bytes in [&compact_bytes, &pretty_bytes] {
        let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        conforms(&value, &schema, "$");
        assert_eq!(value["attributes"]["released"], "true");
        assert_eq!(value["files"][1]["name"], "set1/sub/b.bin");
        assert_eq!(value["files"][1]["size"], 70_000);
    }
    assert_eq!(
        rows(&data, "SELECT format FROM export_cache WHERE current").len(),
        2,
        "one entry per parameter set"
    );
    // The default is pretty=false: the same entry as the explicit one.
    let default = dir.path().join("default.json");
    wharf(
        &data,
        &[
            "export",
            "set1",
            "--format",
            "manifest-json",
            "-o",
            default.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(std::fs::read(&default).unwrap(), compact_bytes);
    assert_eq!(
        rows(&data, "SELECT kind FROM jobs WHERE kind = 'export'").len(),
        2
    );
    let bad = format!(
        "{:#}",
        wharf(
            &data,
            &[
                "export",
                "set1",
                "--format",
                "manifest-json",
                "--param",
                "indent=2"
            ]
        )
        .unwrap_err()
    );
    assert!(
        bad.contains("\"indent\"") && bad.contains("pretty"),
        "{bad}"
    );
}

/// Every entry of the zip at `path` as (name, bytes), read by the `zip`
/// crate, which checks each CRC-32 as it reads.
fn zip_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.name().unwrap().into_owned(), bytes)
        })
        .collect()
}

/// `unzip -t` of `path` (Info-ZIP, an independent reader), when the machine
/// has it: every entry's CRC-32 checked, "No errors detected".
fn unzip_test(path: &Path) {
    match Command::new("unzip").arg("-tq").arg(path).output() {
        Ok(output) => assert!(
            output.status.success()
                && String::from_utf8_lossy(&output.stdout).contains("No errors detected"),
            "unzip -t: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => eprintln!("unzip is not installed ({error}); the zip crate alone reads it"),
    }
}

#[test]
fn zip_export_is_read_back_by_unzip_and_the_zip_crate_with_every_file_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let out = dir.path().join("set1.zip");
    assert_eq!(
        wharf(
            &data,
            &[
                "export",
                "set1",
                "--format",
                "zip-export",
                "-o",
                out.to_str().unwrap()
            ]
        )
        .unwrap(),
        ExitCode::SUCCESS
    );
    unzip_test(&out);
    assert_eq!(
        zip_entries(&out),
        vec![
            ("set1/a.bin".to_owned(), b"first file\n".to_vec()),
            ("set1/sub/b.bin".to_owned(), vec![7u8; 70_000]),
        ]
    );
    assert_eq!(
        rows(
            &data,
            "SELECT x.media_type FROM exports x JOIN files f ON f.id = x.file_id"
        ),
        vec!["application/zip".to_owned()]
    );
}

#[test]
fn zip_export_of_more_than_65535_entries_is_zip64_and_both_readers_list_them_all() {
    use crate::support::*;
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = runtime
        .load(wharf::runtime::PluginSource {
            limits: wharf::runtime::Limits {
                memory_bytes: 256 << 20,
                timeout: std::time::Duration::from_secs(300),
                output_bytes: 1 << 30,
                ..limits()
            },
            ..bundled("zip-export")
        })
        .unwrap();
    // 65,540 entries over three files on disk: the host hands the same
    // file to the plugin under many names, as a dataset would hand many.
    let sources = [
        call_file(dir.path(), "zero", b""),
        call_file(dir.path(), "one", b"1"),
        call_file(dir.path(), "abc", b"abc"),
    ];
    const ENTRIES: usize = 65_540;
    let files: Vec<_> = (0..ENTRIES)
        .map(|i| wharf::runtime::CallFile {
            name: format!("d{}/{i:05}", i % 7),
            ..sources[i % 3].clone()
        })
        .collect();
    let out = dir.path().join("many.zip");
    let result = plugin
        .export(&entity("many"), &files, &Vec::new(), &out)
        .unwrap();
    assert_eq!(result.result.file_name, "many.zip");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(result.size, bytes.len() as u64);
    assert_eq!(
        result.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        "hashed while it was written"
    );
    // The zip64 end record and its locator sit right before the classic end
    // record, whose entry counts are the 0xFFFF marker.
    let classic = bytes.len() - 22;
    assert_eq!(bytes[classic..classic + 4], [0x50, 0x4b, 0x05, 0x06]);
    assert_eq!(bytes[classic + 10..classic + 12], [0xFF, 0xFF]);
    assert_eq!(bytes[classic - 20..classic - 16], [0x50, 0x4b, 0x06, 0x07]);
    let end64 = classic - 20 - 56;
    assert_eq!(bytes[end64..end64 + 4], [0x50, 0x4b, 0x06, 0x06]);
    assert_eq!(
        u64::from_le_bytes(bytes[end64 + 32..end64 + 40].try_into().unwrap()),
        ENTRIES as u64
    );
    unzip_test(&out);
    let entries = zip_entries(&out);
    assert_eq!(entries.len(), ENTRIES);
    for (i, (name, content)) in entries.iter().enumerate() {
        assert_eq!(name, &format!("d{}/{i:05}", i % 7));
        let expected: &[u8] = [&b""[..], b"1", b"abc"][i % 3];
        assert_eq!(content, expected, "{name}");
    }
}

/// Records a verified copy of the index path `path` on `destination`.
fn synced(data: &Path, path: &str, destination: &str) {
    let index = Index::open(&data.join("index.sqlite")).unwrap();
    let sha256 = rows(
        data,
        &format!("SELECT sha256 FROM files WHERE path = '{path}'"),
    )
    .pop()
    .unwrap();
    index
        .record_verified_copy_for_tests(
            path,
            destination,
            &format!("s3://bucket/{sha256}"),
            &sha256,
        )
        .unwrap();
}

#[test]
fn backup_lite_points_at_verified_copies_and_refuses_a_destination_missing_or_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let backup = |out: Option<&Path>| {
        let mut args = vec![
            "export",
            "set1",
            "--format",
            "backup-lite",
            "--param",
            "destination=s3",
        ];
        if let Some(out) = out {
            args.extend(["-o", out.to_str().unwrap()]);
        }
        wharf(&data, &args)
    };
    let missing = format!("{:#}", backup(None).unwrap_err());
    assert!(
        missing.contains("destination \"s3\" is not configured"),
        "{missing}"
    );
    // A copy of one file of two: the other is named.
    synced(&data, "files/set1/a.bin", "s3");
    let incomplete = format!("{:#}", backup(None).unwrap_err());
    assert!(
        incomplete.contains("destination \"s3\" has no verified copy of 1 of the 2 files")
            && incomplete.contains("(set1/sub/b.bin)"),
        "{incomplete}"
    );
    // A copy verified against other bytes is no copy.
    let index = Index::open(&data.join("index.sqlite")).unwrap();
    index
        .record_verified_copy_for_tests("files/set1/sub/b.bin", "s3", "s3://x", &"0".repeat(64))
        .unwrap();
    assert!(format!("{:#}", backup(None).unwrap_err()).contains("(set1/sub/b.bin)"));
    assert!(
        rows(&data, "SELECT kind FROM jobs WHERE kind = 'export'").is_empty(),
        "a refused backup queues nothing"
    );
    assert!(rows(&data, "SELECT CAST(id AS TEXT) FROM exports").is_empty());

    synced(&data, "files/set1/sub/b.bin", "s3");
    let out = dir.path().join("backup.json");
    assert_eq!(backup(Some(&out)).unwrap(), ExitCode::SUCCESS);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(manifest["format"], "wharf-backup-lite/1");
    assert_eq!(manifest["destination"], "s3");
    let files = manifest["files"].as_array().unwrap();
    let shas = rows(
        &data,
        "SELECT sha256 FROM files WHERE kind = 'capture' ORDER BY path",
    );
    assert_eq!(files.len(), 2);
    for (file, sha) in files.iter().zip(&shas) {
        assert_eq!(file["sha256"], *sha);
        assert_eq!(file["remote_ref"], format!("s3://bucket/{sha}"));
    }
    assert_eq!(files[1]["name"], "set1/sub/b.bin");
    assert!(
        std::fs::metadata(&out).unwrap().len() < 2_000,
        "no file bytes in a backup"
    );
}

#[test]
fn a_backup_whose_copies_vanish_after_it_was_queued_fails_and_caches_nothing() {
    use wharf::jobs::{Handler, JobContext};
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    synced(&data, "files/set1/a.bin", "s3");
    synced(&data, "files/set1/sub/b.bin", "s3");
    let config = wharf::config::Config::default();
    let data_dir = wharf::store::DataDir::new(&data);
    let exporters = Arc::new(export::load_exporters(&config, &data_dir).unwrap());
    let index = Arc::new(Index::open(&data.join("index.sqlite")).unwrap());
    let request = ExportRequest {
        dataset: "set1".into(),
        format: "backup-lite".into(),
        params: vec![("destination".into(), "s3".into())],
    };
    let Planned::Run { request, key } = export::plan(&index, &exporters, &request).unwrap() else {
        panic!("nothing is cached yet")
    };
    let queue = Queue::new(index.clone(), &wharf::config::JobsConfig::default());
    let id = queue.enqueue(&request, Trigger::Cli).unwrap().id();
    // Between the request and the run, one copy is found not to match.
    index
        .record_verified_copy_for_tests("files/set1/a.bin", "s3", "s3://x", &"0".repeat(64))
        .unwrap();
    let job = index.job(id).unwrap().unwrap();
    let handler = export::ExportJob::new(
        data_dir.clone(),
        index.clone(),
        exporters,
        Arc::new(std::sync::RwLock::new(config)),
    );
    let progress = |_: u64, _: Option<u64>| {};
    let outcome = handler.run(&JobContext::new(
        &job,
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
        &progress,
    ));
    let Err(wharf::jobs::JobError::Terminal(error)) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        format!("{error:#}")
            .contains("no verified copy of 1 of the 2 files of dataset \"set1\" (set1/a.bin)"),
        "{error:#}"
    );
    assert!(index.cached_export(&key).unwrap().is_none());
    assert!(rows(&data, "SELECT path FROM files WHERE kind = 'export'").is_empty());
    assert!(
        std::fs::read_dir(data.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "nothing is left in tmp/"
    );
}

#[test]
fn a_sigkill_during_a_large_export_leaves_nothing_visible_and_the_rerun_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        dir.path().join("wharf.toml"),
        "[ingest]\nfile_last_modified_ms = 0\n",
    )
    .unwrap();
    let config = dir.path().join("wharf.toml");
    let config = config.to_str().unwrap();
    wharf(&data, &["--config", config, "init"]).unwrap();
    // 96 files of 4 MiB: long enough an export to be killed mid-way.
    let source = dir.path().join("big");
    std::fs::create_dir_all(&source).unwrap();
    let chunk: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
    for n in 0..96 {
        std::fs::write(source.join(format!("f{n:02}.bin")), &chunk).unwrap();
    }
    wharf(
        &data,
        &["--config", config, "add", source.to_str().unwrap()],
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["export", "big", "--format", "tar-export", "--wait"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once its output in tmp/ holds a quarter of the archive.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let killed_at = loop {
        let written: u64 = std::fs::read_dir(data.join("tmp"))
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok()?.metadata().ok())
                    .map(|metadata| metadata.len())
                    .sum()
            })
            .unwrap_or(0);
        if written >= 96 << 20 {
            child.kill().unwrap();
            break written;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export ended before it could be killed"
        );
        assert!(
            std::time::Instant::now() < until,
            "the export never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    child.wait().unwrap();
    assert!(killed_at < 96 * (4 << 20), "killed mid-way");
    // Nothing visible: no cache entry, no export file row, nothing under
    // exports/; only the half-written output in tmp/.
    assert!(rows(&data, "SELECT CAST(id AS TEXT) FROM exports").is_empty());
    assert!(rows(&data, "SELECT path FROM files WHERE kind = 'export'").is_empty());
    let exported: Vec<_> = walk(&data.join("exports"));
    assert!(exported.is_empty(), "{exported:?}");
    assert!(
        std::fs::read_dir(data.join("tmp"))
            .unwrap()
            .next()
            .is_some()
    );
    // The rerun takes over the dead process's job and lease and succeeds.
    let out = dir.path().join("big.tar");
    assert_eq!(
        wharf(
            &data,
            &[
                "export",
                "big",
                "--format",
                "tar-export",
                "-o",
                out.to_str().unwrap()
            ]
        )
        .unwrap(),
        ExitCode::SUCCESS
    );
    let listing = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&listing.stdout).lines().count(), 96);
    // The killed job itself ran to its end (a rerun its follower asked for
    // may be queued behind it: it would find the cache).
    assert_eq!(
        rows(
            &data,
            "SELECT state FROM jobs WHERE kind = 'export' ORDER BY id LIMIT 1"
        ),
        vec!["done".to_owned()]
    );
    assert_eq!(
        rows(&data, "SELECT path FROM files WHERE kind = 'export'").len(),
        1
    );
    assert_eq!(walk(&data.join("exports")).len(), 1);
}

/// The regular files under `dir`, recursively (none if it does not exist).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
