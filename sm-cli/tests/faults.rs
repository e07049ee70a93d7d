//! Faults outside sm's control, with real processes: the tmux server dies, an agent exits or
//! is killed while messages are being delivered to it, the disk fills up under the database.
//! Each must be reported clearly, hang nothing, and lose nothing already accepted.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use serde_json::Value;
use sm_tests::*;

/// How the store settled message `id`: `Some(("delivered" | "failed", reason))`.
fn outcome(server: &Server, id: u64) -> Option<(String, String)> {
    let (status, events) = server.http(
        "GET",
        "/events?limit=100000",
        Some(&server.token()),
        None,
        b"",
    );
    assert_eq!(status, 200, "{events}");
    events.as_array().unwrap().iter().find_map(|e| {
        let kind = if e["kind"].is_object() { &e["kind"] } else { e };
        let ty = kind["type"].as_str()?;
        (kind["message"].as_u64() == Some(id)
            && (ty == "message_delivered" || ty == "message_failed"))
            .then(|| {
                (
                    ty.trim_start_matches("message_").to_string(),
                    kind["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
    })
}

fn send(server: &Server, target: &str, text: &str, extra: &[&str]) -> u64 {
    let mut args = vec!["send", target, text];
    args.extend_from_slice(extra);
    server.json(&args)["id"].as_u64().unwrap()
}

fn healthy(server: &Server) {
    let (status, body) = server.http("GET", "/health", None, None, b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        !server.log().contains("panicked"),
        "the server panicked:\n{}",
        server.log()
    );
}

#[test]
fn the_tmux_server_dying_is_reported_and_sm_carries_on() {
    let mut server = Server::start();
    server.ok(&["spawn", "--agent", "fake", "--name", "busy", "[[sleep 60]]"]);
    server.ok(&["spawn", "--agent", "fake", "--name", "idle", "hello"]);
    server.wait_prompts("idle", 1);
    server.wait_status("busy", "working");
    let queued = send(&server, "busy", "queued behind a long turn", &[]);

    let killed = Command::new("tmux")
        .args(["-L", &server.socket, "kill-server"])
        .status()
        .unwrap();
    assert!(killed.success());

    // Every agent is reported dead, with the reason; the queued message is failed, not lost
    // in limbo.
    server.until("every agent to be reported dead", || {
        let all = server.json(&["all"]);
        all.as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "dead")
            .then_some(())
    });
    let (state, reason) = server.until("the queued message to be settled", || {
        outcome(&server, queued)
    });
    assert_eq!(state, "failed");
    assert!(
        reason.contains("closed") || reason.contains("ended"),
        "{reason}"
    );
    healthy(&server);

    // sm starts a new tmux server for the next agent.
    server.ok(&["spawn", "--agent", "fake", "--name", "after", "back again"]);
    assert_eq!(server.wait_prompts("after", 1), vec!["back again"]);
    assert!(server.is_running());
}

#[test]
fn an_agent_that_exits_or_is_killed_mid_delivery_gets_nothing_twice_and_its_senders_know() {
    let server = Server::start();
    server.ok(&["spawn", "--agent", "fake", "--name", "leaver", "ready"]);
    server.wait_prompts("leaver", 1);
    // Its next turn ends the program; messages keep coming while it goes.
    let mut ids = vec![send(&server, "leaver", "[[sleep 0.3]] [[exit]]", &[])];
    for i in 0..5 {
        ids.push(send(&server, "leaver", &format!("after the exit {i}"), &[]));
    }
    // (Urgent would interrupt the exiting turn, so the exit would never happen.)
    ids.push(send(
        &server,
        "leaver",
        "important while exiting",
        &["--important"],
    ));
    let settled: Vec<(String, String)> = ids
        .iter()
        .map(|id| server.until("every message to be settled", || outcome(&server, *id)))
        .collect();
    server.until("the agent to be gone", || {
        server
            .find("leaver")
            .is_none_or(|s| s["status"] == "stopped")
            .then_some(())
    });

    // A killed agent, mid-paste of a long message.
    server.ok(&["spawn", "--agent", "fake", "--name", "victim", "ready"]);
    server.wait_prompts("victim", 1);
    let victim = server.session("victim")["id"].as_str().unwrap().to_string();
    let pane_pid = String::from_utf8(
        Command::new("tmux")
            .args(["-L", &server.socket, "list-panes", "-t"])
            .arg(format!("={}", victim))
            .args(["-F", "#{pane_pid}"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let long: String = (0..400)
        .map(|i| format!("line {i} of a long message\n"))
        .collect();
    let long_id = send(&server, "victim", &long, &[]);
    Command::new("kill")
        .args(["-KILL", &pane_pid])
        .status()
        .unwrap();
    let (long_state, long_reason) = server.until("the long message to be settled", || {
        outcome(&server, long_id)
    });

    // Nothing twice; whatever did not arrive was failed with a reason.
    let all = server.all_prompts();
    let count = |text: &str| all.iter().filter(|(_, p)| p == text).count();
    let texts: Vec<String> = std::iter::once("[[sleep 0.3]] [[exit]]".to_string())
        .chain((0..5).map(|i| format!("after the exit {i}")))
        .chain(std::iter::once("important while exiting".to_string()))
        .collect();
    for (text, (state, reason)) in texts.iter().zip(&settled) {
        let n = count(text);
        assert!(n <= 1, "{text:?} arrived {n} times");
        if state == "failed" {
            assert_eq!(n, 0, "{text:?} arrived but was reported failed");
            assert!(!reason.is_empty(), "{text:?} failed without a reason");
        } else {
            assert_eq!(n, 1, "{text:?} reported delivered but never arrived");
        }
    }
    assert_eq!(settled[0].0, "delivered", "the exit prompt itself arrives");
    let long_trimmed = long.trim_end();
    assert!(count(long_trimmed) <= 1);
    if long_state == "failed" {
        assert!(!long_reason.is_empty());
    }
    healthy(&server);
}

#[test]
fn a_full_disk_refuses_sends_clearly_and_loses_nothing_accepted() {
    let server = Server::start();
    server.ok(&["spawn", "--agent", "fake", "--name", "w", "ready"]);
    server.wait_prompts("w", 1);
    let state = server.dir.path().join("state");
    let size = |name: &str| {
        std::fs::metadata(state.join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let logged = std::fs::metadata(server.dir.path().join("server.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    let limit = size("sm.db").max(size("sm.db-wal")).max(logged) + 256 * 1024;
    let prlimit = |value: &str| {
        let ok = Command::new("prlimit")
            .arg(format!("--pid={}", server.child.id()))
            .arg(format!("--fsize={value}:"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "prlimit failed");
    };
    // From now on no file the server writes may grow past `limit`: the disk is "full".
    prlimit(&limit.to_string());
    let filler = "x".repeat(30_000);
    let mut accepted = Vec::new();
    let mut refusal = None;
    for i in 0..200 {
        let text = format!("disk test {i} {filler}");
        let out = server.sm(&["send", "w", &text, "--json"]);
        if out.status.success() {
            accepted.push(text);
        } else {
            refusal = Some((out.status.code(), stderr(&out)));
            break;
        }
    }
    let (code, message) = refusal.expect("the disk never filled up");
    println!(
        "disk full after {} accepted sends; the next was refused: {}",
        accepted.len(),
        message.trim()
    );
    assert_eq!(code, Some(1), "{message}");
    assert!(
        message.contains("disk is full") || message.contains("is the disk full"),
        "the refusal does not say why: {message}"
    );
    healthy(&server);

    // Space comes back: sends work again, and everything accepted arrives exactly once.
    prlimit("unlimited");
    let after = "after the disk was freed".to_string();
    server.ok(&["send", "w", &after]);
    accepted.push(after);
    let got = server.until("every accepted message to arrive", || {
        let p = server.prompts("w");
        p.contains(accepted.last().unwrap()).then_some(p)
    });
    for text in &accepted {
        let n = got.iter().filter(|p| *p == text).count();
        assert_eq!(n, 1, "{} arrived {n} times", &text[..20]);
    }
    assert!(
        !got.iter()
            .any(|p| p.starts_with("disk test") && !accepted.contains(p)),
        "a refused message was delivered"
    );
    let _: Value = server.json(&["all"]);
    healthy(&server);
}

#[test]
fn a_state_dir_that_cannot_be_written_stops_the_server_with_a_clear_error() {
    // /sys refuses new directories even to root: a read-only place for the state dir.
    let (code, output) = run_server_expecting_exit(
        "server:\n  port: 0\npaths:\n  state_file: /sys/sm-test-state/state.json\nterminal:\n  backend: pty\n",
    );
    assert_ne!(code, Some(0), "{output}");
    assert!(
        output.contains("/sys/sm-test-state"),
        "the error does not name the place: {output}"
    );
}

#[test]
fn a_server_told_to_listen_beyond_this_machine_warns_loudly() {
    let mut server = Server::start_opts(Options {
        env: vec![("SM_SERVER_HOST".into(), "0.0.0.0".into())],
        ..Options::default()
    });
    assert!(
        server.log().contains("LISTENING BEYOND THIS MACHINE"),
        "{}",
        server.log()
    );
    server.stop();
}

/// A killed server's tmux control client stayed attached without reading, and tmux held
/// back the output of every agent's pane behind it: the agents froze until a restart. (It
/// happens when the server dies while its client's output is backed up, so the server is
/// stopped first and an agent prints a lot.)
#[test]
fn agents_output_froze_after_the_server_was_killed_with_its_control_output_backed_up() {
    let mut s = Server::start();
    s.ok(&["spawn", "--agent", "shell", "--name", "sh"]);
    let id = s.session("sh")["id"].as_str().unwrap().to_string();
    let target = s.pane(&id);
    let control_clients = |s: &Server| {
        s.tmux(&["list-clients", "-F", "#{client_control_mode}"])
            .matches('1')
            .count()
    };
    assert_eq!(control_clients(&s), 1, "the server's own control client");
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    s.tmux(&["send-keys", "-t", &target, "-l", "seq 1 300000"]);
    s.tmux(&["send-keys", "-t", &target, "Enter"]);
    // Let output pile up behind the stopped server (tmux may stop reading the pane once
    // the stopped server's client lags far enough), then kill it.
    until("the shell to print for a while", DEADLINE, || {
        s.tmux(&["capture-pane", "-p", "-t", &target])
            .lines()
            .any(|l| l.trim().parse::<u32>().is_ok_and(|n| n > 2000))
            .then_some(())
    });
    s.kill9();
    until("the dead server's control client to go", DEADLINE, || {
        (control_clients(&s) == 0).then_some(())
    });
    // The agent's screen still follows its output.
    s.tmux(&[
        "send-keys",
        "-t",
        &target,
        "-l",
        "seq 1 100000; echo again-$((6*7))",
    ]);
    s.tmux(&["send-keys", "-t", &target, "Enter"]);
    until("the shell's next output on screen", DEADLINE, || {
        s.tmux(&["capture-pane", "-p", "-t", &target])
            .contains("again-42")
            .then_some(())
    });
    // A restarted server attaches one control client of its own.
    s.restart();
    healthy(&s);
    assert_eq!(control_clients(&s), 1);
}
