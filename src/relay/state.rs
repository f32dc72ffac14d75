//! The run-time state the relay's tasks share: the configuration in force,
//! the metrics, the incident log and register, the spool, the upstream
//! pool and TLS objects, the connection counts. Built once by
//! [`Shared::new`]; reloaded atomically by [`Shared::reload`].
//!
//! Only the relay sees it whole. The incident workflow's tasks get a
//! [`Workflow`] with the handles they use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{Config, UpstreamTls};
use crate::incident::store::{SqliteStore, Store};
use crate::incident::{IncidentLog, Workflow};
use crate::metrics::Metrics;
use crate::net::tls::{self, ReloadingCert, TlsSetupError};
use crate::policy::Groups;
use crate::relay::spool::{Retrier, Spool};
use crate::upstream;

/// State every session can reach.
pub struct Shared {
    config: Arc<ArcSwap<Config>>,
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
    upstream_tls: Arc<ArcSwapOption<TlsConnector>>,
    /// Split copies the guard owns (see [`crate::relay::spool`]).
    pub spool: Arc<Spool>,
    /// The incident register, quarantine and notice outbox.
    pub store: Arc<dyn Store>,
    /// Wakes the notifier when an incident queued a notice.
    pub workflow: Arc<tokio::sync::Notify>,
    draining: AtomicBool,
    /// The approved open groups in force ([`crate::relay::groups`]), and
    /// the store's group version they were loaded at.
    groups: ArcSwap<Groups>,
    groups_version: AtomicI64,
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
        // In force before the first session: a restart must not hold what
        // an approved group lets pass.
        let (groups_version, groups) = crate::incident::groups::snapshot(&store).map_err(|e| {
            std::io::Error::other(format!("store.path {}: {e}", config.store.path.display()))
        })?;
        let metrics = Metrics::new();
        metrics.groups_known(groups.iter().map(|g| g.name.as_str()));
        Ok(Self {
            groups: ArcSwap::from_pointee(groups),
            groups_version: AtomicI64::new(groups_version),
            store: Arc::new(store),
            workflow: Arc::new(tokio::sync::Notify::new()),
            config: Arc::new(ArcSwap::from_pointee(config)),
            metrics: Arc::new(metrics),
            incidents: Arc::new(incidents),
            upstream_pool: upstream::pool::Pool::default(),
            per_ip: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            tls_acceptor: ArcSwapOption::from(tls_acceptor.map(Arc::new)),
            upstream_tls: Arc::new(ArcSwapOption::from(upstream_tls.map(Arc::new))),
            spool,
            draining: AtomicBool::new(false),
        })
    }

    /// The handles the incident workflow's tasks use (the notifier, the
    /// quarantine's expiry): they see the configuration in force, not the
    /// relay.
    pub fn workflow_handles(&self) -> Workflow {
        Workflow {
            config: self.config.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            wake: self.workflow.clone(),
        }
    }

    /// The approved groups in force now.
    pub fn groups(&self) -> Arc<Groups> {
        self.groups.load_full()
    }

    /// The store's group version of the snapshot in force.
    pub fn groups_version(&self) -> i64 {
        self.groups_version.load(Ordering::Relaxed)
    }

    /// Puts a new snapshot in force (each group's metric series at 0 from
    /// now on).
    pub fn set_groups(&self, version: i64, groups: Groups) {
        self.metrics
            .groups_known(groups.iter().map(|g| g.name.as_str()));
        self.groups.store(Arc::new(groups));
        self.groups_version.store(version, Ordering::Relaxed);
    }

    /// Marks the start of shutdown (`/readyz` answers 503 from now on).
    pub(super) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The handles the spool's retry task uses.
    pub fn retrier(&self) -> Retrier {
        Retrier {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            upstream_tls: self.upstream_tls.clone(),
        }
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
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
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
pub(super) fn tls_setup(
    config: &Config,
) -> Result<(Option<TlsAcceptor>, Option<TlsConnector>), TlsSetupError> {
    let acceptor = match &config.server.tls {
        Some(t) => Some(tls::acceptor(Arc::new(ReloadingCert::new(
            &t.cert, &t.key,
        )?))?),
        None => None,
    };
    let upstream = &config.upstream;
    if upstream.tls != UpstreamTls::None && !upstream.tls_verify {
        tracing::warn!(
            "upstream.tls_verify is false: upstream's certificate is NOT checked (labs only)"
        );
    }
    let connector = upstream::connector(upstream)?;
    Ok((acceptor, connector))
}

/// A held per-IP connection slot, released on drop.
pub(super) struct Slot {
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
