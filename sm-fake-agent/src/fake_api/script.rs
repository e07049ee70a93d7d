//! The directives the fake model APIs (`sm-fake-anthropic`, `sm-fake-openai`) read from a
//! turn's prompt: `[[reply text]]`, `[[write path content]]`, `[[bash command]]`,
//! `[[escalate command]]` (a command that asks for approval, where the agent has such a
//! thing), `[[tool name {json input}]]` (a call of any other tool the agent offers the
//! model, such as an MCP server's `mcp__sm__send`), `[[sleep N]]`.

use std::time::Duration;

/// A tool call the model makes, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Write (create) a file.
    Write { path: String, content: String },
    /// Run a command; `escalate` asks the agent to ask the user first.
    Bash { command: String, escalate: bool },
    /// Call the tool `name` with `input` (JSON text).
    Tool { name: String, input: String },
}

/// What a prompt scripts.
#[derive(Debug, Default)]
pub struct Script {
    pub steps: Vec<Step>,
    pub reply: Option<String>,
    pub sleep: Duration,
}

/// The script in `text`, or `None` when it holds no directive.
pub fn directives(text: &str) -> Option<Script> {
    let mut script = Script::default();
    let mut found = false;
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        let Some(len) = rest[start + 2..].find("]]") else {
            break;
        };
        let body = rest[start + 2..start + 2 + len].trim().to_string();
        rest = &rest[start + 4 + len..];
        let (word, arg) = body.split_once(char::is_whitespace).unwrap_or((&body, ""));
        let arg = arg.trim();
        found = true;
        match word {
            "reply" => script.reply = Some(arg.to_string()),
            "sleep" => {
                script.sleep += Duration::from_secs_f64(arg.parse::<f64>().unwrap_or(0.0).max(0.0))
            }
            "write" => {
                let (path, content) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
                script.steps.push(Step::Write {
                    path: path.to_string(),
                    content: content.to_string(),
                });
            }
            "tool" => {
                let (name, input) = arg.split_once(char::is_whitespace).unwrap_or((arg, "{}"));
                script.steps.push(Step::Tool {
                    name: name.to_string(),
                    input: input.trim().to_string(),
                });
            }
            "bash" | "escalate" => script.steps.push(Step::Bash {
                command: arg.to_string(),
                escalate: word == "escalate",
            }),
            _ => {}
        }
    }
    found.then_some(script)
}
