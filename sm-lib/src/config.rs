//! sm's configuration: a YAML file, defaults for everything, and `SM_*` environment
//! overrides.
//!
//! The file accepts the keys users of the earlier Python session manager already have
//! (`server.*`, `paths.state_file`, `monitor.*`, `telegram.*`). Where it lives: the path
//! given explicitly, else `$SM_CONFIG`, else `~/.config/sm/config.yaml` when that exists;
//! with none of those, defaults apply.
//!
//! Errors name the bad key and its line. Unknown keys are not an error — a newer or older
//! config keeps working — but each is reported in [`LoadedConfig::warnings`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    /// Where the HTTP API listens.
    pub server: ServerConfig,
    /// Where state lives.
    pub paths: PathsConfig,
    /// The output monitor.
    pub monitor: MonitorConfig,
    /// Telegram control (enabled when a token is set).
    pub telegram: TelegramConfig,
    /// Which terminal backend runs agents.
    pub terminal: TerminalConfig,
    /// Message delivery limits.
    pub delivery: DeliveryConfig,
    /// How Claude Code is started (operator-controlled: agents cannot change it).
    pub claude: ClaudeConfig,
    /// The fake agent, for demos and tests (`--agent fake`).
    pub fake_agent: FakeAgentConfig,
    /// Workspace locks.
    pub locks: LocksConfig,
    /// Webhook notifications.
    pub webhook: WebhookConfig,
    /// Python session manager: how children report to their parents.
    pub child_agents: ChildAgentsConfig,
    /// Python session manager: message sending (`sm send`) settings.
    pub sm_send: SmSendConfig,
    /// Python session manager: accepted, not used (reported once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<serde_yaml_ng::Value>,
    /// Python session manager: accepted, not used (reported once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<serde_yaml_ng::Value>,
    /// Python session manager: accepted, not used (reported once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<serde_yaml_ng::Value>,
}

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

/// `fake_agent.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FakeAgentConfig {
    /// Path of `sm-fake-agent`. Default: next to the server binary.
    pub program: Option<PathBuf>,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8420,
            max_connections: 512,
            header_timeout: 10.0,
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

/// A configuration together with where it came from and what was odd about it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// The configuration, with environment overrides applied.
    pub config: Config,
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
    /// Keys that were not understood (with their line), and other things worth a warning.
    pub warnings: Vec<String>,
}

/// The environment variables that override file settings, with the key each overrides.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("SM_SERVER_HOST", "server.host"),
    ("SM_SERVER_PORT", "server.port"),
    ("SM_PATHS_STATE_FILE", "paths.state_file"),
    ("SM_MONITOR_IDLE_TIMEOUT", "monitor.idle_timeout"),
    ("SM_MONITOR_POLL_INTERVAL", "monitor.poll_interval"),
    ("SM_TELEGRAM_TOKEN", "telegram.token"),
    ("SM_TELEGRAM_ALLOWED_CHAT_IDS", "telegram.allowed_chat_ids"),
    ("SM_TERMINAL_BACKEND", "terminal.backend"),
    ("SM_TERMINAL_TMUX_SOCKET", "terminal.tmux_socket"),
    ("SM_TERMINAL_SANDBOX", "terminal.sandbox"),
    (
        "SM_DELIVERY_MAX_MESSAGE_BYTES",
        "delivery.max_message_bytes",
    ),
];

impl Config {
    /// Loads the configuration from `explicit`, else `$SM_CONFIG`, else
    /// `~/.config/sm/config.yaml` if it exists, else defaults; then applies `SM_*`
    /// environment overrides.
    ///
    /// Errors: [`Error::Config`] naming the file, key and line; an explicit or `$SM_CONFIG`
    /// path that does not exist is an error (a typo must not silently mean defaults).
    pub fn load(explicit: Option<&Path>) -> Result<LoadedConfig> {
        let env = |k: &str| std::env::var(k).ok();
        let chosen = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => env("SM_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    let default = home_dir().join(".config/sm/config.yaml");
                    default.exists().then_some(default)
                }),
        };
        let mut loaded = match chosen {
            Some(path) => {
                let path = expand_tilde(&path);
                let text = std::fs::read_to_string(&path).map_err(|e| Error::Config {
                    path: Some(path.clone()),
                    location: "file".into(),
                    message: format!("cannot read the configuration file: {e}"),
                })?;
                Self::from_yaml(&text, Some(&path))?
            }
            None => LoadedConfig {
                config: Config::default(),
                source: None,
                warnings: Vec::new(),
            },
        };
        loaded.config.apply_env(env)?;
        loaded.config.validate(loaded.source.as_deref())?;
        Ok(loaded)
    }

    /// Parses YAML text (no environment overrides). `path` is only used in messages.
    pub fn from_yaml(text: &str, path: Option<&Path>) -> Result<LoadedConfig> {
        let config_error = |location: String, message: String| Error::Config {
            path: path.map(Path::to_path_buf),
            location,
            message,
        };
        // An empty file, or one holding only comments, means "all defaults".
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
            config_error(
                e.location()
                    .map(|l| format!("line {}", l.line()))
                    .unwrap_or_else(|| "file".into()),
                format!("not valid YAML: {e}"),
            )
        })?;
        if value.is_null() {
            return Ok(LoadedConfig {
                config: Config::default(),
                source: path.map(Path::to_path_buf),
                warnings: Vec::new(),
            });
        }

        let mut unknown: Vec<String> = Vec::new();
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let mut record_unknown = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
        let ignoring = serde_ignored::Deserializer::new(deserializer, &mut record_unknown);
        let mut config: Config = serde_path_to_error::deserialize(ignoring).map_err(|e| {
            let key = e.path().to_string();
            let line = line_of_key(text, &key);
            let inner = e.into_inner();
            let line = line.or_else(|| inner.location().map(|l| l.line()));
            let location = match line {
                Some(n) => format!("{key} (line {n})"),
                None => key,
            };
            // serde_yaml_ng appends its own position; the location above already says it.
            let message = inner.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            config_error(location, message)
        })?;
        config.paths.state_file = expand_tilde(&config.paths.state_file);
        config.paths.log_dir = config.paths.log_dir.as_deref().map(expand_tilde);
        config.sm_send.db_path = config.sm_send.db_path.as_deref().map(expand_tilde);
        let compat = compat_warnings(&value, text);
        let warnings = unknown
            .into_iter()
            .map(|key| {
                let line = line_of_key(text, &key)
                    .map(|n| format!(" (line {n})"))
                    .unwrap_or_default();
                format!("unknown configuration key {key}{line} is ignored")
            })
            .chain(compat)
            .collect();
        Ok(LoadedConfig {
            config,
            source: path.map(Path::to_path_buf),
            warnings,
        })
    }

    /// Applies `SM_*` overrides (see [`ENV_OVERRIDES`]) read through `env`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        fn parse<T: std::str::FromStr>(var: &str, key: &str, v: &str) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse().map_err(|e| Error::Config {
                path: None,
                location: format!("{key} (from ${var})"),
                message: format!("{v:?}: {e}"),
            })
        }
        for &(var, key) in ENV_OVERRIDES {
            let Some(v) = env(var) else { continue };
            match key {
                "server.host" => self.server.host = v,
                "server.port" => self.server.port = parse(var, key, &v)?,
                "paths.state_file" => self.paths.state_file = expand_tilde(Path::new(&v)),
                "monitor.idle_timeout" => self.monitor.idle_timeout = parse(var, key, &v)?,
                "monitor.poll_interval" => self.monitor.poll_interval = parse(var, key, &v)?,
                "telegram.token" => self.telegram.token = Some(v).filter(|t| !t.is_empty()),
                "telegram.allowed_chat_ids" => {
                    self.telegram.allowed_chat_ids = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| parse(var, key, s).map(ChatId))
                        .collect::<Result<_>>()?;
                }
                "terminal.backend" => {
                    self.terminal.backend = match v.trim() {
                        "auto" => BackendChoice::Auto,
                        "tmux" => BackendChoice::Tmux,
                        "pty" => BackendChoice::Pty,
                        other => {
                            return Err(Error::Config {
                                path: None,
                                location: format!("{key} (from ${var})"),
                                message: format!("{other:?}: expected auto, tmux or pty"),
                            });
                        }
                    }
                }
                "terminal.tmux_socket" => self.terminal.tmux_socket = v,
                "terminal.sandbox" => {
                    self.terminal.sandbox = match v.trim() {
                        "auto" => SandboxChoice::Auto,
                        "bwrap" => SandboxChoice::Bwrap,
                        "none" => SandboxChoice::None,
                        other => {
                            return Err(Error::Config {
                                path: None,
                                location: format!("{key} (from ${var})"),
                                message: format!("{other:?}: expected auto, bwrap or none"),
                            });
                        }
                    }
                }
                "delivery.max_message_bytes" => {
                    self.delivery.max_message_bytes = parse(var, key, &v)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self, path: Option<&Path>) -> Result<()> {
        let bad = |key: &str, message: &str| Error::Config {
            path: path.map(Path::to_path_buf),
            location: key.into(),
            message: message.into(),
        };
        if self.server.host.trim().is_empty() {
            return Err(bad("server.host", "must not be empty"));
        }
        if self.server.max_connections == 0 {
            return Err(bad("server.max_connections", "must be at least 1"));
        }
        if !(self.server.header_timeout.is_finite() && self.server.header_timeout > 0.0) {
            return Err(bad(
                "server.header_timeout",
                "must be a positive number of seconds",
            ));
        }
        if !(self.monitor.idle_timeout.is_finite() && self.monitor.idle_timeout > 0.0) {
            return Err(bad(
                "monitor.idle_timeout",
                "must be a positive number of seconds",
            ));
        }
        if !(self.monitor.poll_interval.is_finite() && self.monitor.poll_interval > 0.0) {
            return Err(bad(
                "monitor.poll_interval",
                "must be a positive number of seconds",
            ));
        }
        if self.paths.state_file.as_os_str().is_empty() {
            return Err(bad("paths.state_file", "must not be empty"));
        }
        if !(self.locks.auto_wait.is_finite() && self.locks.auto_wait >= 0.0) {
            return Err(bad(
                "locks.auto_wait",
                "must be zero or a positive number of seconds",
            ));
        }
        if !(self.webhook.timeout.is_finite() && self.webhook.timeout > 0.0) {
            return Err(bad(
                "webhook.timeout",
                "must be a positive number of seconds",
            ));
        }
        if let Some(url) = self.webhook.urls.iter().find(|u| !u.starts_with("http://")) {
            return Err(bad(
                "webhook.urls",
                &format!(
                    "{url:?}: only http:// URLs are supported (for https, relay through a local http endpoint)"
                ),
            ));
        }
        if !(self.sm_send.input_stale_timeout.is_finite() && self.sm_send.input_stale_timeout > 0.0)
        {
            return Err(bad(
                "sm_send.input_stale_timeout",
                "must be a positive number of seconds",
            ));
        }
        if self.delivery.max_message_bytes == 0 {
            return Err(bad("delivery.max_message_bytes", "must be at least 1"));
        }
        if self.terminal.tmux_socket.is_empty() || self.terminal.tmux_socket.contains(['/', '\0']) {
            return Err(bad(
                "terminal.tmux_socket",
                "must be a non-empty name without '/'",
            ));
        }
        Ok(())
    }

    /// The directory holding all of sm's state: the parent of `paths.state_file`.
    pub fn state_dir(&self) -> PathBuf {
        self.paths
            .state_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The SQLite database: `sm_send.db_path` when set, else `sm.db` in the state dir.
    pub fn database_path(&self) -> PathBuf {
        self.sm_send
            .db_path
            .clone()
            .unwrap_or_else(|| self.state_dir().join("sm.db"))
    }

    /// The server's base URL as clients on this machine reach it.
    pub fn server_url(&self) -> String {
        let host = match self.server.host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" => "::1",
            h => h,
        };
        if host.contains(':') {
            format!("http://[{host}]:{}", self.server.port)
        } else {
            format!("http://{host}:{}", self.server.port)
        }
    }
}

/// Keys of the Python session manager's configuration that sm accepts but does not use,
/// each with the reason, reported once when the file is loaded.
const ACCEPTED_UNUSED: &[(&str, &str)] = &[
    ("timeouts", "sm sets its own time limits"),
    (
        "email",
        "sm has no e-mail notifier; use telegram or a webhook",
    ),
    ("services", "sm does not start other services"),
    (
        "child_agents.auto_complete",
        "sm does not end idle children on its own; use sm wait and sm kill",
    ),
    (
        "sm_send.input_poll_interval",
        "sm is event-driven and does not poll",
    ),
    (
        "sm_send.max_batch_size",
        "sm submits one message per prompt",
    ),
];

fn compat_warnings(value: &serde_yaml_ng::Value, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (key, why) in ACCEPTED_UNUSED {
        let mut node = Some(value);
        for part in key.split('.') {
            node = node.and_then(|n| n.get(part));
        }
        let Some(node) = node else { continue };
        let line = line_of_key(text, key)
            .map(|n| format!(" (line {n})"))
            .unwrap_or_default();
        let keys = match node.as_mapping() {
            Some(m) if !m.is_empty() => {
                let names: Vec<String> = m
                    .keys()
                    .filter_map(|k| k.as_str().map(|k| format!("{key}.{k}")))
                    .collect();
                names.join(", ")
            }
            _ => key.to_string(),
        };
        out.push(format!(
            "configuration key {keys}{line} is accepted for compatibility but not used: {why}"
        ));
    }
    out
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Expands a leading `~` or `~/` to `$HOME`.
pub fn expand_tilde(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home_dir().join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// The 1-based line where the dotted `key` (e.g. `server.port`) is written, found by
/// following the keys' indentation. Sequence indices in the path (`a.0`) end the search at
/// the parent key.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let mut line_no = None;
    let mut min_indent = 0usize;
    let mut start = 0usize;
    let lines: Vec<&str> = text.lines().collect();
    for part in key.split('.') {
        if part.parse::<usize>().is_ok() || part == "?" {
            break;
        }
        let found = lines.iter().enumerate().skip(start).find(|(_, l)| {
            let indent = l.len() - l.trim_start().len();
            let t = l.trim_start();
            indent >= min_indent
                && (t.starts_with(&format!("{part}:"))
                    || t.starts_with(&format!("\"{part}\":"))
                    || t.starts_with(&format!("'{part}':")))
        })?;
        line_no = Some(found.0 + 1);
        min_indent = found.1.len() - found.1.trim_start().len() + 1;
        start = found.0 + 1;
    }
    line_no
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_comment_only_files_mean_defaults() {
        for text in ["", "# nothing here\n", "---\n"] {
            let loaded = Config::from_yaml(text, None).unwrap();
            assert_eq!(loaded.config, Config::default());
            assert!(loaded.warnings.is_empty());
        }
    }

    #[test]
    fn the_keys_users_already_have_are_read() {
        let text = "server:\n  host: 0.0.0.0\n  port: 9000\npaths:\n  state_file: ~/sm-state/sessions.json\nmonitor:\n  idle_timeout: 120\n  poll_interval: 0.5\ntelegram:\n  token: \"123:abc\"\n  allowed_chat_ids: [42, \"-100\"]\n";
        let c = Config::from_yaml(text, None).unwrap().config;
        assert_eq!(c.server.host, "0.0.0.0");
        assert_eq!(c.server.port, 9000);
        assert_eq!(
            c.paths.state_file,
            home_dir().join("sm-state/sessions.json")
        );
        assert_eq!(c.database_path(), home_dir().join("sm-state/sm.db"));
        assert_eq!(c.monitor.idle_timeout(), Duration::from_secs(120));
        assert_eq!(c.monitor.poll_interval(), Duration::from_millis(500));
        assert_eq!(c.telegram.token.as_deref(), Some("123:abc"));
        assert_eq!(c.telegram.allowed_chat_ids, vec![ChatId(42), ChatId(-100)]);
        assert_eq!(c.server_url(), "http://127.0.0.1:9000");
    }

    #[test]
    fn a_bad_value_names_its_key_and_line() {
        let text = "server:\n  host: localhost\n  port: eighty\n";
        let err = Config::from_yaml(text, Some(Path::new("/etc/sm.yaml"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("server.port"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("/etc/sm.yaml"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line_not_dropped_silently() {
        let text = "server:\n  port: 8420\n  colour: blue\nmystery:\n  smtp: x\n";
        let loaded = Config::from_yaml(text, None).unwrap();
        assert_eq!(
            loaded.warnings,
            vec![
                "unknown configuration key server.colour (line 3) is ignored".to_string(),
                "unknown configuration key mystery (line 4) is ignored".to_string(),
            ]
        );
    }

    #[test]
    fn invalid_yaml_is_a_clear_error_with_a_line() {
        let err = Config::from_yaml("server:\n  port: [1,\n", None).unwrap_err();
        assert!(err.to_string().contains("not valid YAML"), "{err}");
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn environment_overrides_win_and_bad_ones_name_the_variable() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "SM_SERVER_PORT" => Some("9999".into()),
            "SM_TELEGRAM_ALLOWED_CHAT_IDS" => Some("1, 2".into()),
            "SM_TERMINAL_BACKEND" => Some("pty".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.server.port, 9999);
        assert_eq!(c.telegram.allowed_chat_ids, vec![ChatId(1), ChatId(2)]);
        assert_eq!(c.terminal.backend, BackendChoice::Pty);

        let err = Config::default()
            .apply_env(|k| (k == "SM_SERVER_PORT").then(|| "nope".into()))
            .unwrap_err();
        assert!(err.to_string().contains("$SM_SERVER_PORT"), "{err}");
    }

    #[test]
    fn a_full_python_session_manager_config_loads_with_mappings_and_warnings() {
        let text = r#"
server:
  host: 127.0.0.1
  port: 8420
paths:
  state_file: /tmp/claude-sessions/sessions.json
  log_dir: ~/sm-logs
monitor:
  idle_timeout: 600
  poll_interval: 2
  notify:
    errors: true
    permission_prompts: true
    completion: false
    idle: false
telegram:
  token: "123:abc"
  allowed_chat_ids: [1]
claude:
  command: /opt/claude/bin/claude
  args: ["--verbose"]
  default_model: sonnet
child_agents:
  notifications:
    notify_parent_on_complete: true
    notify_parent_on_error: true
    notify_parent_on_idle: false
  auto_complete:
    enabled: true
    idle_timeout: 900
sm_send:
  db_path: /tmp/claude-sessions/queue.db
  input_poll_interval: 0.5
  input_stale_timeout: 45
  max_batch_size: 10
  urgent_delay_ms: 250
timeouts:
  spawn: 30
  response: 600
email:
  smtp_host: mail.example.com
  to: me@example.com
services:
  dashboard: true
"#;
        let loaded = Config::from_yaml(text, None).unwrap();
        let c = &loaded.config;
        c.validate(None).unwrap();
        assert_eq!(c.paths.log_dir, Some(home_dir().join("sm-logs")));
        assert!(!c.monitor.notify.completion && c.monitor.notify.errors);
        assert_eq!(c.claude.command, "/opt/claude/bin/claude");
        assert_eq!(c.claude.default_model.as_deref(), Some("sonnet"));
        assert!(c.child_agents.notifications.notify_parent_on_complete);
        assert_eq!(
            c.database_path(),
            PathBuf::from("/tmp/claude-sessions/queue.db")
        );
        assert_eq!(c.sm_send.input_stale_timeout, 45.0);
        assert_eq!(c.sm_send.urgent_delay_ms, 250);
        let w = loaded.warnings.join("\n");
        assert!(!w.contains("unknown"), "every key is known: {w}");
        for key in [
            "timeouts.spawn",
            "email.smtp_host",
            "services.dashboard",
            "child_agents.auto_complete.enabled",
            "sm_send.input_poll_interval",
            "sm_send.max_batch_size",
        ] {
            assert!(w.contains(key), "{key} is reported: {w}");
        }
        assert_eq!(loaded.warnings.len(), 6, "once each: {w}");
    }

    #[test]
    fn nonsense_values_are_refused_by_key() {
        let loaded = Config::from_yaml("monitor:\n  idle_timeout: -5\n", None).unwrap();
        let err = loaded.config.validate(None).unwrap_err();
        assert!(err.to_string().contains("monitor.idle_timeout"), "{err}");
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_not_defaults() {
        let err = Config::load(Some(Path::new("/nonexistent/sm/config.yaml"))).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
