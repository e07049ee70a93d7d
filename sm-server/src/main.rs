//! `sm-server`: runs the sm server in the foreground with the embedded SQLite store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sm_lib::Config;
use sm_server::{AppState, serve};
use sm_store_sqlite::SqliteStore;

/// Run the sm server in the foreground.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (default: $SM_CONFIG, else ~/.config/sm/config.yaml if present).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SM_LOG").unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let loaded = Config::load(args.config.as_deref())?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    let db = config.database_path();
    let store = SqliteStore::open(&db)
        .await
        .with_context(|| format!("opening the store at {}", db.display()))?;
    let addr = format!("{}:{}", config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another sm server running? set server.port or $SM_SERVER_PORT)")
    })?;
    tracing::info!(address = %listener.local_addr()?, database = %db.display(), "sm server listening");
    let state = AppState {
        store: Arc::new(store),
        store_kind: "sqlite",
    };
    serve(listener, state, shutdown_signal()).await?;
    tracing::info!("sm server stopped; agents keep running");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
