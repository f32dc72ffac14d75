//! One timer per connection, armed lazily.
//!
//! Every read and write of the guard has a deadline (`server.limits.*`,
//! `upstream.*_timeout`). A fresh `tokio::time::timeout` per wait puts an
//! entry into the runtime's timer wheel and takes it out again, under the
//! wheel's lock, each time it has to wait; in the load bench's profile that
//! was four times per relayed command. A connection keeps one [`Timer`]
//! instead, and does as little as it can per wait:
//!
//! - a wait that finishes when first polled (most writes) never looks at
//!   the clock or the timer;
//! - a wait given as a [`Deadline::In`] reads the clock only once it has to
//!   wait;
//! - a later deadline than the one the timer is armed for does not move it:
//!   the timer fires at the earlier one, sees that the wait has time left,
//!   and only then moves. With deadlines minutes away and commands
//!   milliseconds apart, that is one extra wake per timeout period instead
//!   of a timer update per command.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

/// When a wait gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// At this instant.
    At(Instant),
    /// This long after the wait first has to wait.
    In(Duration),
}

impl From<Instant> for Deadline {
    fn from(at: Instant) -> Self {
        Deadline::At(at)
    }
}

impl From<Duration> for Deadline {
    fn from(limit: Duration) -> Self {
        Deadline::In(limit)
    }
}

/// The timer of one connection.
#[derive(Debug)]
pub struct Timer {
    sleep: Pin<Box<Sleep>>,
    /// The deadline of the current wait (an `In` becomes `At` when the
    /// wait first has to wait).
    deadline: Deadline,
}

impl Default for Timer {
    /// A timer with no wait running. Needs the Tokio runtime.
    fn default() -> Self {
        let now = Instant::now();
        Timer {
            sleep: Box::pin(sleep_until(now)),
            deadline: Deadline::At(now),
        }
    }
}

impl Timer {
    /// Sets the deadline of the next wait, for a wait that selects on
    /// [`Timer::elapsed`] itself (e.g. next to a shutdown signal).
    pub fn set(&mut self, deadline: impl Into<Deadline>) {
        self.deadline = deadline.into();
    }

    /// Completes once the deadline last [`set`](Timer::set) has passed.
    pub async fn elapsed(&mut self) {
        poll_fn(|cx| self.poll_elapsed(cx)).await;
    }

    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = match self.deadline {
            Deadline::At(at) => at,
            Deadline::In(limit) => {
                let at = Instant::now() + limit;
                self.deadline = Deadline::At(at);
                at
            }
        };
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        loop {
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if self.sleep.deadline() >= deadline => return Poll::Ready(()),
                // Armed for an earlier deadline (of this wait's predecessors)
                // that has passed: this wait has time left.
                Poll::Ready(()) => self.sleep.as_mut().reset(deadline),
            }
        }
    }

    /// Runs `io` to completion, or gives `None` once `deadline` has passed.
    /// `io` is polled first: what completes at once never waits on the
    /// timer.
    pub async fn run<F: Future>(
        &mut self,
        deadline: impl Into<Deadline>,
        io: F,
    ) -> Option<F::Output> {
        self.set(deadline);
        tokio::select! {
            biased;
            out = io => Some(out),
            () = self.elapsed() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The lazy paths: a later deadline does not move the armed timer, yet
    /// the wait still lasts its whole limit; an `In` limit counts from when
    /// the wait starts, not from when it was set.
    #[tokio::test(start_paused = true)]
    async fn later_deadlines_and_limits_hold_in_full() {
        let mut timer = Timer::default();
        // Armed for 10 s from now by a wait that then finished early.
        let first = tokio::time::sleep(Duration::from_secs(2));
        let armed = Instant::now() + Duration::from_secs(10);
        assert_eq!(timer.run(armed, first).await, Some(()));
        // The next wait may last 60 s: it must not end at the old 10 s.
        let start = Instant::now();
        let never = std::future::pending::<()>();
        let limit = Duration::from_secs(60);
        assert_eq!(timer.run(limit, never).await, None);
        assert_eq!(Instant::now() - start, limit);
        // A limit set, then waited on later, counts from the wait.
        timer.set(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let start = Instant::now();
        timer.elapsed().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
        // A deadline already past ends the wait at once.
        let past = Instant::now() - Duration::from_secs(1);
        let never = std::future::pending::<()>();
        assert_eq!(timer.run(past, never).await, None);
    }
}
