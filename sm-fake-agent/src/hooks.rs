//! Agent hooks as the fake agent runs them: read at start-up from Claude Code's settings
//! (or Codex's `hooks.json`), matched by event (and tool name for tool events),
//! run with `sh -c` with the JSON payload on stdin, and judged by exit code (2 blocks).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// One configured hook command.
#[derive(Debug, Clone)]
struct HookCommand {
    event: String,
    matcher: String,
    command: String,
    timeout: Duration,
}

/// What running the hooks for one event produced.
#[derive(Debug, Default)]
pub struct HookOutcome {
    /// A hook exited with 2: the action is blocked; its stderr says why.
    pub blocked: Option<String>,
    /// Other failures, shown but not blocking.
    pub errors: Vec<String>,
}

/// All hooks from the settings files.
#[derive(Debug, Default)]
pub struct Hooks {
    commands: Vec<HookCommand>,
    /// Problems reading settings, shown once on screen.
    pub warnings: Vec<String>,
}

impl Hooks {
    /// Reads the settings files in order (missing ones are skipped): Claude Code's user and
    /// project `.claude/settings.json`, or Codex's `$CODEX_HOME/hooks.json` (same shape).
    pub fn load(files: &[PathBuf]) -> Hooks {
        let mut hooks = Hooks::default();
        for file in files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => hooks.add_from(&v),
                Err(e) => hooks
                    .warnings
                    .push(format!("invalid settings {}: {e}", file.display())),
            }
        }
        hooks
    }

    fn add_from(&mut self, settings: &Value) {
        let Some(events) = settings.get("hooks").and_then(Value::as_object) else {
            return;
        };
        for (event, groups) in events {
            for group in groups.as_array().into_iter().flatten() {
                let matcher = group
                    .get("matcher")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                for hook in group
                    .get("hooks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(command) = hook.get("command").and_then(Value::as_str) else {
                        continue;
                    };
                    let timeout = hook.get("timeout").and_then(Value::as_u64).unwrap_or(60);
                    self.commands.push(HookCommand {
                        event: event.clone(),
                        matcher: matcher.clone(),
                        command: command.to_string(),
                        timeout: Duration::from_secs(timeout),
                    });
                }
            }
        }
    }

    /// Runs every hook for `event` (whose matcher accepts `tool`, for tool events) with
    /// `payload` on stdin, one after another.
    pub fn run(&self, event: &str, tool: Option<&str>, payload: &Value, cwd: &Path) -> HookOutcome {
        let mut outcome = HookOutcome::default();
        let body = payload.to_string();
        for hook in self
            .commands
            .iter()
            .filter(|h| h.event == event && matches(&h.matcher, tool))
        {
            match run_one(hook, &body, cwd) {
                Ok((2, stderr)) => {
                    outcome.blocked = Some(stderr.trim().to_string());
                    break;
                }
                Ok((0, _)) => {}
                Ok((code, stderr)) => outcome.errors.push(format!(
                    "{event} hook failed (exit {code}): {}",
                    stderr.trim()
                )),
                Err(e) => outcome.errors.push(format!("{event} hook failed: {e}")),
            }
        }
        outcome
    }
}

/// Claude Code matchers: empty or `*` match everything; otherwise a `|`-separated list of
/// tool names.
fn matches(matcher: &str, tool: Option<&str>) -> bool {
    if matcher.is_empty() || matcher == "*" {
        return true;
    }
    match tool {
        Some(tool) => matcher.split('|').any(|m| m.trim() == tool),
        None => true,
    }
}

fn run_one(hook: &HookCommand, body: &str, cwd: &Path) -> std::io::Result<(i32, String)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&hook.command)
        .current_dir(cwd)
        .env("CLAUDE_PROJECT_DIR", cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let body = body.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its input must not fail the write loudly.
            let _ = stdin.write_all(body.as_bytes());
        }
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(hook.timeout) {
        Ok(out) => {
            let out = out?;
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            Ok((out.status.code().unwrap_or(1), stderr))
        }
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            Ok((1, format!("timed out after {:?}", hook.timeout)))
        }
    }
}
