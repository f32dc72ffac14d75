//! The `groups:` section: how long an approved open group may last
//! (`bccguard group approve`, docs/dpo.md).

use std::time::Duration;

use serde::Deserialize;

use super::Validator;

/// Default of `groups.max_age`: a year. A group is a standing permission
/// for a set of people to see each other; it should be looked at again at
/// least yearly, as the Art. 30 record of processing is.
pub const DEFAULT_GROUP_MAX_AGE: Duration = Duration::from_secs(365 * 86400);

/// `groups.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupsConfig {
    /// `max_age`: the longest an approval lasts; also its default
    /// (`--expires` may only shorten it).
    pub max_age: Duration,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawGroups {
    max_age: Option<String>,
}

impl Validator {
    pub(super) fn groups(&mut self, raw: RawGroups) -> GroupsConfig {
        GroupsConfig {
            max_age: self.duration("groups.max_age", raw.max_age, DEFAULT_GROUP_MAX_AGE),
        }
    }
}
