//! One client session: the only state machine in the guard.
//!
//! The session reads bytes, cuts them into command lines, and answers each
//! in order; replies to a pipelined batch are collected and flushed only
//! when no further complete command is buffered (RFC 2920 3.1).
//!
//! State: greeting -> (HELO/EHLO) -> (STARTTLS -> EHLO)? -> (AUTH)? ->
//! transaction (MAIL, RCPT...) -> DATA -> back to no transaction. HELO/EHLO
//! and RSET abort a transaction; STARTTLS starts the session over
//! (RFC 3207 4.2).
//!
//! One file per verb:
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the session and its transaction, the read/flush loop, the command dispatch, error counting |
//! | `hello.rs` | EHLO, HELO, RSET, QUIT |
//! | `auth.rs` | STARTTLS (RFC 3207) and AUTH passthrough (RFC 4954) |
//! | `mail.rs` | MAIL: the guard's checks on the sender, the transaction opened upstream |
//! | `rcpt.rs` | RCPT, lockstep and deferred |
//! | `data.rs` | DATA: the strict reader; upstream sees no DATA before the message is complete |
//! | `deliver.rs` | the complete message: decided on, routed, relayed lockstep or deferred |
//! | `split.rs` | one upstream transaction per recipient; the rest spooled after a partial failure |
//! | `incident.rs` | the incident a decided message is: register, log, notices |
//! | `channel.rs` | the upstream channel: opened, reopened, parked in the pool, aborted; its outcomes as replies |
//!
//! The recipient mode (`upstream.recipients`) belongs to the transaction
//! (`Transaction::recipients`). In lockstep RCPTs are forwarded
//! upstream, MAIL with the first of them ([`crate::upstream`]); a run of
//! RCPTs the client pipelined goes upstream as one batch when upstream
//! offers PIPELINING, each still answered with upstream's own reply.
//! Deferred, the guard answers RCPT itself and `deliver.rs` sends the
//! envelope with the message.

mod auth;
mod channel;
mod data;
mod deliver;
mod hello;
mod incident;
mod mail;
mod rcpt;
mod split;
mod trace;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::config::{Config, Recipients};
use crate::net::timer::{Deadline, Timer};
use crate::net::tls::Stream;
use crate::relay::state::Shared;
use crate::smtp::command::{self, Command, CommandError};
use crate::smtp::refusal::Refusal;
use crate::smtp::reply::{self, Reply};
use crate::upstream::Upstream;

/// The target of the session's own log lines, those written in `channel`
/// too: it stays what it was when they all lived here, since
/// `BCCGUARD_LOG` filters and log shippers select on it.
const LOG_TARGET: &str = module_path!();

/// Room for commands between messages: what an idle session keeps, so
/// 1,000 idle sessions do not each hold a DATA-sized buffer.
const COMMAND_CHUNK: usize = 4 * 1024;

/// What the client said in HELO/EHLO.
#[derive(Debug, Clone)]
struct Greeting {
    name: String,
    esmtp: bool,
}

/// One open mail transaction (after the guard took MAIL).
#[derive(Debug, Clone)]
struct Transaction {
    /// The guard's id of the transaction, from MAIL on: the incident's and
    /// the held message's id, named in the guard's replies and in the
    /// transaction's log line.
    id: String,
    mail_from: String,
    mail_params: String,
    /// Accepted recipients with their raw parameters.
    rcpts: Vec<(String, String)>,
    /// SIZE= announced by the client (0 if none).
    size_hint: usize,
    smtputf8: bool,
    /// When upstream hears the recipients (`upstream.recipients`): taken at
    /// MAIL with the rest of the configuration, so a reload changes it from
    /// the next transaction on. RCPT ([`Session::rcpt`]) and the message's
    /// relay (`deliver`) each match on it once: lockstep and deferred are
    /// two implementations of each step.
    recipients: Recipients,
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
        let trusted = trusted(&cfg, ip);
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
            Command::Ehlo { host } => self.hello(host, true).await?,
            Command::Helo { host } => self.hello(host, false).await?,
            Command::Mail { address, params } => self.mail(address, params).await?,
            Command::Rcpt { address, params } => self.rcpt(address, params).await?,
            Command::Data => return self.data_command(),
            Command::Rset => self.rset().await,
            Command::Noop => self.queue(reply::ok()),
            Command::Quit => return Ok(self.quit()),
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

    /// Counts a refusal under its reason and returns its reply: the one
    /// place a session classifies what it refuses.
    fn refusal(&self, r: Refusal) -> Reply {
        self.shared.metrics.refused(r.reason());
        r.reply()
    }
}

/// Whether `ip` is in `server.trusted_networks` (relays without AUTH).
fn trusted(cfg: &Config, ip: IpAddr) -> bool {
    cfg.server.trusted_networks.iter().any(|n| n.contains(&ip))
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) compared as the IPv4 address it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
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
