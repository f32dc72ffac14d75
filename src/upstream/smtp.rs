//! The SMTP client towards the organisation's real mail server.
//!
//! A session serves one transaction at a time for one client session: it is
//! taken (from the [`super::pool`], or newly opened) at the client's MAIL
//! and goes back to the pool when the transaction is over. Every wait has a
//! deadline (`upstream.*_timeout`). Upstream's replies are parsed into
//! [`Reply`] and handed back unchanged; only transport failures become
//! [`UpstreamError`]s.
//!
//! MAIL waits for the first RCPT and goes out in the same write (RFC 2920
//! 3.1; one command after the other when upstream does not pipeline). A
//! client in lockstep thus costs upstream one round trip less per message,
//! and a MAIL followed by RSET none. Upstream's verdict on the sender then
//! reaches the client as the answer to that first RCPT, with upstream's own
//! code and text, as Postfix's `smtpd_delay_reject` does for its own
//! sender checks; every later RCPT of the transaction gets the same answer.

use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::{Copies, Parts, UpstreamError};
use crate::config::{UpstreamAuth, UpstreamConfig, UpstreamTls};
use crate::net::timer::{Deadline, Timer};
use crate::net::tls::Stream;
use crate::smtp::data::Stuffer;
use crate::smtp::reply::{self, Reply};
use crate::smtp::sasl::{self, Credentials};

/// Longest reply line accepted from upstream (RFC 5321 4.5.3.1.5 says 512;
/// real servers send longer texts).
const MAX_REPLY_LINE: u64 = 4096;
/// Most lines in one reply (EHLO answers have ~15).
const MAX_REPLY_LINES: usize = 128;
/// Bytes of message handed to the socket at a time: large enough for few
/// syscalls, small enough that a 50 MB message is not copied whole.
const SEND_CHUNK: usize = 256 * 1024;
/// The output buffer kept between transactions; one grown to
/// [`SEND_CHUNK`] by a message is given back (idle sessions wait in the
/// pool).
const IDLE_OUT_CAPACITY: usize = 4 * 1024;
/// How long QUIT may take before the connection is simply dropped.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// What upstream's EHLO answer offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870 limit, if announced.
    pub size: Option<usize>,
    /// RFC 6152.
    pub eightbitmime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 4954 with PLAIN.
    pub auth_plain: bool,
    /// RFC 4954 with LOGIN.
    pub auth_login: bool,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "AUTH" => {
                    for mech in words.by_ref() {
                        match mech.to_ascii_uppercase().as_str() {
                            "PLAIN" => caps.auth_plain = true,
                            "LOGIN" => caps.auth_login = true,
                            _ => {}
                        }
                    }
                }
                "SIZE" => caps.size = words.next().and_then(|w| w.parse().ok()).filter(|&n| n > 0),
                _ => {}
            }
        }
        caps
    }
}

/// An open upstream SMTP session.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<Stream>,
    caps: Capabilities,
    command_timeout: Duration,
    data_timeout: Duration,
    out: Vec<u8>,
    /// The reply line being read (kept: one allocation per session).
    line: Vec<u8>,
    /// Deadlines of every exchange ([`crate::net::timer`]).
    timer: Timer,
    /// False once the connection was given up in the middle of a DATA
    /// section: it must not be used again (see [`Client::send_copies`]).
    open: bool,
    /// Where the client's transaction stands upstream.
    mail: Mail,
}

/// The client's MAIL, as far as upstream is concerned.
#[derive(Debug, Default)]
enum Mail {
    /// No transaction (or one this module runs by itself: split copies).
    #[default]
    None,
    /// MAIL is in the output buffer, to go out with the first RCPT.
    Queued,
    /// Upstream refused MAIL: the answer to every RCPT of the transaction.
    Refused(Reply),
    /// Upstream accepted MAIL.
    Open,
}

impl Client {
    /// Connects, reads the greeting, says EHLO (HELO if EHLO is refused),
    /// secures the session as `upstream.tls` demands and logs in with the
    /// service account if one is configured.
    pub async fn connect(
        addr: &str,
        cfg: &UpstreamConfig,
        tls: Option<&TlsConnector>,
    ) -> Result<Self, UpstreamError> {
        let connect_err = |source| UpstreamError::Connect {
            addr: addr.to_string(),
            source,
        };
        let tcp = timeout(cfg.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::Timeout(cfg.connect_timeout, "connect"))?
            .map_err(connect_err)?;
        // Replies are small and latency-bound; Nagle would add 40 ms stalls
        // to pipelined batches.
        let _ = tcp.set_nodelay(true);
        let stream = match cfg.tls {
            UpstreamTls::Tls => handshake(tcp, addr, cfg, tls).await?,
            UpstreamTls::None | UpstreamTls::StartTls => Stream::Plain(tcp),
        };
        let mut client = Client {
            stream: BufReader::with_capacity(16 * 1024, stream),
            caps: Capabilities::default(),
            command_timeout: cfg.command_timeout,
            data_timeout: cfg.data_timeout,
            out: Vec::with_capacity(1024),
            line: Vec::with_capacity(128),
            timer: Timer::default(),
            open: true,
            mail: Mail::None,
        };
        let greeting = client
            .read_reply(client.command_timeout, "greeting")
            .await?;
        if greeting.code != 220 {
            return Err(UpstreamError::Refused(greeting));
        }
        client.hello(&cfg.helo).await?;
        if cfg.tls == UpstreamTls::StartTls {
            client.starttls(addr, cfg, tls).await?;
        }
        if let UpstreamAuth::Account { username, password } = &cfg.auth {
            let creds = Credentials {
                username: username.clone(),
                password: password.0.clone(),
            };
            let reply = client.auth(&creds).await?;
            if !reply.is_positive() {
                return Err(UpstreamError::Refused(reply));
            }
        }
        Ok(client)
    }

    async fn hello(&mut self, name: &str) -> Result<(), UpstreamError> {
        let ehlo = self.command(&format!("EHLO {name}\r\n"), "EHLO").await?;
        if ehlo.is_positive() {
            self.caps = Capabilities::from_ehlo(&ehlo);
            return Ok(());
        }
        let helo = self.command(&format!("HELO {name}\r\n"), "HELO").await?;
        if !helo.is_positive() {
            return Err(UpstreamError::Refused(helo));
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    /// RFC 3207. Required when configured: an upstream that stops offering
    /// STARTTLS (or a man in the middle stripping it) is an error, never a
    /// silent fall-back to plaintext.
    async fn starttls(
        &mut self,
        addr: &str,
        cfg: &UpstreamConfig,
        tls: Option<&TlsConnector>,
    ) -> Result<(), UpstreamError> {
        if !self.caps.starttls {
            return Err(UpstreamError::Tls(
                "upstream does not offer STARTTLS".into(),
            ));
        }
        let reply = self.command("STARTTLS\r\n", "STARTTLS").await?;
        if reply.code != 220 {
            return Err(UpstreamError::Tls(format!(
                "STARTTLS refused: {}",
                reply.summary()
            )));
        }
        // Taking the socket out of the BufReader drops whatever upstream
        // sent after its 220: bytes injected before the handshake must
        // never be read as replies (CVE-2011-0411 in reverse).
        let placeholder = BufReader::new(Stream::Closed);
        let plain = std::mem::replace(&mut self.stream, placeholder).into_inner();
        let Stream::Plain(tcp) = plain else {
            return Err(UpstreamError::Tls(
                "STARTTLS on an encrypted session".into(),
            ));
        };
        let secured = handshake(tcp, addr, cfg, tls).await?;
        self.stream = BufReader::with_capacity(16 * 1024, secured);
        // RFC 3207 4.2: forget what was learned before TLS and ask again.
        self.hello(&cfg.helo).await
    }

    /// Logs in upstream (RFC 4954) with PLAIN, or LOGIN if that is all
    /// upstream offers; returns upstream's final reply (235, 535, ...).
    pub async fn auth(&mut self, creds: &Credentials) -> Result<Reply, UpstreamError> {
        if self.caps.auth_plain || !self.caps.auth_login {
            let line = format!("AUTH PLAIN {}\r\n", sasl::encode_plain(creds));
            return self.command(&line, "AUTH").await;
        }
        let first = self.command("AUTH LOGIN\r\n", "AUTH").await?;
        if first.code != 334 {
            return Ok(first);
        }
        let user = self
            .command(&format!("{}\r\n", sasl::encode(&creds.username)), "AUTH")
            .await?;
        if user.code != 334 {
            return Ok(user);
        }
        self.command(&format!("{}\r\n", sasl::encode(&creds.password)), "AUTH")
            .await
    }

    /// What upstream offered in its EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// See [`super::Upstream::mail_refused`].
    pub fn mail_refused(&self) -> bool {
        matches!(self.mail, Mail::Refused(_))
    }

    /// Connected, between transactions, nothing unread: what the pool may
    /// keep. Upstream having closed the connection (or sent a 421) shows as
    /// something to read.
    pub fn is_idle(&self) -> bool {
        if !self.open || !matches!(self.mail, Mail::None) || !self.stream.buffer().is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(
            self.stream.get_ref().try_read_raw(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    /// Can this session take another transaction? False after
    /// [`Client::send_copies`] had to leave a DATA section without a dot.
    pub fn is_open(&self) -> bool {
        self.open
    }

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
    fn mail_answered(&mut self, mail: &Reply) -> bool {
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
    /// time. The caller keeps the batch small enough ([`super::RCPT_BATCH`])
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
    /// PIPELINING the envelope goes out in writes of [`super::RCPT_BATCH`]
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
        let chunks = rcpts.chunks(super::RCPT_BATCH);
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
    async fn rcpts_then(
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
    async fn pipelined_copy(
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
    async fn envelope_replies(&mut self) -> Result<Option<Reply>, UpstreamError> {
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

    fn push_envelope(&mut self, from: &str, from_params: &str, to: &str, to_params: &str) {
        envelope_line(&mut self.out, "MAIL FROM", from, from_params);
        envelope_line(&mut self.out, "RCPT TO", to, to_params);
        self.out.extend_from_slice(b"DATA\r\n");
    }

    /// Says QUIT and waits briefly for the answer.
    pub async fn quit(mut self) {
        let _ = timeout(QUIT_TIMEOUT, async {
            self.command("QUIT\r\n", "QUIT").await.ok();
        })
        .await;
    }

    /// Sends `parts` dot-stuffed in chunks of [`SEND_CHUNK`] (a large
    /// message is never copied whole) and leaves the last chunk with the
    /// terminating dot in the output buffer, so the caller may add the next
    /// commands to the same write (RFC 2920).
    async fn stream_stuffed(
        &mut self,
        parts: &[&[u8]],
        deadline: tokio::time::Instant,
    ) -> Result<(), UpstreamError> {
        let mut stuffer = Stuffer::new();
        self.out.clear();
        for part in parts {
            for chunk in part.chunks(SEND_CHUNK) {
                stuffer.push(chunk, &mut self.out);
                if self.out.len() >= SEND_CHUNK {
                    self.flush_until(deadline, self.data_timeout, "message transfer")
                        .await?;
                }
            }
        }
        stuffer.finish(&mut self.out);
        Ok(())
    }

    /// Streams the message dot-stuffed in chunks of [`SEND_CHUNK`], so a
    /// large message is never copied whole; the whole transfer and the final
    /// reply share one `data_timeout` deadline.
    async fn send_message(&mut self, parts: &Parts<'_>) -> Result<Reply, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.data_timeout;
        self.stream_stuffed(parts, deadline).await?;
        self.flush_until(deadline, self.data_timeout, "message transfer")
            .await?;
        self.out.shrink_to(IDLE_OUT_CAPACITY);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.read_reply(left, "end of DATA").await
    }

    /// Writes and flushes the output buffer (a TLS stream holds records
    /// until flushed) by `deadline`; `limit` is what a timeout reports.
    async fn flush_until(
        &mut self,
        deadline: impl Into<Deadline>,
        limit: Duration,
        what: &'static str,
    ) -> Result<(), UpstreamError> {
        let stream = self.stream.get_mut();
        let out = &self.out;
        let write = async move {
            stream.write_all(out).await?;
            stream.flush().await
        };
        self.timer
            .run(deadline, write)
            .await
            .ok_or(UpstreamError::Timeout(limit, what))?
            .map_err(UpstreamError::Closed)?;
        self.out.clear();
        Ok(())
    }

    async fn command(&mut self, line: &str, what: &'static str) -> Result<Reply, UpstreamError> {
        self.out.clear();
        self.out.extend_from_slice(line.as_bytes());
        self.exchange(what).await
    }

    /// Sends the output buffer and reads one reply, each within
    /// `command_timeout` (as Postfix's `smtp_*_timeout` limit each command
    /// and each response).
    async fn exchange(&mut self, what: &'static str) -> Result<Reply, UpstreamError> {
        self.flush_out(self.command_timeout, what).await?;
        self.read_reply(self.command_timeout, what).await
    }

    /// Sends the output buffer within `limit`.
    async fn flush_out(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<(), UpstreamError> {
        self.flush_until(limit, limit, what).await
    }

    /// Reads one reply. A `421` (RFC 5321 3.8: the server is closing the
    /// channel, e.g. Postfix after its idle timeout) ends the upstream
    /// session whatever command it answers: passed on unchanged it would
    /// tell the client that the *guard* closes, while its session stays
    /// open.
    async fn read_reply(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<Reply, UpstreamError> {
        let read = read_reply(&mut self.stream, &mut self.line);
        let reply = self
            .timer
            .run(limit, read)
            .await
            .ok_or(UpstreamError::Timeout(limit, what))??;
        if reply.code == 421 {
            return Err(UpstreamError::Refused(reply));
        }
        Ok(reply)
    }
}

/// TLS handshake towards upstream, verifying its name (`upstream.tls_name`
/// or the host of `upstream.address`).
async fn handshake(
    tcp: TcpStream,
    addr: &str,
    cfg: &UpstreamConfig,
    tls: Option<&TlsConnector>,
) -> Result<Stream, UpstreamError> {
    let connector = tls.ok_or_else(|| UpstreamError::Tls("no TLS client configuration".into()))?;
    let host = cfg
        .tls_name
        .clone()
        .unwrap_or_else(|| host_of(addr).to_string());
    let name = ServerName::try_from(host.clone())
        .map_err(|_| UpstreamError::Tls(format!("{host:?} is not a valid TLS server name")))?;
    let stream = timeout(cfg.command_timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| UpstreamError::Timeout(cfg.command_timeout, "TLS handshake"))?
        .map_err(|e| UpstreamError::Tls(format!("handshake with {host}: {e}")))?;
    Ok(Stream::Client(Box::new(stream)))
}

/// `host:port`, `[v6]:port` -> host.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Appends `VERB:<addr> params` and CRLF to `out`.
fn envelope_line(out: &mut Vec<u8>, verb: &str, addr: &str, params: &str) {
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

/// Reads one (multi-line) reply; `buf` holds each line while it is read.
async fn read_reply(
    stream: &mut BufReader<Stream>,
    buf: &mut Vec<u8>,
) -> Result<Reply, UpstreamError> {
    let mut code = None;
    let mut lines = Vec::with_capacity(1);
    loop {
        buf.clear();
        let n = (&mut *stream)
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', buf)
            .await
            .map_err(UpstreamError::Closed)?;
        if n == 0 {
            return Err(UpstreamError::Closed(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        if buf.last() != Some(&b'\n') {
            return Err(UpstreamError::Protocol("reply line too long".into()));
        }
        let (this, last, text) = parse_reply_line(buf)?;
        if *code.get_or_insert(this) != this {
            return Err(UpstreamError::Protocol(
                "reply lines carry different codes".into(),
            ));
        }
        lines.push(text);
        if last {
            break;
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(UpstreamError::Protocol("reply has too many lines".into()));
        }
    }
    Ok(Reply {
        code: code.unwrap_or_default(),
        lines,
    })
}

/// `250-text`, `250 text` or `250` -> (code, is last line, text).
fn parse_reply_line(raw: &[u8]) -> Result<(u16, bool, String), UpstreamError> {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bad = || {
        UpstreamError::Protocol(format!(
            "not an SMTP reply: {:?}",
            String::from_utf8_lossy(line)
        ))
    };
    if line.len() < 3
        || !line[..3].iter().all(u8::is_ascii_digit)
        || !(b'2'..=b'5').contains(&line[0])
    {
        return Err(bad());
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(bad()),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse() {
        type Row<'a> = (&'a [u8], Option<(u16, bool, &'a str)>);
        let table: &[Row] = &[
            (b"250 2.0.0 Ok\r\n", Some((250, true, "2.0.0 Ok"))),
            (b"250-PIPELINING\r\n", Some((250, false, "PIPELINING"))),
            (b"354\r\n", Some((354, true, ""))),
            (
                b"451 4.4.1 try later\n",
                Some((451, true, "4.4.1 try later")),
            ),
            (b"hello\r\n", None),
            (b"25\r\n", None),
            (b"250_x\r\n", None),
            (b"650 x\r\n", None),
        ];
        for (raw, expected) in table {
            let got = parse_reply_line(raw).ok();
            assert_eq!(
                got,
                expected.map(|(c, l, t)| (c, l, t.to_string())),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn capabilities_from_ehlo() {
        let ehlo = Reply {
            code: 250,
            lines: vec![
                "mx greets".into(),
                "PIPELINING".into(),
                "SIZE 1000".into(),
                "8BITMIME".into(),
                "smtputf8".into(),
                "STARTTLS".into(),
                "AUTH LOGIN CRAM-MD5".into(),
            ],
        };
        let caps = Capabilities::from_ehlo(&ehlo);
        assert_eq!(
            caps,
            Capabilities {
                pipelining: true,
                size: Some(1000),
                eightbitmime: true,
                smtputf8: true,
                starttls: true,
                auth_plain: false,
                auth_login: true,
            }
        );
    }
}
