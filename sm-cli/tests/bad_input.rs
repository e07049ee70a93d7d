//! The bad-input corpus (`tests/corpus/bad_input.json`) against the real `sm` binary and the
//! real HTTP API: every case must get a clear error or a safe, sanitised result, never a
//! panic or a 5xx, and must not disturb anything else (a bystander agent receives nothing,
//! keeps its name; no session appears; the server stays up; the terminal title is untouched).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::Write;
use std::process::Stdio;

use serde_json::{Value, json};
use sm_lib::engine::sanitize_message;
use sm_tests::*;

/// A corpus string: plain text, `{"hex": "…"}` for bytes that are not UTF-8, or
/// `{"parts": [["unit", count], …]}` for long text.
fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Object(o) if o.contains_key("hex") => {
            let hex = o["hex"].as_str().unwrap();
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        }
        Value::Object(o) if o.contains_key("parts") => o["parts"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| {
                p[0].as_str()
                    .unwrap()
                    .repeat(p[1].as_u64().unwrap() as usize)
                    .into_bytes()
            })
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("bad corpus string {other}"),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct World {
    server: Server,
    admin: String,
    sentinel: String,
    sentinel_token: String,
    other: String,
    hooked: String,
    hooked_token: String,
    dead: String,
    dead_token: String,
}

impl World {
    fn id(&self, name: &str) -> String {
        self.server.session(name)["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn fill(&self, s: &str) -> String {
        s.replace("{sentinel}", &self.sentinel)
            .replace("{other}", &self.other)
            .replace("{dead}", &self.dead)
            .replace("{dead_name}", "deadone")
            .replace("{work}", &self.server.work().display().to_string())
            .replace(
                "{file}",
                &self.server.work().join("a-file.txt").display().to_string(),
            )
    }

    fn http(&self, method: &str, path: &str, auth: &str, ct: &str, body: &[u8]) -> (u16, Value) {
        let forged = format!("{}.{}", self.sentinel, "0".repeat(64));
        let token = match auth {
            "admin" => Some(self.admin.as_str()),
            "agent" => Some(self.sentinel_token.as_str()),
            "dead" => Some(self.dead_token.as_str()),
            "garbage" => Some("garbage-token"),
            "forged" => Some(forged.as_str()),
            "none" | "basic" => None,
            other => panic!("unknown auth {other}"),
        };
        if auth == "basic" {
            return self.server.http_with_header(
                method,
                path,
                ("Authorization", "Basic YWRtaW46YWRtaW4="),
                body,
            );
        }
        self.server.http(method, path, token, Some(ct), body)
    }

    /// Runs `sm` as a human with `stdin`; returns (exit code, stderr).
    fn sm(&self, args: &[&str], stdin: &[u8]) -> (i32, String) {
        let mut child = self
            .server
            .sm_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let code = out.status.code().unwrap_or(-1);
        assert_ne!(code, 101, "sm {args:?} panicked: {}", stderr(&out));
        (code, stderr(&out))
    }
}

fn assert_error_body(case: &str, status: u16, body: &Value) {
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
        "{case}: HTTP {status} without a JSON error (code and message): {body}"
    );
}

#[test]
fn every_case_of_the_bad_input_corpus_is_refused_clearly_or_made_safe() {
    let corpus: Value =
        serde_json::from_str(include_str!("corpus/bad_input.json")).expect("corpus is JSON");
    let cases = corpus["cases"].as_array().unwrap();
    assert!(cases.len() >= 200, "the corpus has {} cases", cases.len());

    let server = Server::start();
    std::fs::write(server.work().join("a-file.txt"), "not a directory").unwrap();
    for (name, prompt) in [
        ("sentinel", "hello sentinel"),
        ("other", "hello other"),
        ("target", "hello target"),
        ("hooked", "hello hooked"),
        ("deadone", "hello dead"),
    ] {
        server.ok(&["spawn", "--agent", "fake", "--name", name, prompt]);
        server.wait_prompts(name, 1);
    }
    let admin = server.token();
    let mut world = World {
        sentinel: String::new(),
        sentinel_token: String::new(),
        other: String::new(),
        hooked: String::new(),
        hooked_token: String::new(),
        dead: String::new(),
        dead_token: String::new(),
        admin,
        server,
    };
    world.sentinel = world.id("sentinel");
    world.sentinel_token = world.server.token_of(&world.sentinel);
    world.other = world.id("other");
    world.hooked = world.id("hooked");
    world.hooked_token = world.server.token_of(&world.hooked);
    world.dead = world.id("deadone");
    world.dead_token = world.server.token_of(&world.dead);
    world.server.ok(&["kill", "deadone"]);
    world.server.until("deadone to be gone", || {
        world.server.find("deadone").is_none().then_some(())
    });
    let live_before = world.server.json(&["all"]).as_array().unwrap().len();
    let target_pane = format!("={}:={}", world.server.socket, world.id("target"));
    let title = || {
        std::process::Command::new("tmux")
            .args(["-L", &world.server.socket, "display-message", "-p", "-t"])
            .arg(&target_pane)
            .arg("#{pane_title}")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let title_before = title();

    let mut expected_at_target: Vec<String> = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for case in cases {
        let surface = case["surface"].as_str().unwrap();
        let name = case["name"].as_str().unwrap();
        *counts.entry(surface).or_default() += 1;
        match surface {
            "text" => {
                let bytes = bytes_of(&case["text"]);
                let text = String::from_utf8(bytes.clone()).ok();
                let clean = text
                    .as_deref()
                    .map(|t| sanitize_message(t, 100_000).map_err(|e| e.to_string()));
                // Over HTTP.
                let body = match &text {
                    Some(t) => json!({ "text": t }).to_string().into_bytes(),
                    None => [br#"{"text":""#.as_slice(), &bytes, br#""}"#].concat(),
                };
                let (status, answer) = world.http(
                    "POST",
                    "/sessions/target/input",
                    "admin",
                    "application/json",
                    &body,
                );
                match &clean {
                    Some(Ok(clean)) => {
                        assert_eq!(status, 200, "{name}: {answer}");
                        assert_eq!(answer["text"], clean.as_str(), "{name}: stored text");
                        expected_at_target.push(clean.clone());
                    }
                    _ => {
                        assert_eq!(status, 400, "{name}: {answer}");
                        assert_error_body(name, status, &answer);
                    }
                }
                // Through the CLI: as an argument when the OS allows it, else on stdin.
                let as_arg = text
                    .as_deref()
                    .filter(|t| !t.contains('\0') && t.len() < 100_000);
                let (code, err) = match as_arg {
                    Some(t) => world.sm(&["send", "--", "target", t], b""),
                    None => world.sm(&["send", "target", "-"], &bytes),
                };
                match &clean {
                    Some(Ok(clean)) => {
                        assert_eq!(code, 0, "{name}: sm send failed: {err}");
                        expected_at_target.push(clean.clone());
                    }
                    Some(Err(_)) => {
                        assert_eq!(code, 1, "{name}: {err}");
                        assert!(err.contains("[invalid_input]"), "{name}: {err}");
                    }
                    None => {
                        assert_eq!(code, 2, "{name}: {err}");
                        assert!(err.contains("not UTF-8"), "{name}: {err}");
                    }
                }
            }
            "name" => {
                let value = String::from_utf8(bytes_of(&case["value"])).unwrap();
                let (status, answer) = world.http(
                    "POST",
                    &format!("/sessions/{}/name", world.sentinel),
                    "admin",
                    "application/json",
                    json!({ "name": value }).to_string().as_bytes(),
                );
                assert!((400..500).contains(&status), "{name}: rename gave {status}");
                assert_error_body(name, status, &answer);
                let (status, answer) = world.http(
                    "POST",
                    "/sessions",
                    "admin",
                    "application/json",
                    json!({ "agent": "fake", "name": value, "working_dir": world.server.work() })
                        .to_string()
                        .as_bytes(),
                );
                assert!((400..500).contains(&status), "{name}: spawn gave {status}");
                assert_error_body(name, status, &answer);
                if !value.contains('\0') {
                    let (code, err) = world.sm(&["name", "--", &value, "sentinel"], b"");
                    assert!(code == 1 || code == 2, "{name}: sm name exit {code}");
                    assert!(!err.trim().is_empty(), "{name}: no message");
                }
            }
            "ref" => {
                let value = world.fill(&String::from_utf8(bytes_of(&case["value"])).unwrap());
                let (status, answer) = world.http(
                    "GET",
                    &format!("/sessions/{}", enc(&value)),
                    "admin",
                    "application/json",
                    b"",
                );
                assert!(status < 500, "{name}: GET gave {status}: {answer}");
                let (status, answer) = world.http(
                    "POST",
                    &format!("/sessions/{}/input", enc(&value)),
                    "admin",
                    "application/json",
                    br#"{"text":"a probe that must go nowhere"}"#,
                );
                assert!((400..500).contains(&status), "{name}: input gave {status}");
                assert_error_body(name, status, &answer);
                if !value.contains('\0') {
                    let (code, err) =
                        world.sm(&["send", "--", &value, "a probe that must go nowhere"], b"");
                    assert!(code == 1 || code == 2, "{name}: sm send exit {code}");
                    assert!(!err.trim().is_empty(), "{name}: no message");
                }
            }
            "dir" => {
                let value = world.fill(&String::from_utf8(bytes_of(&case["value"])).unwrap());
                let (status, answer) = world.http(
                    "POST",
                    "/sessions",
                    "admin",
                    "application/json",
                    json!({ "agent": "fake", "working_dir": value, "prompt": "x" })
                        .to_string()
                        .as_bytes(),
                );
                assert!(
                    (400..500).contains(&status),
                    "{name}: spawn gave {status}: {answer}"
                );
                assert_error_body(name, status, &answer);
                if !value.contains('\0') {
                    let (code, err) = world.sm(
                        &["spawn", "--agent", "fake", &format!("--dir={value}"), "x"],
                        b"",
                    );
                    assert!(
                        code == 1 || code == 2,
                        "{name}: sm spawn exit {code}: {err}"
                    );
                    assert!(!err.trim().is_empty(), "{name}: no message");
                }
            }
            "hook" => {
                let event = case["event"].as_str().unwrap();
                let body = bytes_of(&case["body"]);
                let (status, answer) = world.server.http(
                    "POST",
                    &format!("/hooks/{event}"),
                    Some(&world.hooked_token),
                    Some("application/json"),
                    &body,
                );
                assert!(status < 500, "{name}: hook gave {status}: {answer}");
                if status >= 400 {
                    assert_error_body(name, status, &answer);
                }
                let mut cmd = world.server.sm_command();
                cmd.args(["hook", event])
                    .env("SM_SESSION_ID", &world.hooked)
                    .env("SM_TOKEN", &world.hooked_token)
                    .env("SM_SERVER_URL", world.server.url())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = cmd.spawn().unwrap();
                let mut input = child.stdin.take().unwrap();
                let writer = std::thread::spawn(move || {
                    let _ = input.write_all(&body);
                });
                let out = child.wait_with_output().unwrap();
                writer.join().unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{name}: a hook must never fail its agent: {}",
                    stderr(&out)
                );
            }
            "http" => {
                let method = case["method"].as_str().unwrap();
                let path = world.fill(case["path"].as_str().unwrap());
                let body = bytes_of(&case["body"]);
                let (status, answer) = world.http(
                    method,
                    &path,
                    case["auth"].as_str().unwrap(),
                    case["content_type"].as_str().unwrap(),
                    &body,
                );
                match &case["expect"] {
                    Value::Number(n) => {
                        assert_eq!(u64::from(status), n.as_u64().unwrap(), "{name}: {answer}")
                    }
                    Value::String(s) if s == "4xx" => {
                        assert!((400..500).contains(&status), "{name}: {status} {answer}")
                    }
                    Value::String(s) if s == "2xx-or-4xx" => {
                        assert!(status < 500 && status != 300, "{name}: {status} {answer}")
                    }
                    other => panic!("{name}: unknown expectation {other}"),
                }
                if status >= 400 {
                    assert_error_body(name, status, &answer);
                }
            }
            "cli" => {
                let args: Vec<String> = case["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let stdin = bytes_of(&case["stdin"]);
                let (code, err) = world.sm(&args, &stdin);
                match &case["expect"] {
                    Value::Number(n) => {
                        assert_eq!(code as u64, n.as_u64().unwrap(), "{name}: {err}")
                    }
                    Value::String(s) if s == "nonzero" => assert!(code != 0, "{name}: {err}"),
                    other => panic!("{name}: unknown expectation {other}"),
                }
                if code != 0 {
                    assert!(
                        !err.trim().is_empty(),
                        "{name}: exit {code} without a message"
                    );
                }
            }
            other => panic!("unknown surface {other}"),
        }
    }

    // Every accepted text arrived sanitised, once, in order; nothing else did.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let got = loop {
        let p = world.server.prompts("target");
        if p.len() > expected_at_target.len() {
            break p;
        }
        if std::time::Instant::now() > deadline {
            let n = p.len().saturating_sub(1);
            panic!(
                "the target received {n} of {} accepted texts; next expected: {:?}; status: {}; screen:\n{}",
                expected_at_target.len(),
                expected_at_target
                    .get(n)
                    .map(|t| t.chars().take(200).collect::<String>()),
                world.server.session("target")["status"],
                world.server.ok(&["output", "target"])
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(got[0], "hello target");
    for (i, (got, want)) in got[1..].iter().zip(&expected_at_target).enumerate() {
        assert_eq!(got, want, "text #{i} arrived changed");
    }
    assert_eq!(
        got.len(),
        expected_at_target.len() + 1,
        "extra prompts: {got:?}"
    );
    for p in &got {
        assert!(
            !p.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            "a control character reached the agent: {p:?}"
        );
    }

    // Nothing else was disturbed.
    assert_eq!(title(), title_before, "the terminal title changed");
    assert_eq!(world.server.prompts("sentinel"), vec!["hello sentinel"]);
    assert_eq!(world.server.prompts("other"), vec!["hello other"]);
    assert_eq!(
        world.server.json(&["all"]).as_array().unwrap().len(),
        live_before,
        "sessions appeared or vanished"
    );
    let (status, _) = world.http("GET", "/health", "admin", "application/json", b"");
    assert_eq!(status, 200, "the server is not healthy");
    assert!(world.server.is_running(), "the server died");
    let log = world.server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(
        !log.contains(&world.admin) && !log.contains(&world.sentinel_token),
        "a token appeared in the server log"
    );
    println!("bad-input corpus: {} cases passed: {counts:?}", cases.len());
}

#[test]
fn every_route_but_health_and_docs_refuses_a_request_without_a_valid_token() {
    let server = Server::start();
    let (status, spec) = server.http("GET", "/openapi.json", None, None, b"");
    assert_eq!(status, 200);
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "delete", "put", "patch"] {
            if item.get(method).is_none() || path == "/health" {
                continue;
            }
            let concrete = path
                .replace("{id}", "some-agent")
                .replace("{event}", "stop");
            let method = method.to_uppercase();
            for token in [None, Some("not-a-token"), Some("x.y")] {
                let (status, body) =
                    server.http(&method, &concrete, token, Some("application/json"), b"{}");
                assert_eq!(
                    status, 401,
                    "{method} {path} with token {token:?} answered {status}: {body}"
                );
                assert_eq!(body["error"]["code"], "unauthorized");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 20,
        "only {checked} routes in the OpenAPI document"
    );
    // Health says only that the server is up, and the docs are public.
    assert_eq!(server.http("GET", "/health", None, None, b"").0, 200);
    assert_eq!(server.http("GET", "/docs/", None, None, b"").0, 200);
}

/// Sends raw bytes as one request and returns the status and the body as JSON.
fn raw_request(s: &Server, request: &[u8]) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = s.url().trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, body)
}

#[test]
fn requests_the_http_parser_refused_got_an_empty_body() {
    let s = Server::start();
    let token = s.token();
    let big = "x".repeat(1024 * 1024);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8 in the path",
            b"GET /sessions/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a NUL in a header",
            format!("GET /sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Bad: a\0b\r\n\r\n").into_bytes(),
            400,
        ),
        (
            "a Content-Length that is not a number",
            b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Length: twelve\r\n\r\n{}".to_vec(),
            400,
        ),
        (
            "two different Content-Lengths",
            b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            400,
        ),
        (
            "headers over the parser's limit",
            format!("GET /sessions HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").into_bytes(),
            431,
        ),
    ];
    for (case, request, expected) in cases {
        let (status, body) = raw_request(&s, &request);
        assert_eq!(status, expected, "{case}: {body}");
        assert_error_body(case, status, &body);
    }
    // The server is still there.
    assert_eq!(s.http("GET", "/health", None, None, b"").0, 200);
}
