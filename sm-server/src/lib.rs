//! # sm-server — the sm server as a library
//!
//! Composes sm's parts into the process that owns agents' terminals: the configuration,
//! the store (the embedded SQLite file in the state dir, or with `store.postgres_url` a
//! PostgreSQL database shared with other servers, this one a node of their cluster), a
//! terminal backend (tmux, or raw PTYs where tmux is missing or not wanted), the engine,
//! and the HTTP API the `sm` CLI and agents' hooks talk to. In a cluster, requests that
//! need another node's terminal are forwarded to it (see [`proxy`]). The `sm-server`
//! binary is a thin `main` over [`start`] and [`serve`]; other programs can nest
//! [`router`] in their own axum app.
//!
//! Every route but `/health` needs `Authorization: Bearer <token>`: the admin token from
//! the state dir, or an agent's own token (see [`auth`]) — or, from a browser, the cookie
//! the web dashboard's login gives for the admin token (see [`dashboard`], served at `/`). Errors are JSON:
//! `{"error": {"code": "session_not_found", "message": "…"}}` with a fitting HTTP status.

pub mod api;
pub mod auth;
pub mod dashboard;
mod linger;
mod parse_errors;
pub mod peer;
pub mod proxy;
pub mod telegram;
pub mod webhook;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sm_lib::engine::{
    AgentEnv, ClaudeProfile, CodexProfile, ConfiguredProfile, EngineConfig, FakeProfile,
};
use sm_lib::sandbox::Sandbox;
use sm_lib::{
    Config, Engine, TerminalBackend,
    config::{BackendChoice, SandboxChoice},
};
use sm_store_sqlite::SqliteStore;
use tokio::net::TcpListener;

pub use api::{AppState, router};
pub use auth::Auth;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store, backend or engine failed to start.
    #[error(transparent)]
    Sm(#[from] sm_lib::Error),
    /// The sandbox asked for cannot run.
    #[error("{0}")]
    Sandbox(String),
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

/// The sandbox agents run in, as the configuration asks: `auto` uses bubblewrap when it is
/// installed (and refuses to start when it is installed but cannot run here, saying how to
/// fix it), `bwrap` insists on it, `none` runs agents unsandboxed. Says which at start,
/// loudly when agents run unsandboxed because bubblewrap is missing.
pub async fn sandbox_from_config(config: &Config) -> Result<Option<Sandbox>, ServerError> {
    let choice = config.terminal.sandbox;
    if choice == SandboxChoice::None {
        tracing::info!(
            "agents run unsandboxed (terminal.sandbox: none): each can do whatever your user can, including act as admin"
        );
        return Ok(None);
    }
    let Some(bwrap) = sm_lib::sandbox::find_bwrap() else {
        let why = "bubblewrap (bwrap) is not installed";
        if choice == SandboxChoice::Bwrap {
            return Err(ServerError::Sandbox(format!(
                "terminal.sandbox is bwrap but {why}: install it (Debian/Ubuntu: apt-get install bubblewrap) or set terminal.sandbox: none"
            )));
        }
        tracing::warn!(
            "{why}: agents run UNSANDBOXED and can read sm's state and drive each other's terminals; install bubblewrap (apt-get install bubblewrap), or set terminal.sandbox: none to say this is intended"
        );
        return Ok(None);
    };
    let mut sandbox = Sandbox::bwrap(bwrap);
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    sandbox.hidden.push(absolute(&config.state_dir()));
    if let Some(db_dir) = config.database_path().parent() {
        sandbox.hidden.push(absolute(db_dir));
    }
    sandbox
        .hidden
        .extend(config.terminal.sandbox_hide.iter().map(|p| absolute(p)));
    sandbox.hidden.dedup();
    // Settings given to the server through its environment reach every process it starts,
    // tmux and the agents included, unless removed: inside the sandbox they are.
    sandbox.hidden_env = sm_lib::config::ENV_OVERRIDES
        .iter()
        .map(|o| o.var.to_string())
        .chain(["SM_CONFIG".to_string()])
        .collect();
    sandbox.read_only = config
        .terminal
        .sandbox_read_only
        .iter()
        .map(|p| absolute(p))
        .collect();
    let probe = sandbox.clone();
    let checked = tokio::task::spawn_blocking(move || probe.probe())
        .await
        .unwrap_or_else(|e| Err(format!("the sandbox check failed: {e}")));
    match checked {
        Ok(()) => {
            tracing::info!(bwrap = %sandbox.program.display(), hidden = ?sandbox.hidden, "agents run sandboxed (bubblewrap)");
            Ok(Some(sandbox))
        }
        // Installed but unable to run: agents run unsandboxed only when the configuration
        // says so (terminal.sandbox: none), never by surprise.
        Err(why) => Err(ServerError::Sandbox(why)),
    }
}

/// Creates `dir` (and missing parents) readable by its owner only; an existing one that
/// others can read is left as it is, with a warning (it holds every message and the admin
/// token's file).
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Ok(meta) = std::fs::metadata(dir) {
        if meta.is_dir() && meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the state dir is readable by other users; make it private with chmod 700"
            );
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `text` to `path` readable by its owner only (also when it exists).
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())
}

/// The fake agent's binary: from the configuration, else beside the running server.
fn fake_agent_program(config: &Config) -> Option<PathBuf> {
    config.fake_agent.program.clone().or_else(|| {
        let exe = std::env::current_exe().ok()?;
        let candidate = exe.parent()?.join("sm-fake-agent");
        candidate.exists().then_some(candidate)
    })
}

/// The store the configuration chose, with what comes with it.
struct ChosenStore {
    store: Arc<dyn sm_lib::MessageStore>,
    /// With PostgreSQL: this server as a node of everyone pointed at the same database.
    cluster: Option<Arc<dyn sm_lib::Cluster>>,
    /// The node name (shown in views; decisive only in a cluster).
    node: String,
    /// The admin token: in a cluster the one every node shares.
    auth: Auth,
}

/// This machine's host name, as a valid node name (`local` when it cannot be read).
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    if name.is_empty() {
        "local".into()
    } else {
        name
    }
}

/// The embedded SQLite file, or with `store.postgres_url` the shared PostgreSQL database
/// and this server's place in its cluster. Nodes of one cluster share one admin token
/// (the first node's, kept in the database) so agent tokens and dashboard cookies issued
/// by any node are valid on all; a node whose own token differs adopts the shared one and
/// rewrites its token file, so local `sm` keeps working.
async fn store_from_config(
    config: &Config,
    auth: Auth,
    token_path: &std::path::Path,
) -> Result<ChosenStore, ServerError> {
    let node = config.node.name.clone().unwrap_or_else(host_name);
    let Some(url) = &config.store.postgres_url else {
        let store = Arc::new(SqliteStore::open(config.database_path()).await?);
        return Ok(ChosenStore {
            store,
            cluster: None,
            node,
            auth,
        });
    };
    let pg = sm_store_postgres::PostgresStore::connect(sm_store_postgres::PostgresConfig {
        url: url.clone(),
        ca_file: config
            .store
            .ca_file
            .as_deref()
            .map(sm_lib::config::expand_tilde),
        pool_size: config.store.pool_size,
        ..sm_store_postgres::PostgresConfig::new(url.clone())
    })
    .await?;
    let shared = pg.shared_secret("admin_token", auth.admin_token()).await?;
    let auth = if shared == auth.admin_token() {
        auth
    } else {
        tracing::info!("adopting the cluster's admin token");
        write_private(token_path, &shared).map_err(|source| ServerError::Io {
            what: format!("cannot write the admin token to {}", token_path.display()),
            source,
        })?;
        Auth::with_admin_token(shared)
    };
    let cluster = sm_store_postgres::PostgresCluster::join(&pg, &node, config.node.lease()).await?;
    tracing::info!(%node, "joined the cluster on PostgreSQL");
    Ok(ChosenStore {
        store: Arc::new(pg),
        cluster: Some(Arc::new(cluster)),
        node,
        auth,
    })
}

/// Two live servers with one node name would both deliver to that node's agents: a node
/// whose name holds a lease published from another URL is taken to be running elsewhere.
/// (The same URL is this server restarting, which re-adopts its agents.)
async fn refuse_a_twin(cluster: &dyn sm_lib::Cluster, my_url: &str) -> Result<(), ServerError> {
    let nodes = cluster.nodes().await?;
    match nodes.iter().find(|n| n.name == cluster.node()) {
        Some(twin) if twin.reachable && twin.url != my_url => {
            Err(ServerError::Sm(sm_lib::Error::InvalidInput(format!(
                "node {} is already running at {} (its lease holds until it has been silent for node.lease); give this server another node.name, or stop that one first",
                twin.name, twin.url
            ))))
        }
        _ => Ok(()),
    }
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
    let chosen = store_from_config(config, auth, &token_path).await?;
    let auth = chosen.auth;
    tracing::info!(token_file = %token_path.display(), "admin token ready");
    let store = chosen.store;
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
    let sandbox = sandbox_from_config(config).await?;
    let token_auth = auth.clone();
    let engine_config = EngineConfig {
        sandbox,
        server_url: Some(url.clone()),
        max_message_bytes: config.delivery.max_message_bytes,
        idle_timeout: config.monitor.idle_timeout(),
        input_stale_timeout: Duration::from_secs_f64(config.sm_send.input_stale_timeout),
        urgent_delay: Duration::from_millis(config.sm_send.urgent_delay_ms),
        notify: config.monitor.notify,
        parent_notify: config.child_agents.notifications,
        node: Some(chosen.node),
        node_url: config.node.url.clone(),
        heartbeat_interval: (config.node.lease() / 5).max(Duration::from_millis(100)),
        orphan_grace: config.node.grace(),
        agent_env: Some(AgentEnv(Arc::new(move |id| {
            vec![(
                sm_lib::wire::env::TOKEN.to_string(),
                token_auth.agent_token(id),
            )]
        }))),
        ..EngineConfig::default()
    };
    if let Some(cluster) = &chosen.cluster {
        refuse_a_twin(cluster.as_ref(), config.node.url.as_deref().unwrap_or(&url)).await?;
        if config.node.url.is_none() && (local.ip().is_loopback() || local.ip().is_unspecified()) {
            tracing::warn!(
                %url,
                "node.url is not set: other nodes will call this node at a loopback address, which works only for nodes on this machine (set node.url to an address they can reach)"
            );
        }
    }
    let mut builder = Engine::builder(store, backend).config(engine_config);
    if let Some(cluster) = chosen.cluster {
        builder = builder.cluster(cluster);
    }
    let mut builder = builder
        .lock_policy(Arc::new(sm_lib::DefaultLockPolicy {
            auto_wait: Duration::from_secs_f64(config.locks.auto_wait),
        }))
        .profile(Arc::new(ClaudeProfile {
            program: config.claude.command.clone(),
            extra_args: config.claude.args.clone(),
        }))
        .profile(Arc::new(CodexProfile {
            program: config.codex.command.clone(),
            extra_args: config.codex.args.clone(),
            env: Default::default(),
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
    for (name, definition) in &config.agents {
        builder = builder.profile(Arc::new(ConfiguredProfile::new(name, definition.clone())?));
    }
    if let Some(program) = fake_agent_program(config) {
        builder = builder.profile(Arc::new(FakeProfile {
            program,
            env: Default::default(),
        }));
    }
    let engine = builder.start().await?;
    let nodes = proxy::NodeClient::default();
    if let Some(t) = telegram {
        let owners = engine.cluster().is_some().then(|| {
            proxy::OwnerCalls::new(
                nodes.clone(),
                auth.admin_token().to_string(),
                engine.clone(),
            )
        });
        t.start_polling(engine.clone(), owners);
    }
    Ok(AppState {
        engine,
        auth,
        url,
        default_models: default_models(config),
        dashboard: dashboard::Settings::from_config(config),
        nodes,
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
        default_models: default_models(config),
    })?))
}

/// The configured default model of each agent kind that has one.
fn default_models(config: &Config) -> std::collections::HashMap<sm_lib::AgentKind, String> {
    let configured = config
        .agents
        .keys()
        .filter_map(|name| sm_lib::AgentKind::custom(name).ok());
    sm_lib::AgentKind::ALL
        .into_iter()
        .chain(configured)
        .filter_map(|kind| {
            let model = config.default_model(&kind)?.to_string();
            Some((kind, model))
        })
        .collect()
}

/// Limits on the HTTP connections [`serve_with`] accepts.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Connections served at once; one more is closed at once, with a log line.
    pub max_connections: usize,
    /// How long a client has to send a request's headers (and an idle kept-alive
    /// connection, its next request's): slow or silent clients cannot hold connections.
    pub header_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl ServeOptions {
    /// The limits the configuration asks for (`server.max_connections`,
    /// `server.header_timeout`).
    pub fn from_config(config: &Config) -> Self {
        ServeOptions {
            max_connections: config.server.max_connections,
            header_timeout: Duration::from_secs_f64(config.server.header_timeout),
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, with the default limits.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, ServeOptions::default()).await
}

/// Serves the API on `listener` until `shutdown` completes: HTTP/1.1, at most
/// `options.max_connections` at once, each closed when its client is too slow to send
/// headers. On shutdown, connections finish what they are doing (for up to 2 s), the
/// engine's actors stop, and the agents keep running.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let engine = state.engine.clone();
    let app = router(state);
    let permits = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_refusal_log: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or the like: say so, breathe, go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let quiet = last_refusal_log.is_some_and(|t| t.elapsed() < Duration::from_secs(10));
            if !quiet {
                tracing::warn!(
                    %peer,
                    limit = options.max_connections,
                    "connection limit reached (server.max_connections): refusing new connections until some close"
                );
                last_refusal_log = Some(std::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let connection = peer::Connection {
            peer,
            local: listener.local_addr()?,
            behind: Arc::default(),
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(connection.clone());
                let mut app = app.clone();
                async move { tower::Service::call(&mut app, req).await }
            });
        let io = hyper_util::rt::TokioIo::new(parse_errors::JsonRefusalIo::new(
            linger::LingeringIo::new(stream),
        ));
        let mut closing = closing_rx.clone();
        let header_timeout = options.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(io, service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
    let _ = closing_tx.send(true);
    // Let connections finish what they are doing (an event stream never does).
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        permits.acquire_many(options.max_connections as u32),
    )
    .await;
    // Actors finish what they are typing (and record it) before the process exits.
    engine.shutdown_gracefully(Duration::from_secs(5)).await;
    Ok(())
}
