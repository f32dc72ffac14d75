//! Sending the guard's own mails (to the DPO, to senders): lettre through
//! `incidents.smtp` when set, else through the upstream's address with the
//! upstream's TLS and service-account settings, else (a trial set-up with
//! `upstream.maildir`) into the Maildir like any other mail.

use std::path::{Path, PathBuf};

use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Config, UpstreamAuth, UpstreamTarget, UpstreamTls};

/// `Auto-Submitted` (RFC 3834): no auto-responder answers the guard's
/// mails, and no loop starts.
#[derive(Debug, Clone)]
struct AutoSubmitted(String);

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// One mail of the guard's own.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Envelope sender; `None` is the null sender (notices to senders,
    /// RFC 3834 / RFC 5321 4.5.5: nobody bounces a bounce).
    pub envelope_from: Option<lettre::Address>,
    /// Recipients.
    pub to: Vec<lettre::Address>,
    /// Subject (plain text; encoded by lettre, RFC 2047).
    pub subject: String,
    /// Body (plain UTF-8 text, LF line ends).
    pub body: String,
}

/// Why a mail of the guard's own did not go out; the outbox retries it.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `incidents.from` is no mailbox.
    #[error("incidents.from: {0}")]
    From(lettre::address::AddressError),
    /// lettre could not build the message.
    #[error(transparent)]
    Message(lettre::error::Error),
    /// lettre could not build the envelope.
    #[error(transparent)]
    Envelope(lettre::error::Error),
    /// The SMTP address is not `host:port`.
    #[error("{0:?} is not host:port")]
    Address(String),
    /// `upstream.ca` could not be read.
    #[error("{}: {error}", path.display())]
    CaFile {
        /// `upstream.ca`.
        path: PathBuf,
        /// The read's error.
        error: std::io::Error,
    },
    /// `upstream.ca` holds something that is not a PEM certificate.
    #[error("{}: {error}", path.display())]
    CaPem {
        /// `upstream.ca`.
        path: PathBuf,
        /// The parser's objection.
        error: rustls_pki_types::pem::Error,
    },
    /// The TLS set-up, the connection or the SMTP exchange failed.
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// The Maildir (a trial set-up) could not be used.
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    /// The Maildir refused a copy, with its reply.
    #[error("{0}")]
    Refused(String),
}

/// Builds the message bytes.
pub fn build(cfg: &Config, out: &Outgoing) -> Result<Message, MailError> {
    let from: Mailbox = format!("bccguard <{}>", cfg.incidents.from)
        .parse()
        .map_err(MailError::From)?;
    let mut b = Message::builder()
        .from(from)
        .subject(out.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .header(AutoSubmitted(
            if out.envelope_from.is_none() {
                "auto-replied"
            } else {
                "auto-generated"
            }
            .into(),
        ));
    for to in &out.to {
        b = b.to(Mailbox::new(None, to.clone()));
    }
    b.body(out.body.clone()).map_err(MailError::Message)
}

/// Sends one mail; the error says why (for the retry and the register).
pub async fn send(cfg: &Config, out: &Outgoing) -> Result<(), MailError> {
    let message = build(cfg, out)?;
    let envelope =
        Envelope::new(out.envelope_from.clone(), out.to.clone()).map_err(MailError::Envelope)?;
    let bytes = message.formatted();
    if let Some(smtp) = &cfg.incidents.smtp {
        let login = smtp
            .login
            .as_ref()
            .map(|(u, p)| Credentials::new(u.clone(), p.0.clone()));
        let t = transport(cfg, &smtp.address, smtp.tls, None, true, None, login)?;
        t.send_raw(&envelope, &bytes).await?;
        return Ok(());
    }
    let up = &cfg.upstream;
    match &up.target {
        UpstreamTarget::Smtp(addr) => {
            let login = match &up.auth {
                UpstreamAuth::Account { username, password } => {
                    Some(Credentials::new(username.clone(), password.0.clone()))
                }
                _ => None,
            };
            let t = transport(
                cfg,
                addr,
                up.tls,
                up.ca.as_deref(),
                up.tls_verify,
                up.tls_name.clone(),
                login,
            )?;
            t.send_raw(&envelope, &bytes).await?;
            Ok(())
        }
        UpstreamTarget::Maildir(_) => {
            let mut m = crate::upstream::connect(up, None).await?;
            let from = out
                .envelope_from
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            for to in &out.to {
                let r = m.send_copy(&from, "", to.as_ref(), "", &[&bytes]).await?;
                if !r.is_positive() {
                    return Err(MailError::Refused(r.summary()));
                }
            }
            Ok(())
        }
    }
}

fn transport(
    cfg: &Config,
    address: &str,
    tls: UpstreamTls,
    ca: Option<&Path>,
    verify: bool,
    tls_name: Option<String>,
    login: Option<Credentials>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>().ok()?,
            ))
        })
        .ok_or_else(|| MailError::Address(address.to_string()))?;
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .hello_name(ClientId::Domain(cfg.upstream.helo.clone()))
        .timeout(Some(cfg.upstream.command_timeout));
    if tls != UpstreamTls::None {
        let mut p = TlsParameters::builder(tls_name.unwrap_or_else(|| host.to_string()))
            .dangerous_accept_invalid_certs(!verify);
        if let Some(ca) = ca {
            // upstream.ca means "trust only these", as on the proxy path.
            p = p.certificate_store(CertificateStore::None);
            for der in ca_certificates(ca)? {
                p = p.add_root_certificate(Certificate::from_der(der)?);
            }
        }
        let p = p.build_rustls()?;
        b = b.tls(match tls {
            UpstreamTls::Tls => Tls::Wrapper(p),
            _ => Tls::Required(p),
        });
    }
    if let Some(c) = login {
        b = b.credentials(c);
    }
    Ok(b.build())
}

/// The DER certificates of the PEM file `ca`.
fn ca_certificates(ca: &Path) -> Result<Vec<Vec<u8>>, MailError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(ca).map_err(|error| MailError::CaFile {
        path: ca.to_path_buf(),
        error,
    })?;
    CertificateDer::pem_slice_iter(&pem)
        .map(|der| {
            der.map(|d| d.to_vec()).map_err(|error| MailError::CaPem {
                path: ca.to_path_buf(),
                error,
            })
        })
        .collect()
}
