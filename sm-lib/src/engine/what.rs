//! `what`: a short summary of what an agent is doing, from its screen, transcript tail and
//! event log. A [`Summariser`] writes it (by default `claude -p` with a small model); when
//! that is unavailable or fails, a heuristic summary says what is known and that it is the
//! fallback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::Session;

/// Everything a summariser gets.
#[derive(Debug, Clone)]
pub struct SummaryInput {
    /// The session.
    pub session: Session,
    /// The end of its terminal.
    pub screen: Vec<String>,
    /// The end of its transcript (user and assistant messages), when known.
    pub transcript: Vec<String>,
    /// Its last assistant message, when known.
    pub last_message: Option<String>,
    /// Its last tool use (`Write /src/lib.rs`), when known.
    pub last_tool: Option<String>,
    /// How long it has been in its current status.
    pub in_state_for: Duration,
    /// More context was asked for.
    pub deep: bool,
}

/// Writes a summary.
#[async_trait]
pub trait Summariser: Send + Sync + 'static {
    /// A name for the answer's `source` (`claude`, …).
    fn name(&self) -> &str;
    /// A few sentences on what the agent is doing. Errors mean "use the fallback".
    async fn summarise(&self, input: &SummaryInput) -> Result<String>;
}

/// A summary and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Summary {
    /// The summary.
    pub summary: String,
    /// `claude` (or another summariser's name), or `fallback`.
    pub source: String,
    /// Why the fallback was used, when it was.
    pub fallback_reason: Option<String>,
}

/// The heuristic summary used when no summariser answers.
pub fn fallback_summary(input: &SummaryInput) -> String {
    let s = &input.session;
    let who = s
        .name
        .as_ref()
        .map(|n| n.to_string())
        .unwrap_or_else(|| s.id.to_string());
    let mut parts = vec![format!(
        "{who} is {} (for {}s)",
        s.status,
        input.in_state_for.as_secs()
    )];
    if let Some(task) = &s.task {
        parts.push(format!("task: {task}"));
    }
    if let Some(tool) = &input.last_tool {
        parts.push(format!("last tool: {tool}"));
    }
    if let Some(m) = &input.last_message {
        let short: String = m.chars().take(200).collect();
        parts.push(format!("last message: {short}"));
    }
    format!("{}.", parts.join("; "))
}

/// Runs `claude -p` (or another command taking the same arguments) with a small model over
/// the screen and transcript tail, with a timeout.
#[derive(Debug, Clone)]
pub struct ClaudeSummariser {
    /// The program (default `claude`).
    pub program: String,
    /// The model (default `haiku`).
    pub model: String,
    /// How long to wait for an answer.
    pub timeout: Duration,
}

impl Default for ClaudeSummariser {
    fn default() -> Self {
        ClaudeSummariser {
            program: "claude".into(),
            model: "haiku".into(),
            timeout: Duration::from_secs(30),
        }
    }
}

#[async_trait]
impl Summariser for ClaudeSummariser {
    fn name(&self) -> &str {
        "claude"
    }

    async fn summarise(&self, input: &SummaryInput) -> Result<String> {
        use tokio::io::AsyncWriteExt;
        let mut context = String::new();
        context.push_str(&format!(
            "Agent: {} — status {} for {}s\n",
            input
                .session
                .name
                .as_ref()
                .map(|n| n.as_str())
                .unwrap_or("(unnamed)"),
            input.session.status,
            input.in_state_for.as_secs()
        ));
        if let Some(t) = &input.session.task {
            context.push_str(&format!("Declared task: {t}\n"));
        }
        if !input.transcript.is_empty() {
            context.push_str("\n--- transcript (most recent last) ---\n");
            context.push_str(&input.transcript.join("\n"));
        }
        context.push_str("\n--- terminal (most recent last) ---\n");
        context.push_str(&input.screen.join("\n"));
        let instruction = if input.deep {
            "Summarise in up to 6 sentences what this coding agent is doing, what it did last, \
             and whether it is stuck or waiting for someone. Plain text."
        } else {
            "In one or two sentences: what is this coding agent doing right now? Plain text."
        };
        let mut child = tokio::process::Command::new(&self.program)
            .args(["-p", "--model", &self.model, instruction])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::NotSupported(format!("cannot run {}: {e}", self.program)))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(context.as_bytes()).await;
        }
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                Error::NotSupported(format!(
                    "{} did not answer within {:?}",
                    self.program, self.timeout
                ))
            })?
            .map_err(Error::Io)?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || text.is_empty() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(Error::NotSupported(format!(
                "{} failed ({}): {}",
                self.program,
                out.status,
                err.lines().last().unwrap_or("no output")
            )));
        }
        Ok(text)
    }
}

/// A short, stable digest of a prompt with its whitespace ignored (FNV-1a, 64 bits): hook
/// events record it so recovery can match a submitted prompt to a message without storing
/// the text twice.
pub fn prompt_digest(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Whether the event log records a prompt submission of `text` at or after `since` (ms).
pub(crate) fn log_has_prompt(events: &[crate::types::Event], text: &str, since: i64) -> bool {
    let wanted = prompt_digest(text);
    events.iter().any(|e| {
        e.at.0 >= since
            && matches!(&e.kind, crate::types::EventKind::Hook { prompt_digest: Some(d), .. } if *d == wanted)
    })
}

/// The agent's transcript file, as the last hook in its event log named it.
pub(crate) fn last_transcript_path(events: &[crate::types::Event]) -> Option<PathBuf> {
    events.iter().rev().find_map(|e| match &e.kind {
        crate::types::EventKind::Hook {
            transcript_path: Some(p),
            ..
        } => Some(PathBuf::from(p)),
        _ => None,
    })
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
fn read_tail(path: &Path, max_bytes: u64) -> Option<String> {
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
