//! `wharf run`: the daemon, stopped by SIGTERM or Ctrl-C, reloaded by SIGHUP,
//! asked for a full cleanup by SIGUSR1.

use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::daemon::{self, Signal};
use crate::jobs::Handlers;
use crate::store::DataDir;

pub(super) fn run(data_dir: DataDir, config: Config) -> anyhow::Result<ExitCode> {
    serve(data_dir, config, Handlers::new())?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the daemon with `extra` job handlers beside the built-in ones,
/// driven by the process's signals, until SIGTERM or SIGINT.
pub fn serve(data_dir: DataDir, config: Config, extra: Handlers) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut user1 = signal(SignalKind::user_defined1())?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let signal = tokio::select! {
                    _ = terminate.recv() => Signal::Shutdown,
                    _ = interrupt.recv() => Signal::Shutdown,
                    _ = hangup.recv() => Signal::Reload,
                    _ = user1.recv() => Signal::FullCleanup,
                };
                if sender.send(signal).await.is_err() || signal == Signal::Shutdown {
                    break;
                }
            }
        });
        daemon::run_with(data_dir, config, receiver, extra).await
    })
}
