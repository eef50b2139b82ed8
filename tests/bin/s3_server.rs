//! A real S3 server on 127.0.0.1 for the `s3` tests, and for trying an S3
//! destination by hand: s3s-fs (objects as files under `--root`, one
//! directory per bucket) behind s3s's SigV4 authentication, so a request
//! signed with any other key or secret is refused as S3 refuses it, and a
//! request to a bucket that does not exist is `NoSuchBucket` (s3s-fs alone
//! would create the directory on a PUT).
//!
//! `s3-server --root DIR --access-key KEY --secret-key SECRET [--port N]
//! [--bucket NAME]...` creates the buckets, then prints
//! `listening on http://127.0.0.1:PORT` (port 0, the default, picks a free
//! one) and serves path-style requests until killed.

use std::path::PathBuf;

use clap::Parser;
use hyper_util::rt::TokioIo;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};

#[derive(Debug, Parser)]
#[command(about = "An S3 server (s3s-fs) on 127.0.0.1 with SigV4 authentication")]
struct Options {
    /// Directory holding the buckets (one directory each).
    #[arg(long)]
    root: PathBuf,
    /// The only access key id accepted.
    #[arg(long)]
    access_key: String,
    /// Its secret access key.
    #[arg(long)]
    secret_key: String,
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Buckets to create at start.
    #[arg(long)]
    bucket: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    for bucket in &options.bucket {
        std::fs::create_dir_all(options.root.join(bucket))?;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(options))
}

async fn serve(options: Options) -> anyhow::Result<()> {
    let store = s3s_fs::FileSystem::new(&options.root)
        .map_err(|err| anyhow::anyhow!("cannot serve {}: {err:?}", options.root.display()))?;
    let mut builder = S3ServiceBuilder::new(store);
    builder.set_auth(SimpleAuth::from_single(
        options.access_key,
        options.secret_key,
    ));
    builder.set_access(Buckets {
        root: options.root.clone(),
    });
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            // A connection the client drops mid-request just ends.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// Signed requests only, to buckets that exist (as S3 does).
struct Buckets {
    root: PathBuf,
}

#[async_trait::async_trait]
impl S3Access for Buckets {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "Signed requests only"));
        }
        let bucket = match cx.s3_path() {
            S3Path::Root => return Ok(()),
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket,
        };
        let creating = cx.s3_op().name() == "CreateBucket";
        if !creating && !self.root.join(&**bucket).is_dir() {
            return Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            ));
        }
        Ok(())
    }
}
