//! `what`: a short summary of what an agent is doing, from its screen, transcript tail and
//! event log. A [`Summariser`] writes it (by default `claude -p` with a small model); when
//! that is unavailable or fails, a heuristic summary says what is known and that it is the
//! fallback.

use std::path::PathBuf;
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
