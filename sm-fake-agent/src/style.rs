//! How the fake agent looks and speaks: like Claude Code (the default) or, with
//! `--style codex`, like OpenAI's Codex CLI — its `›` composer above a two-line footer,
//! `• ` answers and tool steps, `Worked for …`, approval questions, `[Pasted Content N
//! chars]`, hooks from `$CODEX_HOME/hooks.json` (with `Interrupt` and `PermissionRequest`),
//! `SessionStart` only with the first prompt, an Enter that arrives within 120 ms of text
//! taken as a newline, and a rollout transcript. Everything that differs between the two
//! lives here, so the rest of the fake runs one script for both.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

/// Which agent the fake imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Claude,
    Codex,
}

/// Codex takes an Enter this soon after text as part of it (a newline), not as a submit.
pub const CODEX_ENTER_SUPPRESS: Duration = Duration::from_millis(120);
const CODEX_PLACEHOLDER: &str = "Ask Codex to do anything";

fn clock() -> String {
    // HH:MM of the wall clock (UTC), as Codex prints after a turn.
    let text = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    text.get(11..16).unwrap_or("00:00").to_string()
}

impl Style {
    /// Hook event names that differ.
    pub fn permission_event(self) -> &'static str {
        match self {
            Style::Claude => "Notification",
            Style::Codex => "PermissionRequest",
        }
    }

    /// The tool name and input a hook sees for a file write.
    pub fn write_tool(self, absolute: &Path, content: &str) -> (&'static str, Value) {
        match self {
            Style::Claude => (
                "Write",
                json!({ "file_path": absolute, "content": content }),
            ),
            Style::Codex => (
                "apply_patch",
                json!({ "command": format!(
                    "*** Begin Patch\n*** Add File: {}\n+{content}\n*** End Patch\n",
                    absolute.display()
                ) }),
            ),
        }
    }

    /// The question a permission prompt asks.
    pub fn question(self, claude: &str, edit: bool) -> String {
        match (self, edit) {
            (Style::Claude, _) => claude.to_string(),
            (Style::Codex, true) => "Would you like to make the following edits?".into(),
            (Style::Codex, false) => "Would you like to run the following command?".into(),
        }
    }

    /// Where the hooks are read from.
    pub fn hook_files(self, home: Option<&Path>, cwd: &Path) -> Vec<PathBuf> {
        match self {
            Style::Claude => {
                let mut files: Vec<PathBuf> = home
                    .map(|h| h.join(".claude/settings.json"))
                    .into_iter()
                    .collect();
                files.push(cwd.join(".claude/settings.json"));
                files.push(cwd.join(".claude/settings.local.json"));
                files
            }
            Style::Codex => codex_home(home)
                .map(|h| h.join("hooks.json"))
                .into_iter()
                .collect(),
        }
    }

    /// The transcript file for session `id`.
    pub fn transcript_path(self, home: Option<&Path>, cwd: &Path, id: &str) -> PathBuf {
        let home = home
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        match self {
            Style::Claude => {
                let project = cwd.to_string_lossy().replace(['/', '.'], "-");
                home.join(".claude/projects")
                    .join(project)
                    .join(format!("{id}.jsonl"))
            }
            Style::Codex => {
                let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                let (date, time) = (now.get(..10).unwrap_or(""), now.get(11..19).unwrap_or(""));
                let day = date.replace('-', "/");
                codex_home(Some(&home))
                    .unwrap_or(home)
                    .join("sessions")
                    .join(day)
                    .join(format!(
                        "rollout-{date}T{}-{id}.jsonl",
                        time.replace(':', "-")
                    ))
            }
        }
    }

    /// A transcript entry for a message of `role` (`user` or `assistant`).
    pub fn transcript_entry(self, session_id: &str, role: &str, text: &str) -> Value {
        let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        match self {
            Style::Claude => {
                let content = if role == "user" {
                    json!(text)
                } else {
                    json!([{ "type": "text", "text": text }])
                };
                json!({
                    "type": role,
                    "timestamp": at,
                    "sessionId": session_id,
                    "message": { "role": role, "content": content },
                })
            }
            Style::Codex => {
                let part = if role == "user" {
                    "input_text"
                } else {
                    "output_text"
                };
                json!({
                    "timestamp": at,
                    "type": "response_item",
                    "payload": { "type": "message", "role": role,
                        "content": [{ "type": part, "text": text }] },
                })
            }
        }
    }

    /// How a paste shows in the input box, when it is collapsed.
    pub fn collapsed_paste(self, number: usize, content: &str) -> Option<String> {
        match self {
            Style::Claude => (content.contains('\n') || content.chars().count() > 800).then(|| {
                format!(
                    "[Pasted text #{number} +{} lines]",
                    content.matches('\n').count()
                )
            }),
            Style::Codex => (content.chars().count() > 1000)
                .then(|| format!("[Pasted Content {} chars]", content.chars().count())),
        }
    }

    /// The history lines of a submitted prompt.
    pub fn prompt_echo(self, shown: &str) -> Vec<String> {
        let first = match self {
            Style::Claude => ">",
            Style::Codex => "›",
        };
        let mut lines: Vec<String> = shown
            .lines()
            .enumerate()
            .map(|(i, line)| format!("{} {line}", if i == 0 { first } else { " " }))
            .collect();
        if self == Style::Codex {
            lines.push(String::new());
        }
        lines
    }

    /// The history lines of a finished turn.
    pub fn turn_done(self, reply: &str, secs: u64) -> Vec<String> {
        match self {
            Style::Claude => vec![
                format!("⏺ {reply}"),
                String::new(),
                format!("✻ Worked for {secs}s"),
            ],
            Style::Codex => vec![
                format!("• {reply}"),
                String::new(),
                format!("  Worked for {secs}s • {}", clock()),
                String::new(),
            ],
        }
    }

    /// The line announcing a tool call.
    pub fn tool_header(self, tool: &str, target: &str) -> String {
        match self {
            Style::Claude => format!("⏺ {tool}({target})"),
            Style::Codex if tool == "apply_patch" => format!("• Added {target}"),
            Style::Codex => format!("• Ran {target}"),
        }
    }

    /// A tool's output (or a hook's refusal), indented under its header.
    pub fn tool_output(self, text: &str) -> Vec<String> {
        let (first, rest) = match self {
            Style::Claude => ("⎿", " "),
            Style::Codex => ("└", " "),
        };
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| format!("  {} {l}", if i == 0 { first } else { rest }))
            .collect();
        if lines.is_empty() {
            vec![format!("  {first} (no output)")]
        } else {
            lines
        }
    }

    /// The lines for a tool a before-tool hook blocked.
    pub fn blocked(self, tool: &str, reason: &str) -> Vec<String> {
        match self {
            Style::Claude => vec![format!("  ⎿ PreToolUse:{tool} hook error: {reason}")],
            Style::Codex => {
                let mut lines = vec!["• Blocked by hook".to_string()];
                lines.extend(self.tool_output(reason));
                lines
            }
        }
    }

    /// The line left by an interrupt of a turn that had produced output.
    pub fn interrupted(self) -> &'static str {
        match self {
            Style::Claude => "  ⎿ Interrupted · What should Claude do instead?",
            Style::Codex => "■ Conversation interrupted - use /feedback if something went wrong",
        }
    }

    /// The bottom of the screen while the agent takes input: the working line (`Some` with
    /// its seconds while a turn runs), the input box with `shown`, and the footer.
    pub fn input_area(
        self,
        working: Option<(&str, u64)>,
        shown: &str,
        status: Option<&str>,
        cols: usize,
        model: &str,
        cwd: &Path,
    ) -> Vec<String> {
        let mut bottom = Vec::new();
        let width = cols.saturating_sub(2).max(1);
        match self {
            Style::Claude => {
                if let Some((verb, secs)) = working {
                    bottom.push(format!("✶ {verb}… ({secs}s · esc to interrupt)"));
                }
                let rule = "─".repeat(cols);
                bottom.push(rule.clone());
                let mut first = true;
                for line in shown.split('\n') {
                    for chunk in super::wrap(line, width) {
                        bottom.push(format!("{} {chunk}", if first { "❯" } else { " " }));
                        first = false;
                    }
                }
                bottom.push(rule);
                bottom.push(status.unwrap_or("  ? for shortcuts").to_string());
            }
            Style::Codex => {
                if let Some((_, secs)) = working {
                    bottom.push(format!("• Working ({secs}s • esc to interrupt)"));
                    bottom.push(String::new());
                }
                let shown = if shown.is_empty() {
                    CODEX_PLACEHOLDER
                } else {
                    shown
                };
                let mut first = true;
                for line in shown.split('\n') {
                    for chunk in super::wrap(line, width) {
                        bottom.push(format!("{} {chunk}", if first { "›" } else { " " }));
                        first = false;
                    }
                }
                bottom.push(String::new());
                bottom.push(format!("  {model} default · {}", cwd.display()));
                bottom.push(
                    status
                        .unwrap_or(if working.is_some() {
                            "  tab to queue message"
                        } else {
                            "  ← for agents · ? for shortcuts"
                        })
                        .to_string(),
                );
            }
        }
        bottom
    }

    /// The bottom of the screen while a permission question is open.
    pub fn permission_area(
        self,
        header: &str,
        question: &str,
        edit: bool,
        selected: usize,
        cols: usize,
    ) -> Vec<String> {
        match self {
            Style::Claude => {
                let mut bottom = vec![
                    "─".repeat(cols),
                    format!(" {header}"),
                    format!(" {question}"),
                ];
                let options = [
                    "Yes",
                    if edit {
                        "Yes, allow all edits during this session"
                    } else {
                        "Yes, and don't ask again for this command"
                    },
                    "No",
                ];
                for (i, o) in options.iter().enumerate() {
                    let marker = if i == selected { "❯" } else { " " };
                    bottom.push(format!(" {marker} {}. {o}", i + 1));
                }
                bottom.push(" Esc to cancel".into());
                bottom
            }
            Style::Codex => {
                let subject = if edit {
                    format!("  Destination: {header}")
                } else {
                    format!("  $ {header}")
                };
                let mut bottom = vec![
                    format!("  {question}"),
                    String::new(),
                    subject,
                    String::new(),
                ];
                let options = [
                    "Yes, proceed (y)",
                    if edit {
                        "Yes, and don't ask again for these files (a)"
                    } else {
                        "Yes, and don't ask again for this command (p)"
                    },
                    "No, and tell Codex what to do differently (esc)",
                ];
                for (i, o) in options.iter().enumerate() {
                    let marker = if i == selected { "›" } else { " " };
                    bottom.push(format!("{marker} {}. {o}", i + 1));
                }
                bottom.push(String::new());
                bottom.push("  Press enter to confirm or esc to cancel".into());
                bottom
            }
        }
    }

    /// The first lines of the screen.
    pub fn banner(self, model: &str, cwd: &Path) -> Vec<String> {
        match self {
            Style::Claude => vec![
                format!("✻ Welcome to the fake Claude Code (sm test agent) · model {model}"),
                format!("  cwd: {}", cwd.display()),
                String::new(),
            ],
            Style::Codex => vec![
                "  >_ Fake Codex (sm test agent)".into(),
                format!("     {}", cwd.display()),
                String::new(),
            ],
        }
    }
}

/// `$CODEX_HOME`, else `~/.codex`.
fn codex_home(home: Option<&Path>) -> Option<PathBuf> {
    std::env::var_os("CODEX_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".codex")))
}
