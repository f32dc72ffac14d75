//! The `policy:` section, validated into a [`crate::policy::Policy`]: the
//! policy module owns what it means, this file only checks what was written.

use super::*;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPolicy {
    internal_domains: Option<Vec<String>>,
    max_external_recipients: Option<String>,
    max_external_domains: Option<String>,
    action: Option<String>,
    keep_internal_visible: Option<String>,
    empty_to: Option<String>,
    rules: Option<Vec<RawRule>>,
    visible_headers: Option<Vec<String>>,
    attached_messages: Option<String>,
    mime_nesting_limit: Option<String>,
    reply_language: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRule {
    name: Option<String>,
    sender: Option<Vec<String>>,
    mail_from: Option<Vec<String>>,
    header_from: Option<Vec<String>>,
    recipients: Option<Vec<String>>,
    any_recipient: Option<Vec<String>>,
    max_external_recipients: Option<String>,
    max_external_domains: Option<String>,
    action: Option<String>,
}

impl Validator {
    /// `policy.reply_language`: `de`, `en` or `both` (the default).
    pub(super) fn reply_language(&mut self, raw: &RawPolicy) -> ReplyLanguage {
        self.one_of(
            "policy.reply_language",
            raw.reply_language.as_deref(),
            &[
                ("de", ReplyLanguage::De),
                ("en", ReplyLanguage::En),
                ("both", ReplyLanguage::Both),
            ],
            ReplyLanguage::Both,
        )
    }

    pub(super) fn policy(&mut self, raw: RawPolicy, max_header_size: usize) -> Option<Policy> {
        let domains = raw.internal_domains.unwrap_or_default();
        let internal_domains = match DomainSet::new(domains.iter().map(String::as_str)) {
            Ok(set) => set,
            Err(bad) => {
                let i = domains.iter().position(|d| *d == bad.0).unwrap_or(0);
                self.bad(format!("policy.internal_domains[{i}]"), bad.to_string());
                DomainSet::default()
            }
        };
        let max_external_recipients = self.count(
            "policy.max_external_recipients",
            raw.max_external_recipients,
            DEFAULT_MAX_EXTERNAL_RECIPIENTS,
            0,
        );
        let max_external_domains = raw
            .max_external_domains
            .map(|v| self.count("policy.max_external_domains", Some(v), 0, 0));
        let action = match raw.action.as_deref() {
            None => Action::Reject,
            Some(s) => self.action("policy.action", s).unwrap_or(Action::Reject),
        };
        let keep_internal_visible = match raw.keep_internal_visible.as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.bad(
                    "policy.keep_internal_visible",
                    format!("{other:?} is not true or false"),
                );
                true
            }
        };
        let empty_to = self.one_of(
            "policy.empty_to",
            raw.empty_to.as_deref(),
            &[
                ("sender", EmptyTo::Sender),
                ("undisclosed", EmptyTo::Undisclosed),
            ],
            EmptyTo::Sender,
        );
        let rules = Rules::new(
            raw.rules
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, r)| self.rule(i, r))
                .collect(),
        );
        let visible_headers = match raw.visible_headers {
            None => VisibleHeaders::default(),
            Some(names) => {
                VisibleHeaders::new(names.iter().map(String::as_str)).unwrap_or_else(|e| {
                    self.bad("policy.visible_headers", e.to_string());
                    VisibleHeaders::default()
                })
            }
        };
        let attached_messages = self.one_of(
            "policy.attached_messages",
            raw.attached_messages.as_deref(),
            &[
                ("count", AttachedMessages::Count),
                ("ignore", AttachedMessages::Ignore),
            ],
            AttachedMessages::Count,
        );
        let mime_nesting_limit = self.count(
            "policy.mime_nesting_limit",
            raw.mime_nesting_limit,
            DEFAULT_MIME_NESTING_LIMIT,
            1,
        );
        Some(Policy {
            internal_domains,
            max_external_recipients,
            max_external_domains,
            action,
            rules,
            keep_internal_visible,
            empty_to,
            max_header_size,
            visible_headers,
            attached_messages,
            mime_nesting_limit,
        })
    }

    pub(super) fn rule(&mut self, i: usize, raw: RawRule) -> Rule {
        let key = format!("policy.rules[{i}]");
        let name = raw.name.unwrap_or_else(|| format!("rule-{}", i + 1));
        let mut globs = |field: &str, list: Option<Vec<String>>| -> Vec<Glob> {
            let list = list.unwrap_or_default();
            for (j, p) in list.iter().enumerate() {
                if p.is_empty() {
                    self.bad(format!("{key}.{field}[{j}]"), "empty pattern");
                }
            }
            list.iter().map(|p| Glob::new(p)).collect()
        };
        let sender = globs("sender", raw.sender);
        let mail_from = globs("mail_from", raw.mail_from);
        let header_from = globs("header_from", raw.header_from);
        let recipients = RecipientConditions {
            every: self.patterns(&key, "recipients", raw.recipients),
            any: self.patterns(&key, "any_recipient", raw.any_recipient),
        };
        let threshold = |v: &mut Self, field: &str, raw: Option<String>| {
            raw.map(|n| v.count(&format!("{key}.{field}"), Some(n), 0, 0))
        };
        let max_external_recipients =
            threshold(self, "max_external_recipients", raw.max_external_recipients);
        let max_external_domains =
            threshold(self, "max_external_domains", raw.max_external_domains);
        let action = raw
            .action
            .and_then(|a| self.action(&format!("{key}.action"), &a));
        if max_external_recipients.is_none() && max_external_domains.is_none() && action.is_none() {
            self.bad(
                &key,
                format!("rule {name:?} changes nothing: set action, max_external_recipients and/or max_external_domains"),
            );
        }
        Rule {
            name,
            sender,
            mail_from,
            header_from,
            recipients,
            max_external_recipients,
            max_external_domains,
            action,
        }
    }

    /// A rule's recipient patterns (`recipients`, `any_recipient`); a bad
    /// one is a problem naming `policy.rules[i].<field>[j]`. An empty list
    /// is a condition no message with an external address meets: refused,
    /// since leaving the key out is what means "no condition".
    fn patterns(&mut self, key: &str, field: &str, list: Option<Vec<String>>) -> Vec<Pattern> {
        let Some(list) = list else {
            return Vec::new();
        };
        if list.is_empty() {
            self.bad(
                format!("{key}.{field}"),
                "empty list: leave the key out for no condition",
            );
        }
        list.iter()
            .enumerate()
            .filter_map(|(j, p)| match Pattern::parse(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.bad(format!("{key}.{field}[{j}]"), e.to_string());
                    None
                }
            })
            .collect()
    }

    pub(super) fn action(&mut self, key: &str, s: &str) -> Option<Action> {
        let action = Action::parse(s);
        if action.is_none() {
            let names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
            self.bad(
                key,
                format!("unknown action {s:?}, expected one of {}", names.join(", ")),
            );
        }
        action
    }
}
