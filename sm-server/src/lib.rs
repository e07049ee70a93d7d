//! # sm-server — the sm server as a library
//!
//! Composes sm's parts into the process that owns agents' terminals: it loads the
//! configuration, opens the embedded SQLite store in the state dir and serves the HTTP API.
//! The `sm-server` binary is a thin `main` over [`serve`]; other programs can embed the
//! [`router`] in their own axum app.
//!
//! The API so far: `GET /health`. The session, message and lock routes arrive with the
//! engine.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sm_lib::MessageStore;
use tokio::net::TcpListener;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The durable store.
    pub store: Arc<dyn MessageStore>,
    /// Name of the store implementation, for `/health`.
    pub store_kind: &'static str,
}

/// The body of `GET /health`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Always `ok` when the server answers and its store is readable.
    pub status: &'static str,
    /// The server's version.
    pub version: &'static str,
    /// Which store it runs on.
    pub store: &'static str,
    /// How many sessions the store knows.
    pub sessions: usize,
}

/// The HTTP API as an axum router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

async fn health(
    State(state): State<AppState>,
) -> Result<Json<Health>, (axum::http::StatusCode, String)> {
    let sessions = state.store.list_sessions().await.map_err(|e| {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
    })?;
    Ok(Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        store: state.store_kind,
        sessions: sessions.len(),
    }))
}

/// Serves the API on `listener` until `shutdown` completes. Agents keep running after the
/// server stops, so a restarted server can re-adopt them.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
