//! Drives the fake agent through both terminal backends, the way sm will drive Claude Code:
//! start → ready → prompt delivered once → turn finishes → Stop hook fired with the right
//! JSON. Then the Claude Code behaviours the engine must cope with, each on the PTY backend.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sm_backend_pty::PtyBackend;
use sm_backend_tmux::TmuxBackend;
use sm_lib::{BackendEvent, Key, SessionId, SpawnSpec, TerminalBackend};

const DEADLINE: Duration = Duration::from_secs(20);

/// One fake agent in a terminal, with its own HOME, project dir, hook records and prompt log.
struct Agent {
    backend: Arc<dyn TerminalBackend>,
    id: SessionId,
    dir: tempfile::TempDir,
}

impl Agent {
    async fn start(backend: Arc<dyn TerminalBackend>, extra_args: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let project = dir.path().join("project");
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        std::fs::create_dir_all(&project).unwrap();
        let record = |name: &str| {
            format!(
                "cat >> '{}'; echo >> '{}'",
                dir.path().join(name).display(),
                dir.path().join(name).display()
            )
        };
        let hook =
            |cmd: String| serde_json::json!([{ "hooks": [{ "type": "command", "command": cmd }] }]);
        let settings = serde_json::json!({
            "hooks": {
                "Stop": hook(record("stop.jsonl")),
                "SessionStart": hook(record("session_start.jsonl")),
                "UserPromptSubmit": hook(record("prompt_submit.jsonl")),
                "Notification": hook(record("notification.jsonl")),
                "PreToolUse": [{ "matcher": "Write|Edit|MultiEdit|NotebookEdit", "hooks": [{
                    "type": "command",
                    "command": format!(
                        "{}; if [ -e '{}' ]; then echo 'workspace locked by agent-7' >&2; exit 2; fi",
                        record("pre_tool.jsonl"),
                        dir.path().join("deny-writes").display()
                    ),
                }]}],
            }
        });
        std::fs::write(home.join(".claude/settings.json"), settings.to_string()).unwrap();
        let id = SessionId::new_random();
        let mut spec = SpawnSpec::new(id.clone(), env!("CARGO_BIN_EXE_sm-fake-agent"), &project);
        spec.args = vec![
            "--session-id".into(),
            id.to_string(),
            "--model".into(),
            "sonnet".into(),
        ];
        spec.args.extend(extra_args.iter().map(|a| a.to_string()));
        spec.env
            .insert("HOME".into(), home.to_string_lossy().into());
        spec.env.insert(
            "SM_FAKE_AGENT_LOG".into(),
            dir.path().join("prompts.jsonl").to_string_lossy().into(),
        );
        spec.env.insert("SM_FAKE_NOTIFY_MS".into(), "200".into());
        spec.cols = 120;
        spec.rows = 40;
        backend.create(&spec).await.unwrap();
        Agent { backend, id, dir }
    }

    fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    async fn screen(&self) -> String {
        self.backend
            .capture_screen(&self.id)
            .await
            .unwrap_or_default()
            .join("\n")
    }

    async fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen().await;
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The prompt line (`❯ …`) of the input box, when the agent is at its prompt.
    fn prompt_line(screen: &str) -> Option<String> {
        let lines: Vec<&str> = screen.lines().collect();
        let footer = lines.iter().rposition(|l| l.contains("? for shortcuts"))?;
        lines[..footer]
            .iter()
            .rev()
            .find(|l| l.starts_with('❯'))
            .map(|l| l.to_string())
    }

    async fn wait_ready(&self) -> String {
        self.wait_screen("the ready prompt", |s| {
            Self::prompt_line(s).is_some() && !s.contains("esc to interrupt")
        })
        .await
    }

    async fn type_and_submit(&self, text: &str, shown: &str) {
        self.backend.send_text(&self.id, text).await.unwrap();
        self.wait_screen(&format!("{shown:?} in the input box"), |s| {
            Self::prompt_line(s).is_some_and(|l| l.contains(shown))
        })
        .await;
        self.backend.send_key(&self.id, Key::Enter).await.unwrap();
    }

    fn records(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn wait_records(&self, name: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let records = self.records(name);
            if records.len() >= count {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} records in {name}; screen:\n{}",
                self.screen().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn prompts(&self) -> Vec<String> {
        self.records("prompts.jsonl")
            .iter()
            .map(|r| r["prompt"].as_str().unwrap().to_string())
            .collect()
    }
}

fn canonical(p: &Path) -> String {
    p.canonicalize().unwrap().to_string_lossy().into_owned()
}

async fn full_turn(backend: Arc<dyn TerminalBackend>) {
    let agent = Agent::start(backend, &[]).await;
    agent.wait_ready().await;
    let starts = agent.wait_records("session_start.jsonl", 1).await;
    assert_eq!(starts[0]["source"], "startup");
    assert_eq!(starts[0]["session_id"], agent.id.as_str());

    let prompt = "implement the parser [[sleep 0.2]] [[reply parser done]]";
    agent.type_and_submit(prompt, "implement the parser").await;
    let stops = agent.wait_records("stop.jsonl", 1).await;
    let stop = &stops[0];
    assert_eq!(stop["hook_event_name"], "Stop");
    assert_eq!(stop["session_id"], agent.id.as_str());
    assert_eq!(stop["last_assistant_message"], "parser done");
    assert_eq!(stop["stop_hook_active"], false);
    assert_eq!(
        canonical(Path::new(stop["cwd"].as_str().unwrap())),
        canonical(&agent.project())
    );
    let transcript = PathBuf::from(stop["transcript_path"].as_str().unwrap());
    assert!(transcript.exists(), "the transcript is written");

    let screen = agent.wait_ready().await;
    assert!(screen.contains("⏺ parser done"), "{screen}");
    assert!(screen.contains("✻ Worked for"), "{screen}");
    assert_eq!(
        agent.prompts(),
        vec![prompt.to_string()],
        "delivered exactly once"
    );
    let submitted = agent.records("prompt_submit.jsonl");
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0]["prompt"], prompt);
    agent.backend.kill(&agent.id).await.unwrap();
}

struct TmuxGuard(String);
impl Drop for TmuxGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

async fn tmux() -> (Arc<dyn TerminalBackend>, TmuxGuard) {
    let socket = format!("sm-fake-{}", &SessionId::new_random().as_str()[..8]);
    let backend = TmuxBackend::new(socket.clone()).await.unwrap();
    (Arc::new(backend), TmuxGuard(socket))
}

fn pty() -> Arc<dyn TerminalBackend> {
    Arc::new(PtyBackend::new().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_turn_through_tmux_fires_stop_with_the_right_json() {
    let (backend, _guard) = tmux().await;
    full_turn(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_turn_through_the_pty_backend_fires_stop_with_the_right_json() {
    full_turn(pty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_sent_during_startup_is_lost_but_the_text_lands() {
    let agent = Agent::start(pty(), &[]).await;
    // Send at once, before the agent is ready.
    agent
        .backend
        .send_text(&agent.id, "too early")
        .await
        .unwrap();
    agent.backend.send_key(&agent.id, Key::Enter).await.unwrap();
    let screen = agent.wait_ready().await;
    assert_eq!(Agent::prompt_line(&screen).unwrap(), "❯ too early");
    assert!(agent.prompts().is_empty(), "nothing was submitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_before_any_output_restores_the_prompt_and_fires_no_stop() {
    let agent = Agent::start(pty(), &[]).await;
    agent.wait_ready().await;
    agent
        .type_and_submit("long task [[sleep 30]]", "long task")
        .await;
    agent
        .wait_screen("the working state", |s| s.contains("esc to interrupt"))
        .await;
    agent
        .backend
        .send_key(&agent.id, Key::Escape)
        .await
        .unwrap();
    let screen = agent.wait_ready().await;
    assert_eq!(
        Agent::prompt_line(&screen).unwrap(),
        "❯ long task [[sleep 30]]",
        "the interrupted prompt is back in the box"
    );
    // Text sent now is appended to it, as with the real CLI.
    agent.backend.send_text(&agent.id, " B").await.unwrap();
    agent
        .wait_screen("the appended text", |s| {
            Agent::prompt_line(s).is_some_and(|l| l.ends_with("[[sleep 30]] B"))
        })
        .await;
    assert!(
        agent.records("stop.jsonl").is_empty(),
        "no Stop on interrupt"
    );
    // Ctrl-U empties the box.
    agent.backend.send_key(&agent.id, Key::CtrlU).await.unwrap();
    agent
        .wait_screen("an empty box", |s| {
            Agent::prompt_line(s).as_deref() == Some("❯")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_escape_opens_the_rewind_menu() {
    let agent = Agent::start(pty(), &[]).await;
    agent.wait_ready().await;
    agent
        .backend
        .send_key(&agent.id, Key::Escape)
        .await
        .unwrap();
    agent
        .backend
        .send_key(&agent.id, Key::Escape)
        .await
        .unwrap();
    agent
        .wait_screen("the rewind menu", |s| s.contains("Rewind"))
        .await;
    agent
        .backend
        .send_key(&agent.id, Key::Escape)
        .await
        .unwrap();
    agent.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_line_text_is_collapsed_then_submitted_whole() {
    let agent = Agent::start(pty(), &[]).await;
    agent.wait_ready().await;
    let text = "first line\nsecond line\nthird ✓";
    agent
        .type_and_submit(text, "[Pasted text #1 +2 lines]")
        .await;
    agent.wait_records("stop.jsonl", 1).await;
    assert_eq!(agent.prompts(), vec![text.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_prompt_waits_for_keys_and_notifies() {
    let agent = Agent::start(pty(), &[]).await;
    agent.wait_ready().await;
    agent
        .type_and_submit("save [[write out.txt hello]] [[reply saved]]", "save")
        .await;
    let screen = agent
        .wait_screen("the permission prompt", |s| {
            s.contains("Do you want to create out.txt?")
        })
        .await;
    assert!(screen.contains("❯ 1. Yes"), "{screen}");
    assert!(screen.contains("3. No"), "{screen}");
    assert!(screen.contains("Esc to cancel"), "{screen}");
    let notes = agent.wait_records("notification.jsonl", 1).await;
    assert_eq!(notes[0]["notification_type"], "permission_prompt");
    assert!(!agent.project().join("out.txt").exists());
    agent.backend.send_text(&agent.id, "1").await.unwrap();
    agent.wait_records("stop.jsonl", 1).await;
    assert_eq!(
        std::fs::read_to_string(agent.project().join("out.txt")).unwrap(),
        "hello"
    );
    let pre = agent.records("pre_tool.jsonl");
    assert_eq!(pre[0]["tool_name"], "Write");
    assert_eq!(
        pre[0]["tool_input"]["file_path"],
        agent.project().join("out.txt").to_string_lossy().as_ref()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_tool_use_hook_exiting_2_blocks_the_write_and_shows_why() {
    let agent = Agent::start(pty(), &["--dangerously-skip-permissions"]).await;
    agent.wait_ready().await;
    std::fs::write(agent.dir.path().join("deny-writes"), "").unwrap();
    agent
        .type_and_submit("save [[write out.txt hello]]", "save")
        .await;
    agent.wait_records("stop.jsonl", 1).await;
    let screen = agent.wait_ready().await;
    assert!(
        screen.contains("PreToolUse:Write hook error: workspace locked by agent-7"),
        "{screen}"
    );
    assert!(
        !agent.project().join("out.txt").exists(),
        "the write was blocked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_resets_the_context_and_fires_session_start() {
    let agent = Agent::start(pty(), &[]).await;
    agent.wait_ready().await;
    agent
        .type_and_submit("remember this", "remember this")
        .await;
    agent.wait_records("stop.jsonl", 1).await;
    agent.wait_ready().await;
    agent.type_and_submit("/clear", "/clear").await;
    let starts = agent.wait_records("session_start.jsonl", 2).await;
    assert_eq!(starts[1]["source"], "clear");
    let screen = agent.wait_ready().await;
    assert!(!screen.contains("remember this"), "{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_crash_ends_the_process_mid_turn_without_stop() {
    let backend = pty();
    let mut events = backend.events();
    let agent = Agent::start(backend, &[]).await;
    agent.wait_ready().await;
    agent.type_and_submit("boom [[crash]]", "boom").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let status = loop {
        match tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap()
        {
            Ok(BackendEvent::Exited { id, status }) if id == agent.id => break status,
            _ => {}
        }
    };
    assert_eq!(status, Some(3));
    assert!(agent.records("stop.jsonl").is_empty());
}
