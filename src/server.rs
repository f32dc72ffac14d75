//! The accept loop and the state shared by all sessions.
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
//! ([`crate::proxy_protocol`]); the session, the connection limits, the
//! `Received` header and incident records then see the client the header
//! names, not the load balancer.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, UpstreamTls};
use crate::incident::IncidentLog;
use crate::metrics::{self, Metrics};
use crate::proxy_protocol::{self, ReadError};
use crate::session::Session;
use crate::smtp::reply;
use crate::spool::{self, Spool};
use crate::store::{SqliteStore, Store};
use crate::tls::{self, ReloadingCert, Stream, TlsSetupError};
use crate::upstream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// State every session can reach.
pub struct Shared {
    config: ArcSwap<Config>,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The incident log.
    pub incidents: Arc<IncidentLog>,
    /// Idle upstream sessions, reused by the next client session.
    pub upstream_pool: upstream::pool::Pool,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    active: AtomicUsize,
    /// STARTTLS / implicit TLS towards clients, if a certificate is set.
    tls_acceptor: ArcSwapOption<TlsAcceptor>,
    /// TLS towards upstream, if `upstream.tls` is not `none`.
    upstream_tls: ArcSwapOption<TlsConnector>,
    /// Split copies the guard owns (see [`crate::spool`]).
    pub spool: Arc<Spool>,
    /// The incident register, quarantine and notice outbox.
    pub store: Arc<dyn Store>,
    /// Wakes the notifier when an incident queued a notice.
    pub workflow: tokio::sync::Notify,
    draining: AtomicBool,
}

impl Shared {
    /// Builds the shared state; opens the incident log (an unwritable log
    /// is a start-up error, not a surprise at the first incident).
    pub fn new(config: Config) -> std::io::Result<Self> {
        let incidents = IncidentLog::open(&config.incidents.path)?;
        let (tls_acceptor, upstream_tls) = tls_setup(&config).map_err(std::io::Error::other)?;
        let spool = Arc::new(Spool::open(&config.spool.path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("spool {}: {e}", config.spool.path.display()),
            )
        })?);
        let store = SqliteStore::open(&config.store.path).map_err(|e| {
            std::io::Error::other(format!("store.path {}: {e}", config.store.path.display()))
        })?;
        Ok(Self {
            store: Arc::new(store),
            workflow: tokio::sync::Notify::new(),
            config: ArcSwap::from_pointee(config),
            metrics: Arc::new(Metrics::new()),
            incidents: Arc::new(incidents),
            upstream_pool: upstream::pool::Pool::default(),
            per_ip: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            tls_acceptor: ArcSwapOption::from(tls_acceptor.map(Arc::new)),
            upstream_tls: ArcSwapOption::from(upstream_tls.map(Arc::new)),
            spool,
            draining: AtomicBool::new(false),
        })
    }

    /// True once shutdown has begun (`/readyz` answers 503).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The configuration in force now (a session takes a new snapshot at
    /// each transaction).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// TLS towards clients, if a certificate is configured.
    pub fn tls_acceptor(&self) -> Option<Arc<TlsAcceptor>> {
        self.tls_acceptor.load_full()
    }

    /// TLS towards upstream, if `upstream.tls` asks for it.
    pub fn upstream_tls(&self) -> Option<Arc<TlsConnector>> {
        self.upstream_tls.load_full()
    }

    /// Puts a new configuration in force, atomically, or keeps the old one
    /// and says why. Keys that need a restart (listeners, the incident log,
    /// the spool directory) keep their running values, with a warning.
    /// Sessions pick the new policy up at their next transaction.
    pub fn reload(&self, new: Config) -> Result<Vec<String>, TlsSetupError> {
        let old = self.config();
        let mut new = new;
        let mut notes = Vec::new();
        let mut keep = |name: &str, changed: bool| {
            if changed {
                notes.push(format!("{name} changed: takes effect after a restart"));
            }
        };
        keep("server.listen", new.server.listen != old.server.listen);
        keep(
            "server.tls_listen",
            new.server.tls_listen != old.server.tls_listen,
        );
        keep(
            "server.proxy_protocol",
            new.server.proxy_protocol != old.server.proxy_protocol,
        );
        keep("metrics.listen", new.metrics.listen != old.metrics.listen);
        keep("incidents.path", new.incidents.path != old.incidents.path);
        keep("spool.path", new.spool.path != old.spool.path);
        keep("store.path", new.store.path != old.store.path);
        new.server.listen = old.server.listen.clone();
        new.server.tls_listen = old.server.tls_listen.clone();
        new.server.proxy_protocol = old.server.proxy_protocol;
        new.metrics = old.metrics.clone();
        new.incidents = old.incidents.clone();
        new.spool.path = old.spool.path.clone();
        new.store.path = old.store.path.clone();
        // TLS material first: a certificate that does not load fails the
        // whole reload, and nothing changes.
        let (acceptor, connector) = tls_setup(&new)?;
        self.tls_acceptor.store(acceptor.map(Arc::new));
        self.upstream_tls.store(connector.map(Arc::new));
        self.config.store(Arc::new(new));
        Ok(notes)
    }

    /// Takes a connection slot for `ip`, or says why not.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let limits = self.config().server.limits;
        let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if self.active.load(Ordering::Relaxed) >= limits.max_connections {
            return None;
        }
        let n = map.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_ip {
            return None;
        }
        *n += 1;
        self.active.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            shared: self.clone(),
            ip,
        })
    }
}

/// Builds the TLS acceptor (clients) and connector (upstream) once.
fn tls_setup(
    config: &Config,
) -> Result<(Option<TlsAcceptor>, Option<TlsConnector>), TlsSetupError> {
    let acceptor = match &config.server.tls {
        Some(t) => Some(tls::acceptor(Arc::new(ReloadingCert::new(
            &t.cert, &t.key,
        )?))?),
        None => None,
    };
    let upstream = &config.upstream;
    let connector = match upstream.tls {
        UpstreamTls::None => None,
        UpstreamTls::StartTls | UpstreamTls::Tls => {
            if !upstream.tls_verify {
                tracing::warn!(
                    "upstream.tls_verify is false: upstream's certificate is NOT checked (labs only)"
                );
            }
            Some(tls::connector(upstream.ca.as_deref(), upstream.tls_verify)?)
        }
    };
    Ok((acceptor, connector))
}

/// A held per-IP connection slot, released on drop.
struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Bound sockets for [`run`].
#[derive(Debug)]
pub struct Listeners {
    /// SMTP listeners (plaintext, STARTTLS if configured).
    pub smtp: Vec<TcpListener>,
    /// Implicit-TLS listeners (`server.tls_listen`).
    pub smtps: Vec<TcpListener>,
    /// The `/metrics` listener, if enabled.
    pub metrics: Option<TcpListener>,
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
        Ok(Self {
            smtp,
            smtps,
            metrics,
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
            if let Err(e) = metrics::serve(listener, shared, stopped).await {
                tracing::error!("metrics endpoint failed: {e}");
            }
        })
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(spool::run(
        shared.clone(),
        shared.spool.clone(),
        shared.config().spool.retry,
        stop_rx.clone(),
    ));
    tasks.spawn(crate::notify::run(shared.clone(), stop_rx.clone()));
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
    shared.draining.store(true, Ordering::Relaxed);
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
                shared.metrics.refused("too_many_connections");
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
        shared.metrics.refused("proxy_untrusted");
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
            shared.metrics.refused("proxy_header");
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
            shared.metrics.refused("too_many_connections");
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
    reply::too_many_connections(&hostname).write_to(&mut out);
    let _ = tokio::time::timeout(REFUSE_WRITE_TIMEOUT, stream.write_all(&out)).await;
}
