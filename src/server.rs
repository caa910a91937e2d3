//! The HTTP endpoints: /metrics (OpenMetrics text), /healthz (the process runs) and
//! /readyz (every watch has synced once; a standby replica is ready too, or a
//! rolling update of a one-replica Deployment would never finish).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Counts the watches that have not synced yet.
#[derive(Debug, Default)]
pub struct Readiness {
    pending: AtomicUsize,
}

impl Readiness {
    pub fn expect(&self, watches: usize) {
        self.pending.fetch_add(watches, Ordering::SeqCst);
    }

    pub fn synced(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub fn is_ready(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

/// The OpenMetrics text, streamed a piece at a time (see [`Metrics::scrape`]). A
/// piece that fails to encode ends the body early: the scrape then fails as a whole
/// at the scraper, as a 500 would.
async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.scrape() {
        Ok(pieces) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            Body::from_stream(futures::stream::iter(pieces)),
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            Body::from("could not encode metrics"),
        ),
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "watches not synced yet")
    }
}

/// Serves until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(metrics, readiness)).await
}
