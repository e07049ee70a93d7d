//! `sm mcp` driven by an MCP client (the official SDK's client side) over a real child
//! process, as an agent's client runs it: the tool list and schemas, every tool's success
//! and error paths on a real server with fake agents, and identity — the tools act only as
//! the agent whose environment they run in.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use sm_tests::*;

const TOOLS: [&str; 15] = [
    "answer", "children", "clear", "kill", "lock", "others", "output", "send", "set_name",
    "set_task", "spawn", "status", "unlock", "wait", "what",
];

type Mcp = RunningService<RoleClient, ()>;

/// `sm mcp` started the way an agent's client starts it: in the agent's directory, with
/// the agent's environment (`Some(name)`) or none of sm's (`None`).
async fn mcp_as(server: &Server, agent: Option<&str>) -> Mcp {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sm"));
    cmd.arg("mcp")
        .current_dir(server.work())
        .env("SM_CONFIG", server.path().join("config.yaml"))
        .env_remove("SM_SESSION_ID")
        .env_remove("CLAUDE_SESSION_MANAGER_ID")
        .env_remove("SM_SERVER_URL")
        .env_remove("SM_TOKEN");
    if let Some(name) = agent {
        let id = server.session(name)["id"].as_str().unwrap().to_string();
        cmd.env("SM_SESSION_ID", &id)
            .env("SM_SERVER_URL", server.url())
            .env("SM_TOKEN", server.agent_token(name));
    }
    ().serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap()
}

async fn call(mcp: &Mcp, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    mcp.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A successful call's structured content.
async fn ok(mcp: &Mcp, tool: &str, args: Value) -> Value {
    let result = call(mcp, tool, args.clone()).await;
    assert_eq!(
        result.is_error,
        Some(false),
        "{tool} {args} failed: {}",
        text(&result)
    );
    assert!(!text(&result).is_empty(), "{tool} says nothing");
    result.structured_content.unwrap()
}

/// A refused call's sm error code, checked to be a tool error with code and message.
async fn refused(mcp: &Mcp, tool: &str, args: Value) -> String {
    let result = call(mcp, tool, args.clone()).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} {args} should fail: {}",
        text(&result)
    );
    let error = result.structured_content.clone().unwrap();
    let (code, message) = (
        error["code"].as_str().unwrap().to_string(),
        error["message"].as_str().unwrap(),
    );
    assert!(!message.is_empty());
    assert!(
        text(&result).contains(&format!("[{code}]")),
        "{}",
        text(&result)
    );
    code
}

fn names(list: &Value) -> BTreeSet<String> {
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_list_with_descriptions_and_schemas_and_none_outside_an_agent() {
    let server = Server::start();
    server.ok(&["spawn", "--agent", "fake", "--name", "em"]);
    let mcp = mcp_as(&server, Some("em")).await;
    let info = mcp.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "sm");
    assert!(
        info.instructions
            .as_deref()
            .is_some_and(|i| i.contains("return at once"))
    );
    let tools = mcp.list_all_tools().await.unwrap();
    let listed: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(listed, TOOLS.into_iter().collect());
    for tool in &tools {
        assert!(
            tool.description.as_deref().is_some_and(|d| d.len() > 20),
            "{} needs a description",
            tool.name
        );
        assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
    }
    let send = tools.iter().find(|t| t.name == "send").unwrap();
    let schema = Value::Object((*send.input_schema).clone());
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, ["target", "text"].into_iter().collect());
    let modes = schema.to_string();
    for mode in ["sequential", "important", "urgent"] {
        assert!(modes.contains(mode), "send's schema names {mode}: {modes}");
    }
    let wait = tools.iter().find(|t| t.name == "wait").unwrap();
    assert!(
        wait.description
            .as_deref()
            .unwrap()
            .contains("Returns at once")
    );
    mcp.cancel().await.unwrap();

    // Outside an agent sm started there is no identity to act as: no tools, and why.
    let outside = mcp_as(&server, None).await;
    assert!(outside.list_all_tools().await.unwrap().is_empty());
    assert!(
        outside
            .peer_info()
            .unwrap()
            .instructions
            .as_deref()
            .is_some_and(|i| i.contains("SM_SESSION_ID"))
    );
    outside.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_works_as_the_agent_and_refuses_with_sm_error_codes() {
    let server = Server::start();
    server.ok(&["spawn", "--agent", "fake", "--name", "em"]);
    server.ok(&["spawn", "--agent", "fake", "--name", "stranger"]);
    let mcp = mcp_as(&server, Some("em")).await;
    let em_id = server.session("em")["id"].as_str().unwrap().to_string();

    // spawn: the agent becomes the parent; a bad name is refused and starts nothing.
    let kid = ok(
        &mcp,
        "spawn",
        json!({ "agent": "fake", "name": "kid", "prompt": "first [[reply hello]]" }),
    )
    .await;
    assert_eq!(kid["name"], "kid");
    assert_eq!(kid["parent"], em_id.as_str());
    server.wait_prompts("kid", 1);
    assert_eq!(
        refused(
            &mcp,
            "spawn",
            json!({ "agent": "fake", "name": "no spaces" })
        )
        .await,
        "invalid_name"
    );
    assert_eq!(
        refused(&mcp, "spawn", json!({ "agent": "no-such-kind" })).await,
        "invalid_input"
    );
    server.wait_status("kid", "idle");

    // send: queued once, delivered once; urgent and important are modes, not words.
    let message = ok(
        &mcp,
        "send",
        json!({ "target": "kid", "text": "do the thing [[reply done it]]", "mode": "important" }),
    )
    .await;
    assert!(message["id"].as_u64().is_some(), "{message}");
    assert_eq!(message["mode"], "important");
    let prompts = server.wait_prompts("kid", 2);
    assert_eq!(
        prompts
            .iter()
            .filter(|p| p.as_str() == "do the thing [[reply done it]]")
            .count(),
        1
    );
    assert_eq!(
        refused(&mcp, "send", json!({ "target": "nobody", "text": "hi" })).await,
        "session_not_found"
    );
    // Arguments that do not fit the schema are refused before anything is sent.
    let bad = call(
        &mcp,
        "send",
        json!({ "target": "kid", "text": "loud", "mode": "loud" }),
    )
    .await;
    assert_eq!(bad.is_error, Some(true));
    assert!(text(&bad).contains("loud"), "{}", text(&bad));
    let missing = call(&mcp, "send", json!({ "target": "kid" })).await;
    assert_eq!(missing.is_error, Some(true));
    assert!(text(&missing).contains("text"), "{}", text(&missing));
    server.wait_status("kid", "idle");

    // wait: returns at once; the wake arrives as a message to the waiting agent.
    ok(
        &mcp,
        "send",
        json!({ "target": "kid", "text": "slow [[sleep 1]] [[reply slow done]]" }),
    )
    .await;
    server.wait_prompts("kid", 3);
    let waiting = ok(&mcp, "wait", json!({ "target": "kid", "timeout_secs": 60 })).await;
    assert!(waiting.is_object());
    server.until("em woken by kid", || {
        server
            .prompts("em")
            .iter()
            .any(|p| p.contains("[sm] kid"))
            .then_some(())
    });
    assert_eq!(
        refused(
            &mcp,
            "wait",
            json!({ "target": "nobody", "timeout_secs": 5 })
        )
        .await,
        "session_not_found"
    );

    // children, others, status.
    let kids = ok(&mcp, "children", json!({})).await;
    assert_eq!(names(&kids), ["kid".to_string()].into_iter().collect());
    let none = ok(&mcp, "children", json!({ "status": "working" })).await;
    assert!(names(&none).is_empty() || names(&none).contains("kid"));
    assert_eq!(
        refused(&mcp, "children", json!({ "parent": "nobody" })).await,
        "session_not_found"
    );
    let others = ok(&mcp, "others", json!({})).await;
    assert_eq!(
        names(&others),
        ["kid".to_string(), "stranger".to_string()]
            .into_iter()
            .collect()
    );
    let status = ok(&mcp, "status", json!({})).await;
    assert_eq!(status["me"]["id"], em_id.as_str(), "{status}");

    // what, output.
    let summary = ok(&mcp, "what", json!({ "target": "kid" })).await;
    assert!(summary["summary"].as_str().is_some(), "{summary}");
    assert_eq!(
        refused(&mcp, "what", json!({ "target": "nobody" })).await,
        "session_not_found"
    );
    let screen = call(&mcp, "output", json!({ "target": "kid", "lines": 40 })).await;
    assert!(text(&screen).contains("slow done"), "{}", text(&screen));
    assert_eq!(
        refused(&mcp, "output", json!({ "target": "nobody" })).await,
        "session_not_found"
    );

    // set_task, set_name: on itself and on its child; not on a stranger.
    let me = ok(&mcp, "set_task", json!({ "task": "running the show" })).await;
    assert_eq!(me["task"], "running the show");
    let kid = ok(
        &mcp,
        "set_task",
        json!({ "task": "the thing", "session": "kid" }),
    )
    .await;
    assert_eq!(kid["task"], "the thing");
    assert_eq!(
        refused(
            &mcp,
            "set_task",
            json!({ "task": "x", "session": "stranger" })
        )
        .await,
        "forbidden"
    );
    let renamed = ok(
        &mcp,
        "set_name",
        json!({ "name": "kiddo", "session": "kid" }),
    )
    .await;
    assert_eq!(renamed["name"], "kiddo");
    assert_eq!(
        refused(&mcp, "set_name", json!({ "name": "bad name" })).await,
        "invalid_name"
    );
    ok(
        &mcp,
        "set_name",
        json!({ "name": "kid", "session": "kiddo" }),
    )
    .await;

    // lock, unlock: the workspace lock is the agent's; a second agent is refused.
    let lock = ok(&mcp, "lock", json!({ "reason": "refactoring" })).await;
    assert_eq!(lock["holder"], em_id.as_str(), "{lock}");
    let stranger = mcp_as(&server, Some("stranger")).await;
    let code = refused(&stranger, "lock", json!({ "reason": "me too" })).await;
    assert_eq!(code, "lock_conflict");
    let released = ok(&mcp, "unlock", json!({})).await;
    assert_eq!(released["released"].as_array().unwrap().len(), 1);

    // answer: a question on the child's screen, answered by option; none → refused.
    assert_eq!(
        refused(&mcp, "answer", json!({ "target": "kid", "option": 1 })).await,
        "busy"
    );
    let made = server.work().join("made.txt");
    server.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "asker",
        &format!("[[bash touch {}]] [[reply made]]", made.display()),
    ]);
    server.wait_status("asker", "needs_input");
    // asker is not em's child: em may not answer for it.
    assert_eq!(
        refused(&mcp, "answer", json!({ "target": "asker", "option": 1 })).await,
        "forbidden"
    );
    let kid_made = server.work().join("kid-made.txt");
    ok(
        &mcp,
        "send",
        json!({ "target": "kid", "text": format!("[[bash touch {}]] [[reply made]]", kid_made.display()) }),
    )
    .await;
    server.wait_status("kid", "needs_input");
    let answered = ok(&mcp, "answer", json!({ "target": "kid", "option": 1 })).await;
    assert!(
        answered["answered"].as_str().unwrap().contains("Yes"),
        "{answered}"
    );
    server.until("the answered command to run", || {
        kid_made.exists().then_some(())
    });
    server.wait_status("kid", "idle");

    // clear, kill: the child's, never a stranger's.
    ok(&mcp, "clear", json!({ "target": "kid" })).await;
    assert_eq!(
        refused(&mcp, "clear", json!({ "target": "stranger" })).await,
        "forbidden"
    );
    assert_eq!(
        refused(&mcp, "kill", json!({ "target": "stranger" })).await,
        "forbidden"
    );
    assert_eq!(server.session("stranger")["status"], "idle");
    let killed = ok(&mcp, "kill", json!({ "target": "kid" })).await;
    assert_eq!(killed["name"], "kid");
    assert!(server.find("kid").is_none(), "kid is gone");
    assert_eq!(
        refused(&mcp, "kill", json!({ "target": "kid" })).await,
        "session_not_found"
    );

    // With the server down every tool says so, with its own code.
    let mut server = server;
    server.stop();
    assert_eq!(refused(&mcp, "status", json!({})).await, "server_down");
    assert_eq!(refused(&mcp, "others", json!({})).await, "server_down");
    assert_eq!(refused(&mcp, "unlock", json!({})).await, "server_down");
    mcp.cancel().await.unwrap();
    stranger.cancel().await.unwrap();
}
