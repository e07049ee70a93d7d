//! Agent profiles: how to start each kind of agent, read its screen and understand its
//! hooks and transcript. Everything particular to one agent CLI lives here (Claude Code's
//! in [`claude`]); the engine sees only [`AgentSignal`]s, [`ScreenState`]s and the answers
//! of the [`AgentProfile`] methods, so adding an agent kind is writing one profile
//! (Codex's is [`codex`]).

pub mod claude;
pub mod codex;
pub mod configured;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::screen::ScreenState;
use crate::backend::Key;
use crate::error::{Error, Result};
use crate::types::{AgentKind, SessionId};

pub use claude::{ClaudeProfile, FakeProfile};
pub use codex::CodexProfile;
pub use configured::ConfiguredProfile;

/// What an agent reported through one of its hooks, in sm's words: the input of the turn
/// logic. A profile turns its agent's own hook events into these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSignal {
    /// The agent's session started (it may not take keys yet).
    SessionStarted,
    /// A prompt was submitted: a turn runs.
    PromptSubmitted,
    /// A tool is about to run (`pre`) or ran (`post`).
    Tool {
        /// The tool, e.g. `Write` or `Bash`.
        tool: String,
        /// `pre` or `post`.
        phase: &'static str,
        /// What it acts on (a file path or a command), shortened.
        target: Option<String>,
    },
    /// One of the agent's own subagents started or stopped.
    Subagent {
        /// Its id.
        agent_id: String,
        /// Its type.
        agent_type: Option<String>,
        /// True at start.
        running: bool,
    },
    /// The agent asks for permission; `message` is what it said.
    PermissionAsked {
        /// The agent's words.
        message: String,
    },
    /// The turn ended, with its final answer when the agent gave it.
    TurnEnded {
        /// The last assistant message.
        last_message: Option<String>,
    },
    /// The running turn was interrupted; it ends without [`AgentSignal::TurnEnded`]. The
    /// screen confirms it (sm's own urgent interrupt is followed by the message's turn).
    TurnInterrupted,
    /// The agent's session ended for good (a context reset is not an end).
    SessionEnded,
    /// Nothing sm acts on.
    Ignored,
}

/// One hook event, read by a profile: the signal plus what the event log keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    /// The hook's own event name, as logged.
    pub event: String,
    /// The agent's transcript file, when the hook named it.
    pub transcript_path: Option<String>,
    /// The submitted prompt, for a prompt submission (its digest is logged, so restart
    /// recovery can tell that a message reached the agent).
    pub prompt: Option<String>,
    /// The agent's own id for its conversation, when the hook gave it (what it resumes).
    pub agent_session: Option<String>,
    /// What it means.
    pub signal: AgentSignal,
}

/// What a profile needs to build an agent's command line.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The session id, which the agent should report in its hooks.
    pub id: &'a SessionId,
    /// The model, if chosen.
    pub model: Option<&'a str>,
    /// Start without permission prompts.
    pub skip_permissions: bool,
    /// Resume this earlier agent conversation instead of starting a new one.
    pub resume: Option<&'a str>,
}

/// How to run and read one kind of agent.
pub trait AgentProfile: Send + Sync + 'static {
    /// The kind this profile is for.
    fn kind(&self) -> AgentKind;

    /// Program and arguments (an argv, never a shell line) and extra environment.
    fn command(
        &self,
        launch: &Launch<'_>,
    ) -> Result<(String, Vec<String>, BTreeMap<String, String>)>;

    /// What the screen shows.
    fn read_screen(&self, rows: &[String]) -> ScreenState {
        claude::read_screen(rows)
    }

    /// The last answer the agent printed on `rows`, for a turn that ended without a hook
    /// saying so.
    fn last_answer(&self, rows: &[String]) -> Option<String> {
        claude::last_answer(rows)
    }

    /// Whether the agent reports turns through hooks. Without hooks, the screen alone says
    /// when a turn ends.
    fn reports_hooks(&self) -> bool {
        true
    }

    /// Reads one hook event the agent reported (`sm hook <event>` posts them).
    fn read_hook(&self, event: &str, payload: &serde_json::Value) -> HookReport {
        claude::read_hook(event, payload)
    }

    /// Whether the agent's transcript at `path` records `text` as a prompt submitted at or
    /// after `since` (ms since the epoch); `None` when it cannot tell.
    fn transcript_has_prompt(&self, path: &Path, text: &str, since: i64) -> Option<bool> {
        claude::transcript_has_prompt(path, text, since)
    }

    /// The last `max` user and assistant lines of the agent's transcript.
    fn transcript_tail(&self, path: &Path, max: usize) -> Vec<String> {
        claude::transcript_tail(path, max)
    }

    /// How long after submitting a prompt the agent may still be writing it to its
    /// transcript: restart recovery reads no entry as "not submitted" only after this.
    fn transcript_lag(&self) -> Duration {
        claude::TRANSCRIPT_LAG
    }

    /// How long Enter waits after typed text, for agents that take an Enter arriving
    /// right after text as part of it (a newline) rather than as a submit.
    fn submit_gap(&self) -> Duration {
        Duration::ZERO
    }

    /// The key that interrupts a running turn.
    fn interrupt_key(&self) -> Key {
        Key::Escape
    }

    /// Whether the screen shows the input box, so typed text and submission can be
    /// verified. A plain shell cannot be verified this way.
    fn verifiable(&self) -> bool {
        true
    }

    /// The command typed to reset the agent's context, if it has one.
    fn clear_command(&self) -> Option<&str> {
        Some("/clear")
    }

    /// Whether a line of the terminal's history is the echo of a submitted prompt.
    fn is_prompt_echo(&self, line: &str) -> bool {
        claude::is_prompt_echo(line)
    }

    /// Whether a line shows a collapsed paste instead of its text.
    fn is_paste_placeholder(&self, line: &str) -> bool {
        claude::is_paste_placeholder(line)
    }
}

/// The files a before-tool hook's payload says the tool will write: Claude Code's
/// `tool_input.file_path` (or `notebook_path`, `path`), or the files of Codex's
/// `apply_patch`. Relative paths are joined to the payload's `cwd`.
pub fn files_written(payload: &serde_json::Value) -> Vec<std::path::PathBuf> {
    let input = &payload["tool_input"];
    let named: Vec<String> = if payload["tool_name"] == "apply_patch" {
        codex::patch_files(input["command"].as_str().unwrap_or(""))
    } else {
        ["file_path", "notebook_path", "path"]
            .iter()
            .find_map(|k| input[*k].as_str())
            .map(|f| vec![f.to_string()])
            .unwrap_or_default()
    };
    let cwd = payload["cwd"].as_str().map(Path::new);
    named
        .into_iter()
        .map(|f| match cwd {
            Some(cwd) if Path::new(&f).is_relative() => cwd.join(f),
            _ => std::path::PathBuf::from(f),
        })
        .collect()
}

/// Checks a model name: a short name (`opus`, `sonnet`, `haiku`) or a full model id.
pub fn check_model(model: &str) -> Result<()> {
    let ok = !model.is_empty()
        && model.len() <= 100
        && !model.starts_with('-')
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid model {model:?}: use opus, sonnet, haiku or a full model name"
        )))
    }
}

/// Checks a conversation id to resume: a session id or name shape (letters, digits, `-`,
/// `_`, `.`), never something an argv parser would take for an option.
pub fn check_resume(resume: &str) -> Result<()> {
    let ok = !resume.is_empty()
        && resume.len() <= 128
        && resume.starts_with(|c: char| c.is_ascii_alphanumeric())
        && resume
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid resume {resume:?}: give the id of the conversation to resume"
        )))
    }
}

/// Any program, treated as a plain terminal program: ready at once, text typed and
/// submitted with Enter without on-screen verification, no hooks, no clear.
#[derive(Debug, Clone)]
pub struct ShellProfile {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Default for ShellProfile {
    fn default() -> Self {
        ShellProfile {
            program: std::env::var("SHELL").unwrap_or_else(|_| "sh".into()),
            args: Vec::new(),
        }
    }
}

impl AgentProfile for ShellProfile {
    fn kind(&self) -> AgentKind {
        AgentKind::Shell
    }

    fn command(
        &self,
        _launch: &Launch<'_>,
    ) -> Result<(String, Vec<String>, BTreeMap<String, String>)> {
        Ok((self.program.clone(), self.args.clone(), BTreeMap::new()))
    }

    fn read_screen(&self, _rows: &[String]) -> ScreenState {
        ScreenState::Ready {
            input: String::new(),
        }
    }

    fn reports_hooks(&self) -> bool {
        false
    }

    fn verifiable(&self) -> bool {
        false
    }

    fn clear_command(&self) -> Option<&str> {
        None
    }
}
