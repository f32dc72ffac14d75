//! Sending a held message on: the session's own pipeline (decide, plan,
//! rewrite and check) and [`upstream::connect`], in one transaction or
//! one per recipient, and why that failed ([`ReleaseError`]).

use crate::config::Config;
use crate::incident::store::Held;
use crate::message::headers::HeaderError;
use crate::policy::{self, Action, Envelope};
use crate::rewrite::plan::{self, Refused, Route, Splitter};
use crate::rewrite::{self};
use crate::smtp::reply::Reply;
use crate::upstream::{self, Upstream};

use super::ReleaseAs;

/// Why a held message could not be sent on; it stays held.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The message nests deeper than the policy reads.
    #[error("the MIME structure is nested deeper than policy.mime_nesting_limit")]
    TooDeep,
    /// A header section is larger than the guard reads.
    #[error("a header section is larger than server.limits.max_header_size")]
    HeaderTooBig,
    /// A rewrite would break the signature or cannot see inside.
    #[error("signed or encrypted mail cannot be rewritten; release it --as original, or drop it")]
    Signed,
    /// The rewrite would still show addresses ([`rewrite::Unsafe`]).
    #[error("{0}; release it --as original, or drop it")]
    Unsafe(String),
    /// The upstream's TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsSetupError),
    /// The upstream could not be reached or broke off.
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    /// The upstream refused MAIL or the message, with its reply.
    #[error("{}", .0.summary())]
    Rejected(Reply),
    /// The upstream refused every recipient (or MAIL, which shows as that).
    #[error("upstream refused all {total} recipients: {first}")]
    AllRefused {
        /// How many recipients there were.
        total: usize,
        /// The first refusal, `<address>: reply`.
        first: String,
    },
    /// Of a split release, no copy was accepted.
    #[error("upstream accepted none of the {total} copies")]
    NoCopy {
        /// How many copies there were.
        total: usize,
    },
}

impl From<HeaderError> for ReleaseError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::TooDeep => ReleaseError::TooDeep,
            HeaderError::TooBig | HeaderError::AttachedTooBig => ReleaseError::HeaderTooBig,
        }
    }
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// For the register: counts and upstream's final answer, no address.
    pub summary: String,
    /// Recipients upstream refused, with its replies (for the operator's
    /// terminal only; the register keeps the count).
    pub refused: Vec<String>,
}

/// Sends `held` as `how` says; `Err` leaves nothing sent (or, for a
/// split, no copy accepted).
pub(super) async fn send(
    cfg: &Config,
    held: &Held,
    how: ReleaseAs,
) -> Result<Released, ReleaseError> {
    let rcpts: Vec<String> = held.rcpts.iter().map(|(a, _)| a.clone()).collect();
    let envelope = Envelope {
        mail_from: &held.mail_from,
        rcpt_to: &rcpts,
    };
    let decision = policy::decide(&cfg.policy, envelope, &held.message)?;
    // The session's own pipeline: the same rewrite and the same check, so
    // a released copy hides exactly what a sent one would.
    let measure = match how {
        ReleaseAs::Bcc => Some(Action::Bcc),
        ReleaseAs::Split => Some(Action::Split),
        ReleaseAs::Original => None,
    };
    let plan = plan::plan(
        &cfg.policy,
        &decision,
        &held.message,
        &held.mail_from,
        measure,
    );
    let body = match plan.route {
        Route::Whole(body) => Some(body),
        Route::Split => None,
        Route::Refuse(Refused::Signed) => return Err(ReleaseError::Signed),
        Route::Refuse(Refused::Unsafe(why)) => return Err(ReleaseError::Unsafe(why.describe())),
        Route::Refuse(Refused::OpenList) | Route::Hold => {
            unreachable!("a release plans bcc, split or the original")
        }
    };
    let tls = upstream::connector(&cfg.upstream)?;
    let mut up = upstream::connect(&cfg.upstream, tls.as_ref()).await?;
    let msg = &held.message[..];
    let received = held.received.as_bytes();
    let result = match body {
        Some(body) => one_transaction(&mut up, held, &body.parts(received, msg)).await,
        None => {
            let splitter = Splitter::new(&cfg.policy, &decision, msg, &held.mail_from);
            let copies: Vec<_> = held
                .rcpts
                .iter()
                .map(|(rcpt, _)| splitter.copy(Some(rcpt)))
                .collect();
            split(&mut up, held, &copies, received, msg).await
        }
    };
    up.quit().await;
    result
}

/// MAIL, every RCPT, DATA: recipients upstream refuses are left out, as a
/// client's transaction would go on without them.
async fn one_transaction(
    up: &mut Upstream,
    held: &Held,
    parts: &[&[u8]],
) -> Result<Released, ReleaseError> {
    let r = up.mail(&held.mail_from, &held.mail_params);
    if !r.is_positive() {
        return Err(ReleaseError::Rejected(r));
    }
    let mut refused = Vec::new();
    for (rcpt, params) in &held.rcpts {
        let r = up.rcpt(rcpt, params).await?;
        if !r.is_positive() {
            refused.push(format!("<{rcpt}>: {}", r.summary()));
        }
    }
    let total = held.rcpts.len();
    if refused.len() == total {
        let _ = up.rset().await;
        // A refused MAIL shows here too, as the answer to every RCPT.
        return Err(ReleaseError::AllRefused {
            total,
            first: refused.first().cloned().unwrap_or_default(),
        });
    }
    let r = up.data(parts).await?;
    if !r.is_positive() {
        return Err(ReleaseError::Rejected(r));
    }
    Ok(Released {
        summary: format!(
            "{} of {total} recipients accepted; upstream: {}",
            total - refused.len(),
            r.summary()
        ),
        refused,
    })
}

/// One transaction per recipient, each copy showing only its own address.
async fn split(
    up: &mut Upstream,
    held: &Held,
    copies: &[rewrite::Rewritten],
    received: &[u8],
    msg: &[u8],
) -> Result<Released, ReleaseError> {
    let mut refused = Vec::new();
    for ((rcpt, params), rw) in held.rcpts.iter().zip(copies) {
        let parts = [received, &rw.head[..], &msg[rw.rest..]];
        match up
            .send_copy(&held.mail_from, &held.mail_params, rcpt, params, &parts)
            .await
        {
            Ok(r) if r.is_positive() => {}
            Ok(r) => refused.push(format!("<{rcpt}>: {}", r.summary())),
            Err(e) => refused.push(format!("<{rcpt}>: {e}")),
        }
    }
    let total = held.rcpts.len();
    if refused.len() == total {
        return Err(ReleaseError::NoCopy { total });
    }
    Ok(Released {
        summary: format!(
            "{} of {total} separate copies accepted",
            total - refused.len()
        ),
        refused,
    })
}
