//! Telegram control end to end: the real server, with `telegram.api_url` pointed at a fake
//! Bot API (a real HTTP server on port 0 in this test) that serves `getUpdates` from a
//! queue the test fills and records `sendMessage`, `answerCallbackQuery` and
//! `editMessageText`; real tmux and fake agents behind it.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sm_tests::*;

const OPERATOR: i64 = 42;
const STRANGER: i64 = 999;

#[derive(Default)]
struct Fake {
    updates: VecDeque<Value>,
    next_update: i64,
    next_message: i64,
    calls: Vec<(String, Value)>,
    /// Answer this many `sendMessage` calls with a 502 (a flaky network).
    fail_sends: usize,
    /// Hold each `sendMessage` this long before answering (a slow network).
    slow_sends: Option<Duration>,
}

#[derive(Clone)]
struct FakeBotApi {
    state: Arc<Mutex<Fake>>,
    url: String,
    wake: Arc<tokio::sync::Notify>,
}

fn user(id: i64) -> Value {
    json!({ "id": id, "is_bot": false, "first_name": "Operator" })
}

fn chat(id: i64) -> Value {
    json!({ "id": id, "type": "private", "first_name": "Operator" })
}

impl FakeBotApi {
    fn start() -> FakeBotApi {
        let state: Arc<Mutex<Fake>> = Arc::default();
        let wake = Arc::new(tokio::sync::Notify::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let app_state = (state.clone(), wake.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new()
                    .route("/{bot}/{method}", axum::routing::post(handle))
                    .with_state(app_state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        FakeBotApi {
            state,
            url: format!("http://{addr}"),
            wake,
        }
    }

    fn push(&self, update: Value) {
        let mut s = self.state.lock().unwrap();
        s.next_update += 1;
        let mut update = update;
        update["update_id"] = json!(s.next_update);
        s.updates.push_back(update);
        drop(s);
        self.wake.notify_waiters();
    }

    fn next_message_id(&self) -> i64 {
        let mut s = self.state.lock().unwrap();
        s.next_message += 1;
        s.next_message
    }

    /// The operator (or someone else) writes in their chat, maybe replying to `reply_to`.
    fn say(&self, from: i64, text: &str, reply_to: Option<&Value>) -> i64 {
        let id = self.next_message_id();
        let mut message = json!({
            "message_id": id, "date": 1_800_000_000, "chat": chat(from), "from": user(from), "text": text,
        });
        if let Some(original) = reply_to {
            message["reply_to_message"] = original.clone();
        }
        self.push(json!({ "message": message }));
        id
    }

    fn press(&self, message: &Value, data: &str) {
        self.push(json!({ "callback_query": {
            "id": format!("cb{}", self.next_message_id()),
            "from": user(OPERATOR),
            "chat_instance": "ci",
            "data": data,
            "message": message,
        }}));
    }

    fn calls(&self, method: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits for a `sendMessage` to `chat` whose text satisfies `f`; returns the request
    /// and the message the fake answered with.
    fn wait_sent(&self, what: &str, chat_id: i64, f: impl Fn(&str) -> bool) -> (Value, Value) {
        until(what, Duration::from_secs(30), || {
            self.calls("sendMessage").into_iter().find_map(|c| {
                (c["chat_id"] == chat_id && f(c["text"].as_str().unwrap_or("")))
                    .then(|| (c.clone(), c["_answer"].clone()))
            })
        })
    }
}

type AppState = (Arc<Mutex<Fake>>, Arc<tokio::sync::Notify>);

async fn handle(
    State((state, wake)): State<AppState>,
    Path((bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    assert_eq!(bot, "bot123:TEST", "the bot token is sent in the path");
    let mut body: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    // Bot API method names are case-insensitive; record them in Telegram's spelling.
    let method = match method.to_ascii_lowercase().as_str() {
        "getupdates" => "getUpdates".to_string(),
        "sendmessage" => "sendMessage".to_string(),
        "editmessagetext" => "editMessageText".to_string(),
        "answercallbackquery" => "answerCallbackQuery".to_string(),
        _ => method,
    };
    match method.as_str() {
        "getUpdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let wait = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(2));
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let notified = wake.notified();
                {
                    let mut s = state.lock().unwrap();
                    s.updates
                        .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    if !s.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                        let result: Vec<Value> = s.updates.iter().cloned().collect();
                        return ok(json!(result));
                    }
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
        "sendMessage" | "editMessageText" => {
            let (fail, slow) = {
                let mut s = state.lock().unwrap();
                let fail = method == "sendMessage" && s.fail_sends > 0;
                if fail {
                    s.fail_sends -= 1;
                }
                (fail, s.slow_sends.filter(|_| method == "sendMessage"))
            };
            if fail {
                return (StatusCode::BAD_GATEWAY, "Bad Gateway").into_response();
            }
            if let Some(d) = slow {
                tokio::time::sleep(d).await;
            }
            let mut s = state.lock().unwrap();
            s.next_message += 1;
            let message = json!({
                "message_id": body["message_id"].as_i64().unwrap_or(s.next_message),
                "date": 1_800_000_000,
                "chat": chat(body["chat_id"].as_i64().unwrap_or(0)),
                "from": { "id": 1, "is_bot": true, "first_name": "sm", "username": "sm_bot" },
                "text": rendered(body["text"].as_str().unwrap_or_default()),
            });
            body["_answer"] = message.clone();
            s.calls.push((method.clone(), body));
            ok(message)
        }
        "answerCallbackQuery" => {
            state.lock().unwrap().calls.push((method, body));
            ok(json!(true))
        }
        other => {
            state.lock().unwrap().calls.push((other.to_string(), body));
            ok(json!(true))
        }
    }
}

/// What Telegram shows (and sends back) for a MarkdownV2 text: the markup gone, escapes
/// resolved.
fn rendered(markdown: &str) -> String {
    let mut out = String::new();
    let mut chars = markdown.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '*' | '_' | '`' => {}
            c => out.push(c),
        }
    }
    out
}

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

fn start(fake: &FakeBotApi) -> Server {
    start_with(fake, "")
}

fn start_with(fake: &FakeBotApi, more_config: &str) -> Server {
    Server::start_opts(Options {
        env: vec![(
            "SM_LOG".into(),
            std::env::var("SM_TEST_SERVER_LOG").unwrap_or("info".into()),
        )],
        fixed_port: false,
        extra_config: format!(
            "claude:\n  command: sm-test-no-claude-here\ntelegram:\n  token: \"123:TEST\"\n  allowed_chat_ids: [{OPERATOR}]\n  api_url: {}\n  agent: fake\n  default_dir: \"{{dir}}/work\"\n{more_config}",
            fake.url
        ),
        ..Options::default()
    })
}

#[test]
fn telegram_serves_the_operator_end_to_end_and_nobody_else() {
    let fake = FakeBotApi::start();
    let server = start(&fake);
    let work = server.work().display().to_string();

    // A stranger first, then the operator: the stranger gets nothing at all.
    fake.say(STRANGER, "/list", None);
    fake.say(OPERATOR, "/help", None);
    let (help, _) = fake.wait_sent("the help text", OPERATOR, |t| t.contains("/new"));
    assert_eq!(help["parse_mode"], "MarkdownV2");

    // /new starts an agent in the given directory, or in the default one.
    fake.say(OPERATOR, &format!("/new {work}"), None);
    let (_, receipt) = fake.wait_sent("the /new answer", OPERATOR, |t| t.contains("started"));
    // Replying to the receipt gives the new agent work.
    fake.say(OPERATOR, "your first job", Some(&receipt));
    until("the new agent's first job", Duration::from_secs(30), || {
        server
            .all_prompts()
            .iter()
            .any(|(_, p)| p == "your first job")
            .then_some(())
    });
    fake.say(OPERATOR, "/new", None);
    until("two agents", Duration::from_secs(30), || {
        (fake
            .calls("sendMessage")
            .iter()
            .filter(|c| c["text"].as_str().unwrap_or("").contains("started"))
            .count()
            == 2)
            .then_some(())
    });
    let all = server.json(&["all"]);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    for s in all.as_array().unwrap() {
        assert_eq!(s["agent"], "fake");
        assert_eq!(s["working_dir"].as_str().unwrap(), work);
    }
    fake.say(OPERATOR, "/new /nonexistent/dir", None);
    fake.wait_sent("a clear refusal", OPERATOR, |t| {
        t.starts_with("⚠️") && t.contains("nonexistent")
    });

    // A finished turn is announced, Markdown escaped, naming the session.
    server.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "w1",
        "start [[reply all *done* (v1.2)!]]",
    ]);
    let (done, done_message) = fake.wait_sent("the completion notice", OPERATOR, |t| {
        t.contains("w1") && t.contains("finished")
    });
    let text = done["text"].as_str().unwrap();
    assert!(
        text.contains("all \\*done\\* \\(v1\\.2\\)\\!"),
        "not escaped: {text}"
    );

    // Replying to it sends the reply to w1 (important); `!` makes it urgent.
    fake.say(
        OPERATOR,
        "next step [[reply step two done]]",
        Some(&done_message),
    );
    server.wait_prompts("w1", 2);
    assert_eq!(server.prompts("w1")[1], "next step [[reply step two done]]");
    fake.wait_sent("the reply receipt", OPERATOR, |t| {
        t.contains("sent to") && t.contains("important")
    });
    fake.say(OPERATOR, "!stop and report", Some(&done_message));
    server.wait_prompts("w1", 3);
    assert_eq!(server.prompts("w1")[2], "stop and report");
    fake.wait_sent("the urgent receipt", OPERATOR, |t| t.contains("urgent"));
    // A notification sm no longer remembers (it restarted): routed by the short id.
    let w1_id = server.session("w1")["id"].as_str().unwrap().to_string();
    let short = &w1_id[..8];
    let forgotten = json!({
        "message_id": 999_999, "date": 1_800_000_000, "chat": chat(OPERATOR),
        "from": { "id": 1, "is_bot": true, "first_name": "sm" },
        "text": format!("✅ w1 ({short}) finished its turn"),
    });
    fake.say(OPERATOR, "found by the short id", Some(&forgotten));
    server.wait_prompts("w1", 4);
    assert_eq!(server.prompts("w1")[3], "found by the short id");

    // A permission prompt arrives with buttons; a button answers it on the agent's screen.
    server.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "asker",
        "[[write out.txt from the phone]]",
    ]);
    let (question, question_message) = fake.wait_sent("the question", OPERATOR, |t| {
        t.contains("asker") && t.contains("asking")
    });
    let buttons = question["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(buttons.len(), 3, "{question}");
    assert!(buttons[0][0]["text"].as_str().unwrap().contains("Yes"));
    let data = buttons[0][0]["callback_data"].as_str().unwrap().to_string();
    fake.press(&question_message, &data);
    until("the answer to take", Duration::from_secs(30), || {
        server.work().join("out.txt").exists().then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(server.work().join("out.txt")).unwrap(),
        "from the phone"
    );
    until(
        "the button to be acknowledged",
        Duration::from_secs(30),
        || {
            fake.calls("answerCallbackQuery")
                .into_iter()
                .find(|c| c["text"].as_str().unwrap_or("").contains("Answered: Yes"))
        },
    );
    until("the question to be edited", Duration::from_secs(30), || {
        fake.calls("editMessageText")
            .into_iter()
            .find(|c| c["text"].as_str().unwrap_or("").contains("answered"))
    });

    // /list, /status, /what, /kill.
    fake.say(OPERATOR, "/list", None);
    fake.wait_sent("the list", OPERATOR, |t| {
        t.contains("live") && t.contains("w1")
    });
    fake.say(OPERATOR, "/status", None);
    fake.wait_sent("the status", OPERATOR, |t| t.contains("workspace lock"));
    fake.say(OPERATOR, "/what w1", None);
    fake.wait_sent("the summary", OPERATOR, |t| {
        t.contains("🔎") && t.contains("w1")
    });
    fake.say(OPERATOR, "/kill asker", None);
    fake.wait_sent("the kill receipt", OPERATOR, |t| t.contains("killed"));
    assert!(server.find("asker").is_none());
    fake.say(OPERATOR, "/kill nobody-by-that-name", None);
    fake.wait_sent("a clear refusal", OPERATOR, |t| {
        t.starts_with("⚠️") && t.contains("nobody")
    });

    // A long last message is cut to fit Telegram.
    let long = "word ".repeat(3000);
    server.ok(&["send", "w1", &format!("[[reply {long}]]")]);
    until("a long notice", Duration::from_secs(30), || {
        fake.calls("sendMessage")
            .into_iter()
            .find(|c| c["text"].as_str().unwrap_or("").contains("word word word…"))
    });
    for c in fake.calls("sendMessage") {
        let n = c["text"].as_str().unwrap().chars().count();
        assert!(n <= 4096, "a message of {n} characters");
        assert_ne!(c["chat_id"], STRANGER, "the stranger was answered");
    }
    let log = server.log();
    assert!(log.contains("not allowed"), "the stranger was not logged");
    assert!(
        !log.contains("123:TEST"),
        "the bot token appeared in the log"
    );
}

#[test]
fn a_failing_or_slow_telegram_is_retried_and_never_holds_back_agents() {
    let fake = FakeBotApi::start();
    let server = start(&fake);
    server.ok(&["spawn", "--agent", "fake", "--name", "w", "hello"]);
    fake.wait_sent("the first notice", OPERATOR, |t| t.contains("finished"));

    // Telegram answers 502 once (the client then backs off for 10 s), and every send
    // after that takes 2 s.
    {
        let mut s = fake.state.lock().unwrap();
        s.fail_sends = 1;
        s.slow_sends = Some(Duration::from_secs(2));
    }
    let started = Instant::now();
    for i in 0..3 {
        server.ok(&["send", "w", &format!("round {i} [[reply answer {i}]]")]);
    }
    // The agent gets all three without waiting for Telegram.
    server.wait_prompts("w", 4);
    let agent_done = started.elapsed();
    // Each notice arrives in the end.
    for i in 0..3 {
        until(
            "a notice after the failure",
            Duration::from_secs(90),
            || {
                fake.calls("sendMessage").into_iter().find(|c| {
                    c["text"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&format!("answer {i}"))
                })
            },
        );
    }
    let telegram_done = started.elapsed();
    assert!(
        agent_done < telegram_done,
        "delivery ({agent_done:?}) waited for Telegram ({telegram_done:?})"
    );
    println!(
        "agent got 3 messages in {agent_done:?}; the notices reached a failing, slow Telegram in {telegram_done:?}"
    );
}

#[test]
fn an_agent_idle_past_the_timeout_is_announced() {
    let fake = FakeBotApi::start();
    let server = start_with(&fake, "monitor:\n  idle_timeout: 1\n");
    server.ok(&["spawn", "--agent", "fake", "--name", "napper", "hello"]);
    let (notice, _) = fake.wait_sent("the idle notice", OPERATOR, |t| t.contains("💤"));
    let text = notice["text"].as_str().unwrap();
    assert!(
        text.contains("napper") && text.contains("idle for 1 s"),
        "{text}"
    );
}

#[test]
fn telegram_new_starts_the_agent_kind_it_names_with_that_kinds_default_model() {
    let fake = FakeBotApi::start();
    // Codex here is the fake agent in its Codex style.
    let server = start_with(
        &fake,
        &format!(
            "codex:\n  command: {}\n  args: [\"--style\", \"codex\"]\n  default_model: gpt-5.5\n",
            sibling("sm-fake-agent").display()
        ),
    );
    let work = server.work().display().to_string();
    fake.say(OPERATOR, &format!("/new codex {work}"), None);
    let (_, receipt) = fake.wait_sent("the /new answer", OPERATOR, |t| t.contains("started"));
    let all = server.json(&["all"]);
    let session = &all.as_array().unwrap()[0];
    assert_eq!(session["agent"], "codex", "{all}");
    assert_eq!(session["model"], "gpt-5.5", "codex.default_model: {all}");
    assert_eq!(session["working_dir"].as_str().unwrap(), work);
    fake.say(OPERATOR, "work for codex", Some(&receipt));
    until(
        "the Codex agent's first job",
        Duration::from_secs(30),
        || {
            server
                .all_prompts()
                .iter()
                .any(|(_, p)| p == "work for codex")
                .then_some(())
        },
    );
    // A first word that names no agent kind here is the directory, as before.
    fake.say(OPERATOR, "/new nosuchkind", None);
    fake.wait_sent("a clear refusal", OPERATOR, |t| {
        t.starts_with("⚠️") && t.contains("nosuchkind")
    });
}

#[test]
fn in_a_cluster_one_node_reads_telegram_and_reaches_the_sessions_of_every_node() {
    let fake = FakeBotApi::start();
    let pg = sm_store_postgres::test_cluster::TestCluster::shared()
        .expect("a PostgreSQL server for the tests");
    let db = pg.fresh_database_blocking().unwrap();
    let a = start_with(&fake, &cluster_node_config(&db, "a"));
    let b = start_with(&fake, &cluster_node_config(&db, "b"));
    b.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "far",
        "hello [[reply far away]]",
    ]);
    b.wait_prompts("far", 1);

    // The list, read on whichever node reads the bot, says where each agent runs.
    fake.say(OPERATOR, "/list", None);
    let (list, _) = fake.wait_sent("the list", OPERATOR, |t| t.contains("live"));
    let text = list["text"].as_str().unwrap();
    assert!(text.contains("far") && text.contains("on b"), "{text}");

    // What needs b's terminal is asked of b.
    fake.say(OPERATOR, "/what far", None);
    fake.wait_sent("the summary, from node b", OPERATOR, |t| {
        t.contains("🔎") && t.contains("far")
    });
    fake.say(OPERATOR, "/kill far", None);
    fake.wait_sent("the kill receipt", OPERATOR, |t| t.contains("killed *far"));
    let far = b.session_any("far");
    assert_eq!(far["status"], "dead", "{far}");
    assert_eq!(far["end_reason"], "killed", "{far}");

    // One node read the bot: every command was answered once, not once per node.
    let answers = |needle: &str| {
        fake.calls("sendMessage")
            .iter()
            .filter(|c| c["text"].as_str().unwrap_or("").contains(needle))
            .count()
    };
    assert_eq!(answers("live"), 1);
    assert_eq!(answers("killed *far"), 1);
    drop(a);
}
