//! The incident record: one JSON line per reject/bcc/split/hold/monitor
//! decision and per allow rule over the threshold, appended and fsynced,
//! for log shippers and the data-protection officer (GDPR Art. 33 asks
//! what happened, when, how many people, what was done). The same record
//! goes into the incident register ([`crate::incident::store`]), where the workflow
//! steps on it are kept.
//!
//! The record deliberately holds no recipient address: it must not become a
//! second copy of the leak it documents. It counts addresses and domains.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One incident, as written to `incidents.path`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Incident id (also quoted to the client on reject).
    pub id: String,
    /// RFC 3339 UTC time of the decision.
    pub time: String,
    /// `reject`, `bcc`, `split`, `hold`, `monitor` or `allow`.
    pub action: String,
    /// `prevented` (no disclosure) or `disclosed` (the 72-hour clock of
    /// Art. 33 runs), at the time of the decision.
    pub class: String,
    /// Name of the matching rule, or `default`.
    pub rule: String,
    /// The client's IP address.
    pub client_ip: String,
    /// Authenticated user (none on a trusted network).
    pub auth_user: Option<String>,
    /// Envelope sender.
    pub mail_from: String,
    /// Header From addr-spec.
    pub header_from: Option<String>,
    /// Message-ID header, as written.
    pub message_id: Option<String>,
    /// Subject, RFC 2047-decoded.
    pub subject: Option<String>,
    /// Distinct external addresses visible to the recipients (every
    /// visible header, attached messages included).
    pub visible_external: usize,
    /// Distinct internal addresses visible to the recipients.
    pub visible_internal: usize,
    /// Distinct external domains among them.
    pub external_domains: usize,
    /// Mailboxes in the visible headers shown with a display name (names are personal
    /// data too).
    pub display_names: usize,
    /// Of `visible_external`, how many were seen in the header of an
    /// attached message (a forwarded list re-disclosed).
    #[serde(default)]
    pub visible_attached: usize,
    /// Of `visible_external`, how many were first seen where: `address`,
    /// `display name`, `comment`, `encoded word`, `unparseable token`, each
    /// prefixed with the header (`Reply-To display name`). Counts only: the
    /// record names no address.
    #[serde(default)]
    pub visible_seen: std::collections::BTreeMap<String, usize>,
    /// Envelope recipients.
    pub envelope_recipients: usize,
    /// Message size in bytes.
    pub size: usize,
    /// The address threshold that applied.
    pub threshold: usize,
    /// The domain threshold that applied (`policy.max_external_domains`);
    /// `None`: off.
    #[serde(default)]
    pub domain_threshold: Option<usize>,
    /// Which threshold was exceeded: `addresses`, `domains` or `both`
    /// (records older than the domain threshold: `addresses`).
    #[serde(default = "addresses")]
    pub trigger: String,
    /// The approved open group that holds every visible external address
    /// (class `allowed`: sent unchanged, no notice).
    #[serde(default)]
    pub group: Option<String>,
    /// Why this action (e.g. signed mail that could not be rewritten).
    pub reason: String,
    /// What became of the message: `refused`, `delivered`, `held`, or
    /// `not delivered: <reply>` when upstream failed (the client keeps it).
    pub outcome: String,
    /// Transaction id in the guard's Received header and logs.
    pub queue_id: String,
}

/// The `trigger` of a record written before there was a domain threshold.
fn addresses() -> String {
    "addresses".into()
}

/// Append-only, fsynced JSON-lines log.
#[derive(Debug)]
pub struct IncidentLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl IncidentLog {
    /// Opens (creating) the log; fails early if it cannot be written.
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = Self::open_file(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(Some(file)),
        })
    }

    fn open_file(path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and fsyncs it. Blocking: call from
    /// `spawn_blocking`. One `write` per line keeps lines whole even with
    /// several writers (O_APPEND).
    pub fn append(&self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // Reopen if a previous write failed or the file was rotated away.
        if guard.is_none() {
            *guard = Some(Self::open_file(&self.path)?);
        }
        let result = guard
            .as_mut()
            .map_or(Ok(()), |f| f.write_all(&line).and_then(|_| f.sync_data()));
        if result.is_err() {
            *guard = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            id: id.into(),
            time: crate::clock::now_rfc3339(),
            action: "reject".into(),
            class: "prevented".into(),
            rule: "default".into(),
            client_ip: "192.0.2.1".into(),
            auth_user: None,
            mail_from: "a@example.org".into(),
            header_from: Some("a@example.org".into()),
            message_id: Some("<1@x>".into()),
            subject: Some("Absage".into()),
            visible_external: 1494,
            visible_internal: 0,
            external_domains: 12,
            display_names: 0,
            visible_attached: 0,
            visible_seen: Default::default(),
            envelope_recipients: 1494,
            size: 50_000,
            threshold: 10,
            domain_threshold: None,
            trigger: "addresses".into(),
            group: None,
            reason: "over threshold".into(),
            outcome: "refused".into(),
            queue_id: "Q".into(),
        }
    }

    #[test]
    fn a_record_from_before_the_domain_threshold_reads() {
        let mut v = serde_json::to_value(record("OLD")).unwrap();
        for key in ["trigger", "domain_threshold", "group"] {
            v.as_object_mut().unwrap().remove(key);
        }
        let old: Record = serde_json::from_value(v).unwrap();
        assert_eq!(
            (old.trigger.as_str(), old.domain_threshold, old.group),
            ("addresses", None, None)
        );
    }

    #[test]
    fn appends_one_json_line_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/incidents.jsonl");
        let log = IncidentLog::open(&path).unwrap();
        log.append(&record("A")).unwrap();
        log.append(&record("B")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["id"], "B");
        assert_eq!(v["visible_external"], 1494);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
