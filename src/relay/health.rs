//! Liveness and readiness, served next to `/metrics` for orchestrators and
//! load balancers, and the client side of the same check for container
//! images without a shell (`bccguard health`).
//!
//! - `/healthz` (liveness): 200 whenever the process answers HTTP. It checks
//!   nothing else on purpose: a liveness failure restarts the process, and a
//!   restart cures neither an unreachable upstream nor a bad policy.
//! - `/readyz` (readiness): 200 when the guard can take mail now: it is not
//!   draining, a policy is loaded (it always is once serving: an invalid
//!   file never replaces a valid one), and the destination works: a TCP
//!   connect to `upstream.address` within [`READY_CONNECT_TIMEOUT`], or the
//!   Maildir is writable. 503 otherwise, with the reason in the body.
//!
//! Readiness follows the upstream on purpose, as the deploy issue asks, so
//! a load balancer prefers replicas that can deliver; when *every* replica
//! loses the upstream they all turn unready together and clients see
//! refused connections instead of `451 4.4.1`, which mail clients retry
//! just the same (docs/operations.md, "Running a fleet").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Config, UpstreamTarget};

/// Longest wait for the upstream TCP connect in `/readyz`: below the 3 s
/// probe timeout of the shipped manifests, so a black-holed upstream shows
/// as "unreachable" rather than as a probe timeout. An upstream that needs
/// longer for a SYN-ACK counts as unreachable for routing purposes.
pub const READY_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for `bccguard health` to get an answer from the endpoint.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest response head `bccguard health` reads (status line only needed).
const PROBE_MAX_RESPONSE: usize = 4096;

/// Why the guard cannot take mail now; renders as the 503 body.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// Shutting down: new sessions belong on another replica.
    #[error("not ready\ndraining: shutting down\n{policy}\n")]
    Draining {
        /// The policy line of the report.
        policy: String,
    },
    /// The destination cannot take mail.
    #[error("not ready\n{policy}\n{down}\n")]
    Destination {
        /// The policy line of the report.
        policy: String,
        /// Why the destination cannot take mail.
        down: Down,
    },
}

/// Why the destination cannot take mail: one line of the report.
#[derive(Debug, thiserror::Error)]
pub enum Down {
    /// The TCP connect to the upstream failed.
    #[error("upstream: {addr} unreachable: {error}")]
    Refused {
        /// `upstream.address`.
        addr: String,
        /// The connect's error.
        error: std::io::Error,
    },
    /// No SYN-ACK within the wait.
    #[error("upstream: {addr} unreachable: no TCP connect within {wait:?}")]
    Timeout {
        /// `upstream.address`.
        addr: String,
        /// How long the check waited.
        wait: Duration,
    },
    /// The Maildir's `tmp/` takes no file.
    #[error("maildir: {} not writable: {error}", root.display())]
    NotWritable {
        /// `upstream.maildir`.
        root: PathBuf,
        /// The write's error.
        error: std::io::Error,
    },
}

/// Whether the guard can take mail now, with a human-readable report
/// (`Ok`: 200, `Err`: 503).
pub async fn readiness(config: &Config, draining: bool) -> Result<String, NotReady> {
    let policy = format!(
        "policy: loaded (threshold {}, action {}, {} rule(s))",
        config.policy.max_external_recipients,
        config.policy.action,
        config.policy.rules.len()
    );
    if draining {
        return Err(NotReady::Draining { policy });
    }
    match destination(config).await {
        Ok(line) => Ok(format!("ready\n{policy}\n{line}\n")),
        Err(down) => Err(NotReady::Destination { policy, down }),
    }
}

/// One line about the destination; `Err` if it cannot take mail.
async fn destination(config: &Config) -> Result<String, Down> {
    match &config.upstream.target {
        UpstreamTarget::Smtp(addr) => {
            let wait = READY_CONNECT_TIMEOUT.min(config.upstream.connect_timeout);
            let started = Instant::now();
            let addr = addr.clone();
            match tokio::time::timeout(wait, TcpStream::connect(addr.as_str())).await {
                // Dropping the stream closes it: no SMTP is spoken, so the
                // upstream logs at most a connect/disconnect pair.
                Ok(Ok(_stream)) => Ok(format!(
                    "upstream: {addr} reachable ({} ms)",
                    started.elapsed().as_millis()
                )),
                Ok(Err(error)) => Err(Down::Refused { addr, error }),
                Err(_) => Err(Down::Timeout { addr, wait }),
            }
        }
        UpstreamTarget::Maildir(root) => match maildir_writable(root).await {
            Ok(()) => Ok(format!("maildir: {} writable", root.display())),
            Err(error) => Err(Down::NotWritable {
                root: root.clone(),
                error,
            }),
        },
    }
}

/// Creates and removes a probe file in `tmp/`, where Maildir delivery
/// writes first (so a read-only or full volume shows here, not at the next
/// message).
async fn maildir_writable(root: &std::path::Path) -> std::io::Result<()> {
    let tmp = root.join("tmp");
    tokio::fs::create_dir_all(&tmp).await?;
    let probe = tmp.join(format!(".readyz.{}", std::process::id()));
    tokio::fs::write(&probe, b"readyz\n").await?;
    tokio::fs::remove_file(&probe).await
}

/// `GET path` on the metrics listener at `addr`; returns the HTTP status.
/// A listener bound to the unspecified address is reached over loopback.
pub async fn probe(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let exchange = async {
        let mut s = TcpStream::connect(target).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < PROBE_MAX_RESPONSE {
            match s.read(&mut chunk).await? {
                0 => break,
                n => head.extend_from_slice(&chunk[..n]),
            }
        }
        status_code(&head).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the endpoint did not answer with an HTTP status line",
            )
        })
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {target} within {PROBE_TIMEOUT:?}"),
            )
        })?
}

/// The code of an `HTTP/1.x NNN ...` status line.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    let code = parts.next()?;
    (version.starts_with("HTTP/1.") && code.len() == 3)
        .then(|| code.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(upstream: &str) -> Config {
        Config::from_yaml(
            &format!(
                "{upstream}policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n"
            ),
            "test",
        )
        .expect("config")
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 20\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[tokio::test]
    async fn ready_when_the_upstream_accepts_tcp_and_not_when_it_is_gone() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = config(&format!("upstream:\n  address: \"{addr}\"\n"));
        let ok = readiness(&c, false).await.expect("ready");
        assert!(
            ok.starts_with(
                "ready\npolicy: loaded (threshold 3, action reject, 0 rule(s))\nupstream: "
            ),
            "{ok}"
        );
        let draining = readiness(&c, true).await.expect_err("draining").to_string();
        assert!(draining.contains("draining"), "{draining}");
        drop(listener);
        let gone = readiness(&c, false)
            .await
            .expect_err("unreachable")
            .to_string();
        assert!(
            gone.contains(&format!("upstream: {addr} unreachable")),
            "{gone}"
        );
    }

    #[tokio::test]
    async fn ready_when_the_maildir_is_writable_and_leaves_no_probe_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("outbox");
        let c = config(&format!("upstream:\n  maildir: \"{}\"\n", root.display()));
        let ok = readiness(&c, false).await.expect("ready");
        assert!(ok.contains("writable"), "{ok}");
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        // A file where the Maildir should be: tmp/ cannot be created.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"x").unwrap();
        let c = config(&format!(
            "upstream:\n  maildir: \"{}\"\n",
            blocked.display()
        ));
        let err = readiness(&c, false)
            .await
            .expect_err("not writable")
            .to_string();
        assert!(err.contains("not writable"), "{err}");
    }
}
