//! The accept loop, and the tasks that run beside it.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so the
//! binary binds what `policy.yaml` says while tests bind port 0. Connection
//! limits are checked before a session starts: over `max_connections` or
//! `max_connections_per_ip` the client gets `421 4.7.0` and is closed.
//! On shutdown, listeners stop, idle sessions get `421 4.3.2`, and sessions
//! in the middle of a message finish it; the metrics listener keeps serving
//! until they are done (`/readyz` says 503 "draining" meanwhile).
//!
//! With `server.proxy_protocol`, a connection is admitted only from
//! `server.proxy_trusted_networks` and only after a valid PROXY header
//! ([`crate::relay::proxy_protocol`]); the session, the connection limits, the
//! `Received` header and incident records then see the client the header
//! names, not the load balancer.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::net::tls::Stream;
use crate::relay::proxy_protocol::{self, ReadError};
use crate::relay::session::Session;
use crate::relay::spool;
use crate::relay::state::Shared;
use crate::smtp::refusal::{Reason, Refusal};

/// Bound sockets for [`run`].
#[derive(Debug)]
pub struct Listeners {
    /// SMTP listeners (plaintext, STARTTLS if configured).
    pub smtp: Vec<TcpListener>,
    /// Implicit-TLS listeners (`server.tls_listen`).
    pub smtps: Vec<TcpListener>,
    /// The `/metrics` listener, if enabled.
    pub metrics: Option<TcpListener>,
    /// The DPO console's listener, if enabled (`console.listen`).
    pub console: Option<TcpListener>,
}

impl Listeners {
    /// Binds what the configuration names.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let mut smtp = Vec::new();
        for addr in &config.server.listen {
            smtp.push(bind(*addr).await?);
        }
        let mut smtps = Vec::new();
        for addr in &config.server.tls_listen {
            smtps.push(bind(*addr).await?);
        }
        let metrics = match config.metrics.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let console = match config.console.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self {
            smtp,
            smtps,
            metrics,
            console,
        })
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves until `shutdown` resolves, then drains: in-flight sessions are
/// told 421 at their next read and awaited.
pub async fn run(
    shared: Arc<Shared>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // The metrics listener outlives the SMTP side: during the drain the
    // last sessions still count, and probes still get an answer.
    let (metrics_stop_tx, mut metrics_stop_rx) = watch::channel(false);
    let metrics_task = listeners.metrics.map(|listener| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = metrics_stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::relay::http::serve(listener, shared, stopped).await {
                tracing::error!("metrics endpoint failed: {e}");
            }
        })
    });
    // The console stops with the metrics listener: a DPO deciding on
    // held mail is not a session to drain.
    let console_task = listeners.console.map(|listener| {
        let wf = shared.workflow_handles();
        let mut stop = metrics_stop_tx.subscribe();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::console::serve(listener, wf, stopped).await {
                tracing::error!("console failed: {e}");
            }
        })
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(spool::run(
        shared.retrier(),
        shared.spool.clone(),
        shared.config().spool.retry,
        stop_rx.clone(),
    ));
    tasks.spawn(crate::incident::notify::run(
        shared.workflow_handles(),
        stop_rx.clone(),
    ));
    tasks.spawn(crate::incident::quarantine::run_expiry(
        shared.workflow_handles(),
        stop_rx.clone(),
    ));
    tasks.spawn(crate::relay::groups::watch(
        shared.clone(),
        crate::relay::groups::GROUPS_POLL,
        stop_rx.clone(),
    ));
    for listener in listeners.smtp {
        tasks.spawn(accept_loop(
            listener,
            false,
            shared.clone(),
            stop_rx.clone(),
        ));
    }
    for listener in listeners.smtps {
        tasks.spawn(accept_loop(listener, true, shared.clone(), stop_rx.clone()));
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections, finishing open sessions");
    shared.start_draining();
    let _ = stop_tx.send(true);
    let grace = shared.config().server.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(grace = ?grace, "shutdown grace period over: closing the sessions still open");
        tasks.shutdown().await;
    }
    let _ = metrics_stop_tx.send(true);
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    if let Some(task) = console_task {
        let _ = task.await;
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    implicit_tls: bool,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.config().server.proxy_protocol {
            sessions.spawn(proxied(
                stream,
                peer,
                implicit_tls,
                shared.clone(),
                stop.clone(),
            ));
            continue;
        }
        let ip = peer.ip().to_canonical();
        match shared.admit(ip) {
            Some(slot) => {
                let (shared, stop) = (shared.clone(), stop.clone());
                sessions.spawn(async move {
                    start_session(stream, peer, implicit_tls, shared, stop).await;
                    drop(slot);
                });
            }
            None => {
                shared.metrics.refused(Reason::TooManyConnections);
                let hostname = shared.config().server.hostname.clone();
                tokio::spawn(refuse(stream, hostname));
            }
        }
    }
    while sessions.join_next().await.is_some() {}
}

/// RFC 8314: TLS from the first byte, before the greeting.
async fn implicit_handshake(stream: TcpStream, shared: &Shared) -> Option<Stream> {
    let acceptor = shared.tls_acceptor()?;
    let limit = shared.config().server.limits.idle_timeout;
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(Stream::Server(Box::new(tls))),
        Ok(Err(e)) => {
            tracing::info!("implicit TLS handshake failed: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Runs one admitted client connection: TLS first on an implicit-TLS
/// listener, then the session. `client` is the real client (the PROXY
/// header's, or the peer's).
async fn start_session(
    stream: TcpStream,
    client: SocketAddr,
    implicit_tls: bool,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let stream = if implicit_tls {
        match implicit_handshake(stream, &shared).await {
            Some(s) => s,
            None => return,
        }
    } else {
        Stream::Plain(stream)
    };
    Session::new(stream, client, shared, stop).run().await;
}

/// A connection on a PROXY protocol listener: the peer must be a trusted
/// proxy and must send a valid header before anything else happens (spec
/// section 2: "The receiver MUST NOT start processing the connection before
/// it receives a complete and valid PROXY protocol header", which for SMTP
/// means no greeting before it). Any failure drops the connection without
/// a word: the peer is a load balancer, not a mail client.
async fn proxied(
    mut stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = shared.config();
    let lb = peer.ip().to_canonical();
    // Spec section 5: "accepting the header only from a number of known
    // sources"; anyone else could claim any client address.
    if !cfg
        .server
        .proxy_trusted_networks
        .iter()
        .any(|n| n.contains(&lb))
    {
        shared.metrics.refused(Reason::ProxyUntrusted);
        tracing::warn!(peer = %peer, "connection dropped: not in server.proxy_trusted_networks");
        return;
    }
    let header = tokio::select! {
        h = proxy_protocol::read_header(&mut stream, cfg.server.proxy_protocol_timeout) => h,
        _ = stop.wait_for(|s| *s) => return,
    };
    let header = match header {
        Ok(h) => h,
        // Port probes (kubelet tcpSocket, LB TCP checks) connect and close.
        Err(ReadError::Closed { received: 0 }) => {
            tracing::debug!(peer = %peer, "connection closed before a PROXY header");
            return;
        }
        Err(e) => {
            shared.metrics.refused(Reason::ProxyHeader);
            tracing::warn!(peer = %peer, error = %e, "connection dropped: no valid PROXY header");
            return;
        }
    };
    let client = header.client(peer);
    tracing::debug!(peer = %peer, client = %client, version = header.version.as_str(), "PROXY header");
    let ip = client.ip().to_canonical();
    match shared.admit(ip) {
        Some(slot) => {
            // PROXY header first, then (on an implicit-TLS listener) TLS:
            // the balancer passes the TLS bytes through untouched.
            start_session(stream, client, implicit_tls, shared.clone(), stop).await;
            drop(slot);
        }
        None => {
            shared.metrics.refused(Reason::TooManyConnections);
            refuse(stream, cfg.server.hostname.clone()).await;
        }
    }
}

/// Longest wait to hand the refused client its `421`. The reply is a few
/// dozen bytes into a new connection's empty send buffer, so the write only
/// waits if the kernel has no buffer to give; then the connection is just
/// closed. Not a config key: no setting of it changes what a client sees.
const REFUSE_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers a connection over `max_connections` or `max_connections_per_ip`
/// with `421 4.7.0` and closes it (RFC 5321 3.8).
async fn refuse(mut stream: TcpStream, hostname: String) {
    let mut out = Vec::new();
    let hostname = &hostname;
    Refusal::TooManyConnections { hostname }
        .reply()
        .write_to(&mut out);
    let _ = tokio::time::timeout(REFUSE_WRITE_TIMEOUT, stream.write_all(&out)).await;
}
