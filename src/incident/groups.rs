//! Approved open groups, the DPO's side: `bccguard group approve` makes a
//! group of the visible external addresses of a held message, `group
//! remove` ends it; each is a step on the source incident with who did it.
//!
//! The addresses are read from the held message itself, by the same count
//! the session ran on it ([`crate::policy::decide`]): the register never
//! kept them (the record names no address), and a message that was
//! released, dropped or expired has had them deleted. So a group is
//! approved while its message is still in the quarantine; releasing it
//! afterwards (`--as original`) sends this one on.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::rfc3339;
use crate::config::Config;
use crate::incident::store::{ApprovedGroup, Step, Store, StoreError, call};
use crate::policy::{self, Envelope, count::normalize_address};

/// Longest group name: it is a metric label and shows in every record of
/// the mails it lets pass.
pub const MAX_GROUP_NAME: usize = 64;

/// Why a group was not approved or removed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The register said no.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name cannot serve as a name.
    #[error("--name {0:?}: {1}")]
    BadName(String, &'static str),
    /// The incident's message is not (or no longer) in the quarantine.
    #[error(
        "incident {id}: {why}; a group is made of the addresses of a message while it is held (they are deleted with the message)"
    )]
    NotHeld {
        /// The incident.
        id: String,
        /// What became of its message.
        why: String,
    },
    /// The held message no longer reads (a policy change since: a lower
    /// header size or MIME nesting limit).
    #[error(
        "incident {0}: the held message cannot be read in full under the policy in force (server.limits.max_header_size, policy.mime_nesting_limit)"
    )]
    Unreadable(String),
    /// The held message shows no external address.
    #[error("incident {0}: the held message shows no external address")]
    NoAddresses(String),
}

/// What `approve` did.
#[derive(Debug, Clone)]
pub struct Approval {
    /// The group as stored.
    pub group: ApprovedGroup,
    /// Visible elements that are not addresses (left out: a later mail
    /// showing them is not covered).
    pub left_out: usize,
    /// `--expires` was longer than `groups.max_age` and was cut to it.
    pub capped: bool,
}

/// Checks a group name.
fn check_name(name: &str) -> Result<(), GroupError> {
    let bad = |why| Err(GroupError::BadName(name.to_string(), why));
    if name.trim().is_empty() || name.trim() != name {
        return bad("must not be empty or start or end with a space");
    }
    if name.chars().count() > MAX_GROUP_NAME {
        return bad("longer than 64 characters");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return bad("control characters, quotes and backslashes are not allowed");
    }
    Ok(())
}

/// Approves the visible external addresses of held incident `id` as the
/// open group `name`, for its envelope sender unless `any_sender`, until
/// `expires` from now (at most and by default `groups.max_age`).
pub async fn approve(
    store: &Arc<dyn Store>,
    config: &Config,
    id: &str,
    name: &str,
    expires: Option<Duration>,
    any_sender: bool,
    actor: &str,
) -> Result<Approval, GroupError> {
    check_name(name)?;
    let key = id.to_string();
    let held = call(store, move |s| s.held_message(&key))
        .await
        .map_err(|e| match e {
            StoreError::NotFound(id) => GroupError::NotHeld {
                id,
                why: "not found, or its message was never held".into(),
            },
            StoreError::NotHeld { id, state } => GroupError::NotHeld {
                id,
                why: format!("its message is {state}"),
            },
            other => other.into(),
        })?;
    let rcpts: Vec<String> = held.rcpts.iter().map(|(a, _)| a.clone()).collect();
    let envelope = Envelope {
        mail_from: &held.mail_from,
        rcpt_to: &rcpts,
    };
    let decision = policy::decide(&config.policy, envelope, &held.message)
        .map_err(|_| GroupError::Unreadable(id.to_string()))?;
    let visible = &decision.visible.external;
    let addresses: Vec<String> = visible
        .iter()
        .filter(|a| normalize_address(a).as_deref() == Some(*a))
        .map(str::to_string)
        .collect();
    if addresses.is_empty() {
        return Err(GroupError::NoAddresses(id.to_string()));
    }
    let max_age = config.groups.max_age;
    let lasts = expires.unwrap_or(max_age).min(max_age);
    let now = crate::clock::now() as i64;
    let sender = (!any_sender).then(|| {
        normalize_address(&held.mail_from).unwrap_or_else(|| held.mail_from.to_lowercase())
    });
    let group = ApprovedGroup {
        name: name.to_string(),
        incident: id.to_string(),
        sender,
        addresses,
        approved_at: now,
        expires_at: now.saturating_add(lasts.as_secs() as i64),
        approved_by: actor.to_string(),
    };
    let step = Step::now(
        actor,
        "group approved",
        format!(
            "group {name:?}: {} external address(es), {}, until {}",
            group.addresses.len(),
            sender_text(&group),
            rfc3339(group.expires_at)
        ),
    );
    let stored = group.clone();
    call(store, move |s| s.approve_group(&stored, &step)).await?;
    Ok(Approval {
        left_out: visible.len() - group.addresses.len(),
        capped: expires.is_some_and(|e| e > max_age),
        group,
    })
}

/// Removes group `name`; a step on its incident says who did.
pub async fn remove(
    store: &Arc<dyn Store>,
    name: &str,
    actor: &str,
) -> Result<ApprovedGroup, GroupError> {
    let step = Step::now(actor, "group removed", format!("group {name:?} removed"));
    let key = name.to_string();
    Ok(call(store, move |s| s.remove_group(&key, &step)).await?)
}

/// The groups in the store as the decision reads them, and the store's
/// group version they are at (the guard's snapshot, explain's view).
pub fn snapshot(store: &dyn Store) -> Result<(i64, policy::Groups), StoreError> {
    // The version first: a change between the two reads is seen again at
    // the next look, never lost.
    let version = store.groups_version()?;
    let groups = store.groups()?;
    let groups = policy::Groups::new(groups.iter().map(ApprovedGroup::to_policy).collect());
    Ok((version, groups))
}

/// `sender alice@example.org` / `any sender`.
pub fn sender_text(g: &ApprovedGroup) -> String {
    match &g.sender {
        Some(s) => format!("sender <{s}>"),
        None => "any sender".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        for good in ["Projekt Rheinbrücke", "Vorstand 2026", "a"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
        let long = "x".repeat(65);
        for bad in [
            "",
            " ",
            " lead",
            "trail ",
            "a\"b",
            "a\\b",
            "a\nb",
            long.as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"ü".repeat(64)).is_ok(), "characters, not bytes");
    }
}
