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

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use sm_tests::{FakeApi, Options, Server, real_claude_cli, real_claude_options, until_explained};

/// The real CLI is slower than the fake agent: a minute per condition.
const DEADLINE: Duration = Duration::from_secs(60);

fn claude() -> Result<PathBuf, String> {
    real_claude_cli()
}

/// The real CLI, or `None` after saying loudly that the tier is skipped — which fails the
/// test instead when `SM_REQUIRE_REAL_CLAUDE` is set.
fn claude_or_skip() -> Option<PathBuf> {
    match claude() {
        Ok(p) => Some(p),
        Err(why) => {
            eprintln!("\n################################################################");
            eprintln!("## real-claude tier SKIPPED: {why}");
            eprintln!("################################################################\n");
            assert!(
                std::env::var_os("SM_REQUIRE_REAL_CLAUDE").is_none(),
                "SM_REQUIRE_REAL_CLAUDE is set but the real CLI is unavailable: {why}"
            );
            None
        }
    }
}

/// The real-Claude tier's world: the harness's server with the real CLI configured and
/// sm's hooks installed by `sm setup`, and the fake Messages API it talks to.
struct Tier {
    server: Server,
    _api: FakeApi,
}

impl Drop for Tier {
    fn drop(&mut self) {
        self.server.stop();
    }
}

impl Tier {
    /// Agents run sandboxed (bubblewrap), as a user's would by default.
    fn start(claude: &Path) -> Tier {
        Self::start_on(claude, false, "bwrap")
    }

    /// A tier whose server listens on a fixed port when `fixed_port`, so a restart keeps
    /// the agents' hooks pointed at it.
    fn start_on(claude: &Path, fixed_port: bool, sandbox: &'static str) -> Tier {
        let api = FakeApi::start("sm-fake-anthropic", &[]);
        let server = Server::start_opts(Options {
            fixed_port,
            sandbox: Some(sandbox),
            ..real_claude_options(claude, &api.url)
        });
        Tier { server, _api: api }
    }

    /// After the server died (a hook killed it): start it again at once.
    fn restart_after_death(&mut self) {
        self.server.restart_after_death();
    }

    fn work(&self) -> PathBuf {
        self.server.work()
    }

    fn path(&self) -> &Path {
        self.server.path()
    }

    fn sm(&self, args: &[&str]) -> Output {
        self.server.sm(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.server.ok(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.server.json(args)
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
        until_explained(what, DEADLINE, || f().then_some(()), explain);
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
                    self.server.log()
                )
            },
        );
    }
}

/// The server's event log, at most `limit` entries: the status and the events.
fn fetch_events(t: &Tier, limit: usize) -> (u16, Vec<Value>) {
    let (status, events) = t.server.http(
        "GET",
        &format!("/events?limit={limit}"),
        Some(&t.server.token()),
        None,
        b"",
    );
    (status, events.as_array().cloned().unwrap_or_default())
}

fn event_list(t: &Tier) -> Vec<Value> {
    let (status, events) = fetch_events(t, 10_000);
    assert_eq!(status, 200, "{events:?}");
    events
}

/// The event log, one short line per event, for failure messages (never fails itself).
fn events(t: &Tier) -> String {
    let (_, v) = fetch_events(t, 400);
    v.iter()
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
    let Some(claude) = claude_or_skip() else {
        return;
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
    let woken = || {
        std::fs::read_to_string(t.path().join("prompts.jsonl"))
            .unwrap_or_default()
            .contains("[sm] child")
    };
    t.until_explained("the EM to be woken by its Claude child", woken, || {
        format!(
            "\nsessions:\n{}\nchild:\n{}\nprompts:\n{}\nserver log:\n{}\nevents:\n{}",
            t.ok(&["all"]),
            String::from_utf8_lossy(&t.sm(&["output", "child", "--lines", "25"]).stdout),
            std::fs::read_to_string(t.path().join("prompts.jsonl")).unwrap_or_default(),
            t.server.log(),
            events(&t)
        )
    });
    let log = std::fs::read_to_string(t.path().join("prompts.jsonl")).unwrap();
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
    // person answers it (`sm answer`) the turn goes on.
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
    // A person answers through sm (the key is typed again if the fresh dialog drops it).
    let answered = t.ok(&["answer", "p", "1"]);
    assert!(answered.contains("Yes"), "{answered}");
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
    t.server.arm_kill();
    let settings_path = t.path().join("home/.claude/settings.json");
    let mut settings: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    let kill = t.server.kill_hook_command();
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
    transcript_entries(t, "user", text)
}

/// How many entries of `kind` (`user`, `assistant`) in the agent's transcripts hold `text`.
fn transcript_entries(t: &Tier, kind: &str, text: &str) -> usize {
    t.server.claude_transcript_entries(kind, text)
}

#[test]
fn a_real_claude_prompt_was_typed_twice_when_the_server_died_after_its_prompt_hook() {
    let Some(claude) = claude_or_skip() else {
        return;
    };
    // The prompt hook kills the server: it must see the server's process.
    let mut t = Tier::start_on(&claude, true, "none");
    let work = t.work();
    arm_kill_in_prompt_hook(&t);
    // Disarmed until the prompt under test.
    std::fs::remove_file(t.path().join("kill.armed")).unwrap();
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
    // Claude Code writes its transcript a moment after the screen shows the reply: count
    // once the reply, written after the prompt, is there.
    t.until("the reply in the transcript", || {
        transcript_entries(&t, "assistant", "once done") > 0
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
    t.until("the second reply in the transcript", || {
        transcript_entries(&t, "assistant", "after done") > 0
    });
    assert_eq!(prompts_in_transcripts(&t, "exactly once please"), 1);
}

#[test]
fn a_real_claude_agent_coordinates_through_sm_s_mcp_tools() {
    let Some(claude) = claude_or_skip() else {
        return;
    };
    // `sm setup` (run by the tier) registered `sm mcp` in ~/.claude.json.
    let t = Tier::start(&claude);
    let registered: Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("home/.claude.json")).unwrap())
            .unwrap();
    assert_eq!(registered["mcpServers"]["sm"]["args"][0], "mcp");
    let work = t.work();
    t.ok(&["spawn", "--agent", "fake", "--name", "b"]);
    t.spawn("em", &work, true);

    // The model calls mcp__sm__send: the message reaches the other agent exactly once.
    t.ok(&[
        "send",
        "em",
        r#"[[tool mcp__sm__send {"target": "b", "text": "hello through mcp"}]] [[reply sent it]]"#,
    ]);
    t.idle_with("em", "● sent it");
    let prompts = || t.server.prompts("b");
    t.until("b to receive the message", || {
        prompts().iter().any(|p| p == "hello through mcp")
    });
    // Claude Code gives the model the tool's structured content: the queued message.
    t.until_explained(
        "em's tool result in its transcript",
        || transcript_entries(&t, "user", r#"\"state\":\"queued\""#) > 0,
        || transcripts(&t),
    );
    assert_eq!(
        prompts()
            .iter()
            .filter(|p| p.as_str() == "hello through mcp")
            .count(),
        1,
        "{:?}",
        prompts()
    );
    // It was sent as em: the store records em as its sender.
    let em_id = t.server.session("em")["id"].as_str().unwrap().to_string();
    let message = t.server.message("hello through mcp").unwrap();
    assert_eq!(message.sender.map(|s| s.to_string()), Some(em_id.clone()));

    // The model calls mcp__sm__spawn: a child starts, with em as its parent.
    t.ok(&[
        "send",
        "em",
        r#"[[tool mcp__sm__spawn {"agent": "fake", "name": "mcpkid", "prompt": "kid task"}]] [[reply spawned it]]"#,
    ]);
    t.idle_with("em", "● spawned it");
    let kid = t
        .server
        .find("mcpkid")
        .unwrap_or_else(|| panic!("no child; em's transcript:\n{}", transcripts(&t)));
    assert_eq!(kid["parent"], em_id.as_str(), "{kid}");
    t.server.wait_prompts("mcpkid", 1);
    assert_eq!(t.server.prompts("mcpkid"), vec!["kid task".to_string()]);
}

/// Every transcript line under the tier's home (for failure messages).
fn transcripts(t: &Tier) -> String {
    let mut out = String::new();
    let projects = t.path().join("home/.claude/projects");
    for dir in std::fs::read_dir(projects).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push_str(&std::fs::read_to_string(file.path()).unwrap_or_default());
        }
    }
    out
}
