//! The quarantine of `action: hold`: what happens to a held message after
//! the client heard `250 ... held`.
//!
//! - [`release`] (`bccguard quarantine release ID --as bcc|split|original`)
//!   sends it through the session's own pipeline (`send.rs`): the same
//!   plan ([`crate::rewrite::plan`]: rewrite and check) and
//!   [`crate::upstream::connect`], one transaction (bcc, original) or one
//!   per recipient (split). A
//!   released original is a disclosure: the incident turns `disclosed`
//!   and its 72-hour clock starts at the release.
//! - [`drop_held`] deletes it and tells the sender.
//! - [`expire_due`] does the same after `quarantine.retention`.
//!
//! Every step lands on the incident with who (the OS user: `$SUDO_USER`,
//! else the name of the effective uid), when and how. A held message is
//! claimed before it is sent, so two releases, or a release and an expiry, never both act on it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::incident::Workflow;
use crate::incident::store::{self, HoldState, NewNotice, NoticeKind, Step, Store, StoreError};
use crate::policy;

mod send;

use send::send;
pub use send::{ReleaseError, Released};

/// How a held message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReleaseAs {
    /// External recipients hidden, as `action: bcc` does.
    Bcc,
    /// One copy per recipient, as `action: split` does.
    Split,
    /// Unchanged (Bcc headers removed): the list is disclosed.
    Original,
}

impl ReleaseAs {
    /// Every way out, in the order the docs list them.
    pub const ALL: [ReleaseAs; 3] = [ReleaseAs::Bcc, ReleaseAs::Split, ReleaseAs::Original];

    /// `bcc`, `split`, `original`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseAs::Bcc => "bcc",
            ReleaseAs::Split => "split",
            ReleaseAs::Original => "original",
        }
    }

    /// The detail of a `released` (or `release failed`) step:
    /// `as bcc: 6 of 6 recipients accepted` from the CLI, `as bcc via
    /// console: ...` from the console. [`ReleaseAs::of_detail`] and
    /// [`By::of_detail`] read it back: the metrics count releases from the
    /// register, since the process that releases is not always the one
    /// Prometheus scrapes.
    pub fn detail(self, by: By, outcome: impl std::fmt::Display) -> String {
        format!("as {}{}: {outcome}", self.as_str(), by.via())
    }

    /// How a release went out, from its step's detail (or the part before
    /// the colon, `as bcc`, `as bcc via console`); `None` if it is not one.
    pub fn of_detail(detail: &str) -> Option<ReleaseAs> {
        let head = detail.strip_prefix("as ")?.split(':').next()?;
        let word = head.split(" via ").next()?;
        Self::ALL.into_iter().find(|how| how.as_str() == word)
    }
}

/// Where a decision was taken, for the register's step and the `by` label
/// of `bccguard_quarantine_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// `bccguard quarantine ...` (the step's actor is the OS user).
    Cli,
    /// The DPO console (the actor is the console user).
    Console,
    /// The sender's own link from its hold notice (the actor is the
    /// sender's address).
    Sender,
}

impl By {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            By::Cli => "cli",
            By::Console => "console",
            By::Sender => "sender",
        }
    }

    /// What the step's detail says of it: nothing for the CLI (the
    /// register's steps keep the form they always had), ` via console`.
    fn via(self) -> &'static str {
        match self {
            By::Cli => "",
            By::Console => " via console",
            By::Sender => " via sender link",
        }
    }

    /// Where a step's decision was taken, from its detail.
    pub fn of_detail(detail: &str) -> By {
        let head = detail.split(':').next().unwrap_or(detail);
        if head.contains("via console") {
            By::Console
        } else if head.contains("via sender link") {
            By::Sender
        } else {
            By::Cli
        }
    }
}

/// Why a quarantine command failed; names the incident.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// The store refused (not found, not held...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message could not be sent; it stays held.
    #[error("incident {id}: not released, the message stays held: {why}")]
    NotSent {
        /// The incident.
        id: String,
        /// Upstream's answer or the failure. Not a `source`: the message
        /// already ends with it, and the CLI prints the chain.
        why: ReleaseError,
    },
}

/// Who runs this command, as the register records it: `$SUDO_USER` (the
/// person behind `sudo`), else the system's name for the effective uid
/// (`getpwuid`, not `$USER`: a container or a systemd shell often has no
/// `$USER`, and a user can set it to anything), else `uid N`. Never
/// "unknown": Art. 5(2) asks the controller to show who decided.
pub fn actor() -> String {
    let uid = nix::unistd::Uid::effective();
    let system = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    actor_from(std::env::var("SUDO_USER").ok(), system, uid.as_raw())
}

/// [`actor`] from its inputs, so each case can be tested.
fn actor_from(sudo_user: Option<String>, system: Option<String>, uid: u32) -> String {
    let sudo = sudo_user.filter(|v| !v.trim().is_empty());
    let system = system.filter(|v| !v.is_empty());
    sudo.or(system).unwrap_or_else(|| format!("uid {uid}"))
}

/// The notices for an end of a hold. The sender always hears of a drop or
/// expiry (the mail it handed over will not arrive); of a release only if
/// it was told of the hold.
/// A sender who decided itself (its link) is not told what it just did.
fn end_notices(cfg: &Config, event: &str, by: By) -> Vec<NewNotice> {
    let mut out = Vec::new();
    let told = event != "released" || cfg.incidents.sender_notice.contains(&policy::Action::Hold);
    if told && by != By::Sender {
        out.push(NewNotice {
            kind: NoticeKind::Sender,
            event: event.into(),
        });
    }
    if cfg.incidents.webhook.is_some() {
        out.push(NewNotice {
            kind: NoticeKind::Webhook,
            event: event.into(),
        });
    }
    out
}

/// Sends a held message on; on failure it stays held (and the failure is
/// a step on the incident). From the CLI; [`release_by`] says where else.
pub async fn release(
    store: &Arc<dyn Store>,
    cfg: &Config,
    id: &str,
    how: ReleaseAs,
    actor: &str,
) -> Result<Released, QuarantineError> {
    release_by(store, cfg, id, how, actor, By::Cli).await
}

/// [`release`], decided `by` the CLI or the console.
pub async fn release_by(
    store: &Arc<dyn Store>,
    cfg: &Config,
    id: &str,
    how: ReleaseAs,
    actor: &str,
    by: By,
) -> Result<Released, QuarantineError> {
    let now = crate::clock::now() as i64;
    let key = id.to_string();
    let held = store::call(store, move |s| s.claim(&key, now)).await?;
    let result = send(cfg, &held, how).await;
    let (id, actor) = (id.to_string(), actor.to_string());
    match result {
        Ok(released) => {
            let step = Step::now(&actor, "released", how.detail(by, &released.summary));
            let disclosed = (how == ReleaseAs::Original).then_some(crate::clock::now() as i64);
            let notices = end_notices(cfg, "released", by);
            store::call(store, move |s| {
                s.finish(&id, HoldState::Released, &step, disclosed, &notices)
            })
            .await?;
            Ok(released)
        }
        Err(why) => {
            let step = Step::now(&actor, "release failed", how.detail(by, &why));
            let key = id.clone();
            store::call(store, move |s| s.unclaim(&key, &step)).await?;
            Err(QuarantineError::NotSent { id, why })
        }
    }
}

/// Deletes a held message and tells the sender (from the CLI).
pub async fn drop_held(
    store: &Arc<dyn Store>,
    cfg: &Config,
    id: &str,
    actor: &str,
) -> Result<(), QuarantineError> {
    drop_by(store, cfg, id, actor, By::Cli).await
}

/// [`drop_held`], decided `by` the CLI or the console.
pub async fn drop_by(
    store: &Arc<dyn Store>,
    cfg: &Config,
    id: &str,
    actor: &str,
    by: By,
) -> Result<(), QuarantineError> {
    // The CLI's steps keep the form they always had; the others say where
    // before the colon, as a release does ([`By::of_detail`] reads it).
    let detail = match by {
        By::Cli => "deleted after review; the sender is told".to_string(),
        By::Console => format!(
            "{}: deleted after review; the sender is told",
            by.via().trim_start()
        ),
        By::Sender => format!("{}: discarded by the sender", by.via().trim_start()),
    };
    let step = Step::now(actor, "dropped", detail);
    let notices = end_notices(cfg, "dropped", by);
    let id = id.to_string();
    store::call(store, move |s| {
        s.finish(&id, HoldState::Dropped, &step, None, &notices)
    })
    .await?;
    Ok(())
}

/// How often held mail is checked against `quarantine.retention`, at most
/// (a shorter retention is checked as often as it is long).
pub const EXPIRY_POLL: Duration = Duration::from_secs(5);

/// Expires held mail until shutdown. Its own task: the notifier only
/// sends, and is woken when an expiry queued the sender's notice.
pub async fn run_expiry(wf: Workflow, mut stop: watch::Receiver<bool>) {
    loop {
        if expire_due(&wf).await > 0 {
            wf.wake.notify_one();
        }
        forget_due(&wf).await;
        let retention = wf.config().quarantine.retention;
        let poll = EXPIRY_POLL.min(retention.max(Duration::from_secs(1)));
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Deletes the affected addresses kept past `incidents.keep_recipients`.
pub async fn forget_due(wf: &Workflow) {
    let now = crate::clock::now() as i64;
    match store::call(&wf.store, move |s| s.forget_affected(now)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            incidents = n,
            "affected addresses deleted after incidents.keep_recipients"
        ),
        Err(e) => tracing::error!("affected addresses not deleted: {e}"),
    }
}

/// Drops what has waited longer than `quarantine.retention`; returns how
/// many it dropped.
pub async fn expire_due(wf: &Workflow) -> usize {
    let cfg = wf.config();
    let retention = cfg.quarantine.retention;
    let cutoff = crate::clock::now() as i64 - retention.as_secs() as i64;
    let due = match store::call(&wf.store, move |s| s.held_before(cutoff)).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!("quarantine expiry: {e}");
            return 0;
        }
    };
    let mut expired = 0;
    for id in due {
        let step = Step::now(
            "bccguard",
            "expired",
            format!(
                "not released within {}: deleted; the sender is told",
                humantime::format_duration(retention)
            ),
        );
        let notices = end_notices(&cfg, "expired", By::Cli);
        let key = id.clone();
        match store::call(&wf.store, move |s| {
            s.finish(&key, HoldState::Expired, &step, None, &notices)
        })
        .await
        {
            Ok(()) => {
                expired += 1;
                tracing::warn!(incident = %id, "held message expired and deleted");
            }
            // Released or dropped meanwhile: nothing to do.
            Err(StoreError::NotHeld { .. }) => {}
            Err(e) => tracing::error!(incident = %id, "quarantine expiry: {e}"),
        }
    }
    expired
}

#[cfg(test)]
mod tests {
    use super::{By, ReleaseAs, actor_from};

    #[test]
    fn a_release_step_names_how_and_where_and_is_read_back() {
        for how in ReleaseAs::ALL {
            for by in [By::Cli, By::Console, By::Sender] {
                let detail = how.detail(by, "6 of 6 recipients accepted: 250 ok");
                assert_eq!(ReleaseAs::of_detail(&detail), Some(how), "{detail}");
                assert_eq!(By::of_detail(&detail), by, "{detail}");
                // The store hands over the part before the colon.
                let head = detail.split(':').next().unwrap();
                assert_eq!(ReleaseAs::of_detail(head), Some(how));
                assert_eq!(By::of_detail(head), by);
            }
            // The CLI's steps keep the form they always had.
            let cli = how.detail(By::Cli, "x");
            assert_eq!(cli, format!("as {}: x", how.as_str()));
        }
        assert_eq!(
            By::of_detail("via console: deleted after review"),
            By::Console
        );
        assert_eq!(
            By::of_detail("deleted after review; the sender is told"),
            By::Cli
        );
        for other in ["", "as", "as bccx: 1", "bcc: 1", "as : 1"] {
            assert_eq!(ReleaseAs::of_detail(other), None, "{other:?}");
        }
    }

    #[test]
    fn the_actor_is_the_person_behind_sudo_then_the_system_user_then_the_uid() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(actor_from(s("anna"), s("root"), 0), "anna");
        assert_eq!(actor_from(s("anna"), s("anna"), 1000), "anna");
        assert_eq!(actor_from(s("anna"), None, 0), "anna");
        assert_eq!(actor_from(None, s("bccguard"), 998), "bccguard");
        assert_eq!(actor_from(s(" "), s("root"), 0), "root");
        // A uid the system cannot name (a container's random uid).
        assert_eq!(actor_from(None, None, 100_123), "uid 100123");
    }

    #[test]
    fn the_actor_of_this_process_is_never_unknown() {
        let who = super::actor();
        assert!(!who.is_empty() && who != "unknown", "{who}");
    }
}
