//! A hostile exporter for the sandbox tests. Each `mode` attacks the host in
//! one way; `ok` behaves, so a test can check the host still serves calls.

use std::sync::atomic::{AtomicU64, Ordering};

use wharf_sdk::{
    EntityInfo, ExportResult, Exporter, FileInfo, Params, PluginError, PluginInfo, param,
};

pub struct Hostile;

/// Counts calls within one instance; a fresh store per call keeps it at 1.
static CALLS: AtomicU64 = AtomicU64::new(0);

impl Exporter for Hostile {
    fn describe() -> PluginInfo {
        wharf_sdk::plugin_info(
            "hostile",
            "0.0.1",
            "misbehaves on purpose",
            &[("mode", "how", Some("ok"))],
        )
    }

    fn run(
        entity: EntityInfo,
        files: Vec<FileInfo>,
        params: Params,
    ) -> Result<ExportResult, PluginError> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let named = |name: String| {
            Ok(ExportResult {
                file_name: name,
                media_type: "text/plain".into(),
            })
        };
        match param(&params, "mode").unwrap_or("ok") {
            "ok" => {
                wharf_sdk::output::write(b"ok")?;
                named("ok.txt".into())
            }
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut big = Vec::<u8>::with_capacity(1 << 30);
                big.resize(1 << 30, 1);
                named(format!("{}", big.len()))
            }
            "recurse" => named(format!("{}", recurse(std::hint::black_box(1)))),
            "shadow-stack" => named(format!("{}", recurse_big_frames(std::hint::black_box(1)))),
            "panic" => panic!("hostile plugin panics on purpose"),
            "output" => loop {
                wharf_sdk::output::write(&[b'x'; 64 * 1024])?;
            },
            "host-loop" => {
                // Each call is cheap for the guest and slow for the host.
                let file = files
                    .first()
                    .ok_or(PluginError::InvalidParams("give me a file".into()))?;
                loop {
                    let _ = wharf_sdk::host::sha256_range(file.id, 0, file.size);
                }
            }
            "read-other" => {
                // Ignores the denial and reports success anyway.
                let _ = wharf_sdk::host::read_file(999_999, 0, 16);
                named("read.txt".into())
            }
            "append-other" => {
                wharf_sdk::output::append_file(999_999, 0, 1)?;
                named("append.txt".into())
            }
            "escape" => named("../../../etc/passwd".into()),
            "absolute" => named("/etc/cron.d/evil".into()),
            "fs" => {
                let entries = std::fs::read_dir("/").map(|d| d.count()).unwrap_or(0);
                named(format!("fs-{entries}"))
            }
            "env" => named(format!("env-{}", std::env::vars().count())),
            "net" => {
                let connected = std::net::TcpStream::connect("127.0.0.1:80").is_ok();
                named(format!("net-{connected}"))
            }
            "count" => {
                // Echo the entity so concurrent calls can check they got their own.
                wharf_sdk::output::write(entity.id.as_bytes())?;
                named(format!("count-{calls}-{}", entity.id))
            }
            "fail" => Err(PluginError::Transient("remote is down".into())),
            other => Err(PluginError::InvalidParams(format!("unknown mode {other}"))),
        }
    }
}

/// Small frames: overflows wasmtime's native stack limit.
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let below = recurse(depth + 1);
    below.rotate_left((depth & 63) as u32) ^ depth
}

/// Big frames: overflows Rust's shadow stack in linear memory first.
fn recurse_big_frames(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let mut frame = [depth; 64];
    frame[std::hint::black_box(3)] = recurse_big_frames(std::hint::black_box(depth + 1));
    std::hint::black_box(&frame)[3]
}

wharf_sdk::export_exporter!(Hostile);
