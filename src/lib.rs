//! bccguard: an SMTP submission proxy that stops open distribution lists.
//!
//! Office mail clients submit through the guard; the guard reads every
//! message, counts the *external* addresses a reader would see (To, Cc, Reply-To,
//! display names, encoded words, attached messages: [`policy::count`]), and
//! above a threshold rejects the mail, hides the recipients (Bcc), or splits
//! it into one copy per recipient, before relaying it to the organisation's
//! real mail server. Every such event becomes an incident record.
//!
//! # Module map
//! | module | owns |
//! |---|---|
//! | [`config`] | `policy.yaml` (+ `BCCGUARD__...` env) -> validated [`config::Config`]; errors name the key |
//! | [`smtp`] | the I/O-free protocol: commands, every reply text, the strict DATA reader, dot-stuffing, SASL |
//! | [`message`] | the I/O-free message view: header fields with byte offsets, RFC 5322 address lists |
//! | [`policy`] | the pure decision: count visible recipients, match rules, pick an action |
//! | [`rewrite`] | Bcc rewrite and per-recipient copies, by header byte offsets |
//! | [`session`] | one client session: the only state machine (incl. STARTTLS, AUTH) |
//! | [`upstream`] | delivery: SMTP client towards the real server (lockstep, TLS, AUTH; idle sessions pooled) or a local Maildir |
//! | [`spool`] | copies the guard owns after a partial failure (split, deferred recipients): durable, retried |
//! | [`dsn`] | delivery status notifications (RFC 3464) for copies that finally fail |
//! | [`incident`] | the incident record (JSON lines, fsynced) |
//! | [`store`] | the incident register, the quarantine and the notice outbox (SQLite, behind a trait) |
//! | [`quarantine`] | held messages (`action: hold`): release, drop, expiry |
//! | [`notify`] | mails to the DPO and to senders, the webhook; templates in German and English |
//! | [`report`] | the Art. 33 draft and the directory of German supervisory authorities |
//! | [`metrics`] | Prometheus registry and the `/metrics` endpoint |
//! | [`health`] | `/healthz`, `/readyz` and the `bccguard health` probe |
//! | [`timer`] | one timer per connection, moved to each wait's deadline |
//! | [`tls`] | rustls set-up on both hops, certificate reload, the plain-or-TLS [`tls::Stream`] |
//! | [`proxy_protocol`] | PROXY v1/v2 headers from trusted load balancers |
//! | [`reload`] | re-reading `policy.yaml` on SIGHUP and on change |
//! | [`server`] | accept loop, connection limits, shared state, drain |
//! | [`explain`] | `bccguard explain`: the decision for a saved message, sending nothing |
//! | [`id`] | transaction and incident ids |
//!
//! The library entry point is [`server::run`]: tests hand in their own
//! listeners (port 0) and their own shutdown signal.
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod dsn;
pub mod explain;
pub mod health;
pub mod id;
pub mod incident;
pub mod message;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod proxy_protocol;
pub mod quarantine;
pub mod reload;
pub mod report;
pub mod rewrite;
pub mod server;
pub mod session;
pub mod smtp;
pub mod spool;
pub mod store;
pub mod templates;
pub mod timer;
pub mod tls;
pub mod upstream;
