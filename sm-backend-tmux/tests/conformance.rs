//! The tmux backend against real tmux: the terminal backend conformance suite, plus what is
//! particular to tmux (its own socket, re-adoption by a new backend, copy-mode).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::{Duration, Instant};

use sm_backend_tmux::TmuxBackend;
use sm_lib::{Key, SessionId, SpawnSpec, TerminalBackend};

/// Kills the test's private tmux server when the test ends, pass or fail.
struct ServerGuard(String);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .env_remove("TMUX")
            .output();
    }
}

fn socket_name() -> String {
    format!("sm-test-{}", &SessionId::new_random().to_string()[..8])
}

async fn fresh() -> (Arc<dyn TerminalBackend>, ServerGuard) {
    let socket = socket_name();
    let backend = TmuxBackend::new(socket.clone()).await.unwrap();
    (Arc::new(backend), ServerGuard(socket))
}

sm_lib::terminal_backend_conformance!(fresh);

/// The suite holds a backend to what it declares: declaring less would skip cases.
#[tokio::test]
async fn declares_real_programs_and_attach() {
    let (backend, _guard) = fresh().await;
    let caps = backend.capabilities();
    assert!(caps.runs_programs && caps.attach, "{caps:?}");
}

async fn screen_contains(backend: &TmuxBackend, id: &SessionId, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let screen = backend
            .capture_screen(id)
            .await
            .unwrap_or_default()
            .join("\n");
        if screen.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared:\n{screen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cat_spec(id: &SessionId, dir: &std::path::Path) -> SpawnSpec {
    let mut spec = SpawnSpec::new(id.clone(), "sh", dir);
    spec.args = vec!["-c".into(), "echo READY; exec cat".into()];
    spec
}

#[tokio::test]
async fn a_new_backend_on_the_same_socket_readopts_running_agents() {
    let socket = socket_name();
    let _guard = ServerGuard(socket.clone());
    let dir = tempfile::tempdir().unwrap();
    let id = SessionId::new_random();
    {
        let first = TmuxBackend::new(socket.clone()).await.unwrap();
        first.create(&cat_spec(&id, dir.path())).await.unwrap();
        screen_contains(&first, &id, "READY").await;
    } // the first backend (an sm server) goes away; the agent keeps running

    let second = TmuxBackend::new(socket.clone()).await.unwrap();
    assert_eq!(second.list().await.unwrap(), vec![id.clone()]);
    let mut events = second.events();
    second.send_text(&id, "still here").await.unwrap();
    second.send_key(&id, Key::Enter).await.unwrap();
    screen_contains(&second, &id, "still here").await;
    // Events flow for the re-adopted agent too.
    second.kill(&id).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(sm_lib::BackendEvent::Exited { id: x, .. })) if x == id => break,
            Ok(Ok(_)) => {}
            other => panic!("no exit event for the re-adopted agent: {other:?}"),
        }
    }
}

#[tokio::test]
async fn sessions_live_on_sms_own_socket_not_the_default_one() {
    let (backend, _guard) = fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let id = SessionId::new_random();
    backend.create(&cat_spec(&id, dir.path())).await.unwrap();
    let default_server = std::process::Command::new("tmux")
        .args(["list-windows", "-a", "-F", "#{window_name}"])
        .env_remove("TMUX")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&default_server.stdout);
    assert!(
        !listed.contains(id.as_str()),
        "agent leaked onto the default tmux server"
    );
    let attach = backend.attach_command(&id).unwrap();
    assert_eq!(attach[..3], ["tmux", "-L", attach[2].as_str()]);
    assert!(attach[2].starts_with("sm-test-"));
}

#[tokio::test]
async fn text_reaches_a_pane_left_in_copy_mode() {
    let socket = socket_name();
    let _guard = ServerGuard(socket.clone());
    let backend = TmuxBackend::new(socket.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = SessionId::new_random();
    backend.create(&cat_spec(&id, dir.path())).await.unwrap();
    screen_contains(&backend, &id, "READY").await;
    let target = format!("={socket}:={id}");
    let status = std::process::Command::new("tmux")
        .args(["-L", &socket, "copy-mode", "-t", &target])
        .env_remove("TMUX")
        .status()
        .unwrap();
    assert!(status.success());
    backend
        .send_text(&id, "typed after copy-mode")
        .await
        .unwrap();
    backend.send_key(&id, Key::Enter).await.unwrap();
    screen_contains(&backend, &id, "typed after copy-mode").await;
}

#[tokio::test]
async fn every_command_goes_over_the_control_client_once_it_is_up() {
    let (backend, _guard) = fresh_tmux().await;
    let dir = tempfile::tempdir().unwrap();
    let id = SessionId::new_random();
    backend.create(&cat_spec(&id, dir.path())).await.unwrap();
    screen_contains(&backend, &id, "READY").await;
    let before = backend.commands_run_as_processes();

    let other = SessionId::new_random();
    backend.create(&cat_spec(&other, dir.path())).await.unwrap();
    backend
        .send_text(&id, "it's $HOME ~ #{pane_id} ; x")
        .await
        .unwrap();
    backend.send_key(&id, Key::Enter).await.unwrap();
    let long = "long ".repeat(200);
    backend.send_text(&id, &long).await.unwrap();
    backend.send_key(&id, Key::Enter).await.unwrap();
    screen_contains(&backend, &id, "it's $HOME ~ #{pane_id} ; x").await;
    backend.capture_tail(&id, 100).await.unwrap();
    assert!(backend.is_alive(&id).await.unwrap());
    let mut listed = backend.list().await.unwrap();
    listed.sort();
    let mut expected = vec![id.clone(), other.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    backend.kill(&other).await.unwrap();
    assert_eq!(
        backend.commands_run_as_processes(),
        before,
        "a command ran as a tmux process while the control client was up"
    );
}

#[tokio::test]
async fn agents_were_reported_dead_when_the_control_client_was_detached() {
    let (backend, _guard) = fresh_tmux().await;
    let dir = tempfile::tempdir().unwrap();
    let id = SessionId::new_random();
    backend.create(&cat_spec(&id, dir.path())).await.unwrap();
    screen_contains(&backend, &id, "READY").await;
    let mut events = backend.events();

    // Someone detaches every client of sm's session, sm's control client included.
    let socket = backend.socket().to_string();
    let detached = std::process::Command::new("tmux")
        .args(["-L", &socket, "detach-client", "-s"])
        .arg(format!("={socket}"))
        .env_remove("TMUX")
        .status()
        .unwrap();
    assert!(detached.success());
    let control_clients = || {
        let out = std::process::Command::new("tmux")
            .args([
                "-L",
                &socket,
                "list-clients",
                "-F",
                "#{client_control_mode}",
            ])
            .env_remove("TMUX")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).matches('1').count()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while control_clients() == 0 {
        assert!(
            Instant::now() < deadline,
            "the control client never reattached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The agent is alive, takes input and its output is still reported.
    backend.send_text(&id, "after the detach").await.unwrap();
    backend.send_key(&id, Key::Enter).await.unwrap();
    screen_contains(&backend, &id, "after the detach").await;
    assert!(backend.is_alive(&id).await.unwrap());
    let mut saw_output = false;
    while let Ok(event) = events.try_recv() {
        match event {
            sm_lib::BackendEvent::Exited { id: x, .. } if x == id => {
                panic!("the agent was reported exited although it runs")
            }
            sm_lib::BackendEvent::Output(x) if x == id => saw_output = true,
            _ => {}
        }
    }
    if !saw_output {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(sm_lib::BackendEvent::Output(x))) if x == id => break,
                Ok(Ok(sm_lib::BackendEvent::Exited { id: x, .. })) if x == id => {
                    panic!("the agent was reported exited although it runs")
                }
                Ok(Ok(_)) => {}
                other => panic!("no output event after the reattach: {other:?}"),
            }
        }
    }
    // And its exit still is.
    backend.kill(&id).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(sm_lib::BackendEvent::Exited { id: x, .. })) if x == id => break,
            Ok(Ok(_)) => {}
            other => panic!("no exit event after the reattach: {other:?}"),
        }
    }
}

async fn fresh_tmux() -> (TmuxBackend, ServerGuard) {
    let socket = socket_name();
    let backend = TmuxBackend::new(socket.clone()).await.unwrap();
    (backend, ServerGuard(socket))
}
