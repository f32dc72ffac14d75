//! The I/O-free SMTP protocol core: command parsing ([`command`]), every reply
//! the guard itself composes ([`reply`]), the strict DATA reader and the
//! dot-stuffing writer ([`data`]). Nothing here touches a socket, so all of it
//! is tested with tables of bytes.

pub mod command;
pub mod data;
pub mod refusal;
pub mod reply;
pub mod sasl;
