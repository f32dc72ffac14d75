//! The incident register, the quarantine and the outbox of notices: one
//! interface ([`Store`]) and its embedded implementation ([`SqliteStore`]).
//!
//! - **Register** (GDPR Art. 33(5): the controller documents every breach,
//!   its effects and the remedial action): every incident with its class
//!   and every workflow step on it (who, when, how).
//! - **Quarantine** (`action: hold`): the held message bytes and envelope,
//!   in the database as a BLOB, so one commit makes message, incident and
//!   notices durable together (no orphan files, nothing to fsync
//!   separately). The client hears 250 only after that commit. Once a
//!   message is released, dropped or expired, its bytes and recipient list
//!   are deleted (Art. 5(1)(c), data minimisation); the register keeps the
//!   counts.
//! - **Outbox**: notices to the DPO, to senders and to the webhook, written
//!   in the same transaction as the event they report, sent and retried by
//!   [`crate::incident::notify`]. A restart loses none of them.
//! - **Approved open groups** (`bccguard group approve`): the external
//!   addresses of a held incident that the DPO said may see each other,
//!   with the sender, who approved them and until when. The guard loads
//!   them into a snapshot ([`crate::policy::Groups`]) and looks for
//!   changes every few seconds ([`Store::groups_version`]).
//! - **Console accounts and sessions** (`bccguard user`, the DPO console):
//!   who may log in with which [`Role`], the password as an Argon2id PHC
//!   string only, and the live logins by the SHA-256 of their token only
//!   (`crate::console::auth` says why), so a copy of the file neither
//!   reveals a password nor opens a session.
//!
//! The trait is blocking (call it from `spawn_blocking`) and small, so a
//! shared database can serve a fleet later. SQLite runs in WAL mode with
//! `synchronous=FULL` (every commit is fsynced) and a busy timeout, so the
//! CLI (`bccguard quarantine release`) can work on the same file while the
//! guard runs; a held message is claimed with a conditional UPDATE, so a
//! release and an expiry never both act on it.

mod sqlite;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::incident::record::Record;

/// How long a writer waits for another process's transaction.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A release whose process died leaves its claim; after this long another
/// release may take it over.
pub const STALE_CLAIM_SECS: i64 = 600;

/// Whether personal data left the organisation (decides the 72-hour clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// A technical measure stopped the open list (reject, bcc, split,
    /// hold): documented in the register, nothing to notify (Art. 33(1):
    /// "unlikely to result in a risk").
    Prevented,
    /// The list went out open (monitor, an allow rule over the threshold, a
    /// released original): the 72-hour clock of Art. 33(1) runs.
    Disclosed,
    /// The list went out open to a group the DPO approved beforehand
    /// (`bccguard group approve`): its members may see each other, so no
    /// breach; recorded for the register, nobody notified.
    Allowed,
}

impl Class {
    /// `prevented` or `disclosed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Prevented => "prevented",
            Class::Disclosed => "disclosed",
            Class::Allowed => "allowed",
        }
    }

    /// Parses `prevented` / `disclosed` / `allowed`.
    pub fn parse(s: &str) -> Option<Class> {
        [Class::Prevented, Class::Disclosed, Class::Allowed]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One incident in the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// The record as written to the JSON-lines log.
    pub record: Record,
    /// Its class now (a released original turns it `disclosed`).
    pub class: Class,
    /// When the disclosure happened (Unix seconds; the decision, or the
    /// release of an original); `None` while prevented.
    pub disclosed_at: Option<i64>,
    /// When the guard recorded it (Unix seconds): the controller's
    /// awareness, since the guard is the controller's own measure.
    pub recorded_at: i64,
    /// The quarantine state, if the message was held.
    pub hold: Option<HoldState>,
}

/// Where a held message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    /// Waiting for a decision.
    Held,
    /// A release is sending it now.
    Releasing,
    /// Sent on by someone.
    Released,
    /// Deleted by someone; the sender was told.
    Dropped,
    /// Deleted after `quarantine.retention`; the sender was told.
    Expired,
}

impl HoldState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Releasing => "releasing",
            HoldState::Released => "released",
            HoldState::Dropped => "dropped",
            HoldState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> HoldState {
        match s {
            "releasing" => HoldState::Releasing,
            "released" => HoldState::Released,
            "dropped" => HoldState::Dropped,
            "expired" => HoldState::Expired,
            _ => HoldState::Held,
        }
    }
}

/// One step of the workflow on an incident (who, when, how).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// RFC 3339 UTC.
    pub time: String,
    /// The OS user for CLI steps, `bccguard` for the guard's own.
    pub actor: String,
    /// `recorded`, `held`, `notified`, `released`, `dropped`, `expired`,
    /// `release failed`, `notice failed`...
    pub step: String,
    /// How: the details.
    pub detail: String,
}

impl Step {
    /// A step happening now.
    pub fn now(actor: &str, step: &str, detail: impl Into<String>) -> Step {
        Step {
            time: crate::clock::now_rfc3339(),
            actor: actor.to_string(),
            step: step.to_string(),
            detail: detail.into(),
        }
    }
}

/// The external addresses a reader of an incident's mail could see: the
/// people concerned, whom the controller may have to inform one by one
/// (GDPR Art. 34). Kept only for disclosed incidents (and while a message
/// is held, since it may still be released as it is), for
/// `incidents.keep_recipients`, and shown only by `bccguard incident
/// recipients`; never in a notice, a log line or the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected {
    /// The addresses, normalised, in the order the mail showed them.
    pub addresses: Vec<String>,
    /// How long they are kept once the incident is disclosed, in seconds.
    pub keep_secs: i64,
}

/// Which incidents a register page shows (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterFilter {
    /// Only this class.
    pub class: Option<Class>,
    /// Only this action (`reject`, `hold`, ...).
    pub action: Option<String>,
    /// Only senders (envelope or header From) containing this text.
    pub sender: Option<String>,
    /// Recorded at or after (Unix seconds).
    pub since: Option<i64>,
    /// Recorded before (Unix seconds).
    pub until: Option<i64>,
}

/// What the register still keeps of an incident's affected addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// The addresses (empty: none kept, or no longer).
    pub addresses: Vec<String>,
    /// Until when (Unix seconds); `None` while the message is held.
    pub until: Option<i64>,
}

/// A held message: everything a release needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The incident id.
    pub id: String,
    /// When it was held (Unix seconds).
    pub held_at: i64,
    /// Envelope sender and raw MAIL parameters.
    pub mail_from: String,
    /// Raw MAIL parameters.
    pub mail_params: String,
    /// Envelope recipients with their raw RCPT parameters.
    pub rcpts: Vec<(String, String)>,
    /// The guard's `Received` header for it.
    pub received: String,
    /// The message as the client sent it.
    pub message: Vec<u8>,
}

/// What to send about an event, queued with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// A mail to `incidents.notify`.
    Dpo,
    /// A mail to the envelope sender.
    Sender,
    /// A POST to `incidents.webhook`.
    Webhook,
}

impl NoticeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Dpo => "dpo",
            NoticeKind::Sender => "sender",
            NoticeKind::Webhook => "webhook",
        }
    }

    fn parse(s: &str) -> NoticeKind {
        match s {
            "sender" => NoticeKind::Sender,
            "webhook" => NoticeKind::Webhook,
            _ => NoticeKind::Dpo,
        }
    }
}

/// A notice to queue: its kind and the event (`incident`, `hold`, `bcc`,
/// `split`, `released`, `dropped`, `expired`), which picks the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotice {
    /// Who gets it.
    pub kind: NoticeKind,
    /// What it is about.
    pub event: String,
}

/// A queued notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Row id.
    pub id: i64,
    /// The incident it is about.
    pub incident: String,
    /// Who gets it.
    pub kind: NoticeKind,
    /// What it is about.
    pub event: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was queued (Unix seconds).
    pub created: i64,
}

/// An approved open group in the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovedGroup {
    /// Its name (`--name`), unique; the metric's `group` label.
    pub name: String,
    /// The held incident it was made from.
    pub incident: String,
    /// The envelope sender it applies to (normal form); `None`: any
    /// sender (`--any-sender`).
    pub sender: Option<String>,
    /// The external addresses, normal form.
    pub addresses: Vec<String>,
    /// When (Unix seconds).
    pub approved_at: i64,
    /// Until when (Unix seconds).
    pub expires_at: i64,
    /// Who (the OS user of the CLI).
    pub approved_by: String,
}

impl ApprovedGroup {
    /// The group as the decision reads it.
    pub fn to_policy(&self) -> crate::policy::Group {
        crate::policy::Group {
            name: self.name.clone(),
            sender: self.sender.clone(),
            addresses: self.addresses.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// What a console account may do. Defined here, as the `role` column's
/// type; the permissions themselves (`may_decide`, `may_see_recipients`)
/// are the console's (`crate::console::auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The data-protection officer (or a deputy): decides on held mail,
    /// reads bodies and recipient lists.
    Dpo,
    /// Reads the register and the header sections of held mail; decides
    /// nothing.
    Viewer,
}

impl Role {
    /// Every role, in the order help texts list them.
    pub const ALL: [Role; 2] = [Role::Dpo, Role::Viewer];

    /// `dpo` or `viewer`: the stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Dpo => "dpo",
            Role::Viewer => "viewer",
        }
    }

    /// Parses `dpo` / `viewer` (exactly; the stored form).
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad: `{:<6}` aligns it in tables.
        f.pad(self.as_str())
    }
}

/// A console account (`bccguard user add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name, unique (normalised by `console::auth::normalize_user_name`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The password as an Argon2id PHC string, never the password itself.
    pub password_hash: String,
    /// When it was made (Unix seconds).
    pub created_at: i64,
    /// Who made it (the OS user of the CLI, as for workflow steps).
    pub created_by: String,
}

/// A console login. Named so beside the SMTP session of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The SHA-256 of the session token (`console::auth::session_key`):
    /// the token itself lives only in the browser's cookie.
    pub key: String,
    /// The account's name.
    pub user: String,
    /// A CSRF secret kept with the session, for a scheme that stores one;
    /// `None` with the console's own, which derives the CSRF token from
    /// the session token (`console::auth::csrf_token`).
    pub csrf: Option<String>,
    /// When it began (Unix seconds).
    pub created_at: i64,
    /// When it ends (Unix seconds): `created_at + console.session_ttl`.
    pub expires_at: i64,
    /// The client's address at login (for the account holder's own
    /// review), if known.
    pub client: Option<String>,
}

/// The register and the quarantine in numbers, for `/metrics`
/// ([`crate::incident::tally`]): one read, cheap enough for every scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages waiting for a decision (held, or being released now).
    pub waiting: u64,
    /// When the one waiting longest was held (Unix seconds).
    pub oldest_held_at: Option<i64>,
    /// Holds ended so far, by final state (released, dropped, expired)
    /// and, for a release or a drop, the start of its step's detail before
    /// the colon (`as bcc`, `as bcc via console`, `via console`): how many. Never fewer than before,
    /// since a quarantine row is kept (without its message) once ended.
    pub ended: Vec<(HoldState, Option<String>, u64)>,
    /// The earliest moment of disclosure (Unix seconds) among the
    /// disclosed incidents disclosed at or after the `since` given to
    /// [`Store::tally`].
    pub first_disclosed: Option<i64>,
}

/// A store failure, naming the incident where there is one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("store: {0}")]
    Db(#[from] rusqlite::Error),
    /// No such incident (or it was never held).
    #[error("incident {0}: not found")]
    NotFound(String),
    /// The held message is not in a state that allows this.
    #[error("incident {id}: the message is {state}, not held")]
    NotHeld {
        /// The incident.
        id: String,
        /// Its state now.
        state: &'static str,
    },
    /// A stored record did not parse.
    #[error("incident {0}: stored record unreadable: {1}")]
    Corrupt(String, String),
    /// The blocking task died.
    #[error("store task: {0}")]
    Task(String),
    /// `group approve` with a name in use.
    #[error("group {0:?} exists already (bccguard group remove it first)")]
    GroupExists(String),
    /// No group of that name.
    #[error("group {0:?}: not found")]
    NoGroup(String),
    /// `user add` with a name in use.
    #[error("user {0:?} exists already (bccguard user passwd changes its password)")]
    UserExists(String),
    /// No console account of that name (not [`StoreError::NotFound`],
    /// whose text names an incident).
    #[error("user {0:?}: not found (bccguard user list)")]
    NoUser(String),
}

/// An incident as the workflow's unit tests use it: 1494 external
/// addresses in 37 domains, no subject, sent by alice, recorded (and if
/// disclosed, disclosed) at 2021-03-01T10:00:00Z; `hold` for a held one.
#[cfg(test)]
pub(crate) fn sample(class: Class, hold: Option<HoldState>) -> Incident {
    let record = Record {
        id: "01ABC".into(),
        time: "2021-03-01T10:00:00Z".into(),
        action: if hold.is_some() { "hold" } else { "monitor" }.into(),
        class: class.as_str().into(),
        rule: "default".into(),
        client_ip: "192.0.2.1".into(),
        auth_user: Some("alice".into()),
        mail_from: "alice@example.org".into(),
        header_from: None,
        message_id: None,
        subject: None,
        visible_external: 1494,
        visible_internal: 0,
        external_domains: 37,
        display_names: 0,
        visible_attached: 0,
        visible_seen: Default::default(),
        envelope_recipients: 1494,
        size: 1,
        threshold: 10,
        domain_threshold: None,
        trigger: "addresses".into(),
        group: None,
        reason: "over threshold".into(),
        outcome: "delivered".into(),
        queue_id: "01ABC".into(),
    };
    Incident {
        record,
        class,
        disclosed_at: (class == Class::Disclosed).then_some(1_614_592_800),
        recorded_at: 1_614_592_800,
        hold,
    }
}

/// Runs a store call on the blocking pool (SQLite does file I/O and
/// fsyncs; the runtime's worker threads must not wait for that).
pub async fn call<T, F>(store: &std::sync::Arc<dyn Store>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// The register, quarantine and outbox. Blocking: call from
/// `spawn_blocking`.
pub trait Store: Send + Sync + fmt::Debug {
    /// Records an incident, its first steps, the held message (for `hold`),
    /// the notices about it and its affected addresses (for a disclosed or
    /// held incident), in one durable transaction. The addresses are kept
    /// until `disclosed_at + keep_secs`, or, while held, until the hold
    /// ends: a release as the original keeps them from then on, any other
    /// end deletes them.
    fn record(
        &self,
        incident: &Incident,
        steps: &[Step],
        held: Option<&Held>,
        notices: &[NewNotice],
        affected: Option<&Affected>,
    ) -> Result<(), StoreError>;
    /// The affected addresses the register still keeps of an incident.
    fn affected(&self, id: &str) -> Result<Kept, StoreError>;
    /// Deletes affected addresses kept past their time; returns how many
    /// incidents lost theirs.
    fn forget_affected(&self, now: i64) -> Result<usize, StoreError>;
    /// One incident.
    fn incident(&self, id: &str) -> Result<Incident, StoreError>;
    /// Incidents recorded at or after `since` (Unix seconds), optionally of
    /// one class, oldest first.
    fn incidents(&self, since: i64, class: Option<Class>) -> Result<Vec<Incident>, StoreError>;
    /// One page of the register, newest first, and how many match in
    /// all (the console's `/incidents`; `limit` bounds the page).
    fn register(
        &self,
        filter: &RegisterFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Incident>, usize), StoreError>;
    /// How many incidents of each class were recorded at or after
    /// `since` (the console's overview).
    fn count_by_class(&self, since: i64) -> Result<Vec<(Class, usize)>, StoreError>;
    /// The incidents that have a step named `step` (e.g. "authority
    /// notified"), by id.
    fn incidents_with_step(
        &self,
        step: &str,
    ) -> Result<std::collections::BTreeSet<String>, StoreError>;
    /// The workflow steps of an incident, in order.
    fn steps(&self, id: &str) -> Result<Vec<Step>, StoreError>;
    /// Adds a step.
    fn add_step(&self, id: &str, step: &Step) -> Result<(), StoreError>;
    /// Incidents whose message is held or being released, oldest first.
    fn held(&self) -> Result<Vec<Incident>, StoreError>;
    /// The held message (while held or being released).
    fn held_message(&self, id: &str) -> Result<Held, StoreError>;
    /// Claims a held message for a release (`held` -> `releasing`).
    fn claim(&self, id: &str, now: i64) -> Result<Held, StoreError>;
    /// Gives a claim back after a failed release, recording why.
    fn unclaim(&self, id: &str, step: &Step) -> Result<(), StoreError>;
    /// Ends a hold (`released` from `releasing`; `dropped` or `expired`
    /// from `held`): deletes the message and recipients (the affected
    /// addresses too, unless `disclosed_at` starts their keeping), records the step,
    /// marks the incident disclosed at `disclosed_at` if given, and queues
    /// the notices, in one transaction.
    fn finish(
        &self,
        id: &str,
        state: HoldState,
        step: &Step,
        disclosed_at: Option<i64>,
        notices: &[NewNotice],
    ) -> Result<(), StoreError>;
    /// The numbers `/metrics` shows; `disclosed_since` (Unix seconds)
    /// bounds [`Tally::first_disclosed`].
    fn tally(&self, disclosed_since: i64) -> Result<Tally, StoreError>;
    /// Held messages held at or before `cutoff` (Unix seconds).
    fn held_before(&self, cutoff: i64) -> Result<Vec<String>, StoreError>;
    /// Pending notices due at `now`.
    fn due_notices(&self, now: i64) -> Result<Vec<Notice>, StoreError>;
    /// Marks notices sent (`batch` names the mail that carried them).
    fn notices_sent(&self, ids: &[i64], batch: &str, now: i64) -> Result<(), StoreError>;
    /// Reschedules a notice after a failed attempt.
    fn notice_retry(&self, id: i64, next: i64, error: &str) -> Result<(), StoreError>;
    /// Gives up on a notice.
    fn notice_failed(&self, id: i64, error: &str) -> Result<(), StoreError>;
    /// Mails of `kind` sent since `since`, and when the last one went.
    fn mails_sent_since(
        &self,
        kind: NoticeKind,
        since: i64,
    ) -> Result<(usize, Option<i64>), StoreError>;
    /// Stores an approved group and `step` on its incident, in one
    /// transaction; a name in use is [`StoreError::GroupExists`].
    fn approve_group(&self, group: &ApprovedGroup, step: &Step) -> Result<(), StoreError>;
    /// Every approved group (expired ones too), by name.
    fn groups(&self) -> Result<Vec<ApprovedGroup>, StoreError>;
    /// Deletes a group, with `step` on its incident; returns what it was.
    fn remove_group(&self, name: &str, step: &Step) -> Result<ApprovedGroup, StoreError>;
    /// A number that changes whenever a group is approved or removed (the
    /// guard reloads its snapshot when it does).
    fn groups_version(&self) -> Result<i64, StoreError>;
    /// Stores a new console account; a name in use is
    /// [`StoreError::UserExists`].
    fn add_user(&self, user: &User) -> Result<(), StoreError>;
    /// One account, if there is one of that name.
    fn user(&self, name: &str) -> Result<Option<User>, StoreError>;
    /// Every account, by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;
    /// Deletes an account and ends its sessions, in one transaction;
    /// returns how many sessions ended. An unknown name is
    /// [`StoreError::NoUser`].
    fn remove_user(&self, name: &str) -> Result<usize, StoreError>;
    /// Replaces an account's password hash and ends its sessions (a
    /// changed password logs out whoever knew the old one, OWASP ASVS
    /// 3.3.2), in one transaction; returns how many sessions ended. An
    /// unknown name is [`StoreError::NoUser`].
    fn set_password(&self, name: &str, password_hash: &str) -> Result<usize, StoreError>;
    /// Stores a new login (its user must exist).
    fn create_session(&self, session: &ConsoleSession) -> Result<(), StoreError>;
    /// The login with this key and its account, if it is live at `now`
    /// (Unix seconds); an expired one is deleted and `None`, and so is one
    /// whose account is gone.
    fn session(&self, key: &str, now: i64) -> Result<Option<(ConsoleSession, User)>, StoreError>;
    /// Ends one login (logout); ending one that is gone is no error.
    fn delete_session(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes the logins expired at `now`; returns how many.
    fn forget_sessions(&self, now: i64) -> Result<usize, StoreError>;
    /// The secret key named `name` (e.g. `sender-link`): made once, from
    /// the system's random source, at its first use, and the same for
    /// every process on this store afterwards (the guard signs a link, the
    /// console checks it).
    fn key(&self, name: &str) -> Result<Vec<u8>, StoreError>;
}

pub use sqlite::SqliteStore;

#[cfg(test)]
mod tests;
