//! The DPO's `group` commands: approve an open group from a held incident,
//! list, show and remove groups. Approving writes the group and a step on
//! the incident; a running guard picks the change up within seconds
//! (`bccguard::relay::groups`).

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use bccguard::config::Config;
use bccguard::incident::groups::{self, sender_text};
use bccguard::incident::notify::rfc3339;
use bccguard::incident::store::{ApprovedGroup, Store, call};

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Approve the visible external addresses of a held incident as a
    /// group that may see each other: a later mail from the same sender to
    /// these addresses (or some of them) passes unchanged.
    Approve {
        /// The held incident whose addresses form the group.
        #[arg(long = "from-incident")]
        from_incident: String,
        /// The group's name (shown in records and the metric's label).
        #[arg(long)]
        name: String,
        /// How long it lasts (e.g. 180d); default and longest:
        /// groups.max_age.
        #[arg(long)]
        expires: Option<String>,
        /// Let the group apply to mail from any sender, not only the
        /// incident's envelope sender.
        #[arg(long = "any-sender")]
        any_sender: bool,
    },
    /// Every group, with its sender and expiry.
    List,
    /// One group: who approved it, when, and its addresses.
    Show {
        /// The group's name.
        name: String,
    },
    /// End a group: the next such mail is decided by the policy again.
    Remove {
        /// The group's name.
        name: String,
    },
}

/// Runs one `group` command on the guard's store.
pub async fn group(config: Config, command: GroupCmd) -> anyhow::Result<()> {
    let store = super::dpo::open_store(&config)?;
    let actor = bccguard::incident::quarantine::actor();
    match command {
        GroupCmd::Approve {
            from_incident,
            name,
            expires,
            any_sender,
        } => {
            let expires = expires
                .map(|e| {
                    humantime::parse_duration(e.trim())
                        .ok()
                        .filter(|d| !d.is_zero())
                        .with_context(|| format!("--expires {e:?}: not a duration (e.g. 180d)"))
                })
                .transpose()?;
            let done = groups::approve(
                &store,
                &config,
                &from_incident,
                &name,
                expires,
                any_sender,
                &actor,
            )
            .await?;
            let g = &done.group;
            println!(
                "group {:?} approved by {actor} from incident {from_incident}: {} external address(es), {}, expires {}",
                g.name,
                g.addresses.len(),
                sender_text(g),
                rfc3339(g.expires_at)
            );
            if done.capped {
                println!(
                    "  --expires is longer than groups.max_age ({}): cut to it",
                    humantime::format_duration(config.groups.max_age)
                );
            }
            if done.left_out > 0 {
                println!(
                    "  {} visible element(s) that are not addresses left out: a mail showing them is not covered",
                    done.left_out
                );
            }
            println!(
                "  the held message itself is still held: bccguard quarantine release {from_incident} --as original"
            );
        }
        GroupCmd::List => list(&store).await?,
        GroupCmd::Show { name } => show(&store, &name).await?,
        GroupCmd::Remove { name } => {
            let g = groups::remove(&store, &name, &actor).await?;
            println!(
                "group {:?} removed by {actor} ({} address(es), from incident {})",
                g.name,
                g.addresses.len(),
                g.incident
            );
        }
    }
    Ok(())
}

/// `in force` or `EXPIRED`, at `now`.
fn state(g: &ApprovedGroup, now: i64) -> &'static str {
    if now < g.expires_at {
        "in force"
    } else {
        "EXPIRED"
    }
}

async fn list(store: &Arc<dyn Store>) -> anyhow::Result<()> {
    let all = call(store, |s| s.groups()).await?;
    let now = bccguard::clock::now() as i64;
    println!("{} group(s)", all.len());
    for g in &all {
        println!(
            "{:?}  {} address(es)  {}  expires {} ({})  approved by {} from incident {}",
            g.name,
            g.addresses.len(),
            sender_text(g),
            rfc3339(g.expires_at),
            state(g, now),
            g.approved_by,
            g.incident
        );
    }
    Ok(())
}

async fn show(store: &Arc<dyn Store>, name: &str) -> anyhow::Result<()> {
    let all = call(store, |s| s.groups()).await?;
    let g = all
        .iter()
        .find(|g| g.name == name)
        .with_context(|| format!("group {name:?}: not found (bccguard group list)"))?;
    let now = bccguard::clock::now() as i64;
    println!("group:       {}", g.name);
    println!("applies to:  {}", sender_text(g));
    println!(
        "approved:    {} by {}",
        rfc3339(g.approved_at),
        g.approved_by
    );
    println!("expires:     {} ({})", rfc3339(g.expires_at), state(g, now));
    println!("incident:    {}", g.incident);
    println!("addresses:   {}", g.addresses.len());
    for a in &g.addresses {
        println!("  {a}");
    }
    Ok(())
}
