//! The end-to-end tier against the real Codex CLI (pinned npm package), offline: Codex
//! talks to `sm-fake-openai`, a local fake of the Responses API scripted by `[[…]]`
//! directives in prompts, which logs every request; sm drives Codex through tmux with the
//! hooks `sm setup --agent codex` installs.
//!
//! The CLI comes from `$SM_CODEX_BIN`, else `<cache>/node_modules/.bin/codex` with cache
//! `$SM_CODEX_CACHE` (default `target/codex-cache`), installed there with npm when missing.
//! When it cannot be had, the tier says SKIPPED loudly — and fails instead when
//! `SM_REQUIRE_REAL_CODEX=1` (CI sets it where npm is available).
//!
//! `cargo test -p sm-cli --test real_codex -- --nocapture`
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sm_tests::{
    FakeApi, Hooks, Options, Server, add_real_codex, bin_dir, real_codex_cli, sibling,
    until_explained,
};

/// The real CLI is slower than the fake agent: a minute per condition.
const DEADLINE: Duration = Duration::from_secs(60);

/// The tier's world: the harness's server with Codex configured and sm's Codex hooks
/// installed by `sm setup --agent codex`, and the fake Responses API Codex talks to.
struct Tier {
    server: Server,
    api_log: PathBuf,
    _api: FakeApi,
    /// The agents' temp dir, outside the state dir (see [`add_real_codex`]).
    _tmp: tempfile::TempDir,
}

impl Drop for Tier {
    fn drop(&mut self) {
        self.server.stop();
    }
}

/// A temp dir for the agents, under the target dir (not under the system temp dir that
/// holds the state dir and so Codex's home).
fn agents_tmp() -> tempfile::TempDir {
    let scratch = bin_dir().parent().unwrap().join("codex-tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    tempfile::tempdir_in(&scratch).unwrap()
}

impl Tier {
    /// Agents run sandboxed (bubblewrap), as a user's would by default.
    fn start(codex: &Path) -> Tier {
        Self::start_on(codex, false, "bwrap")
    }

    /// A tier whose server listens on a fixed port when `fixed_port`, so a restart keeps
    /// the agents' hooks pointed at it.
    fn start_on(codex: &Path, fixed_port: bool, sandbox: &'static str) -> Tier {
        let tmp = agents_tmp();
        let api_log = tmp.path().join("api.jsonl");
        let api = FakeApi::start("sm-fake-openai", &["--log".as_ref(), api_log.as_os_str()]);
        let mut options = Options {
            hooks: Hooks::Setup(serde_json::json!({})),
            fixed_port,
            sandbox: Some(sandbox),
            ..Options::default()
        };
        add_real_codex(&mut options, codex, &api.url, tmp.path());
        let server = Server::start_opts(options);
        // sm's Codex hooks, installed the way a user does it.
        server.setup_codex_hooks();
        Tier {
            server,
            api_log,
            _api: api,
            _tmp: tmp,
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.server.ok(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.server.json(args)
    }

    fn status(&self, name: &str) -> String {
        self.server
            .find(name)
            .and_then(|s| s["status"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn screen(&self, name: &str) -> String {
        self.ok(&["output", name, "--lines", "60"])
    }

    /// The requests the model received whose turn prompt contains `text`, counted once
    /// per turn (a turn's follow-up requests carry tool outputs).
    fn prompts_received(&self, text: &str) -> usize {
        std::fs::read_to_string(&self.api_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["tool_outputs"] == 0)
            .filter(|v| v["prompt"].as_str().is_some_and(|p| p.contains(text)))
            .count()
    }

    fn explain(&self, name: &str) -> String {
        format!(
            "; it is {} and shows:\n{}\nthe API log:\n{}\nserver log (tail):\n{}",
            self.status(name),
            String::from_utf8_lossy(&self.server.sm(&["output", name, "--lines", "40"]).stdout),
            std::fs::read_to_string(&self.api_log).unwrap_or_default(),
            self.server
                .log()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    fn until(&self, what: &str, name: &str, mut f: impl FnMut() -> bool) {
        until_explained(what, DEADLINE, || f().then_some(()), || self.explain(name));
    }

    fn spawn(&self, name: &str, dir: &Path, skip_permissions: bool) {
        let d = dir.to_str().unwrap();
        let mut args = vec!["spawn", "--agent", "codex", "--name", name, "--dir", d];
        if skip_permissions {
            args.push("--skip-permissions");
        }
        let out = self.ok(&args);
        assert!(out.starts_with(&format!("spawned {name}")), "{out}");
    }

    fn idle_with(&self, name: &str, text: &str) {
        self.until(&format!("{name} idle showing {text:?}"), name, || {
            self.status(name) == "idle" && self.screen(name).contains(text)
        });
    }
}

fn skip_or_fail(why: &str) {
    eprintln!("\n################################################################");
    eprintln!("## real-codex tier SKIPPED: {why}");
    eprintln!("################################################################\n");
    assert!(
        std::env::var_os("SM_REQUIRE_REAL_CODEX").is_none(),
        "SM_REQUIRE_REAL_CODEX is set but the real CLI is unavailable: {why}"
    );
}

#[test]
fn sm_drives_the_real_codex_cli() {
    let codex = match real_codex_cli() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    let t = Tier::start(&codex);
    let work = t.server.work();
    let repo = work.join("repo");

    // spawn → ready from the screen (Codex fires SessionStart only with the first prompt).
    t.spawn("x1", &work, true);
    assert_eq!(t.status("x1"), "idle");
    t.ok(&["send", "x1", "first [[reply reply one]]"]);
    t.idle_with("x1", "• reply one");
    assert_eq!(t.prompts_received("first [[reply reply one]]"), 1);
    // sm learned Codex's own id for the conversation from its hooks.
    let (status, events) = t.server.http(
        "GET",
        "/events?limit=1000",
        Some(&t.server.token()),
        None,
        b"",
    );
    assert_eq!(status, 200, "{events}");
    let learned = events.as_array().into_iter().flatten().any(|e| {
        e["kind"]["type"] == "hook"
            && e["kind"]["agent_session"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
    });
    assert!(
        learned,
        "no hook event carried Codex's session id: {events}"
    );

    // Sequential waits for the running turn; important goes ahead of it.
    t.json(&["send", "x1", "busy [[sleep 3]] [[reply busy done]]"]);
    t.until("x1 working", "x1", || t.status("x1") == "working");
    t.json(&["send", "x1", "later [[reply sequential done]]"]);
    t.json(&[
        "send",
        "x1",
        "sooner [[reply important done]]",
        "--important",
    ]);
    t.idle_with("x1", "• sequential done");
    let log = std::fs::read_to_string(&t.api_log).unwrap();
    let (sooner, later) = (
        log.find("sooner [[").unwrap(),
        log.find("later [[").unwrap(),
    );
    assert!(sooner < later, "the important message went first:\n{log}");

    // A multi-line message and one long enough to collapse into a paste placeholder
    // arrive whole, once each.
    let multi = "three lines\nsecond line\n[[reply multi done]]";
    t.ok(&["send", "x1", multi]);
    t.idle_with("x1", "• multi done");
    assert_eq!(t.prompts_received("three lines\nsecond line"), 1);
    let long = format!("{} [[reply long done]]", "long text ".repeat(250));
    t.ok(&["send", "x1", &long]);
    t.idle_with("x1", "• long done");
    assert_eq!(t.prompts_received(&long), 1, "the long message whole, once");

    // Urgent interrupts a slow turn (Escape; Codex leaves the box empty).
    t.ok(&["send", "x1", "slow [[sleep 30]] [[reply slow done]]"]);
    t.until("x1 working", "x1", || t.status("x1") == "working");
    let started = Instant::now();
    t.ok(&["send", "x1", "stop that [[reply urgent done]]", "--urgent"]);
    t.idle_with("x1", "• urgent done");
    assert!(started.elapsed() < Duration::from_secs(25), "interrupted");
    assert!(!t.screen("x1").contains("• slow done"));
    assert_eq!(t.prompts_received("stop that"), 1);

    // The real Stop hook wakes a parent: a fake EM spawns a Codex child and waits.
    std::fs::write(
        work.join("em.sh"),
        "sm spawn --agent codex --skip-permissions --name child --wait 90 'child task [[reply child done]]'\n",
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
    let prompts =
        || std::fs::read_to_string(t.server.path().join("prompts.jsonl")).unwrap_or_default();
    t.until("the fake EM woken by its Codex child", "child", || {
        prompts().contains("[sm] child")
    });
    assert!(
        prompts().contains("Last message: child done"),
        "{}",
        prompts()
    );

    // And the reverse: a Codex EM spawns a fake child and is woken by it — the wake is a
    // message sm delivers to Codex, which the model receives once.
    // Codex runs commands in a login shell, whose PATH the profile scripts set: the script
    // names sm by its path, as a user's login PATH would find it.
    std::fs::write(
        work.join("kid.sh"),
        format!(
            "{} spawn --agent fake --name kid --wait 90 'kid task [[reply kid done]]'\n",
            sibling("sm").display()
        ),
    )
    .unwrap();
    t.ok(&["send", "x1", "[[bash sh kid.sh]] [[reply spawned]]"]);
    t.until("the Codex EM woken by its child", "x1", || {
        t.prompts_received("[sm] kid") == 1
    });
    t.idle_with("x1", "Done:");

    // An approval question is detected (needs input) and answered through sm.
    t.spawn("p", &work, false);
    let made = work.join("made.txt");
    t.ok(&[
        "send",
        "p",
        &format!("[[escalate touch {}]] [[reply made it]]", made.display()),
    ]);
    t.until("p needs input", "p", || t.status("p") == "needs_input");
    assert!(
        t.screen("p")
            .contains("Would you like to run the following command?")
    );
    let answered = t.ok(&["answer", "p", "1"]);
    assert!(answered.contains("Yes"), "{answered}");
    t.idle_with("p", "• made it");
    assert!(made.exists());

    // auto-lock through Codex's PreToolUse for apply_patch: taken by one agent, refused to
    // the other, whose patch is blocked.
    t.spawn("a", &repo, true);
    t.spawn("b", &repo, true);
    t.ok(&[
        "send",
        "a",
        "[[write a.txt from a]] [[bash sleep 4]] [[reply a done]]",
    ]);
    t.until("a's lock", "a", || t.ok(&["status"]).contains("writing"));
    t.ok(&["send", "b", "[[write b.txt from b]] [[reply b done]]"]);
    t.until("b's refusal", "b", || {
        t.screen("b").contains("locked by session")
    });
    assert!(
        !repo.join("b.txt").exists(),
        "the second agent's patch was refused"
    );
    t.idle_with("a", "• a done");
    assert!(repo.join("a.txt").exists());

    // clear types /new, verified on screen; the next prompt starts a new conversation.
    t.ok(&["clear", "x1"]);
    t.ok(&["send", "x1", "after clear [[reply fresh]]"]);
    t.idle_with("x1", "• fresh");
    assert!(!t.screen("x1").contains("• urgent done"));
}

/// Adds a prompt hook beside sm's that, armed, SIGKILLs the server the moment Codex took a
/// prompt — before sm can see it submitted on screen. Codex reads its hooks at start: add
/// it before spawning, arm it later.
fn add_kill_in_prompt_hook(t: &Tier) {
    let path = t.server.path().join("home/.codex/hooks.json");
    let mut hooks: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let kill = t.server.kill_hook_command();
    hooks["hooks"]["UserPromptSubmit"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({ "hooks": [{ "type": "command", "command": kill }] }));
    std::fs::write(&path, hooks.to_string()).unwrap();
}

#[test]
fn a_codex_prompt_reaches_the_model_once_when_the_server_dies_after_its_prompt_hook() {
    let codex = match real_codex_cli() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    // The prompt hook kills the server: it must see the server's process.
    let mut t = Tier::start_on(&codex, true, "none");
    let work = t.server.work();
    add_kill_in_prompt_hook(&t);
    t.spawn("x1", &work, true);
    t.ok(&["send", "x1", "warm up [[reply warm]]"]);
    t.idle_with("x1", "• warm");
    t.server.arm_kill();
    let text = "exactly once please [[reply once done]]";
    let id = t.json(&["send", "x1", text])["id"].clone();
    t.server.restart_after_death();
    t.idle_with("x1", "• once done");
    t.until("the message settled", "x1", || {
        let (_, events) = t.server.http(
            "GET",
            "/events?limit=10000",
            Some(&t.server.token()),
            None,
            b"",
        );
        events.as_array().into_iter().flatten().any(|e| {
            e["kind"]["message"] == id
                && matches!(
                    e["kind"]["type"].as_str(),
                    Some("message_delivered" | "message_failed")
                )
        })
    });
    assert_eq!(
        t.prompts_received("exactly once please"),
        1,
        "{}",
        t.explain("x1")
    );
    // And delivery goes on.
    t.ok(&["send", "x1", "after [[reply after done]]"]);
    t.idle_with("x1", "• after done");
    assert_eq!(t.prompts_received("exactly once please"), 1);
    assert_eq!(t.prompts_received("after [[reply after done]]"), 1);
}

/// How many user entries in the Claude Code transcripts hold `text`: what the Claude
/// model was given.
fn claude_prompts(t: &Tier, text: &str) -> usize {
    t.server.claude_transcript_entries("user", text)
}

#[test]
fn a_real_claude_em_is_woken_once_by_the_real_codex_worker_it_spawned() {
    let codex = match real_codex_cli() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    let claude = match sm_tests::real_claude_cli() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&format!("the real Claude Code: {why}")),
    };
    // One server, both CLIs, each against its own fake model API.
    let tmp = agents_tmp();
    let api_log = tmp.path().join("api.jsonl");
    let openai = FakeApi::start("sm-fake-openai", &["--log".as_ref(), api_log.as_os_str()]);
    let anthropic = FakeApi::start("sm-fake-anthropic", &[]);
    let mut options = Options {
        sandbox: Some("bwrap"),
        ..sm_tests::real_claude_options(&claude, &anthropic.url)
    };
    add_real_codex(&mut options, &codex, &openai.url, tmp.path());
    let server = Server::start_opts(options);
    server.setup_codex_hooks();
    let t = Tier {
        server,
        api_log,
        _api: openai,
        _tmp: tmp,
    };
    let work = t.server.work();
    std::fs::write(
        work.join("em.sh"),
        "sm spawn --agent codex --skip-permissions --name worker --wait 90 \
         'worker task [[reply worker done]]'\n",
    )
    .unwrap();
    let out = t.ok(&[
        "spawn",
        "--agent",
        "claude",
        "--name",
        "em",
        "--skip-permissions",
        "--dir",
        work.to_str().unwrap(),
        "[[bash sh em.sh]] [[reply waiting for the worker]]",
    ]);
    assert!(out.starts_with("spawned em"), "{out}");
    t.until("the worker's turn", "worker", || {
        t.prompts_received("worker task") == 1
    });
    t.until("the Claude EM woken by its Codex worker", "em", || {
        claude_prompts(&t, "[sm] worker") >= 1
    });
    assert_eq!(claude_prompts(&t, "[sm] worker"), 1, "{}", t.explain("em"));
    assert_eq!(claude_prompts(&t, "worker done"), 1, "{}", t.explain("em"));
    let worker = t.server.session("worker");
    assert_eq!(worker["agent"], "codex", "{worker}");
    assert_eq!(worker["parent"], t.server.session("em")["id"], "{worker}");
    drop(anthropic);
}

/// The environment of each running `sm mcp` process, as `KEY=value` entries.
fn sm_mcp_environments() -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_sm_mcp = args.len() >= 2 && args[0].ends_with(b"/sm") && args[1] == b"mcp";
        if !is_sm_mcp {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        found.push(
            environ
                .split(|b| *b == 0)
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect(),
        );
    }
    found
}

#[test]
fn codex_runs_sm_s_mcp_server_with_the_agent_s_identity() {
    let codex = match real_codex_cli() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    // `sm setup --agent codex` (run by the tier) registered `sm mcp` in config.toml.
    let t = Tier::start(&codex);
    let config = std::fs::read_to_string(t.server.path().join("home/.codex/config.toml")).unwrap();
    assert!(config.contains("[mcp_servers.sm]"), "{config}");
    let work = t.server.work();
    t.spawn("x1", &work, true);
    t.ok(&["send", "x1", "look around [[reply looked]]"]);
    t.idle_with("x1", "• looked");
    // Codex started sm's MCP server, and forwarded the agent's identity to it (Codex
    // hands MCP servers only the variables `env_vars` names).
    let id = t.server.session("x1")["id"].as_str().unwrap().to_string();
    let token = t.server.agent_token("x1");
    t.until("Codex to start sm mcp with x1's identity", "x1", || {
        sm_mcp_environments().iter().any(|env| {
            env.contains(&format!("SM_SESSION_ID={id}"))
                && env.contains(&format!("SM_TOKEN={token}"))
                && env.iter().any(|e| e.starts_with("SM_SERVER_URL="))
        })
    });
}
