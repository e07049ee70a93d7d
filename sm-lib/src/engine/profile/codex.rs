//! OpenAI Codex CLI's protocol, as sm reads it: its command line, its hooks (Claude-like
//! names in `$CODEX_HOME/hooks.json`, with `Interrupt` and `PermissionRequest` of its own),
//! its screen (the `›` composer above a footer, `Working (… esc to interrupt)`, `Worked
//! for …`, approval questions), and its rollout transcript (JSON lines of Responses API
//! items).
//!
//! Codex runs embedded (`--no-daemon`, and `--dangerously-bypass-hook-trust`, which also
//! forces embedded mode): one process per agent, so its tools and hooks see the agent's own
//! environment — its `SM_*` identity — and a turn dies with its terminal. A shared
//! background server would run every agent's hooks with the first agent's environment.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{AgentProfile, AgentSignal, HookReport, Launch, check_model, check_resume};
use crate::engine::screen::ScreenState;
use crate::error::Result;
use crate::types::AgentKind;

/// Codex's hook event names, as its `hooks.json` and `sm hook` spell them.
pub mod hooks {
    /// The thread started (fired when its first prompt is submitted, not at launch).
    pub const SESSION_START: &str = "SessionStart";
    /// A prompt was submitted.
    pub const USER_PROMPT_SUBMIT: &str = "UserPromptSubmit";
    /// A tool is about to run (`Bash` for commands, `apply_patch` for file edits).
    pub const PRE_TOOL_USE: &str = "PreToolUse";
    /// A tool ran.
    pub const POST_TOOL_USE: &str = "PostToolUse";
    /// An approval question is on screen.
    pub const PERMISSION_REQUEST: &str = "PermissionRequest";
    /// The turn ended (not fired for an interrupted turn).
    pub const STOP: &str = "Stop";
    /// The turn was interrupted (Escape, or Esc at an approval question).
    pub const INTERRUPT: &str = "Interrupt";
    /// A subagent started.
    pub const SUBAGENT_START: &str = "SubagentStart";
    /// A subagent stopped.
    pub const SUBAGENT_STOP: &str = "SubagentStop";
    /// The thread ended (late, and not when its terminal exits).
    pub const SESSION_END: &str = "SessionEnd";
}

/// The composer's placeholder when it is empty.
const PLACEHOLDER: &str = "Ask Codex to do anything";
/// The prompt glyph of the composer and of submitted prompts in the history (U+203A).
const PROMPT: char = '›';
const WORKING_MARKER: &str = "esc to interrupt";

/// Text and Enter in one burst make Enter a newline: Codex suppresses submission for
/// 120 ms after a burst of input. Enter waits this long after the text.
pub const SUBMIT_GAP: Duration = Duration::from_millis(150);

/// Codex writes a prompt to its rollout file as the turn starts; three seconds leaves room
/// for a loaded machine.
pub const TRANSCRIPT_LAG: Duration = Duration::from_secs(3);

/// The files an `apply_patch` input adds, updates, deletes or moves to, as written in it.
pub fn patch_files(patch: &str) -> Vec<String> {
    let mut files = Vec::new();
    for line in patch.lines() {
        let path = [
            "*** Add File: ",
            "*** Update File: ",
            "*** Delete File: ",
            "*** Move to: ",
        ]
        .iter()
        .find_map(|p| line.strip_prefix(p));
        if let Some(path) = path.map(str::trim).filter(|p| !p.is_empty()) {
            if !files.iter().any(|f| f == path) {
                files.push(path.to_string());
            }
        }
    }
    files
}

/// Reads one Codex hook event.
pub fn read_hook(event: &str, payload: &Value) -> HookReport {
    let field = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_string);
    let input = &payload["tool_input"];
    let tool = field("tool_name").unwrap_or_else(|| "?".into());
    let target = || {
        let command = input["command"].as_str().unwrap_or("");
        let target = if tool == "apply_patch" {
            patch_files(command).join(", ")
        } else {
            command.to_string()
        };
        Some(target.chars().take(200).collect::<String>()).filter(|t| !t.is_empty())
    };
    let signal = match event {
        hooks::SESSION_START => AgentSignal::SessionStarted,
        hooks::USER_PROMPT_SUBMIT => AgentSignal::PromptSubmitted,
        hooks::PRE_TOOL_USE | hooks::POST_TOOL_USE => AgentSignal::Tool {
            tool: tool.clone(),
            phase: if event == hooks::PRE_TOOL_USE {
                "pre"
            } else {
                "post"
            },
            target: target(),
        },
        hooks::PERMISSION_REQUEST => AgentSignal::PermissionAsked {
            message: match target() {
                Some(t) => format!("Codex asks to use {tool}: {t}"),
                None => format!("Codex asks to use {tool}"),
            },
        },
        hooks::SUBAGENT_START | hooks::SUBAGENT_STOP => AgentSignal::Subagent {
            agent_id: field("agent_id").unwrap_or_else(|| "?".into()),
            agent_type: field("agent_type"),
            running: event == hooks::SUBAGENT_START,
        },
        hooks::STOP => AgentSignal::TurnEnded {
            last_message: field("last_assistant_message"),
        },
        hooks::INTERRUPT => AgentSignal::TurnInterrupted,
        // SessionEnd comes late (a new chat, another thread) and says nothing about the
        // terminal: the session ends when its program exits.
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

fn is_option(line: &str) -> Option<String> {
    crate::engine::screen::numbered_option(line, &[PROMPT])
}

/// Where the composer is: the index of its first row (`› …`) and its text.
fn composer(rows: &[String]) -> Option<(usize, String)> {
    let last = rows.iter().rposition(|r| !r.trim().is_empty())?;
    // The footer: the block of rows under the last blank row.
    let footer_top = rows[..=last]
        .iter()
        .rposition(|r| r.trim().is_empty())
        .map(|i| i + 1)?;
    // The composer: the nearest `›` row above the footer with only continuation rows
    // (indented) or blank rows between.
    let mut top = None;
    for i in (0..footer_top).rev() {
        let row = &rows[i];
        if row.starts_with(PROMPT) {
            top = Some(i);
            break;
        }
        if !(row.trim().is_empty() || row.starts_with("  ")) {
            return None;
        }
    }
    let top = top?;
    if is_option(&rows[top]).is_some() {
        return None;
    }
    let first = rows[top][PROMPT.len_utf8()..].trim_start_matches(' ');
    let mut lines = vec![first.to_string()];
    lines.extend(
        rows[top + 1..footer_top]
            .iter()
            .map(|l| l.strip_prefix("  ").unwrap_or(l).to_string()),
    );
    let text = lines.join("\n").trim_end().to_string();
    let text = if text == PLACEHOLDER {
        String::new()
    } else {
        text
    };
    Some((top, text))
}

/// Whether a history row ends a turn: its summary, an interrupt, a cancelled approval.
fn ends_a_turn(row: &str) -> bool {
    let t = row.trim_start();
    t.starts_with("Worked for ") || t.starts_with("■ ") || t.starts_with("✗ ")
}

/// Classifies a captured Codex screen.
pub fn read_screen(rows: &[String]) -> ScreenState {
    if let Some(q) = rows
        .iter()
        .rposition(|r| r.trim_start().starts_with("Would you like to"))
    {
        let options: Vec<String> = rows[q + 1..].iter().filter_map(|r| is_option(r)).collect();
        let confirm = rows[q + 1..]
            .iter()
            .any(|r| r.contains("to confirm") || r.contains("esc to cancel"));
        if !options.is_empty() && confirm {
            return ScreenState::Permission {
                question: rows[q].trim().to_string(),
                options,
            };
        }
    }
    let Some((top, input)) = composer(rows) else {
        return ScreenState::Other;
    };
    let history = &rows[..top];
    if history.iter().any(|r| r.contains(WORKING_MARKER)) {
        return ScreenState::Working { input: Some(input) };
    }
    // While the answer streams the working line is hidden: a prompt in the history with
    // output under it and no end of turn after it is a turn still running.
    let mut output_since = false;
    for row in history.iter().rev() {
        if ends_a_turn(row) {
            break;
        }
        if row.starts_with("• ") {
            output_since = true;
        } else if row.starts_with(PROMPT) && is_option(row).is_none() {
            if output_since {
                return ScreenState::Working { input: Some(input) };
            }
            break;
        }
    }
    ScreenState::Ready { input }
}

/// The last answer on screen: Codex marks answers (and tool steps) with `• `.
pub fn last_answer(rows: &[String]) -> Option<String> {
    rows.iter().rev().find_map(|r| {
        r.strip_prefix("• ")
            .filter(|t| !t.starts_with("Working (") && !t.contains(WORKING_MARKER))
            .map(str::to_string)
    })
}

/// The text of a Responses API message item (its text parts joined by `sep`).
fn item_text(payload: &Value, sep: &str) -> String {
    payload["content"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(sep)
        })
        .unwrap_or_default()
}

/// Codex's own context sent as user messages (environment, instructions, skills).
fn is_codex_context(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with('<') || t.starts_with("# AGENTS.md")
}

/// The user and assistant messages of a rollout file, with their timestamps (ms).
fn messages(path: &Path) -> Option<Vec<(Option<i64>, String, String)>> {
    let text = super::claude::read_tail(path, 4 * 1024 * 1024)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let payload = &v["payload"];
        if v["type"] != "response_item" || payload["type"] != "message" {
            continue;
        }
        let role = payload["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            continue;
        }
        let body = item_text(payload, "\n");
        if role == "user" && is_codex_context(&body) {
            continue;
        }
        let at = v["timestamp"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        out.push((at, role.to_string(), body));
    }
    Some(out)
}

/// Whether a rollout file records `text` as a user prompt at or after `since` (ms since
/// the epoch); `None` when it cannot be read or carries no timestamps. Whitespace is
/// ignored: the prompt went through a terminal.
pub fn transcript_has_prompt(path: &Path, text: &str, since: i64) -> Option<bool> {
    let wanted: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut dated = false;
    for (at, role, body) in messages(path)? {
        let Some(at) = at else { continue };
        if role != "user" {
            continue;
        }
        dated = true;
        let got: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        if at >= since && got == wanted {
            return Some(true);
        }
    }
    dated.then_some(false)
}

/// The last `max` user and assistant lines of a rollout file.
pub fn transcript_tail(path: &Path, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = messages(path)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, _, body)| !body.trim().is_empty())
        .map(|(_, role, body)| format!("{role}: {}", body.chars().take(500).collect::<String>()))
        .collect();
    let skip = lines.len().saturating_sub(max);
    lines.drain(..skip);
    lines
}

/// OpenAI's Codex CLI (`codex`).
#[derive(Debug, Clone)]
pub struct CodexProfile {
    /// The program to run (default `codex`). Set by the operator's configuration only.
    pub program: String,
    /// Arguments placed before sm's own (e.g. `-c key=value` overrides).
    pub extra_args: Vec<String>,
    /// Extra environment for every Codex agent (e.g. `CODEX_HOME`).
    pub env: BTreeMap<String, String>,
}

impl Default for CodexProfile {
    fn default() -> Self {
        CodexProfile {
            program: "codex".into(),
            extra_args: Vec::new(),
            env: BTreeMap::new(),
        }
    }
}

impl AgentProfile for CodexProfile {
    fn kind(&self) -> AgentKind {
        AgentKind::Codex
    }

    fn command(
        &self,
        launch: &Launch<'_>,
    ) -> Result<(String, Vec<String>, BTreeMap<String, String>)> {
        let mut args = Vec::new();
        if let Some(resume) = launch.resume {
            check_resume(resume)?;
            args.push("resume".to_string());
            args.push(resume.to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        // One process per agent, hooks run without a trust screen (see the module doc).
        args.push("--no-daemon".into());
        args.push("--dangerously-bypass-hook-trust".into());
        if let Some(model) = launch.model {
            check_model(model)?;
            args.push("--model".into());
            args.push(model.to_string());
        }
        if launch.skip_permissions {
            args.push("--dangerously-bypass-approvals-and-sandbox".into());
        }
        Ok((self.program.clone(), args, self.env.clone()))
    }

    fn read_screen(&self, rows: &[String]) -> ScreenState {
        read_screen(rows)
    }

    fn last_answer(&self, rows: &[String]) -> Option<String> {
        last_answer(rows)
    }

    fn read_hook(&self, event: &str, payload: &Value) -> HookReport {
        read_hook(event, payload)
    }

    fn transcript_has_prompt(&self, path: &Path, text: &str, since: i64) -> Option<bool> {
        transcript_has_prompt(path, text, since)
    }

    fn transcript_tail(&self, path: &Path, max: usize) -> Vec<String> {
        transcript_tail(path, max)
    }

    fn transcript_lag(&self) -> Duration {
        TRANSCRIPT_LAG
    }

    fn clear_command(&self) -> Option<&str> {
        Some("/new")
    }

    fn submit_gap(&self) -> Duration {
        SUBMIT_GAP
    }

    fn is_prompt_echo(&self, line: &str) -> bool {
        line.starts_with(PROMPT) && is_option(line).is_none()
    }

    fn is_paste_placeholder(&self, line: &str) -> bool {
        line.contains("[Pasted Content")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rows(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    const FOOTER: &str = "\n  GPT-5.5 default · /work\n  ← for agents · ? for shortcuts";

    #[test]
    fn an_empty_composer_shows_its_placeholder_and_is_ready() {
        let s = rows(&format!(
            "  >_ OpenAI Codex (v0.169.0)\n     /work\n\n› Ask Codex to do anything\n{FOOTER}"
        ));
        assert_eq!(read_screen(&s), ScreenState::Ready { input: "".into() });
    }

    #[test]
    fn typed_and_pasted_text_is_the_composers() {
        let s = rows(&format!(
            "• hi\n\n  Worked for 3s • 07:06\n\n\n› line one\n  line two\n  line three\n{FOOTER}"
        ));
        assert_eq!(
            read_screen(&s),
            ScreenState::Ready {
                input: "line one\nline two\nline three".into()
            }
        );
        let s = rows(&format!("› [Pasted Content 2001 chars]\n{FOOTER}"));
        let ScreenState::Ready { input } = read_screen(&s) else {
            panic!("not ready");
        };
        assert!(CodexProfile::default().is_paste_placeholder(&input));
    }

    #[test]
    fn the_working_line_means_working_even_with_text_typed_meanwhile() {
        let s = rows(
            "› second\n\n• Working (1s • esc to interrupt)\n\n› typed while working\n\n  GPT-5.5 default · /work\n  tab to queue message",
        );
        assert_eq!(
            read_screen(&s),
            ScreenState::Working {
                input: Some("typed while working".into())
            }
        );
    }

    #[test]
    fn a_streaming_answer_hides_the_working_line_but_is_still_a_turn() {
        let s = rows(&format!(
            "› explain [[reply long]]\n\n• The first part of a long answer\n\n› Ask Codex to do anything\n{FOOTER}"
        ));
        assert!(matches!(read_screen(&s), ScreenState::Working { .. }));
        // Once the turn's summary shows, the same answer is a finished turn.
        let s = rows(&format!(
            "› explain [[reply long]]\n\n• The first part of a long answer\n\n  Worked for 2s • 07:06\n\n› Ask Codex to do anything\n{FOOTER}"
        ));
        assert_eq!(read_screen(&s), ScreenState::Ready { input: "".into() });
        // An interrupted turn is over too.
        let s = rows(&format!(
            "› long one\n\n• partial\n■ Conversation interrupted - use /feedback if something went wrong\n\n› Ask Codex to do anything\n{FOOTER}"
        ));
        assert_eq!(read_screen(&s), ScreenState::Ready { input: "".into() });
    }

    #[test]
    fn the_slash_menu_above_the_composer_is_not_a_running_turn() {
        let s = rows(
            "■ Conversation interrupted - use /feedback if something went wrong\n› /new  start a new chat during a conversation\n\n› /new\n\n  GPT-5.5 default · /work",
        );
        assert_eq!(
            read_screen(&s),
            ScreenState::Ready {
                input: "/new".into()
            }
        );
    }

    #[test]
    fn approval_questions_are_permission_prompts() {
        let s = rows(
            "  Would you like to run the following command?\n\n  Environment: local\n\n  Reason: why\n\n  $ echo hi > /var/tmp/x\n\n\n› 1. Yes, proceed (y)\n  2. Yes, and don't ask again for commands that start with `echo hi` (p)\n  3. No, and tell Codex what to do differently (esc)\n\n  Press enter to confirm or esc to cancel",
        );
        assert_eq!(
            read_screen(&s),
            ScreenState::Permission {
                question: "Would you like to run the following command?".into(),
                options: vec![
                    "Yes, proceed (y)".into(),
                    "Yes, and don't ask again for commands that start with `echo hi` (p)".into(),
                    "No, and tell Codex what to do differently (esc)".into(),
                ],
            }
        );
    }

    #[test]
    fn popups_and_start_up_are_other() {
        let s = rows(
            "  Meet GPT-6 Sol\n› 1. Try new model\n  2. Use existing model\n\n  enter/esc confirm · ^c quit",
        );
        assert_eq!(read_screen(&s), ScreenState::Other);
        assert_eq!(read_screen(&rows("")), ScreenState::Other);
    }

    #[test]
    fn hooks_say_what_happened() {
        let payload = serde_json::json!({
            "session_id": "01a2",
            "transcript_path": "/r.jsonl",
            "prompt": "do it",
        });
        let report = read_hook(hooks::USER_PROMPT_SUBMIT, &payload);
        assert_eq!(report.signal, AgentSignal::PromptSubmitted);
        assert_eq!(report.prompt.as_deref(), Some("do it"));
        assert_eq!(report.agent_session.as_deref(), Some("01a2"));
        assert_eq!(
            read_hook(hooks::INTERRUPT, &payload).signal,
            AgentSignal::TurnInterrupted
        );
        assert_eq!(
            read_hook(hooks::SESSION_END, &payload).signal,
            AgentSignal::Ignored
        );
        let patch = serde_json::json!({
            "tool_name": "apply_patch",
            "tool_input": { "command": "*** Begin Patch\n*** Add File: a.txt\n+x\n*** Update File: src/b.rs\n@@\n*** End Patch\n" },
        });
        assert_eq!(
            read_hook(hooks::PRE_TOOL_USE, &patch).signal,
            AgentSignal::Tool {
                tool: "apply_patch".into(),
                phase: "pre",
                target: Some("a.txt, src/b.rs".into()),
            }
        );
        let asked = serde_json::json!({
            "tool_name": "Bash",
            "tool_input": { "command": "echo hi" },
        });
        assert_eq!(
            read_hook(hooks::PERMISSION_REQUEST, &asked).signal,
            AgentSignal::PermissionAsked {
                message: "Codex asks to use Bash: echo hi".into()
            }
        );
    }

    #[test]
    fn the_rollout_file_records_prompts_but_not_codexs_own_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollout.jsonl");
        let line = |at: &str, role: &str, text: &str| {
            serde_json::json!({
                "timestamp": at, "type": "response_item",
                "payload": { "type": "message", "role": role,
                    "content": [{ "type": "input_text", "text": text }] },
            })
            .to_string()
        };
        std::fs::write(
            &path,
            [
                line("2026-01-01T10:00:00.100Z", "user", "<environment_context>x"),
                line("2026-01-01T10:00:01.000Z", "user", "tabs\there"),
                line("2026-01-01T10:00:02.000Z", "assistant", "done"),
            ]
            .join("\n"),
        )
        .unwrap();
        let since = humantime::parse_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert_eq!(transcript_has_prompt(&path, "tabs here", since), Some(true));
        assert_eq!(
            transcript_has_prompt(&path, "<environment_context>x", since),
            Some(false)
        );
        assert_eq!(
            transcript_tail(&path, 10),
            vec![
                "user: tabs\there".to_string(),
                "assistant: done".to_string()
            ]
        );
    }

    #[test]
    fn launches_embedded_with_sms_flags() {
        let id = crate::types::SessionId::new_random();
        let launch = Launch {
            id: &id,
            model: Some("gpt-5.5"),
            skip_permissions: true,
            resume: Some("01a2-33"),
        };
        let (program, args, _) = CodexProfile::default().command(&launch).unwrap();
        assert_eq!(program, "codex");
        assert_eq!(
            args,
            [
                "resume",
                "01a2-33",
                "--no-daemon",
                "--dangerously-bypass-hook-trust",
                "--model",
                "gpt-5.5",
                "--dangerously-bypass-approvals-and-sandbox",
            ]
        );
        assert_eq!(
            patch_files("*** Move to: b\n*** Delete File: a\n*** Delete File: a"),
            ["b", "a"]
        );
    }
}
