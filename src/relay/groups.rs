//! How the running guard learns of the DPO's approved groups: a snapshot
//! ([`crate::policy::Groups`]) in [`Shared`], loaded from the store at
//! start, and again whenever the store's group version changes (looked at
//! every [`GROUPS_POLL`], one indexed query) or on SIGHUP. `bccguard group
//! approve` and `group remove` are other processes on the same database, so
//! the guard cannot be told directly; a poll of the version survives a
//! guard restarted meanwhile, several guards on one file, and a signal
//! that never came.
//!
//! A store that cannot be read keeps the snapshot in force (the error is
//! logged every poll): expiry is checked at each decision anyway, and an
//! approval that is not yet seen only means a mail is held once more.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::incident::groups::snapshot;
use crate::relay::state::Shared;

/// How often the store's group version is looked at: an approval is in
/// force within this long.
pub const GROUPS_POLL: Duration = Duration::from_secs(2);

/// Reloads the snapshot if the version moved (or `force`); blocking.
pub fn refresh(shared: &Shared, force: bool) {
    let seen = shared.groups_version();
    let version = match shared.store.groups_version() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(
                "approved groups: cannot read the store, the groups in force stay: {e}"
            );
            return;
        }
    };
    if version == seen && !force {
        return;
    }
    match snapshot(shared.store.as_ref()) {
        Ok((version, groups)) => {
            tracing::info!(groups = groups.len(), "approved groups loaded");
            shared.set_groups(version, groups);
        }
        Err(e) => {
            tracing::error!("approved groups: cannot read the store, the groups in force stay: {e}")
        }
    }
}

/// Refreshes every `poll` until `stop`.
pub async fn watch(shared: Arc<Shared>, poll: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // SQLite does file I/O: off the runtime's workers.
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || refresh(&s, false)).await;
    }
}
