//! The engine: spawns agents, delivers messages exactly once in three modes, knows when
//! agents are idle, wakes waiters, clears, kills, locks workspaces, and recovers after a
//! restart. Written only against the traits, so it runs on any backend and store.
//!
//! Shape: one [`Engine`] holds the store, backend, lock policy, notifier and agent profiles,
//! and one *actor* task per live session. Everything that touches a session's terminal or
//! status goes through its actor, one thing at a time: deliveries, hook events, screen
//! checks after output, waits, clear, exit. That is what makes two senders never interleave
//! and one turn wake its waiters once.

mod actor;
pub mod profile;
pub mod sanitize;
pub mod screen;
pub mod what;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::backend::{BackendEvent, SpawnSpec, TerminalBackend};
use crate::error::{Error, Result};
use crate::lock_policy::{Contention, LockPolicy};
use crate::notifier::{Notification, Notifier};
use crate::store::{MessageFilter, MessageStore};
use crate::types::{
    AgentKind, DeliveryMode, Event, EventKind, Lock, LockKind, LockRequest, Message, MessageState,
    NewMessage, Session, SessionId, SessionName, SessionStatus, Timestamp,
};
use actor::{Actor, Command};
pub use profile::{AgentProfile, ClaudeProfile, FakeProfile, Launch, ShellProfile};
pub use sanitize::sanitize_message;
pub use screen::{ScreenState, read_screen};

/// Environment variable naming the session an agent runs in.
pub const ENV_SESSION_ID: &str = "SM_SESSION_ID";
/// Environment variable naming the server's URL.
pub const ENV_SERVER_URL: &str = "SM_SERVER_URL";
/// The Python session manager's name for [`ENV_SESSION_ID`], set too for its users.
pub const ENV_LEGACY_SESSION_ID: &str = "CLAUDE_SESSION_MANAGER_ID";
/// The Python session manager's name for [`ENV_SERVER_URL`].
pub const ENV_LEGACY_SERVER_URL: &str = "SM_API_URL";

/// Why a session that sm stopped starting ended; a spawn repeated with its key starts it
/// anew (see `Engine::respawned`).
pub(crate) const NEVER_STARTED: &str =
    "it was still starting when sm stopped; repeating the spawn starts it anew";

/// How long a kill waits for the session's actor to settle its queue, locks and waits.
const KILL_SETTLE: Duration = Duration::from_secs(30);

/// Extra environment for each agent, computed from its session id (the server uses it to
/// hand each agent its own API token).
#[derive(Clone)]
pub struct AgentEnv(pub Arc<AgentEnvFn>);

/// The function behind [`AgentEnv`]: environment variables for a session.
pub type AgentEnvFn = dyn Fn(&SessionId) -> Vec<(String, String)> + Send + Sync;

impl std::fmt::Debug for AgentEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentEnv(..)")
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Extra environment for every agent, by session id.
    pub agent_env: Option<AgentEnv>,
    /// The server URL put in every agent's environment.
    pub server_url: Option<String>,
    /// Largest message accepted, in bytes after sanitising.
    pub max_message_bytes: usize,
    /// How long a new agent may take to show its prompt.
    pub ready_timeout: Duration,
    /// How long typed text or a submit may take to show on screen.
    pub verify_timeout: Duration,
    /// How long an interrupted agent may take to settle at its prompt.
    pub settle_timeout: Duration,
    /// Idle this long with nobody waiting raises an idle-timeout event.
    pub idle_timeout: Duration,
    /// Text someone else left in an agent's input box blocks delivery until it is submitted
    /// or has sat unchanged this long; then it is cleared (and recorded in the event log).
    pub input_stale_timeout: Duration,
    /// A pause after an interrupt settles, before an urgent message is typed.
    pub urgent_delay: Duration,
    /// Which events reach the notifier.
    pub notify: crate::config::NotifyConfig,
    /// Which child events are sent to the child's parent as messages.
    pub parent_notify: crate::config::ParentNotifications,
    /// Runs every agent inside this sandbox (`None`: unsandboxed).
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// Terminal size for new agents.
    pub cols: u16,
    /// Terminal size for new agents.
    pub rows: u16,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            agent_env: None,
            server_url: None,
            max_message_bytes: 100_000,
            ready_timeout: Duration::from_secs(60),
            verify_timeout: Duration::from_secs(5),
            settle_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            input_stale_timeout: Duration::from_secs(60),
            urgent_delay: Duration::ZERO,
            notify: crate::config::NotifyConfig::default(),
            parent_notify: crate::config::ParentNotifications::default(),
            sandbox: None,
            cols: 200,
            rows: 50,
        }
    }
}

/// Who is asking. Sessions may only kill or clear their own descendants; an admin (a human
/// with the admin token) may act on any session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A human or program with full authority.
    Admin,
    /// A managed agent.
    Session(SessionId),
}

impl Caller {
    fn session(&self) -> Option<&SessionId> {
        match self {
            Caller::Admin => None,
            Caller::Session(id) => Some(id),
        }
    }
}

/// A request to start an agent.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    /// Which agent.
    pub agent: AgentKind,
    /// The first message, delivered once the agent is ready.
    pub prompt: Option<String>,
    /// A friendly name.
    pub name: Option<SessionName>,
    /// The model.
    pub model: Option<String>,
    /// Where it works.
    pub working_dir: PathBuf,
    /// Skip permission prompts (Claude Code's `--dangerously-skip-permissions`).
    pub skip_permissions: bool,
    /// Resume an earlier Claude conversation by its id.
    pub resume: Option<String>,
    /// Wake the caller when the new agent's first turn ends (or after this long).
    pub wait: Option<Duration>,
    /// The caller's idempotency key: spawning again with the same key (after a connection
    /// broke before the answer came) returns the session the first request created instead
    /// of starting a second agent. Scope it to the caller (the server prefixes the caller).
    pub client_key: Option<String>,
}

impl SpawnRequest {
    /// A request for `agent` in `working_dir`, with everything else unset.
    pub fn new(agent: AgentKind, working_dir: impl Into<PathBuf>) -> Self {
        SpawnRequest {
            agent,
            prompt: None,
            name: None,
            model: None,
            working_dir: working_dir.into(),
            skip_permissions: false,
            resume: None,
            wait: None,
            client_key: None,
        }
    }
}

/// A hook event from an agent (`sm hook <event>` posts these).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookEvent {
    /// The hook's event name (`Stop`, `UserPromptSubmit`, …).
    pub event: String,
    /// Its JSON payload.
    #[serde(default)]
    pub payload: serde_json::Value,
}

/// Which locks [`Engine::force_unlock`] releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceUnlock {
    /// Every lock this session holds.
    Holder(SessionId),
    /// The lock on the workspace this directory belongs to.
    Workspace(PathBuf),
}

/// What [`Engine::wait_for`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitResult {
    /// Why the wait ended.
    pub outcome: crate::types::WaitOutcome,
    /// The target's last assistant message, when known.
    pub last_message: Option<String>,
    /// The last message of each turn the target finished while the wait ran, oldest first.
    pub turns: Vec<String>,
}

/// One of an agent's own subagents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subagent {
    /// Its id.
    pub agent_id: String,
    /// Its type.
    pub agent_type: Option<String>,
    /// Still running.
    pub running: bool,
    /// When it (last) started.
    pub started_at: Timestamp,
    /// When it stopped, if it did.
    pub stopped_at: Option<Timestamp>,
}

/// What the engine publishes to subscribers ([`Engine::subscribe`]): every event it appends
/// to the store's log.
pub type EngineEvent = Event;

pub(crate) struct Inner {
    store: Arc<dyn MessageStore>,
    backend: Arc<dyn TerminalBackend>,
    lock_policy: Arc<dyn LockPolicy>,
    notifier: Option<Arc<dyn Notifier>>,
    profiles: HashMap<AgentKind, Arc<dyn AgentProfile>>,
    config: EngineConfig,
    summariser: Option<Arc<dyn what::Summariser>>,
    actors: Mutex<HashMap<SessionId, ActorHandle>>,
    events: broadcast::Sender<EngineEvent>,
    /// Signalled whenever a lock is released, so blocked auto-locks retry at once.
    lock_released: tokio::sync::Notify,
}

#[derive(Clone)]
struct ActorHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<SessionStatus>,
}

impl ActorHandle {
    /// Waits until the actor has ended (its status channel closes with it), for up to
    /// `KILL_SETTLE`; false when it has not by then.
    async fn until_ended(&self) -> bool {
        let mut status = self.status.clone();
        tokio::time::timeout(KILL_SETTLE, async {
            while status.changed().await.is_ok() {}
        })
        .await
        .is_ok()
    }
}

fn lock_map<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Arc<dyn MessageStore>,
    backend: Arc<dyn TerminalBackend>,
    lock_policy: Arc<dyn LockPolicy>,
    notifier: Option<Arc<dyn Notifier>>,
    profiles: HashMap<AgentKind, Arc<dyn AgentProfile>>,
    config: EngineConfig,
    summariser: Option<Arc<dyn what::Summariser>>,
}

impl EngineBuilder {
    /// Writes `what` summaries with `summariser` (default: `claude -p` with haiku; the
    /// heuristic fallback is used whenever it fails).
    pub fn summariser(mut self, summariser: Arc<dyn what::Summariser>) -> Self {
        self.summariser = Some(summariser);
        self
    }

    /// Uses `policy` for workspace locks (default: [`crate::DefaultLockPolicy`]).
    pub fn lock_policy(mut self, policy: Arc<dyn LockPolicy>) -> Self {
        self.lock_policy = policy;
        self
    }

    /// Sends notifications to `notifier` (compose several with [`crate::FanoutNotifier`]).
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Adds or replaces the profile for its agent kind.
    pub fn profile(mut self, profile: Arc<dyn AgentProfile>) -> Self {
        self.profiles.insert(profile.kind(), profile);
        self
    }

    /// Engine settings.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Starts the engine: re-adopts live agents from the store and the backend (marking
    /// vanished ones dead and telling whoever waited on them) and resumes delivery.
    pub async fn start(self) -> Result<Engine> {
        let (events, _) = broadcast::channel(1024);
        let engine = Engine {
            inner: Arc::new(Inner {
                store: self.store,
                backend: self.backend,
                lock_policy: self.lock_policy,
                notifier: self.notifier,
                profiles: self.profiles,
                config: self.config,
                summariser: self.summariser,
                actors: Mutex::new(HashMap::new()),
                events,
                lock_released: tokio::sync::Notify::new(),
            }),
        };
        engine.listen_to_backend();
        engine.recover().await?;
        Ok(engine)
    }
}

/// The session manager engine. Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// A builder over `store` and `backend`, with the default lock policy, no notifier and
    /// the Claude Code and shell profiles.
    pub fn builder(
        store: Arc<dyn MessageStore>,
        backend: Arc<dyn TerminalBackend>,
    ) -> EngineBuilder {
        let mut profiles: HashMap<AgentKind, Arc<dyn AgentProfile>> = HashMap::new();
        profiles.insert(AgentKind::Claude, Arc::new(ClaudeProfile::default()));
        profiles.insert(AgentKind::Shell, Arc::new(ShellProfile::default()));
        EngineBuilder {
            store,
            backend,
            lock_policy: Arc::new(crate::DefaultLockPolicy::default()),
            notifier: None,
            profiles,
            config: EngineConfig::default(),
            summariser: Some(Arc::new(what::ClaudeSummariser::default())),
        }
    }

    /// The store the engine uses.
    pub fn store(&self) -> &Arc<dyn MessageStore> {
        &self.inner.store
    }

    /// The terminal backend the engine uses.
    pub fn backend(&self) -> &Arc<dyn TerminalBackend> {
        &self.inner.backend
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Events as they happen (status changes, deliveries, wake-ups, locks, …).
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    // ----- lookup -----

    /// Finds a session by id, by a unique id prefix (8+ characters) or by live name.
    pub async fn resolve(&self, reference: &str) -> Result<Session> {
        // Surrounding spaces are forgiven (copy and paste); a newline or other control
        // character is not: `"w1\n"` must not quietly mean `w1`.
        if reference.chars().any(char::is_control) {
            return Err(Error::InvalidInput(format!(
                "{reference:?} is not a session reference: it contains a control character"
            )));
        }
        let reference = reference.trim_matches(' ');
        if let Ok(id) = reference.parse::<SessionId>() {
            return self
                .inner
                .store
                .get_session(&id)
                .await?
                .ok_or_else(|| Error::SessionNotFound(reference.to_string()));
        }
        // An id prefix wins over a name (names cannot look like ids, but older records may).
        if reference.len() >= 8 && reference.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let lower = reference.to_ascii_lowercase();
            let mut matches: Vec<Session> = self
                .inner
                .store
                .list_sessions()
                .await?
                .into_iter()
                .filter(|s| s.id.as_str().starts_with(&lower))
                .collect();
            if matches.len() > 1 {
                let candidates: Vec<String> = matches.iter().map(display_name).collect();
                return Err(Error::InvalidInput(format!(
                    "{reference:?} matches {} sessions ({}); give more of the id",
                    matches.len(),
                    candidates.join(", ")
                )));
            }
            if let Some(s) = matches.pop() {
                return Ok(s);
            }
        }
        if let Ok(name) = reference.parse::<SessionName>() {
            if let Some(s) = self.inner.store.find_live_by_name(&name).await? {
                return Ok(s);
            }
        }
        Err(Error::SessionNotFound(reference.to_string()))
    }

    /// Every session, oldest first.
    pub async fn sessions(&self) -> Result<Vec<Session>> {
        self.inner.store.list_sessions().await
    }

    /// The children of `parent` (all descendants when `recursive`).
    pub async fn children(&self, parent: &SessionId, recursive: bool) -> Result<Vec<Session>> {
        let all = self.inner.store.list_sessions().await?;
        let mut out = Vec::new();
        let mut frontier = vec![parent.clone()];
        while let Some(p) = frontier.pop() {
            for s in all.iter().filter(|s| s.parent.as_ref() == Some(&p)) {
                out.push(s.clone());
                if recursive {
                    frontier.push(s.id.clone());
                }
            }
        }
        Ok(out)
    }

    /// Whether `ancestor` is `id`'s parent, grandparent, …
    pub async fn is_ancestor(&self, ancestor: &SessionId, id: &SessionId) -> Result<bool> {
        let mut current = self.inner.store.get_session(id).await?;
        let mut hops = 0;
        while let Some(s) = current {
            match s.parent {
                Some(p) if &p == ancestor => return Ok(true),
                Some(p) if hops < 1000 => {
                    current = self.inner.store.get_session(&p).await?;
                    hops += 1;
                }
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    async fn authorize(&self, caller: &Caller, target: &SessionId, action: &str) -> Result<()> {
        match caller {
            Caller::Admin => Ok(()),
            Caller::Session(me) if self.is_ancestor(me, target).await? => Ok(()),
            Caller::Session(_) => Err(Error::Forbidden(format!(
                "only an ancestor of session {target} (or an admin) may {action} it"
            ))),
        }
    }

    /// The last `lines` lines of an agent's terminal.
    pub async fn output(&self, id: &SessionId, lines: usize) -> Result<Vec<String>> {
        self.inner.backend.capture_tail(id, lines).await
    }

    // ----- spawn -----

    /// Starts an agent and returns once it is ready for input (its first message, if any,
    /// is queued by then). The caller becomes its parent.
    ///
    /// Errors: invalid name, model or working dir; [`Error::NameTaken`];
    /// [`Error::NotSupported`] for an agent kind without a profile; [`Error::Backend`] when
    /// the agent cannot start or never becomes ready (it is then killed and marked dead).
    pub async fn spawn(&self, caller: &Caller, request: SpawnRequest) -> Result<Session> {
        let profile = self
            .inner
            .profiles
            .get(&request.agent)
            .cloned()
            .ok_or_else(|| {
                Error::NotSupported(format!("no profile for agent kind {}", request.agent))
            })?;
        let working_dir =
            request
                .working_dir
                .canonicalize()
                .map_err(|e| Error::InvalidWorkingDir {
                    path: request.working_dir.clone(),
                    reason: e.to_string(),
                })?;
        if !working_dir.is_dir() {
            return Err(Error::InvalidWorkingDir {
                path: request.working_dir.clone(),
                reason: "not a directory".into(),
            });
        }
        let prompt = match &request.prompt {
            Some(p) => Some(sanitize_message(p, self.inner.config.max_message_bytes)?),
            None => None,
        };
        if let Some(parent) = caller.session() {
            let parent_session = self.session(parent).await?;
            if !parent_session.status.is_live() {
                return Err(Error::InvalidInput(format!(
                    "session {parent} is {} and cannot spawn agents",
                    parent_session.status
                )));
            }
            // An agent cannot give a child more than it has.
            if request.skip_permissions && !parent_session.skip_permissions {
                return Err(Error::Forbidden(
                    "a session started with permission prompts cannot start a child without \
                     them (skip_permissions)"
                        .into(),
                ));
            }
        }
        let id = SessionId::new_random();
        let (program, args, profile_env) = profile.command(&Launch {
            id: &id,
            model: request.model.as_deref(),
            skip_permissions: request.skip_permissions,
            resume: request.resume.as_deref(),
        })?;
        if let Some(why) = self.inner.backend.cannot_run(&program, &profile_env) {
            return Err(Error::backend_msg(format!(
                "cannot start a {} agent: {why}",
                request.agent
            )));
        }
        let mut session = Session::new(id.clone(), request.agent, working_dir.clone());
        session.name = request.name.clone();
        session.parent = caller.session().cloned();
        session.model = request.model.clone();
        session.skip_permissions = request.skip_permissions;
        // The session and its first message are stored together, before anything runs: a
        // crash at any later point leaves an agent that still gets its prompt, once.
        let created = self
            .inner
            .store
            .create_session(crate::store::NewSession {
                session,
                first_message: prompt.map(|text| NewMessage {
                    target: id.clone(),
                    sender: caller.session().cloned(),
                    text,
                    mode: DeliveryMode::Sequential,
                    client_key: None,
                }),
                client_key: request.client_key.clone(),
            })
            .await?;
        if !created.inserted {
            // A repeat of a spawn already made: answer as the first request would have.
            return Box::pin(self.respawned(caller, created.session, &request)).await;
        }
        let session = created.session;
        self.record(
            Some(&id),
            EventKind::SessionCreated {
                agent: request.agent,
            },
        )
        .await;
        if let Some(first) = &created.first_message {
            self.record(
                Some(&id),
                EventKind::MessageQueued {
                    message: first.id,
                    mode: first.mode,
                },
            )
            .await;
        }

        let mut spec = SpawnSpec::new(id.clone(), program, &working_dir);
        spec.args = args;
        spec.env = profile_env;
        spec.env.insert(ENV_SESSION_ID.into(), id.to_string());
        spec.env
            .insert(ENV_LEGACY_SESSION_ID.into(), id.to_string());
        if let Some(url) = &self.inner.config.server_url {
            spec.env.insert(ENV_SERVER_URL.into(), url.clone());
            spec.env.insert(ENV_LEGACY_SERVER_URL.into(), url.clone());
        }
        if let Some(extra) = &self.inner.config.agent_env {
            spec.env.extend((extra.0)(&id));
        }
        spec.cols = self.inner.config.cols;
        spec.rows = self.inner.config.rows;
        if let Some(sandbox) = &self.inner.config.sandbox {
            sandbox.wrap(&mut spec, &self.inner.backend.private_paths());
        }
        let handle = self.start_actor(session.clone(), profile.clone(), None);
        if let Err(e) = self.inner.backend.create(&spec).await {
            let reason = format!("could not start: {e}");
            // The caller hears why from this error; its prompt fails quietly.
            let _ = self.inner.store.fail_pending(&id, &reason).await;
            let _ = handle.commands.send(Command::Exited {
                status: None,
                reason,
            });
            handle.until_ended().await;
            return Err(e);
        }
        let _ = handle.commands.send(Command::Activity);
        self.until_ready(&id, &handle).await?;
        if let (Some(wait), Some(parent)) = (request.wait, caller.session()) {
            self.register_wait(Some(parent), &id, wait).await?;
        }
        self.session(&id).await
    }

    /// The answer to a repeated spawn: the session the first request created, once it is
    /// ready (or why it is not), with the caller's wait registered again (waits of one
    /// caller on one session wake it once, so a wait the first request registered is not
    /// doubled). A session whose agent was never started (sm stopped between storing it
    /// and starting its terminal) is started anew, under a key derived from the first, so
    /// a further repeat finds the new one.
    async fn respawned(
        &self,
        caller: &Caller,
        session: Session,
        request: &SpawnRequest,
    ) -> Result<Session> {
        if session.end_reason.as_deref() == Some(NEVER_STARTED) {
            let mut again = request.clone();
            again.client_key = request
                .client_key
                .as_ref()
                .map(|key| format!("{key}#{}", session.id));
            return self.spawn(caller, again).await;
        }
        let handle = lock_map(&self.inner.actors).get(&session.id).cloned();
        let Some(handle) = handle.filter(|_| session.status.is_live()) else {
            return Err(Error::backend_msg(format!(
                "the agent this spawn started has ended ({}): {}",
                session.status,
                session
                    .end_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            )));
        };
        self.until_ready(&session.id, &handle).await?;
        if let (Some(wait), Some(parent)) = (request.wait, caller.session()) {
            self.register_wait(Some(parent), &session.id, wait).await?;
        }
        self.session(&session.id).await
    }

    /// Waits (on the actor's status) until a new agent is ready for input; past the
    /// deadline it is killed and the error shows the end of its screen.
    async fn until_ready(&self, id: &SessionId, handle: &ActorHandle) -> Result<()> {
        let mut status = handle.status.clone();
        let ready = tokio::time::timeout(self.inner.config.ready_timeout, async {
            loop {
                let s = *status.borrow_and_update();
                if s != SessionStatus::Starting {
                    return s;
                }
                if status.changed().await.is_err() {
                    return SessionStatus::Dead;
                }
            }
        })
        .await;
        let tail = || async {
            self.inner
                .backend
                .capture_tail(id, 10)
                .await
                .unwrap_or_default()
                .join("\n")
        };
        match ready {
            Ok(s) if s.is_live() => Ok(()),
            Ok(s) => Err(Error::backend_msg(format!(
                "the agent ended while starting ({s}); last output:\n{}",
                tail().await
            ))),
            Err(_) => {
                let screen = tail().await;
                let why = format!(
                    "it did not become ready within {:?}",
                    self.inner.config.ready_timeout
                );
                let _ = self.end_agent(id, Some(why.clone())).await;
                Err(Error::backend_msg(format!(
                    "the agent did not become ready within {:?}; its screen ended with:\n{screen}",
                    self.inner.config.ready_timeout,
                )))
            }
        }
    }

    // ----- send -----

    /// Queues `text` for `target` in `mode` and returns the stored message. Returns once the
    /// message is durable; delivery follows (see the module docs).
    ///
    /// Errors: [`Error::InvalidInput`] for empty or oversized text; [`Error::SessionNotFound`];
    /// [`Error::InvalidInput`] when the target is stopped or dead.
    pub async fn send(
        &self,
        caller: &Caller,
        target: &SessionId,
        text: &str,
        mode: DeliveryMode,
    ) -> Result<Message> {
        self.send_with_key(caller, target, text, mode, None).await
    }

    /// [`Engine::send`] with the sender's idempotency key: sending again with the same key
    /// (after a connection broke before the answer came) returns the message already
    /// stored instead of queueing it twice.
    pub async fn send_with_key(
        &self,
        caller: &Caller,
        target: &SessionId,
        text: &str,
        mode: DeliveryMode,
        client_key: Option<String>,
    ) -> Result<Message> {
        let text = sanitize_message(text, self.inner.config.max_message_bytes)?;
        self.enqueue_keyed(caller.session(), target, text, mode, client_key)
            .await
    }

    /// The registered session `id`, or `SessionNotFound`.
    async fn session(&self, id: &SessionId) -> Result<Session> {
        self.inner
            .store
            .get_session(id)
            .await?
            .ok_or_else(|| Error::SessionNotFound(id.to_string()))
    }

    /// The session `id` if it is live; otherwise an error saying why `action` is impossible.
    async fn live_session(&self, id: &SessionId, action: &str) -> Result<Session> {
        let session = self.session(id).await?;
        if !session.status.is_live() {
            return Err(Error::InvalidInput(format!(
                "session {} is {}: {action}",
                display_name(&session),
                session.status
            )));
        }
        Ok(session)
    }

    async fn enqueue(
        &self,
        sender: Option<&SessionId>,
        target: &SessionId,
        text: String,
        mode: DeliveryMode,
    ) -> Result<Message> {
        self.enqueue_keyed(sender, target, text, mode, None).await
    }

    async fn enqueue_keyed(
        &self,
        sender: Option<&SessionId>,
        target: &SessionId,
        text: String,
        mode: DeliveryMode,
        client_key: Option<String>,
    ) -> Result<Message> {
        self.live_session(target, "it cannot receive messages")
            .await?;
        let asked_at = Timestamp::now();
        let message = self
            .inner
            .store
            .enqueue(NewMessage {
                target: target.clone(),
                sender: sender.cloned(),
                text,
                mode,
                client_key,
            })
            .await?;
        if message.created_at.0 < asked_at.0 {
            // A repeat of a send already stored: nothing new happened.
            return Ok(message);
        }
        self.record(
            Some(target),
            EventKind::MessageQueued {
                message: message.id,
                mode,
            },
        )
        .await;
        self.kick(target);
        Ok(message)
    }

    fn kick(&self, target: &SessionId) {
        if let Some(h) = lock_map(&self.inner.actors).get(target) {
            let _ = h.commands.send(Command::Kick);
        }
    }

    // ----- wait -----

    /// Returns at once; when `target` next finishes a turn with nothing left queued for it
    /// (at once if it already idles with nothing queued), or when `timeout` passes, the
    /// caller gets a short message saying which — delivered like any important message,
    /// which wakes it. An admin caller gets only the event.
    pub async fn wait(&self, caller: &Caller, target: &SessionId, timeout: Duration) -> Result<()> {
        self.register_wait(caller.session(), target, timeout)
            .await
            .map(drop)
    }

    /// For programs driving agents (EM programs): waits — asynchronously, in this task —
    /// until `target` finishes its turn with nothing queued for it, ends, or `timeout`
    /// passes, with the same rules as [`Engine::wait`]. Returns why, and the target's last
    /// assistant message when known.
    pub async fn wait_for(&self, target: &SessionId, timeout: Duration) -> Result<WaitResult> {
        let mut events = self.subscribe();
        let wait = self.register_wait(None, target, timeout).await?;
        loop {
            match events.recv().await {
                Ok(Event {
                    kind:
                        EventKind::WaitFired {
                            wait: id,
                            outcome,
                            last_message,
                            turns,
                            ..
                        },
                    ..
                }) if id == wait.id => {
                    return Ok(WaitResult {
                        outcome,
                        last_message,
                        turns,
                    });
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed live events: the log has them.
                    let fired = self
                        .inner
                        .store
                        .events(None, Some(target), 0)
                        .await?
                        .into_iter()
                        .find_map(|e| match e.kind {
                            EventKind::WaitFired {
                                wait: id,
                                outcome,
                                last_message,
                                turns,
                                ..
                            } if id == wait.id => Some(WaitResult {
                                outcome,
                                last_message,
                                turns,
                            }),
                            _ => None,
                        });
                    if let Some(result) = fired {
                        return Ok(result);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Error::Closed("the engine"));
                }
            }
        }
    }

    async fn register_wait(
        &self,
        waiter: Option<&SessionId>,
        target: &SessionId,
        timeout: Duration,
    ) -> Result<crate::types::Wait> {
        self.live_session(target, "there is nothing to wait for")
            .await?;
        let deadline = Timestamp(Timestamp::now().0 + timeout.as_millis() as i64);
        let wait = self.inner.store.add_wait(waiter, target, deadline).await?;
        match lock_map(&self.inner.actors).get(target) {
            Some(h) => {
                let _ = h.commands.send(Command::WaitAdded(wait.clone()));
                Ok(wait)
            }
            None => Err(Error::SessionNotFound(target.to_string())),
        }
    }

    // ----- hooks -----

    /// Takes a hook event reported by agent `id` (Stop → idle, UserPromptSubmit and tool
    /// use → working, permission Notification → needs input, SessionEnd → stopped).
    pub async fn hook(&self, id: &SessionId, event: HookEvent) -> Result<()> {
        let handle = lock_map(&self.inner.actors).get(id).cloned();
        let Some(h) = handle else {
            return Err(Error::SessionNotFound(id.to_string()));
        };
        let field = |k: &str| event.payload.get(k).and_then(|v| v.as_str());
        let kind = EventKind::Hook {
            event: event.event.clone(),
            transcript_path: field("transcript_path").map(str::to_string),
            prompt_digest: (event.event == "UserPromptSubmit")
                .then(|| field("prompt").map(what::prompt_digest))
                .flatten(),
        };
        let _ = h.commands.send(Command::Hook(event));
        // Recorded here, as it arrives, not by the actor: the actor may be busy typing the
        // very message this hook reports, and a restart right now must find the record.
        self.record(Some(id), kind).await;
        Ok(())
    }

    // ----- clear / kill / rename -----

    /// Resets the agent's context (Claude Code: `/clear`), verified on screen. The session
    /// keeps its id and name. The agent must be idle.
    pub async fn clear(&self, caller: &Caller, target: &SessionId) -> Result<()> {
        self.authorize(caller, target, "clear").await?;
        self.ask_actor(target, Command::Clear).await
    }

    /// Sends the session's actor a command carrying a reply channel and waits for the reply.
    async fn ask_actor<T>(
        &self,
        target: &SessionId,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let handle = lock_map(&self.inner.actors)
            .get(target)
            .cloned()
            .ok_or_else(|| Error::SessionNotFound(target.to_string()))?;
        let (reply, rx) = oneshot::channel();
        handle
            .commands
            .send(command(reply))
            .map_err(|_| Error::SessionNotFound(target.to_string()))?;
        rx.await.map_err(|_| Error::Closed("the session"))?
    }

    /// Answers the question an agent is asking on screen (a permission prompt) with option
    /// `option` (0-based, in the order of [`crate::NotificationKind::NeedsInput`]'s
    /// options), and returns the option's label once the question has left the screen.
    ///
    /// Errors: [`Error::InvalidInput`] when nothing is being asked or there is no such
    /// option; [`Error::Forbidden`] for a caller that is not an ancestor.
    pub async fn answer(
        &self,
        caller: &Caller,
        target: &SessionId,
        option: usize,
    ) -> Result<String> {
        self.authorize(caller, target, "answer for").await?;
        self.ask_actor(target, |reply| Command::Answer { option, reply })
            .await
    }

    /// Ends the agent's terminal, marks it dead, fails its queue in one transaction
    /// (telling each sender once), releases its locks and wakes its waiters with the news,
    /// and returns when all of that is done. Idempotent.
    pub async fn kill(&self, caller: &Caller, target: &SessionId) -> Result<()> {
        self.authorize(caller, target, "kill").await?;
        self.end_agent(target, None).await
    }

    /// Kills `target` on the engine's own account, recording `reason` as why it ended.
    async fn end_agent(&self, target: &SessionId, reason: Option<String>) -> Result<()> {
        let handle = lock_map(&self.inner.actors).get(target).cloned();
        if let Some(h) = &handle {
            let _ = h.commands.send(Command::Killing(reason.clone()));
        }
        // The terminal first: whatever the actor is busy with, the agent stops now.
        self.inner.backend.kill(target).await?;
        match handle {
            Some(h) => {
                let _ = h.commands.send(Command::Exited {
                    status: None,
                    reason: "killed".into(),
                });
                // Return once the actor has settled everything and ended.
                if !h.until_ended().await {
                    tracing::warn!(session = %target, "the actor took long to settle a kill");
                }
            }
            None => {
                if let Some(s) = self.inner.store.get_session(target).await? {
                    if s.status.is_live() {
                        let why = reason.as_deref().unwrap_or("killed");
                        self.inner
                            .store
                            .end_session(target, SessionStatus::Dead, why)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives a session a new name (or none). A session may rename itself or its descendants.
    pub async fn rename(
        &self,
        caller: &Caller,
        target: &SessionId,
        name: Option<SessionName>,
    ) -> Result<Session> {
        if caller.session() != Some(target) {
            self.authorize(caller, target, "rename").await?;
        }
        self.inner.store.rename_session(target, name).await
    }

    /// Records what a session says it is working on (`None` clears it). A session may set
    /// its own task or a descendant's.
    pub async fn set_task(
        &self,
        caller: &Caller,
        target: &SessionId,
        task: Option<&str>,
    ) -> Result<Session> {
        if caller.session() != Some(target) {
            self.authorize(caller, target, "set the task of").await?;
        }
        let task = match task {
            Some(t) => Some(sanitize_message(t, 500)?.replace('\n', " ")),
            None => None,
        };
        self.inner.store.set_task(target, task).await
    }

    /// The agent's own subagents (Claude Code's, from its SubagentStart / SubagentStop
    /// hooks), in start order.
    pub async fn subagents(&self, id: &SessionId) -> Result<Vec<Subagent>> {
        let mut list: Vec<Subagent> = Vec::new();
        for event in self.inner.store.events(None, Some(id), 0).await? {
            if let EventKind::Subagent {
                agent_id,
                agent_type,
                running,
            } = event.kind
            {
                match list.iter_mut().find(|s| s.agent_id == agent_id) {
                    Some(s) => {
                        s.running = running;
                        if running {
                            s.started_at = event.at;
                        } else {
                            s.stopped_at = Some(event.at);
                        }
                    }
                    None => list.push(Subagent {
                        agent_id,
                        agent_type,
                        running,
                        started_at: event.at,
                        stopped_at: (!running).then_some(event.at),
                    }),
                }
            }
        }
        Ok(list)
    }

    /// A short summary of what the agent is doing: from the summariser when it answers,
    /// else a heuristic summary that says it is the fallback. `deep` gives the summariser
    /// more context.
    pub async fn what(&self, id: &SessionId, deep: bool) -> Result<what::Summary> {
        let session = self.session(id).await?;
        let events = self.inner.store.events(None, Some(id), 0).await?;
        let mut last_message = None;
        let mut last_tool = None;
        for e in &events {
            match &e.kind {
                EventKind::TurnCompleted {
                    last_message: Some(m),
                } => last_message = Some(m.clone()),
                EventKind::ToolUse { tool, target, .. } => {
                    last_tool = Some(
                        format!("{tool} {}", target.as_deref().unwrap_or(""))
                            .trim()
                            .to_string(),
                    )
                }
                _ => {}
            }
        }
        let transcript = what::last_transcript_path(&events);
        let lines = if deep { 200 } else { 60 };
        let screen = self
            .inner
            .backend
            .capture_tail(id, lines)
            .await
            .unwrap_or_default();
        let transcript = match transcript {
            Some(p) => {
                let max = if deep { 40 } else { 10 };
                tokio::task::spawn_blocking(move || what::transcript_tail(&p, max))
                    .await
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        let in_state_for =
            Duration::from_millis((Timestamp::now().0 - session.status_changed_at.0).max(0) as u64);
        let input = what::SummaryInput {
            session,
            screen,
            transcript,
            last_message,
            last_tool,
            in_state_for,
            deep,
        };
        let attempt = match &self.inner.summariser {
            Some(s) => s
                .summarise(&input)
                .await
                .map(|text| (text, s.name().to_string())),
            None => Err(Error::NotSupported("no summariser is configured".into())),
        };
        Ok(match attempt {
            Ok((summary, source)) => what::Summary {
                summary,
                source,
                fallback_reason: None,
            },
            Err(e) => what::Summary {
                summary: what::fallback_summary(&input),
                source: "fallback".into(),
                fallback_reason: Some(e.to_string()),
            },
        })
    }

    /// The agent's most recent tool uses, newest last.
    pub async fn recent_tools(&self, id: &SessionId, limit: usize) -> Result<Vec<Event>> {
        let mut tools: Vec<Event> = self
            .inner
            .store
            .events(None, Some(id), 0)
            .await?
            .into_iter()
            .filter(|e| matches!(e.kind, EventKind::ToolUse { .. }))
            .collect();
        let skip = tools.len().saturating_sub(limit);
        tools.drain(..skip);
        Ok(tools)
    }

    // ----- locks -----

    /// Takes the lock on the caller's workspace (explicit, held until released or death).
    pub async fn lock(&self, holder: &SessionId, reason: &str) -> Result<Lock> {
        let session = self.session(holder).await?;
        let workspace = self.workspace_for(&session.working_dir).await?;
        let lock = self
            .inner
            .store
            .acquire_lock(&LockRequest {
                workspace: workspace.clone(),
                holder: holder.clone(),
                reason: reason.to_string(),
                kind: LockKind::Explicit,
            })
            .await?;
        self.record(
            Some(holder),
            EventKind::LockAcquired {
                workspace,
                reason: reason.to_string(),
            },
        )
        .await;
        Ok(lock)
    }

    /// Releases the caller's locks (explicit and automatic); returns what was released.
    pub async fn unlock(&self, holder: &SessionId) -> Result<Vec<Lock>> {
        let released = self.inner.store.release_locks_of(holder, None).await?;
        self.after_release(holder, &released).await;
        Ok(released)
    }

    /// Releases locks whatever their holder (an admin freeing a workspace a hung agent
    /// holds): every lock of `holder`, or the lock on the workspace of `dir`. Returns what
    /// was released.
    ///
    /// Errors: [`Error::Forbidden`] for any caller but an admin.
    pub async fn force_unlock(&self, caller: &Caller, target: ForceUnlock) -> Result<Vec<Lock>> {
        if *caller != Caller::Admin {
            return Err(Error::Forbidden(
                "only an admin may release another session's locks".into(),
            ));
        }
        let released = match target {
            ForceUnlock::Holder(holder) => self.unlock(&holder).await?,
            ForceUnlock::Workspace(dir) => {
                let workspace = self.workspace_for(&dir).await?;
                match self.inner.store.get_lock(&workspace).await? {
                    Some(lock) => {
                        let released = self
                            .inner
                            .store
                            .release_lock(&workspace, &lock.holder)
                            .await?
                            .into_iter()
                            .collect::<Vec<_>>();
                        self.after_release(&lock.holder, &released).await;
                        released
                    }
                    None => Vec::new(),
                }
            }
        };
        for lock in &released {
            self.record(
                Some(&lock.holder),
                EventKind::Note {
                    text: format!("an admin released the lock on {}", lock.workspace),
                },
            )
            .await;
        }
        Ok(released)
    }

    /// The PreToolUse auto-lock: takes the lock on the workspace of `file` for `holder`,
    /// waiting as the policy says when another live session holds it. Released when the
    /// holder's turn ends.
    ///
    /// Errors: [`Error::LockConflict`] naming the holder and its reason once the wait is over.
    pub async fn auto_lock(&self, holder: &SessionId, file: &Path) -> Result<Lock> {
        let session = self.session(holder).await?;
        let file = if file.is_absolute() {
            file.to_path_buf()
        } else {
            session.working_dir.join(file)
        };
        // The file may not exist yet: its nearest existing ancestor decides the workspace.
        let dir = file
            .ancestors()
            .skip(1)
            .find(|a| a.is_dir())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| session.working_dir.clone());
        let workspace = self.workspace_for(&dir).await?;
        let request = LockRequest {
            workspace: workspace.clone(),
            holder: holder.clone(),
            reason: format!("writing {}", file.display()),
            kind: LockKind::Auto,
        };
        let deadline = match self.inner.lock_policy.contention(LockKind::Auto) {
            Contention::Fail => tokio::time::Instant::now(),
            Contention::WaitUpTo(d) => tokio::time::Instant::now() + d,
        };
        loop {
            let released = self.inner.lock_released.notified();
            match self.inner.store.acquire_lock(&request).await {
                Ok(lock) => {
                    if lock.acquired_at >= Timestamp(Timestamp::now().0 - 1000) {
                        self.record(
                            Some(holder),
                            EventKind::LockAcquired {
                                workspace: workspace.clone(),
                                reason: lock.reason.clone(),
                            },
                        )
                        .await;
                    }
                    return Ok(lock);
                }
                Err(Error::LockConflict(held)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::LockConflict(held));
                    }
                    // Retry when any lock is released, or at the deadline.
                    let _ = tokio::time::timeout_at(deadline, released).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn workspace_for(&self, dir: &Path) -> Result<crate::types::Workspace> {
        let policy = self.inner.lock_policy.clone();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || policy.workspace_for(&dir))
            .await
            .map_err(|e| Error::backend("workspace lookup failed", e))?
    }

    async fn after_release(&self, holder: &SessionId, released: &[Lock]) {
        for lock in released {
            self.record(
                Some(holder),
                EventKind::LockReleased {
                    workspace: lock.workspace.clone(),
                },
            )
            .await;
        }
        if !released.is_empty() {
            self.inner.lock_released.notify_waiters();
        }
    }

    // ----- internals -----

    async fn record(&self, session: Option<&SessionId>, kind: EventKind) {
        record(&self.inner, session, kind).await;
    }

    /// Starts a session's actor. `first` runs before it looks at its queue (recovery must
    /// settle messages caught mid-delivery before anything newer is claimed).
    fn start_actor(
        &self,
        session: Session,
        profile: Arc<dyn AgentProfile>,
        first: Option<Command>,
    ) -> ActorHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(session.status);
        let handle = ActorHandle {
            commands: tx,
            status: status_rx,
        };
        lock_map(&self.inner.actors).insert(session.id.clone(), handle.clone());
        let actor = Actor::new(self.clone(), session, profile, status_tx);
        tokio::spawn(actor.run(rx, first));
        handle
    }

    fn actor_finished(&self, id: &SessionId) {
        lock_map(&self.inner.actors).remove(id);
    }

    /// Forwards backend events to the actors.
    fn listen_to_backend(&self) {
        let mut events = self.inner.backend.events();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let event = events.recv().await;
                let Some(inner) = weak.upgrade() else { return };
                let actors = lock_map(&inner.actors);
                match event {
                    Ok(BackendEvent::Output(id)) => {
                        if let Some(h) = actors.get(&id) {
                            let _ = h.commands.send(Command::Activity);
                        }
                    }
                    Ok(BackendEvent::Exited { id, status }) => {
                        if let Some(h) = actors.get(&id) {
                            let reason = match status {
                                Some(code) => format!("the agent exited with status {code}"),
                                None => "the agent's terminal closed".to_string(),
                            };
                            let _ = h.commands.send(Command::Exited { status, reason });
                        }
                    }
                    // Missed events: every actor looks at its screen and liveness again.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for h in actors.values() {
                            let _ = h.commands.send(Command::CheckAlive);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Reconciles the store with the backend after a (re)start.
    async fn recover(&self) -> Result<()> {
        let live: std::collections::HashSet<SessionId> =
            self.inner.backend.list().await?.into_iter().collect();
        for session in self.inner.store.list_sessions().await? {
            if !session.status.is_live() {
                continue;
            }
            let Some(profile) = self.inner.profiles.get(&session.agent).cloned() else {
                tracing::warn!(session = %session.id, agent = %session.agent, "no profile; marking dead");
                self.inner
                    .store
                    .set_status(&session.id, SessionStatus::Dead)
                    .await?;
                continue;
            };
            let first = if live.contains(&session.id) {
                tracing::info!(session = %session.id, "re-adopted a running agent");
                Command::Recover
            } else if session.status == SessionStatus::Starting {
                // Stored, but its terminal never existed or died while starting: the spawn
                // that made it never answered, and repeating it starts it anew.
                Command::Exited {
                    status: None,
                    reason: NEVER_STARTED.into(),
                }
            } else {
                Command::Exited {
                    status: None,
                    reason: "the agent's terminal vanished while sm was down".into(),
                }
            };
            self.start_actor(session.clone(), profile, Some(first));
        }
        Ok(())
    }

    /// Stops the engine's actors. Agents keep running; a new engine re-adopts them.
    pub fn shutdown(&self) {
        for (_, h) in lock_map(&self.inner.actors).drain() {
            let _ = h.commands.send(Command::Shutdown);
        }
    }
}

pub(crate) async fn record(inner: &Inner, session: Option<&SessionId>, kind: EventKind) {
    match inner.store.append_event(session, kind).await {
        Ok(event) => {
            let _ = inner.events.send(event);
        }
        Err(e) => tracing::warn!(error = %e, "cannot record an event"),
    }
}

/// Appends a batch of events about one session in one store write (and publishes them).
pub(crate) async fn record_all(inner: &Inner, session: Option<&SessionId>, kinds: Vec<EventKind>) {
    match inner.store.append_events(session, kinds).await {
        Ok(events) => {
            for event in events {
                let _ = inner.events.send(event);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot record events"),
    }
}

pub(crate) fn notify(inner: &Inner, notification: Notification) {
    let wanted = match &notification.kind {
        crate::notifier::NotificationKind::TurnCompleted { .. } => inner.config.notify.completion,
        crate::notifier::NotificationKind::Error { .. } => inner.config.notify.errors,
        crate::notifier::NotificationKind::NeedsInput { .. } => {
            inner.config.notify.permission_prompts
        }
        crate::notifier::NotificationKind::IdleTimeout { .. } => inner.config.notify.idle,
    };
    if !wanted {
        return;
    }
    if let Some(n) = inner.notifier.clone() {
        tokio::spawn(async move {
            if let Err(e) = n.notify(&notification).await {
                tracing::warn!(notifier = n.name(), error = %e, "notification failed");
            }
        });
    }
}

/// `name (short id)` or the id.
pub fn display_name(session: &Session) -> String {
    match &session.name {
        Some(n) => format!("{n} ({})", &session.id.as_str()[..8]),
        None => session.id.to_string(),
    }
}

/// Whether anything is still to be delivered to `target` (one row read, whatever the
/// queue's length).
pub(crate) async fn pending_for(store: &dyn MessageStore, target: &SessionId) -> Result<bool> {
    let next = store
        .list_messages(&MessageFilter {
            target: Some(target.clone()),
            states: vec![MessageState::Queued, MessageState::Delivering],
            limit: 1,
        })
        .await?;
    Ok(!next.is_empty())
}
