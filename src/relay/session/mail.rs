//! MAIL: the guard's own checks on the sender, then the transaction opened
//! on an upstream channel.

use crate::smtp::refusal::Refusal;
use crate::smtp::reply::{self, Reply};
use crate::upstream::{self, Upstream};

use super::{Session, Stop, Transaction};

impl Session {
    /// MAIL: the guard's checks, then the transaction opened upstream
    /// (where MAIL waits for the first RCPT); upstream's reply is relayed.
    pub(super) async fn mail(&mut self, address: String, params: String) -> Result<(), Stop> {
        if self.greeting.is_none() {
            return self.error_reply(reply::bad_sequence("send HELO/EHLO first"));
        }
        if self.tx.is_some() {
            return self.error_reply(reply::bad_sequence("nested MAIL command"));
        }
        self.take_config();
        let size_hint = mail_size_param(&params);
        if let Some(r) = self.sender_refusal(&address, size_hint) {
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
                id: crate::id::new_id(),
                mail_from: address,
                mail_params: params,
                rcpts: Vec::new(),
                size_hint,
                smtputf8,
                recipients: self.cfg.upstream.recipients,
                pooled,
                refusal_counted: false,
            });
        }
        self.relay_reply(reply)
    }

    /// A reloaded policy applies from the next transaction on, also in
    /// long-lived sessions (scanners, scripts); the client's trust is
    /// judged again under it.
    fn take_config(&mut self) {
        self.cfg = self.shared.config();
        self.trusted = super::trusted(&self.cfg, self.peer.ip());
    }

    /// The guard's own refusal of a MAIL, if it has one: TLS required, a
    /// client that may not relay, a sender it may not use, a SIZE over the
    /// limit.
    fn sender_refusal(&self, address: &str, size_hint: usize) -> Option<Reply> {
        if self.cfg.server.require_tls && !self.stream.is_tls() {
            return Some(self.refusal(Refusal::TlsRequired));
        }
        if !self.trusted && self.auth_user.is_none() {
            // No upstream connection is opened for a client that may not
            // relay: the upstream trusts the guard, so this is the open-relay
            // line (RFC 5321 3.6.2, 7.1).
            return Some(self.refusal(Refusal::RelayDenied));
        }
        if !self.sender_allowed(address) {
            return Some(self.refusal(Refusal::SenderMismatch { sender: address }));
        }
        let max = self.cfg.server.limits.max_message_size;
        (size_hint > max).then(|| self.refusal(Refusal::TooBig { limit: max }))
    }

    /// Starts the transaction on this session's upstream channel, an idle
    /// one from the pool (where this session's own waits between its
    /// messages), or a new one; only connecting can fail. Also says whether
    /// the channel came from the pool ([`Transaction::pooled`]).
    pub(super) async fn upstream_mail(
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
