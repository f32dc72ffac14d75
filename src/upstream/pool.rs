//! Idle upstream SMTP sessions, kept between client sessions.
//!
//! Most clients send one message per connection. Without a pool, every
//! client session costs the guard a TCP connect, upstream's greeting, an
//! EHLO round trip, a QUIT round trip and a close, on both sides: in the
//! load bench's profile connect and close alone were a tenth of the guard's
//! CPU per message. A client session that ends with no transaction open
//! upstream hands its session back here; the next client's first MAIL takes
//! it instead of connecting.
//!
//! Only sessions in the state right after EHLO (no transaction, nothing
//! unread, still connected) are kept, at most `upstream.pool_size` of them
//! for at most `upstream.pool_idle_time` each, and they
//! are keyed by what they were opened with (address and EHLO name), so a
//! changed configuration never reuses an old session. A pooled session that
//! upstream closed in the meantime fails at its first command, before
//! anything was accepted; the session then retries once on a new connection
//! ([`crate::relay::session`]).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Upstream;
use crate::config::{UpstreamConfig, UpstreamTarget};

/// The pool (one per process, in [`crate::relay::Shared`]).
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    key: Key,
    since: Instant,
    upstream: Upstream,
}

/// What a session was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    address: String,
    helo: String,
}

impl Key {
    fn of(cfg: &UpstreamConfig) -> Option<Key> {
        match &cfg.target {
            UpstreamTarget::Smtp(address) => Some(Key {
                address: address.clone(),
                helo: cfg.helo.clone(),
            }),
            UpstreamTarget::Maildir(_) => None,
        }
    }
}

impl Pool {
    /// An idle session opened with `cfg`, if one is ready; the newest first
    /// (the least likely to have been closed by upstream).
    pub fn take(&self, cfg: &UpstreamConfig) -> Option<Upstream> {
        let key = Key::of(cfg)?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let expired = expire(&mut idle, cfg.pool_idle_time);
        let mut found = None;
        while let Some(at) = idle.iter().rposition(|i| i.key == key) {
            // `remove`, not `swap_remove`: the rest stay oldest first.
            let candidate = idle.remove(at).upstream;
            if candidate.is_idle() {
                found = Some(candidate);
                break;
            }
        }
        drop(idle);
        say_goodbye(expired);
        found
    }

    /// Keeps `upstream` for the next client session, or gives it back when
    /// it cannot be kept (the caller then says QUIT).
    pub fn put(&self, cfg: &UpstreamConfig, upstream: Upstream) -> Option<Upstream> {
        let Some(key) = Key::of(cfg) else {
            return Some(upstream);
        };
        if !upstream.is_idle() {
            return Some(upstream);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let expired = expire(&mut idle, cfg.pool_idle_time);
        let refused = if idle.len() >= cfg.pool_size {
            Some(upstream)
        } else {
            idle.push(Idle {
                key,
                since: Instant::now(),
                upstream,
            });
            None
        };
        drop(idle);
        say_goodbye(expired);
        refused
    }
}

/// Takes the sessions idle for longer than `max_age` out of the pool (they
/// are kept oldest first).
fn expire(idle: &mut Vec<Idle>, max_age: Duration) -> Vec<Upstream> {
    let fresh = idle
        .iter()
        .position(|i| i.since.elapsed() < max_age)
        .unwrap_or(idle.len());
    idle.drain(..fresh).map(|i| i.upstream).collect()
}

/// QUIT for sessions leaving the pool, in the background: nobody waits.
fn say_goodbye(sessions: Vec<Upstream>) {
    for up in sessions {
        tokio::spawn(up.quit());
    }
}
