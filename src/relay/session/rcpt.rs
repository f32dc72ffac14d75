//! RCPT, one step in two implementations, as the transaction's recipient
//! mode has it ([`Transaction::recipients`](super::Transaction),
//! `upstream.recipients`):
//!
//! - lockstep: each RCPT is forwarded upstream and answered with upstream's
//!   own reply; a run the client pipelined goes upstream as one batch when
//!   upstream offers PIPELINING (RFC 2920), each RCPT still answered as it
//!   would be alone;
//! - deferred: the guard answers RCPT itself after its own checks; upstream
//!   hears the envelope with the message (`deliver`).

use crate::config::Recipients;
use crate::smtp::command::{self, Command};
use crate::smtp::refusal::Refusal;
use crate::smtp::reply::{self, Reply};
use crate::upstream::{self, RCPT_BATCH, Upstream};

use super::{Session, Stop};

impl Session {
    /// RCPT in the transaction's recipient mode. Outside a transaction
    /// both modes refuse it alike (`need MAIL`), one RCPT at a time.
    pub(super) async fn rcpt(&mut self, address: String, params: String) -> Result<(), Stop> {
        match self.tx.as_ref().map(|tx| tx.recipients) {
            Some(Recipients::Lockstep) => self.rcpt_lockstep(address, params).await,
            Some(Recipients::Deferred) => self.rcpt_deferred(address, params),
            None => self.rcpt_admitted().map(drop),
        }
    }

    /// Lockstep: one RCPT and those the client pipelined right behind it.
    /// A client that waits for each reply takes [`Session::rcpt_upstream`]
    /// (no batch, no allocation). A run, with an upstream channel open,
    /// goes upstream as one batch ([`Upstream::rcpts`]); each reply is then
    /// handled as [`Session::rcpt_upstream`] would, and after a transport
    /// failure the rest are answered as they would be one by one (no
    /// transaction any more).
    async fn rcpt_lockstep(&mut self, address: String, params: String) -> Result<(), Stop> {
        let more = self.pipelined_rcpts();
        if more.is_empty() {
            return self.rcpt_upstream(address, params).await;
        }
        let mut batch = Vec::with_capacity(more.len() + 1);
        batch.push((address, params));
        batch.extend(more);
        let (mut replies, mut failure) = match self.upstream.as_mut() {
            Some(up) if self.tx.is_some() => up.rcpts(&batch).await,
            _ => (Vec::new(), None),
        };
        if self.stale_channel(replies.is_empty() && failure.is_some()) {
            (replies, failure) = match self.reopen_upstream().await {
                Ok(up) => up.rcpts(&batch).await,
                Err(e) => (Vec::new(), Some(e)),
            };
        }
        let mut replies = replies.into_iter();
        for (address, params) in batch {
            match replies.next().map(Ok).or_else(|| failure.take().map(Err)) {
                Some(result) => self.rcpt_answer(address, params, result)?,
                None => self.rcpt_upstream(address, params).await?,
            }
        }
        Ok(())
    }

    /// The RCPT commands buffered right behind the one just read (a
    /// client's pipelined batch), taken out of the input buffer. Stops at
    /// anything else, at [`RCPT_BATCH`] with the one read, and where the
    /// recipient limit could be reached: only as many as still fit can go
    /// in one batch, so every RCPT is answered exactly as it would be one at
    /// a time (one upstream refuses does not use up the limit).
    fn pipelined_rcpts(&mut self) -> Vec<(String, String)> {
        let room = self.tx.as_ref().map_or(1, |tx| {
            self.cfg
                .server
                .limits
                .max_recipients
                .saturating_sub(tx.rcpts.len())
        });
        let max_cmd = self.cfg.server.limits.max_command_length;
        let mut more = Vec::new();
        while more.len() + 1 < room.min(RCPT_BATCH) {
            let rest = &self.inbuf[self.pos..];
            let Some(nl) = memchr::memchr(b'\n', rest).filter(|&nl| nl < max_cmd) else {
                break;
            };
            let Ok(Command::Rcpt { address, params }) = command::parse(&rest[..=nl]) else {
                break;
            };
            more.push((address, params));
            self.pos += nl + 1;
        }
        more
    }

    /// Lockstep: one RCPT forwarded upstream and upstream's answer relayed.
    /// A channel from the pool that fails on it was closed by upstream
    /// while idle: MAIL and this RCPT go again on a new one.
    async fn rcpt_upstream(&mut self, address: String, params: String) -> Result<(), Stop> {
        if !self.rcpt_admitted()? {
            return Ok(());
        }
        let result = match self.upstream.as_mut() {
            Some(up) => up.rcpt(&address, &params).await,
            None => Ok(reply::upstream_lost()),
        };
        let result = match result {
            Err(_) if self.stale_channel(true) => match self.reopen_upstream().await {
                Ok(up) => up.rcpt(&address, &params).await,
                Err(e) => Err(e),
            },
            result => {
                self.stale_channel(false);
                result
            }
        };
        self.rcpt_answer(address, params, result)
    }

    /// Upstream's answer to one RCPT, relayed; an accepted recipient joins
    /// the transaction.
    fn rcpt_answer(
        &mut self,
        address: String,
        params: String,
        result: Result<Reply, upstream::UpstreamError>,
    ) -> Result<(), Stop> {
        let reply = match result {
            Ok(reply) if self.repeated_refusal() => reply,
            result => self.upstream_result(result),
        };
        if reply.is_positive()
            && let Some(tx) = self.tx.as_mut()
        {
            tx.rcpts.push((address, params));
        }
        self.relay_reply(reply)
    }

    /// Whether an RCPT's answer is upstream's refusal of MAIL heard before
    /// in this transaction, so not counted again as upstream's reply.
    fn repeated_refusal(&mut self) -> bool {
        let refused = self.upstream.as_ref().is_some_and(Upstream::mail_refused);
        match self.tx.as_mut() {
            Some(tx) if refused => std::mem::replace(&mut tx.refusal_counted, true),
            _ => false,
        }
    }

    /// `upstream.recipients: deferred`: the recipient is taken after the
    /// guard's own checks; upstream hears it with the rest of the envelope
    /// when the message is complete and decided on (`deliver`).
    fn rcpt_deferred(&mut self, address: String, params: String) -> Result<(), Stop> {
        if self.rcpt_admitted()?
            && let Some(tx) = self.tx.as_mut()
        {
            tx.rcpts.push((address, params));
            self.queue(reply::recipient_ok());
        }
        Ok(())
    }

    /// The guard's own checks on an RCPT: a transaction is open and the
    /// recipient limit is not reached (`452 4.5.3`, the earlier recipients
    /// stay). Queues the refusal and says false otherwise.
    fn rcpt_admitted(&mut self) -> Result<bool, Stop> {
        let Some(tx) = self.tx.as_ref() else {
            self.error_reply(reply::bad_sequence("need MAIL before RCPT"))?;
            return Ok(false);
        };
        let max = self.cfg.server.limits.max_recipients;
        if tx.rcpts.len() >= max {
            let r = self.refusal(Refusal::TooManyRecipients { limit: max });
            self.queue(r);
            return Ok(false);
        }
        Ok(true)
    }
}
