//! The one wasmtime `Engine` of a process, its epoch ticker and the base
//! `Linker` with every host capability a plugin may import.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::call::CallState;
use super::host::{self, HttpAgents};

/// How instances get their memories and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots reused across calls: the fast path for a fresh
    /// store per call.
    Pooling,
    /// mmap per instance; only for comparison in benchmarks.
    OnDemand,
}

/// How the runtime is built. Defaults live in `config.rs`.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub allocator: Allocator,
    /// Plugin instances alive at once (the pool size).
    pub max_instances: u32,
    /// The largest memory any plugin may be given; per-plugin limits are lower.
    pub max_memory_bytes: u64,
    /// Where compiled plugins are cached; `None` compiles on every load.
    pub compiled_cache_dir: Option<PathBuf>,
    /// Consecutive trapping calls after which a plugin is quarantined.
    pub quarantine_after: u32,
    /// Granularity of call deadlines.
    pub epoch_tick: Duration,
    /// The largest component (wasm file) loaded; compiling is the one step
    /// of a load no deadline interrupts, and its cost grows with the size.
    pub max_component_bytes: u64,
}

/// The plugin runtime. Cheap to clone; plugins loaded from it keep it alive.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    pub(crate) config: RuntimeConfig,
    /// One HTTP connection pool per remote destination, kept across calls.
    pub(crate) http_agents: HttpAgents,
    ticker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = Engine::new(&engine_config(&config)?)
            .map_err(|err| anyhow::anyhow!("could not create the wasm engine: {err:#}"))?;
        let linker = host::base_linker(&engine)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("wharf-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                config,
                http_agents: HttpAgents::default(),
                ticker: Some(ticker),
                stop,
            }),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

fn engine_config(config: &RuntimeConfig) -> anyhow::Result<Config> {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        // No plugin uses the async component model; leaving it off makes a
        // fresh store per call about twice as cheap.
        .concurrency_support(false)
        .parallel_compilation(true);
    if config.allocator == Allocator::Pooling {
        let instances = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            // A wit-bindgen component is one main module plus small shims.
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .max_memories_per_component(2)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            // Keep the first pages of a slot mapped between calls instead of
            // returning them to the kernel, which costs a page fault each time.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(1 << 16)
            // Reset only the pages a call dirtied (Linux ≥ 6.7) instead of
            // memset-ing the whole kept-resident megabyte on every store drop:
            // measured 36 → 9 µs per fresh-store call (BENCHMARKS.md).
            .pagemap_scan(Enabled::Auto);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Ok(wasm)
}
