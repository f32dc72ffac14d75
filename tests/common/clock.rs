//! Paused time for the timeout tests: tokio's test clock
//! (`#[tokio::test(start_paused = true)]`), held still so that it moves
//! only when the test moves it ([`HeldClock`]).
//!
//! Why held, not paused alone: a paused clock auto-advances to the next
//! timer whenever the runtime has nothing to run, and it does so in the
//! same park that hands a task the bytes another task just wrote to a
//! socket. Every exchange between the guard and a peer over loopback is
//! such a park, so with auto-advance the guard's `command_timeout` fired
//! before the fake upstream's reply to MAIL was read (tried: MAIL was
//! answered `451 4.4.2`). Held still, the sockets work in real time and no
//! timer fires by itself; the test moves the clock at a moment it knows the
//! guard waits on the timer under test.
//!
//! Only for tests whose every peer runs in this process: a child process
//! (aiosmtpd, `bccguard serve`) keeps real time, so a guard timer moved on
//! by the test races it.

use std::sync::mpsc;
use std::time::Duration;

use super::WAIT;

/// tokio's paused clock, held still for the life of this value.
pub struct HeldClock {
    _release: mpsc::Sender<()>,
}

impl HeldClock {
    /// Holds the paused clock of a `#[tokio::test(start_paused = true)]`
    /// (a current-thread runtime). Call it first: until then the clock
    /// auto-advances.
    ///
    /// A blocking task holds it (tokio does not auto-advance while one
    /// runs: [`tokio::time::pause`]) and lets go after `WAIT` of real time
    /// at the latest, so a test whose guard never answers fails on its own
    /// waits instead of hanging.
    pub fn hold() -> HeldClock {
        let (release, held) = mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = held.recv_timeout(WAIT);
        });
        HeldClock { _release: release }
    }

    /// Moves the clock on by `by`: every timer due by then fires.
    pub async fn advance(&self, by: Duration) {
        tokio::time::advance(by).await;
    }

    /// Waits in real time, at most `WAIT`, until `check` holds (for state a
    /// peer in this process reaches; [`super::eventually`] sleeps on the
    /// clock, which stands still here).
    pub async fn until(&self, what: &str, mut check: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !check() {
            assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
            tokio::task::yield_now().await;
        }
    }
}
