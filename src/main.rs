//! The `bccguard` command line: `serve`, `check`, `explain`, `health`, and
//! the DPO's `quarantine` and `incident` commands on the store.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use bccguard::config::Config;
use bccguard::incident::quarantine::ReleaseAs;
use bccguard::relay::Shared;
use bccguard::relay::server::{self, Listeners};

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
        /// Envelope recipient (repeatable); default: the visible addresses.
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
    /// Held messages (`action: hold`): list, show, release, drop.
    Quarantine {
        /// policy.yaml of the guard (for store.path and the upstream).
        #[arg(long, short, env = "BCCGUARD_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: QuarantineCmd,
    },
    /// The incident register: list incidents, draft an Art. 33 notification.
    Incident {
        /// policy.yaml of the guard (for store.path and incidents.*).
        #[arg(long, short, env = "BCCGUARD_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: IncidentCmd,
    },
}

#[derive(Subcommand, Debug)]
enum QuarantineCmd {
    /// Messages waiting for a decision.
    List,
    /// One held message: the incident, its steps, the header section.
    Show {
        /// Incident id.
        id: String,
        /// Print the whole message as held (RFC 5322) instead.
        #[arg(long)]
        raw: bool,
    },
    /// Send it on through the upstream, rewritten as chosen.
    Release {
        /// Incident id.
        id: String,
        /// bcc (recipients hidden), split (one copy each) or original
        /// (unchanged: a disclosure; the 72-hour clock starts).
        #[arg(long = "as", value_enum, default_value = "bcc")]
        how: ReleaseAs,
    },
    /// Delete it; the sender is told.
    Drop {
        /// Incident id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum IncidentCmd {
    /// Incidents in the register, oldest first.
    List {
        /// Only those of the last ... (e.g. 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only `prevented` or `disclosed` ones.
        #[arg(long)]
        class: Option<String>,
    },
    /// One incident with every workflow step.
    Show {
        /// Incident id.
        id: String,
    },
    /// Draft an Art. 33 notification for the supervisory authority.
    Report {
        /// Incident id.
        id: String,
        /// de or en.
        #[arg(long, default_value = "de")]
        lang: String,
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
        Cmd::Quarantine { config, command } => {
            load(config.as_ref()).and_then(|c| workflow(|| quarantine(c, command)))
        }
        Cmd::Incident { config, command } => {
            load(config.as_ref()).and_then(|c| workflow(|| incident(c, command)))
        }
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
        .block_on(bccguard::relay::health::probe(addr, endpoint))
        .with_context(|| format!("GET {endpoint} on {addr}"))?;
    anyhow::ensure!(code == 200, "GET {endpoint} on {addr}: HTTP {code}");
    println!("GET {endpoint} on {addr}: HTTP 200");
    Ok(())
}

/// Runs a store command on a small runtime (store calls go to the
/// blocking pool; a release talks to the upstream).
fn workflow<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f())
}

fn open_store(config: &Config) -> anyhow::Result<Arc<dyn bccguard::incident::store::Store>> {
    let path = &config.store.path;
    let store = bccguard::incident::store::SqliteStore::open_existing(path).with_context(|| {
        format!(
            "store.path {}: cannot open the guard's database{}",
            path.display(),
            if path.is_relative() {
                " (a relative path: run this in the guard's working directory, e.g. /var/lib/bccguard)"
            } else {
                ""
            }
        )
    })?;
    Ok(Arc::new(store))
}

async fn quarantine(config: Config, command: QuarantineCmd) -> anyhow::Result<()> {
    use bccguard::incident::store::call;
    let store = open_store(&config)?;
    let actor = bccguard::incident::quarantine::actor();
    match command {
        QuarantineCmd::List => {
            let held = call(&store, |s| s.held()).await?;
            let retention = config.quarantine.retention.as_secs() as i64;
            println!("{} held message(s)", held.len());
            for i in &held {
                let r = &i.record;
                println!(
                    "{}  held {}  expires {}  {}  {} external  {}  \"{}\"",
                    r.id,
                    r.time,
                    bccguard::incident::notify::rfc3339(i.recorded_at + retention),
                    i.hold.map_or("", |h| h.as_str()),
                    r.visible_external,
                    r.header_from.as_deref().unwrap_or(&r.mail_from),
                    r.subject.as_deref().unwrap_or_default()
                );
            }
        }
        QuarantineCmd::Show { id, raw } => {
            let key = id.clone();
            let held = call(&store, move |s| s.held_message(&key)).await?;
            if raw {
                use std::io::Write;
                std::io::stdout().write_all(&held.message)?;
                return Ok(());
            }
            print_incident(&store, &id).await?;
            let head = held
                .message
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(&held.message[..], |end| &held.message[..end + 2]);
            println!(
                "\nenvelope: from <{}>, {} recipient(s)",
                held.mail_from,
                held.rcpts.len()
            );
            println!("header section as held:\n{}", String::from_utf8_lossy(head));
            println!(
                "body: {} bytes (bccguard quarantine show {id} --raw)",
                held.message.len() - head.len()
            );
        }
        QuarantineCmd::Release { id, how } => {
            let done =
                bccguard::incident::quarantine::release(&store, &config, &id, how, &actor).await?;
            println!(
                "incident {id}: released as {} by {actor}: {}",
                how.as_str(),
                done.summary
            );
            for r in done.refused {
                println!("  refused by upstream: {r}");
            }
        }
        QuarantineCmd::Drop { id } => {
            bccguard::incident::quarantine::drop_held(&store, &config, &id, &actor).await?;
            println!("incident {id}: dropped by {actor}; the sender will be told");
        }
    }
    Ok(())
}

async fn print_incident(
    store: &Arc<dyn bccguard::incident::store::Store>,
    id: &str,
) -> anyhow::Result<()> {
    let key = id.to_string();
    let (i, steps) =
        bccguard::incident::store::call(store, move |s| Ok((s.incident(&key)?, s.steps(&key)?)))
            .await?;
    println!("{}", serde_json::to_string_pretty(&i.record)?);
    println!("class now: {}", i.class);
    if let Some(d) = bccguard::incident::notify::deadline(&i) {
        println!(
            "Art. 33 deadline: {}",
            bccguard::incident::notify::rfc3339(d)
        );
    }
    println!("steps:");
    for s in steps {
        println!("  {}  {:<14} {:<16} {}", s.time, s.step, s.actor, s.detail);
    }
    Ok(())
}

async fn incident(config: Config, command: IncidentCmd) -> anyhow::Result<()> {
    use bccguard::incident::store::{Class, call};
    let store = open_store(&config)?;
    match command {
        IncidentCmd::List { since, class } => {
            let since = match since {
                Some(s) => {
                    let d = humantime::parse_duration(&s)
                        .with_context(|| format!("--since {s:?}: not a duration (e.g. 24h, 7d)"))?;
                    bccguard::clock::now() as i64 - d.as_secs() as i64
                }
                None => 0,
            };
            let class =
                match class {
                    Some(c) => Some(Class::parse(&c).with_context(|| {
                        format!("--class {c:?}: expected prevented or disclosed")
                    })?),
                    None => None,
                };
            let list = call(&store, move |s| s.incidents(since, class)).await?;
            println!("{}", bccguard::incident::report::LIST_HEADER);
            for i in &list {
                println!("{}", bccguard::incident::report::list_line(i));
            }
            println!("{} incident(s)", list.len());
        }
        IncidentCmd::Show { id } => print_incident(&store, &id).await?,
        IncidentCmd::Report { id, lang } => {
            let lang = bccguard::incident::notify::Lang::parse(&lang)
                .with_context(|| format!("--lang {lang:?}: expected de or en"))?;
            let key = id.clone();
            let (i, steps) = call(&store, move |s| Ok((s.incident(&key)?, s.steps(&key)?))).await?;
            let now = bccguard::clock::now() as i64;
            print!(
                "{}",
                bccguard::incident::report::draft(&config, &i, &steps, now, lang)
            );
            let step = bccguard::incident::store::Step::now(
                &bccguard::incident::quarantine::actor(),
                "report drafted",
                format!("Art. 33 draft ({lang:?})"),
            );
            // The draft is printed either way; a read-only register only
            // misses the step.
            if let Err(e) = call(&store, move |s| s.add_step(&id, &step)).await {
                eprintln!("warning: the step \"report drafted\" was not recorded: {e}");
            }
        }
    }
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
