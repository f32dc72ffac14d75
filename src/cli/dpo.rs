//! The DPO's commands on the store: `quarantine list|show|release|drop` and
//! `incident list|show|report`. Each runs on a small runtime of its own,
//! next to a running guard.

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use bccguard::config::Config;
use bccguard::incident::quarantine::ReleaseAs;
use bccguard::incident::store::{Store, call};

#[derive(Subcommand, Debug)]
pub enum QuarantineCmd {
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
pub enum IncidentCmd {
    /// Incidents in the register, oldest first.
    List {
        /// Only those of the last ... (e.g. 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only `prevented`, `disclosed` or `allowed` ones.
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
    /// The affected addresses of a disclosed (or held) incident, one per
    /// line, for informing each person (Art. 34). Kept for
    /// `incidents.keep_recipients` after the disclosure; every look is a
    /// step on the incident.
    Recipients {
        /// Incident id.
        id: String,
    },
}

/// Runs a store command on a small runtime (store calls go to the
/// blocking pool; a release talks to the upstream).
pub fn workflow<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f())
}

pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let path = &config.store.path;
    // One line naming the file: a relative store.path is resolved against
    // the policy file's directory, so a wrong --config is the likely cause.
    if !path.exists() {
        anyhow::bail!(
            "no database at {} (store.path): is --config the guard's policy file? The guard creates the database when it starts",
            path.display()
        );
    }
    match bccguard::incident::store::SqliteStore::open_existing(path) {
        Ok(store) => Ok(Arc::new(store)),
        // The store error already names SQLite's reason; no chain, so the
        // admin reads it once.
        Err(e) => Err(anyhow::anyhow!(
            "cannot open the guard's database {} (store.path): {e}",
            path.display()
        )),
    }
}

pub async fn quarantine(config: Config, command: QuarantineCmd) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    let actor = bccguard::incident::quarantine::actor();
    match command {
        QuarantineCmd::List => list_held(&store, &config).await?,
        QuarantineCmd::Show { id, raw } => show_held(&store, &id, raw).await?,
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

/// `quarantine list`: every held message, with when it expires.
async fn list_held(store: &Arc<dyn Store>, config: &Config) -> anyhow::Result<()> {
    let held = call(store, |s| s.held()).await?;
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
    Ok(())
}

/// `quarantine show ID [--raw]`: the incident, the envelope and the header
/// section as held (or the whole message as it is).
async fn show_held(store: &Arc<dyn Store>, id: &str, raw: bool) -> anyhow::Result<()> {
    let key = id.to_string();
    let held = call(store, move |s| s.held_message(&key)).await?;
    if raw {
        use std::io::Write;
        std::io::stdout().write_all(&held.message)?;
        return Ok(());
    }
    print_incident(store, id).await?;
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
    Ok(())
}

async fn print_incident(store: &Arc<dyn Store>, id: &str) -> anyhow::Result<()> {
    let key = id.to_string();
    let (i, steps) = call(store, move |s| Ok((s.incident(&key)?, s.steps(&key)?))).await?;
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

pub async fn incident(config: Config, command: IncidentCmd) -> anyhow::Result<()> {
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
            let class = match class {
                Some(c) => Some(Class::parse(&c).with_context(|| {
                    format!("--class {c:?}: expected prevented, disclosed or allowed")
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
            let (i, steps, kept) = call(&store, move |s| {
                Ok((s.incident(&key)?, s.steps(&key)?, s.affected(&key)?))
            })
            .await?;
            let now = bccguard::clock::now() as i64;
            print!(
                "{}",
                bccguard::incident::report::draft(&config, &i, &steps, &kept, now, lang)
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
        IncidentCmd::Recipients { id } => {
            let key = id.clone();
            let (i, kept) =
                call(&store, move |s| Ok((s.incident(&key)?, s.affected(&key)?))).await?;
            if kept.addresses.is_empty() {
                anyhow::bail!(
                    "incident {id}: no affected addresses are kept ({}; a prevented incident keeps none, a disclosed one keeps them for incidents.keep_recipients)",
                    i.class
                );
            }
            // Who looked at personal data is part of the record (Art. 5(2)).
            let step = bccguard::incident::store::Step::now(
                &bccguard::incident::quarantine::actor(),
                "recipients viewed",
                format!("{} affected address(es)", kept.addresses.len()),
            );
            call(&store, move |s| s.add_step(&id, &step)).await?;
            let mut out = String::new();
            for a in &kept.addresses {
                out.push_str(a);
                out.push('\n');
            }
            super::print(&out)?;
        }
    }
    Ok(())
}
