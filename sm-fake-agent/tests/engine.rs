//! The engine end to end: real tmux, a real SQLite file, fake agents whose hooks report to
//! the engine, and prompt logs that show exactly what each agent received.
//!
//! Until the server lands, hooks reach the engine through a small forwarder: each agent's
//! hook command appends its JSON payload to a file named after `$SM_SESSION_ID`, and the
//! forwarder hands every complete line to `Engine::hook` — what `sm hook` will do over HTTP.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sm_backend_tmux::TmuxBackend;
use sm_lib::engine::{EngineConfig, FakeProfile};
use sm_lib::{
    AgentKind, Caller, DefaultLockPolicy, DeliveryMode, Engine, Error, HookEvent, MessageFilter,
    MessageState, MessageStore, Session, SessionId, SessionStatus, SpawnRequest,
};
use sm_store_sqlite::SqliteStore;
use sm_tests::{DEADLINE, git, git_init, until_async};

struct Harness {
    engine: Engine,
    dir: tempfile::TempDir,
    socket: String,
    forwarder: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.forwarder.abort();
        self.engine.shutdown();
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let socket = format!("sm-engine-{}", &SessionId::new_random().as_str()[..8]);
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        std::fs::create_dir_all(dir.path().join("hooks")).unwrap();
        let record = format!(
            "cat >> '{}/hooks/'\"$SM_SESSION_ID\".jsonl; echo >> '{}/hooks/'\"$SM_SESSION_ID\".jsonl",
            dir.path().display(),
            dir.path().display()
        );
        let group = serde_json::json!([{ "hooks": [{ "type": "command", "command": record }] }]);
        let mut hooks = serde_json::Map::new();
        for event in [
            "SessionStart",
            "UserPromptSubmit",
            "PreToolUse",
            "PostToolUse",
            "Notification",
            "Stop",
            "SessionEnd",
        ] {
            hooks.insert(event.into(), group.clone());
        }
        std::fs::write(
            home.join(".claude/settings.json"),
            serde_json::json!({ "hooks": hooks }).to_string(),
        )
        .unwrap();
        let engine = Self::engine(dir.path(), &socket).await;
        let forwarder = tokio::spawn(forward_hooks(engine.clone(), dir.path().join("hooks")));
        Harness {
            engine,
            dir,
            socket,
            forwarder,
        }
    }

    async fn engine(dir: &Path, socket: &str) -> Engine {
        let store = Arc::new(SqliteStore::open(dir.join("sm.db")).await.unwrap());
        let backend = Arc::new(TmuxBackend::new(socket).await.unwrap());
        let mut env = std::collections::BTreeMap::new();
        env.insert(
            "HOME".into(),
            dir.join("home").to_string_lossy().into_owned(),
        );
        env.insert(
            "SM_FAKE_AGENT_LOG".into(),
            dir.join("prompts.jsonl").to_string_lossy().into_owned(),
        );
        env.insert("SM_FAKE_NOTIFY_MS".into(), "300".into());
        Engine::builder(store, backend)
            .profile(Arc::new(FakeProfile {
                program: PathBuf::from(env!("CARGO_BIN_EXE_sm-fake-agent")),
                env,
            }))
            .lock_policy(Arc::new(DefaultLockPolicy {
                auto_wait: Duration::from_millis(300),
            }))
            .config(EngineConfig {
                cols: 120,
                rows: 40,
                ready_timeout: Duration::from_secs(20),
                ..EngineConfig::default()
            })
            .start()
            .await
            .unwrap()
    }

    /// Simulates a server restart: the engine goes away, a new one starts on the same
    /// database and tmux socket.
    async fn restart(&mut self) {
        self.forwarder.abort();
        self.engine.shutdown();
        self.engine = Self::engine(self.dir.path(), &self.socket).await;
        self.forwarder = tokio::spawn(forward_hooks(
            self.engine.clone(),
            self.dir.path().join("hooks"),
        ));
    }

    fn workdir(&self) -> PathBuf {
        let p = self.dir.path().join("work");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    async fn spawn(&self, name: &str, parent: Option<&Session>) -> Session {
        self.spawn_in(name, parent, &self.workdir()).await
    }

    async fn spawn_in(&self, name: &str, parent: Option<&Session>, dir: &Path) -> Session {
        let caller = match parent {
            Some(p) => Caller::Session(p.id.clone()),
            None => Caller::Admin,
        };
        let mut request = SpawnRequest::new(AgentKind::Fake, dir);
        request.name = Some(name.parse().unwrap());
        let session = self.engine.spawn(&caller, request).await.unwrap();
        assert_eq!(
            session.status,
            SessionStatus::Idle,
            "spawn returns a ready agent"
        );
        session
    }

    fn prompts(&self, id: &SessionId) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("prompts.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["session_id"] == id.as_str())
            .map(|v| v["prompt"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn wait_prompts(&self, id: &SessionId, count: usize) -> Vec<String> {
        self.until(&format!("{count} prompts for {id}"), || {
            let p = self.prompts(id);
            (p.len() >= count).then_some(p)
        })
        .await
    }

    async fn status(&self, id: &SessionId) -> SessionStatus {
        self.engine
            .store()
            .get_session(id)
            .await
            .unwrap()
            .unwrap()
            .status
    }

    async fn wait_status(&self, id: &SessionId, status: SessionStatus) {
        let deadline = Instant::now() + DEADLINE;
        while self.status(id).await != status {
            assert!(
                Instant::now() < deadline,
                "{id} never became {status} (is {}); screen:\n{}",
                self.status(id).await,
                self.engine
                    .output(id, 40)
                    .await
                    .unwrap_or_default()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until everything sent to `id` was delivered and its last turn ended.
    async fn settled(&self, id: &SessionId) {
        until_async(&format!("{id} to settle"), DEADLINE, async || {
            let msgs = self.messages(id).await;
            let done = msgs
                .iter()
                .all(|m| matches!(m.state, MessageState::Delivered | MessageState::Failed));
            (done && self.status(id).await == SessionStatus::Idle).then_some(())
        })
        .await;
    }

    async fn until<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        until_async(what, DEADLINE, async || f()).await
    }

    async fn messages(&self, id: &SessionId) -> Vec<sm_lib::Message> {
        self.engine
            .store()
            .list_messages(&MessageFilter {
                target: Some(id.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

/// Hands each complete hook payload line to the engine, like `sm hook` will.
async fn forward_hooks(engine: Engine, dir: PathBuf) {
    let mut offsets: HashMap<PathBuf, usize> = HashMap::new();
    loop {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let offset = offsets.entry(path.clone()).or_insert(0);
                let new = &text[*offset..];
                let Some(end) = new.rfind('\n') else { continue };
                for line in new[..end].lines().filter(|l| !l.trim().is_empty()) {
                    let Ok(payload) = serde_json::from_str::<Value>(line) else {
                        continue;
                    };
                    let (Some(event), Some(id)) = (
                        payload["hook_event_name"].as_str().map(str::to_string),
                        payload["session_id"]
                            .as_str()
                            .and_then(|s| s.parse::<SessionId>().ok()),
                    ) else {
                        continue;
                    };
                    let _ = engine.hook(&id, HookEvent { event, payload }).await;
                }
                *offset += end + 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_wake(p: &str, name: &str) -> bool {
    p.starts_with("[sm] ") && p.contains(name) && p.contains("is idle")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_em_loop_wakes_the_parent_once_per_finished_turn() {
    let h = Harness::new().await;
    let em = h.spawn("em", None).await;
    let w1 = h.spawn("worker-1", Some(&em)).await;
    let w2 = h.spawn("worker-2", Some(&em)).await;
    let as_em = Caller::Session(em.id.clone());

    // The recipe that must not wake on the stale idle state from before the send.
    h.engine
        .send(
            &as_em,
            &w1.id,
            "parse the input [[sleep 1]] [[reply parsed 3 files]]",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    h.engine
        .wait(&as_em, &w1.id, Duration::from_secs(60))
        .await
        .unwrap();
    let em_prompts = h.wait_prompts(&em.id, 1).await;
    assert!(is_wake(&em_prompts[0], "worker-1"), "{em_prompts:?}");
    assert!(em_prompts[0].contains("parsed 3 files"), "{em_prompts:?}");
    assert_eq!(
        h.prompts(&w1.id),
        vec!["parse the input [[sleep 1]] [[reply parsed 3 files]]"]
    );

    // The EM routes the result to the second worker and waits again.
    h.engine
        .send(
            &as_em,
            &w2.id,
            "review: parsed 3 files [[reply approved]]",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    h.engine
        .wait(&as_em, &w2.id, Duration::from_secs(60))
        .await
        .unwrap();
    let em_prompts = h.wait_prompts(&em.id, 2).await;
    assert!(is_wake(&em_prompts[1], "worker-2"), "{em_prompts:?}");
    assert!(em_prompts[1].contains("approved"));
    assert_eq!(
        h.prompts(&w2.id),
        vec!["review: parsed 3 files [[reply approved]]"]
    );

    // One turn, one wake-up: nothing more arrives once everyone is idle.
    h.wait_status(&em.id, SessionStatus::Idle).await;
    h.wait_status(&w1.id, SessionStatus::Idle).await;
    h.wait_status(&w2.id, SessionStatus::Idle).await;
    assert_eq!(h.prompts(&em.id).len(), 2, "{:?}", h.prompts(&em.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spawn_with_wait_wakes_the_parent_after_the_first_turn() {
    let h = Harness::new().await;
    let em = h.spawn("em", None).await;
    let mut request = SpawnRequest::new(AgentKind::Fake, h.workdir());
    request.name = Some("child".parse().unwrap());
    request.prompt = Some("first job [[sleep 0.5]] [[reply child done]]".into());
    request.wait = Some(Duration::from_secs(60));
    let child = h
        .engine
        .spawn(&Caller::Session(em.id.clone()), request)
        .await
        .unwrap();
    assert_eq!(child.parent, Some(em.id.clone()));
    let woke = h.wait_prompts(&em.id, 1).await;
    assert!(
        is_wake(&woke[0], "child") && woke[0].contains("child done"),
        "{woke:?}"
    );
    assert_eq!(
        h.prompts(&child.id),
        vec!["first job [[sleep 0.5]] [[reply child done]]"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_on_an_idle_agent_fires_at_once_and_a_timeout_says_so() {
    let h = Harness::new().await;
    let em = h.spawn("em", None).await;
    let w = h.spawn("idler", Some(&em)).await;
    let as_em = Caller::Session(em.id.clone());
    h.engine
        .wait(&as_em, &w.id, Duration::from_secs(60))
        .await
        .unwrap();
    let p = h.wait_prompts(&em.id, 1).await;
    assert!(is_wake(&p[0], "idler"), "{p:?}");

    h.engine
        .send(&as_em, &w.id, "long [[sleep 20]]", DeliveryMode::Sequential)
        .await
        .unwrap();
    h.wait_status(&w.id, SessionStatus::Working).await;
    h.engine
        .wait(&as_em, &w.id, Duration::from_millis(500))
        .await
        .unwrap();
    let p = h.wait_prompts(&em.id, 2).await;
    assert!(
        p[1].contains("timed out") && p[1].contains("working"),
        "{p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn important_goes_ahead_of_sequential_and_waits_for_the_turn_to_end() {
    let h = Harness::new().await;
    let w = h.spawn("w", None).await;
    let admin = Caller::Admin;
    h.engine
        .send(&admin, &w.id, "s1 [[sleep 1.5]]", DeliveryMode::Sequential)
        .await
        .unwrap();
    h.wait_prompts(&w.id, 1).await;
    for (text, mode) in [
        ("s2", DeliveryMode::Sequential),
        ("s3", DeliveryMode::Sequential),
        ("i1", DeliveryMode::Important),
    ] {
        h.engine.send(&admin, &w.id, text, mode).await.unwrap();
    }
    let p = h.wait_prompts(&w.id, 4).await;
    assert_eq!(p, vec!["s1 [[sleep 1.5]]", "i1", "s2", "s3"]);
    h.settled(&w.id).await;
    let msgs = h.messages(&w.id).await;
    assert!(
        msgs.iter()
            .all(|m| m.state == MessageState::Delivered && m.attempts == 1),
        "{msgs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn urgent_interrupts_a_long_turn_and_arrives_clean() {
    let h = Harness::new().await;
    let w = h.spawn("w", None).await;
    let admin = Caller::Admin;
    h.engine
        .send(
            &admin,
            &w.id,
            "a very long task [[sleep 60]]",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    h.wait_status(&w.id, SessionStatus::Working).await;
    let started = Instant::now();
    h.engine
        .send(&admin, &w.id, "STOP: wrong branch", DeliveryMode::Urgent)
        .await
        .unwrap();
    let p = h.wait_prompts(&w.id, 2).await;
    // The interrupted prompt was restored into the box by the agent; it must not have been
    // merged into the urgent message.
    assert_eq!(
        p,
        vec!["a very long task [[sleep 60]]", "STOP: wrong branch"]
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    h.wait_status(&w.id, SessionStatus::Idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_senders_never_interleave() {
    let h = Harness::new().await;
    let w = h.spawn("target", None).await;
    let a = h.spawn("sender-a", None).await;
    let b = h.spawn("sender-b", None).await;
    let send_all = |from: Session, tag: &'static str| {
        let engine = h.engine.clone();
        let target = w.id.clone();
        tokio::spawn(async move {
            for i in 0..6 {
                let text = format!("{tag}-{i}: {}", "payload ".repeat(8).trim_end());
                engine
                    .send(
                        &Caller::Session(from.id.clone()),
                        &target,
                        &text,
                        DeliveryMode::Sequential,
                    )
                    .await
                    .unwrap();
            }
        })
    };
    let (ta, tb) = (send_all(a, "A"), send_all(b, "B"));
    ta.await.unwrap();
    tb.await.unwrap();
    let p = h.wait_prompts(&w.id, 12).await;
    assert_eq!(p.len(), 12, "{p:?}");
    for tag in ["A", "B"] {
        let mine: Vec<&String> = p.iter().filter(|x| x.starts_with(tag)).collect();
        let expected: Vec<String> = (0..6)
            .map(|i| format!("{tag}-{i}: {}", "payload ".repeat(8).trim_end()))
            .collect();
        assert_eq!(
            mine,
            expected.iter().collect::<Vec<_>>(),
            "intact and in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_permission_prompt_blocks_delivery_until_answered() {
    let h = Harness::new().await;
    let w = h.spawn("w", None).await;
    let admin = Caller::Admin;
    h.engine
        .send(
            &admin,
            &w.id,
            "save it [[write out.txt data]] [[reply saved]]",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    h.wait_status(&w.id, SessionStatus::NeedsInput).await;
    h.engine
        .send(&admin, &w.id, "next task", DeliveryMode::Important)
        .await
        .unwrap();
    // Nothing is typed into the permission prompt.
    let screen = h.engine.output(&w.id, 40).await.unwrap().join("\n");
    assert!(
        screen.contains("Do you want to create out.txt?"),
        "{screen}"
    );
    assert_eq!(h.prompts(&w.id).len(), 1);
    let events = h.engine.store().events(None, Some(&w.id), 0).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, sm_lib::EventKind::NeedsInput { .. }))
    );
    // A human answers it; the turn ends and the queued message follows.
    h.engine.backend().send_text(&w.id, "1").await.unwrap();
    let p = h.wait_prompts(&w.id, 2).await;
    assert_eq!(p[1], "next task");
    assert!(h.workdir().join("out.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_locks_conflict_in_one_repo_not_across_worktrees_and_end_with_the_turn() {
    let h = Harness::new().await;
    let repo = h.dir.path().join("repo");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    git_init(&repo);
    let worktree = h.dir.path().join("repo-wt");
    git(
        &repo,
        &["worktree", "add", "-q", worktree.to_str().unwrap()],
    );

    let a = h.spawn_in("a", None, &repo).await;
    let b = h.spawn_in("b", None, &repo.join("src")).await;
    let c = h.spawn_in("c", None, &worktree).await;

    h.engine
        .auto_lock(&a.id, &repo.join("src/lib.rs"))
        .await
        .unwrap();
    let err = h
        .engine
        .auto_lock(&b.id, &repo.join("README.md"))
        .await
        .unwrap_err();
    match &err {
        Error::LockConflict(lock) => {
            assert_eq!(lock.holder, a.id);
            assert!(lock.reason.contains("src/lib.rs"), "{lock:?}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    h.engine
        .auto_lock(&c.id, &worktree.join("src/lib.rs"))
        .await
        .unwrap();

    // a's turn ends (Stop): its auto-lock goes, and b gets the workspace.
    h.engine
        .send(&Caller::Admin, &a.id, "finish up", DeliveryMode::Sequential)
        .await
        .unwrap();
    h.wait_prompts(&a.id, 1).await;
    h.wait_status(&a.id, SessionStatus::Idle).await;
    let lock = until_async(
        "b to take the lock a's turn released",
        DEADLINE,
        async || match h.engine.auto_lock(&b.id, &repo.join("README.md")).await {
            Ok(lock) => Some(lock),
            Err(Error::LockConflict(_)) => None,
            Err(e) => panic!("{e}"),
        },
    )
    .await;
    assert_eq!(lock.holder, b.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_fails_the_queue_tells_senders_and_wakes_waiters() {
    let h = Harness::new().await;
    let em = h.spawn("em", None).await;
    let w = h.spawn("doomed", Some(&em)).await;
    let as_em = Caller::Session(em.id.clone());
    h.engine
        .send(&as_em, &w.id, "busy [[sleep 60]]", DeliveryMode::Sequential)
        .await
        .unwrap();
    h.wait_status(&w.id, SessionStatus::Working).await;
    h.engine
        .send(&as_em, &w.id, "never delivered", DeliveryMode::Sequential)
        .await
        .unwrap();
    h.engine
        .wait(&as_em, &w.id, Duration::from_secs(60))
        .await
        .unwrap();

    // A worker may not kill its parent; the parent may kill the worker.
    let err = h
        .engine
        .kill(&Caller::Session(w.id.clone()), &em.id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    h.engine.kill(&as_em, &w.id).await.unwrap();
    assert_eq!(h.status(&w.id).await, SessionStatus::Dead);
    assert!(!h.engine.backend().is_alive(&w.id).await.unwrap());

    let p = h.wait_prompts(&em.id, 2).await;
    assert!(
        p.iter()
            .any(|x| x.contains("was not delivered") && x.contains("never delivered")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.contains("doomed") && x.contains("ended (killed)")),
        "{p:?}"
    );
    let err = h
        .engine
        .send(&as_em, &w.id, "hello?", DeliveryMode::Sequential)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dead"), "{err}");
    h.engine.kill(&as_em, &w.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clear_resets_the_agent_and_keeps_the_session() {
    let h = Harness::new().await;
    let w = h.spawn("keeper", None).await;
    h.engine
        .send(
            &Caller::Admin,
            &w.id,
            "remember the number 42",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    h.wait_prompts(&w.id, 1).await;
    h.settled(&w.id).await;
    h.engine.clear(&Caller::Admin, &w.id).await.unwrap();
    assert_eq!(h.prompts(&w.id), vec!["remember the number 42", "/clear"]);
    let screen = h
        .engine
        .backend()
        .capture_screen(&w.id)
        .await
        .unwrap()
        .join("\n");
    assert!(!screen.contains("42"), "{screen}");
    let s = h.engine.resolve("keeper").await.unwrap();
    assert_eq!(s.id, w.id);
    assert_eq!(s.status, SessionStatus::Idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_clear_errors() {
    let h = Harness::new().await;
    let w = h.spawn("only-one", None).await;
    let mut dup = SpawnRequest::new(AgentKind::Fake, h.workdir());
    dup.name = Some("only-one".parse().unwrap());
    let err = h.engine.spawn(&Caller::Admin, dup).await.unwrap_err();
    assert!(matches!(err, Error::NameTaken { .. }), "{err:?}");
    let err = h
        .engine
        .spawn(
            &Caller::Admin,
            SpawnRequest::new(AgentKind::Fake, "/nonexistent/dir"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidWorkingDir { .. }), "{err:?}");
    let err = h
        .engine
        .send(
            &Caller::Admin,
            &SessionId::new_random(),
            "hi",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SessionNotFound(_)), "{err:?}");
    for bad in ["", "\u{1b}[2J", &"x".repeat(200_000)] {
        let err = h
            .engine
            .send(&Caller::Admin, &w.id, bad, DeliveryMode::Sequential)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }
    // Escape sequences are stripped, the rest arrives.
    h.engine
        .send(
            &Caller::Admin,
            &w.id,
            "clean\u{1b}]0;title\u{7} text\u{1b}[31m",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    assert_eq!(h.wait_prompts(&w.id, 1).await, vec!["clean text"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_mid_workflow_loses_and_doubles_nothing() {
    let mut h = Harness::new().await;
    let em = h.spawn("em", None).await;
    let w = h.spawn("w", Some(&em)).await;
    let as_em = Caller::Session(em.id.clone());
    h.engine
        .send(&as_em, &w.id, "m1 [[sleep 2]]", DeliveryMode::Sequential)
        .await
        .unwrap();
    h.wait_status(&w.id, SessionStatus::Working).await;
    for text in ["m2", "m3"] {
        h.engine
            .send(&as_em, &w.id, text, DeliveryMode::Sequential)
            .await
            .unwrap();
    }
    h.engine
        .wait(&as_em, &w.id, Duration::from_secs(120))
        .await
        .unwrap();

    h.restart().await;
    h.engine
        .send(&as_em, &w.id, "m4", DeliveryMode::Sequential)
        .await
        .unwrap();

    let p = h.wait_prompts(&w.id, 4).await;
    assert_eq!(p, vec!["m1 [[sleep 2]]", "m2", "m3", "m4"]);
    let woke = h.wait_prompts(&em.id, 1).await;
    assert!(is_wake(&woke[0], "w ("), "{woke:?}");
    h.wait_status(&w.id, SessionStatus::Idle).await;
    h.wait_status(&em.id, SessionStatus::Idle).await;
    assert_eq!(h.prompts(&w.id).len(), 4);
    assert_eq!(h.prompts(&em.id).len(), 1, "{:?}", h.prompts(&em.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_that_vanishes_while_sm_is_down_is_marked_dead_and_its_waiter_told() {
    let mut h = Harness::new().await;
    let em = h.spawn("em", None).await;
    let w = h.spawn("gone", Some(&em)).await;
    h.engine
        .wait(
            &Caller::Session(em.id.clone()),
            &w.id,
            Duration::from_secs(120),
        )
        .await
        .ok();
    // The wait fires at once (w idle): its wake reaches em before w gets work (a send that
    // reached w's actor together with the wait would start a turn the wait then covers).
    h.wait_prompts(&em.id, 1).await;
    // Register another after giving w work.
    h.engine
        .send(
            &Caller::Admin,
            &w.id,
            "work [[sleep 30]]",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    h.wait_status(&w.id, SessionStatus::Working).await;
    h.engine
        .wait(
            &Caller::Session(em.id.clone()),
            &w.id,
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    h.engine.shutdown();
    h.engine.backend().kill(&w.id).await.unwrap();
    h.restart().await;
    h.wait_status(&w.id, SessionStatus::Dead).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.prompts(&em.id).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if h.prompts(&em.id).len() < 2 {
        let events = h.engine.store().events(None, None, 0).await.unwrap();
        for e in events {
            eprintln!(
                "{:?} {:?}",
                e.session.map(|s| s.to_string()[..8].to_string()),
                e.kind
            );
        }
        eprintln!("em msgs {:?}", h.messages(&em.id).await);
        eprintln!(
            "em screen {}",
            h.engine
                .output(&em.id, 30)
                .await
                .unwrap_or_default()
                .join("\n")
        );
    }
    let p = h.wait_prompts(&em.id, 2).await;
    assert!(p[1].contains("gone") && p[1].contains("vanished"), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_that_never_becomes_ready_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = format!("sm-engine-{}", &SessionId::new_random().as_str()[..8]);
    let _guard = KillTmux(socket.clone());
    let store = Arc::new(SqliteStore::open(dir.path().join("sm.db")).await.unwrap());
    let backend = Arc::new(TmuxBackend::new(socket.as_str()).await.unwrap());
    let mut env = std::collections::BTreeMap::new();
    env.insert("HOME".into(), dir.path().to_string_lossy().into_owned());
    env.insert("SM_FAKE_STARTUP_MS".into(), "600000".into());
    let engine = Engine::builder(store.clone(), backend)
        .profile(Arc::new(FakeProfile {
            program: PathBuf::from(env!("CARGO_BIN_EXE_sm-fake-agent")),
            env,
        }))
        .config(EngineConfig {
            ready_timeout: Duration::from_millis(1500),
            ..EngineConfig::default()
        })
        .start()
        .await
        .unwrap();
    let err = engine
        .spawn(
            &Caller::Admin,
            SpawnRequest::new(AgentKind::Fake, dir.path()),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not become ready"), "{err}");
    assert!(
        err.to_string().contains("Starting"),
        "the error shows the screen: {err}"
    );
    let sessions = store.list_sessions().await.unwrap();
    assert_eq!(sessions[0].status, SessionStatus::Dead);
}

struct KillTmux(String);
impl Drop for KillTmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_single_line_text_that_wraps_in_the_input_box_is_delivered_once() {
    let h = Harness::new().await;
    let w = h.spawn("w", None).await;
    let text = format!(
        "{} end-marker",
        "a long single line with words; ".repeat(12)
    );
    h.engine
        .send(&Caller::Admin, &w.id, &text, DeliveryMode::Sequential)
        .await
        .unwrap();
    let p = h.wait_prompts(&w.id, 1).await;
    assert_eq!(p, vec![text.trim_end().to_string()]);
    h.settled(&w.id).await;
    let msgs = h.messages(&w.id).await;
    assert_eq!(msgs[0].state, MessageState::Delivered);
    assert_eq!(msgs[0].attempts, 1);
}

fn human_types(h: &Harness, id: &SessionId, keys: &[&str], literal: bool) {
    let target = format!("={}:={id}", h.socket);
    let mut cmd = std::process::Command::new("tmux");
    cmd.args(["-L", &h.socket, "send-keys", "-t", &target]);
    if literal {
        cmd.arg("-l");
    }
    assert!(cmd.args(keys).status().unwrap().success());
}

async fn wait_attention(h: &Harness, id: &SessionId) {
    until_async("a needs-attention event", DEADLINE, async || {
        let events = h.engine.store().events(None, Some(id), 0).await.unwrap();
        events
            .iter()
            .any(|e| matches!(e.kind, sm_lib::EventKind::NeedsAttention { .. }))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_humans_unfinished_text_is_never_merged_and_goes_first() {
    let h = Harness::new().await;
    let w = h.spawn("w", None).await;
    human_types(&h, &w.id, &["half-written thought"], true);
    h.engine
        .send(
            &Caller::Admin,
            &w.id,
            "queued message",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    wait_attention(&h, &w.id).await;
    assert!(h.prompts(&w.id).is_empty(), "nothing typed over the human");
    human_types(&h, &w.id, &["Enter"], false);
    let p = h.wait_prompts(&w.id, 2).await;
    assert_eq!(p, vec!["half-written thought", "queued message"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn urgent_waits_for_a_person_typing_during_a_turn() {
    let h = Harness::new().await;
    let w = h.spawn("w", None).await;
    h.engine
        .send(
            &Caller::Admin,
            &w.id,
            "long job [[sleep 30]]",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    h.wait_status(&w.id, SessionStatus::Working).await;
    human_types(&h, &w.id, &["my own note"], true);
    h.engine
        .send(&Caller::Admin, &w.id, "urgent thing", DeliveryMode::Urgent)
        .await
        .unwrap();
    wait_attention(&h, &w.id).await;
    assert_eq!(
        h.prompts(&w.id),
        vec!["long job [[sleep 30]]"],
        "no interrupt over a person"
    );
    // The person gives up their note; the urgent message goes through, clean.
    human_types(&h, &w.id, &["C-u"], false);
    let p = h.wait_prompts(&w.id, 2).await;
    assert_eq!(p[1], "urgent thing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn urgent_to_an_idle_agent_is_typed_once() {
    let h = Harness::new().await;
    let w = h.spawn("w", None).await;
    for i in 0..3 {
        let text = format!("urgent {i}");
        h.engine
            .send(&Caller::Admin, &w.id, &text, DeliveryMode::Urgent)
            .await
            .unwrap();
        h.wait_prompts(&w.id, i + 1).await;
        h.settled(&w.id).await;
    }
    let msgs = h.messages(&w.id).await;
    assert!(msgs.iter().all(|m| m.attempts == 1), "{msgs:#?}");
}
