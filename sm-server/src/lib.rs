//! # sm-server — the sm server as a library
//!
//! Composes sm's parts into the process that owns agents' terminals: the configuration,
//! the embedded SQLite store in the state dir, a terminal backend (tmux, or raw PTYs where
//! tmux is missing or not wanted), the engine, and the HTTP API the `sm` CLI and agents'
//! hooks talk to. The `sm-server` binary is a thin `main` over [`start`] and [`serve`];
//! other programs can nest [`router`] in their own axum app.
//!
//! Every route but `/health` needs `Authorization: Bearer <token>`: the admin token from
//! the state dir, or an agent's own token (see [`auth`]). Errors are JSON:
//! `{"error": {"code": "session_not_found", "message": "…"}}` with a fitting HTTP status.

pub mod api;
mod parse_errors;
pub mod auth;
pub mod telegram;
pub mod webhook;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sm_lib::engine::{AgentEnv, ClaudeProfile, EngineConfig, FakeProfile};
use sm_lib::{Config, Engine, TerminalBackend, config::BackendChoice};
use sm_store_sqlite::SqliteStore;
use tokio::net::TcpListener;

pub use api::{AppState, router};
pub use auth::Auth;

/// The file in the state dir where a running server records its URL for local clients.
pub const URL_FILE: &str = "server.url";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store, backend or engine failed to start.
    #[error(transparent)]
    Sm(#[from] sm_lib::Error),
    /// A file or socket problem.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Picks the terminal backend the configuration asks for.
pub async fn backend_from_config(config: &Config) -> Result<Arc<dyn TerminalBackend>, ServerError> {
    let tmux = || sm_backend_tmux::TmuxBackend::new(config.terminal.tmux_socket.clone());
    Ok(match config.terminal.backend {
        BackendChoice::Tmux => Arc::new(tmux().await?),
        BackendChoice::Pty => Arc::new(sm_backend_pty::PtyBackend::new()?),
        BackendChoice::Auto => match tmux().await {
            Ok(b) => Arc::new(b),
            Err(e) => {
                tracing::warn!(error = %e, "tmux unavailable; running agents on raw PTYs");
                Arc::new(sm_backend_pty::PtyBackend::new()?)
            }
        },
    })
}

/// The fake agent's binary: from the configuration, else beside the running server.
fn fake_agent_program(config: &Config) -> Option<PathBuf> {
    config.fake_agent.program.clone().or_else(|| {
        let exe = std::env::current_exe().ok()?;
        let candidate = exe.parent()?.join("sm-fake-agent");
        candidate.exists().then_some(candidate)
    })
}

/// Builds everything the server runs on `listener`: auth (the admin token in the state
/// dir), store, backend and engine (which re-adopts running agents).
pub async fn start(config: &Config, listener: &TcpListener) -> Result<AppState, ServerError> {
    let state_dir = config.state_dir();
    let (auth, token_path) =
        Auth::load_or_create(&state_dir).map_err(|source| ServerError::Io {
            what: format!("cannot create the admin token in {}", state_dir.display()),
            source,
        })?;
    tracing::info!(token_file = %token_path.display(), "admin token ready");
    let store = Arc::new(SqliteStore::open(config.database_path()).await?);
    let backend = backend_from_config(config).await?;
    let local = listener.local_addr().map_err(|source| ServerError::Io {
        what: "cannot read the listening address".into(),
        source,
    })?;
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    let url = if host.contains(':') {
        format!("http://[{host}]:{}", local.port())
    } else {
        format!("http://{host}:{}", local.port())
    };
    let token_auth = auth.clone();
    let engine_config = EngineConfig {
        server_url: Some(url.clone()),
        max_message_bytes: config.delivery.max_message_bytes,
        idle_timeout: config.monitor.idle_timeout(),
        input_stale_timeout: Duration::from_secs_f64(config.sm_send.input_stale_timeout),
        urgent_delay: Duration::from_millis(config.sm_send.urgent_delay_ms),
        notify: config.monitor.notify,
        parent_notify: config.child_agents.notifications,
        agent_env: Some(AgentEnv(Arc::new(move |id| {
            vec![("SM_TOKEN".to_string(), token_auth.agent_token(id))]
        }))),
        ..EngineConfig::default()
    };
    let mut builder = Engine::builder(store, backend)
        .config(engine_config)
        .lock_policy(Arc::new(sm_lib::DefaultLockPolicy {
            auto_wait: Duration::from_secs_f64(config.locks.auto_wait),
        }))
        .profile(Arc::new(ClaudeProfile {
            program: config.claude.command.clone(),
            extra_args: config.claude.args.clone(),
        }))
        .summariser(Arc::new(sm_lib::engine::what::ClaudeSummariser {
            program: config.claude.command.clone(),
            ..Default::default()
        }));
    // Each notifier runs on its own inside a fan-out, so a slow or dead endpoint never
    // holds back the others, and none ever holds back delivery.
    let mut notifiers: Vec<Arc<dyn sm_lib::Notifier>> = Vec::new();
    let mut budget = Duration::from_secs(5);
    if !config.webhook.urls.is_empty() {
        let timeout = Duration::from_secs_f64(config.webhook.timeout);
        let attempts = config.webhook.attempts.max(1);
        for url in &config.webhook.urls {
            notifiers.push(Arc::new(webhook::WebhookNotifier::new(
                vec![url.clone()],
                timeout,
                attempts,
            )));
        }
        budget = timeout * attempts + Duration::from_secs(5);
    }
    let telegram = telegram_from_config(config)?;
    if let Some(t) = &telegram {
        notifiers.push(Arc::new(t.clone()));
    }
    if !notifiers.is_empty() {
        builder = builder.notifier(Arc::new(sm_lib::FanoutNotifier::new(notifiers, budget)));
    }
    if let Some(program) = fake_agent_program(config) {
        builder = builder.profile(Arc::new(FakeProfile {
            program,
            env: Default::default(),
        }));
    }
    let engine = builder.start().await?;
    if let Some(t) = telegram {
        t.start_polling(engine.clone());
    }
    Ok(AppState {
        engine,
        auth,
        url,
        default_model: config.claude.default_model.clone(),
    })
}

/// The Telegram bot, when `telegram.token` is set.
fn telegram_from_config(config: &Config) -> Result<Option<telegram::Telegram>, ServerError> {
    let Some(token) = config
        .telegram
        .token
        .clone()
        .filter(|t| !t.trim().is_empty())
    else {
        return Ok(None);
    };
    let allowed: Vec<i64> = config
        .telegram
        .allowed_chat_ids
        .iter()
        .map(|c| c.0)
        .collect();
    if allowed.is_empty() {
        tracing::warn!(
            "telegram.token is set but telegram.allowed_chat_ids is empty: the bot will serve nobody and send no notifications"
        );
    }
    let agent = config
        .telegram
        .agent
        .as_deref()
        .unwrap_or("claude")
        .parse::<sm_lib::AgentKind>()?;
    let default_dir = config
        .telegram
        .default_dir
        .as_deref()
        .map(sm_lib::config::expand_tilde)
        .unwrap_or_else(|| sm_lib::config::expand_tilde(std::path::Path::new("~")));
    tracing::info!(chats = allowed.len(), "telegram control enabled");
    Ok(Some(telegram::Telegram::new(telegram::TelegramSettings {
        token,
        allowed_chat_ids: allowed,
        api_url: config.telegram.api_url.clone(),
        default_dir,
        agent,
    })?))
}

/// Serves the API on `listener` until `shutdown` completes. Agents keep running after the
/// server stops, so a restarted server re-adopts them.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let engine = state.engine.clone();
    let result = axum::serve(parse_errors::JsonRefusals(listener), router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    engine.shutdown();
    // Give actors a moment to stop typing before the process exits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    result
}
