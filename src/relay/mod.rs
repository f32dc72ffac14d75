//! The relay path: from a client's connection to the copies upstream.
//!
//! | module | owns |
//! |---|---|
//! | [`server`] | accept loop, connection limits, the tasks beside it, drain |
//! | [`state`] | the run-time state the relay's tasks share ([`Shared`]) |
//! | [`session`] | one client session: the only state machine (incl. STARTTLS, AUTH) |
//! | [`spool`] | copies the guard owns after a partial failure (split, deferred recipients): durable, retried |
//! | [`dsn`] | delivery status notifications (RFC 3464) for copies that finally fail |
//! | [`proxy_protocol`] | PROXY v1/v2 headers from trusted load balancers |
//! | [`http`] | `/metrics`, `/healthz`, `/readyz` |
//! | [`health`] | readiness checks and the `bccguard health` probe |
//! | [`reload`] | re-reading `policy.yaml` on SIGHUP and on change |
//! | [`groups`] | the approved groups' snapshot, reloaded when the store's groups change |
//!
//! The pure core it runs on sits below it: [`crate::smtp`] (the protocol),
//! [`crate::message`] and [`crate::policy`] (the decision),
//! [`crate::rewrite`] (the copies), [`crate::upstream`] (the hop to the
//! real server). Incidents and held mail go to [`crate::incident`].

pub mod dsn;
pub mod groups;
pub mod health;
pub mod http;
pub mod proxy_protocol;
pub mod reload;
pub mod server;
pub mod session;
pub mod spool;
pub mod state;

pub use state::Shared;
