//! Agents as a security boundary: what an agent with a shell can and cannot do, tried the
//! way an attacker would from inside a real (sandboxed) fake agent on real tmux, and the
//! same without the sandbox, showing what the README's threat model says.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};
use sm_tests::*;

/// What the attack script found, by line.
struct Findings {
    report: String,
    /// What the in-tree `sm kill` said.
    kill_said: String,
    ids_seen: String,
    victim_prompts: Vec<String>,
    victim_status: String,
}

/// Starts a victim and an attacker (with a shell, no permission prompts) and has the
/// attacker try, in one turn: read the admin token, list the state dir, type into the
/// victim through tmux, read every process's environment, and kill the victim as admin
/// with its own identity stripped from the environment.
fn attack(s: &Server) -> Findings {
    s.ok(&["spawn", "--agent", "fake", "--name", "victim"]);
    s.wait_status("victim", "idle");
    let victim = s.session("victim")["id"].as_str().unwrap().to_string();
    let state = s.dir.path().join("state");
    let config = s.dir.path().join("config.yaml");
    let socket = &s.socket;
    let script = format!(
        "out=attack.out\n\
         echo \"token: $(cat {state}/token 2>&1 | head -c 200)\" > $out\n\
         echo \"state: $(ls -A {state} 2>&1 | tr '\\n' ' ')\" >> $out\n\
         tmux -L {socket} send-keys -t '={socket}:={victim}' -l INJECTED > /dev/null 2>&1; echo \"tmux rc $?\" >> $out\n\
         tmux -L {socket} send-keys -t '={socket}:={victim}' Enter > /dev/null 2>&1\n\
         cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep '^SM_SESSION_ID=' | sort -u > ids.out\n\
         env -u SM_TOKEN -u SM_SESSION_ID -u CLAUDE_SESSION_MANAGER_ID -u SM_SERVER_URL sm --config {config} kill victim > kill.out 2>&1; echo \"kill rc $?\" >> $out\n\
         ( setsid sh -c 'env -u SM_TOKEN -u SM_SESSION_ID -u CLAUDE_SESSION_MANAGER_ID -u SM_SERVER_URL sm --config {config} kill victim > kill2.out 2>&1; echo \"kill2 rc $?\" > kill2.rc' & )\n\
         while [ ! -f kill2.rc ]; do sleep 0.05; done; cat kill2.rc >> $out\n\
         echo \"TMUX=[$TMUX]\" >> $out\n\
         echo done > attack.done\n",
        state = state.display(),
        config = config.display(),
    );
    std::fs::write(s.work().join("attack.sh"), script).unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "mallory",
        "--skip-permissions",
        "[[bash sh attack.sh]]",
    ]);
    s.until("the attack to finish", || {
        s.work().join("attack.done").exists().then_some(())
    });
    s.wait_status("mallory", "idle");
    let read = |f: &str| std::fs::read_to_string(s.work().join(f)).unwrap_or_default();
    let victim_status = s
        .json(&["all"])
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == victim.as_str())
        .map(|x| x["status"].as_str().unwrap().to_string())
        .unwrap();
    Findings {
        report: read("attack.out"),
        kill_said: read("kill.out"),
        ids_seen: read("ids.out"),
        victim_prompts: s.prompts("victim"),
        victim_status,
    }
}

#[test]
fn a_sandboxed_agent_cannot_read_the_admin_token_drive_tmux_read_others_or_act_as_admin() {
    let s = Server::start_opts(Options {
        sandbox: Some("bwrap"),
        ..Options::default()
    });
    assert!(
        s.log().contains("agents run sandboxed"),
        "the server says it sandboxes agents:\n{}",
        s.log()
    );
    let f = attack(&s);
    let token = s.token();
    assert!(
        !f.report.contains(&token),
        "the admin token leaked:\n{}",
        f.report
    );
    assert!(
        f.report.contains("token: cat:") && f.report.contains("No such file"),
        "{}",
        f.report
    );
    assert!(
        f.report.contains("state: \n"),
        "the state dir is empty inside:\n{}",
        f.report
    );
    assert!(
        !f.report.contains("tmux rc 0"),
        "tmux reached the server:\n{}",
        f.report
    );
    assert!(
        !f.victim_prompts.iter().any(|p| p.contains("INJECTED")),
        "{:?}",
        f.victim_prompts
    );
    let mallory = s.session("mallory")["id"].as_str().unwrap().to_string();
    assert_eq!(
        f.ids_seen.trim(),
        format!("SM_SESSION_ID={mallory}"),
        "only its own processes are visible"
    );
    assert!(!f.report.contains("kill rc 0"), "{}", f.report);
    assert!(!f.report.contains("kill2 rc 0"), "{}", f.report);
    assert_eq!(f.victim_status, "idle");
    assert!(f.report.contains("TMUX=[]"), "{}", f.report);
}

#[test]
fn without_the_sandbox_an_agent_can_do_what_its_user_can_but_not_use_the_admin_token_in_its_tree() {
    // What the README's threat model says of `terminal.sandbox: none`.
    let s = Server::start_opts(Options {
        sandbox: Some("none"),
        ..Options::default()
    });
    assert!(s.log().contains("agents run unsandboxed"), "{}", s.log());
    let f = attack(&s);
    assert!(f.report.contains(&s.token()), "{}", f.report);
    assert!(f.report.contains("tmux rc 0"), "{}", f.report);
    let victim = s.session_any("victim")["id"].as_str().unwrap().to_string();
    assert!(f.ids_seen.contains(&victim), "{}", f.ids_seen);
    // The admin token, read from the state dir, is refused from inside the agent's
    // process tree...
    assert!(f.report.contains("kill rc 1"), "{}", f.report);
    assert!(
        f.kill_said.contains("not accepted from inside an agent"),
        "{}",
        f.kill_said
    );
    // (A process that left the tree with a double fork may or may not be told apart,
    // depending on who adopts it; the README says not to rely on it.)
    let _ = f.victim_status;
}

/// An agent's own token, as its agent was given it.
fn agent_token(s: &Server, name: &str) -> String {
    s.agent_token(name)
}

#[test]
fn an_agent_cannot_give_a_child_more_than_it_has() {
    let s = Server::start();
    s.ok(&["spawn", "--agent", "fake", "--name", "careful"]);
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "trusted",
        "--skip-permissions",
    ]);
    let spawn = |token: &str, body: Value| {
        s.http(
            "POST",
            "/sessions",
            Some(token),
            Some("application/json"),
            body.to_string().as_bytes(),
        )
    };
    let dir = s.work().display().to_string();
    let careful = agent_token(&s, "careful");
    let (status, body) = spawn(
        &careful,
        json!({ "agent": "fake", "name": "escalated", "working_dir": dir, "skip_permissions": true }),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert!(s.find("escalated").is_none());
    let trusted = agent_token(&s, "trusted");
    let (status, body) = spawn(
        &trusted,
        json!({ "agent": "fake", "name": "allowed", "working_dir": dir, "skip_permissions": true }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["skip_permissions"], true);
    // A resume value is a conversation id, never a flag — not even from an admin.
    for resume in ["--dangerously-skip-permissions", "-r", "x y", "a;b", ""] {
        let (status, body) = spawn(
            &s.token(),
            json!({ "agent": "fake", "working_dir": dir, "resume": resume }),
        );
        assert_eq!(status, 400, "{resume:?}: {body}");
    }
}

#[test]
fn escape_codes_in_a_dir_or_a_last_message_reached_the_operators_terminal() {
    let s = Server::start();
    let evil = s.work().join("evil\u{1b}]0;pwned\u{7}\nnext");
    std::fs::create_dir(&evil).unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "tricky",
        "--dir",
        evil.to_str().unwrap(),
    ]);
    s.wait_status("tricky", "idle");
    let token = agent_token(&s, "tricky");
    let stop = json!({ "last_assistant_message": "\u{1b}]52;c;aGk=\u{7}\u{1b}]0;title\u{7}\u{1b}[2Jcleared" });
    let (status, _) = s.http(
        "POST",
        "/hooks/Stop",
        Some(&token),
        Some("application/json"),
        stop.to_string().as_bytes(),
    );
    assert_eq!(status, 200);
    s.until("the turn to be recorded", || {
        s.ok(&["what", "tricky"]).contains("cleared").then_some(())
    });
    for args in [
        &["status"][..],
        &["all"],
        &["what", "tricky"],
        &["others"],
        &["me"],
    ] {
        let out = s.ok(args);
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}'),
            "sm {args:?} printed a control character: {out:?}"
        );
    }
    let all = s.ok(&["all"]);
    let lines: Vec<&str> = all.lines().filter(|l| l.contains("tricky (")).collect();
    assert_eq!(lines.len(), 1, "one line per session: {all:?}");
    assert!(lines[0].contains("next"), "{all:?}");
    // JSON stays exact.
    let json = s.json(&["all"]);
    let dir = json.as_array().unwrap()[0]["working_dir"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(dir.contains('\u{1b}') && dir.contains('\n'), "{dir:?}");
}

#[test]
fn an_agent_could_squat_another_sessions_short_id() {
    let s = Server::start();
    s.ok(&["spawn", "--agent", "fake", "--name", "real"]);
    s.ok(&["spawn", "--agent", "fake", "--name", "squatter"]);
    let real = s.session("real")["id"].as_str().unwrap().to_string();
    for name in [
        &real[..8],
        &real[..13],
        "deadbeef",
        "0123-4567-89",
        real.as_str(),
    ] {
        let out = s.sm(&["name", name, "--session", "squatter"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("look like a session id"),
            "{}",
            stderr(&out)
        );
    }
    // The short id names the real session.
    let got = s.http(
        "GET",
        &format!("/sessions/{}", &real[..8]),
        Some(&s.token()),
        None,
        b"",
    );
    assert_eq!(got.1["name"], "real", "{}", got.1);
    // Ordinary names still work.
    s.ok(&["name", "cafe-worker", "--session", "squatter"]);
}

#[test]
fn state_files_were_readable_by_every_local_user() {
    let s = Server::start();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "w",
        "hello [[reply hi]]",
    ]);
    s.wait_prompts("w", 1);
    let state = s.dir.path().join("state");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "state dir");
    for f in ["sm.db", "sm.db-wal", "sm.db-shm", "server.url", "token"] {
        let p = state.join(f);
        assert!(p.exists(), "{f} exists");
        assert_eq!(mode(&p), 0o600, "{f}");
    }
}

#[test]
fn a_slow_loris_held_every_connection() {
    use std::io::{Read, Write};
    let s = Server::start_opts(Options {
        server_yaml: "  max_connections: 8\n  header_timeout: 1\n".into(),
        ..Options::default()
    });
    let addr = s.url().trim_start_matches("http://").to_string();
    // Eight clients that never finish their headers take every slot.
    let mut slow: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    // One more is refused at once, and the server says why.
    s.until("a refused connection", || {
        let mut extra = std::net::TcpStream::connect(&addr).ok()?;
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        matches!(extra.read(&mut buf), Ok(0) | Err(_)).then_some(())
    });
    s.until("the log line", || {
        s.log().contains("connection limit reached").then_some(())
    });
    // The header timeout closes the slow ones; then the server answers again.
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
    }
    s.until("the server to answer again", || {
        (s.http("GET", "/health", None, None, b"").0 == 200).then_some(())
    });
}

#[test]
fn a_sandboxed_agent_on_raw_ptys_cannot_read_the_admin_token_or_other_agents() {
    let s = Server::start_opts(Options {
        sandbox: Some("bwrap"),
        backend: Some("pty"),
        ..Options::default()
    });
    s.ok(&["spawn", "--agent", "fake", "--name", "victim"]);
    s.wait_status("victim", "idle");
    let state = s.dir.path().join("state");
    std::fs::write(
        s.work().join("peek.sh"),
        format!(
            "cat {}/token > peek.out 2>&1\n\
             cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep '^SM_SESSION_ID=' | sort -u > peek.ids\n\
             echo done > peek.done\n",
            state.display()
        ),
    )
    .unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "peeker",
        "--skip-permissions",
        "[[bash sh peek.sh]]",
    ]);
    s.until("the peek", || {
        s.work().join("peek.done").exists().then_some(())
    });
    let out = std::fs::read_to_string(s.work().join("peek.out")).unwrap();
    assert!(
        !out.contains(&s.token()) && out.contains("No such file"),
        "{out}"
    );
    let peeker = s.session("peeker")["id"].as_str().unwrap().to_string();
    let ids = std::fs::read_to_string(s.work().join("peek.ids")).unwrap();
    assert_eq!(ids.trim(), format!("SM_SESSION_ID={peeker}"));
    // Killing a sandboxed agent on a PTY ends it, with its whole tree.
    s.ok(&["kill", "peeker"]);
    s.ok(&["send", "victim", "still here [[reply yes]]"]);
    s.wait_prompts("victim", 1);
}

#[test]
fn a_bubblewrap_that_cannot_run_stops_the_server_unless_told_to_run_unsandboxed() {
    let dir = tempfile::tempdir().unwrap();
    // A bwrap that fails as it does without unprivileged user namespaces.
    let fake_bin = dir.path().join("bin");
    std::fs::create_dir(&fake_bin).unwrap();
    let bwrap = fake_bin.join("bwrap");
    std::fs::write(
        &bwrap,
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&bwrap, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |sandbox: &str| {
        let config = dir.path().join(format!("config-{sandbox}.yaml"));
        std::fs::write(
            &config,
            format!(
                "server:\n  port: 0\npaths:\n  state_file: {}/state-{sandbox}/state.json\nterminal:\n  backend: pty\n  sandbox: {sandbox}\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new(sibling("sm-server"))
            .arg("--config")
            .arg(&config)
            .env("PATH", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let url_file = dir.path().join(format!("state-{sandbox}/server.url"));
        let exited = until("the server to start or stop", DEADLINE, || {
            if url_file.exists() {
                return Some(None);
            }
            child.try_wait().unwrap().map(Some)
        });
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (exited, log)
    };
    let (exited, log) = run("auto");
    assert!(
        exited.is_some_and(|st| !st.success()),
        "the server started with a broken sandbox:\n{log}"
    );
    assert!(
        log.contains("No permissions to create new namespace")
            && log.contains("unprivileged_userns_clone")
            && log.contains("terminal.sandbox: none"),
        "{log}"
    );
    let (exited, log) = run("none");
    assert!(
        exited.is_none(),
        "told to run unsandboxed, it starts:\n{log}"
    );
    assert!(log.contains("agents run unsandboxed"), "{log}");
}

#[test]
fn the_servers_secret_settings_reached_sandboxed_agents_through_the_environment() {
    // Settings given as SM_* variables (a bot token; in a cluster the database URL with
    // its password) were inherited by tmux and so by every agent.
    let s = Server::start_opts(Options {
        sandbox: Some("bwrap"),
        env: vec![("SM_TELEGRAM_TOKEN".into(), "123:LEAKED-BOT-TOKEN".into())],
        // No real Telegram: nothing listens there.
        extra_config: "telegram:\n  api_url: http://127.0.0.1:9\n".into(),
        ..Options::default()
    });
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "nosy",
        "--skip-permissions",
        "[[bash env > env.out; echo done > env.done]]",
    ]);
    s.until("the agent's environment", || {
        s.work().join("env.done").exists().then_some(())
    });
    let env = std::fs::read_to_string(s.work().join("env.out")).unwrap();
    assert!(!env.contains("LEAKED-BOT-TOKEN"), "{env}");
    assert!(!env.contains("SM_TELEGRAM_TOKEN"), "{env}");
    // What the agent needs is still there.
    assert!(
        env.contains("SM_TOKEN=") && env.contains("SM_SERVER_URL="),
        "{env}"
    );
}
