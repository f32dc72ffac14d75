//! The upstream channel of a session: opened, reopened when a pooled one
//! turns out closed, parked in the pool between transactions, aborted; and
//! its outcomes turned into the client's replies.

use crate::smtp::reply::Reply;
use crate::upstream::{self, Upstream};

use super::{Session, Stop};

impl Session {
    /// Whether the transaction's first upstream exchange just `failed` on a
    /// channel from the pool (see
    /// [`Transaction::pooled`](super::Transaction::pooled)); any answer
    /// ends that first exchange.
    pub(super) fn stale_channel(&mut self, failed: bool) -> bool {
        let pooled = self
            .tx
            .as_mut()
            .is_some_and(|tx| std::mem::take(&mut tx.pooled));
        failed && pooled
    }

    /// A new upstream connection for the open transaction, its MAIL queued
    /// again (the old channel is dropped: upstream had closed it).
    pub(super) async fn reopen_upstream(
        &mut self,
    ) -> Result<&mut Upstream, upstream::UpstreamError> {
        let (from, params) = self
            .tx
            .as_ref()
            .map(|tx| (tx.mail_from.clone(), tx.mail_params.clone()))
            .unwrap_or_default();
        self.reopen_upstream_for(&from, &params).await
    }

    /// A new upstream connection with MAIL `from` queued (the old channel
    /// is dropped: upstream had closed it).
    pub(super) async fn reopen_upstream_for(
        &mut self,
        from: &str,
        params: &str,
    ) -> Result<&mut Upstream, upstream::UpstreamError> {
        self.upstream = None;
        let up = self.upstream_mut().await?;
        up.mail(from, params);
        Ok(up)
    }

    /// Hands an upstream SMTP session with no transaction open to the pool
    /// (the next MAIL, of this client or another, takes it back). One the
    /// pool does not keep is closed without delaying the client's reply.
    ///
    /// An upstream session that carries this client's own login (AUTH
    /// passthrough) is never pooled: whoever took it next would send as
    /// that user.
    pub(super) fn park_upstream(&mut self) {
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

    /// The upstream channel, opened when a MAIL finds none.
    pub(super) async fn upstream_mut(&mut self) -> Result<&mut Upstream, upstream::UpstreamError> {
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
    pub(super) fn upstream_result(
        &mut self,
        result: Result<Reply, upstream::UpstreamError>,
    ) -> Reply {
        match result {
            Ok(reply) => {
                if reply.is_transient() {
                    self.shared.metrics.upstream_error("tempfail");
                }
                reply
            }
            Err(e) => {
                tracing::warn!(target: super::LOG_TARGET, client = %self.peer, kind = e.kind(), error = %e, "upstream failure");
                self.shared.metrics.upstream_error(e.kind());
                self.upstream = None;
                self.tx = None;
                e.reply()
            }
        }
    }

    /// Queues upstream's reply; its 5xx count as client errors too.
    pub(super) fn relay_reply(&mut self, reply: Reply) -> Result<(), Stop> {
        if reply.is_permanent() {
            self.error_reply(reply)
        } else {
            self.queue(reply);
            Ok(())
        }
    }

    /// Forgets the transaction and aborts it upstream.
    pub(super) async fn abort_transaction(&mut self) {
        if self.tx.take().is_some() {
            self.abort_upstream().await;
        }
    }

    /// Aborts upstream's open transaction without a final dot.
    pub(super) async fn abort_upstream(&mut self) {
        if let Some(up) = self.upstream.as_mut()
            && let Err(e) = up.rset().await
        {
            self.shared.metrics.upstream_error(e.kind());
            self.upstream = None;
        }
    }
}

/// What sending on a channel that is not there is: the same as one that
/// closed (the client hears the transport failure's reply).
pub(super) fn no_channel() -> upstream::UpstreamError {
    upstream::UpstreamError::Closed(std::io::ErrorKind::NotConnected.into())
}
