//! Claude Code's protocol, as sm reads it: its command line, its hooks (event names and
//! payload keys), its screen's answer marker and prompt echo, and its transcript (JSON
//! lines). The fake agent (`sm-fake-agent`) speaks the same protocol, so it shares this
//! profile's readers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{AgentProfile, AgentSignal, HookReport, Launch, check_model, check_resume};
use crate::error::Result;
use crate::types::AgentKind;

pub use crate::engine::screen::read_screen;

/// Claude Code's hook event names, as its settings file and `sm hook` spell them.
pub mod hooks {
    /// The session started (or restarted after `/clear`).
    pub const SESSION_START: &str = "SessionStart";
    /// A prompt was submitted.
    pub const USER_PROMPT_SUBMIT: &str = "UserPromptSubmit";
    /// A tool is about to run.
    pub const PRE_TOOL_USE: &str = "PreToolUse";
    /// A tool ran.
    pub const POST_TOOL_USE: &str = "PostToolUse";
    /// A tool failed.
    pub const POST_TOOL_USE_FAILURE: &str = "PostToolUseFailure";
    /// A subagent started.
    pub const SUBAGENT_START: &str = "SubagentStart";
    /// A subagent stopped.
    pub const SUBAGENT_STOP: &str = "SubagentStop";
    /// The agent wants attention (a permission prompt, or idle input).
    pub const NOTIFICATION: &str = "Notification";
    /// The turn ended.
    pub const STOP: &str = "Stop";
    /// The session ended.
    pub const SESSION_END: &str = "SessionEnd";
}

/// Claude Code appends a prompt to its transcript 150–350 ms after submitting it
/// (measured); three seconds leaves room for a loaded machine.
pub const TRANSCRIPT_LAG: Duration = Duration::from_secs(3);

/// Reads one Claude Code hook event.
pub fn read_hook(event: &str, payload: &Value) -> HookReport {
    let field = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_string);
    let signal = match event {
        hooks::SESSION_START => AgentSignal::SessionStarted,
        hooks::USER_PROMPT_SUBMIT => AgentSignal::PromptSubmitted,
        hooks::PRE_TOOL_USE | hooks::POST_TOOL_USE | hooks::POST_TOOL_USE_FAILURE => {
            let input = &payload["tool_input"];
            let target = [
                "file_path",
                "notebook_path",
                "command",
                "path",
                "pattern",
                "url",
            ]
            .iter()
            .find_map(|k| input.get(*k).and_then(Value::as_str))
            .map(|t| t.chars().take(200).collect::<String>());
            AgentSignal::Tool {
                tool: field("tool_name").unwrap_or_else(|| "?".into()),
                phase: if event == hooks::PRE_TOOL_USE {
                    "pre"
                } else {
                    "post"
                },
                target,
            }
        }
        hooks::SUBAGENT_START | hooks::SUBAGENT_STOP => AgentSignal::Subagent {
            agent_id: field("agent_id").unwrap_or_else(|| "?".into()),
            agent_type: field("agent_type"),
            running: event == hooks::SUBAGENT_START,
        },
        hooks::NOTIFICATION => {
            let kind = field("notification_type").unwrap_or_default();
            let message = field("message").unwrap_or_default();
            if kind == "permission_prompt" || message.contains("permission") {
                AgentSignal::PermissionAsked { message }
            } else {
                AgentSignal::Ignored
            }
        }
        hooks::STOP => AgentSignal::TurnEnded {
            last_message: field("last_assistant_message"),
        },
        // `/clear` ends the old conversation and starts a new one in the same session.
        hooks::SESSION_END if field("reason").as_deref() != Some("clear") => {
            AgentSignal::SessionEnded
        }
        _ => AgentSignal::Ignored,
    };
    HookReport {
        event: event.to_string(),
        transcript_path: field("transcript_path"),
        prompt: (event == hooks::USER_PROMPT_SUBMIT)
            .then(|| field("prompt"))
            .flatten(),
        agent_session: field("session_id"),
        signal,
    }
}

/// The last answer on screen: Claude Code marks answers with `●`, the fake agent with `⏺`.
pub fn last_answer(rows: &[String]) -> Option<String> {
    rows.iter().rev().find_map(|r| {
        r.strip_prefix("⏺ ")
            .or_else(|| r.strip_prefix("● "))
            .map(str::to_string)
    })
}

/// The echo of a submitted prompt in the terminal's history (Claude Code: `❯ text`; the
/// fake agent: `> text`).
pub fn is_prompt_echo(line: &str) -> bool {
    line.starts_with('>') || line.starts_with('❯')
}

/// A collapsed paste shown instead of its text (`[Pasted text #1 +5 lines]`).
pub fn is_paste_placeholder(line: &str) -> bool {
    line.contains("[Pasted text")
}

/// Claude Code's arguments for a launch (the fake agent takes the same).
fn claude_args(launch: &Launch<'_>) -> Result<Vec<String>> {
    let mut args = Vec::new();
    match launch.resume {
        Some(resume) => {
            check_resume(resume)?;
            args.push("--resume".into());
            args.push(resume.to_string());
        }
        None => {
            args.push("--session-id".into());
            args.push(launch.id.to_string());
        }
    }
    if let Some(model) = launch.model {
        check_model(model)?;
        args.push("--model".into());
        args.push(model.to_string());
    }
    if launch.skip_permissions {
        args.push("--dangerously-skip-permissions".into());
    }
    Ok(args)
}

/// Claude Code (`claude`).
#[derive(Debug, Clone)]
pub struct ClaudeProfile {
    /// The program to run (default `claude`). Set by the operator's configuration only.
    pub program: String,
    /// Arguments placed before sm's own (e.g. `--verbose`).
    pub extra_args: Vec<String>,
}

impl Default for ClaudeProfile {
    fn default() -> Self {
        ClaudeProfile {
            program: "claude".into(),
            extra_args: Vec::new(),
        }
    }
}

impl AgentProfile for ClaudeProfile {
    fn kind(&self) -> AgentKind {
        AgentKind::Claude
    }

    fn command(
        &self,
        launch: &Launch<'_>,
    ) -> Result<(String, Vec<String>, BTreeMap<String, String>)> {
        let mut args = self.extra_args.clone();
        args.extend(claude_args(launch)?);
        Ok((self.program.clone(), args, BTreeMap::new()))
    }
}

/// The fake agent (`sm-fake-agent`), which takes Claude Code's arguments.
#[derive(Debug, Clone)]
pub struct FakeProfile {
    /// Path of the `sm-fake-agent` binary.
    pub program: PathBuf,
    /// Extra environment (e.g. `SM_FAKE_AGENT_LOG`).
    pub env: BTreeMap<String, String>,
}

impl AgentProfile for FakeProfile {
    fn kind(&self) -> AgentKind {
        AgentKind::Fake
    }

    fn command(
        &self,
        launch: &Launch<'_>,
    ) -> Result<(String, Vec<String>, BTreeMap<String, String>)> {
        Ok((
            self.program.to_string_lossy().into_owned(),
            claude_args(launch)?,
            self.env.clone(),
        ))
    }
}

/// The last `max` user/assistant text lines of a Claude Code transcript (JSON lines).
pub fn transcript_tail(path: &Path, max: usize) -> Vec<String> {
    // Only the end matters; transcripts can be large.
    let Some(text) = read_tail(path, 256 * 1024) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let role = v["message"]["role"]
            .as_str()
            .or(v["type"].as_str())
            .unwrap_or("");
        let Some(body) = message_text(&v, " ") else {
            continue;
        };
        if !body.trim().is_empty() && (role == "user" || role == "assistant") {
            lines.push(format!(
                "{role}: {}",
                body.chars().take(500).collect::<String>()
            ));
        }
    }
    let skip = lines.len().saturating_sub(max);
    lines.drain(..skip);
    lines
}

/// The last `max_bytes` of a file as text (lossy), or `None` when it cannot be read.
pub(super) fn read_tail(path: &Path, max_bytes: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))
        .ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The text of a transcript entry's message: a string, or its text parts joined by `sep`.
fn message_text(entry: &serde_json::Value, sep: &str) -> Option<String> {
    match &entry["message"]["content"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| i["text"].as_str())
                .collect::<Vec<_>>()
                .join(sep),
        ),
        _ => None,
    }
}

/// Whether a Claude Code transcript (JSON lines) records `text` as a user prompt submitted
/// at or after `since` (ms since the epoch). `None` when the transcript cannot be read or
/// its entries carry no timestamps, so the caller must decide another way.
///
/// Whitespace is ignored in the comparison: the prompt went through a terminal.
pub fn transcript_has_prompt(path: &Path, text: &str, since: i64) -> Option<bool> {
    // Recent prompts are at the end; a message can be up to a megabyte.
    let transcript = read_tail(path, 4 * 1024 * 1024)?;
    let wanted: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut dated = false;
    for line in transcript.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["type"] != "user" {
            continue;
        }
        let Some(at) = v["timestamp"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        else {
            continue;
        };
        dated = true;
        let at_ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        if at_ms < since {
            continue;
        }
        let Some(body) = message_text(&v, "") else {
            continue;
        };
        let got: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        if got == wanted {
            return Some(true);
        }
    }
    dated.then_some(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(at: &str, content: &str) -> String {
        serde_json::json!({
            "type": "user",
            "timestamp": at,
            "message": { "role": "user", "content": content },
        })
        .to_string()
    }

    #[test]
    fn restart_recovery_duplicated_a_message_with_tabs_because_the_screen_shows_spaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let since = humantime::parse_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        std::fs::write(
            &path,
            [
                entry("2026-01-01T09:59:00.000Z", "continue"),
                entry("2026-01-01T10:00:01.250Z", "tabs\tinside\ttext"),
            ]
            .join("\n"),
        )
        .unwrap();
        assert_eq!(
            transcript_has_prompt(&path, "tabs inside  text", since),
            Some(true)
        );
        // The same text before the claim does not count: an earlier "continue" must not make
        // a new "continue" look delivered.
        assert_eq!(transcript_has_prompt(&path, "continue", since), Some(false));
        // No transcript, or one without timestamps: unknown.
        assert_eq!(
            transcript_has_prompt(&dir.path().join("none"), "x", since),
            None
        );
        std::fs::write(&path, r#"{"type":"user","message":{"content":"x"}}"#).unwrap();
        assert_eq!(transcript_has_prompt(&path, "x", since), None);
    }
}
