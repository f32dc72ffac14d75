//! `bccguard serve`: the state, the reload on SIGHUP or a changed file, the
//! listeners, and the drain on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use bccguard::relay::Shared;
use bccguard::relay::server::{self, Listeners};

/// Runs the guard until SIGTERM or Ctrl-C, then drains.
pub fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = super::load(path.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        // The state first (opening the store takes a moment), then the
        // SIGHUP handler, then the listeners: once a probe can connect, a
        // SIGHUP reloads instead of ending the process.
        let shared = Arc::new(Shared::new(config.clone()).with_context(|| {
            format!(
                "cannot open incident log {}, spool or store",
                config.incidents.path.display()
            )
        })?);
        #[cfg(unix)]
        spawn_reload(shared.clone(), path.clone());
        let listeners = Listeners::bind(&config).await?;
        for l in &listeners.smtp {
            tracing::info!("SMTP on {}", l.local_addr()?);
        }
        for l in &listeners.smtps {
            tracing::info!("SMTP with implicit TLS on {}", l.local_addr()?);
        }
        if let Some(m) = &listeners.metrics {
            tracing::info!("metrics on http://{}/metrics", m.local_addr()?);
        }
        if let Some(c) = &listeners.console {
            let scheme = if config.console.tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!("console on {scheme}://{}/", c.local_addr()?);
        }
        tracing::info!(
            upstream = ?config.upstream.target,
            threshold = config.policy.max_external_recipients,
            action = %config.policy.action,
            "bccguard ready"
        );
        server::run(shared, listeners, shutdown_signal()).await?;
        Ok(())
    })
}

/// SIGHUP (`systemctl reload`, `kill -HUP`) asks for a reload of
/// policy.yaml; the watcher also reloads when the file changes. Without a
/// file (the embedded default) there is nothing to reload, and SIGHUP only
/// says so: by default it would end the process.
#[cfg(unix)]
fn spawn_reload(shared: Arc<Shared>, path: Option<PathBuf>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler: reload only when the file changes");
        if let Some(path) = path {
            tokio::spawn(async move {
                let _keep = tx;
                bccguard::relay::reload::watch(
                    shared,
                    path,
                    rx,
                    bccguard::relay::reload::POLL_INTERVAL,
                )
                .await;
            });
        }
        return;
    };
    let has_file = path.is_some();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if !has_file {
                tracing::warn!("SIGHUP: running on the embedded default policy; nothing to reload");
            } else if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    if let Some(path) = path {
        tokio::spawn(bccguard::relay::reload::watch(
            shared,
            path,
            rx,
            bccguard::relay::reload::POLL_INTERVAL,
        ));
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
