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

#[test]
fn an_ingest_killed_with_sigkill_loses_nothing_and_fsck_repair_plus_a_rerun_finish_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("wharf.toml"),
        "[ingest]\nfile_last_modified_ms = 0\n",
    )
    .unwrap();
    let source = dir.path().join("batch");
    std::fs::create_dir_all(&source).unwrap();
    let content = |i: usize| format!("frame {i} {}", "x".repeat(i % 2000)).into_bytes();
    const FILES: usize = 3000;
    for i in 0..FILES {
        std::fs::write(source.join(format!("{i:05}.bin")), content(i)).unwrap();
    }
    let wharf = env!("CARGO_BIN_EXE_wharf-under-test");
    let mut add = Command::new(wharf)
        .arg("--data-dir")
        .arg(&data)
        .arg("add")
        .arg(&source)
        .spawn()
        .unwrap();
    // Kill it as soon as it has placed something, mid-batch.
    let store = data.join("files/batch");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_dir(&store).map(|d| d.count()).unwrap_or(0) == 0
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    add.kill().unwrap();
    add.wait().unwrap();

    // Every file is in exactly one place, with its bytes.
    for i in 0..FILES {
        let name = format!("{i:05}.bin");
        let places: Vec<Vec<u8>> = [source.join(&name), store.join(&name)]
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .collect();
        assert_eq!(places, vec![content(i)], "{name}");
    }
    let repaired = fsck(&data, true);
    assert_eq!(
        repaired.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&repaired.stdout)
    );
    let rerun = Command::new(wharf)
        .arg("--data-dir")
        .arg(&data)
        .arg("add")
        .arg(&source)
        .output()
        .unwrap();
    assert_eq!(
        rerun.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );

    let index = Index::open(&data.join("index.sqlite")).unwrap();
    for i in 0..FILES {
        let row = index
            .file_by_path(&format!("files/batch/{i:05}.bin"))
            .unwrap()
            .unwrap();
        assert_eq!(row.sha256, sha256(&content(i)));
        assert_eq!(
            std::fs::read(store.join(format!("{i:05}.bin"))).unwrap(),
            content(i)
        );
    }
    assert_eq!(
        std::fs::read_dir(&source).unwrap().count(),
        0,
        "every source was moved in"
    );
    assert_eq!(fsck(&data, false).status.code(), Some(0));
}
