//! sm's HTTP API nested inside another axum app: your routes at `/`, sm's under `/sm`.
//!
//! `cargo run -p sm-examples --example embed_server -- --agent fake`

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use sm_lib::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.0 request, answered as (status, JSON body).
async fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agent = common::Agent::from_args()?;
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let backend = Arc::new(sm_backend_pty::PtyBackend::new()?);
    let engine = common::engine(Arc::new(MemoryStore::new()), backend, dir.path(), None).await?;
    let token = "example-admin-token";
    let sm = sm_server::router(sm_server::AppState {
        engine: engine.clone(),
        auth: sm_server::Auth::with_admin_token(token),
        url: format!("http://{addr}/sm"),
        default_models: Default::default(),
        // The dashboard lives at the server's root; nested under /sm it is left out.
        dashboard: sm_server::dashboard::Settings {
            enabled: false,
            remote: false,
        },
        nodes: Default::default(),
    });
    let app = Router::new()
        .route("/hello", get(|| async { "hello from the host app" }))
        .nest("/sm", sm);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving the host app and sm's API on http://{addr}");

    let (status, hello) = call(&addr, "GET", "/hello", "", "").await?;
    println!("GET /hello → {status} {hello}");
    anyhow::ensure!(status == 200);
    let (status, health) = call(&addr, "GET", "/sm/health", "", "").await?;
    println!("GET /sm/health → {status} {health}");
    anyhow::ensure!(status == 200 && health["status"] == "ok");

    let kind = if agent == common::Agent::Fake {
        "fake"
    } else {
        "claude"
    };
    let spawn = serde_json::json!({ "agent": kind, "name": "embedded", "working_dir": dir.path() });
    let (status, session) = call(&addr, "POST", "/sm/sessions", token, &spawn.to_string()).await?;
    println!("POST /sm/sessions → {status} {}", session["id"]);
    anyhow::ensure!(status == 200, "spawn failed: {session}");
    let input =
        serde_json::json!({ "text": "hello from the API [[reply hi]]", "mode": "sequential" });
    let (status, message) = call(
        &addr,
        "POST",
        "/sm/sessions/embedded/input",
        token,
        &input.to_string(),
    )
    .await?;
    println!(
        "POST /sm/sessions/embedded/input → {status} message #{}",
        message["id"]
    );
    anyhow::ensure!(status == 200);
    let (status, denied) = call(&addr, "GET", "/sm/sessions", "wrong-token", "").await?;
    println!(
        "GET /sm/sessions with a wrong token → {status} {}",
        denied["error"]["code"]
    );
    anyhow::ensure!(status == 401);

    let (status, _) = call(&addr, "DELETE", "/sm/sessions/embedded", token, "").await?;
    anyhow::ensure!(status == 200);
    server.abort();
    println!("the embedded API served, spawned, queued and refused as expected");
    Ok(())
}
