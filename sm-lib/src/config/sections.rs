//! The sections of the configuration file, each with its defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::home_dir;

/// `child_agents.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ChildAgentsConfig {
    /// Which child events are sent to the parent as messages.
    pub notifications: ParentNotifications,
    /// Accepted for compatibility; sm does not end idle children on its own (use `sm wait`
    /// and `sm kill`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_complete: Option<serde_yaml_ng::Value>,
}

/// `child_agents.notifications.*`: each true setting makes sm message a child's parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ParentNotifications {
    /// When the child finishes a turn.
    pub notify_parent_on_complete: bool,
    /// When the child dies or errors.
    pub notify_parent_on_error: bool,
    /// When the child stays idle past `monitor.idle_timeout`.
    pub notify_parent_on_idle: bool,
}

/// `sm_send.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmSendConfig {
    /// The database; overrides `sm.db` in the state dir.
    pub db_path: Option<PathBuf>,
    /// Seconds text someone else left in an agent's input box holds delivery back before it
    /// is cleared (and logged). Default 60.
    pub input_stale_timeout: f64,
    /// Milliseconds to pause after an interrupt settles, before an urgent message is typed.
    pub urgent_delay_ms: u64,
    /// Accepted for compatibility; sm is event-driven and does not poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_poll_interval: Option<f64>,
    /// Accepted for compatibility; sm submits one message per prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u64>,
}

impl Default for SmSendConfig {
    fn default() -> Self {
        SmSendConfig {
            db_path: None,
            input_stale_timeout: 60.0,
            urgent_delay_ms: 0,
            input_poll_interval: None,
            max_batch_size: None,
        }
    }
}

/// `monitor.notify.*`: which events reach notifiers (all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// Errors (an agent died).
    pub errors: bool,
    /// Permission prompts and other questions.
    pub permission_prompts: bool,
    /// Finished turns.
    pub completion: bool,
    /// Idle timeouts.
    pub idle: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            errors: true,
            permission_prompts: true,
            completion: true,
            idle: true,
        }
    }
}

/// `webhook.*`: every notification is POSTed as JSON to each URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// Where to POST. None: no webhook.
    pub urls: Vec<String>,
    /// Seconds per attempt. Default 5.
    pub timeout: f64,
    /// Attempts per URL and notification. Default 3.
    pub attempts: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            urls: Vec::new(),
            timeout: 5.0,
            attempts: 3,
        }
    }
}

/// `locks.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocksConfig {
    /// Seconds a file write waits for another agent's workspace lock before it is refused.
    /// Default 30.
    pub auto_wait: f64,
}

impl Default for LocksConfig {
    fn default() -> Self {
        LocksConfig { auto_wait: 30.0 }
    }
}

/// `claude.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClaudeConfig {
    /// The program. Default `claude`.
    pub command: String,
    /// Arguments placed before sm's own.
    pub args: Vec<String>,
    /// The model when a spawn does not name one.
    pub default_model: Option<String>,
}

impl Default for ClaudeConfig {
    fn default() -> Self {
        ClaudeConfig {
            command: "claude".into(),
            args: Vec::new(),
            default_model: None,
        }
    }
}

/// `codex.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CodexConfig {
    /// The program. Default `codex`.
    pub command: String,
    /// Arguments placed before sm's own (e.g. `["-c", "model_provider=\"mine\""]`).
    pub args: Vec<String>,
    /// The model when a spawn does not name one.
    pub default_model: Option<String>,
}

impl Default for CodexConfig {
    fn default() -> Self {
        CodexConfig {
            command: "codex".into(),
            args: Vec::new(),
            default_model: None,
        }
    }
}

/// `agents.<name>`: an agent kind defined without code — how to start it and how to read
/// its screen. Regexes are Rust `regex` syntax, matched against one screen row each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AgentDefinition {
    /// The program.
    pub command: String,
    /// Its arguments; `{session_id}` stands for the session's id.
    pub args: Vec<String>,
    /// Added when a model is chosen; `{model}` stands for it. Empty: the agent takes none.
    pub model_args: Vec<String>,
    /// Added to resume an earlier conversation; `{resume}` stands for its id. Empty: the
    /// agent cannot resume.
    pub resume_args: Vec<String>,
    /// Added for a spawn without permission prompts.
    pub skip_permissions_args: Vec<String>,
    /// The model when a spawn does not name one.
    pub default_model: Option<String>,
    /// A row that shows the agent waiting for input.
    pub ready: Option<String>,
    /// A row that shows a turn running.
    pub working: Option<String>,
    /// A row that asks a question only a person can answer; the numbered rows under it
    /// (`1. Yes`) are its options.
    pub question: Option<String>,
    /// The input box's row, its first capture group the text in it. With it, typed text
    /// and its submission are checked on screen; without it they are not.
    pub input: Option<String>,
    /// What an empty input box shows in place of text (e.g. `Type your message`): read as
    /// empty.
    pub placeholder: Option<String>,
    /// An answer's row, its first capture group the answer (the last message of a turn no
    /// hook reported).
    pub answer: Option<String>,
    /// Typed to reset the agent's context (e.g. `/clear`).
    pub clear: Option<String>,
    /// The key that interrupts a turn: `escape` (default) or `ctrl-c`.
    pub interrupt: Option<String>,
    /// The agent runs Claude Code-style hooks (`sm hook <event>` with Claude Code's event
    /// names and payloads) — then turns are read from them, the screen is the fallback.
    pub hooks: bool,
    /// Where `sm setup --agent <name>` writes sm's hooks: a settings file in Claude Code's
    /// shape (`{"hooks": {...}}`).
    pub hooks_file: Option<PathBuf>,
    /// How long Enter waits after typed text, in milliseconds.
    pub submit_gap_ms: u64,
}

/// `fake_agent.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FakeAgentConfig {
    /// Path of `sm-fake-agent`. Default: next to the server binary.
    pub program: Option<PathBuf>,
}

/// `store.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// A PostgreSQL URL (`postgres://user:password@host/db`, `sslmode=require` for TLS):
    /// the store is that database, shared with every node pointed at it. Unset (the
    /// default): the embedded SQLite file in the state dir.
    pub postgres_url: Option<String>,
    /// PEM file of the certificate authorities for PostgreSQL's TLS certificate (default:
    /// the system's).
    pub ca_file: Option<PathBuf>,
    /// Most PostgreSQL connections this node keeps. Default 16.
    pub pool_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            postgres_url: None,
            ca_file: None,
            pool_size: 16,
        }
    }
}

/// `node.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    /// This node's name, unique in its cluster and kept across restarts (a restarted node
    /// re-adopts the agents recorded under its name). Default: the host name.
    pub name: Option<String>,
    /// The URL other nodes reach this node's API at (requests that need this node's
    /// terminals are sent there). Default: the address it listens on, which only works
    /// for other nodes when that is not loopback-only (`server.host`).
    pub url: Option<String>,
    /// Seconds a node counts as reachable after its last heartbeat; past it, its sessions
    /// are shown unreachable. Default 15.
    pub lease: f64,
    /// Seconds a node may stay unreachable before its live sessions are declared dead by
    /// another node (waiters woken, senders told what was not delivered). 0: never — they
    /// wait for their node however long it takes. Default 600.
    pub grace: f64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: None,
            url: None,
            lease: 15.0,
            grace: 600.0,
        }
    }
}

impl NodeConfig {
    /// The lease as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.lease)
    }

    /// The grace before an unreachable node's sessions are declared dead (`None`: never).
    pub fn grace(&self) -> Option<Duration> {
        (self.grace > 0.0).then(|| Duration::from_secs_f64(self.grace))
    }
}

/// `server.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address to bind. Default `127.0.0.1` (loopback only).
    pub host: String,
    /// Port to bind. Default 8420.
    pub port: u16,
    /// Connections served at once; more are refused (with a log line) until some close.
    /// Default 512.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (also what an idle kept-alive
    /// connection is given before it is closed). Default 10.
    pub header_timeout: f64,
    /// Serve the web dashboard at `/`. Default true.
    pub dashboard: bool,
    /// Serve the dashboard (and accept its login) from other machines too, not only from
    /// loopback. Default false: with `host: 0.0.0.0` for remote agents, the dashboard still
    /// answers only this machine.
    pub dashboard_remote: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8420,
            max_connections: 512,
            header_timeout: 10.0,
            dashboard: true,
            dashboard_remote: false,
        }
    }
}

/// `paths.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PathsConfig {
    /// The state file of the Python session manager. sm keeps all its state in the
    /// directory that holds this file (the *state dir*): the SQLite database `sm.db` and the
    /// admin token. The file itself is never read or written. Default
    /// `$XDG_STATE_HOME/sm/state.json` (`~/.local/state/sm/state.json`).
    pub state_file: PathBuf,
    /// Where the server also writes its log (`sm-server.log`), besides standard output.
    pub log_dir: Option<PathBuf>,
}

impl Default for PathsConfig {
    fn default() -> Self {
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home_dir().join(".local/state"));
        PathsConfig {
            state_file: base.join("sm/state.json"),
            log_dir: None,
        }
    }
}

/// `monitor.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorConfig {
    /// Seconds an agent may sit idle, with nobody waiting on it, before an idle event is
    /// raised for notifiers. Default 300.
    pub idle_timeout: f64,
    /// Seconds between screen checks in the fallback monitor (used only where a backend
    /// cannot report output events). Default 1.0.
    pub poll_interval: f64,
    /// Which events notify.
    pub notify: NotifyConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            idle_timeout: 300.0,
            poll_interval: 1.0,
            notify: NotifyConfig::default(),
        }
    }
}

impl MonitorConfig {
    /// `idle_timeout` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout)
    }

    /// `poll_interval` as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs_f64(self.poll_interval)
    }
}

/// `telegram.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TelegramConfig {
    /// The bot token from @BotFather. Telegram control is off without it.
    pub token: Option<String>,
    /// The only chats the bot serves. Numbers or numeric strings are accepted.
    pub allowed_chat_ids: Vec<ChatId>,
    /// Where `/new` without a path starts an agent (default: the home directory).
    pub default_dir: Option<PathBuf>,
    /// Which agent `/new` starts: `claude` (default), `fake` or `shell`.
    pub agent: Option<String>,
    /// The Bot API server (default `https://api.telegram.org`); for a local Bot API server.
    pub api_url: Option<String>,
}

/// A Telegram chat id, accepted as a number or a numeric string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ChatIdRepr", into = "i64")]
pub struct ChatId(pub i64);

#[derive(Deserialize)]
#[serde(untagged)]
enum ChatIdRepr {
    Number(i64),
    Text(String),
}

impl TryFrom<ChatIdRepr> for ChatId {
    type Error = String;
    fn try_from(r: ChatIdRepr) -> std::result::Result<Self, String> {
        match r {
            ChatIdRepr::Number(n) => Ok(ChatId(n)),
            ChatIdRepr::Text(s) => s
                .trim()
                .parse()
                .map(ChatId)
                .map_err(|_| format!("{s:?} is not a chat id (expected a number)")),
        }
    }
}

impl From<ChatId> for i64 {
    fn from(c: ChatId) -> i64 {
        c.0
    }
}

/// Which terminal backend runs agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// tmux when it is installed, else the raw PTY backend.
    #[default]
    Auto,
    /// tmux (fails clearly when tmux is missing or too old).
    Tmux,
    /// Raw PTYs owned by the server (no `attach` from other terminals).
    Pty,
}

/// Whether agents run inside a sandbox ([`crate::sandbox`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SandboxChoice {
    /// bubblewrap when it is installed (the server refuses to start when it is installed
    /// but cannot run here); unsandboxed when it is not installed, said loudly at start.
    #[default]
    Auto,
    /// bubblewrap, or the server refuses to start (saying why and how to fix it).
    Bwrap,
    /// No sandbox: agents run as the user, with everything the user can reach.
    None,
}

/// `terminal.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TerminalConfig {
    /// `auto`, `tmux` or `pty`. Default `auto`.
    pub backend: BackendChoice,
    /// The tmux socket name (`tmux -L <name>`) sm keeps its sessions on, apart from the
    /// user's own tmux. Default `sm`.
    pub tmux_socket: String,
    /// `auto`, `bwrap` or `none`. Default `auto`.
    pub sandbox: SandboxChoice,
    /// More paths sandboxed agents must not see (the state dir and tmux socket dir always
    /// are).
    pub sandbox_hide: Vec<PathBuf>,
    /// Paths sandboxed agents may read but not change.
    pub sandbox_read_only: Vec<PathBuf>,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        TerminalConfig {
            backend: BackendChoice::Auto,
            tmux_socket: "sm".into(),
            sandbox: SandboxChoice::Auto,
            sandbox_hide: Vec::new(),
            sandbox_read_only: Vec::new(),
        }
    }
}

/// `delivery.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// The largest message accepted, in bytes of UTF-8 after sanitising. Default 100 000.
    pub max_message_bytes: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_message_bytes: 100_000,
        }
    }
}
