//! `sm mcp`: sm as native tools for the agent it runs in — a Model Context Protocol server
//! over stdio, started by the agent's own client (Claude Code, Codex).
//!
//! It acts only as that agent: the identity is the `SM_SESSION_ID` / `SM_TOKEN` sm gave the
//! agent, never the admin token. Started outside a managed agent (a client configured for
//! every session, run by hand), it offers no tools and says why. Each tool is one request to
//! the server, with the same authorisation as the CLI; a result carries the server's answer
//! as structured content plus a one-line text, and a refusal is a tool error carrying sm's
//! stable error code and message.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use sm_lib::wire::{AnswerBody, InputBody, LockBody, NameBody, SpawnBody, TaskBody};

use super::send::watch;
use crate::client::{CliError, Client, enc, my_session};

/// What the server tells the agent's client about itself.
const INSTRUCTIONS: &str = "sm coordinates the agents of a swarm: spawn workers, send them \
messages, and get a message back when they finish. Every tool acts as you (the agent this \
server runs in). `wait` and the `wait_secs` of `spawn`/`send` return at once: you are woken by \
a message when the other agent finishes its turn or the time is up, so end your turn and \
stay idle instead of polling.";

/// Said when there is no agent identity to act as.
const NOT_AN_AGENT: &str = "this MCP server runs outside an agent started by sm \
(SM_SESSION_ID and SM_TOKEN are not set), so it offers no tools: sm's tools act only as the \
agent they run in";

/// Runs the MCP server on stdin/stdout until the client closes it.
pub fn run(client: Option<Client>) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the MCP server: {e}")))?;
    runtime.block_on(async move {
        let server = SmTools::new(client);
        let service = server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| CliError::Usage(format!("the MCP client did not initialise: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| CliError::Usage(format!("the MCP session failed: {e}")))?;
        Ok(())
    })
}

/// The agent's identity when this process runs inside an agent sm started: both its session
/// id and its own token must be in the environment (never the admin token).
pub fn agent_identity() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    my_session().is_some() && set(sm_lib::wire::env::TOKEN)
}

/// The tools, bound to the agent's connection to the server.
#[derive(Clone)]
pub struct SmTools {
    client: Option<Arc<Client>>,
    tool_router: ToolRouter<Self>,
}

/// How a message is delivered.
#[derive(Debug, Clone, Copy, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// When the target is idle, after what is queued before it.
    #[default]
    Sequential,
    /// Ahead of sequential messages, at the target's next idle point, without interrupting.
    Important,
    /// Interrupt the target's running turn now and deliver.
    Urgent,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sequential => "sequential",
            Mode::Important => "important",
            Mode::Urgent => "urgent",
        }
    }
}

/// Arguments of `spawn`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SpawnArgs {
    /// The first message for the new agent (its task).
    pub prompt: Option<String>,
    /// A friendly name (letters, digits, '-', '_', '.'), unique among live sessions.
    pub name: Option<String>,
    /// Agent kind: claude, codex, fake, shell, or one defined in sm's configuration.
    /// Default: claude.
    pub agent: Option<String>,
    /// Model (Claude: opus, sonnet, haiku or a full name; Codex: e.g. gpt-5.5).
    pub model: Option<String>,
    /// Absolute working directory. Default: yours.
    pub dir: Option<String>,
    /// Wake me with a message when its first turn ends, or after this many seconds.
    pub wait_secs: Option<u64>,
    /// Start it without permission prompts.
    #[serde(default)]
    pub skip_permissions: bool,
    /// In a cluster of sm servers: the node to run it on. Default: your own node.
    pub node: Option<String>,
}

/// Arguments of `send`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SendArgs {
    /// The target session: id, id prefix or name.
    pub target: String,
    /// The message, typed into the target as its next prompt.
    pub text: String,
    /// How it is delivered. Default: sequential.
    #[serde(default)]
    pub mode: Mode,
    /// Then wake me with a message when the target finishes, or after this many seconds.
    pub wait_secs: Option<u64>,
}

/// Arguments of `wait`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WaitArgs {
    /// The session to wait for: id, id prefix or name.
    pub target: String,
    /// Give up after this many seconds (a message then says it is still busy).
    pub timeout_secs: u64,
}

/// Arguments of `children`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ChildrenArgs {
    /// Whose children. Default: yours.
    pub parent: Option<String>,
    /// Include grandchildren and further.
    #[serde(default)]
    pub recursive: bool,
    /// Only children with this status (e.g. idle, working, needs_input).
    pub status: Option<String>,
}

/// A session named by id, id prefix or name.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TargetArgs {
    /// The session: id, id prefix or name.
    pub target: String,
}

/// Arguments of `what`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WhatArgs {
    /// The session: id, id prefix or name.
    pub target: String,
    /// Give the summariser more context.
    #[serde(default)]
    pub deep: bool,
}

/// Arguments of `output`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct OutputArgs {
    /// The session: id, id prefix or name.
    pub target: String,
    /// How many of the last lines. Default: 50.
    pub lines: Option<usize>,
}

/// Arguments of `answer`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AnswerArgs {
    /// The session showing a question: id, id prefix or name.
    pub target: String,
    /// The option's number as its screen shows it (1 = the first).
    pub option: usize,
}

/// Arguments of `lock`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LockArgs {
    /// Why (shown to anyone refused).
    pub reason: String,
}

/// Arguments of `set_task`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TaskArgs {
    /// What the session is working on; empty to clear it.
    pub task: String,
    /// The session (yours, or one you spawned). Default: yours.
    pub session: Option<String>,
}

/// Arguments of `set_name`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NameArgs {
    /// The new name (letters, digits, '-', '_', '.').
    pub name: String,
    /// The session (yours, or one you spawned). Default: yours.
    pub session: Option<String>,
}

/// sm's stable code for a failure that is not the server's refusal.
fn error_code(e: &CliError) -> &'static str {
    match e {
        CliError::ServerDown(_) => "server_down",
        CliError::Interrupted(_) => "interrupted",
        CliError::Usage(_) => "invalid_input",
        CliError::No => "no",
        CliError::TimedOut => "timed_out",
        CliError::Api { .. } => "api_error",
    }
}

/// A refusal as a tool error: `{code, message}` and the message with its code as text.
fn tool_error(e: &CliError) -> CallToolResult {
    let (code, message) = match e {
        CliError::Api { code, message } => (code.clone(), message.clone()),
        other => (error_code(other).to_string(), other.to_string()),
    };
    let mut result = CallToolResult::structured_error(json!({ "code": code, "message": message }));
    result.content = vec![ContentBlock::text(format!("{message} [{code}]"))];
    result
}

/// A success: `value` (an object) as structured content, `line` as the text.
fn tool_ok(value: Value, line: String) -> CallToolResult {
    let value = match value {
        Value::Object(_) => value,
        other => json!({ "result": other }),
    };
    let mut result = CallToolResult::structured(value);
    result.content = vec![ContentBlock::text(line)];
    result
}

/// A session's label in a one-line answer: its name, else its id.
fn label(session: &Value) -> String {
    let id = session["id"].as_str().unwrap_or("?");
    match session["name"].as_str() {
        Some(name) => format!("{name} [{id}]"),
        None => format!("[{id}]"),
    }
}

/// Sessions (a JSON array) as `{sessions}` and a count line.
fn sessions_answer(list: Vec<Value>, what: &str) -> (Value, String) {
    let names: Vec<String> = list.iter().map(label).collect();
    let line = if names.is_empty() {
        format!("no {what}")
    } else {
        format!("{} {what}: {}", names.len(), names.join(", "))
    };
    (json!({ "sessions": list }), line)
}

/// A fresh idempotency key: a retry after a broken connection is not a second request.
fn key() -> Option<String> {
    Some(sm_lib::SessionId::new_random().to_string())
}

fn me_required() -> Result<String, CliError> {
    my_session().ok_or_else(|| CliError::Usage(NOT_AN_AGENT.into()))
}

#[tool_router]
impl SmTools {
    /// Tools for the agent `client` acts as; none without one.
    pub fn new(client: Option<Client>) -> SmTools {
        let tool_router = if client.is_some() {
            Self::tool_router()
        } else {
            ToolRouter::new()
        };
        SmTools {
            client: client.map(Arc::new),
            tool_router,
        }
    }

    /// Runs the blocking request `f` off the runtime and turns its outcome into a result.
    async fn call(
        &self,
        f: impl FnOnce(&Client) -> Result<(Value, String), CliError> + Send + 'static,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(client) = self.client.clone() else {
            return Ok(tool_error(&CliError::Usage(NOT_AN_AGENT.into())));
        };
        let outcome = tokio::task::spawn_blocking(move || f(&client))
            .await
            .map_err(|e| ErrorData::internal_error(format!("the tool call failed: {e}"), None))?;
        Ok(match outcome {
            Ok((value, line)) => tool_ok(value, line),
            Err(e) => tool_error(&e),
        })
    }

    #[tool(
        description = "Start a new agent (Claude Code by default) with an optional first \
        prompt; you become its parent, so you may message, clear and kill it. With wait_secs \
        you are woken by a message when its first turn ends (returns at once)."
    )]
    async fn spawn(
        &self,
        Parameters(args): Parameters<SpawnArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let dir = super::absolute_dir(args.dir.map(Into::into))?;
            let body = SpawnBody {
                prompt: args.prompt,
                name: args.name,
                model: args.model,
                working_dir: Some(dir),
                agent: Some(args.agent.unwrap_or_else(|| "claude".into())),
                wait_secs: args.wait_secs,
                skip_permissions: args.skip_permissions,
                resume: None,
                idempotency_key: key(),
                node: args.node,
            };
            let view = c.post_idempotent("/sessions", &body)?;
            let mut line = format!("spawned {}", label(&view));
            if args.wait_secs.is_some() {
                line.push_str("; you will get a message when it finishes its first turn");
            }
            Ok((view, line))
        })
        .await
    }

    #[tool(
        description = "Send a message to a session. mode: sequential (default; delivered when \
        the target is idle), important (ahead of sequential messages at its next idle point, \
        without interrupting) or urgent (interrupts its running turn now). Returns at once \
        with the queued message; with wait_secs you are also woken by a message when the \
        target finishes."
    )]
    async fn send(
        &self,
        Parameters(args): Parameters<SendArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let mode = args.mode.name();
            let body = InputBody {
                text: args.text,
                mode: Some(mode.to_string()),
                idempotency_key: key(),
            };
            let message =
                c.post_idempotent(&format!("/sessions/{}/input", enc(&args.target)), &body)?;
            if let Some(secs) = args.wait_secs {
                watch(c, &args.target, secs)?;
            }
            let line = format!(
                "queued message #{} ({mode}) for {}",
                message["id"], args.target
            );
            Ok((message, line))
        })
        .await
    }

    #[tool(
        description = "Get woken when a session finishes its turn. Returns at once: a message \
        arrives as your next prompt when the target goes idle, ends, or timeout_secs pass. End \
        your turn after calling it; do not poll."
    )]
    async fn wait(
        &self,
        Parameters(args): Parameters<WaitArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let answer = watch(c, &args.target, args.timeout_secs)?;
            let line = format!(
                "waiting on {}: you will get a message when it finishes, or in {}s",
                args.target, args.timeout_secs
            );
            Ok((answer, line))
        })
        .await
    }

    #[tool(description = "List the sessions you spawned (or another parent's, by name or id).")]
    async fn children(
        &self,
        Parameters(args): Parameters<ChildrenArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let parent = args.parent.map_or_else(me_required, Ok)?;
            let kids = c.get(&format!(
                "/sessions/{}/children?recursive={}",
                enc(&parent),
                args.recursive
            ))?;
            let kids: Vec<Value> = kids
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|s| {
                    args.status
                        .as_deref()
                        .is_none_or(|st| s["status"].as_str() == Some(st))
                })
                .collect();
            Ok(sessions_answer(kids, "children"))
        })
        .await
    }

    #[tool(description = "Show yourself, every session and the workspace locks.")]
    async fn status(&self) -> Result<CallToolResult, ErrorData> {
        self.call(|c| {
            let status = c.get("/status")?;
            let live = status["sessions"]
                .as_array()
                .map_or(0, |s| s.iter().filter(|s| is_live(s)).count());
            let locks = status["locks"].as_array().map_or(0, Vec::len);
            let line = format!("{live} live sessions, {locks} locks");
            Ok((status, line))
        })
        .await
    }

    #[tool(description = "List the live sessions other than yours.")]
    async fn others(&self) -> Result<CallToolResult, ErrorData> {
        self.call(|c| {
            let me = my_session();
            let all = c.get("/sessions")?;
            let others: Vec<Value> = all
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|s| is_live(s) && s["id"].as_str() != me.as_deref())
                .collect();
            Ok(sessions_answer(others, "other live sessions"))
        })
        .await
    }

    #[tool(description = "A short AI summary of what a session is doing.")]
    async fn what(
        &self,
        Parameters(args): Parameters<WhatArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let summary = c.get(&format!(
                "/sessions/{}/what?deep={}",
                enc(&args.target),
                args.deep
            ))?;
            let line = summary["summary"].as_str().unwrap_or_default().to_string();
            Ok((summary, line))
        })
        .await
    }

    #[tool(description = "The last lines of a session's terminal and its recent tool use.")]
    async fn output(
        &self,
        Parameters(args): Parameters<OutputArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let lines = args.lines.unwrap_or(50);
            let tail = c.get(&format!(
                "/sessions/{}/output?lines={lines}",
                enc(&args.target)
            ))?;
            let text = tail["lines"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            Ok((tail, text))
        })
        .await
    }

    #[tool(description = "End a session you spawned (its agent and terminal).")]
    async fn kill(
        &self,
        Parameters(args): Parameters<TargetArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let view = c.delete(&format!("/sessions/{}", enc(&args.target)))?;
            let line = format!("killed {}", label(&view));
            Ok((view, line))
        })
        .await
    }

    #[tool(description = "Reset the context of a session you spawned (Claude Code: /clear).")]
    async fn clear(
        &self,
        Parameters(args): Parameters<TargetArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let cleared = c.post(
                &format!("/sessions/{}/clear", enc(&args.target)),
                &json!({}),
            )?;
            let line = format!("cleared {}", args.target);
            Ok((cleared, line))
        })
        .await
    }

    #[tool(
        description = "Answer the question (a permission prompt) a session you spawned shows, \
        by the number of the option its screen shows."
    )]
    async fn answer(
        &self,
        Parameters(args): Parameters<AnswerArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let answered = c.post(
                &format!("/sessions/{}/answer", enc(&args.target)),
                &AnswerBody {
                    option: args.option,
                },
            )?;
            let line = format!(
                "answered {}: {}",
                args.target,
                answered["answered"].as_str().unwrap_or_default()
            );
            Ok((answered, line))
        })
        .await
    }

    #[tool(
        description = "Lock your workspace (your working directory's repository) so other \
        agents' writes there wait or are refused."
    )]
    async fn lock(
        &self,
        Parameters(args): Parameters<LockArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let lock = c.post(
                "/locks",
                &LockBody {
                    reason: args.reason,
                },
            )?;
            let line = format!("locked {}", lock["workspace"].as_str().unwrap_or_default());
            Ok((lock, line))
        })
        .await
    }

    #[tool(description = "Release the workspace locks you hold.")]
    async fn unlock(&self) -> Result<CallToolResult, ErrorData> {
        self.call(|c| {
            let released = c.delete("/locks")?;
            let n = released.as_array().map_or(0, Vec::len);
            Ok((
                json!({ "released": released }),
                format!("released {n} lock(s)"),
            ))
        })
        .await
    }

    #[tool(
        description = "Say what a session (yours by default, or one you spawned) is working \
        on; shown by status and children. Empty clears it."
    )]
    async fn set_task(
        &self,
        Parameters(args): Parameters<TaskArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let target = args.session.map_or_else(me_required, Ok)?;
            let body = TaskBody {
                task: (!args.task.trim().is_empty()).then_some(args.task),
            };
            let view = c.post(&format!("/sessions/{}/task", enc(&target)), &body)?;
            let line = match view["task"].as_str() {
                Some(t) => format!("{}: {t}", label(&view)),
                None => format!("cleared the task of {}", label(&view)),
            };
            Ok((view, line))
        })
        .await
    }

    #[tool(description = "Name a session (yours by default, or one you spawned).")]
    async fn set_name(
        &self,
        Parameters(args): Parameters<NameArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |c| {
            let target = args.session.map_or_else(me_required, Ok)?;
            let view = c.post(
                &format!("/sessions/{}/name", enc(&target)),
                &NameBody {
                    name: Some(args.name),
                },
            )?;
            let line = format!("named {}", label(&view));
            Ok((view, line))
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SmTools {
    fn get_info(&self) -> ServerConfig {
        let instructions = if self.client.is_some() {
            INSTRUCTIONS
        } else {
            NOT_AN_AGENT
        };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("sm", env!("CARGO_PKG_VERSION")))
            .with_instructions(instructions)
    }
}

/// Whether a session (as the API shows it) is live, by the status's own rule.
fn is_live(session: &Value) -> bool {
    serde_json::from_value::<sm_lib::SessionStatus>(session["status"].clone())
        .is_ok_and(|s| s.is_live())
}
