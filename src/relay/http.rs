//! The relay's HTTP endpoint: `GET /metrics` (OpenMetrics text of
//! [`crate::metrics`], the store's numbers read first:
//! [`crate::incident::tally`]), `/healthz` (the process answers) and `/readyz`
//! ([`crate::relay::health::readiness`]: upstream reachable, not draining).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::relay::state::Shared;

/// Serves `GET /metrics`, `/healthz` and `/readyz` until `shutdown`
/// resolves.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    // The quarantine and deadline metrics come from the store, which the
    // CLI changes too: read at each scrape, so they are never stale.
    crate::incident::tally::refresh(&shared.store, &shared.metrics).await;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

const TEXT: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, TEXT, "ok\n")
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match crate::relay::health::readiness(&shared.config(), shared.is_draining()).await {
        Ok(report) => (StatusCode::OK, TEXT, report),
        Err(not_ready) => (StatusCode::SERVICE_UNAVAILABLE, TEXT, not_ready.to_string()),
    }
}
