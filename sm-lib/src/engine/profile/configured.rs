//! Agent kinds defined by configuration (`agents.<name>`): a command line with
//! placeholders, screen markers as regexes, a clear command, an interrupt key, and
//! optionally Claude Code-style hooks. Enough for any terminal agent whose screen says when
//! it is ready, working or asking — no code needed.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use super::{AgentProfile, Launch, check_model, check_resume};
use crate::backend::Key;
use crate::config::AgentDefinition;
use crate::engine::screen::ScreenState;
use crate::error::{Error, Result};
use crate::types::AgentKind;

/// A profile read from an [`AgentDefinition`].
#[derive(Debug, Clone)]
pub struct ConfiguredProfile {
    kind: AgentKind,
    definition: AgentDefinition,
    ready: Option<Regex>,
    working: Option<Regex>,
    question: Option<Regex>,
    input: Option<Regex>,
    answer: Option<Regex>,
    interrupt: Key,
}

fn compile(name: &str, field: &str, pattern: &Option<String>) -> Result<Option<Regex>> {
    pattern
        .as_deref()
        .map(|p| {
            Regex::new(p).map_err(|e| Error::Config {
                path: None,
                location: format!("agents.{name}.{field}"),
                message: format!("not a valid regex: {e}"),
            })
        })
        .transpose()
}

/// Any of the selection markers agent TUIs draw before the selected option.
fn is_option(line: &str) -> Option<String> {
    crate::engine::screen::numbered_option(line, &['❯', '›', '>', '*', '●', '•', '→', '▸'])
}

impl ConfiguredProfile {
    /// The profile of `agents.<name>`. Errors: an invalid name or regex.
    pub fn new(name: &str, definition: AgentDefinition) -> Result<ConfiguredProfile> {
        let kind = AgentKind::custom(name)?;
        let interrupt = match definition.interrupt.as_deref() {
            None | Some("escape") => Key::Escape,
            Some("ctrl-c") => Key::CtrlC,
            Some(other) => {
                return Err(Error::Config {
                    path: None,
                    location: format!("agents.{name}.interrupt"),
                    message: format!("{other:?}: must be escape or ctrl-c"),
                });
            }
        };
        Ok(ConfiguredProfile {
            ready: compile(name, "ready", &definition.ready)?,
            working: compile(name, "working", &definition.working)?,
            question: compile(name, "question", &definition.question)?,
            input: compile(name, "input", &definition.input)?,
            answer: compile(name, "answer", &definition.answer)?,
            kind,
            interrupt,
            definition,
        })
    }

    /// The input box's text: what the input regex captures on the last row it matches,
    /// then the indented rows right under it (the box's continuation lines).
    fn input_text(&self, rows: &[String]) -> Option<String> {
        let re = self.input.as_ref()?;
        let (at, first) = rows.iter().enumerate().rev().find_map(|(i, r)| {
            re.captures(r)
                .and_then(|c| c.get(1))
                .map(|m| (i, m.as_str().trim_end().to_string()))
        })?;
        let mut lines = vec![first];
        lines.extend(
            rows[at + 1..]
                .iter()
                .take_while(|r| r.starts_with("  ") && !r.trim().is_empty())
                .map(|r| r[2..].trim_end().to_string()),
        );
        let text = lines.join("\n");
        let placeholder = self.definition.placeholder.as_deref();
        if placeholder.is_some_and(|p| text.trim() == p.trim()) {
            return Some(String::new());
        }
        Some(text)
    }
}

fn replace_all(args: &[String], placeholder: &str, value: &str) -> Vec<String> {
    args.iter().map(|a| a.replace(placeholder, value)).collect()
}

impl AgentProfile for ConfiguredProfile {
    fn kind(&self) -> AgentKind {
        self.kind.clone()
    }

    fn command(
        &self,
        launch: &Launch<'_>,
    ) -> Result<(String, Vec<String>, BTreeMap<String, String>)> {
        let d = &self.definition;
        let mut args = replace_all(&d.args, "{session_id}", launch.id.as_str());
        if let Some(model) = launch.model {
            check_model(model)?;
            if d.model_args.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "{} agents take no model (agents.{}.model_args is empty)",
                    self.kind, self.kind
                )));
            }
            args.extend(replace_all(&d.model_args, "{model}", model));
        }
        if let Some(resume) = launch.resume {
            check_resume(resume)?;
            if d.resume_args.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "{} agents cannot resume (agents.{}.resume_args is empty)",
                    self.kind, self.kind
                )));
            }
            args.extend(replace_all(&d.resume_args, "{resume}", resume));
        }
        if launch.skip_permissions {
            args.extend(d.skip_permissions_args.iter().cloned());
        }
        Ok((d.command.clone(), args, BTreeMap::new()))
    }

    fn read_screen(&self, rows: &[String]) -> ScreenState {
        if let Some(re) = &self.question {
            if let Some(q) = rows.iter().rposition(|r| re.is_match(r)) {
                return ScreenState::Permission {
                    question: rows[q].trim().to_string(),
                    options: rows[q + 1..].iter().filter_map(|r| is_option(r)).collect(),
                };
            }
        }
        let input = self.input_text(rows);
        if let Some(re) = &self.working {
            if rows.iter().any(|r| re.is_match(r)) {
                return ScreenState::Working { input };
            }
        }
        let ready = match &self.ready {
            Some(re) => rows.iter().any(|r| re.is_match(r)),
            // Without a ready marker, a shown input box (or, with neither, any screen
            // that is not working) is ready.
            None => self.input.is_none() || input.is_some(),
        };
        if ready && (self.input.is_none() || input.is_some()) {
            ScreenState::Ready {
                input: input.unwrap_or_default(),
            }
        } else {
            ScreenState::Other
        }
    }

    fn last_answer(&self, rows: &[String]) -> Option<String> {
        let re = self.answer.as_ref()?;
        rows.iter().rev().find_map(|r| {
            re.captures(r)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().trim().to_string())
        })
    }

    fn reports_hooks(&self) -> bool {
        self.definition.hooks
    }

    fn verifiable(&self) -> bool {
        self.input.is_some()
    }

    fn interrupt_key(&self) -> Key {
        self.interrupt
    }

    fn clear_command(&self) -> Option<&str> {
        self.definition.clear.as_deref()
    }

    fn submit_gap(&self) -> Duration {
        Duration::from_millis(self.definition.submit_gap_ms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rows(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    fn profile() -> ConfiguredProfile {
        ConfiguredProfile::new(
            "boxy",
            AgentDefinition {
                command: "boxy".into(),
                args: vec!["--id".into(), "{session_id}".into()],
                model_args: vec!["--model={model}".into()],
                ready: Some("^Type your message".into()),
                working: Some("esc to cancel".into()),
                question: Some("^Allow ".into()),
                input: Some(r"^│ > (.*?)\s*│?$".into()),
                placeholder: Some("Type your message".into()),
                answer: Some(r"^✦ (.*)$".into()),
                clear: Some("/clear".into()),
                interrupt: Some("ctrl-c".into()),
                ..AgentDefinition::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn the_screen_is_read_with_the_configured_markers() {
        let p = profile();
        let multi = rows("│ > first line │\n  second line\n\nType your message or @path");
        assert_eq!(
            p.read_screen(&multi),
            ScreenState::Ready {
                input: "first line\nsecond line".into()
            }
        );
        let ready = rows("✦ all done\n│ > half typed │\nType your message or @path");
        assert_eq!(
            p.read_screen(&ready),
            ScreenState::Ready {
                input: "half typed".into()
            }
        );
        assert_eq!(p.last_answer(&ready).as_deref(), Some("all done"));
        let working = rows("⠋ Thinking (esc to cancel)\n│ >  │");
        assert!(matches!(
            p.read_screen(&working),
            ScreenState::Working { .. }
        ));
        let asking = rows("Allow execution of 'rm'?\n● 1. Yes, allow once\n  2. No");
        assert_eq!(
            p.read_screen(&asking),
            ScreenState::Permission {
                question: "Allow execution of 'rm'?".into(),
                options: vec!["Yes, allow once".into(), "No".into()],
            }
        );
        assert_eq!(p.read_screen(&rows("booting…")), ScreenState::Other);
        let empty = rows("│ > Type your message │\nType your message or @path");
        assert_eq!(
            p.read_screen(&empty),
            ScreenState::Ready { input: "".into() }
        );
        assert_eq!(p.interrupt_key(), Key::CtrlC);
        assert!(p.verifiable() && !p.reports_hooks());
    }

    #[test]
    fn placeholders_fill_the_command_line_and_missing_ones_are_refused() {
        let p = profile();
        let id = crate::types::SessionId::new_random();
        let launch = Launch {
            id: &id,
            model: Some("big-1"),
            skip_permissions: false,
            resume: None,
        };
        let (program, args, _) = p.command(&launch).unwrap();
        assert_eq!(program, "boxy");
        assert_eq!(args, ["--id", id.as_str(), "--model=big-1"]);
        let resume = Launch {
            resume: Some("abc"),
            model: None,
            ..launch
        };
        let err = p.command(&resume).unwrap_err().to_string();
        assert!(err.contains("cannot resume"), "{err}");
        assert!(ConfiguredProfile::new("claude", AgentDefinition::default()).is_err());
        let bad = AgentDefinition {
            ready: Some("([".into()),
            ..AgentDefinition::default()
        };
        assert!(ConfiguredProfile::new("x", bad).is_err());
    }
}
