//! A local Maildir as the destination, so a newcomer can try the guard with
//! no mail server at all. Delivery follows the Maildir protocol: write to
//! `tmp/`, fsync, rename into `new/`, fsync the directory; only then is the
//! message safely stored and the client told 250.
//!
//! The envelope is recorded the way a local delivery agent does it: a
//! `Return-Path` and one `Delivered-To` line per envelope recipient are
//! prepended. Line endings stay CRLF as received.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Parts, UpstreamError};
use crate::smtp::reply::{self, Reply};

/// A Maildir destination with the envelope of the current transaction.
#[derive(Debug)]
pub struct Maildir {
    root: PathBuf,
    from: String,
    rcpts: Vec<String>,
}

impl Maildir {
    /// Creates `tmp/`, `new/` and `cur/` if needed.
    pub async fn open(root: &Path) -> Result<Self, UpstreamError> {
        for sub in ["tmp", "new", "cur"] {
            tokio::fs::create_dir_all(root.join(sub))
                .await
                .map_err(UpstreamError::Maildir)?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            from: String::new(),
            rcpts: Vec::new(),
        })
    }

    /// Starts a transaction; a Maildir accepts every sender.
    pub fn mail(&mut self, from: &str) -> Reply {
        self.from = from.to_string();
        self.rcpts.clear();
        reply::sender_ok()
    }

    /// Adds a recipient; a Maildir accepts every recipient.
    pub fn rcpt(&mut self, to: &str) -> Reply {
        self.rcpts.push(to.to_string());
        reply::recipient_ok()
    }

    /// Forgets the transaction.
    pub fn reset(&mut self) {
        self.from.clear();
        self.rcpts.clear();
    }

    /// Stores the message durably; 250 only after the rename is on disk.
    pub async fn deliver(&mut self, parts: &Parts<'_>) -> Result<Reply, UpstreamError> {
        let mut envelope = format!("Return-Path: <{}>\r\n", self.from);
        for r in &self.rcpts {
            envelope.push_str(&format!("Delivered-To: {r}\r\n"));
        }
        let total: usize = parts.iter().map(|p| p.len()).sum::<usize>() + envelope.len();
        let mut data = Vec::with_capacity(total);
        data.extend_from_slice(envelope.as_bytes());
        for p in parts {
            data.extend_from_slice(p);
        }
        let root = self.root.clone();
        let name = unique_name();
        let stored = tokio::task::spawn_blocking(move || write_atomically(&root, &name, &data))
            .await
            .map_err(|e| UpstreamError::Maildir(std::io::Error::other(e)))?;
        let name = stored.map_err(UpstreamError::Maildir)?;
        self.reset();
        Ok(reply::stored_in_maildir(&name))
    }
}

fn unique_name() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = crate::clock::since_epoch();
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
    // Maildir names must not contain '/' or ':' (the flags separator).
    let host = host.trim().replace(['/', ':'], "_");
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        host
    )
}

fn write_atomically(root: &Path, name: &str, data: &[u8]) -> std::io::Result<String> {
    use std::io::Write;
    let tmp = root.join("tmp").join(name);
    let new = root.join("new").join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written = f.write_all(data).and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &new)?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(root.join("new"))?.sync_all()?;
    Ok(name.to_string())
}
