//! The accept loop and the state shared by all sessions.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so the
//! binary binds what `policy.yaml` says while tests bind port 0. Connection
//! limits are checked before a session starts: over `max_connections` or
//! `max_connections_per_ip` the client gets `421 4.7.0` and is closed.
//! On shutdown, listeners stop, idle sessions get `421 4.3.2`, and sessions
//! in the middle of a message finish it.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::incident::IncidentLog;
use crate::metrics::{self, Metrics};
use crate::session::Session;
use crate::smtp::reply;
use crate::upstream;

/// State every session can reach.
#[derive(Debug)]
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
}

impl Shared {
    /// Builds the shared state; opens the incident log (an unwritable log
    /// is a start-up error, not a surprise at the first incident).
    pub fn new(config: Config) -> std::io::Result<Self> {
        let incidents = IncidentLog::open(&config.incidents.path)?;
        Ok(Self {
            config: ArcSwap::from_pointee(config),
            metrics: Arc::new(Metrics::new()),
            incidents: Arc::new(incidents),
            upstream_pool: upstream::pool::Pool::default(),
            per_ip: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
        })
    }

    /// The configuration in force now (a session keeps the snapshot it
    /// started with).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
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
    /// SMTP listeners.
    pub smtp: Vec<TcpListener>,
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
        let metrics = match config.metrics.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self { smtp, metrics })
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
    let mut tasks = JoinSet::new();
    if let Some(listener) = listeners.metrics {
        let metrics = shared.metrics.clone();
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            let stopped = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = metrics::serve(listener, metrics, stopped).await {
                tracing::error!("metrics endpoint failed: {e}");
            }
        });
    }
    for listener in listeners.smtp {
        tasks.spawn(accept_loop(listener, shared.clone(), stop_rx.clone()));
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections, finishing open sessions");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
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
        let ip = peer.ip().to_canonical();
        match shared.admit(ip) {
            Some(slot) => {
                let session = Session::new(stream, peer, shared.clone(), stop.clone());
                sessions.spawn(async move {
                    session.run().await;
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

async fn refuse(mut stream: TcpStream, hostname: String) {
    let mut out = Vec::new();
    reply::too_many_connections(&hostname).write_to(&mut out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.write_all(&out)).await;
}
