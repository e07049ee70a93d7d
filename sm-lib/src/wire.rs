//! The wire protocol between sm's clients and its server, written once: the HTTP API's
//! request and response bodies, its error body, the environment variables an agent gets
//! and the files a server leaves in its state dir. The server parses these types, the CLI
//! and other clients build them, so the two cannot drift apart.
//!
//! Compatibility: request bodies ignore fields they do not know, so a newer client works
//! against an older server (the fields it adds are simply not acted on), and new optional
//! fields keep older clients working. Responses only ever gain fields.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::types::{Event, Session, SessionId, WaitOutcome};

/// `GET /sessions/{id}/subagents`: one of an agent's own subagents.
pub use crate::engine::Subagent;
/// `GET /sessions/{id}/what`: the summary and where it came from.
pub use crate::engine::what::Summary;

/// The largest request body a server accepts; a larger one is refused with 413.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The environment variables sm sets in each agent's terminal.
pub mod env {
    /// The session the agent runs in.
    pub const SESSION_ID: &str = "SM_SESSION_ID";
    /// The server's URL.
    pub const SERVER_URL: &str = "SM_SERVER_URL";
    /// The agent's own API token (acts as that session only).
    pub const TOKEN: &str = "SM_TOKEN";
    /// The Python session manager's name for [`SESSION_ID`], set too for its users.
    pub const LEGACY_SESSION_ID: &str = "CLAUDE_SESSION_MANAGER_ID";
    /// The Python session manager's name for [`SERVER_URL`].
    pub const LEGACY_SERVER_URL: &str = "SM_API_URL";
}

/// The files a server keeps in its state dir that clients read.
pub mod files {
    /// The URL the running server listens on (a port chosen at start is found here).
    pub const SERVER_URL: &str = "server.url";
    /// The admin token (0600).
    pub const ADMIN_TOKEN: &str = "token";
}

/// `POST /sessions`: start an agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpawnBody {
    /// Its first message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Its friendly name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Where it works (default: the calling agent's own directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub working_dir: Option<PathBuf>,
    /// Which agent (`claude`, `fake`, `shell`; default `claude`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Also wait this long for its first turn (the caller is woken by a message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<u64>,
    /// Start without permission prompts (only a caller that has them off may ask).
    #[serde(default)]
    pub skip_permissions: bool,
    /// Resume this earlier conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// Chosen by the caller (e.g. a UUID): repeating a spawn with the same key returns the
    /// session the first request created instead of starting a second agent. `sm spawn`
    /// uses it to retry safely through a server restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The node it runs on, in a cluster (default: the node that takes the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `POST /sessions/{id}/input`: send a message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InputBody {
    /// The message.
    pub text: String,
    /// `sequential` (default), `important` or `urgent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Chosen by the sender (e.g. a UUID): repeating a send with the same key returns the
    /// message already queued instead of a second one. `sm send` uses it to retry safely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `POST /sessions/{id}/watch`: wait for a session's turn to end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchBody {
    /// Give up after this many seconds (1 to 604800).
    pub timeout_secs: u64,
    /// Hold the request until the wait fires and answer what happened, instead of
    /// answering at once and waking the caller with a message (`sm wait` outside a session).
    #[serde(default)]
    pub block: bool,
}

/// `POST /sessions/{id}/answer`: pick an option of the question on screen.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnswerBody {
    /// The option's number as shown on screen (1 = the first).
    pub option: usize,
}

/// `POST /sessions/{id}/name`: rename (no name: remove it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NameBody {
    /// The new name.
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /sessions/{id}/task`: set what the session works on (no task: clear it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskBody {
    /// The task.
    #[serde(default)]
    pub task: Option<String>,
}

/// `POST /locks`: take the caller's workspace lock.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockBody {
    /// Why (shown to whoever finds it locked).
    pub reason: String,
}

/// `POST /locks/auto`: the PreToolUse hook's lock for a file about to be written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoLockBody {
    /// The file.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub file_path: PathBuf,
}

/// What `POST /sessions/{id}/watch` answers: at once, that the caller is woken later; with
/// `block`, what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum WatchAnswer {
    /// The wait ended (`block: true`).
    Ended {
        /// Whom it waited for.
        target: SessionId,
        /// Why it ended: `idle` (a turn is done), `timeout` or `ended`.
        outcome: WaitOutcome,
        /// The target's last message, when known.
        last_message: Option<String>,
        /// The last message of each turn finished while it waited, oldest first.
        #[serde(default)]
        turns: Vec<String>,
    },
    /// The wait is registered; a message wakes the caller.
    Watching {
        /// Whom it waits for.
        watching: SessionId,
        /// For how long at most.
        timeout_secs: u64,
    },
}

/// What `POST /sessions/{id}/clear` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cleared {
    /// The session whose context was reset.
    pub cleared: SessionId,
}

/// What `POST /sessions/{id}/answer` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Answered {
    /// The session that was asked.
    pub session: SessionId,
    /// The label of the option chosen.
    pub answered: String,
}

/// What `GET /sessions/{id}/output` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Output {
    /// The session.
    pub session: SessionId,
    /// The last lines of its terminal.
    pub lines: Vec<String>,
    /// Its latest tool-use events, oldest first.
    #[serde(default)]
    pub recent_tools: Vec<Event>,
}

/// A session as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    /// The session.
    #[serde(flatten)]
    pub session: Session,
    /// The argv that attaches a human to its terminal, when the backend allows.
    #[serde(default)]
    pub attach: Option<Vec<String>>,
    /// How many messages wait for it (queued, or being typed).
    #[serde(default)]
    pub queued: usize,
    /// Its node (in a cluster) has not renewed its lease: the session cannot be reached
    /// now; its queue is kept and delivered when the node is back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreachable: bool,
}

/// Who the caller of `GET /me` (and `GET /status`) is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Me {
    /// An agent: its own session.
    Session(Box<SessionView>),
    /// A person or program with the admin token: `{"admin": true}`.
    Admin {
        /// Always true.
        admin: bool,
    },
}

impl Me {
    /// The caller's session, unless it is the admin.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Me::Session(view) => Some(&view.session),
            Me::Admin { .. } => None,
        }
    }
}

/// `GET /status`: the caller, every session and every lock, in one answer (what `sm status`
/// shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// Who is asking.
    pub me: Me,
    /// Every session, as `GET /sessions` lists them.
    pub sessions: Vec<SessionView>,
    /// Every workspace lock, as `GET /locks` lists them.
    pub locks: Vec<crate::types::Lock>,
    /// The node that answered (in a cluster, or the host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// In a cluster: every node, with whether its lease holds (`GET /nodes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<crate::cluster::NodeInfo>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// The body for an error with this `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// A stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable (e.g. `session_not_found`, `lock_conflict`, `busy`); see
    /// [`crate::Error::code`].
    pub code: String,
    /// For humans.
    pub message: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_clients_extra_fields_are_ignored() {
        let body: InputBody =
            serde_json::from_str(r#"{"text":"hi","mode":"urgent","priority_hint":3}"#).unwrap();
        assert_eq!(body.text, "hi");
        assert_eq!(body.mode.as_deref(), Some("urgent"));
        let spawn: SpawnBody =
            serde_json::from_str(r#"{"agent":"fake","sandbox_profile":"strict"}"#).unwrap();
        assert_eq!(spawn.agent.as_deref(), Some("fake"));
    }

    #[test]
    fn a_spawn_body_leaves_out_what_it_does_not_set() {
        let body = SpawnBody {
            agent: Some("fake".into()),
            ..SpawnBody::default()
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({ "agent": "fake", "skip_permissions": false })
        );
    }
}
