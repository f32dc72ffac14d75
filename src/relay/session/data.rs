//! DATA: the command, the strict reader of the message, and the refusal of
//! one it cannot take; the complete message goes on to `deliver`.

use tokio::time::Instant;

use crate::smtp::data::{DataError, DataLimits, DataReader};
use crate::smtp::refusal::Refusal;
use crate::smtp::reply;

use super::trace::Ended;
use super::{COMMAND_CHUNK, Flow, Session, Stop};

/// Bytes read from the socket at a time inside DATA.
const READ_CHUNK: usize = 64 * 1024;
/// First allocation for a message whose size the client did not announce.
const INITIAL_MESSAGE_CAPACITY: usize = 64 * 1024;
impl Session {
    pub(super) fn data_command(&mut self) -> Result<Flow, Stop> {
        match &self.tx {
            None => self.error_reply(reply::bad_sequence("need MAIL and RCPT before DATA"))?,
            Some(tx) if tx.rcpts.is_empty() => self.error_reply(reply::no_valid_recipients())?,
            Some(_) => {
                self.queue(reply::start_data());
                return Ok(Flow::Data);
            }
        }
        Ok(Flow::Continue)
    }

    /// Reads the DATA section with the strict reader, then hands the whole
    /// message to [`Session::deliver`]. Upstream has seen no DATA command yet, so a
    /// client that vanishes mid-message can never cause a final dot there.
    pub(super) async fn data(&mut self) -> Result<(), Stop> {
        self.flush().await?;
        let limits = &self.cfg.server.limits;
        let deadline = Instant::now() + limits.data_timeout;
        let mut reader = DataReader::new(DataLimits {
            max_message_size: limits.max_message_size,
            max_line_length: limits.max_line_length,
        });
        let hint = self.tx.as_ref().map_or(0, |t| t.size_hint);
        let capacity = if hint > 0 {
            hint.min(limits.max_message_size) + 1024
        } else {
            INITIAL_MESSAGE_CAPACITY
        };
        let mut msg = Vec::with_capacity(capacity);
        loop {
            let fed = reader.feed(&self.inbuf[self.pos..], &mut msg);
            self.pos += fed.consumed;
            if fed.done {
                break;
            }
            let idle = Instant::now() + self.cfg.server.limits.idle_timeout;
            if let Err(stop) = self.read_more(idle.min(deadline), READ_CHUNK, false).await {
                self.abort_transaction().await;
                return Err(stop);
            }
        }
        let started = std::time::Instant::now();
        match reader.error() {
            Some(e) => self.refuse_data(e, msg.len()).await,
            None => {
                self.deliver(msg).await;
                let elapsed = started.elapsed().as_secs_f64();
                self.shared.metrics.relay_duration(elapsed);
            }
        }
        // Between transactions an idle client holds neither a DATA-sized
        // input buffer nor an upstream session.
        self.inbuf.shrink_to(COMMAND_CHUNK);
        self.park_upstream();
        Ok(())
    }

    /// Refuses a message the strict reader could not take (`size`: the
    /// bytes read before it stopped keeping them).
    pub(super) async fn refuse_data(&mut self, e: DataError, size: usize) {
        let limits = self.cfg.server.limits;
        let refusal = match e {
            DataError::BareNewline => Refusal::BareNewline,
            DataError::Nul => Refusal::Nul,
            DataError::TooBig => Refusal::TooBig {
                limit: limits.max_message_size,
            },
            DataError::LineTooLong => Refusal::LineTooLong {
                limit: limits.max_line_length,
            },
        };
        let mut reply = self.refusal(refusal);
        if let Some(tx) = &self.tx {
            reply = reply.with_id(&tx.id);
            self.log_transaction(&Ended {
                refused: Some(refusal.reason().as_str()),
                ..Ended::new(tx, size, &reply)
            });
        }
        self.abort_transaction().await;
        self.queue(reply);
    }
}
