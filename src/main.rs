//! The `bccguard` command line: `serve`, `check`, `explain`, `health`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use bccguard::config::Config;
use bccguard::server::{self, Listeners, Shared};

/// SMTP submission guard against open distribution lists (To/Cc leaks).
#[derive(Parser, Debug)]
#[command(name = "bccguard", version, about)]
struct Cli {
    /// Log format: text (for a terminal) or json (for log shippers).
    #[arg(
        long,
        global = true,
        env = "BCCGUARD_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the guard.
    Serve {
        /// policy.yaml; without it the embedded default is used.
        #[arg(long, short, env = "BCCGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a policy file; exits non-zero and lists every problem.
    Check {
        /// policy.yaml; without it the embedded default is checked.
        #[arg(long, short, env = "BCCGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show what the guard would do with a message, sending nothing.
    Explain {
        /// policy.yaml; without it the embedded default is used.
        #[arg(long, short, env = "BCCGUARD_CONFIG")]
        config: Option<PathBuf>,
        /// The message (.eml, RFC 5322).
        message: PathBuf,
        /// Envelope recipient (repeatable); default: the To/Cc addresses.
        #[arg(long = "rcpt")]
        rcpt: Vec<String>,
        /// Envelope sender; default: the header From.
        #[arg(long = "from")]
        from: Option<String>,
    },
    /// Ask a running guard's /healthz (or /readyz) on metrics.listen; exits
    /// 0 on HTTP 200. For container health checks in images without a shell.
    Health {
        /// policy.yaml of the running guard (for metrics.listen).
        #[arg(long, short, env = "BCCGUARD_CONFIG")]
        config: Option<PathBuf>,
        /// Ask /readyz (can it take mail now?) instead of /healthz.
        #[arg(long)]
        ready: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Cmd::Serve { config } => serve(config),
        Cmd::Check { config } => check(config),
        Cmd::Explain {
            config,
            message,
            rcpt,
            from,
        } => load(config.as_ref()).and_then(|c| explain(&c, &message, &rcpt, from.as_deref())),
        Cmd::Health { config, ready } => health(config, ready),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bccguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BCCGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        None => Ok(Config::embedded_default()?),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Ok(Config::load(&text, &p.display().to_string())?)
        }
    }
}

fn check(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(path.as_ref())?;
    let name = path.map_or("embedded default policy.yaml".to_string(), |p| {
        p.display().to_string()
    });
    println!(
        "{name}: OK ({} listener(s), threshold {}, action {}, {} rule(s))",
        config.server.listen.len(),
        config.policy.max_external_recipients,
        config.policy.action,
        config.policy.rules.len()
    );
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    Ok(())
}

fn explain(
    config: &Config,
    message: &PathBuf,
    rcpt: &[String],
    from: Option<&str>,
) -> anyhow::Result<()> {
    let raw =
        std::fs::read(message).with_context(|| format!("cannot read {}", message.display()))?;
    let name = message.display().to_string();
    print!(
        "{}",
        bccguard::explain::explain(config, &name, &raw, rcpt, from)
    );
    Ok(())
}

fn health(path: Option<PathBuf>, ready: bool) -> anyhow::Result<()> {
    let config = load(path.as_ref())?;
    let addr = config
        .metrics
        .listen
        .context("metrics.listen is empty: the guard serves no health endpoint")?;
    let endpoint = if ready { "/readyz" } else { "/healthz" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = runtime
        .block_on(bccguard::health::probe(addr, endpoint))
        .with_context(|| format!("GET {endpoint} on {addr}"))?;
    anyhow::ensure!(code == 200, "GET {endpoint} on {addr}: HTTP {code}");
    println!("GET {endpoint} on {addr}: HTTP 200");
    Ok(())
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(path.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let listeners = Listeners::bind(&config).await?;
        let shared = Arc::new(Shared::new(config.clone()).with_context(|| {
            format!(
                "cannot open incident log {}",
                config.incidents.path.display()
            )
        })?);
        for l in &listeners.smtp {
            tracing::info!("SMTP on {}", l.local_addr()?);
        }
        for l in &listeners.smtps {
            tracing::info!("SMTP with implicit TLS on {}", l.local_addr()?);
        }
        if let Some(m) = &listeners.metrics {
            tracing::info!("metrics on http://{}/metrics", m.local_addr()?);
        }
        tracing::info!(
            upstream = ?config.upstream.target,
            threshold = config.policy.max_external_recipients,
            action = %config.policy.action,
            "bccguard ready"
        );
        #[cfg(unix)]
        spawn_reload(shared.clone(), path.clone());
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
                bccguard::reload::watch(shared, path, rx, bccguard::reload::POLL_INTERVAL).await;
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
        tokio::spawn(bccguard::reload::watch(
            shared,
            path,
            rx,
            bccguard::reload::POLL_INTERVAL,
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
