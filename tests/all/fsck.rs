//! `wharf fsck` on each inconsistency between the index and the disk, run as
//! the real binary.

use std::path::Path;
use std::process::{Command, Output};

use wharf::index::{FileState, Index, NewFile};
use wharf::store::DataDir;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn fsck(data: &Path, repair: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf-under-test"));
    command.arg("--data-dir").arg(data).arg("fsck");
    if repair {
        command.arg("--repair");
    }
    command.output().unwrap()
}

/// A data dir with `files/set/<name>` tracked for each (name, content).
fn tracked(dir: &Path, files: &[(&str, &[u8])]) -> (DataDir, Index) {
    let data = DataDir::new(dir.join("data"));
    data.create().unwrap();
    let index = Index::open(&data.index_path()).unwrap();
    std::fs::create_dir_all(data.files_dir().join("set")).unwrap();
    let rows: Vec<NewFile> = files
        .iter()
        .map(|(name, content)| {
            std::fs::write(data.files_dir().join("set").join(name), content).unwrap();
            NewFile {
                path: format!("files/set/{name}"),
                size: content.len() as u64,
                mtime_ms: 0,
                sha256: sha256(content),
                kind: "capture".into(),
                entity: Some("set".into()),
                created_ms: 0,
            }
        })
        .collect();
    index.insert_files(&rows).unwrap();
    (data, index)
}

fn state(index: &Index, path: &str) -> FileState {
    index.file_by_path(path).unwrap().unwrap().state
}

#[test]
fn a_consistent_store_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _index) = tracked(dir.path(), &[("a", b"alpha"), ("b", b"beta")]);
    let output = fsck(data.root(), false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("checked 2 files: 0 lost, 0 corrupt, 0 untracked"),
        "{stdout}"
    );
}

#[test]
fn missing_files_become_lost_and_changed_files_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = tracked(
        dir.path(),
        &[
            ("gone", b"1"),
            ("same-size", b"abc"),
            ("grown", b"xy"),
            ("fine", b"ok"),
        ],
    );
    std::fs::remove_file(data.files_dir().join("set/gone")).unwrap();
    std::fs::write(data.files_dir().join("set/same-size"), b"abd").unwrap();
    std::fs::write(data.files_dir().join("set/grown"), b"xyz").unwrap();
    let output = fsck(data.root(), false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("lost       files/set/gone"), "{stdout}");
    assert!(
        stdout.contains("corrupt    files/set/same-size"),
        "{stdout}"
    );
    assert_eq!(state(&index, "files/set/gone"), FileState::Lost);
    assert_eq!(state(&index, "files/set/same-size"), FileState::Corrupt);
    assert_eq!(state(&index, "files/set/grown"), FileState::Corrupt);
    assert_eq!(state(&index, "files/set/fine"), FileState::Ready);
    // Nothing was deleted or rewritten on disk.
    assert_eq!(
        std::fs::read(data.files_dir().join("set/same-size")).unwrap(),
        b"abd"
    );
    // The problems remain until someone acts: a second run still fails.
    assert_eq!(fsck(data.root(), true).status.code(), Some(1));
}

#[test]
fn a_lost_file_that_comes_back_intact_is_ready_again() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = tracked(dir.path(), &[("a", b"alpha")]);
    let path = data.files_dir().join("set/a");
    std::fs::rename(&path, dir.path().join("aside")).unwrap();
    assert_eq!(fsck(data.root(), false).status.code(), Some(1));
    assert_eq!(state(&index, "files/set/a"), FileState::Lost);
    std::fs::rename(dir.path().join("aside"), &path).unwrap();
    let output = fsck(data.root(), false);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(state(&index, "files/set/a"), FileState::Ready);
}

#[test]
fn a_crash_between_moving_a_file_in_and_committing_its_row_loses_nothing() {
    // This is the state an ingest killed after its rename and before its
    // commit leaves: the file in place under files/, no row.
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = tracked(dir.path(), &[("a", b"alpha")]);
    std::fs::create_dir_all(data.files_dir().join("cam1")).unwrap();
    let frame = data.files_dir().join("cam1/frame.bin");
    std::fs::write(&frame, b"captured bytes").unwrap();
    // Written a minute ago, as a crashed ingest would have left it.
    let a_minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&frame)
        .unwrap()
        .set_modified(a_minute_ago)
        .unwrap();
    let output = fsck(data.root(), false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("untracked  files/cam1/frame.bin"),
        "{stdout}"
    );
    assert!(
        index
            .file_by_path("files/cam1/frame.bin")
            .unwrap()
            .is_none(),
        "reporting changes nothing"
    );

    let output = fsck(data.root(), true);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("indexed    files/cam1/frame.bin"),
        "{stdout}"
    );
    let row = index.file_by_path("files/cam1/frame.bin").unwrap().unwrap();
    assert_eq!(row.sha256, sha256(b"captured bytes"));
    assert_eq!(row.entity.as_deref(), Some("cam1"));
    assert_eq!(fsck(data.root(), false).status.code(), Some(0));
}

#[test]
fn symlinks_in_the_store_are_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (data, index) = tracked(dir.path(), &[("a", b"alpha")]);
    std::os::unix::fs::symlink("/etc/passwd", data.files_dir().join("set/link")).unwrap();
    let output = fsck(data.root(), true);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("files/set/link: not a regular file"),
        "{stdout}"
    );
    assert!(index.file_by_path("files/set/link").unwrap().is_none());
}

#[test]
fn fsck_without_an_index_says_to_run_init() {
    let dir = tempfile::tempdir().unwrap();
    let output = fsck(dir.path(), false);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("run `wharf init` first"));
}
