//! The real `sm` binary against a real `sm-server` (port 0, SQLite, tmux) with fake agents
//! whose Claude Code hooks call the real `sm hook` and `sm auto-lock`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sm_tests::*;

#[test]
fn the_em_loop_runs_through_the_cli_only() {
    let s = Server::start();
    std::fs::write(
        s.work().join("em.sh"),
        "sm spawn --agent fake --name w1 --wait 60 'parse the input [[sleep 0.5]] [[reply parsed 3 files]]'\n\
         sm spawn --agent fake --name w2 'stand by'\n",
    )
    .unwrap();
    std::fs::write(
        s.work().join("route.sh"),
        "sm send w2 'review: parsed 3 files [[reply approved]]' --wait 60\n",
    )
    .unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "em",
        "--skip-permissions",
        "plan the work [[bash sh em.sh]]",
    ]);
    // The EM's own turn spawned both workers; the first one's finished turn wakes it.
    let em = s.wait_prompts("em", 2);
    assert!(
        em[1].starts_with("[sm] w1") && em[1].contains("parsed 3 files"),
        "{em:?}"
    );
    assert_eq!(
        s.prompts("w1"),
        vec!["parse the input [[sleep 0.5]] [[reply parsed 3 files]]"]
    );

    s.wait_status("em", "idle");
    s.ok(&["send", "em", "route it [[bash sh route.sh]]"]);
    let em = s.wait_prompts("em", 4);
    assert!(
        em[3].starts_with("[sm] w2") && em[3].contains("approved"),
        "{em:?}"
    );
    assert_eq!(
        s.prompts("w2"),
        vec!["stand by", "review: parsed 3 files [[reply approved]]"]
    );

    let em_id = s.session("em")["id"].as_str().unwrap().to_string();
    let children = s.json(&["children", "em"]);
    let names: Vec<&str> = children
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w1", "w2"]);
    assert!(
        children
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["parent"] == em_id.as_str())
    );
    let human = s.ok(&["children", "em"]);
    assert!(human.contains("w1 (") && human.contains("w2 ("), "{human}");
}

#[test]
fn commands_print_for_humans_and_as_json_and_fail_clearly() {
    let s = Server::start();
    let out = s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "solo",
        "hello [[reply hi]]",
    ]);
    assert!(out.starts_with("spawned solo ("), "{out}");
    s.wait_prompts("solo", 1);

    let me = s.json(&["me"]);
    assert_eq!(me["admin"], true);
    let status = s.ok(&["status"]);
    assert!(
        status.contains("solo (") && status.contains("locks:"),
        "{status}"
    );
    s.until("the reply on screen", || {
        s.ok(&["output", "solo", "--lines", "30"])
            .contains("⏺ hi")
            .then_some(())
    });
    // `sm new --no-attach` printed a bare id; it prints what `sm spawn` prints.
    let fresh = s.ok(&["new", "--agent", "fake", "--name", "fresh", "--no-attach"]);
    let fresh_id = s.session("fresh")["id"].as_str().unwrap().to_string();
    assert_eq!(
        fresh.trim(),
        format!("spawned fresh ({}) [{fresh_id}]", &fresh_id[..8])
    );
    let completions = s.ok(&["completions", "bash"]);
    assert!(completions.contains("sm"), "shell completions are printed");
    let renamed = s.json(&["name", "soloist", "--session", "solo"]);
    assert_eq!(renamed["name"], "soloist");

    // Errors: exit 1 with the server's reason, exit 2 for usage, exit 3 without a server.
    let out = s.sm(&["send", "nobody", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no session nobody"),
        "{}",
        stderr(&out)
    );
    let out = s.sm(&["spawn", "--agent", "fake", "--name", "bad name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid_name"), "{}", stderr(&out));
    let out = s.sm(&["send", "soloist", ""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
    let out = s.sm(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));

    s.ok(&["kill", "soloist"]);
    let all = s.json(&["all"]);
    let dead = all
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "soloist")
        .unwrap()
        .clone();
    assert_eq!(dead["status"], "dead");
    let out = s.sm(&["send", dead["id"].as_str().unwrap(), "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("dead"), "{}", stderr(&out));

    let down = Command::new(env!("CARGO_BIN_EXE_sm"))
        .args(["status"])
        .env("SM_SERVER_URL", "http://127.0.0.1:9")
        .env("SM_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(3));
    assert!(
        stderr(&down).contains("sm server is not running"),
        "{}",
        stderr(&down)
    );
}

#[test]
fn requests_without_a_valid_token_are_refused() {
    let s = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_sm"))
        .args(["all"])
        .env("SM_CONFIG", s.dir.path().join("config.yaml"))
        .env("SM_TOKEN", "not-a-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let token = s.dir.path().join("state/token");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(token).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn an_agent_may_not_kill_its_parent() {
    let s = Server::start();
    std::fs::write(
        s.work().join("spawn.sh"),
        "sm spawn --agent fake --name child 'wait here'\n",
    )
    .unwrap();
    std::fs::write(
        s.work().join("mutiny.sh"),
        "sm kill parent 2> mutiny.err; echo $? > mutiny.rc\n",
    )
    .unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "parent",
        "--skip-permissions",
        "[[bash sh spawn.sh]]",
    ]);
    s.wait_prompts("child", 1);
    s.wait_status("child", "idle");
    // The child is not started with skip-permissions, so the parent types its order.
    s.ok(&["send", "child", "[[bash sh mutiny.sh]]"]);
    s.until("the child's bash permission prompt", || {
        s.ok(&["output", "child", "--lines", "20"])
            .contains("Do you want to proceed?")
            .then_some(())
    });
    s.wait_status("child", "needs_input");
    s.ok(&[
        "send",
        "child",
        "never typed into the prompt",
        "--important",
    ]);
    // Answer the permission prompt as a human would, through tmux.
    let child_id = s.session("child")["id"].as_str().unwrap().to_string();
    let target = format!("={}:={child_id}", s.socket);
    Command::new("tmux")
        .args(["-L", &s.socket, "send-keys", "-t", &target, "1"])
        .status()
        .unwrap();
    let rc = s.until("mutiny.rc", || {
        std::fs::read_to_string(s.work().join("mutiny.rc")).ok()
    });
    assert_eq!(rc.trim(), "1");
    let err = std::fs::read_to_string(s.work().join("mutiny.err")).unwrap();
    assert!(err.contains("forbidden"), "{err}");
    assert_eq!(s.session("parent")["status"], "idle");
    let p = s.wait_prompts("child", 3);
    assert_eq!(p[2], "never typed into the prompt");
}

#[test]
fn auto_lock_refuses_a_second_agent_in_one_repository_until_the_first_turn_ends() {
    let s = Server::start();
    let repo = s.work().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    assert!(
        Command::new("git")
            .args(["init", "-q"])
            .current_dir(&repo)
            .status()
            .unwrap()
            .success()
    );
    let repo_s = repo.to_str().unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "a",
        "--dir",
        repo_s,
        "--skip-permissions",
    ]);
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "b",
        "--dir",
        repo_s,
        "--skip-permissions",
    ]);
    s.ok(&[
        "send",
        "a",
        "[[write a.txt from a]] [[sleep 4]] [[reply a done]]",
    ]);
    s.until("a's lock", || {
        let locks = s.ok(&["status"]);
        locks.contains("writing").then_some(())
    });
    s.ok(&["send", "b", "[[write b.txt from b]] [[reply b done]]"]);
    s.until("b's refusal on screen", || {
        s.ok(&["output", "b", "--lines", "40"])
            .contains("PreToolUse:Write hook error: sm:")
            .then_some(())
    });
    let screen = s.ok(&["output", "b", "--lines", "40"]);
    assert!(screen.contains("is locked by session"), "{screen}");
    assert!(
        screen.contains("writing"),
        "the holder's reason is shown: {screen}"
    );
    assert!(!repo.join("b.txt").exists());
    assert!(repo.join("a.txt").exists());
    // When a's turn ends its auto-lock goes; b can write.
    s.wait_status("a", "idle");
    s.wait_status("b", "idle");
    // The release follows the turn's end; on a busy machine a status read can fall between.
    s.until("a's auto-lock released", || {
        (!s.ok(&["status"]).contains("writing")).then_some(())
    });
    s.ok(&["send", "b", "[[write b.txt from b]]"]);
    s.until("b.txt", || repo.join("b.txt").exists().then_some(()));
}

#[test]
fn hook_commands_are_instant_no_ops_outside_managed_sessions() {
    for args in [["hook", "stop"], ["auto-lock", ""]] {
        let args: Vec<&str> = args.iter().copied().filter(|a| !a.is_empty()).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sm"))
            .args(&args)
            .env_remove("SM_SESSION_ID")
            .env_remove("CLAUDE_SESSION_MANAGER_ID")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success(), "{args:?}");
    }
    // Inside a session but with the server down: still exit 0, quickly.
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sm"))
        .args(["hook", "stop"])
        .env("SM_SESSION_ID", "0b6f1d8c-2a4e-4c1e-9a53-4a1f0c7d9e21")
        .env("SM_SERVER_URL", "http://127.0.0.1:9")
        .env("SM_TOKEN", "x")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn setup_installs_hooks_idempotently_keeps_other_settings_and_uninstalls() {
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let original = r#"{"theme":"dark","hooks":{"Stop":[{"hooks":[{"type":"command","command":"say done"}]}]}}"#;
    std::fs::write(&settings, original).unwrap();
    let sm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sm"))
            .args(args)
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    let dry = sm(&["setup", "--dry-run"]);
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would install"));
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        original,
        "dry run writes nothing"
    );

    assert!(sm(&["setup"]).status.success());
    let installed: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(installed["theme"], "dark");
    assert_eq!(
        installed["hooks"]["Stop"][0]["hooks"][0]["command"],
        "say done"
    );
    let sm_path = env!("CARGO_BIN_EXE_sm");
    assert_eq!(
        installed["hooks"]["Stop"][1]["hooks"][0]["command"],
        format!("{sm_path} hook stop")
    );
    assert_eq!(
        installed["hooks"]["PreToolUse"][0]["hooks"][0]["command"],
        format!("{sm_path} auto-lock")
    );
    // sm's MCP server, registered for Claude Code at user scope.
    let claude_json = home.path().join(".claude.json");
    let registered: Value =
        serde_json::from_str(&std::fs::read_to_string(&claude_json).unwrap()).unwrap();
    assert_eq!(registered["mcpServers"]["sm"]["command"], sm_path);
    assert_eq!(registered["mcpServers"]["sm"]["args"][0], "mcp");
    let again = sm(&["setup"]);
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    assert_eq!(again.matches("nothing to change").count(), 2, "{again}");

    assert!(sm(&["setup", "--uninstall"]).status.success());
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    let want: Value = serde_json::from_str(original).unwrap();
    assert_eq!(back, want);
    let unregistered: Value =
        serde_json::from_str(&std::fs::read_to_string(&claude_json).unwrap()).unwrap();
    assert!(unregistered.get("mcpServers").is_none(), "{unregistered}");
    // --no-mcp: the hooks alone.
    std::fs::remove_file(&claude_json).unwrap();
    assert!(sm(&["setup", "--no-mcp"]).status.success());
    assert!(!claude_json.exists());
    assert!(sm(&["setup", "--uninstall"]).status.success());

    std::fs::write(&settings, "{ broken").unwrap();
    let refused = sm(&["setup"]);
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        "{ broken",
        "never overwritten"
    );
}

#[test]
fn agent_commands_work_from_inside_an_agent_with_json_output() {
    let s = Server::start();
    std::fs::write(
        s.work().join("inside.sh"),
        "sm me --json > me.json\n\
         sm lock 'big refactor' --json > lock.json\n\
         sm status --json > status.json\n\
         sm unlock --json > unlock.json\n\
         sm spawn --agent fake --name helper 'hello [[reply hi]]' --json > spawn.json\n\
         sm wait helper 30 --json > wait.json\n\
         sm others --json > others.json\n\
         sm children --json > children.json\n\
         sm alone; echo $? > alone.rc\n\
         sm name lead --json > name.json\n\
         echo done > inside.done\n",
    )
    .unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "agent",
        "--skip-permissions",
        "[[bash sh inside.sh]]",
    ]);
    s.until("the script", || {
        s.work().join("inside.done").exists().then_some(())
    });
    let read = |f: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(s.work().join(f)).unwrap()).unwrap()
    };
    assert_eq!(read("me.json")["name"], "agent");
    let lock = read("lock.json");
    assert_eq!(lock["reason"], "big refactor");
    assert_eq!(lock["kind"], "explicit");
    let status = read("status.json");
    assert_eq!(status["me"]["name"], "agent");
    assert_eq!(status["locks"][0]["reason"], "big refactor");
    assert_eq!(read("unlock.json").as_array().unwrap().len(), 1);
    assert_eq!(read("spawn.json")["parent"], read("me.json")["id"]);
    assert_eq!(read("wait.json")["timeout_secs"], 30);
    let others = read("others.json");
    let names: Vec<&str> = others
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["helper"], "everyone live but me");
    assert_eq!(read("children.json")[0]["name"], "helper");
    let alone = std::fs::read_to_string(s.work().join("alone.rc")).unwrap();
    assert_eq!(alone.trim(), "1", "helper works in the same directory");
    assert_eq!(read("name.json")["name"], "lead");
    // The wait registered inside the agent wakes it when the helper's turn is over.
    let p = s.wait_prompts("lead", 2);
    assert!(p[1].starts_with("[sm] helper"), "{p:?}");
}

#[test]
fn tasks_subagents_and_tool_use_are_shown() {
    let s = Server::start();
    std::fs::write(
        s.work().join("report.sh"),
        "sm task 'porting the parser'\n\
         echo '{\"agent_id\":\"sub-1\",\"agent_type\":\"general-purpose\"}' | sm hook subagent-start\n\
         echo '{\"agent_id\":\"sub-2\",\"agent_type\":\"Explore\"}' | sm hook subagent-start\n\
         echo '{\"agent_id\":\"sub-1\",\"agent_type\":\"general-purpose\"}' | sm hook subagent-stop\n\
         echo done > report.done\n",
    )
    .unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "porter",
        "--skip-permissions",
        "[[bash sh report.sh]] [[write notes.txt hello]]",
    ]);
    s.until("the script", || {
        s.work().join("report.done").exists().then_some(())
    });
    s.wait_status("porter", "idle");
    assert!(
        s.ok(&["all"]).contains("— porting the parser"),
        "{}",
        s.ok(&["all"])
    );
    assert_eq!(s.session("porter")["task"], "porting the parser");
    let subs = s.json(&["subagents", "porter"]);
    let subs = subs.as_array().unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(
        (subs[0]["agent_id"].as_str(), subs[0]["running"].as_bool()),
        (Some("sub-1"), Some(false))
    );
    assert_eq!(
        (subs[1]["agent_id"].as_str(), subs[1]["running"].as_bool()),
        (Some("sub-2"), Some(true))
    );
    let out = s.until("the tool use in the output", || {
        let out = s.ok(&["output", "porter", "--lines", "5"]);
        out.contains("post Write").then_some(out)
    });
    assert!(out.contains("notes.txt"), "{out}");
    s.ok(&["task", "", "--session", "porter"]);
    assert!(s.session("porter")["task"].is_null());
}

#[test]
fn what_uses_the_summariser_and_says_when_it_falls_back() {
    let s = Server::start();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "busy",
        "--skip-permissions",
        "[[write plan.md the plan]] [[reply wrote the plan]]",
    ]);
    // Idle after the tool ran is the end of the turn (right after the submit the status can
    // still read idle for a moment).
    s.until("the turn to end after its tool use", || {
        (s.ok(&["output", "busy"]).contains("post Write")
            && s.find("busy").is_some_and(|b| b["status"] == "idle"))
        .then_some(())
    });
    // No `claude` here: the configured command does not exist, so the fallback answers
    // (once the turn's end is in the log).
    let answer = s.until("the summary of the finished turn", || {
        let a = s.json(&["what", "busy"]);
        a["summary"]
            .as_str()
            .is_some_and(|t| t.contains("last message"))
            .then_some(a)
    });
    assert_eq!(answer["source"], "fallback", "{answer}");
    let summary = answer["summary"].as_str().unwrap();
    assert!(summary.contains("busy is idle"), "{summary}");
    assert!(
        summary.contains("last message: wrote the plan"),
        "{summary}"
    );
    assert!(summary.contains("last tool: Write"), "{summary}");
    let human = s.ok(&["what", "busy"]);
    assert!(human.contains("(fallback summary:"), "{human}");
}

#[test]
fn what_returns_the_summarisers_answer_when_it_works() {
    let scripts = tempfile::tempdir().unwrap();
    let fake_claude = scripts.path().join("claude");
    // Reads the context on stdin like `claude -p` and answers from it.
    std::fs::write(
        &fake_claude,
        "#!/bin/sh\ncontext=$(cat)\ncase \"$context\" in *'plan.md'*) echo 'It is writing plan.md.';; *) echo 'Unclear.';; esac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake_claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Server::start_with(&format!("claude:\n  command: {}\n", fake_claude.display()));
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "writer",
        "--skip-permissions",
        "[[write plan.md the plan]]",
    ]);
    s.until("the write on screen", || {
        s.ok(&["output", "writer"])
            .contains("plan.md")
            .then_some(())
    });
    let answer = s.json(&["what", "writer", "--deep"]);
    assert_eq!(answer["source"], "claude", "{answer}");
    assert_eq!(answer["summary"], "It is writing plan.md.");
}

/// A local HTTP receiver that records the JSON bodies POSTed to it.
fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                sink.lock().unwrap().push(v);
            }
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn webhooks_receive_notifications_and_a_dead_one_does_not_stop_them() {
    let (url, got) = webhook_receiver();
    let s = Server::start_with(&format!(
        "claude:\n  command: sm-test-no-claude-here\nwebhook:\n  urls: [\"http://127.0.0.1:9/dead\", \"{url}\"]\n  timeout: 1\n  attempts: 2\n"
    ));
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "notifier",
        "job [[reply finished the job]]",
    ]);
    s.until("a turn_completed webhook", || {
        got.lock()
            .unwrap()
            .iter()
            .any(|v| v["type"] == "turn_completed")
            .then_some(())
    });
    let all = got.lock().unwrap().clone();
    let done = all.iter().find(|v| v["type"] == "turn_completed").unwrap();
    assert_eq!(done["name"], "notifier");
    assert_eq!(done["last_message"], "finished the job");
    assert!(done["session"].as_str().unwrap().len() == 36);
}

#[test]
fn answer_picks_an_option_of_the_question_on_screen() {
    let s = Server::start();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "asker",
        "[[write answered.txt yes it was]]",
    ]);
    s.wait_status("asker", "needs_input");
    let out = s.sm(&["answer", "asker", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no option 7"), "{}", stderr(&out));
    let answered = s.json(&["answer", "asker", "1"]);
    assert_eq!(answered["answered"], "Yes");
    s.until("the write to happen", || {
        s.work().join("answered.txt").exists().then_some(())
    });
    s.wait_status("asker", "idle");
    let out = s.sm(&["answer", "asker", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not asking anything"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_send_repeated_with_its_idempotency_key_is_queued_and_delivered_once() {
    let s = Server::start();
    s.ok(&["spawn", "--agent", "fake", "--name", "w", "ready"]);
    s.wait_prompts("w", 1);
    let token = s.token();
    let body = br#"{"text":"only once please","idempotency_key":"retry-me"}"#;
    let (status, first) = s.http(
        "POST",
        "/sessions/w/input",
        Some(&token),
        Some("application/json"),
        body,
    );
    assert_eq!(status, 200, "{first}");
    let (status, again) = s.http(
        "POST",
        "/sessions/w/input",
        Some(&token),
        Some("application/json"),
        body,
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(first["id"], again["id"]);
    let (status, reused) = s.http(
        "POST",
        "/sessions/w/input",
        Some(&token),
        Some("application/json"),
        br#"{"text":"something else","idempotency_key":"retry-me"}"#,
    );
    assert_eq!(status, 400, "{reused}");
    s.ok(&["send", "w", "a marker after it"]);
    let prompts = s.wait_prompts("w", 3);
    assert_eq!(
        prompts,
        vec!["ready", "only once please", "a marker after it"]
    );
}

#[test]
fn sm_alone_outside_a_session_looked_at_no_directory() {
    let s = Server::start();
    s.ok(&["spawn", "--agent", "fake", "--name", "one"]);
    s.ok(&["spawn", "--agent", "fake", "--name", "two"]);
    let here = s.sm(&["alone"]);
    assert_eq!(here.status.code(), Some(1), "{}", stderr(&here));
    let out = String::from_utf8_lossy(&here.stdout).into_owned();
    assert!(
        out.contains("not alone") && out.contains("one (") && out.contains("two ("),
        "{out}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let there = s
        .sm_command()
        .current_dir(elsewhere.path())
        .arg("alone")
        .output()
        .unwrap();
    assert_eq!(there.status.code(), Some(0), "{}", stderr(&there));
    let out = String::from_utf8_lossy(&there.stdout).into_owned();
    let dir = elsewhere.path().canonicalize().unwrap();
    assert!(
        out.contains(&format!(
            "alone: no other live session works in {}",
            dir.display()
        )),
        "{out}"
    );
}

#[test]
fn sm_wait_outside_a_session_promised_a_message_nobody_could_get() {
    let s = Server::start();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "w",
        "first [[sleep 1]] [[reply all done]]",
    ]);
    // Blocks until the turn is over, then says what happened.
    let done = s.sm(&["wait", "w", "60"]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let out = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(
        out.contains("w finished its turn") && out.contains("last message: all done"),
        "{out}"
    );
    assert_eq!(
        s.prompts("w").len(),
        1,
        "it waited for the first prompt's turn"
    );
    let json = s.json(&["wait", "w", "5"]);
    assert_eq!(json["outcome"], "idle", "{json}");
    // Time up: its own exit code.
    s.ok(&["send", "w", "long [[sleep 600]]"]);
    s.wait_status("w", "working");
    let busy = s.sm(&["wait", "w", "1"]);
    assert_eq!(busy.status.code(), Some(4), "{}", stderr(&busy));
    assert!(String::from_utf8_lossy(&busy.stdout).contains("still busy after 1s"));
    // The target ending ends the wait too.
    let wait = s
        .sm_command()
        .args(["wait", "w", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    s.until("the wait to be registered", || {
        (!s.waits().is_empty()).then_some(())
    });
    s.ok(&["kill", "w"]);
    let ended = wait.wait_with_output().unwrap();
    assert_eq!(ended.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ended.stdout).contains("w ended"));
}

#[test]
fn a_spawn_that_could_not_start_left_a_dead_record_without_a_reason() {
    let s = Server::start();
    // Claude is configured as a program that does not exist: refused before anything is
    // registered, saying why.
    let missing = s.sm(&["spawn", "--name", "ghost", "hello"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = stderr(&missing);
    assert!(
        err.contains("sm-test-no-claude-here") && err.contains("PATH"),
        "{err}"
    );
    assert!(s.find("ghost").is_none());
    assert_eq!(s.json(&["all"]).as_array().unwrap().len(), 0);
    // An agent that dies shows why in the listings.
    s.ok(&["spawn", "--agent", "fake", "--name", "crasher", "[[crash]]"]);
    let dead = s.until("the crash to be recorded", || {
        s.json(&["all"])
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "crasher" && x["status"] == "dead")
            .cloned()
    });
    let reason = dead["end_reason"].as_str().unwrap().to_string();
    assert!(!reason.is_empty(), "{dead}");
    let listed = s.ok(&["all"]);
    assert!(listed.contains(&format!("({reason})")), "{listed}");
}

#[test]
fn a_lowercase_bearer_scheme_was_refused() {
    let s = Server::start();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (status, body) = s.http_with_header(
            "GET",
            "/sessions",
            ("Authorization", &format!("{scheme} {}", s.token())),
            b"",
        );
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    let (status, _) = s.http_with_header(
        "GET",
        "/sessions",
        ("Authorization", &format!("Basic {}", s.token())),
        b"",
    );
    assert_eq!(status, 401);
}

#[test]
fn sm_output_repeated_the_screen_for_every_redraw() {
    let s = Server::start();
    s.ok(&["spawn", "--agent", "fake", "--name", "talker"]);
    for i in 1..=3 {
        s.ok(&[
            "send",
            "talker",
            &format!("say it [[reply answer number {i}]]"),
        ]);
        s.wait_prompts("talker", i);
        // The turn is over once its reply is on screen (a status read right after the
        // prompt arrived may still be the idle from before it).
        s.until(&format!("reply {i} on screen"), || {
            s.ok(&["output", "talker", "--lines", "50"])
                .contains(&format!("⏺ answer number {i}"))
                .then_some(())
        });
    }
    s.wait_status("talker", "idle");
    let out = s.ok(&["output", "talker", "--lines", "2000"]);
    for i in 1..=3 {
        let shown = out
            .lines()
            .filter(|l| l.contains(&format!("answer number {i}")))
            .count();
        // Once as the prompt's echo, once as the reply.
        assert_eq!(shown, 2, "answer {i} is shown {shown} times:\n{out}");
    }
}

#[test]
fn a_newer_client_whose_requests_carry_fields_this_server_does_not_know_still_works() {
    let s = Server::start();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "w",
        "first [[reply one]]",
    ]);
    s.wait_prompts("w", 1);
    let id = s.session("w")["id"].as_str().unwrap().to_string();
    let body = br#"{"text":"from a newer sm [[reply two]]","mode":"important","delivery_hint":"fast","labels":["x"]}"#;
    let (status, answer) = s.http(
        "POST",
        &format!("/sessions/{id}/input"),
        Some(&s.token()),
        Some("application/json"),
        body,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["mode"], "important");
    let prompts = s.wait_prompts("w", 2);
    assert_eq!(prompts[1], "from a newer sm [[reply two]]");
    // A known field with a wrong type is still refused, with a JSON error.
    let (status, answer) = s.http(
        "POST",
        &format!("/sessions/{id}/input"),
        Some(&s.token()),
        Some("application/json"),
        br#"{"text":42}"#,
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_body");
}

#[test]
fn status_is_one_request_that_says_who_asks_every_session_and_every_lock() {
    let s = Server::start();
    s.ok(&["spawn", "--agent", "fake", "--name", "holder", "hi"]);
    s.wait_prompts("holder", 1);
    let holder = s.session("holder");
    let token = s.agent_token("holder");
    let (code, lock) = s.http(
        "POST",
        "/locks",
        Some(&token),
        Some("application/json"),
        br#"{"reason":"writing the parser"}"#,
    );
    assert_eq!(code, 200, "{lock}");

    let (code, as_admin) = s.http("GET", "/status", Some(&s.token()), None, b"");
    assert_eq!(code, 200, "{as_admin}");
    assert_eq!(as_admin["me"]["admin"], true);
    assert!(
        as_admin["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == holder["id"])
    );
    assert_eq!(as_admin["locks"][0]["holder"], holder["id"]);

    let (code, as_agent) = s.http("GET", "/status", Some(&token), None, b"");
    assert_eq!(code, 200, "{as_agent}");
    assert_eq!(as_agent["me"]["id"], holder["id"]);
    assert_eq!(as_agent["me"]["name"], "holder");

    // The CLI shows the same, from that one answer.
    let json = s.json(&["status"]);
    assert_eq!(json["me"]["admin"], true);
    assert_eq!(json["locks"][0]["reason"], "writing the parser");
    let text = s.ok(&["status"]);
    assert!(
        text.contains("me: admin") && text.contains("writing the parser"),
        "{text}"
    );
}

#[test]
fn service_install_writes_a_valid_unit_enables_it_and_uninstall_removes_it() {
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A stand-in for systemctl that records what it was asked, and fails when told to.
    let calls = home.path().join("systemctl.log");
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\n[ -e {}/fail ] && {{ echo 'Failed to connect to bus' >&2; exit 1; }}\ncase \"$2\" in is-enabled) echo enabled;; is-active) echo active;; esac\nexit 0\n",
            calls.display(),
            home.path().display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", fake.to_str().unwrap()])
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config = home.path().join("config.yaml");
    std::fs::write(&config, "server:\n  port: 8420\n").unwrap();
    let sm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sm"))
            .args(args)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("PATH", &path)
            .env("SM_CONFIG", &config)
            .output()
            .unwrap()
    };
    let unit = home.path().join(".config/systemd/user/sm.service");

    let out = sm(&["service", "install"]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&unit).unwrap();
    let server = std::path::Path::new(env!("CARGO_BIN_EXE_sm")).with_file_name("sm-server");
    assert!(
        text.contains(&format!(
            "ExecStart={} --config {}",
            server.display(),
            config.display()
        )),
        "{text}"
    );
    assert!(text.contains("KillMode=process"), "{text}");
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(log.contains("--user daemon-reload"), "{log}");
    assert!(log.contains("--user enable --now sm.service"), "{log}");
    // systemd itself accepts the unit, where it is installed.
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
    {
        Ok(v) => assert!(
            v.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&v.stderr)
        ),
        Err(_) => eprintln!("systemd-analyze is not installed: verify skipped"),
    }

    let status = String::from_utf8(sm(&["service", "status"]).stdout).unwrap();
    assert!(status.contains("enabled: enabled"), "{status}");
    assert!(status.contains("active: active"), "{status}");

    // When the session manager cannot be reached, the file stays and the user is told how.
    std::fs::write(home.path().join("fail"), "").unwrap();
    let refused = sm(&["service", "install"]);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("could not be enabled") && err.contains("systemctl --user"),
        "{err}"
    );
    assert!(unit.exists());
    std::fs::remove_file(home.path().join("fail")).unwrap();

    let removed = sm(&["service", "uninstall"]);
    assert!(removed.status.success(), "{removed:?}");
    assert!(!unit.exists());
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(log.contains("--user disable --now sm.service"), "{log}");
    let status = String::from_utf8(sm(&["service", "status"]).stdout).unwrap();
    assert!(status.contains("not installed"), "{status}");
    // A configuration file that does not exist is refused before anything is written.
    let missing = Command::new(env!("CARGO_BIN_EXE_sm"))
        .args(["service", "install", "--config", "/nonexistent/sm.yaml"])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(!unit.exists());
}
