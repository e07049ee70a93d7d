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

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod compat;
mod env;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

use compat::compat_warnings;
pub use env::ENV_OVERRIDES;
pub use sections::*;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    /// Where the HTTP API listens.
    pub server: ServerConfig,
    /// Where state lives.
    pub paths: PathsConfig,
    /// Which store holds messages and sessions: the embedded SQLite file (default) or a
    /// PostgreSQL database shared by several nodes.
    pub store: StoreConfig,
    /// This server as a node of a cluster (with a PostgreSQL store).
    pub node: NodeConfig,
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
    /// How the Codex CLI is started (operator-controlled, like `claude`).
    pub codex: CodexConfig,
    /// More agent kinds, defined without code: by name, how to start each and read its
    /// screen.
    pub agents: std::collections::BTreeMap<String, AgentDefinition>,
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

    /// The model a spawn of `agent` gets when it names none (`claude.default_model`,
    /// `codex.default_model`).
    pub fn default_model(&self, agent: &crate::types::AgentKind) -> Option<&str> {
        match agent {
            crate::types::AgentKind::Claude => self.claude.default_model.as_deref(),
            crate::types::AgentKind::Codex => self.codex.default_model.as_deref(),
            crate::types::AgentKind::Custom(name) => self
                .agents
                .get(name.as_ref())
                .and_then(|a| a.default_model.as_deref()),
            crate::types::AgentKind::Fake | crate::types::AgentKind::Shell => None,
        }
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

pub(super) fn home_dir() -> PathBuf {
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
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
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
