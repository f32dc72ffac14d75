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
//!   [`crate::notify`]. A restart loses none of them.
//!
//! The trait is blocking (call it from `spawn_blocking`) and small, so a
//! shared database can serve a fleet later. SQLite runs in WAL mode with
//! `synchronous=FULL` (every commit is fsynced) and a busy timeout, so the
//! CLI (`bccguard quarantine release`) can work on the same file while the
//! guard runs; a held message is claimed with a conditional UPDATE, so a
//! release and an expiry never both act on it.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::incident::Record;

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
}

impl Class {
    /// `prevented` or `disclosed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Prevented => "prevented",
            Class::Disclosed => "disclosed",
        }
    }

    /// Parses `prevented` / `disclosed`.
    pub fn parse(s: &str) -> Option<Class> {
        [Class::Prevented, Class::Disclosed]
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
            time: crate::incident::now_rfc3339(),
            actor: actor.to_string(),
            step: step.to_string(),
            detail: detail.into(),
        }
    }
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
    /// Records an incident, its first steps, the held message (for `hold`)
    /// and the notices about it, in one durable transaction.
    fn record(
        &self,
        incident: &Incident,
        steps: &[Step],
        held: Option<&Held>,
        notices: &[NewNotice],
    ) -> Result<(), StoreError>;
    /// One incident.
    fn incident(&self, id: &str) -> Result<Incident, StoreError>;
    /// Incidents recorded at or after `since` (Unix seconds), optionally of
    /// one class, oldest first.
    fn incidents(&self, since: i64, class: Option<Class>) -> Result<Vec<Incident>, StoreError>;
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
    /// from `held`): deletes the message and recipients, records the step,
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
}

/// The schema; `user_version` says which one a file has.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    class TEXT NOT NULL,
    disclosed_at INTEGER,
    action TEXT NOT NULL,
    rule TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    subject TEXT,
    visible_external INTEGER NOT NULL,
    envelope_recipients INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_time ON incidents (recorded_at);
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident TEXT NOT NULL REFERENCES incidents (id),
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    step TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_by_incident ON steps (incident);
CREATE TABLE IF NOT EXISTS quarantine (
    incident TEXT PRIMARY KEY REFERENCES incidents (id),
    held_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    claimed_at INTEGER,
    mail_from TEXT NOT NULL,
    mail_params TEXT NOT NULL,
    rcpts TEXT NOT NULL,
    received TEXT NOT NULL,
    message BLOB
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident TEXT NOT NULL REFERENCES incidents (id),
    kind TEXT NOT NULL,
    event TEXT NOT NULL,
    created INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    sent_at INTEGER,
    batch TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, next_attempt);
PRAGMA user_version = 1;
";

/// The store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating) the database and its schema (the guard). A new
    /// file is made readable by its owner only: it holds held messages.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let new = !path.exists();
        let store = Self::setup(Connection::open(path)?)?;
        #[cfg(unix)]
        if new {
            use std::os::unix::fs::PermissionsExt;
            // SQLite gives the -wal and -shm files the main file's mode.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(store)
    }

    /// Opens an existing database only (the DPO's commands): a relative
    /// `store.path` run from the wrong directory must say so, not answer
    /// from a new, empty register.
    pub fn open_existing(path: &Path) -> Result<SqliteStore, StoreError> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Self::setup(Connection::open_with_flags(path, flags)?)
    }

    fn setup(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers (the CLI) never block the guard's writes; FULL: a
        // commit is fsynced before it returns, so "250 held" means durable.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One row of [`INCIDENT_COLUMNS`]: id, record, class, disclosed_at,
/// recorded_at, hold state.
type IncidentRow = (String, String, String, Option<i64>, i64, Option<String>);

const INCIDENT_COLUMNS: &str = "i.id, i.record, i.class, i.disclosed_at, i.recorded_at, q.state";

fn incident_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn to_incident(
    (id, record, class, disclosed_at, recorded_at, hold): IncidentRow,
) -> Result<Incident, StoreError> {
    let record: Record = serde_json::from_str(&record)
        .map_err(|e| StoreError::Corrupt(id.clone(), e.to_string()))?;
    Ok(Incident {
        record,
        class: Class::parse(&class).unwrap_or(Class::Disclosed),
        disclosed_at,
        recorded_at,
        hold: hold.as_deref().map(HoldState::parse),
    })
}

fn insert_step(tx: &Connection, id: &str, s: &Step) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO steps (incident, time, actor, step, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, s.time, s.actor, s.step, s.detail],
    )?;
    Ok(())
}

fn insert_notices(tx: &Connection, id: &str, notices: &[NewNotice]) -> rusqlite::Result<()> {
    let now = crate::spool::now() as i64;
    for n in notices {
        tx.execute(
            "INSERT INTO outbox (incident, kind, event, created, next_attempt) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![id, n.kind.as_str(), n.event, now],
        )?;
    }
    Ok(())
}

impl SqliteStore {
    fn hold_state(conn: &Connection, id: &str) -> Result<HoldState, StoreError> {
        conn.query_row(
            "SELECT state FROM quarantine WHERE incident = ?1",
            [id],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .map(|s| HoldState::parse(&s))
        .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn read_held(conn: &Connection, id: &str) -> Result<Held, StoreError> {
        let row = conn
            .query_row(
                "SELECT held_at, mail_from, mail_params, rcpts, received, message FROM quarantine
                 WHERE incident = ?1 AND state IN ('held', 'releasing')",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<Vec<u8>>>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((held_at, mail_from, mail_params, rcpts, received, message)) = row else {
            let state = Self::hold_state(conn, id)?;
            return Err(StoreError::NotHeld {
                id: id.to_string(),
                state: state.as_str(),
            });
        };
        let rcpts = serde_json::from_str(&rcpts)
            .map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))?;
        Ok(Held {
            id: id.to_string(),
            held_at,
            mail_from,
            mail_params,
            rcpts,
            received,
            message: message.unwrap_or_default(),
        })
    }
}

impl Store for SqliteStore {
    fn record(
        &self,
        incident: &Incident,
        steps: &[Step],
        held: Option<&Held>,
        notices: &[NewNotice],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let r = &incident.record;
        let json = serde_json::to_string(r)
            .map_err(|e| StoreError::Corrupt(r.id.clone(), e.to_string()))?;
        tx.execute(
            "INSERT INTO incidents (id, time, recorded_at, class, disclosed_at, action, rule, mail_from,
                subject, visible_external, envelope_recipients, outcome, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                r.id,
                r.time,
                incident.recorded_at,
                incident.class.as_str(),
                incident.disclosed_at,
                r.action,
                r.rule,
                r.mail_from,
                r.subject,
                r.visible_external as i64,
                r.envelope_recipients as i64,
                r.outcome,
                json
            ],
        )?;
        for s in steps {
            insert_step(&tx, &r.id, s)?;
        }
        if let Some(h) = held {
            let rcpts = serde_json::to_string(&h.rcpts)
                .map_err(|e| StoreError::Corrupt(r.id.clone(), e.to_string()))?;
            tx.execute(
                "INSERT INTO quarantine (incident, held_at, state, mail_from, mail_params, rcpts, received, message)
                 VALUES (?1, ?2, 'held', ?3, ?4, ?5, ?6, ?7)",
                params![h.id, h.held_at, h.mail_from, h.mail_params, rcpts, h.received, h.message],
            )?;
        }
        insert_notices(&tx, &r.id, notices)?;
        tx.commit()?;
        Ok(())
    }

    fn incident(&self, id: &str) -> Result<Incident, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {INCIDENT_COLUMNS} FROM incidents i LEFT JOIN quarantine q ON q.incident = i.id WHERE i.id = ?1"),
                [id],
                incident_row,
            )
            .optional()?;
        to_incident(row.ok_or_else(|| StoreError::NotFound(id.to_string()))?)
    }

    fn incidents(&self, since: i64, class: Option<Class>) -> Result<Vec<Incident>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i LEFT JOIN quarantine q ON q.incident = i.id
             WHERE i.recorded_at >= ?1 AND (?2 IS NULL OR i.class = ?2) ORDER BY i.recorded_at, i.id"
        ))?;
        let rows = stmt.query_map(params![since, class.map(Class::as_str)], incident_row)?;
        rows.map(|r| to_incident(r?)).collect()
    }

    fn steps(&self, id: &str) -> Result<Vec<Step>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT time, actor, step, detail FROM steps WHERE incident = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(Step {
                time: r.get(0)?,
                actor: r.get(1)?,
                step: r.get(2)?,
                detail: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_step(&self, id: &str, step: &Step) -> Result<(), StoreError> {
        insert_step(&self.conn(), id, step)?;
        Ok(())
    }

    fn held(&self) -> Result<Vec<Incident>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i JOIN quarantine q ON q.incident = i.id
             WHERE q.state IN ('held', 'releasing') ORDER BY q.held_at, i.id"
        ))?;
        let rows = stmt.query_map([], incident_row)?;
        rows.map(|r| to_incident(r?)).collect()
    }

    fn held_message(&self, id: &str) -> Result<Held, StoreError> {
        Self::read_held(&self.conn(), id)
    }

    fn claim(&self, id: &str, now: i64) -> Result<Held, StoreError> {
        let conn = self.conn();
        let changed = conn.execute(
            "UPDATE quarantine SET state = 'releasing', claimed_at = ?2 WHERE incident = ?1
             AND (state = 'held' OR (state = 'releasing' AND claimed_at < ?3))",
            params![id, now, now - STALE_CLAIM_SECS],
        )?;
        if changed == 0 {
            let state = Self::hold_state(&conn, id)?;
            return Err(StoreError::NotHeld {
                id: id.to_string(),
                state: state.as_str(),
            });
        }
        Self::read_held(&conn, id)
    }

    fn unclaim(&self, id: &str, step: &Step) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE quarantine SET state = 'held', claimed_at = NULL WHERE incident = ?1 AND state = 'releasing'",
            [id],
        )?;
        insert_step(&tx, id, step)?;
        tx.commit()?;
        Ok(())
    }

    fn finish(
        &self,
        id: &str,
        state: HoldState,
        step: &Step,
        disclosed_at: Option<i64>,
        notices: &[NewNotice],
    ) -> Result<(), StoreError> {
        let from = match state {
            HoldState::Released => "releasing",
            _ => "held",
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // Message and recipients go: the register keeps the counts only.
        let changed = tx.execute(
            "UPDATE quarantine SET state = ?2, message = NULL, rcpts = '[]', claimed_at = NULL
             WHERE incident = ?1 AND state = ?3",
            params![id, state.as_str(), from],
        )?;
        if changed == 0 {
            drop(tx);
            let now = Self::hold_state(&conn, id)?;
            return Err(StoreError::NotHeld {
                id: id.to_string(),
                state: now.as_str(),
            });
        }
        if let Some(at) = disclosed_at {
            tx.execute(
                "UPDATE incidents SET class = 'disclosed', disclosed_at = ?2 WHERE id = ?1",
                params![id, at],
            )?;
        }
        insert_step(&tx, id, step)?;
        insert_notices(&tx, id, notices)?;
        tx.commit()?;
        Ok(())
    }

    fn held_before(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT incident FROM quarantine WHERE state = 'held' AND held_at <= ?1 ORDER BY held_at",
        )?;
        let rows = stmt.query_map([cutoff], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn due_notices(&self, now: i64) -> Result<Vec<Notice>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, incident, kind, event, attempts, created FROM outbox
             WHERE state = 'pending' AND next_attempt <= ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([now], |r| {
            Ok(Notice {
                id: r.get(0)?,
                incident: r.get(1)?,
                kind: NoticeKind::parse(&r.get::<_, String>(2)?),
                event: r.get(3)?,
                attempts: r.get(4)?,
                created: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn notices_sent(&self, ids: &[i64], batch: &str, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in ids {
            tx.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?2, batch = ?3, attempts = attempts + 1 WHERE id = ?1",
                params![id, now, batch],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn notice_retry(&self, id: i64, next: i64, error: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1",
            params![id, next, error],
        )?;
        Ok(())
    }

    fn notice_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET attempts = attempts + 1, state = 'failed', last_error = ?2 WHERE id = ?1",
            params![id, error],
        )?;
        Ok(())
    }

    fn mails_sent_since(
        &self,
        kind: NoticeKind,
        since: i64,
    ) -> Result<(usize, Option<i64>), StoreError> {
        let conn = self.conn();
        let (count, last) = conn.query_row(
            "SELECT COUNT(DISTINCT batch), MAX(sent_at) FROM outbox
             WHERE kind = ?1 AND state = 'sent' AND sent_at >= ?2",
            params![kind.as_str(), since],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
        )?;
        Ok((count as usize, last))
    }
}

#[cfg(test)]
mod tests;
