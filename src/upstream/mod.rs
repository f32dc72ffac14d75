//! Delivery: where an accepted message goes. Either the organisation's real
//! mail server over SMTP, in lockstep with the client ([`smtp`]), its idle
//! sessions kept between transactions ([`pool`]), or a local Maildir for
//! trying the guard out ([`maildir`]).
//!
//! Lockstep (`upstream.recipients: lockstep`) is what lets the guard own no
//! message: RCPTs are forwarded as the client sends them (MAIL with the
//! first of them) and upstream's replies are passed back. Deferred, the
//! whole envelope goes with the message ([`Upstream::transaction`]) and
//! what upstream refuses next to what it took is spooled. Either way the
//! client's DATA is read in full and decided on before upstream sees a DATA
//! command; the client hears 250 only after upstream said 250 for every
//! copy (or the spool holds the rest).
//!
//! Failures are classified once, here ([`UpstreamError::reply`] and
//! [`UpstreamError::kind`]), into the reply the client gets and the metric
//! label ops see.

pub mod maildir;
pub mod pool;
pub mod queue_id;
pub mod smtp;

use std::io;
use std::time::Duration;

use crate::config::{UpstreamConfig, UpstreamTarget, UpstreamTls};
use crate::smtp::reply::{self, Reply};

/// Most RCPT commands sent upstream in one write: about 5 KB of commands
/// and 2 KB of replies, far below socket buffer sizes, so neither side can
/// block the other (RFC 2920 3.1 warns of that deadlock). A longer run goes
/// in several writes.
pub const RCPT_BATCH: usize = 100;

/// A message on its way out: parts sent back to back (e.g. the Received
/// header, a rewritten header section, the untouched rest of the original).
pub type Parts<'a> = [&'a [u8]];

/// What became of the copies of a split ([`Upstream::send_copies`]).
#[derive(Debug)]
pub struct Copies {
    /// Copies upstream accepted with 250 after their dot, in order.
    pub delivered: usize,
    /// Why copy number `delivered` (0-based) was not: upstream's own reply,
    /// or a transport failure. `None` when every copy was delivered.
    pub failure: Option<Result<Reply, UpstreamError>>,
}

impl Copies {
    fn all(n: usize) -> Self {
        Self {
            delivered: n,
            failure: None,
        }
    }

    fn stopped(delivered: usize, failure: Result<Reply, UpstreamError>) -> Self {
        Self {
            delivered,
            failure: Some(failure),
        }
    }
}

/// Why delivery could not proceed (as opposed to an upstream reply, which is
/// passed on to the client as it is).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Where we tried.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
    /// Upstream did not answer in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// The connection broke or was closed.
    #[error("connection lost: {0}")]
    Closed(io::Error),
    /// Upstream spoke something that is not SMTP.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Upstream refused the session itself (greeting or EHLO not 2xx), or
    /// closed it with `421` at any point.
    #[error("session refused: {}", .0.summary())]
    Refused(Reply),
    /// TLS towards upstream failed or was not offered when required.
    #[error("TLS: {0}")]
    Tls(String),
    /// The local Maildir could not be written.
    #[error("maildir: {0}")]
    Maildir(io::Error),
}

impl UpstreamError {
    /// The metric label for `bccguard_upstream_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout(..) => "timeout",
            UpstreamError::Closed(_) => "closed",
            UpstreamError::Protocol(_) => "protocol",
            UpstreamError::Refused(_) => "refused",
            UpstreamError::Tls(_) => "tls",
            UpstreamError::Maildir(_) => "maildir",
        }
    }

    /// What the client is told. Always transient: none of these says the
    /// message is bad, so the client must keep it and retry.
    pub fn reply(&self) -> Reply {
        match self {
            // RFC 3463 X.4.1 "no answer from host": refused or unanswered
            // TCP connect alike.
            UpstreamError::Connect { .. } | UpstreamError::Timeout(_, "connect") => {
                reply::upstream_unavailable()
            }
            UpstreamError::Refused(r) => {
                let mut rep = reply::upstream_unavailable();
                rep.lines
                    .push(format!("4.4.1 upstream said: {}", r.summary()));
                rep
            }
            UpstreamError::Timeout(..) | UpstreamError::Closed(_) | UpstreamError::Protocol(_) => {
                reply::upstream_lost()
            }
            UpstreamError::Tls(_) => reply::upstream_tls_failed(),
            UpstreamError::Maildir(_) => reply::local_error(),
        }
    }
}

/// One open delivery channel, owned by one client session.
#[derive(Debug)]
pub enum Upstream {
    /// The real mail server.
    Smtp(smtp::Client),
    /// A local Maildir.
    Maildir(maildir::Maildir),
}

/// The TLS client configuration towards upstream, or none when
/// `upstream.tls: none`. Built once per configuration by the relay and by
/// a quarantine release alike, so both check upstream's certificate the
/// same way.
pub fn connector(
    cfg: &UpstreamConfig,
) -> Result<Option<tokio_rustls::TlsConnector>, crate::net::tls::TlsSetupError> {
    match cfg.tls {
        UpstreamTls::None => Ok(None),
        UpstreamTls::StartTls | UpstreamTls::Tls => Ok(Some(crate::net::tls::connector(
            cfg.ca.as_deref(),
            cfg.tls_verify,
        )?)),
    }
}

/// Opens a delivery channel as configured.
pub async fn connect(
    cfg: &UpstreamConfig,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Upstream, UpstreamError> {
    match &cfg.target {
        UpstreamTarget::Smtp(addr) => {
            Ok(Upstream::Smtp(smtp::Client::connect(addr, cfg, tls).await?))
        }
        UpstreamTarget::Maildir(dir) => Ok(Upstream::Maildir(maildir::Maildir::open(dir).await?)),
    }
}

impl Upstream {
    /// Passes the client's credentials upstream (`upstream.auth:
    /// passthrough`); upstream's reply decides.
    pub async fn auth(
        &mut self,
        creds: &crate::smtp::sasl::Credentials,
    ) -> Result<Reply, UpstreamError> {
        match self {
            Upstream::Smtp(c) => c.auth(creds).await,
            Upstream::Maildir(_) => Ok(reply::auth_unavailable()),
        }
    }

    /// Starts a transaction with the client's MAIL FROM and parameters. Over
    /// SMTP it goes out with the first RCPT ([`smtp`]), whose answer carries
    /// upstream's verdict on it.
    pub fn mail(&mut self, from: &str, params: &str) -> Reply {
        match self {
            Upstream::Smtp(c) => c.mail(from, params),
            Upstream::Maildir(m) => m.mail(from),
        }
    }

    /// Forwards RCPT TO with the client's parameters (and a MAIL still
    /// waiting for it).
    pub async fn rcpt(&mut self, to: &str, params: &str) -> Result<Reply, UpstreamError> {
        match self {
            Upstream::Smtp(c) => c.rcpt(to, params).await,
            Upstream::Maildir(m) => Ok(m.rcpt(to)),
        }
    }

    /// Forwards a client's pipelined run of RCPT TO commands: over SMTP with
    /// PIPELINING in one write, the replies read after it (RFC 2920 3.1), so
    /// 1,494 recipients from a pipelining client cost a few round trips
    /// instead of 1,494; otherwise one at a time. Returns upstream's replies
    /// in order, and the transport failure that ended them early, if any.
    pub async fn rcpts(
        &mut self,
        rcpts: &[(String, String)],
    ) -> (Vec<Reply>, Option<UpstreamError>) {
        match self {
            Upstream::Smtp(c) => c.rcpts(rcpts).await,
            Upstream::Maildir(m) => (rcpts.iter().map(|(to, _)| m.rcpt(to)).collect(), None),
        }
    }

    /// The deferred transaction ([`smtp::Client::transaction`]): every RCPT,
    /// then the message to those upstream accepted. Returns upstream's
    /// reply to each RCPT read and how the transaction ended.
    pub async fn transaction(
        &mut self,
        rcpts: &[(String, String)],
        parts: &Parts<'_>,
    ) -> (Vec<Reply>, Result<Reply, UpstreamError>) {
        match self {
            Upstream::Smtp(c) => c.transaction(rcpts, parts).await,
            Upstream::Maildir(m) => {
                let replies = rcpts.iter().map(|(to, _)| m.rcpt(to)).collect();
                (replies, m.deliver(parts).await)
            }
        }
    }

    /// Sends the open transaction's message; returns upstream's final reply.
    pub async fn data(&mut self, parts: &Parts<'_>) -> Result<Reply, UpstreamError> {
        match self {
            Upstream::Smtp(c) => c.data(parts).await,
            Upstream::Maildir(m) => m.deliver(parts).await,
        }
    }

    /// Aborts the open transaction (upstream never sees a final dot).
    pub async fn rset(&mut self) -> Result<(), UpstreamError> {
        match self {
            Upstream::Smtp(c) => c.rset().await,
            Upstream::Maildir(m) => {
                m.reset();
                Ok(())
            }
        }
    }

    /// One complete transaction (MAIL, one RCPT, DATA, message) for a split
    /// copy. Returns the first non-positive reply, or the final one.
    pub async fn send_copy(
        &mut self,
        from: &str,
        from_params: &str,
        to: &str,
        to_params: &str,
        parts: &Parts<'_>,
    ) -> Result<Reply, UpstreamError> {
        match self {
            Upstream::Smtp(c) => c.send_copy(from, from_params, to, to_params, parts).await,
            Upstream::Maildir(m) => {
                m.reset();
                m.mail(from);
                m.rcpt(to);
                m.deliver(parts).await
            }
        }
    }

    /// One copy per recipient (`prefix`, `head_of(i)`, `tail` back to back),
    /// each its own transaction, stopping at the first one not accepted.
    /// Over SMTP with PIPELINING a copy costs one round trip
    /// ([`smtp::Client::send_copies`]).
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
        match self {
            Upstream::Smtp(c) => {
                c.send_copies(from, from_params, rcpts, prefix, tail, head_of)
                    .await
            }
            Upstream::Maildir(m) => {
                for (i, (to, _)) in rcpts.iter().enumerate() {
                    let head = head_of(i);
                    m.reset();
                    m.mail(from);
                    m.rcpt(to);
                    match m.deliver(&[prefix, &head[..], tail]).await {
                        Ok(r) if r.is_positive() => {}
                        failure => return Copies::stopped(i, failure),
                    }
                }
                Copies::all(rcpts.len())
            }
        }
    }

    /// The message size limit upstream announced (RFC 1870 SIZE), if any.
    pub fn size_limit(&self) -> Option<usize> {
        match self {
            Upstream::Smtp(c) => c.capabilities().size,
            Upstream::Maildir(_) => None,
        }
    }

    /// Upstream refused this transaction's MAIL: every RCPT is answered
    /// with that refusal.
    pub fn mail_refused(&self) -> bool {
        match self {
            Upstream::Smtp(c) => c.mail_refused(),
            Upstream::Maildir(_) => false,
        }
    }

    /// Ready for a new transaction with nothing pending, so it may wait in
    /// the [`pool`] for the next client session.
    pub fn is_idle(&self) -> bool {
        match self {
            Upstream::Smtp(c) => c.is_idle(),
            Upstream::Maildir(_) => false,
        }
    }

    /// Can this channel take another transaction? (An SMTP session that had
    /// to be left in the middle of a DATA section cannot.)
    pub fn is_open(&self) -> bool {
        match self {
            Upstream::Smtp(c) => c.is_open(),
            Upstream::Maildir(_) => true,
        }
    }

    /// Ends the session politely; errors are irrelevant by then.
    pub async fn quit(self) {
        if let Upstream::Smtp(c) = self {
            c.quit().await;
        }
    }
}
