//! Agent profiles: how to start each kind of agent and read its screen. Agent quirks live
//! here, not in the backends or the delivery code.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::screen::{ScreenState, read_screen};
use crate::error::{Error, Result};
use crate::types::{AgentKind, SessionId};

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
        read_screen(rows)
    }

    /// Whether the agent reports turns through Claude Code hooks (Stop, UserPromptSubmit,
    /// …). Without hooks, the screen alone says when a turn ends.
    fn reports_hooks(&self) -> bool {
        true
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

    /// Whether a line of the terminal's history is the echo of a submitted prompt (Claude
    /// Code: `❯ text`; the fake agent: `> text`).
    fn is_prompt_echo(&self, line: &str) -> bool {
        line.starts_with('>') || line.starts_with('❯')
    }

    /// Whether a line shows a collapsed paste instead of its text (`[Pasted text #1 +5
    /// lines]`).
    fn is_paste_placeholder(&self, line: &str) -> bool {
        line.contains("[Pasted text")
    }
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
