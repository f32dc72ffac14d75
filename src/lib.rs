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
//! Layers, lowest first; a module imports only from the layers below it
//! (`tests/layout.rs` fails on an import circle between top-level modules).
//!
//! | layer | module | owns |
//! |---|---|---|
//! | leaves | [`clock`] | the one wall clock: every timestamp the guard writes |
//! | | [`id`] | transaction and incident ids |
//! | | [`smtp`] | the I/O-free protocol: commands, every reply text, the strict DATA reader, dot-stuffing, SASL |
//! | | [`message`] | the I/O-free message view: header fields with byte offsets, RFC 5322 address lists, encoded words, MIME |
//! | | [`metrics`] | the Prometheus registry every layer counts into |
//! | | [`net`] | rustls set-up on both hops, the plain-or-TLS stream, the per-connection timer |
//! | | [`templates`] | the texts of the guard's own mails, in German and English, and their overrides |
//! | pure core | [`policy`] | the pure decision: count visible recipients and domains, match rules on sender and recipients, pick an action; approved groups as a snapshot |
//! | | [`rewrite`] | Bcc rewrite and per-recipient copies, by header byte offsets, and the check of the result |
//! | configuration | [`config`] | `policy.yaml` (+ `BCCGUARD__...` env) -> validated [`config::Config`]; errors name the key |
//! | the hop | [`upstream`] | the SMTP client towards the real server (lockstep, TLS, AUTH; idle sessions pooled) or a local Maildir |
//! | workflow | [`incident`] | the incident record, register, quarantine, approved groups, notices and the Art. 33 report |
//! | relay | [`relay`] | accept loop, sessions, spool, DSNs, PROXY protocol, `/metrics`, health, reload (of the policy and the approved groups) |
//! | tools | [`explain`] | `bccguard explain`: the decision for a saved message, sending nothing |
//!
//! The DPO's web console will be a top-level `console` beside `relay`: it
//! works the [`incident`] workflow (the same `Workflow` handles the notifier
//! gets) and never reaches into the relay. The binary is `src/main.rs` with
//! its subcommands in `src/cli/` (serve, admin, dpo, group), on top of all of this.
//!
//! The library entry point is [`relay::server::run`]: tests hand in their
//! own listeners (port 0) and their own shutdown signal.
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod console;
pub mod explain;
pub mod id;
pub mod incident;
pub mod message;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod relay;
pub mod rewrite;
pub mod smtp;
pub mod templates;
pub mod upstream;
