//! STARTTLS and AUTH in the client session.
//!
//! STARTTLS (RFC 3207): after `220` every plaintext byte the client already
//! pipelined is discarded (CVE-2011-0411 command injection), and after the
//! handshake the session starts over: EHLO again, transaction, login and the
//! upstream session forgotten.
//!
//! AUTH PLAIN / LOGIN (RFC 4954) with `upstream.auth: passthrough`: the
//! client's credentials are tried on the client's own upstream session and
//! upstream's reply decides. The guard keeps no password beyond the
//! exchange and never logs one. Failures slow down (`auth_failure_delay`
//! times the failures so far) and end the session at `max_auth_failures`.

use tokio::time::timeout;

use crate::config::UpstreamAuth;
use crate::net::tls::Stream;
use crate::smtp::refusal::{Reason, Refusal};
use crate::smtp::reply;
use crate::smtp::sasl::{self, Credentials, SaslError};

use super::{Session, Stop};

/// Where an AUTH exchange stands while it waits for the client.
#[derive(Debug)]
pub(super) enum SaslStep {
    /// PLAIN without an initial response: the next line is the response.
    Plain,
    /// LOGIN: the next line is the user name.
    LoginUser,
    /// LOGIN: the next line is the password for this user.
    LoginPass(String),
}

impl Session {
    /// STARTTLS is offered: a certificate is configured, TLS not yet active.
    pub(super) fn starttls_offered(&self) -> bool {
        self.shared.tls_acceptor().is_some() && !self.stream.is_tls()
    }

    /// AUTH is offered: credentials can be checked upstream, and the link is
    /// encrypted or encryption is not required.
    pub(super) fn auth_offered(&self) -> bool {
        self.cfg.upstream.auth == UpstreamAuth::Passthrough
            && (self.stream.is_tls() || !self.cfg.server.require_tls)
            && self.auth_user.is_none()
    }

    pub(super) async fn starttls(&mut self) -> Result<(), Stop> {
        let Some(acceptor) = self.shared.tls_acceptor() else {
            return self.error_reply(reply::not_implemented());
        };
        if self.stream.is_tls() {
            return self.error_reply(reply::bad_sequence("TLS already active"));
        }
        self.queue(reply::ready_to_start_tls());
        self.flush().await?;
        // Whatever the client sent after STARTTLS in plaintext is not
        // trusted input: drop it before the handshake.
        self.inbuf.clear();
        self.pos = 0;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(Stop::Gone);
        };
        match timeout(self.cfg.server.limits.idle_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => self.stream = Stream::Server(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::info!(client = %self.peer, "TLS handshake failed: {e}");
                return Err(Stop::Gone);
            }
            Err(_) => return Err(Stop::Gone),
        }
        self.abort_transaction().await;
        self.greeting = None;
        self.auth_user = None;
        self.sasl = None;
        if let Some(up) = self.upstream.take() {
            up.quit().await;
        }
        Ok(())
    }

    pub(super) async fn auth(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
    ) -> Result<(), Stop> {
        if self.cfg.upstream.auth != UpstreamAuth::Passthrough {
            return self.error_reply(reply::not_implemented());
        }
        if self.cfg.server.require_tls && !self.stream.is_tls() {
            let r = self.refusal(Refusal::EncryptionRequired);
            return self.error_reply(r);
        }
        if self.greeting.is_none() {
            return self.error_reply(reply::bad_sequence("send EHLO first"));
        }
        if self.auth_user.is_some() {
            return self.error_reply(reply::bad_sequence("already authenticated"));
        }
        if self.tx.is_some() {
            return self.error_reply(reply::bad_sequence(
                "AUTH not allowed during a mail transaction",
            ));
        }
        match (mechanism, initial) {
            ("PLAIN", Some(response)) => {
                let creds = sasl::decode_line(&response).and_then(|raw| sasl::parse_plain(&raw));
                self.finish_exchange(creds).await
            }
            ("PLAIN", None) => {
                self.sasl = Some(SaslStep::Plain);
                self.queue(reply::auth_challenge(""));
                Ok(())
            }
            ("LOGIN", Some(user)) => {
                match sasl::decode_line(&user).and_then(sasl::parse_login_part) {
                    Ok(user) => {
                        self.sasl = Some(SaslStep::LoginPass(user));
                        self.queue(reply::auth_challenge(sasl::LOGIN_PASS_CHALLENGE));
                        Ok(())
                    }
                    Err(e) => self.finish_exchange(Err(e)).await,
                }
            }
            ("LOGIN", None) => {
                self.sasl = Some(SaslStep::LoginUser);
                self.queue(reply::auth_challenge(sasl::LOGIN_USER_CHALLENGE));
                Ok(())
            }
            _ => self.error_reply(reply::auth_mechanism_unsupported()),
        }
    }

    /// The client's next line in an AUTH exchange.
    pub(super) async fn sasl_line(&mut self, line: &[u8]) -> Result<(), Stop> {
        let text = String::from_utf8_lossy(line);
        let decoded = sasl::decode_line(&text);
        match self.sasl.take() {
            None => Ok(()),
            Some(SaslStep::Plain) => {
                let creds = decoded.and_then(|raw| sasl::parse_plain(&raw));
                self.finish_exchange(creds).await
            }
            Some(SaslStep::LoginUser) => match decoded.and_then(sasl::parse_login_part) {
                Ok(user) => {
                    self.sasl = Some(SaslStep::LoginPass(user));
                    self.queue(reply::auth_challenge(sasl::LOGIN_PASS_CHALLENGE));
                    Ok(())
                }
                Err(e) => self.finish_exchange(Err(e)).await,
            },
            Some(SaslStep::LoginPass(username)) => {
                let creds = decoded
                    .and_then(sasl::parse_login_part)
                    .map(|password| Credentials { username, password });
                self.finish_exchange(creds).await
            }
        }
    }

    /// Checks complete credentials upstream and answers the client.
    async fn finish_exchange(&mut self, creds: Result<Credentials, SaslError>) -> Result<(), Stop> {
        let creds = match creds {
            Ok(c) => c,
            Err(SaslError::Cancelled) => return self.error_reply(reply::auth_cancelled()),
            Err(SaslError::Malformed) => return self.error_reply(reply::auth_malformed()),
        };
        let result = match self.upstream_mut().await {
            Ok(up) => up.auth(&creds).await,
            Err(e) => Err(e),
        };
        let username = creds.username.clone();
        drop(creds);
        let answer = self.upstream_result(result);
        if answer.is_positive() {
            tracing::info!(client = %self.peer, user = %username, "authenticated upstream");
            self.auth_user = Some(username);
            self.queue(answer);
            return Ok(());
        }
        if !answer.is_permanent() {
            // 454 and friends: upstream could not check; not the client's fault.
            self.queue(answer);
            return Ok(());
        }
        self.auth_failures += 1;
        self.shared.metrics.refused(Reason::AuthFailed);
        tracing::info!(client = %self.peer, user = %username, failures = self.auth_failures, "authentication failed");
        let delay = self.cfg.server.limits.auth_failure_delay * self.auth_failures as u32;
        tokio::time::sleep(delay).await;
        if self.auth_failures >= self.cfg.server.limits.max_auth_failures {
            let hostname = &self.cfg.server.hostname;
            let closing = self.refusal(Refusal::TooManyAuthFailures { hostname });
            self.queue(answer);
            self.queue(closing);
            return Err(Stop::Close);
        }
        self.error_reply(answer)
    }

    /// `server.require_sender_match`: may the logged-in user send as
    /// `address`? Unauthenticated (trusted-network) sessions and the null
    /// sender are not restricted.
    pub(super) fn sender_allowed(&self, address: &str) -> bool {
        let server = &self.cfg.server;
        let Some(user) = self.auth_user.as_deref() else {
            return true;
        };
        if !server.require_sender_match || address.is_empty() {
            return true;
        }
        let login = user.to_lowercase();
        match server.sender_map.iter().find(|(l, _)| *l == login) {
            Some((_, patterns)) => patterns.iter().any(|p| p.matches(address)),
            None => address.eq_ignore_ascii_case(user),
        }
    }
}
