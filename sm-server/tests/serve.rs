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

#[test]
fn server_starts_on_sqlite_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let state_file = dir.path().join("state/sessions.json");
    std::fs::write(
        &config,
        format!(
            "server:\n  host: 127.0.0.1\n  port: 0\npaths:\n  state_file: {}\n",
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
    assert!(response.contains(r#""store":"sqlite""#), "{response}");
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
