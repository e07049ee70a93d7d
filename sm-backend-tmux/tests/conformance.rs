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
