//! `sm-fake-openai`: a local stand-in for the OpenAI Responses API, so the real Codex CLI
//! can run under sm with no network and no model.
//!
//! It answers `POST /v1/responses` with a server-sent event stream, scripted by directives
//! in the turn's user prompt (the last user message that is not Codex's own context):
//! `[[reply text]]` (the final answer), `[[write path content]]` (an `apply_patch` that adds
//! the file), `[[bash command]]` (an `exec_command` the sandbox allows), `[[escalate
//! command]]` (an `exec_command` that asks for approval), `[[sleep N]]` (delay before the
//! first answer of the turn). Each request answers the next step: the first tool call not
//! yet answered by a tool output, else the reply. A prompt without directives is answered
//! `Done: <its last line>`.
//!
//! Codex also asks, on a side thread, for a title for each new task; those requests are
//! answered at once with a fixed title and never run a script.
//!
//! `--log FILE` appends one JSON line per scripted request: the Codex session id, the turn's
//! prompt, how many tool outputs it carried and the names of the tools offered — so a test can count how often the model
//! received a message. Prints `listening on http://127.0.0.1:<port>` and serves until
//! killed; `--port N` picks the port (default: any free one).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[path = "../fake_api/script.rs"]
mod script;

use script::{Step, directives};

/// The text of a Responses API input message (its `input_text` parts).
fn text_of(item: &Value) -> String {
    match &item["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Codex sends its own context (environment, instructions, skills) as user messages; they
/// start with a tag or a heading.
fn is_codex_context(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with('<') || t.starts_with("# AGENTS.md")
}

enum Answer {
    Text(String),
    Call(Value),
}

/// The turn's prompt, what to answer and how long to wait first.
fn plan(request: &Value) -> (String, usize, Answer, Duration) {
    let input = request["input"].as_array().cloned().unwrap_or_default();
    let start = input.iter().rposition(|i| {
        i["type"] == "message" && i["role"] == "user" && !is_codex_context(&text_of(i))
    });
    let Some(start) = start else {
        return (String::new(), 0, Answer::Text("ok".into()), Duration::ZERO);
    };
    let prompt = text_of(&input[start]);
    let answered = input[start..]
        .iter()
        .filter(|i| {
            matches!(
                i["type"].as_str(),
                Some("function_call_output" | "custom_tool_call_output")
            )
        })
        .count();
    let Some(script) = directives(&prompt) else {
        let last = prompt
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let reply = format!("Done: {}", last.chars().take(80).collect::<String>());
        return (prompt, answered, Answer::Text(reply), Duration::ZERO);
    };
    let delay = if answered == 0 {
        script.sleep
    } else {
        Duration::ZERO
    };
    let call_id = format!("call_{answered}_{:x}", unique());
    let answer = match script.steps.get(answered) {
        Some(Step::Write { path, content }) => Answer::Call(json!({
            "type": "custom_tool_call",
            "id": format!("ctc_{call_id}"),
            "call_id": call_id,
            "name": "apply_patch",
            "input": format!("*** Begin Patch\n*** Add File: {path}\n+{content}\n*** End Patch\n"),
            "status": "completed",
        })),
        Some(Step::Bash { command, escalate }) => {
            let mut arguments = json!({ "cmd": command, "yield_time_ms": 10000 });
            if *escalate {
                arguments["sandbox_permissions"] = "require_escalated".into();
                arguments["justification"] = "the script asks for it".into();
            }
            Answer::Call(json!({
                "type": "function_call",
                "id": format!("fc_{call_id}"),
                "call_id": call_id,
                "name": "exec_command",
                "arguments": arguments.to_string(),
                "status": "completed",
            }))
        }
        Some(Step::Tool { name, input }) => Answer::Call(json!({
            "type": "function_call",
            "id": format!("fc_{call_id}"),
            "call_id": call_id,
            "name": name,
            "arguments": input,
            "status": "completed",
        })),
        None => Answer::Text(script.reply.unwrap_or_else(|| "Done.".into())),
    };
    (prompt, answered, answer, delay)
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|data| {
            let name = data["type"].as_str().unwrap_or("message");
            format!("event: {name}\ndata: {data}\n\n")
        })
        .collect()
}

fn stream(model: &str, answer: &Answer) -> String {
    let id = format!("resp_{:x}", unique());
    let response = |status: &str, output: Value| {
        json!({
            "id": id, "object": "response", "status": status, "model": model, "output": output,
            "usage": {
                "input_tokens": 10, "input_tokens_details": { "cached_tokens": 0 },
                "output_tokens": 5, "output_tokens_details": { "reasoning_tokens": 0 },
                "total_tokens": 15,
            },
        })
    };
    let mut events =
        vec![json!({ "type": "response.created", "response": response("in_progress", json!([])) })];
    let item = match answer {
        Answer::Text(text) => {
            let item_id = format!("msg_{:x}", unique());
            let part = json!({ "type": "output_text", "text": text, "annotations": [] });
            events.push(json!({ "type": "response.output_item.added", "output_index": 0,
                "item": { "type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": [] } }));
            events.push(json!({ "type": "response.content_part.added", "item_id": item_id, "output_index": 0,
                "content_index": 0, "part": { "type": "output_text", "text": "", "annotations": [] } }));
            events.push(
                json!({ "type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                "content_index": 0, "delta": text }),
            );
            events.push(
                json!({ "type": "response.output_text.done", "item_id": item_id, "output_index": 0,
                "content_index": 0, "text": text }),
            );
            json!({ "type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [part] })
        }
        Answer::Call(call) => {
            events.push(
                json!({ "type": "response.output_item.added", "output_index": 0, "item": call }),
            );
            call.clone()
        }
    };
    events.push(json!({ "type": "response.output_item.done", "output_index": 0, "item": item }));
    events.push(
        json!({ "type": "response.completed", "response": response("completed", json!([item])) }),
    );
    sse(&events)
}

struct Fake {
    log: Option<Mutex<std::fs::File>>,
}

async fn responses(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or("gpt-fake").to_string();
    let metadata: Value = headers
        .get("x-codex-turn-metadata")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(Value::Null);
    let session = headers
        .get("session-id")
        .and_then(|v| v.to_str().ok())
        .or(metadata["session_id"].as_str())
        .unwrap_or("")
        .to_string();
    let answer_now = |answer: Answer| {
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            stream(&model, &answer),
        )
            .into_response()
    };
    if metadata["thread_source"] == "thread_title" {
        return answer_now(Answer::Text("Scripted task".into()));
    }
    let (prompt, answered, answer, delay) = plan(&request);
    if let Some(log) = &fake.log {
        // The tools Codex offers the model, by name (MCP servers' tools among them).
        let tools: Vec<Value> = request["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().or(t["type"].as_str()).map(|n| json!(n)))
            .collect();
        let line = json!({ "session_id": session, "prompt": prompt, "tool_outputs": answered, "tools": tools });
        if let Ok(mut file) = log.lock() {
            let _ = writeln!(file, "{line}");
        }
    }
    tokio::time::sleep(delay).await;
    answer_now(answer)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let port = match value_of("--port") {
        Some(p) => p
            .parse::<u16>()
            .map_err(|e| anyhow::anyhow!("--port {p:?}: {e}"))?,
        None => 0,
    };
    let log = match value_of("--log").map(PathBuf::from) {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?,
        )),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let app = Router::new()
        .route("/v1/responses", post(responses))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(Arc::new(Fake { log }));
    axum::serve(listener, app).await?;
    Ok(())
}
