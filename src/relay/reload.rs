//! Reloading `policy.yaml` in place: on SIGHUP (`systemctl reload`,
//! `kill -HUP`) and when the file changes (an admin's editor, a Kubernetes
//! ConfigMap update, which swaps a symlink).
//!
//! A file that does not load keeps the running policy: the error is logged
//! with its key paths and `bccguard_config_reload_failures_total` counts it,
//! so an alert fires instead of a guard going down. A good file is put in
//! force atomically ([`Shared::reload`]); no session is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::relay::state::Shared;

/// How often the file is looked at for a change.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What identifies one version of the file: a rewrite, a rename over it or
/// a symlink swap changes at least one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// Reads `path` and puts it in force; `false` (and the old policy stays)
/// if it cannot be read or is invalid.
pub fn reload_file(shared: &Shared, path: &Path) -> bool {
    let name = path.display().to_string();
    let result = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {name}: {e}"))
        .and_then(|text| Config::load_file_text(&text, path).map_err(|e| e.to_string()))
        .and_then(|config| shared.reload(config).map_err(|e| e.to_string()));
    match result {
        Ok(notes) => {
            for note in notes {
                tracing::warn!("{note}");
            }
            let c = shared.config();
            tracing::info!(
                threshold = c.policy.max_external_recipients,
                action = %c.policy.action,
                rules = c.policy.rules.len(),
                "policy reloaded from {name}"
            );
            shared.metrics.config_reloaded(true);
            true
        }
        Err(e) => {
            tracing::error!("policy not reloaded, the running policy stays in force: {e}");
            shared.metrics.config_reloaded(false);
            false
        }
    }
}

/// Reloads on each `trigger` message and whenever the file changes (looked
/// at every `poll`). Runs until `trigger`'s sender is dropped.
pub async fn watch(
    shared: Arc<Shared>,
    path: PathBuf,
    mut trigger: mpsc::Receiver<()>,
    poll: Duration,
) {
    let mut seen = stamp(&path);
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            t = trigger.recv() => match t {
                Some(()) => true,
                None => return,
            },
            _ = tick.tick() => false,
        };
        let now = stamp(&path);
        if !forced && now == seen {
            continue;
        }
        // A changed file is tried once; a bad one is not retried until it
        // changes again (or SIGHUP), so the failure counter counts edits.
        seen = now;
        let (shared, path) = (shared.clone(), path.clone());
        let _ = tokio::task::spawn_blocking(move || {
            reload_file(&shared, &path);
            // SIGHUP also reads the approved groups again at once.
            if forced {
                crate::relay::groups::refresh(&shared, true);
            }
        })
        .await;
    }
}
