//! Uploads files to an S3 endpoint through wharf's runtime and the bundled
//! `s3` plugin, one plugin call per file as a sync does, for
//! `benches/s3.sh`: `s3-upload --endpoint URL --bucket B --prefix P
//! --access-key K --secret-key S [--jobs N] PATH...` (directories are
//! walked). The files are hashed first, as the index already holds their
//! sha256; only the uploads are timed. Prints one line:
//! `uploaded FILES files, BYTES bytes in SECONDS s`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sha2::{Digest, Sha256};
use wharf::runtime::{CallFile, Credential, DestinationAccess, RemoteAccess, UploadTarget};

#[derive(Debug, Parser)]
#[command(about = "Uploads files to S3 through wharf's runtime and the bundled s3 plugin")]
struct Options {
    /// `http://host:port`, path style.
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    bucket: String,
    #[arg(long, default_value = "wharf")]
    prefix: String,
    #[arg(long)]
    access_key: String,
    #[arg(long)]
    secret_key: String,
    /// Uploads at once (a sync's `[sync] workers`; default half the cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Files or directories.
    paths: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let mut files = Vec::new();
    for path in &options.paths {
        walk(path, &mut files)?;
    }
    let files = files
        .into_iter()
        .map(|path| described(&path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = wharf::config::Config::default();
    let cache = tempfile::tempdir()?;
    let runtime = wharf::runtime::Runtime::new(config.runtime_config(cache.path()))?;
    let mut limits = config.plugin_limits();
    limits.timeout = Duration::from_secs(600);
    let source = wharf::plugins::bundled(limits)
        .into_iter()
        .find(|source| source.name == "s3")
        .context("the s3 plugin is not bundled")?;
    let plugin = runtime.load(source)?;
    let authority = options
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let target = UploadTarget {
        name: "bench".into(),
        url: format!(
            "{}/{}/{}",
            options.endpoint.trim_end_matches('/'),
            options.bucket,
            options.prefix
        ),
        access: DestinationAccess::Remote(RemoteAccess {
            allowed_hosts: vec![authority],
            credentials: BTreeMap::from([(
                "bench".to_owned(),
                Credential::SigV4 {
                    access_key_id: options.access_key.clone(),
                    secret_access_key: options.secret_key.clone(),
                    session_token: None,
                    region: "us-east-1".into(),
                    service: "s3".into(),
                },
            )]),
            tls_ca_pem: None,
        }),
    };
    let jobs = options
        .jobs
        .unwrap_or_else(|| config.jobs.worker_count())
        .max(1);
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = files.get(index) else {
                            return Ok(());
                        };
                        plugin
                            .upload(file, &target, &Vec::new())
                            .with_context(|| format!("uploading {}", file.path.display()))?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("an upload thread panicked"))??;
        }
        Ok(())
    })?;
    let bytes: u64 = files.iter().map(|file| file.size).sum();
    println!(
        "uploaded {} files, {bytes} bytes in {:.3} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn walk(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            walk(&entry, files)?;
        }
    } else {
        files.push(path.to_owned());
    }
    Ok(())
}

fn described(path: &Path) -> anyhow::Result<CallFile> {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok(CallFile {
        name: path.to_string_lossy().into_owned(),
        size,
        sha256: hex::encode(hasher.finalize()),
        kind: "capture".into(),
        created_ms: 0,
        modified_ms: 0,
        remote_copies: Vec::new(),
        path: path.to_owned(),
    })
}
