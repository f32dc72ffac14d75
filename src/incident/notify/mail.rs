//! Sending the guard's own mails (to the DPO, to senders): lettre through
//! `incidents.smtp` when set, else through the upstream's address with the
//! upstream's TLS and service-account settings, else (a trial set-up with
//! `upstream.maildir`) into the Maildir like any other mail.

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

/// Builds the message bytes.
pub fn build(cfg: &Config, out: &Outgoing) -> Result<Message, String> {
    let from: Mailbox = format!("bccguard <{}>", cfg.incidents.from)
        .parse()
        .map_err(|e| format!("incidents.from: {e}"))?;
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
    b.body(out.body.clone()).map_err(|e| e.to_string())
}

/// Sends one mail; the error says why (for the retry and the register).
pub async fn send(cfg: &Config, out: &Outgoing) -> Result<(), String> {
    let message = build(cfg, out)?;
    let envelope =
        Envelope::new(out.envelope_from.clone(), out.to.clone()).map_err(|e| e.to_string())?;
    let bytes = message.formatted();
    if let Some(smtp) = &cfg.incidents.smtp {
        let login = smtp
            .login
            .as_ref()
            .map(|(u, p)| Credentials::new(u.clone(), p.0.clone()));
        let t = transport(cfg, &smtp.address, smtp.tls, None, true, None, login)?;
        return t
            .send_raw(&envelope, &bytes)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
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
            t.send_raw(&envelope, &bytes)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        UpstreamTarget::Maildir(_) => {
            let mut m = crate::upstream::connect(up, None)
                .await
                .map_err(|e| e.to_string())?;
            let from = out
                .envelope_from
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            for to in &out.to {
                let r = m
                    .send_copy(&from, "", to.as_ref(), "", &[&bytes])
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.is_positive() {
                    return Err(r.summary());
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
    ca: Option<&std::path::Path>,
    verify: bool,
    tls_name: Option<String>,
    login: Option<Credentials>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>().ok()?,
            ))
        })
        .ok_or_else(|| format!("{address:?} is not host:port"))?;
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
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            for der in <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(&pem) {
                let der = der.map_err(|e| format!("{}: {e}", ca.display()))?;
                p = p.add_root_certificate(Certificate::from_der(der.to_vec()).map_err(|e| e.to_string())?);
            }
        }
        let p = p.build_rustls().map_err(|e| e.to_string())?;
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
