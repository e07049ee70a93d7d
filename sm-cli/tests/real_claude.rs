//! The end-to-end tier against the real Claude Code CLI (pinned npm package), offline: the
//! CLI talks to `sm-fake-anthropic`, a local fake of the Messages API scripted by `[[…]]`
//! directives in prompts; sm drives it through tmux with its real hooks (`sm setup`).
//!
//! The CLI comes from `$SM_CLAUDE_BIN`, else `<cache>/node_modules/.bin/claude` with cache
//! `$SM_CLAUDE_CACHE` (default `target/claude-cache`), installed there with npm when
//! missing. When it cannot be had, the tier says SKIPPED loudly — and fails instead when
//! `SM_REQUIRE_REAL_CLAUDE=1` (CI sets it where npm is available).
//!
//! `cargo test -p sm-cli --test real_claude -- --nocapture`
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PINNED: &str = "@anthropic-ai/claude-code@2.1.330";
const DEADLINE: Duration = Duration::from_secs(60);
const API_KEY: &str = "sk-ant-offline-test-0123456789abcdefghij";

fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_sm")).with_file_name(name)
}

/// The real CLI, installing it into the cache when needed; `Err` says why it is missing.
/// Once per test process: the tests here run in parallel, and two installs into one cache
/// (or running it while the other installs) fail.
fn claude() -> Result<PathBuf, String> {
    static CLAUDE: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    CLAUDE.get_or_init(find_or_install_claude).clone()
}

fn find_or_install_claude() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SM_CLAUDE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os("SM_CLAUDE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_sm"))
                .ancestors()
                .nth(2)
                .unwrap()
                .join("claude-cache")
        });
    let exe = cache.join("node_modules/.bin/claude");
    if !exe.exists() {
        eprintln!(
            "real-claude tier: installing {PINNED} into {}",
            cache.display()
        );
        std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&cache)
            .arg(PINNED)
            .output()
            .map_err(|e| format!("npm is not available: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm install {PINNED} failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
    }
    let version = Command::new(&exe)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !version.status.success() {
        return Err(format!("{} --version failed", exe.display()));
    }
    Ok(exe)
}

struct Tier {
    server: Child,
    api: Child,
    dir: tempfile::TempDir,
    socket: String,
    sm_env: Vec<(String, String)>,
    /// The server's environment (and so its agents'), to start it again.
    agent_env: Vec<(String, String)>,
}

impl Drop for Tier {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.server.id().to_string()])
            .status();
        let _ = self.server.wait();
        let _ = self.api.kill();
        let _ = self.api.wait();
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

impl Tier {
    /// Agents run sandboxed (bubblewrap), as a user's would by default.
    fn start(claude: &Path) -> Tier {
        Self::start_on(claude, 0, "bwrap")
    }

    /// A tier whose server listens on `port` (0: any), so a restart keeps the agents'
    /// hooks pointed at it.
    fn start_on(claude: &Path, port: u16, sandbox: &str) -> Tier {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let work = dir.path().join("work");
        let repo = work.join("repo");
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        assert!(
            Command::new("git")
                .args(["init", "-q"])
                .current_dir(&repo)
                .status()
                .unwrap()
                .success()
        );

        let mut api = Command::new(bin("sm-fake-anthropic"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(api.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let api_url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();

        // Skip first-run screens, trust the working dirs, allow skip-permissions.
        let key_tail = &API_KEY[API_KEY.len() - 20..];
        let projects: serde_json::Map<String, Value> = [&work, &repo]
            .iter()
            .map(|p| {
                (
                    p.to_string_lossy().into_owned(),
                    serde_json::json!({ "hasTrustDialogAccepted": true }),
                )
            })
            .collect();
        std::fs::write(
            home.join(".claude.json"),
            serde_json::json!({
                "hasCompletedOnboarding": true,
                "customApiKeyResponses": { "approved": [key_tail], "rejected": [] },
                "projects": projects,
            })
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            home.join(".claude/settings.json"),
            r#"{"skipDangerousModePermissionPrompt":true}"#,
        )
        .unwrap();
        // sm's hooks, installed the way a user does it.
        let setup = Command::new(env!("CARGO_BIN_EXE_sm"))
            .arg("setup")
            .env("HOME", &home)
            .output()
            .unwrap();
        assert!(setup.status.success());

        let socket = format!("sm-real-{}-{port}", std::process::id());
        let config = format!(
            "server:\n  port: {port}\npaths:\n  state_file: {}/state/state.json\nterminal:\n  backend: tmux\n  tmux_socket: {socket}\n  sandbox: {sandbox}\nfake_agent:\n  program: {}\nclaude:\n  command: {}\n  args: [\"--permission-mode\", \"default\"]\nlocks:\n  auto_wait: 1\n",
            dir.path().display(),
            bin("sm-fake-agent").display(),
            claude.display()
        );
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let path = format!(
            "{}:{}",
            bin("sm").parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let agent_env = [
            ("HOME", home.to_string_lossy().into_owned()),
            ("PATH", path),
            ("ANTHROPIC_BASE_URL", api_url),
            ("ANTHROPIC_API_KEY", API_KEY.to_string()),
            ("DISABLE_AUTOUPDATER", "1".into()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
            ("DISABLE_TELEMETRY", "1".into()),
            ("DISABLE_ERROR_REPORTING", "1".into()),
            ("IS_SANDBOX", "1".into()),
            (
                "SM_FAKE_AGENT_LOG",
                dir.path()
                    .join("prompts.jsonl")
                    .to_string_lossy()
                    .into_owned(),
            ),
        ];
        let agent_env: Vec<(String, String)> = agent_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let server = Self::launch(dir.path(), &agent_env);
        let sm_env = vec![(
            "SM_CONFIG".to_string(),
            dir.path()
                .join("config.yaml")
                .to_string_lossy()
                .into_owned(),
        )];
        Tier {
            server,
            api,
            dir,
            socket,
            sm_env,
            agent_env,
        }
    }

    /// Starts the server on the tier's state dir and waits until it is up.
    fn launch(dir: &Path, agent_env: &[(String, String)]) -> Child {
        let _ = std::fs::remove_file(dir.join("state/server.url"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let server = Command::new(bin("sm-server"))
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .envs(agent_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("TMUX")
            .env_remove("SM_SESSION_ID")
            .env("SM_LOG", "info")
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url_file = dir.join("state/server.url");
        let deadline = Instant::now() + DEADLINE;
        while !url_file.exists() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// After the server died (a hook killed it): start it again at once.
    fn restart_after_death(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        while self.server.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not die");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.server = Self::launch(self.dir.path(), &self.agent_env);
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn sm(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sm"))
            .args(args)
            .envs(self.sm_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("SM_SESSION_ID")
            .env_remove("SM_TOKEN")
            .env_remove("SM_SERVER_URL")
            .current_dir(self.work())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.sm(args);
        assert!(
            out.status.success(),
            "sm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn status(&self, name: &str) -> String {
        self.json(&["all"])
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["status"].as_str().unwrap().to_string())
            .unwrap_or_default()
    }

    fn screen(&self, name: &str) -> String {
        self.ok(&["output", name, "--lines", "60"])
    }

    fn until(&self, what: &str, f: impl FnMut() -> bool) {
        self.until_explained(what, f, String::new);
    }

    /// [`Tier::until`], failing with what `explain` says about the state it gave up in.
    fn until_explained(
        &self,
        what: &str,
        mut f: impl FnMut() -> bool,
        explain: impl FnOnce() -> String,
    ) {
        let deadline = Instant::now() + DEADLINE;
        while !f() {
            if Instant::now() >= deadline {
                panic!("timed out waiting for {what}{}", explain());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&self, name: &str, dir: &Path, skip_permissions: bool) {
        let d = dir.to_str().unwrap();
        let mut args = vec!["spawn", "--agent", "claude", "--name", name, "--dir", d];
        if skip_permissions {
            args.push("--skip-permissions");
        }
        let out = self.ok(&args);
        assert!(out.starts_with(&format!("spawned {name}")), "{out}");
    }

    fn idle_with(&self, name: &str, text: &str) {
        self.until_explained(
            &format!("{name} idle showing {text:?}"),
            || self.status(name) == "idle" && self.screen(name).contains(text),
            || {
                format!(
                    "; it is {} and shows:\n{}\nthe last events:\n{}\nserver log:\n{}",
                    self.status(name),
                    self.screen(name),
                    event_list(self)
                        .iter()
                        .rev()
                        .take(40)
                        .rev()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
                )
            },
        );
    }
}

fn event_list(t: &Tier) -> Vec<Value> {
    let url = std::fs::read_to_string(t.dir.path().join("state/server.url")).unwrap();
    let token = std::fs::read_to_string(t.dir.path().join("state/token")).unwrap();
    let mut r = ureq::get(format!("{url}/events?limit=10000"))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    r.body_mut().read_json::<Vec<Value>>().unwrap()
}

fn events(t: &Tier) -> String {
    let url = std::fs::read_to_string(t.dir.path().join("state/server.url")).unwrap();
    let token = std::fs::read_to_string(t.dir.path().join("state/token")).unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{url}/events?limit=400"),
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {}",
                &e["session"].as_str().unwrap_or("-")
                    [..8.min(e["session"].as_str().unwrap_or("-").len())],
                e["kind"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sm_drives_the_real_claude_code_cli() {
    let claude = match claude() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("\n################################################################");
            eprintln!("## real-claude tier SKIPPED: {why}");
            eprintln!("################################################################\n");
            assert!(
                std::env::var_os("SM_REQUIRE_REAL_CLAUDE").is_none(),
                "SM_REQUIRE_REAL_CLAUDE is set but the real CLI is unavailable: {why}"
            );
            return;
        }
    };
    let t = Tier::start(&claude);
    let work = t.work();
    let repo = work.join("repo");

    // spawn → ready (screen + SessionStart hook), then the three delivery modes.
    t.spawn("c1", &work, true);
    assert_eq!(t.status("c1"), "idle");
    t.ok(&["send", "c1", "first [[reply reply one]]"]);
    t.idle_with("c1", "● reply one");

    let busy = t.json(&["send", "c1", "busy [[sleep 3]] [[reply busy done]]"])["id"].clone();
    t.until("c1 working", || t.status("c1") == "working");
    let sequential = t.json(&["send", "c1", "later [[reply sequential done]]"])["id"].clone();
    let important = t.json(&[
        "send",
        "c1",
        "sooner [[reply important done]]",
        "--important",
    ])["id"]
        .clone();
    t.idle_with("c1", "● sequential done");
    // sm's order, from its event log: busy's turn ended (Stop) before the important message
    // was typed, and the important one went ahead of the sequential one.
    let log = event_list(&t);
    let delivered = |id: &Value| {
        log.iter()
            .position(|e| e["kind"]["type"] == "message_delivered" && &e["kind"]["message"] == id)
            .unwrap_or_else(|| panic!("message {id} was not delivered"))
    };
    let (busy, important, sequential) = (
        delivered(&busy),
        delivered(&important),
        delivered(&sequential),
    );
    assert!(busy < important && important < sequential, "delivery order");
    assert!(
        log[busy..important]
            .iter()
            .any(|e| e["kind"]["type"] == "hook" && e["kind"]["event"] == "Stop"),
        "the important message waited for the busy turn to end"
    );

    // urgent interrupts a slow turn.
    t.ok(&["send", "c1", "slow [[sleep 30]] [[reply slow done]]"]);
    t.until("c1 working", || t.status("c1") == "working");
    let started = Instant::now();
    t.ok(&["send", "c1", "stop that [[reply urgent done]]", "--urgent"]);
    t.idle_with("c1", "● urgent done");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the slow turn was interrupted"
    );
    assert!(!t.screen("c1").contains("● slow done"));

    // The real Stop hook wakes a parent: a fake EM spawns a Claude child and waits.
    std::fs::write(
        work.join("em.sh"),
        "sm spawn --agent claude --name child --wait 60 'child task [[reply child done]]'\n",
    )
    .unwrap();
    t.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "em",
        "--skip-permissions",
        "[[bash sh em.sh]]",
    ]);
    let deadline = Instant::now() + DEADLINE;
    while !std::fs::read_to_string(t.dir.path().join("prompts.jsonl"))
        .unwrap_or_default()
        .contains("[sm] child")
    {
        if Instant::now() > deadline {
            panic!(
                "the EM was not woken by its Claude child.\nsessions:\n{}\nchild:\n{}\nprompts:\n{}\nserver log:\n{}\nevents:\n{}",
                t.ok(&["all"]),
                String::from_utf8_lossy(&t.sm(&["output", "child", "--lines", "25"]).stdout),
                std::fs::read_to_string(t.dir.path().join("prompts.jsonl")).unwrap_or_default(),
                std::fs::read_to_string(t.dir.path().join("server.log")).unwrap_or_default(),
                events(&t)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(t.dir.path().join("prompts.jsonl")).unwrap();
    assert!(log.contains("Last message: child done"), "{log}");

    // auto-lock through the real PreToolUse hook: taken by one agent, refused to another.
    t.spawn("a", &repo, true);
    t.spawn("b", &repo, true);
    let a_file = repo.join("a.txt");
    let b_file = repo.join("b.txt");
    t.ok(&[
        "send",
        "a",
        &format!(
            "[[write {} from a]] [[bash sleep 4]] [[reply a done]]",
            a_file.display()
        ),
    ]);
    t.until("a's lock", || t.ok(&["status"]).contains("writing"));
    t.ok(&[
        "send",
        "b",
        &format!("[[write {} from b]] [[reply b done]]", b_file.display()),
    ]);
    t.until("b's refusal", || {
        t.screen("b").contains("is locked by session")
    });
    assert!(!b_file.exists(), "the second agent's write was refused");
    t.idle_with("a", "● a done");
    assert!(a_file.exists());

    // A permission prompt is detected (needs input), nothing is typed into it, and once a
    // person answers it the turn goes on.
    t.spawn("p", &work, false);
    let c_file = work.join("c.txt");
    t.ok(&[
        "send",
        "p",
        &format!("[[write {} zz]] [[reply made it]]", c_file.display()),
    ]);
    t.until("p needs input", || t.status("p") == "needs_input");
    t.ok(&[
        "send",
        "p",
        "queued behind the prompt [[reply after prompt]]",
    ]);
    assert!(t.screen("p").contains("Do you want to create c.txt?"));
    let p_id = t
        .json(&["all"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "p")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        Command::new("tmux")
            .args([
                "-L",
                &t.socket,
                "send-keys",
                "-t",
                &format!("={}:={p_id}", t.socket),
                "1"
            ])
            .status()
            .unwrap()
            .success()
    );
    t.idle_with("p", "● after prompt");
    assert!(c_file.exists());

    // clear, verified on screen; what answers (summariser or its fallback).
    t.ok(&["clear", "c1"]);
    t.until("c1 cleared", || {
        !t.screen("c1").contains("● urgent done") || t.status("c1") == "idle"
    });
    let what = t.json(&["what", "c1"]);
    assert!(!what["summary"].as_str().unwrap_or("").is_empty(), "{what}");
    eprintln!(
        "real-claude tier: what says ({}): {}",
        what["source"], what["summary"]
    );
}

/// Claude Code runs this as a prompt hook beside sm's: armed, it SIGKILLs the server the
/// moment a prompt was taken, before sm can see it submitted on screen.
fn arm_kill_in_prompt_hook(t: &Tier) {
    let dir = t.dir.path().display();
    std::fs::write(t.dir.path().join("server.pid"), t.server.id().to_string()).unwrap();
    std::fs::write(t.dir.path().join("kill.armed"), "").unwrap();
    let settings_path = t.dir.path().join("home/.claude/settings.json");
    let mut settings: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    let kill = format!(
        "mv {dir}/kill.armed {dir}/kill.taken.$$ 2>/dev/null && kill -9 $(cat {dir}/server.pid); exit 0"
    );
    let hooks = settings["hooks"]["UserPromptSubmit"]
        .as_array_mut()
        .unwrap();
    if !hooks.iter().any(|h| h.to_string().contains("kill.armed")) {
        hooks.push(serde_json::json!({ "hooks": [{ "type": "command", "command": kill }] }));
    }
    std::fs::write(&settings_path, settings.to_string()).unwrap();
}

/// How many times the agent's transcript records `text` as a user prompt: what the model
/// was given.
fn prompts_in_transcripts(t: &Tier, text: &str) -> usize {
    let mut n = 0;
    let projects = t.dir.path().join("home/.claude/projects");
    for dir in std::fs::read_dir(projects).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let body = std::fs::read_to_string(file.path()).unwrap_or_default();
            n += body
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| {
                    v["type"] == "user" && v["message"]["content"].to_string().contains(text)
                })
                .count();
        }
    }
    n
}

#[test]
fn a_real_claude_prompt_was_typed_twice_when_the_server_died_after_its_prompt_hook() {
    let claude = match claude() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("## real-claude tier SKIPPED: {why}");
            assert!(
                std::env::var_os("SM_REQUIRE_REAL_CLAUDE").is_none(),
                "SM_REQUIRE_REAL_CLAUDE is set but the real CLI is unavailable: {why}"
            );
            return;
        }
    };
    let port = (0..1000)
        .map(|i| 20_000 + ((std::process::id() as u64 * 31 + i * 7919) % 12_000) as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap();
    // The prompt hook kills the server: it must see the server's process.
    let mut t = Tier::start_on(&claude, port, "none");
    let work = t.work();
    arm_kill_in_prompt_hook(&t);
    // Disarmed until the prompt under test.
    std::fs::remove_file(t.dir.path().join("kill.armed")).unwrap();
    t.spawn("c1", &work, true);
    t.ok(&["send", "c1", "warm up [[reply warm]]"]);
    t.idle_with("c1", "● warm");
    arm_kill_in_prompt_hook(&t);
    let text = "exactly once please [[reply once done]]";
    let id = t.json(&["send", "c1", text])["id"].clone();
    t.restart_after_death();
    t.idle_with("c1", "● once done");
    t.until("the message settled", || {
        event_list(&t).iter().any(|e| {
            e["kind"]["message"] == id
                && matches!(
                    e["kind"]["type"].as_str(),
                    Some("message_delivered" | "message_failed")
                )
        })
    });
    let log = events(&t);
    assert_eq!(
        prompts_in_transcripts(&t, "exactly once please"),
        1,
        "the model got the prompt once; events:\n{log}"
    );
    // And delivery goes on.
    t.ok(&["send", "c1", "after [[reply after done]]"]);
    t.idle_with("c1", "● after done");
    assert_eq!(prompts_in_transcripts(&t, "exactly once please"), 1);
}
