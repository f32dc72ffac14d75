//! [`SqliteStore`]: the [`Store`] in one SQLite file (WAL, `synchronous =
//! FULL`, a busy timeout so the CLI and the guard share it). The schema is
//! meant to be read by admins with `sqlite3`: key columns per incident,
//! the whole record as JSON next to them.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Affected, ApprovedGroup, BUSY_TIMEOUT, Class, ConsoleSession, Held, HoldState, Incident, Kept,
    NewNotice, Notice, NoticeKind, RegisterFilter, Role, STALE_CLAIM_SECS, Step, Store, StoreError,
    Tally, User,
};
use crate::incident::record::Record;

/// The schema; `user_version` says which one a file has (2: the approved
/// groups and their change log; 3: the affected addresses; 4: the console's
/// accounts and sessions). Every table is `IF NOT EXISTS`, so an older file
/// gains the new ones on open.
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
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY,
    incident TEXT NOT NULL REFERENCES incidents (id),
    sender TEXT,
    addresses TEXT NOT NULL,
    approved_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    approved_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS group_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    change TEXT NOT NULL,
    name TEXT NOT NULL
);
-- The people concerned by a disclosed (or still held) incident, for the
-- DPO's Art. 34 notification; until is NULL while the message is held.
CREATE TABLE IF NOT EXISTS affected (
    incident TEXT NOT NULL REFERENCES incidents (id),
    address TEXT NOT NULL,
    position INTEGER NOT NULL,
    keep_secs INTEGER NOT NULL,
    until INTEGER,
    PRIMARY KEY (incident, address)
);
CREATE INDEX IF NOT EXISTS affected_until ON affected (until);
-- The console's accounts (bccguard user): the password as an Argon2id PHC
-- string only.
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
-- Console logins by the SHA-256 of their token only: a copy of this file
-- opens none of them.
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users (name),
    csrf TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    client TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
-- Secret keys the guard makes for itself (the sender links' HMAC key).
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
PRAGMA user_version = 5;
";

/// Opens a write transaction. IMMEDIATE takes the write lock at BEGIN,
/// where the busy timeout applies: a DEFERRED one that read first and then
/// writes after another process (the guard, the CLI) committed fails at
/// once with "database is locked" in WAL mode, since its snapshot is stale
/// and waiting cannot help (SQLite's "BEGIN" documentation, SQLITE_BUSY_SNAPSHOT).
fn write_tx(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

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
    let now = crate::clock::now() as i64;
    for n in notices {
        tx.execute(
            "INSERT INTO outbox (incident, kind, event, created, next_attempt) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![id, n.kind.as_str(), n.event, now],
        )?;
    }
    Ok(())
}

/// The columns of [`group_row`].
const GROUP_COLUMNS: &str =
    "name, incident, sender, addresses, approved_at, expires_at, approved_by";

fn group_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ApprovedGroup, String)> {
    Ok((
        ApprovedGroup {
            name: r.get(0)?,
            incident: r.get(1)?,
            sender: r.get(2)?,
            addresses: Vec::new(),
            approved_at: r.get(4)?,
            expires_at: r.get(5)?,
            approved_by: r.get(6)?,
        },
        r.get(3)?,
    ))
}

/// The group with its address list parsed.
fn to_group((mut g, addresses): (ApprovedGroup, String)) -> Result<ApprovedGroup, StoreError> {
    g.addresses = serde_json::from_str(&addresses)
        .map_err(|e| StoreError::Corrupt(g.incident.clone(), e.to_string()))?;
    Ok(g)
}

/// One line of the groups' change log (its sequence is the version).
fn log_group_change(tx: &Connection, step: &Step, name: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO group_changes (time, actor, change, name) VALUES (?1, ?2, ?3, ?4)",
        params![step.time, step.actor, step.step, name],
    )?;
    Ok(())
}

/// The columns of [`user_row`].
const USER_COLUMNS: &str = "name, role, password, created_at, created_by";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
    Ok((
        User {
            name: r.get(0)?,
            role: Role::Viewer,
            password_hash: r.get(2)?,
            created_at: r.get(3)?,
            created_by: r.get(4)?,
        },
        r.get(1)?,
    ))
}

/// The account with its role parsed; an unknown role is corrupt, not a
/// viewer (an access decision never rests on a guess).
fn to_user((mut u, role): (User, String)) -> Result<User, StoreError> {
    u.role = Role::parse(&role)
        .ok_or_else(|| StoreError::Corrupt(u.name.clone(), format!("unknown role {role:?}")))?;
    Ok(u)
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
        affected: Option<&Affected>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
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
        if let Some(a) = affected {
            let until = incident.disclosed_at.map(|at| at + a.keep_secs);
            let mut stmt = tx.prepare(
                "INSERT OR IGNORE INTO affected (incident, address, position, keep_secs, until)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (i, address) in a.addresses.iter().enumerate() {
                stmt.execute(params![r.id, address, i as i64, a.keep_secs, until])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn affected(&self, id: &str) -> Result<Kept, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT address, until FROM affected WHERE incident = ?1 ORDER BY position")?;
        let rows = stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
        let mut kept = Kept::default();
        for row in rows {
            let (address, until) = row?;
            kept.addresses.push(address);
            kept.until = until;
        }
        Ok(kept)
    }

    fn forget_affected(&self, now: i64) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let incidents: i64 = tx.query_row(
            "SELECT COUNT(DISTINCT incident) FROM affected WHERE until IS NOT NULL AND until <= ?1",
            [now],
            |r| r.get(0),
        )?;
        tx.execute(
            "DELETE FROM affected WHERE until IS NOT NULL AND until <= ?1",
            [now],
        )?;
        tx.commit()?;
        Ok(incidents as usize)
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

    fn register(
        &self,
        filter: &RegisterFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Incident>, usize), StoreError> {
        let conn = self.conn();
        // One WHERE for the count and the page; the sender matches the
        // envelope sender or the record's header From, as text.
        let sender = filter.sender.as_ref().map(|s| {
            let escaped = s
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let wh = "WHERE (?1 IS NULL OR i.class = ?1) AND (?2 IS NULL OR i.action = ?2)
             AND (?3 IS NULL OR i.mail_from LIKE ?3 ESCAPE '\\' OR json_extract(i.record, '$.header_from') LIKE ?3 ESCAPE '\\')
             AND (?4 IS NULL OR i.recorded_at >= ?4) AND (?5 IS NULL OR i.recorded_at < ?5)";
        let class = filter.class.map(Class::as_str);
        let (limit, offset) = (limit as i64, offset as i64);
        let args = params![
            class,
            filter.action,
            sender,
            filter.since,
            filter.until,
            limit,
            offset
        ];
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM incidents i {wh}"),
            &args[..5],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i LEFT JOIN quarantine q ON q.incident = i.id
             {wh} ORDER BY i.recorded_at DESC, i.id DESC LIMIT ?6 OFFSET ?7"
        ))?;
        let rows = stmt.query_map(args, incident_row)?;
        let page = rows.map(|r| to_incident(r?)).collect::<Result<_, _>>()?;
        Ok((page, total as usize))
    }

    fn count_by_class(&self, since: i64) -> Result<Vec<(Class, usize)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT class, COUNT(*) FROM incidents WHERE recorded_at >= ?1 GROUP BY class",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (class, n) = row?;
            if let Some(c) = Class::parse(&class) {
                out.push((c, n as usize));
            }
        }
        Ok(out)
    }

    fn incidents_with_step(
        &self,
        step: &str,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT DISTINCT incident FROM steps WHERE step = ?1")?;
        let rows = stmt.query_map([step], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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
        let tx = write_tx(&mut conn)?;
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
        let tx = write_tx(&mut conn)?;
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
            // The people on the released original are concerned now.
            tx.execute(
                "UPDATE affected SET until = ?2 + keep_secs WHERE incident = ?1 AND until IS NULL",
                params![id, at],
            )?;
        } else {
            // Nobody's address left: nothing to keep (Art. 5(1)(c)).
            tx.execute(
                "DELETE FROM affected WHERE incident = ?1 AND until IS NULL",
                [id],
            )?;
        }
        insert_step(&tx, id, step)?;
        insert_notices(&tx, id, notices)?;
        tx.commit()?;
        Ok(())
    }

    fn tally(&self, disclosed_since: i64) -> Result<Tally, StoreError> {
        let conn = self.conn();
        let (waiting, oldest_held_at) = conn.query_row(
            "SELECT COUNT(*), MIN(held_at) FROM quarantine WHERE state IN ('held', 'releasing')",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
        )?;
        // One row per ended hold (the row stays, its message goes); a
        // release's how is the start of its step's detail ("as bcc: ...").
        let mut stmt = conn.prepare(
            "SELECT q.state, CASE WHEN q.state IN ('released', 'dropped') THEN (
                    SELECT NULLIF(substr(s.detail, 1, instr(s.detail, ':') - 1), '') FROM steps s
                    WHERE s.incident = q.incident AND s.step = q.state
                    ORDER BY s.seq DESC LIMIT 1) END AS how, COUNT(*)
             FROM quarantine q WHERE q.state IN ('released', 'dropped', 'expired')
             GROUP BY q.state, how ORDER BY q.state, how",
        )?;
        let ended = stmt
            .query_map([], |r| {
                Ok((
                    HoldState::parse(&r.get::<_, String>(0)?),
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        // Reported to the authority (the console's step): done, no clock.
        let first_disclosed = conn.query_row(
            "SELECT MIN(COALESCE(disclosed_at, recorded_at)) FROM incidents i
             WHERE class = 'disclosed' AND COALESCE(disclosed_at, recorded_at) >= ?1
             AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.incident = i.id AND s.step = 'authority notified')",
            [disclosed_since],
            |r| r.get::<_, Option<i64>>(0),
        )?;
        Ok(Tally {
            waiting: waiting as u64,
            oldest_held_at,
            ended,
            first_disclosed,
        })
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
        let tx = write_tx(&mut conn)?;
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

    fn approve_group(&self, group: &ApprovedGroup, step: &Step) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let addresses = serde_json::to_string(&group.addresses)
            .map_err(|e| StoreError::Corrupt(group.incident.clone(), e.to_string()))?;
        let inserted = tx.execute(
            &format!(
                "INSERT OR IGNORE INTO groups ({GROUP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
            params![
                group.name,
                group.incident,
                group.sender,
                addresses,
                group.approved_at,
                group.expires_at,
                group.approved_by
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::GroupExists(group.name.clone()));
        }
        insert_step(&tx, &group.incident, step)?;
        log_group_change(&tx, step, &group.name)?;
        tx.commit()?;
        Ok(())
    }

    fn groups(&self) -> Result<Vec<ApprovedGroup>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {GROUP_COLUMNS} FROM groups ORDER BY name"))?;
        let rows = stmt.query_map([], group_row)?;
        rows.map(|r| to_group(r?)).collect()
    }

    fn remove_group(&self, name: &str, step: &Step) -> Result<ApprovedGroup, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let row = tx
            .query_row(
                &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE name = ?1"),
                [name],
                group_row,
            )
            .optional()?;
        let group = to_group(row.ok_or_else(|| StoreError::NoGroup(name.to_string()))?)?;
        tx.execute("DELETE FROM groups WHERE name = ?1", [name])?;
        insert_step(&tx, &group.incident, step)?;
        log_group_change(&tx, step, name)?;
        tx.commit()?;
        Ok(group)
    }

    fn groups_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn();
        Ok(
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM group_changes", [], |r| {
                r.get(0)
            })?,
        )
    }

    fn add_user(&self, user: &User) -> Result<(), StoreError> {
        let inserted = self.conn().execute(
            &format!("INSERT OR IGNORE INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            params![
                user.name,
                user.role.as_str(),
                user.password_hash,
                user.created_at,
                user.created_by
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::UserExists(user.name.clone()));
        }
        Ok(())
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                [name],
                user_row,
            )
            .optional()?;
        row.map(to_user).transpose()
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
        let rows = stmt.query_map([], user_row)?;
        rows.map(|r| to_user(r?)).collect()
    }

    fn remove_user(&self, name: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let ended = tx.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
        if tx.execute("DELETE FROM users WHERE name = ?1", [name])? == 0 {
            return Err(StoreError::NoUser(name.to_string()));
        }
        tx.commit()?;
        Ok(ended)
    }

    fn set_password(&self, name: &str, password_hash: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let changed = tx.execute(
            "UPDATE users SET password = ?2 WHERE name = ?1",
            params![name, password_hash],
        )?;
        if changed == 0 {
            return Err(StoreError::NoUser(name.to_string()));
        }
        let ended = tx.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
        tx.commit()?;
        Ok(ended)
    }

    fn create_session(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO sessions (key, user, csrf, created_at, expires_at, client)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                session.key,
                session.user,
                session.csrf,
                session.created_at,
                session.expires_at,
                session.client
            ],
        )?;
        Ok(())
    }

    fn session(&self, key: &str, now: i64) -> Result<Option<(ConsoleSession, User)>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT s.key, s.user, s.csrf, s.created_at, s.expires_at, s.client,
                        u.name, u.role, u.password, u.created_at, u.created_by
                 FROM sessions s LEFT JOIN users u ON u.name = s.user WHERE s.key = ?1",
                [key],
                |r| {
                    let session = ConsoleSession {
                        key: r.get(0)?,
                        user: r.get(1)?,
                        csrf: r.get(2)?,
                        created_at: r.get(3)?,
                        expires_at: r.get(4)?,
                        client: r.get(5)?,
                    };
                    let user = match r.get::<_, Option<String>>(6)? {
                        None => None,
                        Some(name) => Some((
                            User {
                                name,
                                role: Role::Viewer,
                                password_hash: r.get(8)?,
                                created_at: r.get(9)?,
                                created_by: r.get(10)?,
                            },
                            r.get::<_, String>(7)?,
                        )),
                    };
                    Ok((session, user))
                },
            )
            .optional()?;
        let Some((session, user)) = row else {
            return Ok(None);
        };
        match user {
            Some(user) if now < session.expires_at => Ok(Some((session, to_user(user)?))),
            // Expired, or its account is gone: the row serves nobody.
            _ => {
                conn.execute("DELETE FROM sessions WHERE key = ?1", [key])?;
                Ok(None)
            }
        }
    }

    fn delete_session(&self, key: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE key = ?1", [key])?;
        Ok(())
    }

    fn forget_sessions(&self, now: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?)
    }

    fn key(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let mut fresh = [0u8; KEY_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh).map_err(
            |_| StoreError::Corrupt(name.into(), "no random source for a new key".into()),
        )?;
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        // Whoever comes first makes it; everyone reads the same one.
        tx.execute(
            "INSERT OR IGNORE INTO keys (name, key, created_at) VALUES (?1, ?2, ?3)",
            params![name, fresh.as_slice(), crate::clock::now() as i64],
        )?;
        let key: Vec<u8> =
            tx.query_row("SELECT key FROM keys WHERE name = ?1", [name], |r| r.get(0))?;
        tx.commit()?;
        Ok(key)
    }
}

/// A key's length: 256 bits, the HMAC-SHA256 block's worth of secret.
const KEY_BYTES: usize = 32;
