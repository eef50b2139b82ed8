//! The bundled plugins, through the real runtime.

use wharf::runtime::{CallError, Destination, World};

use crate::support::*;

#[test]
fn every_bundled_plugin_loads_and_describes_itself() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let mut worlds = Vec::new();
    for source in wharf::runtime::bundled(limits()) {
        let plugin = runtime.load(source).unwrap();
        assert_eq!(plugin.info.name, plugin.name);
        assert!(!plugin.info.version.is_empty());
        worlds.push(plugin.world);
    }
    worlds.sort_by_key(|w| w.name());
    assert_eq!(
        worlds,
        vec![World::Exporter, World::Retention, World::Uploader]
    );
}

#[test]
fn tar_export_produces_an_archive_tar_can_list_and_extract() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let plugin = runtime.load(bundled("tar-export")).unwrap();
    let files = [
        call_file(dir.path(), 1, "a.txt", b"hello"),
        call_file(dir.path(), 2, "b.bin", &vec![3u8; 70_000]),
    ];
    let out = dir.path().join("export.tmp");
    let result = plugin
        .export(&entity("set-1"), &files, &params(&[]), &out)
        .unwrap();
    assert_eq!(result.file_name, "set-1.tar");
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
    let error = plugin.plan(&[], &params(&[("keep", "many")])).unwrap_err();
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
    let mut file = call_file(dir.path(), 1, "a.txt", b"hello");
    file.info.sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into();
    let destination = Destination {
        name: "remote".into(),
        url: "http://127.0.0.1:9/bucket".into(),
    };
    let error = plugin
        .upload(&file, &destination, &params(&[]))
        .unwrap_err();
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
    let mut session = plugin.plan_session().unwrap();
    let mut deleted = Vec::new();
    for entity in 0..20u64 {
        let batch: Vec<_> = (0..5)
            .map(|i| {
                file_info(
                    entity * 10 + i,
                    "f",
                    1,
                    Some(&format!("e{entity}")),
                    100 - i as i64,
                )
            })
            .collect();
        deleted.extend(
            session
                .plan(&batch, &params(&[("keep", "2")]))
                .unwrap()
                .into_iter()
                .map(|d| d.file),
        );
    }
    assert_eq!(deleted.len(), 20 * 3);
    assert!(deleted.contains(&192) && !deleted.contains(&191));
}
