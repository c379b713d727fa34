//! Waiting for the signals that ask a foreground process to stop: SIGTERM and Ctrl-C.

use anyhow::Context as _;

/// Listens for SIGTERM and SIGINT from the moment it is made, so a signal that arrives while
/// a node is still starting is not lost (nor kills the process without a graceful leave).
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers.
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignals {})
        }
    }

    /// Waits for the next stop signal and names it.
    pub async fn recv(&mut self) -> anyhow::Result<&'static str> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Ok("SIGTERM"),
                _ = self.int.recv() => Ok("Ctrl-C"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .context("cannot listen for Ctrl-C")?;
            Ok("Ctrl-C")
        }
    }
}

/// SIGHUP, which asks a running node to reload its certificates. Listening replaces the
/// default action (terminate), so install it before anything slow.
pub struct ReloadSignal {
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl ReloadSignal {
    /// Installs the handler.
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ReloadSignal {
                hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(ReloadSignal {})
        }
    }

    /// Waits for the next SIGHUP (forever where there is none).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.hup.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            std::future::pending::<()>().await;
        }
    }
}
