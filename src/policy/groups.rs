//! Approved open groups: sets of external addresses the DPO has said may
//! see each other (`bccguard group approve`). A mail over a threshold whose
//! visible external addresses all belong to one group in force passes
//! unchanged ([`super::decide_with`]).
//!
//! The decision stays pure: the session hands it a snapshot ([`Groups`],
//! loaded from the store) and the time, and [`Groups::covering`] only
//! reads them. The snapshot indexes every address to the groups that hold
//! it, so the subset test starts from the candidates of the first visible
//! address and narrows them address by address: a mail that no group
//! covers is usually answered by one or two lookups, whatever the number
//! of groups.

use std::collections::HashMap;

use super::count::{Addresses, normalize_address};

/// One approved group, as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The name the DPO gave it (`--name`), unique.
    pub name: String,
    /// The envelope sender it applies to (normal form); `None`: any sender
    /// (`--any-sender`).
    pub sender: Option<String>,
    /// Its external addresses, in normal form.
    pub addresses: Vec<String>,
    /// Unix seconds after which it no longer applies.
    pub expires_at: i64,
}

/// The groups in force: a snapshot the decision reads.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    /// Sorted by name, so the first covering group is the same every time.
    groups: Vec<Group>,
    /// Address -> the groups holding it (ascending indices into `groups`).
    index: HashMap<String, Vec<u32>, foldhash::fast::RandomState>,
}

/// The approved groups at one moment: what the session hands the decision.
#[derive(Debug, Clone, Copy)]
pub struct Approved<'a> {
    /// The snapshot.
    pub groups: &'a Groups,
    /// Unix seconds now (a group past its `expires_at` does not apply).
    pub now: i64,
}

impl Groups {
    /// Indexes the groups.
    pub fn new(mut groups: Vec<Group>) -> Groups {
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        let mut index: HashMap<String, Vec<u32>, _> = HashMap::default();
        for (i, g) in groups.iter().enumerate() {
            for a in &g.addresses {
                let ids = index.entry(a.clone()).or_default();
                // An address listed twice in one group is indexed once.
                if ids.last() != Some(&(i as u32)) {
                    ids.push(i as u32);
                }
            }
        }
        Groups { groups, index }
    }

    /// The groups, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Group> {
        self.groups.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The first group (by name) in force at `now` for `mail_from` that
    /// holds every one of `external`; `None` for an empty list (nothing to
    /// approve).
    pub fn covering(&self, external: &Addresses, mail_from: &str, now: i64) -> Option<&Group> {
        let mut all = external.iter();
        let first = all.next()?;
        let sender = normalize_address(mail_from).unwrap_or_else(|| mail_from.to_lowercase());
        let mut candidates: Vec<u32> = self
            .index
            .get(first)?
            .iter()
            .copied()
            .filter(|&g| {
                let g = &self.groups[g as usize];
                now < g.expires_at
                    && g.addresses.len() >= external.len()
                    && g.sender.as_ref().is_none_or(|s| *s == sender)
            })
            .collect();
        for a in all {
            if candidates.is_empty() {
                return None;
            }
            let holding = self.index.get(a)?;
            candidates.retain(|g| holding.binary_search(g).is_ok());
        }
        candidates.first().map(|&g| &self.groups[g as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, sender: Option<&str>, addrs: &[&str], expires_at: i64) -> Group {
        Group {
            name: name.into(),
            sender: sender.map(str::to_string),
            addresses: addrs.iter().map(|a| a.to_string()).collect(),
            expires_at,
        }
    }

    fn list(addrs: &[&str]) -> Addresses {
        addrs.iter().copied().collect()
    }

    #[test]
    fn subset_sender_and_expiry_table() {
        let groups = Groups::new(vec![
            group(
                "Projekt",
                Some("alice@example.org"),
                &["a@x.test", "b@y.test", "c@z.test"],
                100,
            ),
            group(
                "Vorstand",
                None,
                &["v1@x.test", "v2@x.test", "a@x.test"],
                200,
            ),
        ]);
        let cases: &[(&[&str], &str, i64, Option<&str>)] = &[
            (
                &["a@x.test", "b@y.test"],
                "alice@example.org",
                0,
                Some("Projekt"),
            ),
            (
                &["c@z.test", "b@y.test", "a@x.test"],
                "Alice@Example.ORG",
                99,
                Some("Projekt"),
            ),
            // A superset: one address no group holds.
            (
                &["a@x.test", "b@y.test", "d@w.test"],
                "alice@example.org",
                0,
                None,
            ),
            // Another sender.
            (&["a@x.test", "b@y.test"], "bob@example.org", 0, None),
            // Expired (the instant of expiry included).
            (&["a@x.test", "b@y.test"], "alice@example.org", 100, None),
            // Any sender; and a@x.test is in both, so the group is the one
            // holding all of them.
            (
                &["v1@x.test", "a@x.test"],
                "bob@example.org",
                150,
                Some("Vorstand"),
            ),
            (&["a@x.test"], "bob@example.org", 150, Some("Vorstand")),
            (&["a@x.test"], "alice@example.org", 50, Some("Projekt")),
            // Addresses of two groups together are in neither.
            (&["v1@x.test", "b@y.test"], "alice@example.org", 0, None),
            (&[], "alice@example.org", 0, None),
        ];
        for (external, from, now, want) in cases {
            let got = groups
                .covering(&list(external), from, *now)
                .map(|g| g.name.as_str());
            assert_eq!(got, *want, "{external:?} from {from} at {now}");
        }
    }

    #[test]
    fn many_groups_are_indexed_once_per_address() {
        let groups: Vec<Group> = (0..1000)
            .map(|i| Group {
                name: format!("g{i:04}"),
                sender: None,
                addresses: (0..20).map(|j| format!("p{}@d{}.test", i + j, j)).collect(),
                expires_at: i64::MAX,
            })
            .collect();
        let groups = Groups::new(groups);
        assert_eq!(groups.len(), 1000);
        let want: Vec<String> = (0..20)
            .map(|j| format!("p{}@d{}.test", 500 + j, j))
            .collect();
        let external = list(&want.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            groups.covering(&external, "", 0).map(|g| g.name.as_str()),
            Some("g0500")
        );
        let mut more = want.clone();
        more.push("p999@d0.test".into());
        let external = list(&more.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(groups.covering(&external, "", 0), None);
    }
}
