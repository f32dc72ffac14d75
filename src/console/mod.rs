//! The DPO console: held mail, the incident register and the Art. 33 draft
//! in a browser (docs/console.md). [`auth`] holds its accounts, passwords,
//! sessions, CSRF tokens and login throttling.

pub mod auth;
