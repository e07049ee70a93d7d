//! The one error type of sm-lib, shared by every trait so that implementations in other
//! crates report failures in terms the engine and the API understand.

use std::path::PathBuf;

use crate::types::{Lock, MessageId, MessageState, SessionId, SessionName};

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed source error from an implementation (SQLite, tmux, I/O …).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in sm-lib and in implementations of its traits.
///
/// Each variant is a distinct situation a caller may handle differently; the HTTP API maps
/// them to stable error codes (see [`Error::code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No session has this id (or name).
    #[error("no session {0}")]
    SessionNotFound(String),

    /// No message has this id.
    #[error("no message {0}")]
    MessageNotFound(MessageId),

    /// A session with this id is already registered.
    #[error("session {0} already exists")]
    SessionExists(SessionId),

    /// A live session already has this name.
    #[error("the name {name} is taken by live session {holder}")]
    NameTaken {
        /// The name asked for.
        name: SessionName,
        /// The live session that has it.
        holder: SessionId,
    },

    /// A friendly name failed validation.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// What was given.
        name: String,
        /// Why it is refused.
        reason: String,
    },

    /// A message cannot move from its current state to the one asked for.
    #[error("message {message} cannot go from {from} to {to}")]
    InvalidTransition {
        /// Which message.
        message: MessageId,
        /// Its current state.
        from: MessageState,
        /// The state asked for.
        to: MessageState,
    },

    /// Another live session holds the workspace lock.
    #[error("{} is locked by session {} ({})", .0.workspace, .0.holder, .0.reason)]
    LockConflict(Box<Lock>),

    /// The caller may not do this (e.g. kill a session it did not spawn).
    #[error("forbidden: {0}")]
    Forbidden(String),

    /// A working directory does not exist or cannot be used.
    #[error("invalid working directory {}: {reason}", path.display())]
    InvalidWorkingDir {
        /// The directory given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },

    /// The configuration file is wrong; the message names the key (and line when known).
    #[error("{}{}: {message}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default(), location)]
    Config {
        /// The file, when the error comes from one.
        path: Option<PathBuf>,
        /// `key` or `key (line N)`.
        location: String,
        /// What is wrong.
        message: String,
    },

    /// Input that does not make sense (bad enum value, oversized text, …).
    #[error("{0}")]
    InvalidInput(String),

    /// The persistent store failed (I/O, corruption, busy beyond its timeout, …).
    #[error("store error: {message}")]
    Store {
        /// What the store was doing.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The terminal backend failed.
    #[error("terminal backend error: {message}")]
    Backend {
        /// What the backend was doing.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The session has ended (stopped or dead): nothing can be done to it any more.
    #[error("session {name} is {status}: {consequence}")]
    NotLive {
        /// Its name or short id.
        name: String,
        /// Its status.
        status: crate::types::SessionStatus,
        /// What that means for the request (`it cannot receive messages`).
        consequence: String,
    },

    /// The session is live but not in a state to do this now (e.g. clear while it works,
    /// answer when it asks nothing); trying again later may succeed.
    #[error("{0}")]
    Busy(String),

    /// The agent did not respond on screen as it should have within the time allowed (a
    /// command typed did not show, a question did not go away).
    #[error("the agent did not respond: {0}")]
    AgentUnresponsive(String),

    /// The implementation does not support this operation.
    #[error("not supported: {0}")]
    NotSupported(String),

    /// The session runs on another node: only that node can reach its terminal.
    #[error("session {session} runs on node {node}; only that node can reach its terminal")]
    Elsewhere {
        /// Its name or short id.
        session: String,
        /// The node that owns it.
        node: String,
    },

    /// The component was shut down.
    #[error("{0} is shut down")]
    Closed(&'static str),

    /// An I/O error outside any store or backend.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A store error with an underlying cause.
    pub fn store(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Store {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A backend error with an underlying cause.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A backend error with only a message.
    pub fn backend_msg(message: impl Into<String>) -> Self {
        Error::Backend {
            message: message.into(),
            source: None,
        }
    }

    /// A stable machine-readable code for this error, used by the HTTP API and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            Error::SessionNotFound(_) => "session_not_found",
            Error::MessageNotFound(_) => "message_not_found",
            Error::SessionExists(_) => "session_exists",
            Error::NameTaken { .. } => "name_taken",
            Error::InvalidName { .. } => "invalid_name",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::LockConflict(_) => "lock_conflict",
            Error::Forbidden(_) => "forbidden",
            Error::InvalidWorkingDir { .. } => "invalid_working_dir",
            Error::Config { .. } => "config",
            Error::InvalidInput(_) => "invalid_input",
            Error::Store { .. } => "store",
            Error::Backend { .. } => "backend",
            Error::NotLive { .. } => "not_live",
            Error::Busy(_) => "busy",
            Error::AgentUnresponsive(_) => "agent_unresponsive",
            Error::NotSupported(_) => "not_supported",
            Error::Elsewhere { .. } => "on_another_node",
            Error::Closed(_) => "closed",
            Error::Io(_) => "io",
        }
    }
}
