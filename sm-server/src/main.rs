//! `sm-server`: runs the sm server in the foreground with the embedded SQLite store.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sm_lib::Config;
use tracing_subscriber::Layer;

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
    let args = Args::parse();
    let loaded = Config::load(args.config.as_deref())?;
    init_logging(loaded.config.paths.log_dir.as_deref())?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut config = loaded.config;
    // The configuration may hold secrets (the Telegram token): sandboxed agents never see it.
    if let Some(source) = &loaded.source {
        config.terminal.sandbox_hide.push(source.clone());
    }
    survive_file_size_limits();
    let addr = format!("{}:{}", config.server.host, config.server.port);
    let listener = bind(&addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another sm server running? set server.port or $SM_SERVER_PORT)")
    })?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            address = %local,
            "LISTENING BEYOND THIS MACHINE: anyone who can reach this address and holds a token can drive your agents"
        );
    }
    let state = sm_server::start(&config, &listener).await?;
    tracing::info!(
        address = %local,
        url = %state.url,
        store = %if config.store.postgres_url.is_some() {
            "PostgreSQL (store.postgres_url)".to_string()
        } else {
            config.database_path().display().to_string()
        },
        backend = state.engine.backend().name(),
        "sm server listening"
    );
    // Clients on this machine find the server here, even when it listens on a random port.
    let url_file = config.state_dir().join(sm_lib::wire::files::SERVER_URL);
    if let Err(e) = sm_server::write_private(&url_file, &state.url) {
        tracing::warn!(file = %url_file.display(), error = %e, "cannot record the server URL");
    }
    let limits = sm_server::ServeOptions::from_config(&config);
    sm_server::serve_with(listener, state, shutdown_signal(), limits).await?;
    let _ = std::fs::remove_file(&url_file);
    tracing::info!("sm server stopped; agents keep running");
    Ok(())
}

/// Binds the listening socket. Right after a crash the kernel can refuse the port for a
/// moment (connections of the dead process still closing), so "address in use" is retried
/// for up to three seconds before it counts.
async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Logs to standard output, and also to `<log_dir>/sm-server.log` when `paths.log_dir` is
/// set. `SM_LOG` sets the level (default `info`).
fn init_logging(log_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use std::os::unix::fs::OpenOptionsExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        || tracing_subscriber::EnvFilter::try_from_env("SM_LOG").unwrap_or_else(|_| "info".into());
    let stdout = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stdout().is_terminal())
        .with_filter(filter());
    let file = match log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create paths.log_dir {}", dir.display()))?;
            let path = dir.join("sm-server.log");
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(f))
                    .with_filter(filter()),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stdout)
        .with(file)
        .init();
    Ok(())
}

/// A file-size limit (`ulimit -f`, systemd `LimitFSIZE`) reached while writing the
/// database must be an error the store reports, not a signal that kills the server; with a
/// handler installed, the write fails with `EFBIG` instead.
fn survive_file_size_limits() {
    // SIGXFSZ is 25 on every Linux architecture sm runs on.
    const SIGXFSZ: i32 = 25;
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::from_raw(SIGXFSZ)) {
        Ok(mut s) => {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    tracing::error!(
                        "a file reached the size limit (disk quota or ulimit -f); writes fail until it is raised"
                    );
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGXFSZ"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return ctrl_c.await.unwrap_or(()),
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
