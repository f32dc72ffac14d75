//! The DPO console (issue 17, docs/console.md): held mail, the incident
//! register and the Art. 33 draft in a browser, for the people who decide
//! on held mail without a shell on the server. Server-rendered HTML that
//! works without JavaScript; the same store as the CLI, so either can act
//! on what the other shows.
//!
//! - [`auth`]: accounts, passwords, sessions, CSRF tokens, login throttling.
//! - [`words`]: every text, German and English.
//! - [`pages`]: the pages, pure (store data in, markup out).
//! - [`routes`]: the router, who is asking, the handlers.

pub mod auth;
pub mod pages;
pub mod routes;
pub mod words;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::incident::Workflow;

/// Serves the console on `listener` until `shutdown` resolves: over TLS
/// when `console.tls_cert` is set (the certificate read at start), else
/// plain HTTP (loopback, or behind a TLS proxy).
pub async fn serve(
    listener: TcpListener,
    wf: Workflow,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cfg = wf.config();
    let tls = match &cfg.console.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let console = Arc::new(routes::Console {
        wf,
        throttle: auth::Throttle::new(),
        tls: tls.is_some(),
    });
    let sweeper = tokio::spawn(forget_sessions(console.wf.store.clone()));
    let _sweeper = AbortOnDrop(sweeper);
    let app = routes::router(console).into_make_service_with_connect_info::<tls::ClientAddr>();
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(acceptor) => {
            axum::serve(tls::TlsListener::new(listener, acceptor)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// Stops the sweeper when the console stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Expired sessions are deleted this often (they are refused at once
/// when used; this only keeps the table small).
pub const SESSION_SWEEP: std::time::Duration = std::time::Duration::from_secs(600);

async fn forget_sessions(store: Arc<dyn crate::incident::store::Store>) {
    let mut tick = tokio::time::interval(SESSION_SWEEP);
    loop {
        tick.tick().await;
        let now = crate::clock::now() as i64;
        if let Err(e) = crate::incident::store::call(&store, move |s| s.forget_sessions(now)).await
        {
            tracing::warn!("console: expired sessions not deleted: {e}");
        }
    }
}

pub mod tls;
