//! One client session: the only state machine in the guard.
//!
//! The session reads bytes, cuts them into command lines, and answers each
//! in order; replies to a pipelined batch are collected and flushed only
//! when no further complete command is buffered (RFC 2920 3.1). In lockstep
//! RCPTs are forwarded upstream, MAIL with the first of them
//! ([`crate::upstream`]); a run of RCPTs the client pipelined goes upstream
//! as one batch when upstream offers PIPELINING, each still answered with
//! upstream's own reply. Deferred (`upstream.recipients`), the guard answers
//! RCPT itself and `deliver` sends the envelope with the message. After `354` the strict DATA reader takes the
//! bytes; what happens to the complete message is in `deliver`.
//!
//! State: greeting -> (HELO/EHLO) -> (STARTTLS -> EHLO)? -> (AUTH)? ->
//! transaction (MAIL, RCPT...) -> DATA -> back to no transaction. HELO/EHLO
//! and RSET abort a transaction; STARTTLS starts the session over
//! (RFC 3207 4.2). STARTTLS and AUTH live in `auth`.

mod auth;
mod deliver;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Config, Recipients};
use crate::net::timer::{Deadline, Timer};
use crate::net::tls::Stream;
use crate::relay::state::Shared;
use crate::smtp::command::{self, Command, CommandError};
use crate::smtp::data::{DataError, DataLimits, DataReader};
use crate::smtp::refusal::Refusal;
use crate::smtp::reply::{self, Reply};
use crate::upstream::{self, RCPT_BATCH, Upstream};

/// Bytes read from the socket at a time inside DATA.
const READ_CHUNK: usize = 64 * 1024;
/// Room for commands between messages: what an idle session keeps, so
/// 1,000 idle sessions do not each hold a DATA-sized buffer.
const COMMAND_CHUNK: usize = 4 * 1024;
/// First allocation for a message whose size the client did not announce.
const INITIAL_MESSAGE_CAPACITY: usize = 64 * 1024;

/// What the client said in HELO/EHLO.
#[derive(Debug, Clone)]
struct Greeting {
    name: String,
    esmtp: bool,
}

/// One open mail transaction (after the guard took MAIL).
#[derive(Debug, Clone)]
struct Transaction {
    mail_from: String,
    mail_params: String,
    /// Accepted recipients with their raw parameters.
    rcpts: Vec<(String, String)>,
    /// SIZE= announced by the client (0 if none).
    size_hint: usize,
    smtputf8: bool,
    /// The upstream channel came from the pool and has answered nothing in
    /// this transaction yet. Failing now, it was closed by upstream while
    /// idle, before anything was accepted: the first RCPT (with MAIL) is
    /// replayed once on a new connection.
    pooled: bool,
    /// Upstream refused MAIL and that refusal has been counted: every later
    /// RCPT hears it again, but upstream said it only once.
    refusal_counted: bool,
}

/// What the loop does after a command.
enum Flow {
    Continue,
    Data,
    Close,
}

/// Why the session ends early (the client gets no further reply, or the
/// reply has been queued already).
enum Stop {
    /// Peer closed or the socket failed.
    Gone,
    /// A reply was queued and the connection must close after it.
    Close,
}

/// A client session, from greeting to close.
pub struct Session {
    stream: Stream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cfg: Arc<Config>,
    inbuf: Vec<u8>,
    pos: usize,
    out: Vec<u8>,
    greeting: Option<Greeting>,
    tx: Option<Transaction>,
    upstream: Option<Upstream>,
    errors: usize,
    trusted: bool,
    /// Login name once AUTH succeeded (passed through to upstream).
    auth_user: Option<String>,
    auth_failures: usize,
    /// An AUTH exchange waiting for the client's next line.
    sasl: Option<auth::SaslStep>,
    shutdown: watch::Receiver<bool>,
    /// Deadlines of every read and write ([`crate::net::timer`]).
    timer: Timer,
}

impl Session {
    /// A session for an accepted connection.
    pub fn new(
        stream: Stream,
        peer: SocketAddr,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let cfg = shared.config();
        let ip = canonical_ip(peer.ip());
        let trusted = cfg.server.trusted_networks.iter().any(|n| n.contains(&ip));
        Self {
            stream,
            peer: SocketAddr::new(ip, peer.port()),
            shared,
            cfg,
            inbuf: Vec::with_capacity(4096),
            pos: 0,
            out: Vec::with_capacity(1024),
            greeting: None,
            tx: None,
            upstream: None,
            errors: 0,
            trusted,
            auth_user: None,
            auth_failures: 0,
            sasl: None,
            shutdown,
            timer: Timer::default(),
        }
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let _active = self.shared.metrics.session_started();
        self.queue(reply::greeting(&self.cfg.server.hostname));
        let _ = self.serve().await;
        let _ = self.flush().await;
        // Between transactions it can serve the next client session.
        self.park_upstream();
        if let Some(up) = self.upstream.take() {
            up.quit().await;
        }
    }

    async fn serve(&mut self) -> Result<(), Stop> {
        let max_cmd = self.cfg.server.limits.max_command_length;
        let mut skipping_long_line = false;
        loop {
            while let Some(nl) = memchr::memchr(b'\n', &self.inbuf[self.pos..]) {
                let start = self.pos;
                self.pos += nl + 1;
                if std::mem::take(&mut skipping_long_line) {
                    continue;
                }
                if nl + 1 > max_cmd {
                    let r = self.refusal(Refusal::CommandTooLong { limit: max_cmd });
                    self.error_reply(r)?;
                    continue;
                }
                if self.sasl.is_some() {
                    let line = self.inbuf[start..self.pos].to_vec();
                    self.sasl_line(&line).await?;
                    continue;
                }
                let parsed = command::parse(&self.inbuf[start..self.pos]);
                match self.command(parsed).await? {
                    Flow::Continue => {}
                    Flow::Close => return Err(Stop::Close),
                    Flow::Data => self.data().await?,
                }
            }
            if self.inbuf.len() - self.pos > max_cmd && !skipping_long_line {
                // An endless line: answer once, then drop bytes up to its end
                // without buffering them (17,000-byte commands, floods).
                let r = self.refusal(Refusal::CommandTooLong { limit: max_cmd });
                self.error_reply(r)?;
                skipping_long_line = true;
            }
            if skipping_long_line {
                self.pos = self.inbuf.len();
            }
            self.flush().await?;
            let idle = self.cfg.server.limits.idle_timeout;
            self.read_more(idle, COMMAND_CHUNK, self.tx.is_none())
                .await?;
        }
    }

    /// Reads up to `chunk` more bytes into the input buffer, with a
    /// deadline. `interruptible`: a shutdown ends the wait with `421` (an
    /// idle session); otherwise the session finishes its transaction first
    /// and the server's `shutdown_grace` bounds how long that may take.
    async fn read_more(
        &mut self,
        deadline: impl Into<Deadline>,
        chunk: usize,
        interruptible: bool,
    ) -> Result<(), Stop> {
        if self.pos > 0 {
            self.inbuf.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.inbuf.len();
        self.inbuf.reserve(chunk);
        self.timer.set(deadline);
        let read = tokio::select! {
            biased;
            r = self.stream.read_buf(&mut self.inbuf) => Some(Some(r)),
            () = self.timer.elapsed() => Some(None),
            _ = self.shutdown.wait_for(|stop| *stop), if interruptible => None,
        };
        let Some(read) = read else {
            self.queue(reply::shutting_down(&self.cfg.server.hostname));
            return Err(Stop::Close);
        };
        match read {
            None => {
                self.queue(reply::idle_timeout(&self.cfg.server.hostname));
                Err(Stop::Close)
            }
            Some(Ok(0)) | Some(Err(_)) => Err(Stop::Gone),
            Some(Ok(n)) => {
                debug_assert_eq!(self.inbuf.len(), len + n);
                Ok(())
            }
        }
    }

    fn queue(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    /// Queues an error reply and counts it; too many errors end the session.
    fn error_reply(&mut self, reply: Reply) -> Result<(), Stop> {
        self.queue(reply);
        self.errors += 1;
        if self.errors >= self.cfg.server.limits.max_errors {
            let hostname = &self.cfg.server.hostname;
            let r = self.refusal(Refusal::TooManyErrors { hostname });
            self.queue(r);
            return Err(Stop::Close);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.out.is_empty() {
            return Ok(());
        }
        let idle = self.cfg.server.limits.idle_timeout;
        let (stream, out) = (&mut self.stream, &self.out);
        let write = async move {
            stream.write_all(out).await?;
            // A TLS stream holds records until flushed.
            stream.flush().await
        };
        let written = self.timer.run(idle, write).await;
        self.out.clear();
        match written {
            Some(Ok(())) => Ok(()),
            _ => Err(Stop::Gone),
        }
    }

    async fn command(&mut self, parsed: Result<Command, CommandError>) -> Result<Flow, Stop> {
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(e) => {
                self.error_reply(command_error_reply(&e))?;
                return Ok(Flow::Continue);
            }
        };
        match cmd {
            Command::Ehlo { host: name } | Command::Helo { host: name } if name.is_empty() => {
                self.error_reply(reply::syntax("EHLO domain"))?;
            }
            Command::Ehlo { host: name } => {
                self.abort_transaction().await;
                let offers = reply::Offers {
                    max_size: self.cfg.server.limits.max_message_size,
                    starttls: self.starttls_offered(),
                    auth: self.auth_offered(),
                };
                self.queue(reply::ehlo(&self.cfg.server.hostname, &name, offers));
                self.greeting = Some(Greeting { name, esmtp: true });
            }
            Command::Helo { host: name } => {
                self.abort_transaction().await;
                self.queue(reply::helo(&self.cfg.server.hostname));
                self.greeting = Some(Greeting { name, esmtp: false });
            }
            Command::Mail { address, params } => self.mail(address, params).await?,
            Command::Rcpt { address, params } => self.rcpt_run(address, params).await?,
            Command::Data => return self.data_command(),
            Command::Rset => {
                self.abort_transaction().await;
                self.queue(reply::ok());
            }
            Command::Noop => self.queue(reply::ok()),
            Command::Quit => {
                self.queue(reply::bye(&self.cfg.server.hostname));
                return Ok(Flow::Close);
            }
            Command::Help => self.queue(reply::help()),
            Command::Vrfy => self.queue(reply::cannot_verify()),
            Command::StartTls => self.starttls().await?,
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial).await?,
            // Not advertised: BDAT without CHUNKING.
            Command::Bdat | Command::NotImplemented => {
                self.error_reply(reply::not_implemented())?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn mail(&mut self, address: String, params: String) -> Result<(), Stop> {
        if self.greeting.is_none() {
            return self.error_reply(reply::bad_sequence("send HELO/EHLO first"));
        }
        if self.tx.is_some() {
            return self.error_reply(reply::bad_sequence("nested MAIL command"));
        }
        // A reloaded policy applies from the next transaction on, also in
        // long-lived sessions (scanners, scripts).
        self.cfg = self.shared.config();
        let ip = self.peer.ip();
        self.trusted = self
            .cfg
            .server
            .trusted_networks
            .iter()
            .any(|n| n.contains(&ip));
        if self.cfg.server.require_tls && !self.stream.is_tls() {
            let r = self.refusal(Refusal::TlsRequired);
            return self.error_reply(r);
        }
        if !self.trusted && self.auth_user.is_none() {
            // No upstream connection is opened for a client that may not
            // relay: the upstream trusts the guard, so this is the open-relay
            // line (RFC 5321 3.6.2, 7.1).
            let r = self.refusal(Refusal::RelayDenied);
            return self.error_reply(r);
        }
        if !self.sender_allowed(&address) {
            let r = self.refusal(Refusal::SenderMismatch { sender: &address });
            return self.error_reply(r);
        }
        let size_hint = mail_size_param(&params);
        let max = self.cfg.server.limits.max_message_size;
        if size_hint > max {
            let r = self.refusal(Refusal::TooBig { limit: max });
            return self.error_reply(r);
        }
        let smtputf8 = params
            .split_ascii_whitespace()
            .any(|p| p.eq_ignore_ascii_case("SMTPUTF8"));
        let (reply, pooled) = match self.upstream_mail(&address, &params).await {
            Ok(opened) => opened,
            Err(e) => (self.upstream_result(Err(e)), false),
        };
        // MAIL reaches upstream only with the first RCPT, but a SIZE over
        // upstream's own announced limit is refused here, at MAIL, where
        // RFC 1870 6.1 puts it and clients expect it.
        if reply.is_positive()
            && let Some(limit) = self.upstream.as_ref().and_then(Upstream::size_limit)
            && size_hint > limit
        {
            self.abort_upstream().await;
            let r = self.refusal(Refusal::TooBig { limit });
            return self.error_reply(r);
        }
        if reply.is_positive() {
            self.tx = Some(Transaction {
                mail_from: address,
                mail_params: params,
                rcpts: Vec::new(),
                size_hint,
                smtputf8,
                pooled,
                refusal_counted: false,
            });
        }
        self.relay_reply(reply)
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

    /// One RCPT and those the client pipelined right behind it. A client
    /// in lockstep takes [`Session::rcpt`] (no batch, no allocation). A run,
    /// with a transaction and an upstream channel open, goes upstream as one
    /// batch ([`Upstream::rcpts`]); each reply is then handled as
    /// [`Session::rcpt`] would, and after a transport failure the rest are
    /// answered as they would be one by one (no transaction any more).
    async fn rcpt_run(&mut self, address: String, params: String) -> Result<(), Stop> {
        if self.cfg.upstream.recipients == Recipients::Deferred {
            return self.rcpt_deferred(address, params);
        }
        let more = self.pipelined_rcpts();
        if more.is_empty() {
            return self.rcpt(address, params).await;
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
                None => self.rcpt(address, params).await?,
            }
        }
        Ok(())
    }

    async fn rcpt(&mut self, address: String, params: String) -> Result<(), Stop> {
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

    /// Whether the transaction's first upstream exchange just `failed` on a
    /// channel from the pool (see [`Transaction::pooled`]); any answer ends
    /// that first exchange.
    fn stale_channel(&mut self, failed: bool) -> bool {
        let pooled = self
            .tx
            .as_mut()
            .is_some_and(|tx| std::mem::take(&mut tx.pooled));
        failed && pooled
    }

    /// A new upstream connection for the open transaction, its MAIL queued
    /// again (the old channel is dropped: upstream had closed it).
    async fn reopen_upstream(&mut self) -> Result<&mut Upstream, upstream::UpstreamError> {
        let (from, params) = self
            .tx
            .as_ref()
            .map(|tx| (tx.mail_from.clone(), tx.mail_params.clone()))
            .unwrap_or_default();
        self.reopen_upstream_for(&from, &params).await
    }

    /// A new upstream connection with MAIL `from` queued (the old channel
    /// is dropped: upstream had closed it).
    async fn reopen_upstream_for(
        &mut self,
        from: &str,
        params: &str,
    ) -> Result<&mut Upstream, upstream::UpstreamError> {
        self.upstream = None;
        let up = self.upstream_mut().await?;
        up.mail(from, params);
        Ok(up)
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

    fn data_command(&mut self) -> Result<Flow, Stop> {
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
    /// message to [`deliver`]. Upstream has seen no DATA command yet, so a
    /// client that vanishes mid-message can never cause a final dot there.
    async fn data(&mut self) -> Result<(), Stop> {
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
            Some(e) => self.refuse_data(e).await,
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

    /// Hands an upstream SMTP session with no transaction open to the pool
    /// (the next MAIL, of this client or another, takes it back). One the
    /// pool does not keep is closed without delaying the client's reply.
    ///
    /// An upstream session that carries this client's own login (AUTH
    /// passthrough) is never pooled: whoever took it next would send as
    /// that user.
    fn park_upstream(&mut self) {
        if self.tx.is_some()
            || self.auth_user.is_some()
            || !matches!(self.upstream, Some(Upstream::Smtp(_)))
        {
            return;
        }
        if let Some(up) = self.upstream.take()
            && let Some(up) = self.shared.upstream_pool.put(&self.cfg.upstream, up)
        {
            tokio::spawn(up.quit());
        }
    }

    /// Counts a refusal under its reason and returns its reply: the one
    /// place a session classifies what it refuses.
    fn refusal(&self, r: Refusal) -> Reply {
        self.shared.metrics.refused(r.reason());
        r.reply()
    }

    async fn refuse_data(&mut self, e: DataError) {
        let limits = self.cfg.server.limits;
        let reply = self.refusal(match e {
            DataError::BareNewline => Refusal::BareNewline,
            DataError::Nul => Refusal::Nul,
            DataError::TooBig => Refusal::TooBig {
                limit: limits.max_message_size,
            },
            DataError::LineTooLong => Refusal::LineTooLong {
                limit: limits.max_line_length,
            },
        });
        self.abort_transaction().await;
        self.queue(reply);
    }

    /// Starts the transaction on this session's upstream channel, an idle
    /// one from the pool (where this session's own waits between its
    /// messages), or a new one; only connecting can fail. Also says whether
    /// the channel came from the pool ([`Transaction::pooled`]).
    async fn upstream_mail(
        &mut self,
        address: &str,
        params: &str,
    ) -> Result<(Reply, bool), upstream::UpstreamError> {
        let mut pooled = false;
        // A logged-in client keeps its own (logged-in) upstream session;
        // pooled ones are anonymous or the service account's.
        if self.upstream.is_none() && self.auth_user.is_none() {
            self.upstream = self.shared.upstream_pool.take(&self.cfg.upstream);
            pooled = self.upstream.is_some();
        }
        let reply = self.upstream_mut().await?.mail(address, params);
        Ok((reply, pooled))
    }

    /// The upstream channel, opened when a MAIL finds none.
    async fn upstream_mut(&mut self) -> Result<&mut Upstream, upstream::UpstreamError> {
        if self.upstream.is_none() {
            let tls = self.shared.upstream_tls();
            self.upstream = Some(upstream::connect(&self.cfg.upstream, tls.as_deref()).await?);
        }
        // Just set above when it was missing.
        self.upstream
            .as_mut()
            .ok_or_else(|| upstream::UpstreamError::Protocol("no upstream".into()))
    }

    /// Turns an upstream outcome into the reply for the client: upstream's
    /// own reply unchanged, or the classified failure (then the upstream
    /// session is dropped and the transaction forgotten).
    fn upstream_result(&mut self, result: Result<Reply, upstream::UpstreamError>) -> Reply {
        match result {
            Ok(reply) => {
                if reply.is_transient() {
                    self.shared.metrics.upstream_error("tempfail");
                }
                reply
            }
            Err(e) => {
                tracing::warn!(client = %self.peer, kind = e.kind(), error = %e, "upstream failure");
                self.shared.metrics.upstream_error(e.kind());
                self.upstream = None;
                self.tx = None;
                e.reply()
            }
        }
    }

    /// Queues upstream's reply; its 5xx count as client errors too.
    fn relay_reply(&mut self, reply: Reply) -> Result<(), Stop> {
        if reply.is_permanent() {
            self.error_reply(reply)
        } else {
            self.queue(reply);
            Ok(())
        }
    }

    /// Forgets the transaction and aborts it upstream.
    async fn abort_transaction(&mut self) {
        if self.tx.take().is_some() {
            self.abort_upstream().await;
        }
    }

    /// Aborts upstream's open transaction without a final dot.
    async fn abort_upstream(&mut self) {
        if let Some(up) = self.upstream.as_mut()
            && let Err(e) = up.rset().await
        {
            self.shared.metrics.upstream_error(e.kind());
            self.upstream = None;
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) compared as the IPv4 address it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// `SIZE=n` from raw MAIL parameters (RFC 1870), 0 if absent.
fn mail_size_param(params: &str) -> usize {
    params
        .split_ascii_whitespace()
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.eq_ignore_ascii_case("SIZE")
                .then(|| v.parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

fn command_error_reply(e: &CommandError) -> Reply {
    match e {
        CommandError::Unknown => reply::unknown_command(),
        CommandError::Syntax(expected) => reply::syntax(expected),
        CommandError::BadSender => reply::bad_sender(),
        CommandError::BadRecipient => reply::bad_recipient(),
        CommandError::RoutedRecipient => reply::routed_recipient(),
        CommandError::Parameter(p) => reply::bad_parameter(p),
    }
}
