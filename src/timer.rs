//! One timer per connection, moved to the deadline of each wait.
//!
//! Every read and write of the guard has a deadline (`server.limits.*`,
//! `upstream.*_timeout`). A fresh `tokio::time::timeout` per wait puts an
//! entry into the runtime's timer wheel and takes it out again, under the
//! wheel's lock, each time it has to wait; in the load bench's profile that
//! was four times per relayed command. A connection keeps one [`Timer`]
//! instead: moving a registered deadline later is a single atomic update,
//! and a wait that finishes at once (most writes) never touches it.

use std::future::Future;
use std::pin::Pin;

use tokio::time::{Instant, Sleep, sleep_until};

/// The timer of one connection.
#[derive(Debug)]
pub struct Timer(Pin<Box<Sleep>>);

impl Default for Timer {
    /// A timer with no wait running. Needs the Tokio runtime.
    fn default() -> Self {
        Timer(Box::pin(sleep_until(Instant::now())))
    }
}

impl Timer {
    /// Moves the deadline, for a wait that selects on [`Timer::elapsed`]
    /// itself (e.g. next to a shutdown signal).
    pub fn set(&mut self, deadline: Instant) {
        self.0.as_mut().reset(deadline);
    }

    /// Completes once the deadline last [`set`](Timer::set) has passed.
    pub async fn elapsed(&mut self) {
        self.0.as_mut().await;
    }

    /// Runs `io` to completion, or gives `None` once `deadline` has passed.
    /// `io` is polled first: what completes at once never waits on the
    /// timer.
    pub async fn run<F: Future>(&mut self, deadline: Instant, io: F) -> Option<F::Output> {
        self.set(deadline);
        tokio::select! {
            biased;
            out = io => Some(out),
            () = self.0.as_mut() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_deadline_and_the_timer_is_reused() {
        let mut timer = Timer::default();
        let soon = Instant::now() + Duration::from_secs(5);
        // Ready at once: no wait at all.
        assert_eq!(timer.run(soon, async { 7 }).await, Some(7));
        // Never ready: given up at the deadline, not before.
        let start = Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(
            timer.run(start + Duration::from_secs(30), never).await,
            None
        );
        assert_eq!(Instant::now() - start, Duration::from_secs(30));
        // Moved later after it fired, and earlier again: both hold.
        let later = Instant::now() + Duration::from_secs(60);
        let slow = tokio::time::sleep(Duration::from_secs(10));
        assert_eq!(timer.run(later, slow).await, Some(()));
        let start = Instant::now();
        let earlier = start + Duration::from_secs(1);
        let never = std::future::pending::<()>();
        assert_eq!(timer.run(earlier, never).await, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }
}
