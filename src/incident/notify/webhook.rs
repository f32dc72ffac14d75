//! `incidents.webhook`: one JSON POST per event, for ticketing systems.
//!
//! A minimal HTTP/1.1 client over tokio (plain TCP, or TLS with the
//! guard's own rustls set-up and the system's trust store, or
//! `incidents.webhook_ca`): one request
//! per connection (`Connection: close`), success is any 2xx status line.
//! A full HTTP client (reqwest, hyper-rustls) would add dozens of crates
//! for one POST a minute at most; retries come from the outbox
//! ([`crate::incident::notify`]), not from here.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub use crate::config::Url;

/// Why a POST got no status line; the outbox retries it.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The whole exchange took longer than `incidents.webhook_timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The TCP connect failed.
    #[error("connect {host}:{port}: {error}")]
    Connect {
        /// The URL's host.
        host: String,
        /// The URL's port.
        port: u16,
        /// Why it failed.
        error: std::io::Error,
    },
    /// `incidents.webhook_ca` could not be used.
    #[error(transparent)]
    TlsSetup(#[from] crate::net::tls::TlsSetupError),
    /// The host is no name a certificate can be checked against.
    #[error("{host}: {error}")]
    ServerName {
        /// The URL's host.
        host: String,
        /// rustls's objection.
        error: rustls_pki_types::InvalidDnsNameError,
    },
    /// The TLS handshake failed (an untrusted certificate, most often).
    #[error("TLS: {0}")]
    Handshake(std::io::Error),
    /// The connection broke while writing the request or reading the answer.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The answer's first line is not `HTTP/1.x NNN ...`.
    #[error("not an HTTP status line: {0:?}")]
    NotHttp(String),
}

/// POSTs `body` as JSON; returns the status code (2xx is success). The
/// whole exchange may take `timeout` (`incidents.webhook_timeout`); https
/// trusts `ca` (`incidents.webhook_ca`) or else the system store.
pub async fn post(
    url: &Url,
    body: &[u8],
    timeout: Duration,
    ca: Option<&Path>,
) -> Result<u16, WebhookError> {
    tokio::time::timeout(timeout, post_inner(url, body, ca))
        .await
        .map_err(|_| WebhookError::Timeout(timeout))?
}

async fn post_inner(url: &Url, body: &[u8], ca: Option<&Path>) -> Result<u16, WebhookError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|error| WebhookError::Connect {
            host: url.host.clone(),
            port: url.port,
            error,
        })?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: bccguard/{}\r\nConnection: close\r\n\r\n",
        url.path,
        url.host,
        body.len(),
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    head.extend_from_slice(body);
    if url.tls {
        let connector = crate::net::tls::connector(ca, true)?;
        let name = rustls_pki_types::ServerName::try_from(url.host.clone()).map_err(|error| {
            WebhookError::ServerName {
                host: url.host.clone(),
                error,
            }
        })?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(WebhookError::Handshake)?;
        exchange(stream, &head).await
    } else {
        exchange(tcp, &head).await
    }
}

async fn exchange<S>(mut stream: S, request: &[u8]) -> Result<u16, WebhookError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    // "HTTP/1.1 204 No Content"
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| WebhookError::NotHttp(line.trim_end().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_refuse_the_odd_ones() {
        let u = Url::parse("https://tickets.example.org/hooks/dpo?x=1").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "tickets.example.org", 443, "/hooks/dpo?x=1")
        );
        let u = Url::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/")
        );
        for bad in [
            "ftp://x/",
            "http://user:pw@x/",
            "http://x:port/",
            "http:///",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn posts_json_and_reads_the_status() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.ends_with(b"{\"a\":1}") {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(buf).unwrap()
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        let timeout = crate::config::DEFAULT_WEBHOOK_TIMEOUT;
        assert_eq!(post(&url, b"{\"a\":1}", timeout, None).await.unwrap(), 202);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Content-Type: application/json\r\nContent-Length: 7\r\n"));
    }
}
