//! The verbs around transactions: EHLO and HELO (the greeting the session
//! runs under), RSET and QUIT. NOOP, HELP and VRFY are one reply each and
//! answered in the dispatch (`mod.rs`).

use crate::smtp::reply;

use super::{Flow, Greeting, Session, Stop};

impl Session {
    /// EHLO (`esmtp`) or HELO: aborts any transaction (RFC 5321 4.1.4) and
    /// greets back, EHLO with the extensions on offer now.
    pub(super) async fn hello(&mut self, name: String, esmtp: bool) -> Result<(), Stop> {
        if name.is_empty() {
            return self.error_reply(reply::syntax("EHLO domain"));
        }
        self.abort_transaction().await;
        let hostname = &self.cfg.server.hostname;
        let greeting = if esmtp {
            let offers = reply::Offers {
                max_size: self.cfg.server.limits.max_message_size,
                starttls: self.starttls_offered(),
                auth: self.auth_offered(),
            };
            reply::ehlo(hostname, &name, offers)
        } else {
            reply::helo(hostname)
        };
        self.queue(greeting);
        self.greeting = Some(Greeting { name, esmtp });
        Ok(())
    }

    /// RSET: the transaction is forgotten, here and upstream.
    pub(super) async fn rset(&mut self) {
        self.abort_transaction().await;
        self.queue(reply::ok());
    }

    /// QUIT: `221`, then the session closes.
    pub(super) fn quit(&mut self) -> Flow {
        self.queue(reply::bye(&self.cfg.server.hostname));
        Flow::Close
    }
}
