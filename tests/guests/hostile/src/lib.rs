//! A hostile exporter for the sandbox tests. Each `mode` attacks the host in
//! one way; `ok` behaves, so a test can check the host still serves calls.
// Forging a resource handle, a string or an enum value takes `unsafe`; that
// is the attack.
#![allow(unsafe_code)]

pub mod modes;

use std::sync::atomic::{AtomicU64, Ordering};

use wharf_sdk::__bindings::exporter::wharf::plugin::{files as raw_files, output as raw_output};
use wharf_sdk::{
    Entity, ExportResult, Exporter, FileEntry, ParamSpec, Params, PluginError, PluginInfo, param,
};

pub struct Hostile;

/// Counts calls within one instance; a fresh store per call keeps it at 1.
static CALLS: AtomicU64 = AtomicU64::new(0);

impl Exporter for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile", "0.0.1")
            .description("misbehaves on purpose")
            .param(ParamSpec::new("mode", "how").default("ok"))
    }

    fn run(
        entity: Entity,
        files: Vec<FileEntry>,
        params: Params,
    ) -> Result<ExportResult, PluginError> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let named = |name: String| {
            Ok(ExportResult {
                file_name: name,
                media_type: "text/plain".into(),
            })
        };
        let mode = param(&params, "mode").unwrap_or("ok");
        // Only listed modes run, so each has an expected outcome in the tests.
        if !modes::MODES.contains(&mode) {
            return Err(PluginError::invalid_params(format!("unknown mode {mode}")));
        }
        match mode {
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
                let entry = files
                    .first()
                    .ok_or(PluginError::invalid_params("give me a file"))?;
                loop {
                    let _ = entry.file.sha256(0, entry.size);
                }
            }
            "read-other" => {
                // A handle the host never gave: ignores any error and
                // reports success anyway.
                let forged = unsafe { raw_files::File::from_handle(999_999) };
                let _ = forged.read(0, 16);
                std::mem::forget(forged);
                named("read.txt".into())
            }
            "append-other" => {
                let forged = unsafe { raw_files::File::from_handle(999_999) };
                let _ = raw_output::append_file(&forged, 0, 1);
                std::mem::forget(forged);
                named("append.txt".into())
            }
            "println" => {
                // Ordinary std output and hashing work in the sandbox.
                let mut seen = std::collections::HashSet::new();
                seen.insert(entity.name.clone());
                println!("hello from {} ({} names)", entity.name, seen.len());
                eprintln!("a warning line");
                wharf_sdk::output::write(b"printed")?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|e| PluginError::terminal(e.to_string()))?;
                named(format!("println-{}", now.as_secs() > 1_600_000_000))
            }
            "stdout-flood" => {
                // 10 MB of lines: capped by the host, the call still succeeds.
                let line = "x".repeat(999);
                for _ in 0..10_000 {
                    println!("{line}");
                }
                named("flood.txt".into())
            }
            "log-flood" => {
                for i in 0..100_000 {
                    wharf_sdk::host::log(wharf_sdk::host::Level::Info, &format!("line {i}"));
                }
                named("log-flood.txt".into())
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                named("slept.txt".into())
            }
            "bidi" => named("invoice\u{202E}rat.exe".into()),
            "media-crlf" => Ok(ExportResult {
                file_name: "ok.txt".into(),
                media_type: "text/plain\r\nSet-Cookie: a=b".into(),
            }),
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
                wharf_sdk::output::write(entity.name.as_bytes())?;
                named(format!("count-{calls}-{}", entity.name))
            }
            "fail" => Err(PluginError::transient("remote is down")),
            "bad-enum" => {
                // `level` has five cases; 9 is none of them.
                let message = "a level that does not exist";
                // SAFETY: the host's own `log` import, with an invalid level.
                unsafe { raw_log(9, message.as_ptr(), message.len()) };
                named("bad-enum.txt".into())
            }
            // SAFETY: none; the host must refuse the bytes.
            "bad-utf8" => named(unsafe { String::from_utf8_unchecked(vec![b'a', 0xc3, 0x28]) }),
            "string-out-of-bounds" => {
                // A name the guest never allocated, past the end of memory.
                // SAFETY: none; it is handed to the host as is and never used here.
                named(unsafe { String::from_raw_parts(0xffff_0000usize as *mut u8, 64, 64) })
            }
            other => Err(PluginError::invalid_params(format!("unknown mode {other}"))),
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

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "wharf:plugin/host@0.2.0")]
unsafe extern "C" {
    /// The `host.log` import the SDK also uses, called with raw values.
    #[link_name = "log"]
    fn raw_log(level: i32, message: *const u8, len: usize);
}

/// Natively (the crate's own build) there is no host to call.
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_log(_level: i32, _message: *const u8, _len: usize) {}

wharf_sdk::export_exporter!(Hostile);
