//! `wharf run`: the daemon, stopped by SIGTERM or Ctrl-C, reloaded by SIGHUP.

use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::daemon::{self, Signal};
use crate::store::DataDir;

pub(super) fn run(data_dir: DataDir, config: Config) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let signal = tokio::select! {
                    _ = terminate.recv() => Signal::Shutdown,
                    _ = interrupt.recv() => Signal::Shutdown,
                    _ = hangup.recv() => Signal::Reload,
                };
                if sender.send(signal).await.is_err() || signal == Signal::Shutdown {
                    break;
                }
            }
        });
        daemon::run(data_dir, config, receiver).await
    })?;
    Ok(ExitCode::SUCCESS)
}
