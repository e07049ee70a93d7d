//! The real `sm-server` binary: starts on the embedded SQLite store, answers `/health`,
//! stops cleanly on SIGTERM, and refuses a bad configuration with a message naming the key.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    // The server may answer (413) before reading a huge body; a reset then is fine.
    let _ = stream.write_all(body.as_bytes());
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn server_starts_on_sqlite_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let state_file = dir.path().join("state/sessions.json");
    std::fs::write(
        &config,
        format!(
            "server:\n  host: 127.0.0.1\n  port: 0\npaths:\n  state_file: {}\nterminal:\n  backend: pty\n",
            state_file.display()
        ),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_sm-server"))
        .arg("--config")
        .arg(&config)
        .env("NO_COLOR", "1")
        .env("SM_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        assert!(
            Instant::now() < deadline,
            "server did not report its address"
        );
        let line = lines.next().expect("server exited early").unwrap();
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let response = http_get(&addr, "/health");
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.contains(r#""status":"ok""#), "{response}");
    assert!(response.contains(r#""backend":"pty""#), "{response}");
    // Everything else needs a token, and errors are JSON with a stable code.
    let response = http_get(&addr, "/sessions");
    assert!(response.starts_with("HTTP/1.0 401"), "{response}");
    assert!(response.contains(r#""code":"unauthorized""#), "{response}");
    let token = std::fs::read_to_string(state_file.with_file_name("token")).unwrap();
    let response = http(&addr, "POST", "/sessions", &token, "{not json");
    assert!(response.starts_with("HTTP/1.0 400"), "{response}");
    assert!(response.contains(r#""code":"invalid_body""#), "{response}");
    let response = http(
        &addr,
        "POST",
        "/sessions",
        &token,
        r#"{"agent": 7, "working_dir": "/tmp"}"#,
    );
    assert!(response.starts_with("HTTP/1.0 400"), "{response}");
    let response = http(
        &addr,
        "POST",
        "/sessions",
        &token,
        r#"{"agent": "robot", "working_dir": "/tmp"}"#,
    );
    assert!(response.contains("unknown agent kind"), "{response}");
    let response = http(
        &addr,
        "POST",
        "/sessions/nobody/input",
        &token,
        r#"{"text": "hi"}"#,
    );
    assert!(response.starts_with("HTTP/1.0 404"), "{response}");
    assert!(
        response.contains(r#""code":"session_not_found""#),
        "{response}"
    );
    let huge = format!(r#"{{"text": "{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let response = http(&addr, "POST", "/sessions/nobody/input", &token, &huge);
    assert!(
        response.starts_with("HTTP/1.0 413"),
        "{}",
        &response[..100.min(response.len())]
    );
    let health = http_get(&addr, "/health");
    assert!(
        health.starts_with("HTTP/1.0 200"),
        "the server stays up: {health}"
    );
    assert!(
        state_file.with_file_name("sm.db").exists(),
        "the database lives beside paths.state_file"
    );

    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.wait().unwrap();
    assert!(exit.success(), "server exit: {exit:?}");
}

#[test]
fn a_bad_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "server:\n  port: lots\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sm-server"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.port (line 2)"), "{stderr}");
}
