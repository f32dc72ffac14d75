//! The incident workflow: what happens after the relay has found a mail
//! showing too many external addresses.
//!
//! | module | owns |
//! |---|---|
//! | [`record`] | the incident record and its JSON-lines log (fsynced) |
//! | [`store`] | the incident register, the quarantine and the notice outbox (SQLite, behind a trait) |
//! | [`quarantine`] | held messages (`action: hold`): release, drop, expiry |
//! | [`groups`] | approved open groups: made from a held message, removed |
//! | [`notify`] | mails to the DPO and to senders, the webhook, from the outbox |
//! | [`report`] | the Art. 33 draft and the incident list |
//! | [`tally`] | the register and quarantine in numbers, for `/metrics` |
//!
//! The relay ([`crate::relay`]) writes incidents and held mail here; this
//! folder never imports the relay. Its long-running tasks (the notifier,
//! the quarantine's expiry) get a [`Workflow`] with only the handles they
//! use, and a release leaves through [`crate::upstream`], like the relay's
//! own copies.

pub mod groups;
pub mod notify;
pub mod quarantine;
pub mod record;
pub mod report;
pub mod sender_link;
pub mod store;
pub mod tally;

pub use record::{IncidentLog, Record};

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::metrics::Metrics;
use store::Store;

/// What the incident workflow's long-running tasks may use of the running
/// process, and nothing more.
#[derive(Clone)]
pub struct Workflow {
    /// The configuration in force (swapped by a reload).
    pub config: Arc<ArcSwap<Config>>,
    /// The incident register, quarantine and notice outbox.
    pub store: Arc<dyn Store>,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// Notified when an incident queued a notice.
    pub wake: Arc<tokio::sync::Notify>,
}

impl Workflow {
    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }
}
