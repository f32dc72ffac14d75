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
//!
//! Here: connecting, EHLO and what upstream offers, STARTTLS or implicit
//! TLS, AUTH with the service account. `transaction`: MAIL, RCPT, DATA
//! and the copies of a split. `wire`: writes against a deadline and the
//! reading of upstream's replies.

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

mod transaction;
mod wire;

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

#[cfg(test)]
mod tests {
    use super::*;

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
