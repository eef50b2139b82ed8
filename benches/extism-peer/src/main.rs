//! One binary, one run, one harness: the trivial call through wharf's plugin
//! runtime and through Extism 1.30.0, at equal isolation, with the ratios.
//!
//! Usage: `extism-peer [GUEST.wasm]` (default: the guest that ./run.sh
//! builds). Each case is measured in several rounds that alternate between
//! the runtimes (so a noisy neighbour hits both alike); in each round it is
//! warmed up, then every call is timed on its own. Figures are medians (and
//! p10/p90) of all timed calls.
//!
//! `extism-peer GUEST.wasm profile CASE SECONDS` runs only CASE (a key of the
//! table, e.g. `wharf/fresh/pooling`) in a loop, for `perf record`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use extism::{CompiledPlugin, Plugin as ExtismPlugin, PluginBuilder};
use wharf::runtime::{
    Allocator, Batch, Limits, Params, Plugin, PluginSource, Runtime, RuntimeConfig,
};

const ROUNDS: usize = 5;
const WARM_UP: Duration = Duration::from_millis(200);
const MEASURE: Duration = Duration::from_millis(800);
const MAX_CALLS_PER_ROUND: usize = 50_000;

/// The pool both runtimes get when they use the pooling allocator: the
/// settings of `host/src/runtime/engine.rs` for `max_instances` = 32 and a
/// 1 GiB memory ceiling.
const POOL_INSTANCES: u32 = 32;
const MAX_MEMORY: usize = 1 << 30;
const KEEP_RESIDENT: usize = 1 << 20;

fn limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(5),
        output_bytes: 1 << 20,
        http_response_bytes: 1 << 20,
    }
}

fn wharf_runtime(allocator: Allocator) -> Runtime {
    Runtime::new(RuntimeConfig {
        allocator,
        max_instances: POOL_INSTANCES,
        max_memory_bytes: MAX_MEMORY as u64,
        compiled_cache_dir: None,
        quarantine_after: 5,
        epoch_tick: Duration::from_millis(2),
        max_component_bytes: 16 << 20,
    })
    .expect("the wharf runtime starts")
}

fn keep_last() -> PluginSource {
    wharf::plugins::bundled(limits())
        .into_iter()
        .find(|source| source.name == "keep-last")
        .expect("keep-last is bundled")
}

/// Extism's engine config: its defaults, or the same pool as wharf's.
fn extism_compiled(wasm: &[u8], pooling: bool) -> CompiledPlugin {
    let mut builder = PluginBuilder::new(wasm)
        .with_wasi(false)
        .with_cache_disabled();
    if pooling {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .max_memory_size(MAX_MEMORY)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(1 << 16);
        let mut config = wasmtime::Config::new();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        builder = builder.with_wasmtime_config(config);
    }
    builder.compile().expect("the extism guest compiles")
}

fn extism_call(plugin: &mut ExtismPlugin) {
    let out: Vec<u8> = plugin
        .call("noop", black_box(&[] as &[u8]))
        .expect("noop succeeds");
    debug_assert!(out.is_empty());
    black_box(out);
}

/// The trivial call of an SDK-built plugin on a fresh store: instantiate
/// keep-last from its InstancePre and call `planner.open([])`.
fn wharf_call(plugin: &Plugin, empty: &Params) {
    let session = plugin
        .plan_session(black_box(empty), std::path::Path::new("/"))
        .expect("open succeeds");
    black_box(session);
}

fn empty_batch() -> Batch {
    Batch::default()
}

/// keep-last on a bare wasmtime 48 engine with the runtime's settings
/// (`host/src/runtime/engine.rs`) except how a pooled memory slot is reset:
/// a fresh store, instantiate from the InstancePre, `planner.open([])`
/// called dynamically (every import a trap; it calls none).
struct WhatIf {
    engine: wasmtime48::Engine,
    pre: wasmtime48::component::InstancePre<()>,
    plan: wasmtime48::component::ComponentExportIndex,
}

impl WhatIf {
    fn new(wasm: &[u8], pagemap_scan: bool) -> WhatIf {
        use wasmtime48::component::{Component, Linker};
        let mut config = wasmtime48::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .concurrency_support(false);
        let mut pool = wasmtime48::PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .max_memories_per_component(2)
            .max_memory_size(MAX_MEMORY)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(1 << 16)
            .pagemap_scan(if pagemap_scan {
                wasmtime48::Enabled::Auto
            } else {
                wasmtime48::Enabled::No
            });
        config.allocation_strategy(wasmtime48::InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime48::Engine::new(&config).expect("the engine starts");
        let component = Component::new(&engine, wasm).expect("keep-last compiles");
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
        let plan = component
            .get_export_index(Some(&interface), "[static]planner.open")
            .expect("it has planner.open");
        WhatIf { engine, pre, plan }
    }

    fn call(&self) {
        use wasmtime48::component::Val;
        let mut store = wasmtime48::Store::new(&self.engine, ());
        store.set_epoch_deadline(1 << 30);
        let instance = self.pre.instantiate(&mut store).expect("instantiates");
        let func = instance.get_func(&mut store, self.plan).expect("plan");
        let mut result = [Val::Bool(false)];
        func.call(&mut store, &[Val::List(Vec::new())], &mut result)
            .expect("open succeeds");
        black_box(result);
    }
}

struct Stats {
    median: Duration,
    p10: Duration,
    p90: Duration,
    calls: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
        calls: samples.len(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_nanos() as f64 / 1e3)
}

/// One round of one case: warm-up, then timed calls until the time is up.
fn round(f: &mut dyn FnMut(), samples: &mut Vec<Duration>) {
    let start = Instant::now();
    while start.elapsed() < WARM_UP {
        f();
    }
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < MEASURE && n < MAX_CALLS_PER_ROUND {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
        n += 1;
    }
}

fn main() {
    let guest = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/guest/wasm32-unknown-unknown/release/extism_peer_guest.wasm")
        });
    if std::env::var_os("XDG_CACHE_HOME").is_none() {
        eprintln!(
            "note: XDG_CACHE_HOME is not set; ./run.sh sets it under target/ (the wasmtime cache is off anyway)"
        );
    }
    let extism_wasm = std::fs::read(&guest).unwrap_or_else(|err| {
        panic!(
            "cannot read the extism guest {}: {err}; run ./run.sh",
            guest.display()
        )
    });

    let empty: Params = Vec::new();
    let wharf_pool_rt = wharf_runtime(Allocator::Pooling);
    let wharf_ondemand_rt = wharf_runtime(Allocator::OnDemand);
    let wharf_pool = wharf_pool_rt.load(keep_last()).expect("keep-last loads");
    let wharf_ondemand = wharf_ondemand_rt
        .load(keep_last())
        .expect("keep-last loads");
    let extism_pool = extism_compiled(&extism_wasm, true);
    let extism_default = extism_compiled(&extism_wasm, false);

    let what_if_today = WhatIf::new(&keep_last().wasm, false);
    let what_if_pagemap = WhatIf::new(&keep_last().wasm, true);

    let root = std::path::Path::new("/");
    let mut wharf_session_pool = wharf_pool
        .plan_session(&empty, root)
        .expect("a session starts");
    let mut wharf_session_ondemand = wharf_ondemand
        .plan_session(&empty, root)
        .expect("a session starts");
    let mut extism_reused_pool = ExtismPlugin::new_from_compiled(&extism_pool).expect("plugin");
    let mut extism_reused_default =
        ExtismPlugin::new_from_compiled(&extism_default).expect("plugin");

    // (key, description, call)
    let mut cases: Vec<(&str, &str, Box<dyn FnMut() + '_>)> = vec![
        (
            "wharf/fresh/pooling",
            "wharf: fresh Store + instantiate from InstancePre + planner.open([]), pooling",
            Box::new(|| wharf_call(&wharf_pool, &empty)),
        ),
        (
            "extism/fresh/pooling",
            "extism: Plugin::new_from_compiled + call(noop), pooling",
            Box::new(|| {
                let mut plugin = ExtismPlugin::new_from_compiled(&extism_pool).expect("plugin");
                extism_call(&mut plugin);
            }),
        ),
        (
            "wharf/fresh/default",
            "wharf: fresh Store + instantiate from InstancePre + planner.open([]), on-demand",
            Box::new(|| wharf_call(&wharf_ondemand, &empty)),
        ),
        (
            "extism/fresh/default",
            "extism: Plugin::new_from_compiled + call(noop), default (on-demand)",
            Box::new(|| {
                let mut plugin = ExtismPlugin::new_from_compiled(&extism_default).expect("plugin");
                extism_call(&mut plugin);
            }),
        ),
        (
            "wharf/reused/pooling",
            "wharf: PlanSession::plan([]) on one instance, pooling",
            Box::new(|| {
                black_box(
                    wharf_session_pool
                        .plan(black_box(&empty_batch()))
                        .expect("plan succeeds"),
                );
            }),
        ),
        (
            "extism/reused/pooling",
            "extism: call(noop) on one Plugin, pooling",
            Box::new(|| extism_call(&mut extism_reused_pool)),
        ),
        (
            "wharf/reused/default",
            "wharf: PlanSession::plan([]) on one instance, on-demand",
            Box::new(|| {
                black_box(
                    wharf_session_ondemand
                        .plan(black_box(&empty_batch()))
                        .expect("plan succeeds"),
                );
            }),
        ),
        (
            "extism/reused/default",
            "extism: call(noop) on one Plugin, default (on-demand)",
            Box::new(|| extism_call(&mut extism_reused_default)),
        ),
        (
            "bare48/fresh/pooling",
            "bare wasmtime 48, keep-last planner.open([]), pool as wharf's (keep_resident 1 MiB, no pagemap scan)",
            Box::new(|| what_if_today.call()),
        ),
        (
            "bare48/fresh/pagemap",
            "bare wasmtime 48, keep-last planner.open([]), same pool + pagemap_scan(Auto)",
            Box::new(|| what_if_pagemap.call()),
        ),
    ];

    if std::env::args().nth(2).as_deref() == Some("profile") {
        let case = std::env::args().nth(3).expect("profile CASE SECONDS");
        let seconds: f64 = std::env::args()
            .nth(4)
            .and_then(|s| s.parse().ok())
            .unwrap_or(5.0);
        let (_, _, f) = cases
            .iter_mut()
            .find(|(k, _, _)| *k == case)
            .expect("a known case");
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed().as_secs_f64() < seconds {
            f();
            calls += 1;
        }
        let per_call = start.elapsed() / u32::try_from(calls).unwrap_or(u32::MAX);
        println!(
            "{case}: {calls} calls, {} µs per call (mean, profiled)",
            us(per_call)
        );
        return;
    }
    let mut samples: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for r in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", r + 1);
        for (key, _, f) in &mut cases {
            round(f.as_mut(), samples.entry(*key).or_default());
        }
    }
    let descriptions: BTreeMap<&str, &str> = cases.iter().map(|(k, d, _)| (*k, *d)).collect();
    drop(cases);
    let results: BTreeMap<&str, Stats> = samples.into_iter().map(|(k, v)| (k, stats(v))).collect();

    println!(
        "\n== trivial call, same run, same harness ({ROUNDS} interleaved rounds; µs per call) =="
    );
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9}  what",
        "case", "median", "p10", "p90", "calls"
    );
    for key in CASE_ORDER {
        let s = &results[key];
        println!(
            "{key:<24} {:>9} {:>9} {:>9} {:>9}  {}",
            us(s.median),
            us(s.p10),
            us(s.p90),
            s.calls,
            descriptions[key]
        );
    }
    println!("\n== ratios (extism median / wharf median; > 1 means wharf is faster) ==");
    let ratio = |extism: &str, wharf: &str, what: &str, target: Option<f64>| {
        let x = results[extism].median.as_secs_f64() / results[wharf].median.as_secs_f64();
        let verdict = match target {
            Some(t) if x >= t => format!("target ≥ {t}x: met"),
            Some(t) => format!("target ≥ {t}x: MISSED"),
            None => String::new(),
        };
        println!("{what:<48} {x:>7.2}x   {verdict}");
    };
    ratio(
        "extism/fresh/pooling",
        "wharf/fresh/pooling",
        "fresh instance per call, both pooling",
        Some(15.0),
    );
    ratio(
        "extism/fresh/default",
        "wharf/fresh/default",
        "fresh instance per call, both default",
        Some(15.0),
    );
    ratio(
        "extism/reused/pooling",
        "wharf/reused/pooling",
        "reused instance, both pooling",
        Some(10.0),
    );
    ratio(
        "extism/reused/default",
        "wharf/reused/default",
        "reused instance, both default",
        Some(10.0),
    );
    println!("\n== within each runtime ==");
    let within = |a: &str, b: &str, what: &str| {
        let x = results[a].median.as_secs_f64() / results[b].median.as_secs_f64();
        println!("{what:<48} {x:>7.2}x");
    };
    within(
        "wharf/fresh/default",
        "wharf/fresh/pooling",
        "wharf fresh: on-demand / pooling",
    );
    within(
        "bare48/fresh/pooling",
        "bare48/fresh/pagemap",
        "bare wasmtime 48 fresh: today / pagemap_scan",
    );
    within(
        "wharf/fresh/pooling",
        "bare48/fresh/pooling",
        "wharf fresh / bare wasmtime 48 fresh (same pool)",
    );
    within(
        "extism/fresh/default",
        "extism/fresh/pooling",
        "extism fresh: default / pooling",
    );
    within(
        "wharf/fresh/pooling",
        "wharf/reused/pooling",
        "wharf pooling: fresh / reused",
    );
    within(
        "extism/fresh/pooling",
        "extism/reused/pooling",
        "extism pooling: fresh / reused",
    );
    println!(
        "\n== what if wharf's pool used pagemap_scan (bare wasmtime 48 with that setting vs extism) =="
    );
    ratio(
        "extism/fresh/pooling",
        "bare48/fresh/pagemap",
        "fresh instance per call, both pooling",
        Some(15.0),
    );
}

const CASE_ORDER: [&str; 10] = [
    "wharf/fresh/pooling",
    "extism/fresh/pooling",
    "wharf/fresh/default",
    "extism/fresh/default",
    "wharf/reused/pooling",
    "extism/reused/pooling",
    "wharf/reused/default",
    "extism/reused/default",
    "bare48/fresh/pooling",
    "bare48/fresh/pagemap",
];
