//! Connection plumbing both hops use, with no knowledge of mail: rustls
//! set-up and the plain-or-TLS stream ([`tls`]), and the one timer per
//! connection ([`timer`]).

pub mod timer;
pub mod tls;
