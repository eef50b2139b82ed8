//! The bundled plugins, through the real runtime.

use sha2::Digest;
use wharf::runtime::{CallError, DestinationAccess, RemoteAccess, UploadTarget, World};

use crate::support::*;

#[test]
fn every_bundled_plugin_loads_and_describes_itself() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut worlds = std::collections::BTreeMap::new();
    for source in wharf::plugins::bundled(limits()) {
        let plugin = runtime.load(source).unwrap();
        assert_eq!(plugin.info.name, plugin.name);
        assert!(!plugin.info.version.is_empty());
        worlds.insert(plugin.name.clone(), plugin.world);
    }
    // Whatever else is bundled, these are, each in its world.
    for (name, world) in [
        ("tar-export", World::Exporter),
        ("zip-export", World::Exporter),
        ("manifest-json", World::Exporter),
        ("backup-lite", World::Exporter),
        ("keep-last", World::Retention),
        ("keep-tags", World::Retention),
        ("export-cache", World::Retention),
        ("ttl", World::Retention),
        ("disk-pressure", World::Retention),
        ("http-put", World::Uploader),
        ("local-dir", World::Uploader),
        ("s3", World::Uploader),
    ] {
        assert_eq!(worlds.get(name), Some(&world), "{name} in {worlds:?}");
    }
}

#[test]
fn tar_export_produces_an_archive_tar_can_list_and_extract() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = runtime.load(bundled("tar-export")).unwrap();
    let files = [
        call_file(dir.path(), "a.txt", b"hello"),
        call_file(dir.path(), "b.bin", &vec![3u8; 70_000]),
    ];
    let out = dir.path().join("export.tmp");
    let exported = plugin
        .export(&entity("set-1"), &files, &params(&[]), &out)
        .unwrap();
    assert_eq!(exported.result.file_name, "set-1.tar");
    // Hashed while it was written (headers written, contents spliced): the
    // size and sha256 of the file on disk.
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(exported.size, bytes.len() as u64);
    assert_eq!(exported.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
    let extract = dir.path().join("extract");
    std::fs::create_dir(&extract).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&out)
        .arg("-C")
        .arg(&extract)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(extract.join("a.txt")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read(extract.join("b.bin")).unwrap(),
        vec![3u8; 70_000]
    );
}

#[test]
fn keep_last_rejects_bad_parameters_as_invalid_params() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = runtime.load(bundled("keep-last")).unwrap();
    let error = plan_once(&plugin, batch(0, vec![]), &params(&[("keep", "many")])).unwrap_err();
    assert!(
        matches!(&error, CallError::InvalidParams(msg) if msg.contains("keep")),
        "{error:?}"
    );
}

#[test]
fn an_uploader_without_allowed_hosts_is_denied_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = runtime.load(bundled("http-put")).unwrap();
    let file = call_file(dir.path(), "a.txt", b"hello");
    let target = UploadTarget {
        name: "remote".into(),
        url: "http://127.0.0.1:9/bucket".into(),
        access: DestinationAccess::Remote(RemoteAccess::default()),
    };
    let error = plugin.upload(&file, &target, &params(&[])).unwrap_err();
    assert!(
        matches!(&error, CallError::AccessDenied(what) if what.contains("127.0.0.1:9")),
        "{error:?}"
    );
}

#[test]
fn a_retention_run_plans_many_batches_on_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = runtime.load(bundled("keep-last")).unwrap();
    let mut session = plugin
        .plan_session(&params(&[("keep", "2")]), dir.path())
        .unwrap();
    let mut deleted = Vec::new();
    for entity in 0..20u64 {
        let files = (0..5)
            .map(|i| candidate(entity * 10 + i, Some(0), 100 - i as i64))
            .collect();
        let decided = session.plan(&batch(1, files)).unwrap();
        assert!(decided.reasons[0].starts_with("keep-last"));
        deleted.extend(decided.deletions.iter().map(|d| d.file));
    }
    assert!(session.finish().unwrap().deletions.is_empty());
    assert_eq!(deleted.len(), 20 * 3);
    assert!(deleted.contains(&192) && !deleted.contains(&191));
}
