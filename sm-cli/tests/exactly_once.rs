//! Exactly once, one wake per wait, nothing dropped: regression tests for what crashes,
//! waits, spawns and kills used to get wrong, each on a real server with real tmux and fake
//! agents whose hooks call the real `sm`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sm_lib::MessageState;
use sm_tests::*;

/// A server whose agents run `kill_hook` as their prompt hook (the kill lands after the
/// agent took the prompt and before it shows it on screen, so sm has not seen the submit)
/// and write their transcript `transcript_delay_ms` late. With `keep_sm_prompt_hook` the
/// prompt hook reports to sm first, as usual; without, that report is lost with the server.
fn server_killed_in_the_prompt_hook(keep_sm_prompt_hook: bool, transcript_delay_ms: u64) {
    let mut s = Server::start_opts(Options {
        fixed_port: true,
        env: vec![(
            "SM_FAKE_TRANSCRIPT_DELAY_MS".into(),
            transcript_delay_ms.to_string(),
        )],
        // The agent's hook kills the server: it must see the server's process.
        sandbox: Some("none"),
        ..Options::default()
    });
    let sm = env!("CARGO_BIN_EXE_sm");
    let kill = s.kill_hook_command();
    let hook = if keep_sm_prompt_hook {
        format!("{sm} hook user-prompt-submit; {kill}")
    } else {
        kill
    };
    s.set_user_hook("UserPromptSubmit", Some(&hook));
    // An earlier prompt in the transcript: then a missing entry reads as "not submitted".
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "w",
        "warm up [[reply warm]]",
    ]);
    s.wait_prompts("w", 1);
    s.wait_status("w", "idle");
    let id = s.session("w")["id"].as_str().unwrap().to_string();
    s.until("the first entry in the transcript", || {
        transcript_of(&s, &id).filter(|t| t.contains("warm up"))
    });
    let text = "only once [[reply once]]";
    s.arm_kill();
    s.ok(&["send", "w", text]);
    until("the server to die", DEADLINE, || {
        s.child.try_wait().ok().flatten().map(|_| ())
    });
    // Restart once the turn is over on screen (so only the transcript can tell), and
    // before the late transcript entry is written.
    let screen = || s.tmux(&["capture-pane", "-p", "-t", &s.pane(&id)]);
    until_explained(
        "the turn to end on screen",
        DEADLINE,
        || screen().contains("⏺ once").then_some(()),
        || {
            format!(
                "; it shows:\n{}\nprompts: {:?}\nkill still armed: {}\nthe agent's process:\n{}\nserver log:\n{}",
                screen(),
                prompts_of(&s, &id),
                s.kill_armed(),
                agent_process(&s, &id),
                s.log()
            )
        },
    );
    s.restart_after_death();
    let settled = s.until("the message to settle after the restart", || {
        s.message(text).filter(|m| m.state.is_terminal())
    });
    let prompts = s.prompts("w");
    assert_eq!(
        prompts.iter().filter(|p| p.as_str() == text).count(),
        1,
        "the agent received {prompts:?}; the message ended {:?} ({:?})",
        settled.state,
        settled.reason
    );
    assert_eq!(settled.state, MessageState::Delivered, "{settled:?}");
    assert_eq!(settled.attempts, 1);
    // Delivery goes on after the restart.
    s.ok(&["send", "w", "after [[reply after]]"]);
    s.wait_prompts("w", 3);
}

/// What the agent's process and tmux's clients are doing (for a failure message): tmux's
/// clients, and the state and kernel wait channel of each thread of the pane's process.
fn agent_process(s: &Server, id: &str) -> String {
    let clients = s.tmux(&[
        "list-clients",
        "-F",
        "#{client_name} #{client_pid} #{client_flags}",
    ]);
    let pid = s.tmux(&["display-message", "-p", "-t", &s.pane(id), "#{pane_pid}"]);
    let pid = pid.trim();
    let mut out = format!("tmux clients:\n{clients}pane pid: {pid}\n");
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let path = task.path();
            let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default();
            let stat = read("stat");
            let state = stat
                .rsplit(") ")
                .next()
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or("");
            out.push_str(&format!(
                "  thread {:?} {} state {state} wchan {}\n{}",
                task.file_name(),
                read("comm").trim(),
                read("wchan"),
                read("stack")
            ));
        }
    }
    out
}

/// The prompts a session's fake agent received, read from its log (works while the server
/// is down).
fn prompts_of(s: &Server, id: &str) -> Vec<String> {
    s.all_prompts()
        .into_iter()
        .filter(|(session, _)| session == id)
        .map(|(_, p)| p)
        .collect()
}

/// The text of a fake agent's transcript, once it exists.
fn transcript_of(s: &Server, id: &str) -> Option<String> {
    let projects = s.dir.path().join("home/.claude/projects");
    std::fs::read_dir(projects)
        .ok()?
        .flatten()
        .find_map(|d| std::fs::read_to_string(d.path().join(format!("{id}.jsonl"))).ok())
}

#[test]
fn a_message_was_typed_twice_when_the_server_died_right_after_enter() {
    // Claude Code writes the transcript entry a few hundred ms after the submit; here 1.5 s,
    // longer than a restart, and the prompt hook's report died with the server.
    server_killed_in_the_prompt_hook(false, 1500);
}

#[test]
fn a_prompt_hook_recorded_before_the_crash_settles_the_message() {
    // The transcript comes too late to help; the hook's durable record alone decides.
    server_killed_in_the_prompt_hook(true, 20_000);
}

#[test]
fn a_waiter_got_two_identical_wakes_for_one_turn_and_lost_the_first() {
    let s = Server::start();
    std::fs::write(
        s.work().join("em.sh"),
        "sm spawn --agent fake --name w --wait 60 'first [[sleep 1]] [[reply first done]]'\n\
         sm send w 'second [[reply second done]]'\n\
         sm wait w 60\n",
    )
    .unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "em",
        "--skip-permissions",
        "orchestrate [[bash sh em.sh]]",
    ]);
    let em = s.wait_prompts("em", 2);
    let w = s.wait_prompts("w", 2);
    assert_eq!(w.len(), 2, "{w:?}");
    // Both waits fired together; nothing else is on its way to the EM.
    let w_id = s.session("w")["id"].as_str().unwrap().to_string();
    let fired = s.until("both waits to fire", || {
        let (_, events) = s.http(
            "GET",
            &format!("/events?session={w_id}"),
            Some(&s.token()),
            None,
            b"",
        );
        let fired: Vec<Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"]["type"] == "wait_fired")
            .cloned()
            .collect();
        (fired.len() == 2).then_some(fired)
    });
    assert!(
        fired.iter().all(|e| e["kind"]["outcome"] == "idle"),
        "{fired:?}"
    );
    s.wait_status("em", "idle");
    s.until("the EM's queue to be empty", || {
        s.messages()
            .iter()
            .all(|m| m.state.is_terminal())
            .then_some(())
    });
    let em = {
        let all = s.prompts("em");
        assert!(all.len() >= em.len());
        all
    };
    let wakes: Vec<&String> = em.iter().filter(|p| p.starts_with("[sm] w (")).collect();
    assert_eq!(wakes.len(), 1, "one wake for one turn: {em:?}");
    assert!(
        wakes[0].contains("first done") && wakes[0].contains("second done"),
        "the wake names every turn it covers: {}",
        wakes[0]
    );
}

#[test]
fn a_spawns_first_prompt_was_dropped_when_the_server_died_mid_spawn() {
    let mut s = Server::start_opts(Options {
        fixed_port: true,
        // A slow start, so the kill lands while the spawn request waits for readiness.
        env: vec![("SM_FAKE_STARTUP_MS".into(), "1500".into())],
        ..Options::default()
    });
    let spawn = s
        .sm_command()
        .args([
            "spawn",
            "--agent",
            "fake",
            "--name",
            "halfspawn",
            "hello [[reply half]]",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once the agent's terminal exists and before it is ready.
    s.until("the agent's window", || {
        let names = s.tmux(&["list-windows", "-a", "-F", "#{window_name}"]);
        let all = s.messages();
        (names.lines().count() >= 2 && !all.is_empty()).then_some(())
    });
    s.kill9();
    s.restart();
    let out = spawn.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the spawn's retry returns the session it made: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let session = s.session("halfspawn");
    assert!(
        printed.contains(session["id"].as_str().unwrap()),
        "{printed}"
    );
    // The first prompt arrives once, also after its turn is over.
    assert_eq!(s.wait_prompts("halfspawn", 1), ["hello [[reply half]]"]);
    s.wait_status("halfspawn", "idle");
    assert_eq!(s.prompts("halfspawn"), ["hello [[reply half]]"]);
    let all = s.json(&["all"]);
    let named: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["name"] == "halfspawn")
        .collect();
    assert_eq!(named.len(), 1, "one agent, not two: {all}");
    // Spawning with a name in use still says so.
    let again = s.sm(&["spawn", "--agent", "fake", "--name", "halfspawn"]);
    assert!(stderr(&again).contains("name_taken"), "{}", stderr(&again));
}

#[test]
fn sm_kill_with_a_long_queue_returned_before_the_session_was_dead() {
    let s = Server::start();
    std::fs::write(
        s.work().join("flood.sh"),
        "for i in 1 2 3 4 5; do sm send busy \"from the em $i\"; done\n",
    )
    .unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "busy",
        "work [[sleep 600]]",
    ]);
    s.wait_status("busy", "working");
    s.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "em",
        "--skip-permissions",
        "flood [[bash sh flood.sh]]",
    ]);
    s.wait_prompts("em", 1);
    s.wait_status("em", "idle");
    let token = s.token();
    let busy_id = s.session("busy")["id"].as_str().unwrap().to_string();
    for i in 0..3000 {
        let body = serde_json::json!({ "text": format!("queued {i}") }).to_string();
        let (status, _) = s.http(
            "POST",
            &format!("/sessions/{busy_id}/input"),
            Some(&token),
            Some("application/json"),
            body.as_bytes(),
        );
        assert_eq!(status, 200);
    }
    let out = s.ok(&["kill", "busy"]);
    assert!(out.starts_with("killed busy"), "{out}");
    // When `sm kill` returns, the session is dead and its whole queue failed.
    let all = s.json(&["all"]);
    let busy = all
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == busy_id.as_str())
        .unwrap();
    assert_eq!(busy["status"], "dead", "{busy}");
    assert_eq!(busy["end_reason"], "killed", "{busy}");
    let to_busy: Vec<_> = s
        .messages()
        .into_iter()
        .filter(|m| m.target.as_str() == busy_id)
        .collect();
    assert_eq!(to_busy.len(), 3006);
    let pending: Vec<_> = to_busy
        .iter()
        .filter(|m| !matches!(m.state, MessageState::Failed | MessageState::Delivered))
        .collect();
    assert!(pending.is_empty(), "{} left pending", pending.len());
    // The EM hears once about its five messages, not five times.
    let em = s.wait_prompts("em", 2);
    assert!(
        em[1].contains("5 of your messages to busy") && em[1].contains("from the em 1"),
        "{em:?}"
    );
    s.until("the EM's queue to drain", || {
        s.messages()
            .iter()
            .filter(|m| m.target.as_str() != busy_id)
            .all(|m| m.state.is_terminal())
            .then_some(())
    });
    assert_eq!(s.prompts("em").len(), 2, "{:?}", s.prompts("em"));
}

/// Runs `sm <args>` as a managed agent would (its session id set) with a stdin that is a
/// FIFO held open and never written, and returns its exit code once it exits.
fn with_stdin_held_open(s: &Server, args: &[&str], server_url: &str) -> Option<i32> {
    let fifo = s.dir.path().join(format!("stdin-{}.fifo", unique()));
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Opening a FIFO for reading blocks until a writer opens it: hold a writer first,
    // from another thread, for the whole test.
    let writer_path = fifo.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_path)
            .unwrap();
        let _ = rx.recv();
        drop(w);
    });
    let reader = std::fs::File::open(&fifo).unwrap();
    let mut child = s
        .sm_command()
        .args(args)
        .env("SM_SESSION_ID", "00000000-0000-4000-8000-000000000001")
        .env("SM_SERVER_URL", server_url)
        .env("SM_TOKEN", "not-a-token")
        .stdin(Stdio::from(reader))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let code = until("the hook client to exit", Duration::from_secs(20), || {
        child.try_wait().unwrap().map(|st| st.code())
    });
    let _ = tx.send(());
    code
}

#[test]
fn hook_clients_held_the_agent_forever_when_stdin_never_closed() {
    let s = Server::start();
    let up = s.url();
    // A port nobody listens on: the server is down.
    let down = format!("http://127.0.0.1:{}", free_port());
    for url in [up.as_str(), down.as_str()] {
        assert_eq!(with_stdin_held_open(&s, &["hook", "stop"], url), Some(0));
        assert_eq!(with_stdin_held_open(&s, &["auto-lock"], url), Some(0));
    }
}
