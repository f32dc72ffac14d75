//! One transaction upstream: MAIL queued for the first RCPT, RCPT alone
//! or pipelined in batches, the whole envelope with the message (deferred
//! recipients), DATA, RSET, and the copies of a split sent back to back.

use super::*;

impl Client {
    /// `MAIL FROM:<from> params`, kept until the first RCPT (see the
    /// module documentation); the client hears that the sender was taken.
    pub fn mail(&mut self, from: &str, params: &str) -> Reply {
        self.out.clear();
        envelope_line(&mut self.out, "MAIL FROM", from, params);
        self.mail = Mail::Queued;
        reply::sender_ok()
    }

    /// `RCPT TO:<to> params`; the first one of a transaction takes the
    /// queued MAIL with it and answers with upstream's refusal of MAIL, if
    /// upstream refused it.
    pub async fn rcpt(&mut self, to: &str, params: &str) -> Result<Reply, UpstreamError> {
        match &self.mail {
            Mail::Refused(refusal) => return Ok(refusal.clone()),
            Mail::Queued if !self.caps.pipelining => {
                // RFC 5321 lockstep: MAIL's own round trip first.
                let mail = self.exchange("MAIL").await?;
                if !self.mail_answered(&mail) {
                    return Ok(mail);
                }
                self.out.clear();
            }
            // MAIL stays in the buffer; RCPT joins it in one write.
            Mail::Queued => {}
            Mail::None | Mail::Open => self.out.clear(),
        }
        envelope_line(&mut self.out, "RCPT TO", to, params);
        if !matches!(self.mail, Mail::Queued) {
            return self.exchange("RCPT").await;
        }
        self.flush_out(self.command_timeout, "MAIL/RCPT").await?;
        let mail = self.read_reply(self.command_timeout, "MAIL").await?;
        let rcpt = self.read_reply(self.command_timeout, "RCPT").await?;
        Ok(if self.mail_answered(&mail) {
            rcpt
        } else {
            mail
        })
    }

    /// Notes upstream's answer to MAIL; true when the transaction is open.
    pub(super) fn mail_answered(&mut self, mail: &Reply) -> bool {
        let open = mail.is_positive();
        self.mail = if open {
            Mail::Open
        } else {
            Mail::Refused(mail.clone())
        };
        open
    }

    /// `RCPT TO` for each of `rcpts`: with PIPELINING in one write (behind
    /// a queued MAIL), then their replies in order, each within
    /// `command_timeout` of the one before (RFC 2920); without it one at a
    /// time. The caller keeps the batch small enough ([`crate::upstream::RCPT_BATCH`])
    /// that upstream's replies never fill the socket buffers while the guard
    /// is still writing. Returns upstream's replies in order, and the
    /// transport failure that ended them early, if any.
    pub async fn rcpts(
        &mut self,
        rcpts: &[(String, String)],
    ) -> (Vec<Reply>, Option<UpstreamError>) {
        if self.caps.pipelining {
            return self.rcpts_then(rcpts, false).await;
        }
        let mut replies = Vec::with_capacity(rcpts.len());
        for (to, params) in rcpts {
            match self.rcpt(to, params).await {
                Ok(reply) => replies.push(reply),
                Err(e) => return (replies, Some(e)),
            }
        }
        (replies, None)
    }

    /// The whole deferred transaction (`upstream.recipients: deferred`):
    /// the queued MAIL, every RCPT and DATA, then the message. With
    /// PIPELINING the envelope goes out in writes of [`crate::upstream::RCPT_BATCH`]
    /// RCPTs, DATA in the last of them (RFC 2920 3.1), so a message costs
    /// upstream two round trips whatever its recipients; without it, one
    /// command at a time. Returns upstream's reply to each RCPT read (in
    /// order; fewer after a transport failure) and the transaction's end:
    /// the final reply, DATA's refusal, or the transport failure.
    pub async fn transaction(
        &mut self,
        rcpts: &[(String, String)],
        parts: &Parts<'_>,
    ) -> (Vec<Reply>, Result<Reply, UpstreamError>) {
        if rcpts.is_empty() {
            return (Vec::new(), Ok(reply::no_valid_recipients()));
        }
        if !self.caps.pipelining {
            let (replies, failure) = self.rcpts(rcpts).await;
            if let Some(e) = failure {
                return (replies, Err(e));
            }
            if !replies.iter().any(Reply::is_positive) {
                // Nobody to send it to: no DATA at all.
                return (
                    replies,
                    self.rset().await.map(|()| reply::no_valid_recipients()),
                );
            }
            return (replies, self.data(parts).await);
        }
        let mut replies = Vec::with_capacity(rcpts.len());
        let chunks = rcpts.chunks(crate::upstream::RCPT_BATCH);
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.enumerate() {
            let (got, failure) = self.rcpts_then(chunk, i == last).await;
            replies.extend(got);
            if let Some(e) = failure {
                return (replies, Err(e));
            }
        }
        self.mail = Mail::None;
        let go = match self.read_reply(self.command_timeout, "DATA").await {
            Ok(go) => go,
            Err(e) => return (replies, Err(e)),
        };
        if go.code != 354 {
            // MAIL and the accepted RCPTs stay open upstream: reset them so
            // the next transaction does not meet a "nested MAIL".
            let reset = self.rset().await;
            return (replies, reset.map(|()| go));
        }
        if !replies.iter().any(Reply::is_positive) {
            // A server that says 354 with no recipient accepted (RFC 2920
            // 3.1 wants 554 or 503): the only way out of DATA without a
            // final dot is to close the connection.
            self.open = false;
            return (
                replies,
                Err(UpstreamError::Protocol(
                    "354 to DATA with every recipient refused".into(),
                )),
            );
        }
        let end = self.send_message(parts).await;
        (replies, end)
    }

    /// One write of RCPTs behind a queued MAIL (and `DATA` after them when
    /// `data`), then the MAIL and RCPT replies; DATA's is left to read.
    /// Only for an upstream that offered PIPELINING.
    pub(super) async fn rcpts_then(
        &mut self,
        rcpts: &[(String, String)],
        data: bool,
    ) -> (Vec<Reply>, Option<UpstreamError>) {
        let queued = match &self.mail {
            Mail::Refused(refusal) => {
                let refusal = refusal.clone();
                if data {
                    self.out.clear();
                    self.out.extend_from_slice(b"DATA\r\n");
                    if let Err(e) = self.flush_out(self.command_timeout, "DATA").await {
                        return (Vec::new(), Some(e));
                    }
                }
                return (vec![refusal; rcpts.len()], None);
            }
            Mail::Queued => true,
            Mail::None | Mail::Open => {
                self.out.clear();
                false
            }
        };
        for (to, params) in rcpts {
            envelope_line(&mut self.out, "RCPT TO", to, params);
        }
        if data {
            self.out.extend_from_slice(b"DATA\r\n");
        }
        if let Err(e) = self.flush_out(self.command_timeout, "RCPT").await {
            return (Vec::new(), Some(e));
        }
        let mut refusal = None;
        if queued {
            match self.read_reply(self.command_timeout, "MAIL").await {
                Ok(mail) if self.mail_answered(&mail) => {}
                Ok(mail) => refusal = Some(mail),
                Err(e) => return (Vec::new(), Some(e)),
            }
        }
        let mut replies = Vec::with_capacity(rcpts.len());
        for _ in rcpts {
            match self.read_reply(self.command_timeout, "RCPT").await {
                // Upstream's answers to RCPTs after a refused MAIL are about
                // the missing MAIL; the client hears why it is missing.
                Ok(reply) => replies.push(refusal.clone().unwrap_or(reply)),
                Err(e) => return (replies, Some(e)),
            }
        }
        (replies, None)
    }

    /// `DATA`, then the message dot-stuffed, then upstream's final reply.
    /// A refused DATA leaves upstream's MAIL and RCPTs open, so they are
    /// reset: the next transaction must not meet a "nested MAIL".
    pub async fn data(&mut self, parts: &Parts<'_>) -> Result<Reply, UpstreamError> {
        // The transaction ends here, delivered or not.
        self.mail = Mail::None;
        let go = self.command("DATA\r\n", "DATA").await?;
        if go.code != 354 {
            self.rset().await?;
            return Ok(go);
        }
        self.send_message(parts).await
    }

    /// `RSET`; a refusal is odd but harmless, a broken connection is not.
    /// A MAIL still queued is simply forgotten: upstream never saw it.
    pub async fn rset(&mut self) -> Result<(), UpstreamError> {
        if matches!(std::mem::take(&mut self.mail), Mail::Queued) {
            self.out.clear();
            return Ok(());
        }
        let reply = self.command("RSET\r\n", "RSET").await?;
        if reply.is_positive() {
            Ok(())
        } else {
            Err(UpstreamError::Protocol(format!(
                "RSET answered {}",
                reply.summary()
            )))
        }
    }

    /// One whole transaction for one recipient. With PIPELINING, MAIL, RCPT
    /// and DATA go out in one write (RFC 2920 3.1) and the three replies are
    /// read after it.
    pub async fn send_copy(
        &mut self,
        from: &str,
        from_params: &str,
        to: &str,
        to_params: &str,
        parts: &Parts<'_>,
    ) -> Result<Reply, UpstreamError> {
        if !self.caps.pipelining {
            self.mail(from, from_params);
            let rcpt = self.rcpt(to, to_params).await?;
            if !rcpt.is_positive() {
                self.rset().await?;
                return Ok(rcpt);
            }
            return self.data(parts).await;
        }
        self.mail = Mail::None;
        self.out.clear();
        self.push_envelope(from, from_params, to, to_params);
        self.flush_out(self.command_timeout, "MAIL/RCPT/DATA")
            .await?;
        let mail = self.read_reply(self.command_timeout, "MAIL").await?;
        let rcpt = self.read_reply(self.command_timeout, "RCPT").await?;
        let data = self.read_reply(self.command_timeout, "DATA").await?;
        if data.code == 354 {
            if !mail.is_positive() || !rcpt.is_positive() {
                // Upstream broke RFC 2920 by accepting DATA without a valid
                // transaction: end it empty rather than leave it open.
                self.out.clear();
                self.out.extend_from_slice(b".\r\n");
                self.flush_out(self.command_timeout, "end of empty DATA")
                    .await?;
                self.read_reply(self.data_timeout, "end of DATA").await?;
                return Ok(if mail.is_positive() { rcpt } else { mail });
            }
            return self.send_message(parts).await;
        }
        for reply in [mail, rcpt] {
            if !reply.is_positive() {
                if reply.is_permanent() || reply.is_transient() {
                    // Whatever of the transaction upstream kept, drop it.
                    self.rset().await?;
                }
                return Ok(reply);
            }
        }
        self.rset().await?;
        Ok(data)
    }

    /// One copy per recipient in `rcpts`, each `prefix`, `head_of(i)`,
    /// `tail` back to back, stopping at the first copy upstream does not
    /// accept. With PIPELINING, the next copy's MAIL, RCPT and DATA go out in
    /// the same write as the previous copy's final dot (RFC 2920 3.1: message
    /// content may start a group, DATA must end it), so a copy costs one
    /// round trip instead of two.
    ///
    /// If a copy is refused after its dot while the next copy's commands are
    /// already on their way and upstream answered that DATA with 354, the
    /// only way out of the DATA section that delivers nothing is to drop the
    /// connection: [`Client::is_open`] is then false.
    pub async fn send_copies<F>(
        &mut self,
        from: &str,
        from_params: &str,
        rcpts: &[(String, String)],
        prefix: &[u8],
        tail: &[u8],
        mut head_of: F,
    ) -> Copies
    where
        F: FnMut(usize) -> Vec<u8>,
    {
        if !self.caps.pipelining {
            for (i, (to, to_params)) in rcpts.iter().enumerate() {
                let head = head_of(i);
                let parts = [prefix, &head[..], tail];
                match self
                    .send_copy(from, from_params, to, to_params, &parts)
                    .await
                {
                    Ok(r) if r.is_positive() => {}
                    failure => return Copies::stopped(i, failure),
                }
            }
            return Copies::all(rcpts.len());
        }
        let Some((to, to_params)) = rcpts.first() else {
            return Copies::all(0);
        };
        self.mail = Mail::None;
        self.out.clear();
        self.push_envelope(from, from_params, to, to_params);
        if let Err(e) = self.flush_out(self.command_timeout, "MAIL/RCPT/DATA").await {
            return Copies::stopped(0, Err(e));
        }
        for i in 0..rcpts.len() {
            let head = head_of(i);
            let next = rcpts.get(i + 1);
            match self
                .pipelined_copy(from, from_params, [prefix, &head[..], tail], next)
                .await
            {
                Ok(r) if r.is_positive() => {}
                failure => return Copies::stopped(i, failure),
            }
        }
        Copies::all(rcpts.len())
    }

    /// One pipelined copy whose MAIL/RCPT/DATA were sent already: reads
    /// their replies, sends the message with `next`'s commands behind its
    /// dot, returns the final reply (or the first refusal).
    pub(super) async fn pipelined_copy(
        &mut self,
        from: &str,
        from_params: &str,
        parts: [&[u8]; 3],
        next: Option<&(String, String)>,
    ) -> Result<Reply, UpstreamError> {
        if let Some(refused) = self.envelope_replies().await? {
            return Ok(refused);
        }
        let deadline = tokio::time::Instant::now() + self.data_timeout;
        self.stream_stuffed(&parts, deadline).await?;
        if let Some((to, to_params)) = next {
            self.push_envelope(from, from_params, to, to_params);
        }
        self.flush_until(deadline, self.data_timeout, "message transfer")
            .await?;
        self.out.shrink_to(IDLE_OUT_CAPACITY);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let fin = self.read_reply(left, "end of DATA").await?;
        if !fin.is_positive() && next.is_some() {
            // The next copy's commands are out; answer them without ever
            // sending it a dot.
            let data = self.envelope_replies().await?;
            if data.is_none() {
                self.open = false;
            }
        }
        Ok(fin)
    }

    /// Reads the replies to a pipelined MAIL, RCPT, DATA. `None`: all
    /// positive, upstream waits for the message. Otherwise the refusal to
    /// report, with upstream's transaction closed again.
    pub(super) async fn envelope_replies(&mut self) -> Result<Option<Reply>, UpstreamError> {
        let mail = self.read_reply(self.command_timeout, "MAIL").await?;
        let rcpt = self.read_reply(self.command_timeout, "RCPT").await?;
        let data = self.read_reply(self.command_timeout, "DATA").await?;
        if data.code == 354 {
            if mail.is_positive() && rcpt.is_positive() {
                return Ok(None);
            }
            // Upstream broke RFC 2920 by accepting DATA without a valid
            // transaction: end it empty (no recipient, nothing delivered).
            self.out.clear();
            self.out.extend_from_slice(b".\r\n");
            self.flush_out(self.command_timeout, "end of empty DATA")
                .await?;
            self.read_reply(self.data_timeout, "end of DATA").await?;
            return Ok(Some(if mail.is_positive() { rcpt } else { mail }));
        }
        // Whatever of the transaction upstream kept, drop it.
        self.rset().await?;
        Ok(Some(
            [mail, rcpt]
                .into_iter()
                .find(|r| !r.is_positive())
                .unwrap_or(data),
        ))
    }

    pub(super) fn push_envelope(
        &mut self,
        from: &str,
        from_params: &str,
        to: &str,
        to_params: &str,
    ) {
        envelope_line(&mut self.out, "MAIL FROM", from, from_params);
        envelope_line(&mut self.out, "RCPT TO", to, to_params);
        self.out.extend_from_slice(b"DATA\r\n");
    }
}

/// Appends `VERB:<addr> params` and CRLF to `out`.
pub(super) fn envelope_line(out: &mut Vec<u8>, verb: &str, addr: &str, params: &str) {
    out.extend_from_slice(verb.as_bytes());
    out.extend_from_slice(b":<");
    out.extend_from_slice(addr.as_bytes());
    out.push(b'>');
    if !params.is_empty() {
        out.push(b' ');
        out.extend_from_slice(params.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}
