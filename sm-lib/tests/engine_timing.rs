//! Engine timing rules on simulated agents (`MemoryBackend`) under paused time: idle
//! timeouts, wait deadlines, one Escape per interrupt, a lost Enter pressed again once but
//! the text never retyped, readiness deadlines, no false idle while working.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sm_lib::engine::{EngineConfig, FakeProfile};
use sm_lib::memory_backend::{Received, SimulatedAgent};
use sm_lib::{
    AgentKind, Caller, DeliveryMode, Engine, EventKind, Key, MemoryBackend, MemoryStore,
    MessageState, MessageStore, Notification, NotificationKind, Notifier, Session, SessionStatus,
    SpawnRequest, TerminalBackend,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<Notification>>);

#[async_trait]
impl Notifier for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn notify(&self, n: &Notification) -> sm_lib::Result<()> {
        self.0.lock().unwrap().push(n.clone());
        Ok(())
    }
}

struct Sim {
    engine: Engine,
    backend: MemoryBackend,
    store: Arc<MemoryStore>,
    notes: Arc<Recorder>,
    dir: tempfile::TempDir,
}

async fn sim(config: EngineConfig) -> Sim {
    let backend = MemoryBackend::new();
    let store = Arc::new(MemoryStore::new());
    let notes = Arc::new(Recorder::default());
    let engine = start_engine(&backend, &store, &notes, config).await;
    Sim {
        engine,
        backend,
        store,
        notes,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// An engine over `store` and `backend`, their simulated agents' hooks forwarded to it; a
/// second one over the same two is sm restarted (its recovery runs first).
async fn start_engine(
    backend: &MemoryBackend,
    store: &Arc<MemoryStore>,
    notes: &Arc<Recorder>,
    config: EngineConfig,
) -> Engine {
    let mut hooks = backend.hook_events();
    let engine = Engine::builder(store.clone(), Arc::new(backend.clone()))
        .profile(Arc::new(FakeProfile {
            program: PathBuf::from("simulated"),
            env: Default::default(),
        }))
        .notifier(notes.clone())
        .config(config)
        .start()
        .await
        .unwrap();
    let forward = engine.clone();
    tokio::spawn(async move {
        while let Some((id, event)) = hooks.recv().await {
            let _ = forward.hook(&id, event).await;
        }
    });
    engine
}

impl Sim {
    async fn spawn(&self, name: &str, parent: Option<&Session>) -> Session {
        let caller = parent.map_or(Caller::Admin, |p| Caller::Session(p.id.clone()));
        let mut req = SpawnRequest::new(AgentKind::Fake, self.dir.path());
        req.name = Some(name.parse().unwrap());
        self.engine.spawn(&caller, req).await.unwrap()
    }

    /// Sends `text` to `to` as an admin.
    async fn send(&self, to: &Session, text: &str, mode: DeliveryMode) -> sm_lib::Message {
        self.engine
            .send(&Caller::Admin, &to.id, text, mode)
            .await
            .unwrap()
    }

    async fn status(&self, s: &Session) -> SessionStatus {
        self.store.get_session(&s.id).await.unwrap().unwrap().status
    }
}

/// Lets virtual time pass (the runtime auto-advances while everything sleeps).
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_agent_with_nobody_waiting_raises_idle_timeout_on_time() {
    let s = sim(EngineConfig {
        idle_timeout: Duration::from_secs(300),
        ..EngineConfig::default()
    })
    .await;
    let w = s.spawn("w", None).await;
    let timeouts = |events: &[sm_lib::Event]| {
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::IdleTimeout { .. }))
            .count()
    };
    pass(Duration::from_secs(298)).await;
    let events = s.store.events(None, Some(&w.id), 0).await.unwrap();
    assert_eq!(timeouts(&events), 0);
    pass(Duration::from_secs(4)).await;
    let events = s.store.events(None, Some(&w.id), 0).await.unwrap();
    assert_eq!(timeouts(&events), 1);
    assert!(
        s.notes
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|n| matches!(n.kind, NotificationKind::IdleTimeout { .. }))
    );
    // Once per idle period.
    pass(Duration::from_secs(900)).await;
    let events = s.store.events(None, Some(&w.id), 0).await.unwrap();
    assert_eq!(timeouts(&events), 1);
}

#[tokio::test(start_paused = true)]
async fn a_wait_times_out_at_its_deadline_not_before() {
    let s = sim(EngineConfig::default()).await;
    let em = s.spawn("em", None).await;
    let w = s.spawn("w", Some(&em)).await;
    let as_em = Caller::Session(em.id.clone());
    s.engine
        .send(
            &as_em,
            &w.id,
            "forever [[sleep 100000]]",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    pass(Duration::from_secs(1)).await;
    s.engine
        .wait(&as_em, &w.id, Duration::from_secs(60))
        .await
        .unwrap();
    pass(Duration::from_secs(58)).await;
    assert!(s.backend.submitted(&em.id).is_empty());
    pass(Duration::from_secs(3)).await;
    let got = s.backend.submitted(&em.id);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("timed out after 60s"), "{got:?}");
    assert!(got[0].contains("working"), "{got:?}");
}

#[tokio::test(start_paused = true)]
async fn urgent_presses_escape_once_then_waits_for_the_prompt_and_empties_the_box() {
    let s = sim(EngineConfig::default()).await;
    let w = s.spawn("w", None).await;
    s.send(&w, "long [[sleep 600]]", DeliveryMode::Sequential)
        .await;
    pass(Duration::from_secs(2)).await;
    assert_eq!(s.status(&w).await, SessionStatus::Working);
    s.send(&w, "urgent: stop", DeliveryMode::Urgent).await;
    pass(Duration::from_secs(2)).await;
    assert_eq!(
        s.backend.submitted(&w.id),
        vec!["long [[sleep 600]]", "urgent: stop"]
    );
    let received = s.backend.received(&w.id);
    let escapes = received
        .iter()
        .filter(|r| matches!(r, Received::Key(Key::Escape, _)))
        .count();
    assert_eq!(escapes, 1, "exactly one Escape: {received:?}");
    let escape_at = received
        .iter()
        .position(|r| matches!(r, Received::Key(Key::Escape, _)))
        .unwrap();
    let urgent_at = received
        .iter()
        .position(|r| matches!(r, Received::Text(t, _) if t == "urgent: stop"))
        .unwrap();
    assert!(
        received[escape_at..urgent_at]
            .iter()
            .any(|r| matches!(r, Received::Key(Key::CtrlU, _))),
        "the restored prompt is emptied before typing: {received:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_enter_is_pressed_again_once_and_the_text_never_retyped() {
    let s = sim(EngineConfig::default()).await;
    s.backend.set_next_agent(SimulatedAgent {
        swallow_enters: 1,
        ..SimulatedAgent::default()
    });
    let w = s.spawn("w", None).await;
    let m = s.send(&w, "hello once", DeliveryMode::Sequential).await;
    pass(Duration::from_secs(15)).await;
    assert_eq!(s.backend.submitted(&w.id), vec!["hello once"]);
    let received = s.backend.received(&w.id);
    let typed = received
        .iter()
        .filter(|r| matches!(r, Received::Text(..)))
        .count();
    let enters = received
        .iter()
        .filter(|r| matches!(r, Received::Key(Key::Enter, _)))
        .count();
    assert_eq!((typed, enters), (1, 2), "{received:?}");
    let stored = s.store.get_message(m.id).await.unwrap().unwrap();
    assert_eq!(stored.state, MessageState::Delivered);
    assert_eq!(stored.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn two_lost_enters_fail_the_message_and_tell_the_sender() {
    let s = sim(EngineConfig::default()).await;
    let em = s.spawn("em", None).await;
    s.backend.set_next_agent(SimulatedAgent {
        swallow_enters: 2,
        ..SimulatedAgent::default()
    });
    let w = s.spawn("w", Some(&em)).await;
    let m = s
        .engine
        .send(
            &Caller::Session(em.id.clone()),
            &w.id,
            "lost cause",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    pass(Duration::from_secs(30)).await;
    let stored = s.store.get_message(m.id).await.unwrap().unwrap();
    assert_eq!(stored.state, MessageState::Failed);
    assert!(stored.reason.unwrap().contains("Enter was pressed twice"));
    assert!(s.backend.submitted(&w.id).is_empty());
    let typed = s
        .backend
        .received(&w.id)
        .iter()
        .filter(|r| matches!(r, Received::Text(..)))
        .count();
    assert_eq!(typed, 1, "never retyped");
    let told = s.backend.submitted(&em.id);
    assert!(
        told.iter().any(|t| t.contains("was not delivered")),
        "{told:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn spawn_fails_at_the_ready_deadline_and_the_session_is_dead() {
    let s = sim(EngineConfig {
        ready_timeout: Duration::from_secs(60),
        ..EngineConfig::default()
    })
    .await;
    s.backend.set_next_agent(SimulatedAgent {
        startup: Duration::from_secs(120),
        ..SimulatedAgent::default()
    });
    let started = tokio::time::Instant::now();
    let err = s
        .engine
        .spawn(
            &Caller::Admin,
            SpawnRequest::new(AgentKind::Fake, s.dir.path()),
        )
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(60) && waited < Duration::from_secs(62),
        "{waited:?}"
    );
    assert!(err.to_string().contains("did not become ready"), "{err}");
    let all = s.store.list_sessions().await.unwrap();
    assert_eq!(all[0].status, SessionStatus::Dead);
}

#[tokio::test(start_paused = true)]
async fn without_hooks_the_screen_ends_the_turn_but_never_while_working() {
    let s = sim(EngineConfig::default()).await;
    s.backend.set_next_agent(SimulatedAgent {
        hooks: false,
        ..SimulatedAgent::default()
    });
    let w = s.spawn("w", None).await;
    assert_eq!(
        s.status(&w).await,
        SessionStatus::Idle,
        "ready from the screen alone"
    );
    s.send(&w, "work [[sleep 10]]", DeliveryMode::Sequential)
        .await;
    for _ in 0..8 {
        pass(Duration::from_secs(1)).await;
        assert_eq!(s.status(&w).await, SessionStatus::Working);
    }
    pass(Duration::from_secs(4)).await;
    assert_eq!(s.status(&w).await, SessionStatus::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_agent_is_dead_its_queue_failed_and_its_waiter_told() {
    let s = sim(EngineConfig::default()).await;
    let em = s.spawn("em", None).await;
    let w = s.spawn("w", Some(&em)).await;
    let as_em = Caller::Session(em.id.clone());
    s.engine
        .send(
            &as_em,
            &w.id,
            "busy [[sleep 100]]",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    pass(Duration::from_secs(2)).await;
    let queued = s
        .engine
        .send(&as_em, &w.id, "queued", DeliveryMode::Sequential)
        .await
        .unwrap();
    s.engine
        .wait(&as_em, &w.id, Duration::from_secs(600))
        .await
        .unwrap();
    s.backend.crash(&w.id);
    pass(Duration::from_secs(5)).await;
    assert_eq!(s.status(&w).await, SessionStatus::Dead);
    let stored = s.store.get_message(queued.id).await.unwrap().unwrap();
    assert_eq!(stored.state, MessageState::Failed);
    let told = s.backend.submitted(&em.id);
    assert!(told.iter().any(|t| t.contains("ended")), "{told:?}");
    assert!(
        told.iter().any(|t| t.contains("was not delivered")),
        "{told:?}"
    );
    assert!(
        s.notes
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|n| matches!(n.kind, NotificationKind::Error { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn wait_for_returns_after_the_turn_the_message_started_with_its_answer() {
    let s = sim(EngineConfig::default()).await;
    let w = s.spawn("w", None).await;
    s.send(
        &w,
        "compute [[sleep 5]] [[reply 42]]",
        DeliveryMode::Sequential,
    )
    .await;
    // Right after the send the agent still looks idle; the wait must not fire on that.
    let started = tokio::time::Instant::now();
    let result = s
        .engine
        .wait_for(&w.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(result.outcome, sm_lib::WaitOutcome::Idle);
    assert_eq!(result.last_message.as_deref(), Some("42"));
    assert!(started.elapsed() >= Duration::from_secs(5));

    let result = s
        .engine
        .wait_for(&w.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        result.outcome,
        sm_lib::WaitOutcome::Idle,
        "an idle agent answers at once"
    );
    s.send(&w, "slow [[sleep 500]]", DeliveryMode::Sequential)
        .await;
    let result = s
        .engine
        .wait_for(&w.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(result.outcome, sm_lib::WaitOutcome::Timeout);
}

#[tokio::test(start_paused = true)]
async fn text_left_in_the_box_blocks_delivery_until_stale_then_is_cleared_and_logged() {
    let s = sim(EngineConfig {
        input_stale_timeout: Duration::from_secs(60),
        ..EngineConfig::default()
    })
    .await;
    let w = s.spawn("w", None).await;
    // Someone typed into the box and walked away.
    s.backend.send_text(&w.id, "abandoned draft").await.unwrap();
    s.send(&w, "the real task", DeliveryMode::Sequential).await;
    pass(Duration::from_secs(50)).await;
    assert!(
        s.backend.submitted(&w.id).is_empty(),
        "held back while the text is fresh"
    );
    pass(Duration::from_secs(15)).await;
    assert_eq!(
        s.backend.submitted(&w.id),
        vec!["the real task"],
        "never merged"
    );
    let events = s.store.events(None, Some(&w.id), 0).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::NeedsAttention { .. }))
    );
    assert!(
        events.iter().any(
            |e| matches!(&e.kind, EventKind::Note { text } if text.contains("abandoned draft"))
        )
    );
}

#[tokio::test(start_paused = true)]
async fn python_style_parent_notifications_and_notify_filters_apply() {
    let s = sim(EngineConfig {
        parent_notify: sm_lib::config::ParentNotifications {
            notify_parent_on_complete: true,
            ..Default::default()
        },
        notify: sm_lib::config::NotifyConfig {
            completion: false,
            ..Default::default()
        },
        ..EngineConfig::default()
    })
    .await;
    let em = s.spawn("em", None).await;
    let child = s.spawn("child", Some(&em)).await;
    s.send(
        &child,
        "work [[sleep 2]] [[reply all done]]",
        DeliveryMode::Sequential,
    )
    .await;
    pass(Duration::from_secs(5)).await;
    let told = s.backend.submitted(&em.id);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("child") && told[0].contains("all done"),
        "{told:?}"
    );
    let completions = s
        .notes
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|n| matches!(n.kind, NotificationKind::TurnCompleted { .. }))
        .count();
    assert_eq!(
        completions, 0,
        "monitor.notify.completion: false silences them"
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_signal_of_the_same_turn_end_was_reported_twice() {
    let s = sim(EngineConfig {
        parent_notify: sm_lib::config::ParentNotifications {
            notify_parent_on_complete: true,
            ..Default::default()
        },
        ..EngineConfig::default()
    })
    .await;
    let em = s.spawn("em", None).await;
    let child = s.spawn("child", Some(&em)).await;
    s.send(
        &child,
        "work [[sleep 1]] [[reply all done]]",
        DeliveryMode::Sequential,
    )
    .await;
    pass(Duration::from_secs(3)).await;
    // The same end again, as a late Stop hook (or the screen after one) would bring it.
    s.engine
        .hook(
            &child.id,
            sm_lib::HookEvent {
                event: "Stop".into(),
                payload: serde_json::json!({ "last_assistant_message": "all done" }),
            },
        )
        .await
        .unwrap();
    pass(Duration::from_secs(3)).await;
    let completions = s
        .notes
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|n| {
            n.session == child.id && matches!(n.kind, NotificationKind::TurnCompleted { .. })
        })
        .count();
    assert_eq!(completions, 1, "one turn, one notification");
    let told = s.backend.submitted(&em.id);
    assert_eq!(told.len(), 1, "the parent is told once: {told:?}");
    // The next turn is reported again.
    s.send(&child, "more [[reply more]]", DeliveryMode::Sequential)
        .await;
    pass(Duration::from_secs(3)).await;
    assert_eq!(s.backend.submitted(&em.id).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_spawn_that_sm_stopped_before_its_agent_started_is_started_anew_when_repeated() {
    // What a crash between storing a session and starting its terminal leaves behind: the
    // session `starting`, keyed, with its prompt queued, and no terminal.
    let store = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let orphan = Session::new(
        sm_lib::SessionId::new_random(),
        AgentKind::Fake,
        dir.path().canonicalize().unwrap(),
    );
    store
        .create_session(sm_lib::NewSession {
            session: orphan.clone(),
            first_message: Some(sm_lib::NewMessage {
                target: orphan.id.clone(),
                sender: None,
                text: "the task".into(),
                mode: DeliveryMode::Sequential,
                client_key: None,
            }),
            client_key: Some("spawn:admin:k1".into()),
        })
        .await
        .unwrap();
    let backend = MemoryBackend::new();
    let mut hooks = backend.hook_events();
    let engine = Engine::builder(store.clone(), Arc::new(backend.clone()))
        .profile(Arc::new(FakeProfile {
            program: PathBuf::from("simulated"),
            env: Default::default(),
        }))
        .start()
        .await
        .unwrap();
    let forward = engine.clone();
    tokio::spawn(async move {
        while let Some((id, event)) = hooks.recv().await {
            let _ = forward.hook(&id, event).await;
        }
    });
    pass(Duration::from_secs(1)).await;
    let ended = store.get_session(&orphan.id).await.unwrap().unwrap();
    assert_eq!(ended.status, SessionStatus::Dead);
    // The repeated request (same key) starts the agent, and its prompt arrives once.
    let mut request = SpawnRequest::new(AgentKind::Fake, dir.path());
    request.prompt = Some("the task".into());
    request.client_key = Some("spawn:admin:k1".into());
    let started = engine.spawn(&Caller::Admin, request.clone()).await.unwrap();
    assert_ne!(started.id, orphan.id);
    assert!(started.status.is_live());
    pass(Duration::from_secs(2)).await;
    assert_eq!(backend.submitted(&started.id), ["the task"]);
    // Repeated once more, it is the same new agent, not a third.
    let again = engine.spawn(&Caller::Admin, request).await.unwrap();
    assert_eq!(again.id, started.id);
    let live: Vec<_> = store
        .list_sessions()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.status.is_live())
        .collect();
    assert_eq!(live.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_permission_notification_after_its_question_was_answered_held_the_queue() {
    // Claude Code sends its permission notification ~6 s after the question appears; when
    // the question was answered and the turn ended by then, the screen is at the prompt.
    let s = sim(EngineConfig::default()).await;
    let w = s.spawn("w", None).await;
    s.send(&w, "one [[reply one]]", DeliveryMode::Sequential)
        .await;
    pass(Duration::from_secs(3)).await;
    assert_eq!(s.status(&w).await, SessionStatus::Idle);
    s.engine
        .hook(
            &w.id,
            sm_lib::HookEvent {
                event: "Notification".into(),
                payload: serde_json::json!({
                    "notification_type": "permission_prompt",
                    "message": "Claude needs your permission to use Write",
                }),
            },
        )
        .await
        .unwrap();
    pass(Duration::from_millis(500)).await;
    assert_eq!(
        s.status(&w).await,
        SessionStatus::Idle,
        "a late notification is not a question"
    );
    s.send(&w, "two [[reply two]]", DeliveryMode::Sequential)
        .await;
    pass(Duration::from_secs(3)).await;
    assert_eq!(s.backend.submitted(&w.id).len(), 2, "the queue goes on");
}

#[tokio::test(start_paused = true)]
async fn a_wake_waited_a_second_when_the_idle_parents_screen_was_caught_mid_redraw() {
    let s = sim(EngineConfig::default()).await;
    // After each turn's Stop the screen shows no prompt for 300 ms, then the prompt.
    s.backend.set_next_agent(SimulatedAgent {
        redraw_after_turn: Duration::from_millis(300),
        ..SimulatedAgent::default()
    });
    let w = s.spawn("w", None).await;
    s.send(&w, "first [[sleep 0.5]]", DeliveryMode::Sequential)
        .await;
    s.send(&w, "second", DeliveryMode::Sequential).await;
    pass(Duration::from_secs(5)).await;
    assert_eq!(
        s.backend.submitted(&w.id),
        vec!["first [[sleep 0.5]]", "second"]
    );
    let typed: Vec<tokio::time::Instant> = s
        .backend
        .received(&w.id)
        .iter()
        .filter_map(|r| match r {
            Received::Text(_, at) => Some(*at),
            _ => None,
        })
        .collect();
    // The first turn lasts 0.5 s and its screen redraws for 0.3 s: the second message is
    // typed as soon as the prompt is back, not a retry interval later.
    let gap = typed[1] - typed[0];
    assert!(
        gap < Duration::from_millis(1100),
        "the second message waited {gap:?} after the first"
    );
}

#[tokio::test(start_paused = true)]
async fn a_delivery_under_way_at_shutdown_was_left_delivering() {
    let s = sim(EngineConfig::default()).await;
    s.backend.set_next_agent(SimulatedAgent {
        swallow_enters: 1,
        ..SimulatedAgent::default()
    });
    let w = s.spawn("w", None).await;
    let m = s.send(&w, "in flight", DeliveryMode::Sequential).await;
    // The first Enter is lost: the delivery waits to press it again when the stop comes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !s
        .backend
        .received(&w.id)
        .iter()
        .any(|r| matches!(r, Received::Key(Key::Enter, _)))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Enter was pressed"
        );
        pass(Duration::from_millis(10)).await;
    }
    let stored = s.store.get_message(m.id).await.unwrap().unwrap();
    assert_eq!(stored.state, MessageState::Delivering);
    s.engine.shutdown_gracefully(Duration::from_secs(30)).await;
    // The actor finished the delivery (pressed Enter again, saw it taken) before it stopped.
    let stored = s.store.get_message(m.id).await.unwrap().unwrap();
    assert_eq!(stored.state, MessageState::Delivered);
    assert_eq!(s.backend.submitted(&w.id), vec!["in flight"]);
}

#[tokio::test(start_paused = true)]
async fn a_prompt_restored_by_an_interrupt_was_submitted_again_after_a_restart() {
    let mut s = sim(EngineConfig::default()).await;
    let w = s.spawn("w", None).await;
    // Two urgent messages whose last 40 characters are the same, as a sender's numbered
    // messages often are.
    let first = "job 1 [[sleep 600]] :: the same long tail for both of these messages";
    let second = "job 2 [[sleep 600]] :: the same long tail for both of these messages";
    s.send(&w, first, DeliveryMode::Urgent).await;
    pass(Duration::from_secs(2)).await;
    assert_eq!(s.backend.submitted(&w.id), vec![first]);
    // sm stops right after it claimed the second and pressed Escape: the interrupted turn
    // had answered nothing yet, so its prompt is back in the input box.
    s.engine.shutdown_gracefully(Duration::from_secs(30)).await;
    let queued = s
        .store
        .enqueue(sm_lib::NewMessage {
            target: w.id.clone(),
            sender: None,
            text: second.into(),
            mode: DeliveryMode::Urgent,
            client_key: None,
        })
        .await
        .unwrap();
    let claimed = s
        .store
        .claim_next(&w.id, &[DeliveryMode::Urgent])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, queued.value.id);
    s.backend.send_key(&w.id, Key::Escape).await.unwrap();
    s.engine = start_engine(&s.backend, &s.store, &s.notes, EngineConfig::default()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let m = s.store.get_message(claimed.id).await.unwrap().unwrap();
        if m.state.is_terminal() {
            assert_eq!(m.state, MessageState::Delivered, "{m:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {m:?}");
        pass(Duration::from_millis(100)).await;
    }
    assert_eq!(
        s.backend.submitted(&w.id),
        vec![first, second],
        "each message reaches the agent once"
    );
}
