//! The web dashboard end to end, in a real headless Chromium driven over WebDriver
//! (chromedriver), against a real server with fake agents: login, live status, sending,
//! answering a permission prompt by clicking, killing, hostile agent text rendered as text,
//! and the cookie's rules. Screenshots of the overview and a session page at desktop and
//! phone widths land in `target/dashboard-screenshots/` (with `SM_UPDATE_SCREENSHOTS=1`,
//! also in `docs/`, where the README shows them).
//!
//! Chromium and chromedriver come from Debian's `chromium` and `chromium-driver`
//! (`SM_CHROMIUM`, `SM_CHROMEDRIVER` override the paths). Where they are missing the tests
//! say SKIPPED loudly and pass, unless `SM_REQUIRE_BROWSER` is set (as CI sets it).
#![allow(clippy::unwrap_used)] // a test fails loudly by design

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sm_tests::{DEADLINE, Options, Server, free_port, until, until_async};

fn browser_paths() -> Result<(PathBuf, PathBuf), String> {
    let find = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    };
    let chromium = find("SM_CHROMIUM", "/usr/bin/chromium");
    let driver = find("SM_CHROMEDRIVER", "/usr/bin/chromedriver");
    for p in [&chromium, &driver] {
        if !p.exists() {
            return Err(format!(
                "{} is missing (apt-get install chromium chromium-driver)",
                p.display()
            ));
        }
    }
    Ok((chromium, driver))
}

fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    match browser_paths() {
        Ok(p) => Some(p),
        Err(why) => {
            eprintln!("\n################################################################");
            eprintln!("## browser tier SKIPPED: {why}");
            eprintln!("################################################################\n");
            assert!(
                std::env::var_os("SM_REQUIRE_BROWSER").is_none(),
                "SM_REQUIRE_BROWSER is set but the browser is unavailable: {why}"
            );
            None
        }
    }
}

/// A headless Chromium under its own chromedriver, with a fresh profile; both end when
/// dropped.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(chromium: &Path, driver: &Path) -> Browser {
        let port = free_port();
        let mut driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // The closed network here refuses Chromium's own background connections;
                // these flags keep it from trying.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + DEADLINE;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if std::time::Instant::now() > deadline => {
                    let _ = driver.kill();
                    panic!("chromedriver did not start a browser: {e}");
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.expect(script)
    }

    /// Polls `script` until it returns something truthy, and returns that.
    async fn until_js(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        until_async(what, DEADLINE, async || {
            let v = self.client.execute(script, args.clone()).await.ok()?;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            truthy.then_some(v)
        })
        .await
    }

    async fn text_of(&self, css: &str) -> String {
        self.js(
            "const n = document.querySelector(arguments[0]); return n ? n.innerText : null;",
            vec![json!(css)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    async fn log_in(&self, server: &Server, token: &str) {
        self.client
            .goto(&server.url())
            .await
            .expect("open the dashboard");
        self.type_into("#token", token).await;
        self.click("button[type=submit]").await;
        self.until_js(
            "the dashboard's live link",
            "const n = document.querySelector('#link'); return n && n.innerText.includes('live');",
            vec![],
        )
        .await;
    }

    /// Waits until the overview shows the session `name` in `status`.
    async fn until_row(&self, name: &str, status: &str) {
        self.until_js(
            &format!("{name} {status} in the browser"),
            "const r = [...document.querySelectorAll('.row[data-session]')].find(r => r.querySelector('.name').innerText === arguments[0]); return r && r.dataset.status === arguments[1];",
            vec![json!(name), json!(status)],
        )
        .await;
    }

    /// Opens the dashboard's page `fragment` (`#/s/<id>`, `#/events`, or "" for the overview).
    async fn open(&self, server: &Server, fragment: &str) {
        self.client
            .goto(&format!("{}/{fragment}", server.url()))
            .await
            .unwrap_or_else(|e| panic!("open {fragment:?}: {e}"));
    }

    async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let target = sm_tests::bin_dir()
            .parent()
            .map(|p| p.join("dashboard-screenshots"))
            .unwrap_or_else(|| PathBuf::from("dashboard-screenshots"));
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join(name), &png).unwrap();
        if std::env::var_os("SM_UPDATE_SCREENSHOTS").is_some() {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(name), &png).unwrap();
        }
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop ends chromedriver and whatever of the browser is left.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed never closed its session: chromedriver's death leaves the
        // browser and its renderers running (each costing CPU), so they are found by the
        // profile dir only they were given, and killed.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let needle = self._profile.path().display().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

fn start_server() -> Server {
    Server::start_opts(Options {
        extra_config: "claude:\n  command: sm-test-no-claude-here\n".into(),
        // The fake agent's permission notification comes 6 s late by default, as Claude
        // Code's does; a second keeps the test short.
        env: vec![("SM_FAKE_NOTIFY_MS".into(), "1000".into())],
        ..Options::default()
    })
}

fn id_of(server: &Server, name: &str) -> String {
    server.session(name)["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_and_steers_the_swarm_live_in_a_real_browser() {
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let server = start_server();
    let browser = Browser::start(&chromium, &driver).await;

    // A wrong token is refused with a reason; the admin token logs in.
    browser.open(&server, "").await;
    browser.type_into("#token", "not-the-token").await;
    browser.click("button[type=submit]").await;
    // The refusal comes with the next page: wait for it, not for the one being left.
    let refusal = browser
        .until_js(
            "the login refusal",
            "const n = document.querySelector('.error'); return n ? n.innerText : null;",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        refusal.contains("not this server's admin token"),
        "{refusal}"
    );
    browser.log_in(&server, &server.token()).await;
    let cookies = browser.js("return document.cookie;", vec![]).await;
    assert_eq!(cookies, json!(""), "the login cookie is HttpOnly");

    // An agent spawned elsewhere appears, and its status changes show as they happen.
    server.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "w1",
        "[[sleep 1.5]] first job",
    ]);
    server.ok(&["task", "write the parser", "--session", "w1"]);
    browser.until_row("w1", "working").await;
    browser.until_row("w1", "idle").await;
    let task = browser
        .js(
            "return [...document.querySelectorAll('.row[data-session]')].find(r => r.querySelector('.name').innerText === arguments[0]).querySelector('.c-task').innerText;",
            vec![json!("w1")],
        )
        .await;
    assert_eq!(task, json!("write the parser"));

    // Screenshots of the overview with a small swarm: a parent with children, one asking.
    let w1 = id_of(&server, "w1");
    for (name, prompt) in [
        ("reviewer", "[[sleep 600]] review the parser"),
        ("tests", "[[sleep 600]] write tests"),
    ] {
        let token = server.agent_token("w1");
        let out = server
            .sm_command()
            .env("SM_SESSION_ID", &w1)
            .env("SM_TOKEN", &token)
            .args(["spawn", "--agent", "fake", "--name", name, prompt])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", sm_tests::stderr(&out));
    }
    server.ok(&[
        "task",
        "read every change to src/parser.rs",
        "--session",
        "reviewer",
    ]);
    server.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "asker",
        "[[write out.txt from the browser]]",
    ]);
    browser.until_row("asker", "needs_input").await;
    browser.until_row("tests", "working").await;
    browser.screenshot("dashboard-overview.png").await;
    browser.resize(390, 844).await;
    browser.screenshot("dashboard-overview-phone.png").await;
    browser.resize(1280, 900).await;

    // The question is answered by clicking its option; the agent writes the file.
    let asker = id_of(&server, "asker");
    browser.open(&server, &format!("#/s/{asker}")).await;
    let first_option = browser
        .until_js(
            "the question's options",
            "const b = document.querySelector('#question:not([hidden]) .option'); return b ? b.innerText : null;",
            vec![],
        )
        .await;
    assert!(
        first_option.as_str().unwrap().contains("Yes"),
        "{first_option}"
    );
    browser.click("#question .option[data-option='1']").await;
    until("the answer to take", DEADLINE, || {
        std::fs::read_to_string(server.work().join("out.txt")).ok()
    });
    assert_eq!(
        std::fs::read_to_string(server.work().join("out.txt")).unwrap(),
        "from the browser"
    );
    browser
        .until_js(
            "the question to go",
            "return document.querySelector('#question').hidden;",
            vec![],
        )
        .await;

    // A message typed on w1's page reaches the agent once, and shows delivered.
    // Opened by name: the page follows the id the name resolves to.
    browser.open(&server, "#/s/w1").await;
    browser
        .until_js(
            "w1's page",
            "const n = document.querySelector('#session-name'); return n && n.innerText === 'w1';",
            vec![],
        )
        .await;
    let text = "hello from the browser\nsecond line [[reply seen it]]";
    browser.type_into("#send-text", text).await;
    browser
        .js(
            "document.querySelector('#send-mode').value = 'important';",
            vec![],
        )
        .await;
    browser.click("#send-button").await;
    let prompts = server.wait_prompts("w1", 2);
    assert_eq!(prompts[1], text);
    let delivered = browser
        .until_js(
            "the message delivered on the page",
            "const r = [...document.querySelectorAll('#messages tr[data-message]')].find(r => r.innerText.includes('hello from the browser')); return r && r.querySelector('.state').innerText === 'delivered' ? r.innerText : null;",
            vec![],
        )
        .await;
    assert!(
        delivered.as_str().unwrap().contains("important"),
        "{delivered}"
    );
    browser
        .until_js(
            "the screen to show the reply",
            "return document.querySelector('#screen').innerText.includes('seen it');",
            vec![],
        )
        .await;
    browser
        .until_js(
            "the turn in the activity",
            "return document.querySelector('#activity').innerText.includes('finished a turn: seen it');",
            vec![],
        )
        .await;
    let children = browser.text_of("#children").await;
    assert!(
        children.contains("reviewer") && children.contains("tests"),
        "{children}"
    );
    browser.screenshot("dashboard-session.png").await;
    browser.resize(390, 844).await;
    browser.screenshot("dashboard-session-phone.png").await;
    browser.resize(1280, 900).await;
    assert_eq!(
        server
            .prompts("w1")
            .iter()
            .filter(|p| p.as_str() == text)
            .count(),
        1,
        "delivered exactly once"
    );

    // Rename and set the task from the page.
    browser.type_into("#task-input", "ship the parser").await;
    browser.click("#task-button").await;
    until("the task to be set", DEADLINE, || {
        (server.session("w1")["task"] == "ship the parser").then_some(())
    });
    browser.type_into("#rename-input", "has space").await;
    browser.click("#rename-button").await;
    let banner = browser
        .until_js(
            "the refusal of a bad name",
            "const b = document.querySelector('#banner'); return b && !b.hidden && b.innerText.includes('Failed') ? b.innerText : null;",
            vec![],
        )
        .await;
    assert!(banner.as_str().unwrap().contains("not allowed"), "{banner}");

    // Kill, after the confirmation that names the agent.
    browser.click("#kill-button").await;
    let confirm = browser
        .client
        .get_alert_text()
        .await
        .expect("a confirmation");
    assert!(confirm.contains("Kill w1"), "{confirm}");
    browser.client.accept_alert().await.unwrap();
    until("w1 to be dead", DEADLINE, || {
        (server.session_any("w1")["status"] == "dead").then_some(())
    });
    browser
        .until_js(
            "the page to show it dead",
            "const h = document.querySelector('#session-header .status'); return h && h.innerText.includes('dead');",
            vec![],
        )
        .await;

    // The events page lists what happened, newest first.
    browser.open(&server, "#/events").await;
    let first_row = browser
        .until_js(
            "the event log",
            "const r = document.querySelector('#events-body tr.ev'); return r ? r.innerText : null;",
            vec![],
        )
        .await;
    assert!(!first_row.as_str().unwrap().is_empty());
    let ids: Vec<i64> = browser
        .js(
            "return [...document.querySelectorAll('#events-body tr.ev td.num')].map(n => Number(n.innerText));",
            vec![],
        )
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    // How soon a status change showed: event time (the server's clock) to the browser's
    // redraw (the same machine's clock).
    let latencies = browser
        .js("return window.smDashboard.statusLatencyMs;", vec![])
        .await;
    let mut latencies: Vec<i64> = latencies
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    latencies.sort_unstable();
    assert!(!latencies.is_empty(), "status changes were seen live");
    eprintln!(
        "dashboard: {} status changes shown live, event → redraw p50 {} ms, max {} ms",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_says_when_its_stream_drops_and_catches_up_after() {
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let mut server = Server::start_opts(Options {
        extra_config: "claude:\n  command: sm-test-no-claude-here\n".into(),
        fixed_port: true,
        ..Options::default()
    });
    let browser = Browser::start(&chromium, &driver).await;
    browser.log_in(&server, &server.token()).await;
    server.stop();
    browser
        .until_js(
            "the lost stream to show",
            "return document.querySelector('#link').innerText.includes('reconnecting') && document.querySelector('#banner').innerText.includes('interrupted');",
            vec![],
        )
        .await;
    server.restart();
    // What happens right after the restart shows, though no event of it may have been
    // streamed: the page reads everything again once the stream is back.
    server.ok(&["spawn", "--agent", "fake", "--name", "after", "hello"]);
    browser
        .until_js(
            "the stream back and the new agent shown",
            "return document.querySelector('#link').innerText.includes('live') && [...document.querySelectorAll('.row .name')].some(n => n.innerText === 'after') && window.smDashboard.reconnects >= 1;",
            vec![],
        )
        .await;
    browser.close().await;
}

/// The texts a hostile agent controls.
const HOSTILE: &str = "<img src=x onerror=alert(1)><script>alert(2)</script>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_agent_text_renders_as_text_in_the_dashboard() {
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let server = start_server();
    // A name cannot hold markup at all: the API refuses it with a reason.
    let (status, body) = server.http(
        "POST",
        "/sessions",
        Some(&server.token()),
        Some("application/json"),
        json!({ "agent": "fake", "working_dir": server.work(), "name": "<img src=x onerror=alert(1)>" })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_name", "{body}");
    // Everything else it controls carries markup: its task, its screen, its last message,
    // a message to it.
    server.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "hostile",
        &format!("[[reply {HOSTILE}]] {HOSTILE}"),
    ]);
    server.ok(&["task", HOSTILE, "--session", "hostile"]);
    server.wait_status("hostile", "idle");
    server.ok(&["send", "hostile", &format!("{HOSTILE} [[reply {HOSTILE}]]")]);
    server.wait_prompts("hostile", 2);
    server.wait_status("hostile", "idle");
    let id = id_of(&server, "hostile");
    // A screen with colours (a shell printing red), shown in colour.
    server.ok(&["spawn", "--agent", "shell", "--name", "colours"]);
    let shell = id_of(&server, "colours");
    let pane = server.pane(&shell);
    server.tmux(&[
        "send-keys",
        "-t",
        &pane,
        "-l",
        "printf '\\033[31mred-text\\033[0m \\033[1mbold-text\\033[0m\\n'",
    ]);
    server.tmux(&["send-keys", "-t", &pane, "Enter"]);

    let browser = Browser::start(&chromium, &driver).await;
    browser.log_in(&server, &server.token()).await;
    browser.open(&server, &format!("#/s/{shell}")).await;
    let colour = browser
        .until_js(
            "the red text in red",
            "const s = [...document.querySelectorAll('#screen span')].find(s => s.innerText === 'red-text'); return s ? getComputedStyle(s).color : null;",
            vec![],
        )
        .await;
    assert_eq!(colour, json!("rgb(205, 49, 49)"));
    let bold = browser
        .js(
            "const s = [...document.querySelectorAll('#screen span')].find(s => s.innerText === 'bold-text'); return s ? getComputedStyle(s).fontWeight : null;",
            vec![],
        )
        .await;
    assert_eq!(bold, json!("700"));
    let no_markup = "return document.querySelectorAll('img').length === 0 && document.querySelectorAll('script').length === 1;";
    for page in [String::new(), format!("#/s/{id}"), "#/events".to_string()] {
        browser.open(&server, &page).await;
        browser
            .until_js(
                "the hostile text shown as text",
                "return document.querySelector('main').innerText.includes(arguments[0]);",
                vec![json!(HOSTILE)],
            )
            .await;
        if page.starts_with("#/s/") {
            browser
                .until_js(
                    "the screen and the messages",
                    "return document.querySelector('#screen').innerText.includes(arguments[0]) && document.querySelector('#messages').innerText.includes(arguments[0]);",
                    vec![json!(HOSTILE)],
                )
                .await;
        }
        assert_eq!(
            browser.js(no_markup, vec![]).await,
            json!(true),
            "markup from the agent became elements on {page:?}"
        );
        // An alert would be open now had any of it run.
        assert!(
            browser.client.get_alert_text().await.is_err(),
            "a script ran on {page:?}"
        );
    }
    browser.close().await;
}

/// The login cookie's rules, over plain HTTP: what the browser tests cannot show.
#[test]
fn the_dashboard_cookie_is_refused_where_it_could_be_abused() {
    let server = start_server();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(DEADLINE))
        .build()
        .into();
    let url = server.url();
    // The page is served with a strict policy; without a login it is the login form.
    let mut page = agent.get(&url).call().unwrap();
    let csp = page
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        page.body_mut()
            .read_to_string()
            .unwrap()
            .contains("Admin token")
    );

    // An agent's token does not log in; the admin token does, into a cookie.
    server.ok(&["spawn", "--agent", "fake", "--name", "a1", "hello"]);
    let login = |token: &str| {
        agent
            .post(&format!("{url}/ui/login"))
            .content_type("application/x-www-form-urlencoded")
            .send(format!("token={token}"))
            .unwrap()
    };
    assert_eq!(login(&server.agent_token("a1")).status(), 401);
    let from_elsewhere = agent
        .post(&format!("{url}/ui/login"))
        .header("Origin", "http://evil.example")
        .content_type("application/x-www-form-urlencoded")
        .send(format!("token={}", server.token()))
        .unwrap();
    assert_eq!(
        from_elsewhere.status(),
        403,
        "a login posted by another site"
    );
    let ok = login(&server.token());
    assert_eq!(ok.status(), 303);
    let set_cookie = ok
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(&server.token()),
        "the cookie is not the token"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    // The cookie reads; a change needs the dashboard's header and the same origin.
    let (status, _) = server.http_headers("GET", "/status", &[("Cookie", &cookie)], b"");
    assert_eq!(status, 200);
    let body = json!({ "text": "from the cookie", "mode": "sequential" }).to_string();
    let (status, refused) = server.http_headers(
        "POST",
        "/sessions/a1/input",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Sm-Dashboard")
    );
    let (status, _) = server.http_headers(
        "POST",
        "/sessions/a1/input",
        &[
            ("Cookie", &cookie),
            ("X-Sm-Dashboard", "1"),
            ("Origin", "http://evil.example"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 403, "another origin");
    let (status, _) = server.http_headers(
        "POST",
        "/sessions/a1/input",
        &[
            ("Cookie", &cookie),
            ("X-Sm-Dashboard", "1"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 403, "a cross-site fetch");
    let (status, sent) = server.http_headers(
        "POST",
        "/sessions/a1/input",
        &[("Cookie", &cookie), ("X-Sm-Dashboard", "1")],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{sent}");
    assert!(
        server
            .messages()
            .iter()
            .filter(|m| m.text == "from the cookie")
            .count()
            == 1
    );

    // Answers are compressed for a browser, but never the live event stream.
    let encoding = |path: &str| {
        let r = agent
            .get(&format!("{url}{path}"))
            .header("Cookie", &cookie)
            .header("Accept-Encoding", "gzip")
            .call()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(encoding("/ui/app.js").as_deref(), Some("gzip"));
    assert_eq!(encoding("/status").as_deref(), Some("gzip"));
    assert_eq!(
        encoding("/events/stream"),
        None,
        "the stream is not held back"
    );

    // Logging out ends that cookie at once.
    let (status, _) = server.http_headers(
        "POST",
        "/ui/logout",
        &[("Cookie", &cookie), ("X-Sm-Dashboard", "1")],
        b"",
    );
    assert_eq!(status, 204);
    let (status, _) = server.http_headers("GET", "/status", &[("Cookie", &cookie)], b"");
    assert_eq!(status, 401);
}

/// With the server listening on every address, the dashboard still answers only this
/// machine unless `server.dashboard_remote` says otherwise; the token API is unchanged.
#[test]
fn the_dashboard_answers_only_loopback_by_default() {
    let Some(address) = non_loopback_address() else {
        eprintln!("no non-loopback address here: the remote part of the dashboard test is skipped");
        return;
    };
    for (remote, expected) in [(false, 403), (true, 200)] {
        let server = Server::start_opts(Options {
            extra_config: "claude:\n  command: sm-test-no-claude-here\n".into(),
            server_yaml: format!("  host: 0.0.0.0\n  dashboard_remote: {remote}\n"),
            ..Options::default()
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(DEADLINE))
            .build()
            .into();
        let url = server.url();
        let port = url.rsplit(':').next().unwrap();
        let remote_url = format!("http://{address}:{port}");
        let page = agent.get(&remote_url).call().unwrap();
        assert_eq!(page.status(), expected, "remote: {remote}");
        let login = agent
            .post(&format!("{remote_url}/ui/login"))
            .content_type("application/x-www-form-urlencoded")
            .send(format!("token={}", server.token()))
            .unwrap();
        assert_eq!(
            login.status(),
            if remote { 303 } else { 403 },
            "remote: {remote}"
        );
        let health = agent.get(&format!("{remote_url}/health")).call().unwrap();
        assert_eq!(health.status(), 200);
    }
}

fn non_loopback_address() -> Option<String> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
}
