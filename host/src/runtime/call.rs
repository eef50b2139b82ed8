//! One plugin call: a fresh `Store` from the plugin's `InstancePre`, the
//! limits of the call, and the classification of how it ended.
//!
//! Invariant: whatever the plugin does, a call ends in `Ok` or in exactly one
//! `CallError`, the store is dropped, and the host can serve the next call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::Trap;

use super::bindings::retention::Retention;
use super::bindings::{
    Deletion, Destination, EntityInfo, ExportResult, FileInfo, PluginError, PluginInfo,
    UploadResult,
};
use super::host::{DeniedImport, HttpAccess, Output};
use super::limits::MemoryLimiter;
use super::registry::{Plugin, WorldPre};

/// Named parameters of a call.
pub type Params = Vec<(String, String)>;

/// A file handed to a call: what the plugin sees, and where the host finds it.
#[derive(Debug, Clone)]
pub struct CallFile {
    pub info: FileInfo,
    pub path: PathBuf,
}

/// The three classes every failure falls into; the job queue retries only
/// `Transient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidParams,
    Transient,
    Terminal,
}

/// How a plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("transient failure: {0}")]
    Transient(String),
    #[error("failed: {0}")]
    Terminal(String),
    #[error("ran past its deadline of {0:?} (guest and host time together)")]
    Deadline(Duration),
    #[error("tried to grow its memory past the limit of {0} bytes")]
    MemoryLimit(u64),
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("wrote more than its output limit of {0} bytes")]
    OutputLimit(u64),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("returned an invalid result: {0}")]
    InvalidOutput(String),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("is quarantined after {0} consecutive traps; fix it and reload plugins")]
    Quarantined(u32),
    #[error("is a {found} plugin and cannot be called as {expected}")]
    WrongWorld {
        expected: &'static str,
        found: &'static str,
    },
    #[error("could not be run by the host: {0}")]
    Host(String),
}

impl CallError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CallError::InvalidParams(_) => ErrorClass::InvalidParams,
            CallError::Transient(_) | CallError::Host(_) => ErrorClass::Transient,
            _ => ErrorClass::Terminal,
        }
    }

    /// Sandbox faults count towards quarantine; errors the plugin returned
    /// on purpose do not.
    fn is_trap(&self) -> bool {
        matches!(
            self,
            CallError::Deadline(_)
                | CallError::MemoryLimit(_)
                | CallError::StackOverflow
                | CallError::OutputLimit(_)
                | CallError::AccessDenied(_)
                | CallError::InvalidOutput(_)
                | CallError::Trap(_)
        )
    }
}

impl From<PluginError> for CallError {
    fn from(error: PluginError) -> Self {
        match error {
            PluginError::InvalidParams(msg) => CallError::InvalidParams(msg),
            PluginError::Transient(msg) => CallError::Transient(msg),
            PluginError::Terminal(msg) => CallError::Terminal(msg),
        }
    }
}

/// A fault a host function detected; it traps the guest and wins over
/// whatever the guest returns afterwards.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Fault {
    #[error("deadline exceeded during a host call")]
    Deadline,
    #[error("output limit exceeded")]
    OutputLimit,
    #[error("access denied: {0}")]
    AccessDenied(String),
}

/// The data of one call's store.
pub(crate) struct CallState {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) plugin: String,
    pub(crate) deadline: Instant,
    pub(crate) files: HashMap<u64, PathBuf>,
    pub(crate) output: Option<Output>,
    pub(crate) http: Option<HttpAccess>,
    pub(crate) fault: Option<Fault>,
}

impl CallState {
    /// Records a fault and returns the error that traps the guest.
    pub(crate) fn trap(&mut self, fault: Fault) -> wasmtime::Error {
        self.fault.get_or_insert(fault.clone());
        wasmtime::Error::new(fault)
    }

    /// Traps when the call's deadline has passed, so host time counts too.
    pub(crate) fn check_deadline(&mut self) -> wasmtime::Result<()> {
        if Instant::now() >= self.deadline {
            return Err(self.trap(Fault::Deadline));
        }
        Ok(())
    }

    /// Records a denied access: the guest gets a terminal error value it may
    /// inspect, but the call fails as access-denied whatever it returns.
    pub(crate) fn deny(&mut self, what: String) -> PluginError {
        self.fault.get_or_insert(Fault::AccessDenied(what.clone()));
        PluginError::Terminal(format!("access denied: {what}"))
    }
}

/// What one call is given besides its arguments.
#[derive(Default)]
struct Grants {
    files: HashMap<u64, PathBuf>,
    output: Option<Output>,
    http: Option<HttpAccess>,
}

impl Plugin {
    /// Calls `describe`.
    pub fn describe(&self) -> Result<PluginInfo, CallError> {
        self.invoke("describe", Grants::default(), |store| match &self.pre {
            WorldPre::Exporter(pre) => Ok(Ok(pre
                .instantiate(&mut *store)?
                .wharf_plugin_export_format()
                .call_describe(store)?)),
            WorldPre::Retention(pre) => Ok(Ok(pre
                .instantiate(&mut *store)?
                .wharf_plugin_retention_policy()
                .call_describe(store)?)),
            WorldPre::Uploader(pre) => Ok(Ok(pre
                .instantiate(&mut *store)?
                .wharf_plugin_transfer()
                .call_describe(store)?)),
        })
        .map(|(info, _)| info)
    }

    /// Asks a retention plugin which files of `batch` may be deleted.
    /// Every returned id is checked to belong to the batch.
    pub fn plan(&self, batch: &[FileInfo], params: &Params) -> Result<Vec<Deletion>, CallError> {
        let WorldPre::Retention(pre) = &self.pre else {
            return Err(self.wrong_world("retention"));
        };
        let (deletions, _) = self.invoke("plan", Grants::default(), |store| {
            pre.instantiate(&mut *store)?
                .wharf_plugin_retention_policy()
                .call_plan(store, batch, params)
        })?;
        self.check_deletions(batch, &deletions)?;
        Ok(deletions)
    }

    /// Runs an exporter over `files`, writing its output to `output_path`,
    /// which must not exist. On failure the partial output is removed.
    pub fn export(
        &self,
        entity: &EntityInfo,
        files: &[CallFile],
        params: &Params,
        output_path: &std::path::Path,
    ) -> Result<ExportResult, CallError> {
        let WorldPre::Exporter(pre) = &self.pre else {
            return Err(self.wrong_world("exporter"));
        };
        let output = Output::create(output_path, self.limits.output_bytes).map_err(|err| {
            CallError::Host(format!("could not create {}: {err}", output_path.display()))
        })?;
        let grants = Grants {
            files: file_grants(files),
            output: Some(output),
            http: None,
        };
        let infos: Vec<FileInfo> = files.iter().map(|f| f.info.clone()).collect();
        let result = self
            .invoke("export", grants, |store| {
                pre.instantiate(&mut *store)?
                    .wharf_plugin_export_format()
                    .call_run(store, entity, &infos, params)
            })
            .and_then(|(result, state)| {
                if let Err(reason) = bare_file_name(&result.file_name) {
                    return Err(self.invalid_output(reason));
                }
                let output = state
                    .output
                    .ok_or_else(|| CallError::Host("output vanished".into()))?;
                output
                    .finish()
                    .map_err(|err| CallError::Host(format!("could not write the export: {err}")))?;
                Ok(result)
            });
        if result.is_err() {
            let _ = std::fs::remove_file(output_path);
        }
        result
    }

    /// Uploads `file` to `destination` through the host's HTTP import, which
    /// only reaches this plugin's allowed hosts.
    pub fn upload(
        &self,
        file: &CallFile,
        destination: &Destination,
        params: &Params,
    ) -> Result<UploadResult, CallError> {
        let WorldPre::Uploader(pre) = &self.pre else {
            return Err(self.wrong_world("uploader"));
        };
        let http = HttpAccess::new(self.allowed_hosts.clone(), self.limits.http_response_bytes);
        let grants = Grants {
            files: file_grants(std::slice::from_ref(file)),
            output: None,
            http: Some(http),
        };
        self.invoke("upload", grants, |store| {
            pre.instantiate(&mut *store)?
                .wharf_plugin_transfer()
                .call_run(store, &file.info, destination, params)
        })
        .map(|(result, _)| result)
    }

    fn wrong_world(&self, expected: &'static str) -> CallError {
        CallError::WrongWorld {
            expected,
            found: self.world.name(),
        }
    }

    fn invalid_output(&self, reason: String) -> CallError {
        let error = CallError::InvalidOutput(reason);
        self.record(&error);
        error
    }

    /// The one place a single call runs: quarantine check, fresh store with
    /// limits, the call itself, classification, trap accounting and the span.
    fn invoke<R>(
        &self,
        function: &'static str,
        grants: Grants,
        call: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<Result<R, PluginError>>,
    ) -> Result<(R, CallState), CallError> {
        self.check_quarantine()?;
        let span = self.span(function);
        let _entered = span.enter();
        let mut store = self.new_store(grants);
        let started = self.arm(&mut store);
        let outcome = call(&mut store);
        let mut state = store.into_data();
        self.settle(outcome, &mut state, started)
            .map(|value| (value, state))
    }

    fn check_quarantine(&self) -> Result<(), CallError> {
        let threshold = self.runtime.config.quarantine_after;
        let traps = self.consecutive_traps.load(Ordering::Relaxed);
        if threshold > 0 && traps >= threshold {
            return Err(CallError::Quarantined(traps));
        }
        Ok(())
    }

    fn span(&self, function: &'static str) -> tracing::Span {
        tracing::debug_span!(
            "plugin_call",
            plugin = %self.name,
            version = %self.info.version,
            world = self.world.name(),
            function,
            elapsed_us = tracing::field::Empty,
        )
    }

    fn new_store(&self, grants: Grants) -> Store<CallState> {
        let state = CallState {
            limiter: MemoryLimiter::new(self.limits.memory_bytes),
            plugin: self.name.clone(),
            deadline: Instant::now() + self.limits.timeout,
            files: grants.files,
            output: grants.output,
            http: grants.http,
            fault: None,
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store
    }

    /// Starts the clock of one call: the same deadline for guest time (epochs)
    /// and host time (checked by host functions).
    fn arm(&self, store: &mut Store<CallState>) -> Instant {
        let started = Instant::now();
        let state = store.data_mut();
        state.deadline = started + self.limits.timeout;
        state.limiter.denied = false;
        store.set_epoch_deadline(epoch_ticks(
            self.limits.timeout,
            self.runtime.config.epoch_tick,
        ));
        started
    }

    /// Turns how a call ended into its result, counts traps and logs once.
    fn settle<R>(
        &self,
        outcome: wasmtime::Result<Result<R, PluginError>>,
        state: &mut CallState,
        started: Instant,
    ) -> Result<R, CallError> {
        let timeout = self.limits.timeout;
        let result = match outcome {
            // A denied access fails the call even if the plugin carried on.
            Ok(value) => match state.fault.take() {
                Some(fault) => Err(fault_error(fault, &self.limits, timeout)),
                None => value.map_err(CallError::from),
            },
            Err(error) => Err(classify(error, state, &self.limits, timeout)),
        };
        let elapsed_us = started.elapsed().as_micros() as u64;
        tracing::Span::current().record("elapsed_us", elapsed_us);
        match &result {
            Ok(_) => {
                self.consecutive_traps.store(0, Ordering::Relaxed);
                tracing::debug!(elapsed_us, "plugin call succeeded");
            }
            Err(error) => {
                self.record(error);
                tracing::warn!(elapsed_us, error = %error, class = ?error.class(), "plugin call failed");
            }
        }
        result
    }

    /// Every id a retention plugin returns must come from its batch.
    fn check_deletions(&self, batch: &[FileInfo], deletions: &[Deletion]) -> Result<(), CallError> {
        let mut ids: Vec<u64> = batch.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        match deletions
            .iter()
            .find(|d| ids.binary_search(&d.file).is_err())
        {
            Some(stray) => Err(self.invalid_output(format!(
                "asked to delete file {} which is not in its batch",
                stray.file
            ))),
            None => Ok(()),
        }
    }

    /// Starts a retention run: one instance that sees every batch of the run,
    /// each `plan` call with its own deadline.
    pub fn plan_session(&self) -> Result<PlanSession<'_>, CallError> {
        let WorldPre::Retention(pre) = &self.pre else {
            return Err(self.wrong_world("retention"));
        };
        self.check_quarantine()?;
        let mut store = self.new_store(Grants::default());
        let started = self.arm(&mut store);
        let instantiated = pre.instantiate(&mut store).map(Ok);
        let instance = self.settle(instantiated, store.data_mut(), started)?;
        Ok(PlanSession {
            plugin: self,
            store,
            instance,
            broken: false,
        })
    }

    /// Counts consecutive traps; quarantines at the threshold.
    fn record(&self, error: &CallError) {
        if !error.is_trap() {
            self.consecutive_traps.store(0, Ordering::Relaxed);
            return;
        }
        let traps = self.consecutive_traps.fetch_add(1, Ordering::Relaxed) + 1;
        if traps == self.runtime.config.quarantine_after {
            tracing::error!(plugin = %self.name, traps, "plugin quarantined until plugins are reloaded");
        }
    }
}

/// A retention run on one instance (see [`Plugin::plan_session`]).
pub struct PlanSession<'a> {
    plugin: &'a Plugin,
    store: Store<CallState>,
    instance: Retention,
    broken: bool,
}

impl PlanSession<'_> {
    /// Plans one batch. After a trap the instance is gone and every later
    /// call of the session fails.
    pub fn plan(
        &mut self,
        batch: &[FileInfo],
        params: &Params,
    ) -> Result<Vec<Deletion>, CallError> {
        if self.broken {
            return Err(CallError::Trap(
                "an earlier batch of this run trapped".into(),
            ));
        }
        let plugin = self.plugin;
        plugin.check_quarantine()?;
        let span = plugin.span("plan");
        let _entered = span.enter();
        let started = plugin.arm(&mut self.store);
        let outcome =
            self.instance
                .wharf_plugin_retention_policy()
                .call_plan(&mut self.store, batch, params);
        let result = plugin.settle(outcome, self.store.data_mut(), started);
        self.broken = result.as_ref().is_err_and(CallError::is_trap);
        let deletions = result?;
        plugin.check_deletions(batch, &deletions)?;
        Ok(deletions)
    }
}

fn file_grants(files: &[CallFile]) -> HashMap<u64, PathBuf> {
    files.iter().map(|f| (f.info.id, f.path.clone())).collect()
}

/// Epoch ticks covering `timeout`, rounded up, plus one for the partial tick
/// the call starts in.
fn epoch_ticks(timeout: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    (timeout.as_nanos().div_ceil(tick) as u64).saturating_add(1)
}

fn fault_error(fault: Fault, limits: &super::Limits, timeout: Duration) -> CallError {
    match fault {
        Fault::Deadline => CallError::Deadline(timeout),
        Fault::OutputLimit => CallError::OutputLimit(limits.output_bytes),
        Fault::AccessDenied(what) => CallError::AccessDenied(what),
    }
}

/// Turns a wasmtime error into the reason the call failed. Flags the host
/// recorded come first: a memory-limit hit surfaces in the guest as an
/// allocation failure, and a host-side fault as a trap.
fn classify(
    error: wasmtime::Error,
    state: &mut CallState,
    limits: &super::Limits,
    timeout: Duration,
) -> CallError {
    if let Some(fault) = state.fault.take() {
        return fault_error(fault, limits, timeout);
    }
    if state.limiter.denied {
        return CallError::MemoryLimit(limits.memory_bytes);
    }
    if let Some(denied) = error.downcast_ref::<DeniedImport>() {
        return CallError::AccessDenied(denied.to_string());
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => CallError::Deadline(timeout),
            Trap::StackOverflow => CallError::StackOverflow,
            trap => CallError::Trap(trap.to_string()),
        };
    }
    // Not a trap: the host could not instantiate (for example, the instance
    // pool is exhausted); worth retrying.
    CallError::Host(format!("{error:#}"))
}

/// A name a plugin returned must be a bare file name: it is joined to a
/// directory of the host's, and must never leave it.
fn bare_file_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(format!(
            "{name:?} is not a bare file name (it must not contain / \\ or be . or ..)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_ticks_round_up() {
        let ms = Duration::from_millis;
        assert_eq!(epoch_ticks(ms(100), ms(5)), 21);
        assert_eq!(epoch_ticks(ms(101), ms(5)), 22);
        assert_eq!(epoch_ticks(ms(0), ms(5)), 1);
    }

    #[test]
    fn names_that_leave_the_directory_are_rejected() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            "a\nb",
        ] {
            assert!(bare_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(bare_file_name("set-1.tar").is_ok());
        assert!(bare_file_name("..tar").is_ok());
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        assert_eq!(
            CallError::Transient("x".into()).class(),
            ErrorClass::Transient
        );
        assert_eq!(
            CallError::InvalidParams("x".into()).class(),
            ErrorClass::InvalidParams
        );
        assert_eq!(
            CallError::Deadline(Duration::ZERO).class(),
            ErrorClass::Terminal
        );
        assert_eq!(CallError::Quarantined(5).class(), ErrorClass::Terminal);
    }
}
