//! Ingest: `wharf add` and the inbox, on real files, a real index and the
//! real CLI binary; one test per bad input a user can hand it.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wharf::config::{Config, IngestConfig};
use wharf::daemon::{self, Signal};
use wharf::index::Index;
use wharf::ingest::{self, FileReport, IngestOptions, NoProgress, Outcome, Report};
use wharf::store::DataDir;

struct Fixture {
    dir: tempfile::TempDir,
    data: DataDir,
    index: Index,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        data.create().unwrap();
        let index = Index::open(&data.index_path()).unwrap();
        Fixture { dir, data, index }
    }

    /// A directory for sources, outside the data directory.
    fn sources(&self) -> PathBuf {
        let dir = self.dir.path().join("sources");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn add(&self, paths: &[&Path], options: &IngestOptions) -> Report {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        ingest::add(&self.data, &self.index, &paths, options, &NoProgress).unwrap()
    }

    fn indexed_sha256(&self, path: &str) -> Option<String> {
        self.index.file_by_path(path).unwrap().map(|row| row.sha256)
    }
}

fn options() -> IngestOptions {
    IngestOptions::new(&IngestConfig::default())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `content` to `path` with a modification time an hour ago, so the
/// default `file_last_modified_ms` takes it.
fn old_file(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap();
    age(path);
}

fn age(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

/// The one outcome for `source`.
fn outcome<'a>(report: &'a Report, source: &Path) -> &'a Outcome {
    let found: Vec<&FileReport> = report.files.iter().filter(|f| f.source == source).collect();
    assert_eq!(found.len(), 1, "{source:?} in {report:#?}");
    &found[0].outcome
}

fn failed_with(report: &Report, source: &Path, needle: &str) -> String {
    match outcome(report, source) {
        Outcome::Failed(reason) if reason.to_string().contains(needle) => reason.to_string(),
        other => panic!("{source:?}: expected a failure mentioning {needle:?}, got {other:?}"),
    }
}

fn skipped_with(report: &Report, source: &Path, needle: &str) -> String {
    match outcome(report, source) {
        Outcome::Skipped(skip) if skip.to_string().contains(needle) => skip.to_string(),
        other => panic!("{source:?}: expected a skip mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn a_file_is_moved_into_the_store_and_indexed_with_its_sha256() {
    let fx = Fixture::new();
    let source = fx.sources().join("a.bin");
    old_file(&source, b"hello");
    let report = fx.add(&[&source], &options());
    assert_eq!(
        outcome(&report, &source),
        &Outcome::Ingested {
            path: "files/a.bin".into(),
            size: 5,
            sha256: sha256(b"hello")
        }
    );
    assert!(!source.exists(), "moved, not copied");
    assert_eq!(
        std::fs::read(fx.data.root().join("files/a.bin")).unwrap(),
        b"hello"
    );
    let row = fx.index.file_by_path("files/a.bin").unwrap().unwrap();
    assert_eq!(
        (row.sha256, row.size, row.kind.as_str(), row.entity),
        (sha256(b"hello"), 5, "capture", None)
    );
}

#[test]
fn a_directory_keeps_its_layout_and_names_the_entity() {
    let fx = Fixture::new();
    let set = fx.sources().join("set1");
    std::fs::create_dir_all(set.join("deep")).unwrap();
    old_file(&set.join("a.bin"), b"a");
    old_file(&set.join("deep/b.bin"), b"b");
    let report = fx.add(&[&set], &options());
    assert_eq!(report.counts().ingested, 2, "{report:#?}");
    for path in ["files/set1/a.bin", "files/set1/deep/b.bin"] {
        let row = fx.index.file_by_path(path).unwrap().unwrap();
        assert_eq!(row.entity.as_deref(), Some("set1"), "{path}");
    }

    let other = fx.sources().join("other");
    std::fs::create_dir_all(&other).unwrap();
    old_file(&other.join("c.bin"), b"c");
    let mut named = options();
    named.entity = Some("project".into());
    named.kind = "export".into();
    fx.add(&[&other], &named);
    let row = fx.index.file_by_path("files/other/c.bin").unwrap().unwrap();
    assert_eq!(
        (row.entity.as_deref(), row.kind.as_str()),
        (Some("project"), "export")
    );
}

#[test]
fn an_empty_file_is_skipped_then_ingested_once_written_and_old_enough() {
    let fx = Fixture::new();
    let source = fx.sources().join("empty.bin");
    old_file(&source, b"");
    let report = fx.add(&[&source], &options());
    skipped_with(&report, &source, "empty (0 bytes)");
    assert!(source.exists(), "left where it is");
    assert_eq!(fx.indexed_sha256("files/empty.bin"), None);

    std::fs::write(&source, b"now with content").unwrap();
    let report = fx.add(&[&source], &options());
    skipped_with(&report, &source, "file_last_modified_ms");

    age(&source);
    let report = fx.add(&[&source], &options());
    assert!(
        matches!(outcome(&report, &source), Outcome::Ingested { .. }),
        "{report:#?}"
    );
    assert_eq!(
        fx.indexed_sha256("files/empty.bin"),
        Some(sha256(b"now with content"))
    );
}

#[test]
fn a_recently_modified_file_is_skipped_and_left_in_place() {
    let fx = Fixture::new();
    let source = fx.sources().join("fresh.bin");
    std::fs::write(&source, b"still being written").unwrap();
    let report = fx.add(&[&source], &options());
    let reason = skipped_with(&report, &source, "file_last_modified_ms = 10000");
    assert!(reason.contains("wharf add"), "says what to do: {reason}");
    assert!(source.exists());
    assert_eq!(report.counts().skipped, 1);

    let mut future = options();
    future.file_last_modified_ms = 0;
    let file = std::fs::File::options().write(true).open(&source).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    let report = fx.add(&[&source], &future);
    skipped_with(&report, &source, "in the future");
}

#[test]
fn a_file_over_max_file_size_bytes_is_rejected_naming_the_key() {
    let fx = Fixture::new();
    let source = fx.sources().join("big.bin");
    old_file(&source, &[7; 100]);
    let mut small = options();
    small.max_file_size_bytes = 99;
    let report = fx.add(&[&source], &small);
    let reason = failed_with(&report, &source, "max_file_size_bytes = 99");
    assert!(reason.contains("wharf.toml"), "says what to do: {reason}");
    assert!(source.exists());
}

#[test]
fn a_symlink_is_refused_and_its_target_left_alone() {
    let fx = Fixture::new();
    let dir = fx.sources().join("tree");
    std::fs::create_dir_all(&dir).unwrap();
    let target = fx.sources().join("target.bin");
    old_file(&target, b"target");
    let link = dir.join("link.bin");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dir_link = fx.sources().join("dir-link");
    std::os::unix::fs::symlink(&dir, &dir_link).unwrap();

    let report = fx.add(&[&link, &dir_link], &options());
    failed_with(&report, &link, "symbolic link");
    failed_with(&report, &dir_link, "symbolic link");
    // Found by the walk of a directory, too.
    let report = fx.add(&[&dir], &options());
    failed_with(&report, &link, "add the file it points to instead");
    assert_eq!(report.counts().ingested, 0, "{report:#?}");
    assert!(target.exists() && link.symlink_metadata().unwrap().file_type().is_symlink());
}

#[test]
fn an_unreadable_file_gets_a_clear_error_and_stays() {
    let fx = Fixture::new();
    let source = fx.sources().join("secret.bin");
    old_file(&source, b"secret");
    std::fs::set_permissions(&source, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    if std::fs::File::open(&source).is_err() {
        let report = fx.add(&[&source], &options());
        failed_with(&report, &source, "read permission");
        assert!(source.exists());
    } else {
        // Running as root (CAP_DAC_OVERRIDE), mode 000 is still readable, and
        // no plain file can be made unreadable to root. A FIFO stands in: an
        // entry wharf cannot read as data (opening it would block forever).
        // This checks the clear error, not the permission-denied path.
        let fifo = fx.sources().join("fifo");
        let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        let report = fx.add(&[&fifo], &options());
        failed_with(&report, &fifo, "not a regular file");
        assert!(fifo.exists());
        let report = fx.add(&[&source], &options());
        assert!(
            matches!(outcome(&report, &source), Outcome::Ingested { .. }),
            "root reads mode 000"
        );
    }
}

#[test]
fn a_name_that_is_not_utf8_is_refused() {
    let fx = Fixture::new();
    let dir = fx.sources().join("names");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join(OsStr::from_bytes(b"caf\xe9.bin"));
    old_file(&bad, b"latin-1 name");
    let report = fx.add(&[&bad], &options());
    failed_with(&report, &bad, "not valid UTF-8");
    let report = fx.add(&[&dir], &options());
    failed_with(&report, &bad, "rename it");
    assert!(bad.exists());
}

#[test]
fn a_name_the_index_cannot_hold_is_refused_and_nothing_leaves_the_store() {
    let fx = Fixture::new();
    let dir = fx.sources().join("odd");
    std::fs::create_dir_all(&dir).unwrap();
    // A backslash would make a path that means something else elsewhere.
    let odd = dir.join("a\\b.bin");
    old_file(&odd, b"odd");
    let report = fx.add(&[&dir], &options());
    let reason = failed_with(&report, &odd, "cannot be stored");
    assert!(reason.contains("rename it"), "{reason}");
    assert!(odd.exists());
    assert_eq!(std::fs::read_dir(fx.data.files_dir()).unwrap().count(), 0);
}

#[test]
fn a_cancelled_run_leaves_every_file_where_it_is() {
    let fx = Fixture::new();
    let source = fx.sources().join("a.bin");
    old_file(&source, b"a");
    let cancelled = options();
    cancelled
        .cancel
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let report = fx.add(&[&source], &cancelled);
    skipped_with(&report, &source, "interrupted");
    assert!(source.exists());
    assert_eq!(fx.indexed_sha256("files/a.bin"), None);
}

#[test]
fn paths_inside_the_data_directory_internals_are_refused_but_the_inbox_is_taken() {
    let fx = Fixture::new();
    let stored = fx.data.files_dir().join("tracked.bin");
    old_file(&stored, b"tracked");
    let tmp = fx.data.tmp_dir().join("work.part");
    old_file(&tmp, b"work");
    let index_file = fx.data.index_path();
    let inboxed = fx.data.inbox_dir().join("dropped.bin");
    old_file(&inboxed, b"dropped");

    let report = fx.add(
        &[
            &stored,
            &tmp,
            &index_file,
            &fx.data.files_dir(),
            fx.data.root(),
            &inboxed,
        ],
        &options(),
    );
    failed_with(&report, &stored, "data directory's own files/");
    failed_with(&report, &tmp, "tmp/");
    failed_with(&report, &index_file, "index.sqlite");
    failed_with(&report, &fx.data.files_dir(), "files/");
    failed_with(&report, fx.data.root(), "data directory");
    assert!(
        matches!(outcome(&report, &inboxed), Outcome::Ingested { path, .. } if path == "files/dropped.bin")
    );
    assert!(stored.exists() && tmp.exists());

    // A tree that contains the data directory: everything but it is taken.
    let parent = fx.dir.path();
    old_file(&parent.join("beside.bin"), b"beside");
    let report = fx.add(&[parent], &options());
    failed_with(&report, fx.data.root(), "data directory");
    let name = parent.file_name().unwrap().to_str().unwrap();
    assert!(
        fx.indexed_sha256(&format!("files/{name}/beside.bin"))
            .is_some(),
        "{report:#?}"
    );
    assert_eq!(
        fx.indexed_sha256(&format!("files/{name}/data/files/tracked.bin")),
        None
    );
}

#[test]
fn one_bad_file_never_stops_the_batch() {
    let fx = Fixture::new();
    let dir = fx.sources().join("mixed");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..20 {
        old_file(
            &dir.join(format!("good-{i:02}.bin")),
            format!("good {i}").as_bytes(),
        );
    }
    old_file(&dir.join("empty.bin"), b"");
    std::fs::write(dir.join("fresh.bin"), b"fresh").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("link.bin")).unwrap();
    old_file(&dir.join(OsStr::from_bytes(b"bad\xff.bin")), b"bad name");
    assert!(
        Command::new("mkfifo")
            .arg(dir.join("pipe"))
            .status()
            .unwrap()
            .success()
    );
    let missing = fx.sources().join("missing.bin");

    let report = fx.add(&[&missing, &dir], &options());
    failed_with(&report, &missing, "does not exist");
    let counts = report.counts();
    assert_eq!(
        (counts.ingested, counts.skipped, counts.failed),
        (20, 2, 4),
        "{report:#?}"
    );
    for i in 0..20 {
        let path = format!("files/mixed/good-{i:02}.bin");
        assert_eq!(
            fx.indexed_sha256(&path),
            Some(sha256(format!("good {i}").as_bytes()))
        );
    }
}

#[test]
fn a_file_changed_while_being_hashed_is_not_indexed_with_a_wrong_hash() {
    let fx = Fixture::new();
    let source = fx.sources().join("growing.bin");
    let first = vec![1u8; 3 << 20];
    old_file(&source, &first);
    for copy in [false, true] {
        let mut racing = options();
        racing.always_copy = copy;
        // Appends between the hash and the re-check, as a writer that had not
        // finished would; then puts the old mtime back so only the size and
        // ctime tell.
        racing.before_recheck = Some(Arc::new(|path: &Path| {
            let mut file = std::fs::File::options().append(true).open(path).unwrap();
            file.write_all(b"late bytes").unwrap();
            file.set_modified(SystemTime::now() - Duration::from_secs(3600))
                .unwrap();
        }));
        let report = fx.add(&[&source], &racing);
        skipped_with(&report, &source, "changed while it was being read");
        assert_eq!(fx.indexed_sha256("files/growing.bin"), None);
        assert!(!fx.data.files_dir().join("growing.bin").exists());
        assert_eq!(
            std::fs::read_dir(fx.data.tmp_dir()).unwrap().count(),
            0,
            "no copy left in tmp/"
        );
    }
    let now = std::fs::read(&source).unwrap();
    assert_eq!(now.len(), first.len() + 2 * b"late bytes".len());

    let report = fx.add(&[&source], &options());
    assert!(
        matches!(outcome(&report, &source), Outcome::Ingested { .. }),
        "{report:#?}"
    );
    assert_eq!(fx.indexed_sha256("files/growing.bin"), Some(sha256(&now)));
}

#[test]
fn a_duplicate_is_reported_and_a_name_clash_names_both_paths() {
    let fx = Fixture::new();
    let first = fx.sources().join("a.bin");
    old_file(&first, b"same");
    fx.add(&[&first], &options());

    let again_dir = fx.sources().join("again");
    std::fs::create_dir_all(&again_dir).unwrap();
    let again = again_dir.join("a.bin");
    old_file(&again, b"same");
    let report = fx.add(&[&again], &options());
    assert_eq!(
        outcome(&report, &again),
        &Outcome::Duplicate {
            path: "files/a.bin".into()
        }
    );
    assert!(again.exists(), "a duplicate's source is left alone");

    old_file(&again, b"different");
    let report = fx.add(&[&again], &options());
    let reason = failed_with(&report, &again, "files/a.bin");
    assert!(
        reason.contains("different file") && reason.contains("rename"),
        "{reason}"
    );
    assert_eq!(
        report.files[0].to_string(),
        format!("{}: {reason}", again.display())
    );
    assert!(again.exists());
    assert_eq!(
        std::fs::read(fx.data.files_dir().join("a.bin")).unwrap(),
        b"same",
        "never overwritten"
    );

    // Two sources of one run aiming at one name: the second is refused.
    let other_dir = fx.sources().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let (x1, x2) = (again_dir.join("x.bin"), other_dir.join("x.bin"));
    old_file(&x1, b"x1");
    old_file(&x2, b"x2");
    let report = fx.add(&[&x1, &x2], &options());
    assert!(matches!(outcome(&report, &x1), Outcome::Ingested { .. }));
    failed_with(&report, &x2, "also goes to files/x.bin");
}

/// The filesystem a path is on.
fn device(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().dev()
}

#[test]
fn a_source_on_another_filesystem_is_copied_through_tmp_and_removed_after_the_commit() {
    let fx = Fixture::new();
    let content: Vec<u8> = (0..(5 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let shm = Path::new("/dev/shm");
    let (source_dir, mut copying) = if shm.is_dir() && device(shm) != device(fx.dir.path()) {
        (tempfile::tempdir_in(shm).unwrap(), options())
    } else {
        // No second filesystem here: force the copy path instead.
        eprintln!("/dev/shm is not another filesystem; exercising the copy path with always_copy");
        let mut forced = options();
        forced.always_copy = true;
        (tempfile::tempdir_in(fx.dir.path()).unwrap(), forced)
    };
    let source = source_dir.path().join("remote.bin");
    old_file(&source, &content);
    let source_mtime = std::fs::metadata(&source).unwrap();
    // While the copy is being finished, the store has nothing under the name
    // yet and the source is intact: a crash here loses nothing.
    let files_dir = fx.data.files_dir();
    copying.before_recheck = Some(Arc::new(move |path: &Path| {
        assert!(path.exists());
        assert!(!files_dir.join("remote.bin").exists());
    }));
    let report = fx.add(&[&source], &copying);
    assert!(
        matches!(outcome(&report, &source), Outcome::Ingested { .. }),
        "{report:#?}"
    );
    assert!(!source.exists(), "removed once indexed");
    assert_eq!(
        std::fs::read(fx.data.files_dir().join("remote.bin")).unwrap(),
        content
    );
    assert_eq!(
        fx.indexed_sha256("files/remote.bin"),
        Some(sha256(&content))
    );
    // Like `mv` across filesystems, the copy keeps the source's modification
    // time: it never looks like a file still being written.
    let stored = std::fs::metadata(fx.data.files_dir().join("remote.bin")).unwrap();
    assert_eq!(
        (stored.mtime(), stored.mtime_nsec()),
        (source_mtime.mtime(), source_mtime.mtime_nsec())
    );
    assert_eq!(std::fs::read_dir(fx.data.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn files_already_in_the_store_are_indexed_in_place() {
    let fx = Fixture::new();
    let set = fx.data.files_dir().join("set9");
    std::fs::create_dir_all(&set).unwrap();
    old_file(&set.join("orphan.bin"), b"orphan");
    old_file(&fx.data.files_dir().join("top.bin"), b"top");
    let paths = [
        "files/set9/orphan.bin".to_string(),
        "files/top.bin".into(),
        "tmp/nope".into(),
        "files/missing".into(),
    ];
    let report = ingest::index_in_place(&fx.data, &fx.index, &paths, &options()).unwrap();
    assert_eq!(report.counts().ingested, 2, "{report:#?}");
    assert_eq!(report.counts().failed, 2, "{report:#?}");
    let row = fx
        .index
        .file_by_path("files/set9/orphan.bin")
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.sha256, row.entity.as_deref()),
        (sha256(b"orphan"), Some("set9"))
    );
    assert!(set.join("orphan.bin").exists(), "not moved");
}

#[test]
fn the_daemon_ingests_what_is_dropped_into_the_inbox() {
    let fx = Fixture::new();
    let Fixture {
        dir: _dir,
        data,
        index,
    } = fx;
    drop(index);
    let mut config = Config::default();
    config.ingest.scan_interval_ms = 100;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (signals, receiver) = tokio::sync::mpsc::channel(1);
    let daemon = tokio.spawn(daemon::run(data.clone(), config, receiver));

    // Written outside, aged, then renamed in: a complete file appears at once.
    let stage = data.root().join("../stage");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::create_dir_all(data.inbox_dir().join("set1")).unwrap();
    old_file(&stage.join("a.bin"), b"inbox a");
    old_file(&stage.join("top.bin"), b"inbox top");
    std::fs::rename(stage.join("a.bin"), data.inbox_dir().join("set1/a.bin")).unwrap();
    std::fs::rename(stage.join("top.bin"), data.inbox_dir().join("top.bin")).unwrap();
    // Still being written: stays in the inbox.
    std::fs::write(data.inbox_dir().join("fresh.bin"), b"fresh").unwrap();

    let index = Index::open(&data.index_path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while index.file_by_path("files/top.bin").unwrap().is_none()
        || index.file_by_path("files/set1/a.bin").unwrap().is_none()
    {
        assert!(Instant::now() < deadline, "the inbox was not ingested");
        std::thread::sleep(Duration::from_millis(20));
    }
    tokio.block_on(signals.send(Signal::Shutdown)).unwrap();
    tokio.block_on(daemon).unwrap().unwrap();

    let row = index.file_by_path("files/set1/a.bin").unwrap().unwrap();
    assert_eq!(
        (row.entity.as_deref(), row.sha256),
        (Some("set1"), sha256(b"inbox a"))
    );
    assert_eq!(
        index.file_by_path("files/top.bin").unwrap().unwrap().entity,
        None
    );
    assert!(!data.inbox_dir().join("set1/a.bin").exists());
    assert!(
        data.inbox_dir().join("fresh.bin").exists(),
        "a fresh file waits"
    );
    assert_eq!(index.file_by_path("files/fresh.bin").unwrap(), None);
}

#[test]
fn wharf_add_exits_0_when_all_is_ingested_1_when_some_is_not_and_2_on_error() {
    let fx = Fixture::new();
    let run = |args: &[&OsStr]| {
        let output = Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
            .arg("--data-dir")
            .arg(fx.data.root())
            .arg("add")
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), text)
    };
    let good = fx.sources().join("good.bin");
    old_file(&good, b"good");
    let (code, text) = run(&[good.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ingested 1 file(s)"), "{text}");

    let fresh = fx.sources().join("fresh.bin");
    std::fs::write(&fresh, b"fresh").unwrap();
    let other = fx.sources().join("other.bin");
    old_file(&other, b"other");
    let (code, text) = run(&[fresh.as_os_str(), other.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("skipped:") && text.contains("file_last_modified_ms"),
        "{text}"
    );
    assert!(
        fx.index.file_by_path("files/other.bin").unwrap().is_some(),
        "the rest was done"
    );

    std::fs::write(fx.data.config_path(), "[ingest]\nmax_file_size_bytes = 0\n").unwrap();
    let (code, text) = run(&[other.as_os_str()]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("ingest.max_file_size_bytes"), "{text}");
}

/// Index paths of the tracked files under `prefix`, with their sha256.
fn tracked_under(index: &Index, prefix: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    index
        .for_each_file(|row| {
            if row.path.starts_with(prefix) {
                found.push((row.path, row.sha256));
            }
            Ok(())
        })
        .unwrap();
    found
}

fn tmp_names(data: &DataDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.tmp_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_run_stopped_between_placing_and_committing_is_finished_by_the_next_run() {
    for copy in [false, true] {
        let fx = Fixture::new();
        let dir = fx.sources().join("set");
        std::fs::create_dir_all(&dir).unwrap();
        let content = |i: usize| format!("file {i} of the batch").into_bytes();
        for i in 0..10 {
            old_file(&dir.join(format!("{i}.bin")), &content(i));
        }
        let mut ingesting = options();
        ingesting.always_copy = copy;
        // Stops the run like a kill once four files are in the store and
        // none of them is committed (one hand-off, one batch).
        let mut stopping = ingesting.clone();
        stopping.hash_threads = 1;
        let placed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        stopping.after_place = Some(Arc::new(move |_: &Path| {
            if placed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 3 {
                panic!("stopped after placing 4 files, as a kill would");
            }
        }));
        let stopped =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fx.add(&[&dir], &stopping)));
        assert!(stopped.is_err(), "the run was stopped");
        let in_store = std::fs::read_dir(fx.data.files_dir().join("set"))
            .unwrap()
            .count();
        assert_eq!(in_store, 4, "copy: {copy}");
        assert!(tracked_under(&fx.index, "files/set/").is_empty());
        assert!(
            tmp_names(&fx.data).iter().any(|n| n.ends_with(".journal")),
            "{:?}",
            tmp_names(&fx.data)
        );

        // One plain rerun of the same command finishes everything.
        let report = fx.add(&[&dir], &ingesting);
        assert_eq!(report.recovered.indexed.len(), 4, "copy: {copy}");
        assert_eq!(
            report.counts().failed + report.counts().skipped,
            0,
            "{report:#?}"
        );
        // A copy's source was still there: the rerun found its commit and
        // removed it, so it counts as ingested now.
        let expected = if copy { 10 } else { 6 };
        assert_eq!(report.counts().ingested, expected, "{report:#?}");
        let mut tracked = tracked_under(&fx.index, "files/set/");
        tracked.sort();
        let mut wanted: Vec<(String, String)> = (0..10)
            .map(|i| (format!("files/set/{i}.bin"), sha256(&content(i))))
            .collect();
        wanted.sort();
        assert_eq!(tracked, wanted, "copy: {copy}");
        for i in 0..10 {
            let stored = fx.data.files_dir().join(format!("set/{i}.bin"));
            assert_eq!(std::fs::read(stored).unwrap(), content(i));
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "sources gone");
        assert_eq!(tmp_names(&fx.data), Vec::<String>::new(), "tmp/ is empty");
    }
}

#[test]
fn an_interrupted_move_is_finished_from_its_destination_without_a_journal() {
    for copy in [false, true] {
        let fx = Fixture::new();
        let dir = fx.sources().join("set");
        std::fs::create_dir_all(&dir).unwrap();
        let store = fx.data.files_dir().join("set");
        std::fs::create_dir_all(&store).unwrap();

        // Placed, not committed: the source's bytes in the store, untracked.
        let placed = dir.join("placed.bin");
        old_file(&placed, b"placed bytes");
        std::fs::copy(&placed, store.join("placed.bin")).unwrap();
        // Committed, the copied source not removed yet: tracked with the
        // source's sha256, size and modification time.
        let committed = dir.join("committed.bin");
        old_file(&committed, b"committed bytes");
        std::fs::copy(&committed, store.join("committed.bin")).unwrap();
        let mtime = std::fs::metadata(&committed).unwrap().modified().unwrap();
        let mtime_ms = mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        fx.index
            .insert_files(&[wharf::index::NewFile {
                path: "files/set/committed.bin".into(),
                size: 15,
                mtime_ms,
                sha256: sha256(b"committed bytes"),
                kind: "capture".into(),
                entity: Some("set".into()),
                created_ms: 0,
            }])
            .unwrap();
        // Something else of the same size sits untracked where it goes.
        let clash = dir.join("clash.bin");
        old_file(&clash, b"clash A");
        std::fs::write(store.join("clash.bin"), b"clash B").unwrap();

        let mut ingesting = options();
        ingesting.always_copy = copy;
        let report = fx.add(&[&dir], &ingesting);
        for (source, path, bytes) in [
            (&placed, "files/set/placed.bin", &b"placed bytes"[..]),
            (&committed, "files/set/committed.bin", b"committed bytes"),
        ] {
            assert!(
                matches!(outcome(&report, source), Outcome::Ingested { path: p, .. } if p == path),
                "copy: {copy}: {report:#?}"
            );
            assert!(!source.exists(), "{source:?}: the move is finished");
            assert_eq!(fx.indexed_sha256(path), Some(sha256(bytes)));
        }
        let reason = failed_with(&report, &clash, "not indexed is already there");
        assert!(reason.contains("wharf fsck --repair"), "{reason}");
        assert_eq!(std::fs::read(&clash).unwrap(), b"clash A");
        assert_eq!(std::fs::read(store.join("clash.bin")).unwrap(), b"clash B");
        assert_eq!(fx.indexed_sha256("files/set/clash.bin"), None);
        assert_eq!(tmp_names(&fx.data), Vec::<String>::new(), "tmp/ is empty");
        // A run that places nothing leaves nothing in tmp/ either.
        let report = fx.add(&[&dir], &ingesting);
        failed_with(&report, &clash, "not indexed is already there");
        assert_eq!(report.files.len(), 1, "{report:#?}");
        assert_eq!(tmp_names(&fx.data), Vec::<String>::new(), "tmp/ is empty");
    }
}

/// Runs the `wharf` binary on a data directory, returning (exit code, stdout + stderr).
fn wharf(data: &Path, args: &[&OsStr]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn a_killed_copys_leftover_is_removed_by_the_next_add_never_a_live_runs_and_status_counts_it() {
    let fx = Fixture::new();
    let data = fx.data.root();
    let tmp = fx.data.tmp_dir();
    let leftover = tmp.join("ingest.4242.7.filesa.bin.part");
    old_file(&leftover, &[1; 1000]);
    // Another writer's partial file (an export's output): never ingest's to remove.
    let export_part = tmp.join("4242.8.0badf00d.tar-export.part");
    old_file(&export_part, b"export");
    let (code, text) = wharf(data, &["status".as_ref()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("tmp: 2 partial file(s) (1006 B), 1 of them ingest copies"),
        "{text}"
    );

    // While another ingest run is alive (it holds tmp/ shared), what is in
    // tmp/ may be its work in progress: nothing is removed.
    let live = std::fs::File::open(&tmp).unwrap();
    live.lock_shared().unwrap();
    let a = fx.sources().join("a.bin");
    old_file(&a, b"a");
    let (code, text) = wharf(data, &["add".as_ref(), a.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(leftover.exists(), "a live run's copy stays: {text}");
    drop(live);

    let b = fx.sources().join("b.bin");
    old_file(&b, b"b");
    let (code, text) = wharf(data, &["add".as_ref(), b.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("removed 1 copy(ies)") && text.contains("(1000 B)"),
        "{text}"
    );
    assert!(!leftover.exists());
    assert!(
        export_part.exists(),
        "other writers' files are left to orphan GC"
    );
    let (_, text) = wharf(data, &["status".as_ref()]);
    assert!(
        text.contains("tmp: 1 partial file(s) (6 B), 0 of them ingest copies"),
        "{text}"
    );
    std::fs::remove_file(&export_part).unwrap();
    let (_, text) = wharf(data, &["status".as_ref()]);
    assert!(text.contains("tmp: no partial files"), "{text}");
}

/// The content of file `i` of a crash test batch: `size(i)` bytes that
/// differ from file to file.
fn batch_content(i: usize, size: usize) -> Vec<u8> {
    let seed = format!("file {i} ");
    seed.bytes().cycle().take(size.max(seed.len())).collect()
}

/// `wharf add SOURCES` killed with SIGKILL at many moments (right after its
/// start, after one file, then after each eighth of what is left),
/// each kill followed at once by the next run; then ONE plain rerun of the
/// same command, with no wait and no other step, must leave every file
/// stored once with its bytes, its source gone, the index and `wharf fsck`
/// clean and `tmp/` empty. Between kills, every file is in its source or
/// the store (or both, for a copy), with its bytes; with `copies`, some
/// kill must have left a placed copy beside its source.
fn killed_at_many_moments_then_one_rerun(
    sources_parent: &Path,
    contents: &[Vec<u8>],
    copies: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let source = sources_parent.join("batch");
    std::fs::create_dir_all(&source).unwrap();
    let name = |i: usize| format!("{i:05}.bin");
    for (i, content) in contents.iter().enumerate() {
        old_file(&source.join(name(i)), content);
    }
    let store = data.join("files/batch");
    let stored = || std::fs::read_dir(&store).map_or(0, |d| d.count());
    // How many files are in both places: a copy placed, its source not yet removed.
    let every_file_is_somewhere = |moment: &str| {
        let mut both = 0;
        for (i, content) in contents.iter().enumerate() {
            let places: Vec<Vec<u8>> = [source.join(name(i)), store.join(name(i))]
                .iter()
                .filter_map(|p| std::fs::read(p).ok())
                .collect();
            assert!(
                !places.is_empty() && places.iter().all(|p| p == content),
                "{moment}: {} is in {} place(s) or changed",
                name(i),
                places.len()
            );
            both += usize::from(places.len() == 2);
        }
        both
    };
    let add = || {
        Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
            .arg("--data-dir")
            .arg(&data)
            .arg("add")
            .arg(&source)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let total = contents.len();
    let mut mid_batch = 0;
    let mut left_in_both_places = 0;
    // Killed right after its start, after one more file stored, then after
    // an eighth of what is left: every kill leaves work for the next run,
    // however late it lands.
    for round in 0..10 {
        let advance = match round {
            0 => 0,
            1 => 1,
            _ => ((total - stored()) / 8).max(1),
        };
        let target = stored() + advance;
        let mut run = add();
        let deadline = Instant::now() + Duration::from_secs(60);
        while stored() < target && run.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "no progress towards {target} files"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        run.kill().unwrap();
        run.wait().unwrap();
        let now = stored();
        if 0 < now && now < total {
            mid_batch += 1;
        }
        let both = every_file_is_somewhere(&format!("killed at {target} stored"));
        eprintln!(
            "killed at {target} stored: {now} stored, {both} also at their source, tmp/ {:?}",
            std::fs::read_dir(data.join("tmp")).map_or(0, |d| d.count())
        );
        left_in_both_places += both;
    }
    assert!(mid_batch >= 3, "only {mid_batch} kill(s) landed mid-batch");
    if copies {
        assert!(
            left_in_both_places > 0,
            "no kill left a copy placed with its source still there"
        );
    }

    assert!(
        std::fs::read_dir(&source).unwrap().count() > 0,
        "the last kill left work for the rerun"
    );
    let rerun = Command::new(env!("CARGO_BIN_EXE_wharf-under-test"))
        .arg("--data-dir")
        .arg(&data)
        .arg("add")
        .arg(&source)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&rerun.stderr);
    assert_eq!(rerun.status.code(), Some(0), "{text}");

    let data_dir = DataDir::new(&data);
    let index = Index::open(&data_dir.index_path()).unwrap();
    let mut tracked = tracked_under(&index, "files/");
    tracked.sort();
    let wanted: Vec<(String, String)> = contents
        .iter()
        .enumerate()
        .map(|(i, content)| (format!("files/batch/{}", name(i)), sha256(content)))
        .collect();
    assert_eq!(tracked, wanted, "every file indexed once: {text}");
    for (i, content) in contents.iter().enumerate() {
        assert_eq!(&std::fs::read(store.join(name(i))).unwrap(), content);
    }
    assert_eq!(stored(), total, "nothing else in the store");
    assert_eq!(
        std::fs::read_dir(&source).unwrap().count(),
        0,
        "every source is gone"
    );
    assert_eq!(tmp_names(&data_dir), Vec::<String>::new(), "tmp/ is empty");
    let (code, text) = wharf(&data, &["fsck".as_ref()]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn an_add_killed_at_any_moment_on_the_rename_path_is_finished_by_one_plain_rerun() {
    // Many small files: the run is mostly renames and batched commits.
    let contents: Vec<Vec<u8>> = (0..3000).map(|i| batch_content(i, 64 + i % 2000)).collect();
    let sources = tempfile::tempdir().unwrap();
    killed_at_many_moments_then_one_rerun(sources.path(), &contents, false);
}

#[test]
fn an_add_killed_at_any_moment_on_the_copy_path_is_finished_by_one_plain_rerun() {
    // Sources on a tmpfs, the data directory on the disk: every file is
    // copied into tmp/, placed, committed, then its source removed.
    let shm = Path::new("/dev/shm");
    let disk = std::env::temp_dir();
    if !shm.is_dir() || device(shm) == device(&disk) {
        eprintln!(
            "skipped: /dev/shm is not a filesystem apart from {}, so this machine has no second \
             filesystem to copy across (the copy path is still exercised with always_copy by the \
             other ingest tests)",
            disk.display()
        );
        return;
    }
    // About 20 MB: well within the 64 MB a container's /dev/shm often has.
    let contents: Vec<Vec<u8>> = (0..500)
        .map(|i| batch_content(i, (8 << 10) + (i * 7919) % (64 << 10)))
        .collect();
    let sources = tempfile::tempdir_in(shm).unwrap();
    killed_at_many_moments_then_one_rerun(sources.path(), &contents, true);
}
