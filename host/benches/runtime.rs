//! Plugin-runtime benchmarks of wharf alone (the Extism comparison lives in
//! `benches/extism-peer`, outside the workspace).
//!
//! `cargo bench -p wharf --bench runtime` runs everything in a few minutes
//! and ends with a table of medians and the ratios the targets are stated
//! in (see BENCHMARKS.md). Every figure is the median of criterion's samples
//! (each sample: total time / iterations of that sample).
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use wharf::runtime::{
    Allocator, Batch, CacheOutcome, Deletion, Entity, Limits, Params, PluginSource, Runtime,
    RuntimeConfig,
};

/// 1,000,000 records in 100 batches of 10,000.
const RECORDS: usize = 1_000_000;
const BATCH: usize = 10_000;
/// Each entity has this many files; with `keep = KEEP` one file in a hundred
/// is planned for deletion (10,000 deletions in all).
const FILES_PER_ENTITY: usize = 100;
const KEEP: u64 = 99;

fn limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(5),
        output_bytes: 1 << 20,
        http_response_bytes: 1 << 20,
    }
}

fn runtime(allocator: Allocator, cache_dir: Option<PathBuf>) -> Runtime {
    Runtime::new(RuntimeConfig {
        allocator,
        max_instances: 32,
        max_memory_bytes: 1 << 30,
        compiled_cache_dir: cache_dir,
        quarantine_after: 5,
        epoch_tick: Duration::from_millis(2),
        max_component_bytes: 16 << 20,
    })
    .expect("the runtime starts")
}

/// The bundled keep-last, or the wasm file `WHARF_BENCH_KEEP_LAST` names (to
/// measure a changed plugin without rebuilding the host; the 1M bench then
/// reports rather than requires a plan that differs from the native loop's).
fn keep_last_source() -> PluginSource {
    let mut source = wharf::plugins::bundled(limits())
        .into_iter()
        .find(|source| source.name == "keep-last")
        .expect("keep-last is bundled");
    if let Some(path) = std::env::var_os("WHARF_BENCH_KEEP_LAST") {
        source.wasm = std::fs::read(&path).expect("WHARF_BENCH_KEEP_LAST is readable");
        source.sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&source.wasm));
    }
    source
}

/// Batches ordered by (entity, created desc) that never split an entity, as
/// the retention runner hands them out: each batch's entities and kinds sent
/// once, its files in columns.
fn batches() -> Vec<Batch> {
    let entities_per_batch = BATCH / FILES_PER_ENTITY;
    (0..RECORDS / BATCH)
        .map(|b| {
            let rows = b * BATCH..(b + 1) * BATCH;
            let created = |i: usize| 1_700_000_000_000 - (i % FILES_PER_ENTITY) as i64 * 60_000;
            Batch {
                entities: (0..entities_per_batch)
                    .map(|e| Entity {
                        name: format!("entity-{:06}", b * entities_per_batch + e),
                        version: 1,
                        last_export_ms: Some(1_700_000_000_000),
                        attributes: vec![("branch".into(), "main".into())],
                    })
                    .collect(),
                kinds: ["capture".to_owned()].into(),
                ids: rows.clone().map(|i| i as u64 + 1).collect(),
                sizes: rows.clone().map(|i| 4096 + (i as u64 % 1000)).collect(),
                created_ms: rows.clone().map(created).collect(),
                modified_ms: rows.clone().map(created).collect(),
                last_access_ms: vec![0; BATCH].into(),
                entity: (0..BATCH).map(|j| (j / FILES_PER_ENTITY) as u32).collect(),
                kind: vec![0; BATCH].into(),
                flags: vec![1; BATCH].into(),
            }
        })
        .collect()
}

fn keep_params() -> Params {
    vec![("keep".into(), KEEP.to_string())]
}

/// keep-last's selection, the very source file the plugin runs (its one
/// per-file loop in the shape LLVM vectorizes natively, where the plugin
/// runs the shape Cranelift does best with: see `group_end`).
#[path = "../../plugins/keep-last/src/select.rs"]
mod keep_last_select;

/// Copies of the native peer in the binary; see [`native_keep_last`].
const NATIVE_COPIES: usize = 4;

/// The keep-last plugin's plan in native Rust: the same selection over the
/// same column it reads (the entity column; creation times only with a
/// minimum age, which this bench does not set), answer built the same way,
/// in the caller's ids: the floor of the 1M bench.
///
/// How fast its tight loop runs depends on where the loop lands in the
/// binary (this same code measured from 123 to 205 µs across builds), so
/// the peer is compiled [`NATIVE_COPIES`] times, at different places (`COPY`
/// only keeps the copies apart), and the ratio is taken against the fastest:
/// the peer at its best.
#[inline(never)]
fn native_keep_last<const COPY: usize>(
    batch: &Batch,
    keep: u64,
    reason: &str,
) -> (Vec<String>, Vec<Deletion>) {
    black_box(COPY);
    let reasons = vec![reason.to_owned()];
    let mut deletions = Vec::new();
    keep_last_select::select(&batch.entity, None, keep, i64::MAX, |i| {
        deletions.push(Deletion {
            file: batch.ids[i],
            reason: 0,
        });
    });
    (reasons, deletions)
}

thread_local! {
    /// Every (iterations, elapsed) criterion asked of a benchmark, warm-up included.
    static SAMPLES: RefCell<BTreeMap<String, Vec<(u64, Duration)>>> = const { RefCell::new(BTreeMap::new()) };
}

/// Runs `routine` through criterion's `iter_custom` and remembers the
/// samples, so the summary can print medians and ratios.
fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    id: &str,
    mut routine: impl FnMut(u64) -> Duration,
) {
    let key = format!("{group_name}/{id}");
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let elapsed = routine(iters);
            SAMPLES.with(|s| {
                s.borrow_mut()
                    .entry(key.clone())
                    .or_default()
                    .push((iters, elapsed))
            });
            elapsed
        });
    });
}

/// Times `iters` runs of `f`.
fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed()
}

fn trivial_calls(c: &mut Criterion) {
    let name = "trivial_call";
    let mut group = c.benchmark_group(name);
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let empty: Params = Vec::new();
    let disk = std::env::temp_dir();
    for (allocator, label) in [
        (Allocator::Pooling, "pooling"),
        (Allocator::OnDemand, "on_demand"),
    ] {
        let runtime = runtime(allocator, None);
        let plugin = runtime.load(keep_last_source()).expect("keep-last loads");
        // The trivial call of an SDK-built plugin on a fresh store from the
        // InstancePre: instantiate, then keep-last's `planner.open`.
        bench(&mut group, name, &format!("fresh_store/{label}"), |iters| {
            timed(iters, || {
                black_box(plugin.plan_session(black_box(&empty), &disk).unwrap());
            })
        });
        // `plan` of an empty batch on one reused instance.
        let mut session = plugin.plan_session(&empty, &disk).unwrap();
        let nothing = Batch::default();
        bench(
            &mut group,
            name,
            &format!("reused_instance/{label}"),
            |iters| {
                timed(iters, || {
                    black_box(session.plan(black_box(&nothing)).unwrap());
                })
            },
        );
    }
    group.finish();
}

fn plan_million(c: &mut Criterion) {
    let name = "plan_1m_records";
    let batches = batches();
    let params = keep_params();
    let disk = std::env::temp_dir();
    let runtime = runtime(Allocator::Pooling, None);
    let plugin = runtime.load(keep_last_source()).expect("keep-last loads");
    let reason = format!("keep-last: older than the newest {KEEP} of its entity");
    let expected: Vec<u64> = batches
        .iter()
        .flat_map(|b| native_keep_last::<0>(b, KEEP, &reason).1)
        .map(|d| d.file)
        .collect();
    let mut session = plugin.plan_session(&params, &disk).unwrap();
    let planned: Vec<u64> = batches
        .iter()
        .flat_map(|b| session.plan(b).unwrap().deletions)
        .map(|d| d.file)
        .collect();
    drop(session);
    if std::env::var_os("WHARF_BENCH_KEEP_LAST").is_none() {
        assert_eq!(
            planned, expected,
            "the plugin and the native loop must agree"
        );
        assert_eq!(planned.len(), RECORDS / FILES_PER_ENTITY);
    } else if planned != expected {
        // A plugin under experiment (e.g. one that only reads the column)
        // may plan differently; say so rather than stop.
        println!(
            "WHARF_BENCH_KEEP_LAST plans {} deletions, not the native loop's",
            planned.len()
        );
    }

    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    // Both read the same batches, borrowed: the session lends each to the
    // plugin (sharing its columns) and keeps a share of its ids; the peer
    // reads them in place.
    bench(&mut group, name, "one_session", |iters| {
        timed(iters, || {
            let mut session = plugin.plan_session(&params, &disk).unwrap();
            for batch in &batches {
                black_box(session.plan(black_box(batch)).unwrap());
            }
            black_box(session.finish().unwrap());
        })
    });
    type Peer = fn(&Batch, u64, &str) -> (Vec<String>, Vec<Deletion>);
    let copies: [Peer; NATIVE_COPIES] = [
        native_keep_last::<0>,
        native_keep_last::<1>,
        native_keep_last::<2>,
        native_keep_last::<3>,
    ];
    for (copy, peer) in copies.into_iter().enumerate() {
        bench(&mut group, name, &format!("native_rust_{copy}"), |iters| {
            timed(iters, || {
                for batch in &batches {
                    black_box(peer(black_box(batch), KEEP, &reason));
                }
            })
        });
    }
    group.finish();
}

fn loading(c: &mut Criterion) {
    let name = "load";
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache_dir = dir.path().join("compiled");
    let runtime = runtime(Allocator::Pooling, Some(cache_dir.clone()));
    let source = keep_last_source();
    let first = runtime.load(source.clone()).expect("keep-last loads");
    assert_eq!(first.cache, CacheOutcome::Miss);
    drop(first);
    let artifact = only_artifact(&cache_dir);
    let artifact_bytes = std::fs::read(&artifact).expect("the artifact is readable");
    let engine = engine_like_runtime();

    let mut group = c.benchmark_group(name);
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // Everything `Runtime::load` does on a cache hit: sha256 of the wasm,
    // read + sha256 check + deserialize of the artifact, inspection, linking,
    // InstancePre, and the `describe` call.
    bench(&mut group, name, "compiled_cache_hit", |iters| {
        timed(iters, || {
            let plugin = runtime.load(source.clone()).unwrap();
            debug_assert_eq!(plugin.cache, CacheOutcome::Hit);
            black_box(plugin);
        })
    });
    // Just wasmtime's deserialize of the same artifact (already in memory).
    bench(&mut group, name, "deserialize_only", |iters| {
        timed(iters, || {
            black_box(deserialize(&engine, &artifact_bytes));
        })
    });
    // The parts of a cache hit that are not wasmtime's.
    bench(&mut group, name, "sha256_wasm", |iters| {
        timed(iters, || {
            black_box(<sha2::Sha256 as sha2::Digest>::digest(black_box(
                &source.wasm,
            )));
        })
    });
    bench(&mut group, name, "read_and_sha256_artifact", |iters| {
        timed(iters, || {
            let bytes = std::fs::read(&artifact).unwrap();
            black_box(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        })
    });
    group.finish();
    println!(
        "load: keep-last wasm {} bytes, compiled artifact {} bytes",
        source.wasm.len(),
        artifact_bytes.len()
    );
}

fn only_artifact(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("the cache directory exists")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .expect("the first load cached the compiled plugin")
}

/// An engine whose settings match the runtime's (`host/src/runtime/engine.rs`)
/// in everything that makes an artifact loadable.
fn engine_like_runtime() -> wasmtime::Engine {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .concurrency_support(false);
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(32)
        .total_core_instances(128)
        .total_memories(64)
        .total_tables(128)
        .max_memories_per_component(2)
        .max_memory_size(1 << 30);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    wasmtime::Engine::new(&config).expect("the engine starts")
}

fn deserialize(engine: &wasmtime::Engine, bytes: &[u8]) -> wasmtime::component::Component {
    // SAFETY: the bytes are an artifact the runtime compiled and cached a
    // moment ago with an engine of the same settings.
    #[allow(unsafe_code)]
    unsafe {
        wasmtime::component::Component::deserialize(engine, bytes)
            .expect("the cached artifact deserializes")
    }
}

/// A bare wasmtime engine with the runtime's settings (`engine.rs`) except
/// for how a pooled memory slot is reset between stores.
fn what_if_engine(keep_resident: usize, pagemap_scan: bool) -> wasmtime::Engine {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .concurrency_support(false);
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(32)
        .total_core_instances(128)
        .total_memories(64)
        .total_tables(128)
        .max_memories_per_component(2)
        .max_memory_size(1 << 30)
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(1 << 16)
        .pagemap_scan(if pagemap_scan {
            wasmtime::Enabled::Auto
        } else {
            wasmtime::Enabled::No
        });
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    wasmtime::Engine::new(&config).expect("the engine starts")
}

/// What the fresh-store trivial call would cost with other pool settings:
/// keep-last instantiated with bare wasmtime (every import a trap;
/// `planner.open` with no parameters never calls one) and `open([])` called
/// dynamically.
/// `keep_resident_1MiB` is today's runtime setting and the baseline.
fn what_if(c: &mut Criterion) {
    use wasmtime::component::{Component, Linker, Val};
    let name = "what_if_fresh_store";
    let wasm = keep_last_source().wasm;
    let mut group = c.benchmark_group(name);
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let variants = [
        ("keep_resident_1MiB", 1 << 20, false),
        ("keep_resident_1MiB_pagemap_scan", 1 << 20, true),
        ("keep_resident_0", 0, false),
        ("keep_resident_64KiB", 64 << 10, false),
    ];
    for (label, keep_resident, pagemap_scan) in variants {
        let engine = what_if_engine(keep_resident, pagemap_scan);
        let component = Component::new(&engine, &wasm).expect("keep-last compiles");
        let mut linker: Linker<()> = Linker::new(&engine);
        linker
            .define_unknown_imports_as_traps(&component)
            .expect("imports defined");
        let pre = linker
            .instantiate_pre(&component)
            .expect("pre-instantiates");
        let interface = component
            .get_export_index(None, "wharf:plugin/retention-policy@0.2.0")
            .expect("keep-last exports retention-policy");
        let open = component
            .get_export_index(Some(&interface), "[static]planner.open")
            .expect("it has planner.open");
        bench(&mut group, name, label, |iters| {
            timed(iters, || {
                let mut store = wasmtime::Store::new(&engine, ());
                store.set_epoch_deadline(1 << 30);
                let instance = pre.instantiate(&mut store).unwrap();
                let func = instance.get_func(&mut store, open).unwrap();
                let mut result = [Val::Bool(false)];
                func.call(&mut store, &[Val::List(Vec::new())], &mut result)
                    .unwrap();
                black_box(result);
            })
        });
    }
    group.finish();
}

/// Median per-iteration time of a benchmark's measured samples (the last
/// `sample_size` calls; the ones before are criterion's warm-up).
fn median(key: &str, sample_size: usize) -> Option<Duration> {
    SAMPLES.with(|s| {
        let samples = s.borrow();
        let all = samples.get(key)?;
        let measured = &all[all.len().saturating_sub(sample_size)..];
        let mut per_iter: Vec<f64> = measured
            .iter()
            .map(|(iters, elapsed)| elapsed.as_secs_f64() / *iters as f64)
            .collect();
        per_iter.sort_by(f64::total_cmp);
        let mid = per_iter.len() / 2;
        let value = if per_iter.len().is_multiple_of(2) {
            (per_iter[mid - 1] + per_iter[mid]) / 2.0
        } else {
            per_iter[mid]
        };
        Some(Duration::from_secs_f64(value))
    })
}

fn show(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} µs", ns / 1e3)
    }
}

fn summary() {
    let rows: [(&str, usize, Option<Duration>); 8] = [
        (
            "trivial_call/fresh_store/pooling",
            50,
            Some(Duration::from_micros(5)),
        ),
        ("trivial_call/fresh_store/on_demand", 50, None),
        ("trivial_call/reused_instance/pooling", 50, None),
        ("trivial_call/reused_instance/on_demand", 50, None),
        ("plan_1m_records/one_session", 10, None),
        (
            "load/compiled_cache_hit",
            30,
            Some(Duration::from_micros(50)),
        ),
        ("load/deserialize_only", 30, None),
        ("load/sha256_wasm", 30, None),
    ];
    let extra = [
        ("load/read_and_sha256_artifact", 30),
        ("what_if_fresh_store/keep_resident_1MiB", 50),
        ("what_if_fresh_store/keep_resident_1MiB_pagemap_scan", 50),
        ("what_if_fresh_store/keep_resident_0", 50),
        ("what_if_fresh_store/keep_resident_64KiB", 50),
    ];
    println!("\n== wharf runtime benchmarks: medians ==");
    let mut medians = BTreeMap::new();
    for (key, n, target) in rows {
        let Some(m) = median(key, n) else { continue };
        medians.insert(key, m);
        let verdict = match target {
            Some(t) if m <= t => format!("target ≤ {}: met", show(t)),
            Some(t) => format!("target ≤ {}: MISSED", show(t)),
            None => String::new(),
        };
        println!("{key:<42} {:>12}   {verdict}", show(m));
    }
    for (key, n) in extra {
        if let Some(m) = median(key, n) {
            medians.insert(key, m);
            println!("{key:<42} {:>12}", show(m));
        }
    }
    // The native peer at its best: the fastest of its copies.
    let copies: Vec<Duration> = (0..NATIVE_COPIES)
        .filter_map(|copy| median(&format!("plan_1m_records/native_rust_{copy}"), 10))
        .collect();
    if let Some(best) = copies.iter().min() {
        let all: Vec<String> = copies.iter().map(|&d| show(d)).collect();
        println!(
            "{:<42} {:>12}   fastest of {}",
            "plan_1m_records/native_rust",
            show(*best),
            all.join(", ")
        );
        medians.insert("plan_1m_records/native_rust", *best);
    }
    println!("\n== ratios ==");
    let ratio = |a: &str, b: &str, what: &str| {
        if let (Some(x), Some(y)) = (medians.get(a), medians.get(b)) {
            println!("{what:<58} {:>7.2}x", x.as_secs_f64() / y.as_secs_f64());
        }
    };
    ratio(
        "trivial_call/fresh_store/on_demand",
        "trivial_call/fresh_store/pooling",
        "fresh store: on-demand / pooling",
    );
    ratio(
        "trivial_call/fresh_store/pooling",
        "trivial_call/reused_instance/pooling",
        "pooling: fresh store / reused instance",
    );
    ratio(
        "plan_1m_records/one_session",
        "plan_1m_records/native_rust",
        "1M records: one planner per run / native Rust loop (target ≤ 2.5x)",
    );

    ratio(
        "load/compiled_cache_hit",
        "load/deserialize_only",
        "cache-hit load / deserialize only",
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    trivial_calls(&mut criterion);
    plan_million(&mut criterion);
    loading(&mut criterion);
    what_if(&mut criterion);
    criterion.final_summary();
    summary();
}
