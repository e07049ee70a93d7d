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
mod cluster;
mod control;
mod introspect;
mod locks;
mod lookup;
mod messaging;
pub mod profile;
pub mod sanitize;
pub mod screen;
mod spawn;
mod turn;
pub mod what;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

use crate::backend::{BackendEvent, TerminalBackend};
use crate::cluster::Cluster;
use crate::error::Result;
use crate::lock_policy::LockPolicy;
use crate::notifier::{Notification, Notifier};
use crate::store::{MessageFilter, MessageStore};
use crate::types::{
    AgentKind, Event, EventKind, MessageState, Session, SessionId, SessionName, SessionStatus,
    Timestamp,
};
use actor::{Actor, Command};
pub use profile::{
    AgentProfile, AgentSignal, ClaudeProfile, CodexProfile, ConfiguredProfile, FakeProfile,
    HookReport, Launch, ShellProfile,
};
pub use sanitize::sanitize_message;
pub use screen::{ScreenState, read_screen};

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
    /// This node's name, recorded on every session it spawns (with a cluster, the cluster's
    /// node name wins). Shown in views; without a cluster it decides nothing.
    pub node: Option<String>,
    /// The URL other nodes reach this node's API at, published with its lease (default:
    /// `server_url`).
    pub node_url: Option<String>,
    /// How often the engine looks in the store for work other nodes' pokes may have missed
    /// (only with a cluster).
    pub sweep_interval: Duration,
    /// How often the node renews its lease (only with a cluster).
    pub heartbeat_interval: Duration,
    /// How long after another node's lease ran out its live sessions are declared dead
    /// (by whichever node gets to them first), with waiters and senders told; `None`:
    /// never, they stay unreachable until their node is back. Only with a cluster.
    pub orphan_grace: Option<Duration>,
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
            node: None,
            node_url: None,
            sweep_interval: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(3),
            orphan_grace: None,
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
    /// The hook's event name, as the agent's hook system calls it.
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
    cluster: Option<Arc<dyn Cluster>>,
    /// The cluster's nodes as last read (at each heartbeat), for views and routing.
    nodes: Mutex<Vec<crate::cluster::NodeInfo>>,
    actors: Mutex<HashMap<SessionId, ActorHandle>>,
    events: broadcast::Sender<EngineEvent>,
    /// Signalled whenever a lock is released, so blocked auto-locks retry at once.
    lock_released: tokio::sync::Notify,
}

#[derive(Clone)]
struct ActorHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<SessionStatus>,
    /// The session's agent profile, which reads its hooks.
    profile: Arc<dyn AgentProfile>,
    /// Counts the terminal's output events, for the actor to wait on while it verifies.
    output: Arc<watch::Sender<u64>>,
}

impl ActorHandle {
    /// The terminal printed something (or events were missed and it may have).
    fn output_seen(&self) {
        self.output.send_modify(|n| *n = n.wrapping_add(1));
    }
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

pub(crate) fn lock_map<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
    cluster: Option<Arc<dyn Cluster>>,
}

impl EngineBuilder {
    /// Runs as one node of `cluster`: only sessions of this node get an actor here; work
    /// for other nodes' sessions is left in the store and their owner poked.
    pub fn cluster(mut self, cluster: Arc<dyn Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

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
                cluster: self.cluster,
                nodes: Mutex::new(Vec::new()),
                actors: Mutex::new(HashMap::new()),
                events,
                lock_released: tokio::sync::Notify::new(),
            }),
        };
        engine.listen_to_backend();
        engine.recover().await?;
        engine.listen_to_cluster().await?;
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
    /// the Claude Code, Codex and shell profiles.
    pub fn builder(
        store: Arc<dyn MessageStore>,
        backend: Arc<dyn TerminalBackend>,
    ) -> EngineBuilder {
        let mut profiles: HashMap<AgentKind, Arc<dyn AgentProfile>> = HashMap::new();
        profiles.insert(AgentKind::Claude, Arc::new(ClaudeProfile::default()));
        profiles.insert(AgentKind::Codex, Arc::new(CodexProfile::default()));
        profiles.insert(AgentKind::Shell, Arc::new(ShellProfile::default()));
        EngineBuilder {
            store,
            backend,
            lock_policy: Arc::new(crate::DefaultLockPolicy::default()),
            notifier: None,
            profiles,
            config: EngineConfig::default(),
            summariser: Some(Arc::new(what::ClaudeSummariser::default())),
            cluster: None,
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

    /// The agent kinds this engine can start (those with a profile).
    pub fn agent_kinds(&self) -> Vec<AgentKind> {
        let mut kinds: Vec<AgentKind> = self.inner.profiles.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Events as they happen (status changes, deliveries, wake-ups, locks, …).
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

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
        let (output_tx, output_rx) = watch::channel(0);
        let handle = ActorHandle {
            commands: tx,
            status: status_rx,
            profile: profile.clone(),
            output: Arc::new(output_tx),
        };
        lock_map(&self.inner.actors).insert(session.id.clone(), handle.clone());
        let actor = Actor::new(self.clone(), session, profile, status_tx, output_rx);
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
                            h.output_seen();
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
                            h.output_seen();
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
            if live.contains(&session.id) && self.was_declared_dead_as_orphan(&session) {
                // This node was away past the grace: another node ended the session and
                // told its waiters; the agent left running here must not act on.
                tracing::warn!(session = %session.id, "ending an agent declared dead while this node was away");
                if let Err(e) = self.inner.backend.kill(&session.id).await {
                    tracing::warn!(session = %session.id, error = %e, "cannot end the agent");
                }
                continue;
            }
            if !session.status.is_live() || !self.owns(&session) {
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

    /// Stops the engine's actors. Agents keep running; a new engine re-adopts them. An
    /// actor finishes what it is doing first (a delivery, a clear); this does not wait for
    /// it — [`Engine::shutdown_gracefully`] does.
    pub fn shutdown(&self) {
        self.stop_actors();
    }

    /// [`Engine::shutdown`], then waits — for up to `timeout` — until every actor has
    /// finished what it was doing and stopped, so a delivery under way is recorded as what
    /// it became (delivered, requeued, failed) rather than left to restart recovery.
    pub async fn shutdown_gracefully(&self, timeout: Duration) {
        let stopping = self.stop_actors();
        let all_stopped = futures::future::join_all(stopping.iter().map(|tx| tx.closed()));
        if tokio::time::timeout(timeout, all_stopped).await.is_err() {
            tracing::warn!(
                ?timeout,
                "some sessions were still busy at shutdown; restart recovery settles them"
            );
        }
    }

    /// Tells every actor to stop; the senders of their command channels, which close
    /// once each actor has stopped.
    fn stop_actors(&self) -> Vec<mpsc::UnboundedSender<Command>> {
        lock_map(&self.inner.actors)
            .drain()
            .map(|(_, h)| {
                let _ = h.commands.send(Command::Shutdown);
                h.commands
            })
            .collect()
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
            ..Default::default()
        })
        .await?;
    Ok(!next.is_empty())
}
