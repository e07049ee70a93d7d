//! `sm-fake-anthropic`: a local stand-in for the Anthropic Messages API, so the real
//! Claude Code CLI can run under sm with no network and no model.
//!
//! It answers `POST /v1/messages` (streaming SSE, or plain JSON when `stream` is false) from
//! directives in the conversation's first user prompt that has any:
//! `[[reply text]]` (the final answer), `[[write path content]]` (a Write tool call),
//! `[[bash command]]` (a Bash tool call), `[[tool name {json}]]` (a call of any tool, e.g.
//! an MCP server's), `[[sleep N]]` (delay before answering). Each
//! request answers the next step: the first tool call not yet answered by a `tool_result`,
//! else the reply. Every other endpoint answers 404, which the CLI tolerates.
//!
//! Prints `listening on http://127.0.0.1:<port>` and serves until killed. `--port N` picks
//! the port (default: any free one).

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[path = "../fake_api/script.rs"]
mod script;

use script::{Step, directives};

/// Whether a content block is prompt text: text that is not one of the reminders Claude
/// Code adds to user messages.
fn is_prompt_text(block: &Value) -> bool {
    block["type"] == "text"
        && block["text"]
            .as_str()
            .is_some_and(|t| !t.trim_start().starts_with("<system-reminder>"))
}

/// The prompt text of a message's content (string or blocks), without tool results and
/// reminders.
fn text_of(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| is_prompt_text(b))
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A key for the turn a prompt starts: the prompt and how many times it was sent before.
/// Tool-call ids carry it, because Claude Code merges a conversation's messages (a new
/// prompt goes into the user message holding the previous turn's tool results, and the
/// assistant's messages are joined), so positions cannot tell turns apart.
fn turn_key(messages: &[Value], prompt: &str) -> String {
    use std::hash::{Hash, Hasher};
    let sent = messages
        .iter()
        .filter(|m| m["role"] == "user" && text_of(m).contains(prompt))
        .count();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (prompt, sent).hash(&mut hasher);
    format!("toolu_{:x}_", hasher.finish())
}

/// How many of this turn's tool calls have their results.
fn tool_results(messages: &[Value], key: &str) -> usize {
    messages
        .iter()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| {
            b["type"] == "tool_result"
                && b["tool_use_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(key))
        })
        .count()
}

/// What to answer: a tool call, or final text.
enum Answer {
    Text(String),
    Tool {
        name: String,
        input: Value,
        /// The call's id: the turn's key and the step.
        id: String,
    },
}

fn plan(request: &Value) -> (Answer, Duration) {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    // The turn starts at the last user message that is not only tool results.
    let turn_start = messages
        .iter()
        .rposition(|m| m["role"] == "user" && !text_of(m).trim().is_empty());
    let Some(start) = turn_start else {
        return (Answer::Text("ok".into()), Duration::ZERO);
    };
    let prompt = text_of(&messages[start]);
    let Some(script) = directives(&prompt) else {
        let first = prompt
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return (
            Answer::Text(format!(
                "Done: {}",
                first.chars().take(80).collect::<String>()
            )),
            Duration::ZERO,
        );
    };
    let key = turn_key(&messages, &prompt);
    let answered = tool_results(&messages, &key);
    let id = format!("{key}{answered}_{:x}", rand_id());
    let delay = if answered == 0 {
        script.sleep
    } else {
        Duration::ZERO
    };
    let answer = match script.steps.get(answered) {
        Some(Step::Write { path, content }) => Answer::Tool {
            name: "Write".into(),
            id,
            input: json!({ "file_path": path, "content": content }),
        },
        Some(Step::Bash { command, .. }) => Answer::Tool {
            name: "Bash".into(),
            id,
            input: json!({ "command": command, "description": "scripted command" }),
        },
        Some(Step::Tool { name, input }) => Answer::Tool {
            name: name.clone(),
            id,
            input: serde_json::from_str(input).unwrap_or_else(|_| json!({})),
        },
        None => Answer::Text(script.reply.unwrap_or_else(|| "Done.".into())),
    };
    (answer, delay)
}

fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

async fn messages(body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = request["model"]
        .as_str()
        .unwrap_or("claude-fake")
        .to_string();
    let (answer, delay) = plan(&request);
    tokio::time::sleep(delay).await;
    let id = format!("msg_{}", std::process::id());
    let usage = json!({ "input_tokens": 10, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 });
    let (block, delta, stop_reason, full) = match &answer {
        Answer::Text(text) => (
            json!({ "type": "text", "text": "" }),
            json!({ "type": "text_delta", "text": text }),
            "end_turn",
            json!({ "type": "text", "text": text }),
        ),
        Answer::Tool { name, input, id } => {
            let tool_id = id.clone();
            (
                json!({ "type": "tool_use", "id": tool_id, "name": name, "input": {} }),
                json!({ "type": "input_json_delta", "partial_json": input.to_string() }),
                "tool_use",
                json!({ "type": "tool_use", "id": tool_id, "name": name, "input": input }),
            )
        }
    };
    if request["stream"] != true {
        let body = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [full], "stop_reason": stop_reason, "stop_sequence": null, "usage": usage,
        });
        return (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let body = sse(&[
        (
            "message_start",
            json!({ "type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage } }),
        ),
        (
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0, "content_block": block }),
        ),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": delta }),
        ),
        (
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ),
        (
            "message_delta",
            json!({ "type": "message_delta", "delta": { "stop_reason": stop_reason, "stop_sequence": null }, "usage": { "output_tokens": 10 } }),
        ),
        ("message_stop", json!({ "type": "message_stop" })),
    ]);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .fallback(|| async { StatusCode::NOT_FOUND });
    axum::serve(listener, app).await?;
    Ok(())
}
