//! `SM_*` environment variables that override file settings. Each entry carries the code
//! that applies it, so a variable cannot be listed without taking effect.

use std::path::Path;
use std::str::FromStr;

use super::{BackendChoice, ChatId, Config, SandboxChoice, expand_tilde};
use crate::error::{Error, Result};

/// Applies one variable's value to the configuration.
type Apply = fn(&mut Config, &Override, &str) -> Result<()>;

/// One environment variable and the key it overrides.
pub struct Override {
    /// The variable, e.g. `SM_SERVER_PORT`.
    pub var: &'static str,
    /// The key it overrides, e.g. `server.port`.
    pub key: &'static str,
    apply: Apply,
}

impl Override {
    /// `value` parsed as the key's type, or an error naming the variable and the key.
    fn parse<T: FromStr>(&self, value: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        value
            .trim()
            .parse()
            .map_err(|e| self.error(format!("{value:?}: {e}")))
    }

    /// `value` as one of an enum's lowercase names (as the file spells them).
    fn choice<T: serde::de::DeserializeOwned>(&self, value: &str, expected: &str) -> Result<T> {
        serde_yaml_ng::from_value(serde_yaml_ng::Value::String(value.trim().to_string()))
            .map_err(|_| self.error(format!("{:?}: expected {expected}", value.trim())))
    }

    fn error(&self, message: String) -> Error {
        Error::Config {
            path: None,
            location: format!("{} (from ${})", self.key, self.var),
            message,
        }
    }
}

/// The environment variables that override file settings.
pub const ENV_OVERRIDES: &[Override] = &[
    Override {
        var: "SM_STORE_POSTGRES_URL",
        key: "store.postgres_url",
        apply: |c, _, v| {
            c.store.postgres_url = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            Ok(())
        },
    },
    Override {
        var: "SM_NODE_NAME",
        key: "node.name",
        apply: |c, _, v| {
            c.node.name = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            Ok(())
        },
    },
    Override {
        var: "SM_NODE_URL",
        key: "node.url",
        apply: |c, _, v| {
            c.node.url = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            Ok(())
        },
    },
    Override {
        var: "SM_SERVER_HOST",
        key: "server.host",
        apply: |c, _, v| {
            c.server.host = v.to_string();
            Ok(())
        },
    },
    Override {
        var: "SM_SERVER_PORT",
        key: "server.port",
        apply: |c, o, v| {
            c.server.port = o.parse(v)?;
            Ok(())
        },
    },
    Override {
        var: "SM_SERVER_DASHBOARD",
        key: "server.dashboard",
        apply: |c, o, v| {
            c.server.dashboard = o.parse(v)?;
            Ok(())
        },
    },
    Override {
        var: "SM_SERVER_DASHBOARD_REMOTE",
        key: "server.dashboard_remote",
        apply: |c, o, v| {
            c.server.dashboard_remote = o.parse(v)?;
            Ok(())
        },
    },
    Override {
        var: "SM_PATHS_STATE_FILE",
        key: "paths.state_file",
        apply: |c, _, v| {
            c.paths.state_file = expand_tilde(Path::new(v));
            Ok(())
        },
    },
    Override {
        var: "SM_MONITOR_IDLE_TIMEOUT",
        key: "monitor.idle_timeout",
        apply: |c, o, v| {
            c.monitor.idle_timeout = o.parse(v)?;
            Ok(())
        },
    },
    Override {
        var: "SM_MONITOR_POLL_INTERVAL",
        key: "monitor.poll_interval",
        apply: |c, o, v| {
            c.monitor.poll_interval = o.parse(v)?;
            Ok(())
        },
    },
    Override {
        var: "SM_TELEGRAM_TOKEN",
        key: "telegram.token",
        apply: |c, _, v| {
            c.telegram.token = Some(v.to_string()).filter(|t| !t.is_empty());
            Ok(())
        },
    },
    Override {
        var: "SM_TELEGRAM_ALLOWED_CHAT_IDS",
        key: "telegram.allowed_chat_ids",
        apply: |c, o, v| {
            c.telegram.allowed_chat_ids = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| o.parse(s).map(ChatId))
                .collect::<Result<_>>()?;
            Ok(())
        },
    },
    Override {
        var: "SM_TERMINAL_BACKEND",
        key: "terminal.backend",
        apply: |c, o, v| {
            c.terminal.backend = o.choice::<BackendChoice>(v, "auto, tmux or pty")?;
            Ok(())
        },
    },
    Override {
        var: "SM_TERMINAL_TMUX_SOCKET",
        key: "terminal.tmux_socket",
        apply: |c, _, v| {
            c.terminal.tmux_socket = v.to_string();
            Ok(())
        },
    },
    Override {
        var: "SM_TERMINAL_SANDBOX",
        key: "terminal.sandbox",
        apply: |c, o, v| {
            c.terminal.sandbox = o.choice::<SandboxChoice>(v, "auto, bwrap or none")?;
            Ok(())
        },
    },
    Override {
        var: "SM_DELIVERY_MAX_MESSAGE_BYTES",
        key: "delivery.max_message_bytes",
        apply: |c, o, v| {
            c.delivery.max_message_bytes = o.parse(v)?;
            Ok(())
        },
    },
];

impl Config {
    /// Applies `SM_*` overrides (see [`ENV_OVERRIDES`]) read through `env`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        for o in ENV_OVERRIDES {
            if let Some(v) = env(o.var) {
                (o.apply)(self, o, &v)?;
            }
        }
        Ok(())
    }
}
