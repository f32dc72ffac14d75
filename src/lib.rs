//! bccguard: an SMTP submission proxy that stops open distribution lists.
//!
//! Office mail clients submit through the guard; the guard reads every
//! message, counts the *external* addresses a reader would see in To/Cc, and
//! above a threshold rejects the mail, hides the recipients (Bcc), or splits
//! it into one copy per recipient, before relaying it to the organisation's
//! real mail server. Every such event becomes an incident record.
//!
//! # Module map
//! | module | owns |
//! |---|---|
//! | [`config`] | `policy.yaml` (+ `BCCGUARD__...` env) -> validated [`config::Config`]; errors name the key |
//! | [`smtp`] | the I/O-free protocol: commands, every reply text, the strict DATA reader, dot-stuffing |
//! | [`message`] | the I/O-free message view: header fields with byte offsets, RFC 5322 address lists |
//! | [`policy`] | the pure decision: count visible recipients, match rules, pick an action |
//! | [`rewrite`] | Bcc rewrite and per-recipient copies, by header byte offsets |
//! | [`session`] | one client session: the only state machine |
//! | [`upstream`] | delivery: SMTP client towards the real server (lockstep, idle sessions pooled) or a local Maildir |
//! | [`incident`] | the incident record (JSON lines, fsynced) |
//! | [`metrics`] | Prometheus registry and the `/metrics` endpoint |
//! | [`server`] | accept loop, shared state, graceful shutdown |
//!
//! The library entry point is [`server::run`]: tests hand in their own
//! listeners (port 0) and their own shutdown signal.
#![forbid(unsafe_code)]

pub mod config;
pub mod explain;
pub mod id;
pub mod incident;
pub mod message;
pub mod metrics;
pub mod policy;
pub mod rewrite;
pub mod server;
pub mod session;
pub mod smtp;
pub mod upstream;
