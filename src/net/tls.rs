//! TLS on both hops, with rustls (TLS 1.2 and 1.3 only).
//!
//! - Towards clients: STARTTLS (RFC 3207) and implicit TLS (RFC 8314) share
//!   one [`tokio_rustls::TlsAcceptor`] whose certificate comes from a
//!   [`ReloadingCert`]: the PEM files are re-read when they change, so a
//!   renewed certificate is served without a restart, and a broken renewal
//!   keeps the old one (and says so in the log).
//! - Towards upstream: a [`tokio_rustls::TlsConnector`] verifying against the
//!   system's trust store or `upstream.ca`; `upstream.tls_verify: false`
//!   turns verification off for labs, loudly.
//!
//! [`Stream`] is the one socket type the session and the upstream client
//! use, plain or encrypted.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How often the certificate files are checked for a change, at most.
pub const CERT_RECHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The crypto provider used everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the material.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

fn pem_error(path: &Path, message: impl ToString) -> TlsSetupError {
    TlsSetupError::Pem {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Loads a certificate chain and its private key from PEM files.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsSetupError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(pem_error(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| pem_error(key, format!("does not fit the certificate: {e}")))
}

/// Serves the certificate in `cert`/`key`, re-reading them when their
/// modification time changes.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<(Instant, Option<SystemTime>)>,
}

impl ReloadingCert {
    /// Loads the files once; a failure here is a start-up error.
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsSetupError> {
        let loaded = load_certified_key(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: ArcSwap::from_pointee(loaded),
            seen: Mutex::new((Instant::now(), Self::stamp(cert, key))),
        })
    }

    fn stamp(cert: &Path, key: &Path) -> Option<SystemTime> {
        let c = std::fs::metadata(cert).and_then(|m| m.modified()).ok()?;
        let k = std::fs::metadata(key).and_then(|m| m.modified()).ok()?;
        Some(c.max(k))
    }

    /// Re-reads the files if they changed since the last look, at most
    /// every [`CERT_RECHECK_INTERVAL`].
    pub fn refresh(&self) {
        let due = {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.0.elapsed() >= CERT_RECHECK_INTERVAL
        };
        if due {
            self.reload_if_changed();
        }
    }

    fn reload_if_changed(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.0 = Instant::now();
        let stamp = Self::stamp(&self.cert, &self.key);
        if stamp == seen.1 {
            return;
        }
        match load_certified_key(&self.cert, &self.key) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                seen.1 = stamp;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(
                "TLS certificate changed but cannot be loaded, keeping the old one: {e}"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current.load_full())
    }
}

/// The acceptor for client connections.
pub fn acceptor(cert: Arc<ReloadingCert>) -> Result<tokio_rustls::TlsAcceptor, TlsSetupError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The connector towards upstream: system roots, or only `ca` when given;
/// no verification at all when `verify` is false.
pub fn connector(
    ca: Option<&Path>,
    verify: bool,
) -> Result<tokio_rustls::TlsConnector, TlsSetupError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let config = if !verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e))? {
                    roots.add(cert.map_err(|e| pem_error(path, e))?)?;
                }
                if roots.is_empty() {
                    return Err(pem_error(path, "no certificate in the file"));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    // A single odd system certificate must not disable TLS.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    tracing::warn!("no system trust anchors found; set upstream.ca");
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `upstream.tls_verify: false`: accepts any certificate (labs only).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection, plain or encrypted, in either direction.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS accepted from a client.
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS towards upstream.
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Taken away (during a STARTTLS upgrade); every operation fails.
    Closed,
}

impl Stream {
    /// Is the connection encrypted?
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Server(_) | Stream::Client(_))
    }

    /// Non-blocking read on the TCP socket underneath. Only for telling
    /// whether the peer sent anything (a close, a 421): any byte it
    /// returns, even of a TLS record, means the connection is not reused.
    pub fn try_read_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_read(buf),
            Stream::Server(s) => s.get_ref().0.try_read(buf),
            Stream::Client(s) => s.get_ref().0.try_read(buf),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The negotiated protocol and cipher, for the Received header.
    pub fn tls_description(&self) -> Option<String> {
        let conn: &rustls::CommonState = match self {
            Stream::Plain(_) | Stream::Closed => return None,
            Stream::Server(s) => s.get_ref().1,
            Stream::Client(s) => s.get_ref().1,
        };
        let version = conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let suite = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        Some(format!(
            "version={} cipher={}",
            version.replace('_', "."),
            suite
        ))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Server(s) => Pin::new(s).poll_flush(cx),
            Stream::Client(s) => Pin::new(s).poll_flush(cx),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Server(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Client(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &Path, name: &str, stamp: SystemTime) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        for p in [&c, &k] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(stamp)
                .unwrap();
        }
        (c, k)
    }

    #[test]
    fn a_renewed_certificate_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::now() - Duration::from_secs(100);
        let (cert, key) = write_cert(dir.path(), "first", t0);
        let reloading = ReloadingCert::new(&cert, &key).unwrap();
        let first = reloading.current.load_full();
        // Unchanged files: the same key stays.
        reloading.reload_if_changed();
        assert!(Arc::ptr_eq(&first, &reloading.current.load_full()));
        // Renewed: the new certificate is served without a restart.
        write_cert(dir.path(), "second", t0 + Duration::from_secs(10));
        reloading.reload_if_changed();
        let second = reloading.current.load_full();
        assert_ne!(first.cert[0], second.cert[0]);
        // A broken renewal keeps the working certificate.
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&cert)
            .unwrap()
            .set_modified(t0 + Duration::from_secs(20))
            .unwrap();
        reloading.reload_if_changed();
        assert_eq!(reloading.current.load_full().cert[0], second.cert[0]);
    }
}
