//! The durable spool: copies the guard has taken responsibility for.
//!
//! The guard owns no message, except in two cases: a `split` whose first
//! copies upstream accepted and a later copy it did not; and, with
//! `upstream.recipients: deferred`, a message upstream took for some
//! recipients and refused for others (one copy per refused recipient).
//! Answering 4xx would make the client re-send every copy (duplicates);
//! answering 5xx would lie about the copies already delivered. So the
//! remaining copies are written
//! here, each a self-contained single-recipient message, fsynced before the
//! client hears 250, and from then on the guard delivers them: retried with
//! exponential backoff across restarts, and on permanent failure or expiry
//! the sender gets a delivery status notification ([`crate::relay::dsn`]).
//!
//! Layout: `<id>.eml` (the exact bytes of the copy) and `<id>.json` (its
//! envelope and retry state). Both are written to a temporary name, fsynced
//! and renamed; the `.json` appears last, so an entry without it is an
//! unfinished write and is cleaned up. At-least-once: a crash between
//! upstream's 250 and the removal of the entry delivers that copy again.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::relay::dsn;
use crate::smtp::reply::Reply;
use crate::upstream::{self, UpstreamError};

/// The envelope and retry state of one spooled copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// The transaction id the client was given.
    pub queue_id: String,
    /// Envelope sender (empty for a DSN).
    pub mail_from: String,
    /// Raw MAIL parameters.
    pub mail_params: String,
    /// The one recipient.
    pub rcpt: String,
    /// Raw RCPT parameters.
    pub rcpt_params: String,
    /// When the client handed the message over (Unix seconds).
    pub created: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before (Unix seconds).
    pub next_attempt: u64,
    /// Upstream's last answer or the failure.
    pub last_error: Option<String>,
    /// A permanent failure is already known: bounce without retrying.
    pub failed: bool,
    /// This entry is itself a delivery status notification.
    pub dsn: bool,
}

impl Entry {
    /// One recipient's copy of the client's transaction `queue_id`, created
    /// `now` and due at once. `refusal`: upstream's answer that made the
    /// copy the guard's; it counts as the first attempt, and a permanent
    /// one is bounced without retrying.
    pub fn new(
        queue_id: &str,
        (mail_from, mail_params): (&str, &str),
        (rcpt, rcpt_params): &(String, String),
        now: u64,
        refusal: Option<&Reply>,
    ) -> Entry {
        Entry {
            queue_id: queue_id.to_string(),
            mail_from: mail_from.to_string(),
            mail_params: mail_params.to_string(),
            rcpt: rcpt.clone(),
            rcpt_params: rcpt_params.clone(),
            created: now,
            attempts: u32::from(refusal.is_some()),
            next_attempt: now,
            last_error: refusal.map(Reply::summary),
            failed: refusal.is_some_and(Reply::is_permanent),
            dsn: false,
        }
    }
}

pub use crate::config::RetryPolicy;

/// A spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating) the directory and removes unfinished writes.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let spool = Self {
            dir: dir.to_path_buf(),
        };
        for name in spool.names(".eml")? {
            if !spool.path(&name, ".json").exists() {
                let _ = fs::remove_file(spool.path(&name, ".eml"));
            }
        }
        for entry in fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(spool)
    }

    fn path(&self, name: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{name}{ext}"))
    }

    fn names(&self, ext: &str) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(ext))
                    .map(String::from)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Stores one copy durably: when this returns Ok, the copy survives a
    /// crash. Blocking (call from `spawn_blocking`).
    pub fn store(&self, entry: &Entry, parts: &[&[u8]]) -> io::Result<String> {
        let name = crate::id::new_id();
        let mut eml = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            eml.extend_from_slice(p);
        }
        write_atomically(&self.path(&name, ".eml"), &eml)?;
        self.write_entry(&name, entry)?;
        Ok(name)
    }

    fn write_entry(&self, name: &str, entry: &Entry) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        write_atomically(&self.path(name, ".json"), &json)?;
        // The renames are durable once the directory is.
        File::open(&self.dir)?.sync_all()
    }

    /// Every entry, oldest id first.
    pub fn entries(&self) -> io::Result<Vec<(String, Entry)>> {
        let mut out = Vec::new();
        for name in self.names(".json")? {
            match fs::read(self.path(&name, ".json")).map(|b| serde_json::from_slice::<Entry>(&b)) {
                Ok(Ok(entry)) => out.push((name, entry)),
                Ok(Err(e)) => {
                    tracing::error!(entry = %name, "unreadable spool entry left in place: {e}")
                }
                Err(_) => {} // removed meanwhile
            }
        }
        Ok(out)
    }

    /// The stored bytes of a copy.
    pub fn message(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(name, ".eml"))
    }

    /// Replaces an entry's state.
    pub fn update(&self, name: &str, entry: &Entry) -> io::Result<()> {
        self.write_entry(name, entry)
    }

    /// Removes a delivered or bounced entry (the `.json` first: without it
    /// the `.eml` is garbage, never a message to send).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name, ".json"))?;
        let _ = fs::remove_file(self.path(name, ".eml"));
        File::open(&self.dir)?.sync_all()
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// What became of one delivery attempt.
enum Attempt {
    Delivered,
    Retry(String),
    Failed(String),
}

/// Delivers due entries until shutdown; a scan every `scan_interval`.
pub async fn run(
    shared: Retrier,
    spool: Arc<Spool>,
    retry: RetryPolicy,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = scan(&shared, &spool, retry).await {
            tracing::error!("spool scan failed: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(retry.scan_interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// What the retry task uses of the running process: the configuration in
/// force, the metrics and the TLS towards upstream (both swapped by a
/// reload), and nothing of the relay's sessions.
#[derive(Clone)]
pub struct Retrier {
    /// The configuration in force.
    pub config: Arc<ArcSwap<Config>>,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// TLS towards upstream, if `upstream.tls` asks for it.
    pub upstream_tls: Arc<ArcSwapOption<TlsConnector>>,
}

impl Retrier {
    fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    fn upstream_tls(&self) -> Option<Arc<TlsConnector>> {
        self.upstream_tls.load_full()
    }
}

async fn scan(shared: &Retrier, spool: &Arc<Spool>, retry: RetryPolicy) -> io::Result<()> {
    let s = spool.clone();
    let entries = tokio::task::spawn_blocking(move || s.entries())
        .await
        .map_err(io::Error::other)??;
    shared.metrics.spool_size(entries.len());
    let now = crate::clock::now();
    for (name, mut entry) in entries.into_iter().filter(|(_, e)| e.next_attempt <= now) {
        let expired = now.saturating_sub(entry.created) >= retry.max_age.as_secs();
        let outcome = if entry.failed {
            Attempt::Failed(entry.last_error.clone().unwrap_or_default())
        } else {
            attempt(shared, spool, &name, &entry).await
        };
        match outcome {
            Attempt::Delivered => {
                spool.remove(&name)?;
                shared.metrics.spool_delivery("delivered");
                tracing::info!(queue_id = %entry.queue_id, rcpt = %entry.rcpt, "spooled copy delivered");
            }
            Attempt::Retry(why) if !expired => {
                entry.attempts += 1;
                entry.next_attempt = now + retry.backoff(entry.attempts).as_secs();
                entry.last_error = Some(why);
                spool.update(&name, &entry)?;
                shared.metrics.spool_delivery("retry");
            }
            Attempt::Retry(why) | Attempt::Failed(why) => {
                bounce(shared, spool, &name, &entry, &why).await?;
            }
        }
    }
    Ok(())
}

async fn attempt(shared: &Retrier, spool: &Spool, name: &str, entry: &Entry) -> Attempt {
    let message = match spool.message(name) {
        Ok(m) => m,
        Err(e) => return Attempt::Failed(format!("451 4.3.0 spooled copy unreadable: {e}")),
    };
    let cfg = shared.config();
    let result: Result<Reply, UpstreamError> = async {
        let mut up = upstream::connect(&cfg.upstream, shared.upstream_tls().as_deref()).await?;
        let r = up
            .send_copy(
                &entry.mail_from,
                &entry.mail_params,
                &entry.rcpt,
                &entry.rcpt_params,
                &[&message],
            )
            .await;
        up.quit().await;
        r
    }
    .await;
    match result {
        Ok(r) if r.is_positive() => Attempt::Delivered,
        Ok(r) if r.is_permanent() => Attempt::Failed(r.summary()),
        Ok(r) => Attempt::Retry(r.summary()),
        Err(e) => {
            shared.metrics.upstream_error(e.kind());
            Attempt::Retry(e.reply().summary())
        }
    }
}

/// Gives up on an entry: the sender gets a notice (unless the entry is a
/// notice itself: no notice about a notice, RFC 3464 / RFC 5321 6.2).
async fn bounce(
    shared: &Retrier,
    spool: &Spool,
    name: &str,
    entry: &Entry,
    why: &str,
) -> io::Result<()> {
    shared.metrics.spool_delivery("bounced");
    tracing::warn!(queue_id = %entry.queue_id, rcpt = %entry.rcpt, reason = %why, "spooled copy undeliverable");
    if entry.dsn || entry.mail_from.is_empty() {
        return spool.remove(name);
    }
    let cfg = shared.config();
    let copy = spool.message(name).unwrap_or_default();
    let headers = copy
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&copy[..], |end| &copy[..end + 2]);
    let date = |t: SystemTime| {
        time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default()
    };
    let failures = [dsn::Failure {
        recipient: entry.rcpt.clone(),
        status: if why.starts_with('4') {
            "4.4.7".into()
        } else {
            dsn::status_of(why)
        },
        diagnostic: why.to_string(),
    }];
    let token = crate::id::new_id();
    let notice = dsn::build(&dsn::Notice {
        hostname: &cfg.server.hostname,
        sender: &entry.mail_from,
        queue_id: &entry.queue_id,
        arrival: &date(UNIX_EPOCH + Duration::from_secs(entry.created)),
        date: &date(crate::clock::system_now()),
        token: &token,
        failures: &failures,
        original_headers: headers,
    });
    let dsn_entry = Entry {
        queue_id: entry.queue_id.clone(),
        mail_from: String::new(),
        mail_params: String::new(),
        rcpt: entry.mail_from.clone(),
        rcpt_params: String::new(),
        created: crate::clock::now(),
        attempts: 0,
        next_attempt: 0,
        last_error: None,
        failed: false,
        dsn: true,
    };
    // The notice is spooled like a copy (delivered on the next scan), then
    // the failed copy goes: the sender is never left uninformed.
    spool.store(&dsn_entry, &[&notice])?;
    spool.remove(name)
}

#[cfg(test)]
mod tests;
