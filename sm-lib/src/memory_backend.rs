//! [`MemoryBackend`]: a [`TerminalBackend`] whose terminals are simulated agents in memory.
//!
//! Each terminal runs a small model of Claude Code's TUI — start-up delay, `❯` prompt box,
//! `esc to interrupt` while working, interrupts that restore an unanswered prompt — driven
//! by tokio timers, so engine tests can run under `tokio::time::pause` and check timing
//! rules exactly. Hook events the simulated agent would fire (`SessionStart`,
//! `UserPromptSubmit`, `Stop`) go to an optional sink that a test forwards to
//! [`crate::Engine::hook`].
//!
//! What a turn does is scripted like the fake agent: `[[sleep N]]` for its length (default
//! 1 s) and `[[reply text]]` for its last message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::backend::{BackendEvent, Key, SpawnSpec, TerminalBackend};
use crate::engine::HookEvent;
use crate::engine::profile::claude::hooks;
use crate::error::{Error, Result};
use crate::types::SessionId;

/// How a simulated agent behaves.
#[derive(Debug, Clone)]
pub struct SimulatedAgent {
    /// Time from start to the ready prompt.
    pub startup: Duration,
    /// Enter presses to ignore (simulating a lost submit).
    pub swallow_enters: usize,
    /// Whether it fires hook events.
    pub hooks: bool,
    /// After a turn's Stop, how long its screen shows neither the working footer nor the
    /// prompt box (a TUI half-way through redrawing), before the prompt comes back.
    pub redraw_after_turn: Duration,
}

impl Default for SimulatedAgent {
    fn default() -> Self {
        SimulatedAgent {
            startup: Duration::from_millis(400),
            swallow_enters: 0,
            hooks: true,
            redraw_after_turn: Duration::ZERO,
        }
    }
}

/// Something the simulated terminal received, with the (virtual) time it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Text typed.
    Text(String, Instant),
    /// A key.
    Key(Key, Instant),
}

#[derive(Debug)]
enum Phase {
    Starting,
    Ready,
    Working {
        prompt: String,
        turn: u64,
    },
    /// Between a turn's end and the prompt: neither footer nor prompt box on screen.
    Redrawing,
    Exited,
}

#[derive(Debug)]
struct Term {
    phase: Phase,
    input: String,
    transcript: Vec<String>,
    submitted: Vec<String>,
    received: Vec<Received>,
    swallow_enters: usize,
    hooks: bool,
    redraw_after_turn: Duration,
    turns: u64,
}

struct Inner {
    terms: Mutex<HashMap<SessionId, Term>>,
    events: broadcast::Sender<BackendEvent>,
    hooks: Mutex<Option<mpsc::UnboundedSender<(SessionId, HookEvent)>>>,
    next_agent: Mutex<SimulatedAgent>,
}

/// Simulated terminals for engine tests. Cheap to clone; clones share the terminals.
#[derive(Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBackend {
    /// A backend with no terminals.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        MemoryBackend {
            inner: Arc::new(Inner {
                terms: Mutex::new(HashMap::new()),
                events,
                hooks: Mutex::new(None),
                next_agent: Mutex::new(SimulatedAgent::default()),
            }),
        }
    }

    /// Hook events the simulated agents fire, for a test to pass to the engine.
    pub fn hook_events(&self) -> mpsc::UnboundedReceiver<(SessionId, HookEvent)> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.inner.hooks) = Some(tx);
        rx
    }

    /// How the next created terminals behave.
    pub fn set_next_agent(&self, agent: SimulatedAgent) {
        *lock(&self.inner.next_agent) = agent;
    }

    /// Prompts the agent in `id` submitted, in order.
    pub fn submitted(&self, id: &SessionId) -> Vec<String> {
        lock(&self.inner.terms)
            .get(id)
            .map(|t| t.submitted.clone())
            .unwrap_or_default()
    }

    /// Everything the terminal received, in order.
    pub fn received(&self, id: &SessionId) -> Vec<Received> {
        lock(&self.inner.terms)
            .get(id)
            .map(|t| t.received.clone())
            .unwrap_or_default()
    }

    /// Makes the agent exit, as if it crashed.
    pub fn crash(&self, id: &SessionId) {
        let existed = lock(&self.inner.terms)
            .get_mut(id)
            .map(|t| t.phase = Phase::Exited)
            .is_some();
        if existed {
            let _ = self.inner.events.send(BackendEvent::Exited {
                id: id.clone(),
                status: Some(3),
            });
        }
    }

    fn output(&self, id: &SessionId) {
        let _ = self.inner.events.send(BackendEvent::Output(id.clone()));
    }

    fn hook(&self, id: &SessionId, event: &str, payload: serde_json::Value) {
        let enabled = lock(&self.inner.terms).get(id).is_some_and(|t| t.hooks);
        if !enabled {
            return;
        }
        if let Some(tx) = lock(&self.inner.hooks).as_ref() {
            let mut payload = payload;
            if let Some(obj) = payload.as_object_mut() {
                obj.insert("session_id".into(), id.to_string().into());
                obj.insert("hook_event_name".into(), event.into());
            }
            let _ = tx.send((
                id.clone(),
                HookEvent {
                    event: event.into(),
                    payload,
                },
            ));
        }
    }

    fn live<R>(&self, id: &SessionId, f: impl FnOnce(&mut Term) -> R) -> Result<R> {
        let mut terms = lock(&self.inner.terms);
        match terms.get_mut(id) {
            Some(t) if !matches!(t.phase, Phase::Exited) => Ok(f(t)),
            _ => Err(Error::SessionNotFound(id.to_string())),
        }
    }

    fn submit(&self, id: &SessionId) {
        let started = self
            .live(id, |t| {
                if !matches!(t.phase, Phase::Ready) {
                    return None;
                }
                if t.swallow_enters > 0 {
                    t.swallow_enters -= 1;
                    return None;
                }
                let prompt = std::mem::take(&mut t.input);
                if prompt.trim().is_empty() {
                    return None;
                }
                t.submitted.push(prompt.clone());
                if prompt.trim() == "/clear" {
                    t.transcript.clear();
                    return None;
                }
                t.transcript.push(format!("> {prompt}"));
                t.turns += 1;
                t.phase = Phase::Working {
                    prompt: prompt.clone(),
                    turn: t.turns,
                };
                Some((prompt, t.turns))
            })
            .ok()
            .flatten();
        self.output(id);
        let Some((prompt, turn)) = started else {
            return;
        };
        self.hook(
            id,
            hooks::USER_PROMPT_SUBMIT,
            serde_json::json!({ "prompt": prompt }),
        );
        let (length, reply) = script(&prompt);
        let me = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(length).await;
            let finished = me
                .live(&id, |t| match &t.phase {
                    Phase::Working { turn: current, .. } if *current == turn => {
                        t.transcript.push(format!("⏺ {reply}"));
                        t.transcript.push("✻ Worked for a while".into());
                        if t.redraw_after_turn.is_zero() {
                            t.phase = Phase::Ready;
                            None
                        } else {
                            t.phase = Phase::Redrawing;
                            Some(t.redraw_after_turn)
                        }
                    }
                    _ => Some(Duration::MAX),
                })
                .unwrap_or(Some(Duration::MAX));
            if finished == Some(Duration::MAX) {
                return;
            }
            me.output(&id);
            me.hook(
                &id,
                hooks::STOP,
                serde_json::json!({ "last_assistant_message": reply }),
            );
            if let Some(redraw) = finished {
                tokio::time::sleep(redraw).await;
                let ready = me
                    .live(&id, |t| {
                        let redrawing = matches!(t.phase, Phase::Redrawing);
                        if redrawing {
                            t.phase = Phase::Ready;
                        }
                        redrawing
                    })
                    .unwrap_or(false);
                if ready {
                    me.output(&id);
                }
            }
        });
    }

    fn render(t: &Term) -> Vec<String> {
        let rule = "─".repeat(40);
        let mut rows: Vec<String> = t.transcript.clone();
        match &t.phase {
            Phase::Starting => rows.push("  Starting…".into()),
            Phase::Exited => rows.push("[exited]".into()),
            Phase::Redrawing => {}
            Phase::Ready | Phase::Working { .. } => {
                if matches!(t.phase, Phase::Working { .. }) {
                    rows.push("✶ Working… (esc to interrupt)".into());
                }
                rows.push(rule.clone());
                rows.push(format!("❯ {}", t.input).trim_end().to_string());
                rows.push(rule);
                rows.push("  ? for shortcuts".into());
            }
        }
        rows
    }
}

fn script(prompt: &str) -> (Duration, String) {
    let mut length = Duration::from_secs(1);
    let mut reply = format!("Done: {}", prompt.lines().next().unwrap_or(""));
    let mut rest = prompt;
    while let Some(start) = rest.find("[[") {
        let Some(len) = rest[start + 2..].find("]]") else {
            break;
        };
        let body = rest[start + 2..start + 2 + len].trim();
        rest = &rest[start + 4 + len..];
        if let Some(secs) = body.strip_prefix("sleep ") {
            if let Ok(s) = secs.trim().parse::<f64>() {
                length = Duration::from_secs_f64(s.max(0.0));
            }
        } else if let Some(text) = body.strip_prefix("reply ") {
            reply = text.trim().to_string();
        }
    }
    (length, reply)
}

#[async_trait]
impl TerminalBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, spec: &SpawnSpec) -> Result<()> {
        if !spec.cwd.is_dir() {
            return Err(Error::InvalidWorkingDir {
                path: spec.cwd.clone(),
                reason: "no such directory".into(),
            });
        }
        let agent = lock(&self.inner.next_agent).clone();
        {
            let mut terms = lock(&self.inner.terms);
            if terms
                .get(&spec.id)
                .is_some_and(|t| !matches!(t.phase, Phase::Exited))
            {
                return Err(Error::SessionExists(spec.id.clone()));
            }
            terms.insert(
                spec.id.clone(),
                Term {
                    phase: Phase::Starting,
                    input: String::new(),
                    transcript: vec!["✻ Simulated agent".into()],
                    submitted: Vec::new(),
                    received: Vec::new(),
                    swallow_enters: agent.swallow_enters,
                    hooks: agent.hooks,
                    redraw_after_turn: agent.redraw_after_turn,
                    turns: 0,
                },
            );
        }
        let me = self.clone();
        let id = spec.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(agent.startup).await;
            let ready = me
                .live(&id, |t| {
                    if matches!(t.phase, Phase::Starting) {
                        t.phase = Phase::Ready;
                        true
                    } else {
                        false
                    }
                })
                .unwrap_or(false);
            if ready {
                me.output(&id);
                me.hook(
                    &id,
                    hooks::SESSION_START,
                    serde_json::json!({ "source": "startup" }),
                );
            }
        });
        Ok(())
    }

    async fn send_text(&self, id: &SessionId, text: &str) -> Result<()> {
        self.live(id, |t| {
            t.received
                .push(Received::Text(text.to_string(), Instant::now()));
            t.input.push_str(text);
        })?;
        self.output(id);
        Ok(())
    }

    async fn send_key(&self, id: &SessionId, key: Key) -> Result<()> {
        let action = self.live(id, |t| {
            t.received.push(Received::Key(key, Instant::now()));
            match (key, &t.phase) {
                (Key::Enter, _) => Some("submit"),
                (Key::Escape, Phase::Working { prompt, .. }) => {
                    // No output yet in this model: the prompt comes back into the box.
                    t.input = format!("{prompt}{}", t.input);
                    if let Some(last) = t.transcript.last() {
                        if last.starts_with("> ") {
                            t.transcript.pop();
                        }
                    }
                    t.phase = Phase::Ready;
                    None
                }
                (Key::CtrlU, _) => {
                    match t.input.rfind('\n') {
                        Some(i) => t.input.truncate(i),
                        None => t.input.clear(),
                    }
                    None
                }
                _ => None,
            }
        })?;
        if action == Some("submit") {
            self.submit(id);
        } else {
            self.output(id);
        }
        Ok(())
    }

    async fn capture_screen(&self, id: &SessionId) -> Result<Vec<String>> {
        self.live(id, |t| Self::render(t))
    }

    async fn capture_tail(&self, id: &SessionId, lines: usize) -> Result<Vec<String>> {
        let rows = self.live(id, |t| Self::render(t))?;
        let skip = rows.len().saturating_sub(lines);
        Ok(rows[skip..].to_vec())
    }

    async fn is_alive(&self, id: &SessionId) -> Result<bool> {
        Ok(self.live(id, |_| ()).is_ok())
    }

    async fn kill(&self, id: &SessionId) -> Result<()> {
        let was_live = self.live(id, |t| t.phase = Phase::Exited).is_ok();
        if was_live {
            let _ = self.inner.events.send(BackendEvent::Exited {
                id: id.clone(),
                status: None,
            });
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SessionId>> {
        let mut ids: Vec<SessionId> = lock(&self.inner.terms)
            .iter()
            .filter(|(_, t)| !matches!(t.phase, Phase::Exited))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn attach_command(&self, _id: &SessionId) -> Option<Vec<String>> {
        None
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.inner.events.subscribe()
    }
}
