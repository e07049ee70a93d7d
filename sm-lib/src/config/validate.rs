//! Values that parse but make no sense.

use std::path::Path;

use super::Config;
use crate::error::{Error, Result};

impl Config {
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
        if self.store.pool_size == 0 {
            return Err(bad("store.pool_size", "must be at least 1"));
        }
        if let Some(url) = &self.store.postgres_url {
            if url.trim().is_empty() {
                return Err(bad(
                    "store.postgres_url",
                    "must not be empty (leave it out for the embedded SQLite store)",
                ));
            }
        }
        if !(self.node.lease.is_finite() && self.node.lease > 0.0) {
            return Err(bad("node.lease", "must be a positive number of seconds"));
        }
        if !(self.node.grace.is_finite() && self.node.grace >= 0.0) {
            return Err(bad(
                "node.grace",
                "must be a number of seconds (0: never declare them dead)",
            ));
        }
        if let Some(name) = &self.node.name {
            let ok = !name.is_empty()
                && name.len() <= 60
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(bad(
                    "node.name",
                    "use 1 to 60 ASCII letters, digits, '.', '_' or '-'",
                ));
            }
        }
        if let Some(url) = &self.node.url {
            if !url.starts_with("http://") {
                return Err(bad("node.url", "must be an http:// URL"));
            }
        }
        if self.delivery.max_message_bytes == 0 {
            return Err(bad("delivery.max_message_bytes", "must be at least 1"));
        }
        for (name, agent) in &self.agents {
            let key = |field: &str| format!("agents.{name}.{field}");
            crate::types::AgentKind::custom(name)
                .map_err(|e| bad(&format!("agents.{name}"), &e.to_string()))?;
            if agent.command.trim().is_empty() {
                return Err(bad(&key("command"), "must name the program to run"));
            }
            for (field, pattern) in [
                ("ready", &agent.ready),
                ("working", &agent.working),
                ("question", &agent.question),
                ("input", &agent.input),
                ("answer", &agent.answer),
            ] {
                if let Some(pattern) = pattern {
                    let re = regex::Regex::new(pattern)
                        .map_err(|e| bad(&key(field), &format!("not a valid regex: {e}")))?;
                    if matches!(field, "input" | "answer") && re.captures_len() < 2 {
                        return Err(bad(
                            &key(field),
                            "needs a capture group for the text, e.g. '^> (.*)$'",
                        ));
                    }
                }
            }
            if let Some(key_name) = &agent.interrupt {
                if !matches!(key_name.as_str(), "escape" | "ctrl-c") {
                    return Err(bad(&key("interrupt"), "must be escape or ctrl-c"));
                }
            }
        }
        if self.terminal.tmux_socket.is_empty() || self.terminal.tmux_socket.contains(['/', '\0']) {
            return Err(bad(
                "terminal.tmux_socket",
                "must be a non-empty name without '/'",
            ));
        }
        Ok(())
    }
}
