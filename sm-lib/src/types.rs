//! Domain types shared by every part of sm: sessions, messages, locks and events.
//!
//! Every type here is plain data (serde-serialisable, cheap to clone) so that stores can
//! persist it and the HTTP API can expose it unchanged.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Milliseconds since the Unix epoch. Stores keep times in this form.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// The identity of a managed session.
///
/// It is a UUID so that it can double as the agent's own session id (Claude Code's
/// `--session-id`), which makes hook payloads carry sm's id.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        SessionId(uuid::Uuid::new_v4().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let uuid = uuid::Uuid::parse_str(s).map_err(|_| {
            Error::InvalidInput(format!("{s:?} is not a session id (expected a UUID)"))
        })?;
        // Normalise to the lowercase hyphenated form so one session has one spelling.
        Ok(SessionId(uuid.hyphenated().to_string()))
    }
}

impl TryFrom<String> for SessionId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A friendly, human-chosen name for a session, unique among live sessions.
///
/// Names are 1–64 characters of ASCII letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit. That keeps them safe to show in a terminal, to use in a tmux target
/// and to type in a shell without quoting.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionName(String);

impl SessionName {
    /// Longest accepted name, in characters.
    pub const MAX_LEN: usize = 64;

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidName {
            name: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(invalid("a name cannot be empty"));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(invalid("a name is at most 64 characters"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            let shown = if c.is_control() {
                format!("control character U+{:04X}", c as u32)
            } else {
                format!("character {c:?}")
            };
            return Err(invalid(&format!(
                "{shown} is not allowed; use letters, digits, '-', '_' and '.'"
            )));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(invalid("a name must start with a letter or a digit"));
        }
        // Ids are shown and accepted by their first 8+ hex characters: a name made of hex
        // digits and dashes could pose as another session's id prefix.
        let id_like = s.len() >= 8 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if id_like || uuid::Uuid::parse_str(s).is_ok() {
            return Err(invalid(
                "a name cannot look like a session id (8 or more hex digits and dashes), or \
                 the two could be confused",
            ));
        }
        Ok(SessionName(s.to_string()))
    }
}

impl TryFrom<String> for SessionName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<SessionName> for String {
    fn from(n: SessionName) -> String {
        n.0
    }
}

impl fmt::Display for SessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which agent program runs in a session. Agent quirks live in profiles keyed by this: the
/// built-in kinds, or one defined in the configuration's `agents:` section by its name.
/// Stored, sent and parsed as its lowercase name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgentKind {
    /// Anthropic's Claude Code CLI.
    Claude,
    /// OpenAI's Codex CLI.
    Codex,
    /// The fake agent used in tests and demos.
    Fake,
    /// Any other command, treated as a plain shell program.
    Shell,
    /// An agent defined by configuration (`agents.<name>`), by its name.
    Custom(Arc<str>),
}

impl AgentKind {
    /// The built-in kinds, for parsing and help texts.
    pub const ALL: [AgentKind; 4] = [
        AgentKind::Claude,
        AgentKind::Codex,
        AgentKind::Fake,
        AgentKind::Shell,
    ];

    /// The stable lowercase name used in storage, the API and the CLI.
    pub fn as_str(&self) -> &str {
        match self {
            AgentKind::Claude => "claude",
            AgentKind::Codex => "codex",
            AgentKind::Fake => "fake",
            AgentKind::Shell => "shell",
            AgentKind::Custom(name) => name,
        }
    }

    /// A configured kind's name: 1–32 lowercase letters, digits, `-` or `_`, starting with
    /// a letter, and not a built-in kind's name.
    pub fn custom(name: &str) -> Result<AgentKind> {
        let ok = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
        if !ok {
            return Err(Error::InvalidInput(format!(
                "invalid agent name {name:?}: use 1-32 lowercase letters, digits, '-' or '_', starting with a letter"
            )));
        }
        if AgentKind::ALL.iter().any(|k| k.as_str() == name) {
            return Err(Error::InvalidInput(format!(
                "{name:?} is a built-in agent kind; configure it in its own section ({name}:)"
            )));
        }
        Ok(AgentKind::Custom(Arc::from(name)))
    }
}

impl FromStr for AgentKind {
    type Err = Error;
    /// A built-in kind's name, or any valid name of a configured kind (whether one is
    /// configured is for the engine to say).
    fn from_str(s: &str) -> Result<Self> {
        if let Some(kind) = AgentKind::ALL.into_iter().find(|k| k.as_str() == s) {
            return Ok(kind);
        }
        AgentKind::custom(s).map_err(|_| {
            Error::InvalidInput(format!(
                "unknown agent kind {s:?} (expected claude, codex, fake, shell or a configured agent's name)"
            ))
        })
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// In API documents an agent kind is its name.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for AgentKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "claude, codex, fake, shell, or the name of an agent defined in `agents:`",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for AgentKind {}

impl Serialize for AgentKind {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AgentKind {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// What a session is doing, as far as sm knows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// The terminal exists but the agent is not ready for input yet.
    Starting,
    /// The agent waits at its prompt.
    Idle,
    /// The agent is running a turn.
    Working,
    /// The agent is stuck on a question only a human (or its parent) can answer,
    /// such as a permission prompt.
    NeedsInput,
    /// The agent ended normally (its session ended).
    Stopped,
    /// The terminal is gone: killed, crashed, or vanished while sm was down.
    Dead,
}

impl SessionStatus {
    /// Every status, for parsing.
    pub const ALL: [SessionStatus; 6] = [
        SessionStatus::Starting,
        SessionStatus::Idle,
        SessionStatus::Working,
        SessionStatus::NeedsInput,
        SessionStatus::Stopped,
        SessionStatus::Dead,
    ];

    /// True while the session can still run: everything but stopped and dead.
    /// Names are unique among live sessions, and only live sessions accept messages.
    pub fn is_live(self) -> bool {
        !matches!(self, SessionStatus::Stopped | SessionStatus::Dead)
    }

    /// The stable lowercase name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Starting => "starting",
            SessionStatus::Idle => "idle",
            SessionStatus::Working => "working",
            SessionStatus::NeedsInput => "needs_input",
            SessionStatus::Stopped => "stopped",
            SessionStatus::Dead => "dead",
        }
    }
}

impl FromStr for SessionStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SessionStatus::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::InvalidInput(format!("unknown session status {s:?}")))
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A managed session as recorded in the registry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Its id; also the name of its terminal in the backend.
    pub id: SessionId,
    /// Its friendly name, if it has one.
    pub name: Option<SessionName>,
    /// The session that spawned it, if any. Only ancestors may kill or clear it.
    pub parent: Option<SessionId>,
    /// Which agent program runs in it.
    pub agent: AgentKind,
    /// The model the agent was started with, if chosen.
    pub model: Option<String>,
    /// Where the agent runs; the workspace for locks derives from it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub working_dir: PathBuf,
    /// What it is doing.
    pub status: SessionStatus,
    /// What it says it is working on (`sm task`).
    #[serde(default)]
    pub task: Option<String>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When its status last changed.
    pub status_changed_at: Timestamp,
    /// Whether it was started without permission prompts; only such a session may start
    /// children without them.
    #[serde(default)]
    pub skip_permissions: bool,
    /// Why it ended (killed, exited with a status, could not start, …), once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// The node (server) whose terminal runs it — the only one that types into it. Unset
    /// in records made before sm had nodes, which belong to whichever server owns the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Session {
    /// A new session record in the `Starting` state, stamped now.
    pub fn new(id: SessionId, agent: AgentKind, working_dir: PathBuf) -> Self {
        let now = Timestamp::now();
        Session {
            id,
            name: None,
            parent: None,
            agent,
            model: None,
            working_dir,
            status: SessionStatus::Starting,
            task: None,
            created_at: now,
            status_changed_at: now,
            skip_permissions: false,
            node: None,
            end_reason: None,
        }
    }
}

/// How a message is delivered.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Delivered when the target is idle, after every queued urgent and important message.
    Sequential,
    /// Queued ahead of sequential messages; delivered at the next idle point without
    /// interrupting the target.
    Important,
    /// Interrupts the target now and is delivered at once.
    Urgent,
}

impl DeliveryMode {
    /// Every mode, highest priority first: the order in which queued messages are claimed.
    pub const BY_PRIORITY: [DeliveryMode; 3] = [
        DeliveryMode::Urgent,
        DeliveryMode::Important,
        DeliveryMode::Sequential,
    ];

    /// The stable lowercase name used in storage, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Sequential => "sequential",
            DeliveryMode::Important => "important",
            DeliveryMode::Urgent => "urgent",
        }
    }

    /// Claim priority: higher is claimed first.
    pub fn priority(self) -> u8 {
        match self {
            DeliveryMode::Sequential => 0,
            DeliveryMode::Important => 1,
            DeliveryMode::Urgent => 2,
        }
    }
}

impl FromStr for DeliveryMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DeliveryMode::BY_PRIORITY
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown delivery mode {s:?} (expected sequential, important or urgent)"
                ))
            })
    }
}

impl fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message is in its life.
///
/// ```text
/// queued ──claim──▶ delivering ──▶ delivered
///   │  ▲               │  │
///   │  └───requeue─────┘  └──────▶ failed
///   └─────────────────────────────▶ failed   (target died, cancelled)
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Accepted and durable, waiting for its turn.
    Queued,
    /// Claimed by a delivery worker; it may be on the target's screen already.
    Delivering,
    /// The target's screen showed it submitted. Terminal state.
    Delivered,
    /// Given up, with a recorded reason. Terminal state.
    Failed,
}

impl MessageState {
    /// Every state, for parsing.
    pub const ALL: [MessageState; 4] = [
        MessageState::Queued,
        MessageState::Delivering,
        MessageState::Delivered,
        MessageState::Failed,
    ];

    /// The stable lowercase name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Delivering => "delivering",
            MessageState::Delivered => "delivered",
            MessageState::Failed => "failed",
        }
    }

    /// True for delivered and failed: nothing moves a message out of these.
    pub fn is_terminal(self) -> bool {
        matches!(self, MessageState::Delivered | MessageState::Failed)
    }
}

impl FromStr for MessageState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        MessageState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::InvalidInput(format!("unknown message state {s:?}")))
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message id: assigned by the store, increasing in enqueue order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub i64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A message to enqueue.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// The session that receives it.
    pub target: SessionId,
    /// The session that sent it; `None` for a human or the system.
    pub sender: Option<SessionId>,
    /// What is typed into the target, already sanitised.
    pub text: String,
    /// How it is delivered.
    pub mode: DeliveryMode,
    /// A key chosen by the sender: enqueueing again with the same key returns the message
    /// already stored instead of a second one, so a sender may retry a send whose answer it
    /// never saw.
    pub client_key: Option<String>,
}

/// A message as the store keeps it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Store-assigned id, increasing in enqueue order.
    pub id: MessageId,
    /// The session that receives it.
    pub target: SessionId,
    /// The session that sent it; `None` for a human or the system.
    pub sender: Option<SessionId>,
    /// What is typed into the target.
    pub text: String,
    /// How it is delivered.
    pub mode: DeliveryMode,
    /// Where it is in its life.
    pub state: MessageState,
    /// How many times it was claimed for delivery.
    pub attempts: u32,
    /// Why it failed (or, after a requeue, why the last attempt did not finish).
    pub reason: Option<String>,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When its state last changed.
    pub updated_at: Timestamp,
}

/// The unit a lock covers: a workspace directory (a git top-level, or a plain directory).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", schema(value_type = String))]
pub struct Workspace(pub PathBuf);

impl fmt::Display for Workspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// Why a lock was taken.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// Taken on purpose (`sm lock`); held until released or the holder dies.
    Explicit,
    /// Taken by the PreToolUse hook for a file write; released when the holder's turn ends.
    Auto,
}

impl LockKind {
    /// The stable lowercase name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::Explicit => "explicit",
            LockKind::Auto => "auto",
        }
    }
}

impl FromStr for LockKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "explicit" => Ok(LockKind::Explicit),
            "auto" => Ok(LockKind::Auto),
            _ => Err(Error::InvalidInput(format!("unknown lock kind {s:?}"))),
        }
    }
}

/// A request to lock a workspace.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRequest {
    /// What to lock.
    pub workspace: Workspace,
    /// Who takes it.
    pub holder: SessionId,
    /// Why, shown to anyone refused.
    pub reason: String,
    /// Explicit or automatic.
    pub kind: LockKind,
}

/// A held workspace lock.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// What is locked.
    pub workspace: Workspace,
    /// Who holds it.
    pub holder: SessionId,
    /// Why, shown to anyone refused.
    pub reason: String,
    /// Explicit or automatic.
    pub kind: LockKind,
    /// When it was taken (kept when the holder re-takes it).
    pub acquired_at: Timestamp,
}

/// A registered wait: when `target` next finishes a turn (or at `deadline`), `waiter` is
/// sent a wake-up message. Stored, so a restarted server still wakes everyone.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    /// Store-assigned id.
    pub id: i64,
    /// Who is woken; `None` for a caller outside any session (only events are raised).
    pub waiter: Option<SessionId>,
    /// Whose turn end is awaited.
    pub target: SessionId,
    /// When the wait gives up.
    pub deadline: Timestamp,
    /// When it was registered.
    pub created_at: Timestamp,
}

/// An event log entry id: assigned by the store, increasing in append order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub i64);

/// What happened. Serialised with a `type` tag so the log is readable as JSON.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A session was registered.
    SessionCreated {
        /// Which agent runs in it.
        agent: AgentKind,
    },
    /// A session's status changed.
    StatusChanged {
        /// The old status.
        from: SessionStatus,
        /// The new status.
        to: SessionStatus,
    },
    /// A message was accepted.
    MessageQueued {
        /// Which message.
        message: MessageId,
        /// Its mode.
        mode: DeliveryMode,
    },
    /// A message was seen submitted on its target's screen.
    MessageDelivered {
        /// Which message.
        message: MessageId,
    },
    /// A message was given up.
    MessageFailed {
        /// Which message.
        message: MessageId,
        /// Why.
        reason: String,
    },
    /// A workspace lock was taken.
    LockAcquired {
        /// Which workspace.
        workspace: Workspace,
        /// Why.
        reason: String,
    },
    /// A workspace lock was released.
    LockReleased {
        /// Which workspace.
        workspace: Workspace,
    },
    /// An agent hook reported something.
    Hook {
        /// The hook's event name, e.g. `Stop`.
        event: String,
        /// The agent's transcript file, as the hook reported it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcript_path: Option<String>,
        /// For a prompt submission: a digest of the prompt (whitespace ignored), so restart
        /// recovery can tell that a message it was typing reached the agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt_digest: Option<String>,
        /// The agent's own id for its conversation, as the hook reported it (Codex chooses
        /// its own; `codex resume <id>` continues it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_session: Option<String>,
    },
    /// The agent waits for input (e.g. a permission prompt).
    NeedsInput {
        /// The question on screen, when known.
        prompt: Option<String>,
        /// Its options as shown (1 = the first), when read from the screen; what
        /// `POST /sessions/{id}/answer` picks from.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
    },
    /// The agent stayed idle past `monitor.idle_timeout` with nobody waiting on it.
    IdleTimeout {
        /// How long it had been idle, in seconds.
        idle_secs: u64,
    },
    /// Something went wrong in or around the session.
    Error {
        /// What.
        message: String,
    },
    /// An agent finished a turn (Stop hook, or its screen after an interrupt).
    TurnCompleted {
        /// Its last assistant message, when known.
        last_message: Option<String>,
    },
    /// A wait fired: the target finished its turn, the wait timed out, or the target ended.
    WaitFired {
        /// Which wait.
        wait: i64,
        /// Who waited (`None` for a program or human outside any session).
        waiter: Option<SessionId>,
        /// Why it fired.
        outcome: WaitOutcome,
        /// The wake-up text sent to the waiter.
        text: String,
        /// The target's last assistant message, when known.
        last_message: Option<String>,
        /// The last message of each turn the target finished since the wait was
        /// registered, oldest first (a wake names every turn it covers).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        turns: Vec<String>,
    },
    /// The agent used a tool (PreToolUse / PostToolUse hooks).
    ToolUse {
        /// The tool, e.g. `Write` or `Bash`.
        tool: String,
        /// `pre` (about to run) or `post` (ran).
        phase: String,
        /// What it acted on (a file path or a command), shortened.
        target: Option<String>,
    },
    /// One of the agent's own subagents started or stopped (SubagentStart / SubagentStop).
    Subagent {
        /// The subagent's id.
        agent_id: String,
        /// Its type, e.g. `general-purpose`.
        agent_type: Option<String>,
        /// True at start, false at stop.
        running: bool,
    },
    /// sm holds back because a person (or the agent) left text in the input box.
    NeedsAttention {
        /// What is in the way.
        reason: String,
    },
    /// A free-form note, for anything else worth a line in the log.
    Note {
        /// The note.
        text: String,
    },
}

impl EventKind {
    /// The `type` tag of this kind, as stored.
    pub fn tag(&self) -> &'static str {
        match self {
            EventKind::SessionCreated { .. } => "session_created",
            EventKind::StatusChanged { .. } => "status_changed",
            EventKind::MessageQueued { .. } => "message_queued",
            EventKind::MessageDelivered { .. } => "message_delivered",
            EventKind::MessageFailed { .. } => "message_failed",
            EventKind::LockAcquired { .. } => "lock_acquired",
            EventKind::LockReleased { .. } => "lock_released",
            EventKind::Hook { .. } => "hook",
            EventKind::NeedsInput { .. } => "needs_input",
            EventKind::IdleTimeout { .. } => "idle_timeout",
            EventKind::Error { .. } => "error",
            EventKind::TurnCompleted { .. } => "turn_completed",
            EventKind::WaitFired { .. } => "wait_fired",
            EventKind::NeedsAttention { .. } => "needs_attention",
            EventKind::ToolUse { .. } => "tool_use",
            EventKind::Subagent { .. } => "subagent",
            EventKind::Note { .. } => "note",
        }
    }
}

/// Why a wait fired.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitOutcome {
    /// The target finished its turn with nothing left queued for it.
    Idle,
    /// The deadline passed first.
    Timeout,
    /// The target ended (killed, crashed, exited).
    Ended,
}

/// An entry of the append-only event log.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Store-assigned id, increasing in append order.
    pub id: EventId,
    /// When it was appended.
    pub at: Timestamp,
    /// The session it is about, if any.
    pub session: Option<SessionId>,
    /// What happened.
    pub kind: EventKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_refuse_what_a_shell_or_terminal_would_misread() {
        for bad in [
            "",
            "a b",
            "a;rm -rf /",
            "$(x)",
            "a/b",
            "../x",
            "-flag",
            ".hidden",
            "tab\tname",
            "esc\u{1b}[2J",
            "ünï",
            &"x".repeat(65),
            "0b6f1d8c-2a4e-4c1e-9a53-4a1f0c7d9e21",
        ] {
            assert!(bad.parse::<SessionName>().is_err(), "{bad:?} was accepted");
        }
        for good in ["worker-1", "em", "a.b_c", "7up", &"x".repeat(64)] {
            assert!(good.parse::<SessionName>().is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn session_ids_are_normalised_uuids() {
        let id: SessionId = "0B6F1D8C-2A4E-4C1E-9A53-4A1F0C7D9E21".parse().unwrap();
        assert_eq!(id.as_str(), "0b6f1d8c-2a4e-4c1e-9a53-4a1f0c7d9e21");
        assert!("worker".parse::<SessionId>().is_err());
    }

    #[test]
    fn event_kinds_serialise_with_their_tag() {
        let kind = EventKind::StatusChanged {
            from: SessionStatus::Working,
            to: SessionStatus::Idle,
        };
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json["type"], kind.tag());
        let back: EventKind = serde_json::from_value(json).unwrap();
        assert_eq!(back, kind);
    }
}
