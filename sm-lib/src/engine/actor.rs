//! One actor per live session: the only code that types into its terminal or changes its
//! status. Commands (new messages, hook events, output activity, waits, clear, exit) arrive
//! on a channel and are handled one at a time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::screen::ScreenState;
use super::{AgentProfile, Engine, HookEvent, display_name, notify, pending_for, record};
use crate::backend::Key;
use crate::error::{Error, Result};
use crate::notifier::{Notification, NotificationKind};
use crate::store::MessageFilter;
use crate::types::{
    DeliveryMode, EventKind, LockKind, Message, MessageState, Session, SessionId, SessionStatus,
    Timestamp, Wait, WaitOutcome,
};

/// How long output must have been quiet before a ready-looking screen counts as idle
/// (guards against the instant between a turn's last tool and its final render).
const QUIET_BEFORE_IDLE: Duration = Duration::from_millis(300);
/// Delay between output activity and the screen check it triggers (coalesces bursts).
const SCREEN_CHECK_DELAY: Duration = Duration::from_millis(100);
/// After a Stop hook, how long a working footer on screen is taken as a late render rather
/// than a new turn.
const STOP_GRACE: Duration = Duration::from_millis(1500);
/// How often a blocked delivery is retried when no output suggests a change.
const BLOCKED_RETRY: Duration = Duration::from_secs(1);
/// A message that could not be typed this many times fails (it is never typed twice, so
/// only attempts whose text did not land, or could not start, count).
const MAX_ATTEMPTS: u32 = 5;
/// The pause after Escape before any other key, so the agent does not read them as one
/// Alt chord (both Claude Code and the fake agent wait ~50 ms for a lone Escape).
const ESCAPE_GAP: Duration = Duration::from_millis(150);
/// How long the first Enter gets to show on screen before it is pressed once more.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(2);
/// After a restart, how long past its claim a message's fate may still be unwritten: Claude
/// Code appends a prompt to its transcript 150–350 ms after submitting it.
const RECOVERY_SETTLE: Duration = Duration::from_secs(3);
/// How often recovery looks again within that time.
const RECOVERY_POLL: Duration = Duration::from_millis(100);
/// Why a message whose fate recovery could not tell is failed rather than typed again.
const MAYBE_DELIVERED: &str =
    "it may have reached the agent before the restart; not typed again to avoid a duplicate";
/// How often the screen is read while verifying a delivery step.
const VERIFY_POLL: Duration = Duration::from_millis(15);

pub(crate) enum Command {
    /// Messages were queued.
    Kick,
    /// The terminal printed something.
    Activity,
    /// A hook event from the agent.
    Hook(HookEvent),
    /// A wait on this session was registered.
    WaitAdded(Wait),
    /// Reset the agent's context.
    Clear(oneshot::Sender<Result<()>>),
    /// Pick option `option` (0-based) of the question on screen; answers its label.
    Answer {
        option: usize,
        reply: oneshot::Sender<Result<String>>,
    },
    /// The session is being killed; the exit that follows is a kill, for this reason
    /// (`None`: a plain kill).
    Killing(Option<String>),
    /// The terminal is gone.
    Exited { status: Option<i32>, reason: String },
    /// Events may have been missed: check liveness and the screen.
    CheckAlive,
    /// The session was re-adopted after a restart.
    Recover,
    /// Stop the actor, leaving the agent running.
    Shutdown,
}

enum Outcome {
    /// A message was delivered (or failed for good): look for the next one.
    Progress,
    /// Nothing deliverable now.
    Nothing,
    /// Something is queued but the agent cannot take it yet.
    Blocked,
}

enum Attempt {
    Delivered,
    /// The text never reached the agent: put the message back.
    Retry(String),
    /// Give up on this message.
    Fail(String),
}

pub(crate) struct Actor {
    engine: Engine,
    id: SessionId,
    session: Session,
    profile: Arc<dyn AgentProfile>,
    status_tx: watch::Sender<SessionStatus>,
    status: SessionStatus,
    /// Waits on this session, each with its deadline on the runtime's clock (the stored
    /// deadline is wall-clock; timers must follow tokio time).
    waits: Vec<(Wait, Instant)>,
    queue_dirty: bool,
    retry_at: Option<Instant>,
    turn_seen_working: bool,
    /// The end of the current turn has been reported (notification, event, parent); a
    /// second signal of the same end (a Stop hook after the screen saw it, or the reverse)
    /// reports nothing. Cleared when a turn starts.
    turn_reported: bool,
    last_activity: Instant,
    screen_check_at: Option<Instant>,
    idle_since: Option<Instant>,
    idle_notified: bool,
    killing: bool,
    /// Why the session is being killed, when it is not a plain kill.
    kill_reason: Option<String>,
    session_ended: bool,
    last_message: Option<String>,
    /// Text in the input box that sm did not type, and since when it has been unchanged.
    foreign_input: Option<(String, Instant)>,
    /// The last message sm submitted, to recognise it when an interrupt restores it.
    last_typed: Option<String>,
    /// Text sm typed that had not shown up when it gave up waiting; if it appears later it
    /// is sm's own and is cleared at once (the message was put back in the queue).
    unlanded: Option<String>,
    /// When the last Stop hook arrived: the screen may still show the working footer for a
    /// moment after it.
    stopped_at: Option<Instant>,
    /// The last blocked delivery is worth retrying almost at once (a screen still settling).
    retry_soon: bool,
    /// Turns this actor saw end, newest last (when, and the last message): a wake names
    /// every turn since its wait was registered.
    finished_turns: std::collections::VecDeque<(Timestamp, Option<String>)>,
}

/// `items` grouped by `key`, groups in the order their first item came.
fn group_by<K: PartialEq, T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<(K, Vec<T>)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for item in items {
        let k = key(&item);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, group)) => group.push(item),
            None => groups.push((k, vec![item])),
        }
    }
    groups
}

/// The wake text for an idle target `name`: its last message, or every turn it finished
/// since the wait was registered, so an EM that waited across several turns hears of each.
fn idle_wake_text(name: &str, last_message: Option<&str>, turns: &[String]) -> String {
    let short = |m: &str, n: usize| -> String {
        let cut: String = m.chars().take(n).collect();
        if cut.len() < m.len() {
            format!("{cut}…")
        } else {
            cut
        }
    };
    if turns.len() <= 1 {
        let last = turns
            .first()
            .map(String::as_str)
            .or(last_message)
            .map(|m| format!(" Last message: {}", short(m, 300)))
            .unwrap_or_default();
        return format!("[sm] {name} is idle: its turn is done.{last}");
    }
    let shown = &turns[turns.len().saturating_sub(TURNS_PER_WAKE)..];
    let skipped = turns.len() - shown.len();
    let mut text = format!(
        "[sm] {name} is idle: {} turns done since you waited.",
        turns.len()
    );
    if skipped > 0 {
        text.push_str(&format!(" ({skipped} earlier not shown.)"));
    }
    for (i, m) in shown.iter().enumerate() {
        text.push_str(&format!(" Turn {}: {}", skipped + i + 1, short(m, 200)));
    }
    text
}

/// How many finished turns an actor remembers for its wakes.
const TURNS_REMEMBERED: usize = 20;
/// How many turns one wake names (the most recent ones).
const TURNS_PER_WAKE: usize = 5;

/// Text as compared with what a screen shows: without whitespace (wrapping, tabs shown as
/// spaces) and without invisible format characters, which terminals drop or merge into
/// the previous cell (zero-width joiners and spaces, soft hyphens, byte-order marks).
fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !c.is_whitespace()
                && !matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
        })
        .collect()
}

/// Whether the input box shows `text` (typed, or collapsed as a paste).
fn landed(input: &str, text: &str) -> bool {
    if input.contains("[Pasted text") {
        return true;
    }
    let tail: String = {
        let chars: Vec<char> = normalize(text).chars().collect();
        chars[chars.len().saturating_sub(40)..].iter().collect()
    };
    !tail.is_empty() && normalize(input).ends_with(&tail)
}

/// Whether the screen shows that `text`, typed and followed by Enter, was taken: it left the
/// input box, or the agent is working or asking something.
fn submitted(state: &ScreenState, text: &str) -> bool {
    match state {
        ScreenState::Ready { input } => !landed(input, text),
        ScreenState::Working { .. } | ScreenState::Permission { .. } => true,
        ScreenState::Other => false,
    }
}

impl Actor {
    pub(crate) fn new(
        engine: Engine,
        session: Session,
        profile: Arc<dyn AgentProfile>,
        status_tx: watch::Sender<SessionStatus>,
    ) -> Self {
        Actor {
            id: session.id.clone(),
            status: session.status,
            engine,
            session,
            profile,
            status_tx,
            waits: Vec::new(),
            queue_dirty: true,
            retry_at: None,
            turn_seen_working: false,
            turn_reported: false,
            last_activity: Instant::now(),
            screen_check_at: None,
            idle_since: None,
            idle_notified: false,
            killing: false,
            kill_reason: None,
            session_ended: false,
            last_message: None,
            foreign_input: None,
            last_typed: None,
            unlanded: None,
            stopped_at: None,
            retry_soon: false,
            finished_turns: std::collections::VecDeque::new(),
        }
    }

    fn inner(&self) -> &super::Inner {
        &self.engine.inner
    }

    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        first: Option<Command>,
    ) {
        match self.inner().store.list_waits(Some(&self.id)).await {
            Ok(waits) => {
                for w in waits {
                    self.add_wait(w);
                }
            }
            Err(e) => tracing::warn!(session = %self.id, error = %e, "cannot load waits"),
        }
        if self.status == SessionStatus::Idle {
            self.idle_since = Some(Instant::now());
        }
        let mut running = match first {
            Some(command) => self.handle(command).await,
            None => true,
        };
        while running {
            if self.queue_dirty {
                match self.deliver_next().await {
                    Outcome::Progress => continue,
                    Outcome::Nothing => self.queue_dirty = false,
                    Outcome::Blocked => {
                        self.queue_dirty = false;
                        let wait = if std::mem::take(&mut self.retry_soon) {
                            SCREEN_CHECK_DELAY / 4
                        } else {
                            BLOCKED_RETRY
                        };
                        self.retry_at = Some(Instant::now() + wait);
                    }
                }
            }
            self.fire_waits_if_idle().await;
            let deadline = self.next_deadline();
            let command = tokio::select! {
                c = commands.recv() => c,
                _ = sleep_until_opt(deadline) => {
                    self.on_timer().await;
                    continue;
                }
            };
            let Some(command) = command else { break };
            running = self.handle(command).await;
            // Take whatever else is waiting before looking at the queue again: a burst of
            // sends is one look, not one per message, and an exit is never stuck behind it.
            while running {
                match commands.try_recv() {
                    Ok(command) => running = self.handle(command).await,
                    Err(_) => break,
                }
            }
        }
        self.engine.actor_finished(&self.id);
    }

    fn add_wait(&mut self, wait: Wait) {
        let left = (wait.deadline.0 - Timestamp::now().0).max(0) as u64;
        let due = Instant::now() + Duration::from_millis(left);
        self.waits.push((wait, due));
    }

    fn next_deadline(&self) -> Option<Instant> {
        let wait_deadline = self.waits.iter().map(|(_, due)| *due).min();
        let idle_deadline = match (self.status, self.idle_since, self.idle_notified) {
            (SessionStatus::Idle, Some(since), false) => {
                Some(since + self.inner().config.idle_timeout)
            }
            _ => None,
        };
        [
            self.screen_check_at,
            self.retry_at,
            wait_deadline,
            idle_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Returns false when the actor should stop.
    async fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Kick => self.queue_dirty = true,
            Command::Activity => {
                self.last_activity = Instant::now();
                if self.screen_check_at.is_none() {
                    self.screen_check_at = Some(Instant::now() + SCREEN_CHECK_DELAY);
                }
            }
            Command::Hook(event) => self.on_hook(event).await,
            Command::WaitAdded(wait) => self.add_wait(wait),
            Command::Clear(reply) => {
                let result = self.clear().await;
                let _ = reply.send(result);
            }
            Command::Answer { option, reply } => {
                let result = self.answer(option).await;
                let _ = reply.send(result);
            }
            Command::Killing(reason) => {
                self.killing = true;
                self.kill_reason = reason;
            }
            Command::Exited { status, reason } => {
                self.on_exit(status, reason).await;
                return false;
            }
            Command::CheckAlive => {
                if !self
                    .inner()
                    .backend
                    .is_alive(&self.id)
                    .await
                    .unwrap_or(true)
                {
                    self.on_exit(None, "the agent's terminal closed".into())
                        .await;
                    return false;
                }
                self.screen_check_at = Some(Instant::now());
            }
            Command::Recover => self.recover().await,
            Command::Shutdown => return false,
        }
        true
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.screen_check_at.is_some_and(|t| now >= t) {
            self.screen_check_at = None;
            self.check_screen().await;
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.queue_dirty = true;
        }
        let expired: Vec<Wait> = self
            .waits
            .iter()
            .filter(|(_, due)| *due <= now)
            .map(|(w, _)| w.clone())
            .collect();
        if !expired.is_empty() {
            let (name, status) = (display_name(&self.session), self.status);
            self.fire_waits(expired, WaitOutcome::Timeout, |waits, _| {
                let secs = waits
                    .iter()
                    .map(|w| (w.deadline.0 - w.created_at.0).max(0) / 1000)
                    .max()
                    .unwrap_or(0);
                format!("[sm] wait on {name} timed out after {secs}s; it is still {status}.")
            })
            .await;
        }
        if self.status == SessionStatus::Idle && !self.idle_notified {
            if let Some(since) = self.idle_since {
                let idle_for = now.duration_since(since);
                if idle_for >= self.inner().config.idle_timeout {
                    self.idle_notified = true;
                    if self.waits.is_empty() {
                        self.tell_parent(
                            self.inner().config.parent_notify.notify_parent_on_idle,
                            format!(
                                "[sm] child {} has been idle for {}s.",
                                display_name(&self.session),
                                idle_for.as_secs()
                            ),
                        )
                        .await;
                        self.record(EventKind::IdleTimeout {
                            idle_secs: idle_for.as_secs(),
                        })
                        .await;
                        self.notify(NotificationKind::IdleTimeout {
                            idle_secs: idle_for.as_secs(),
                        });
                    }
                }
            }
        }
    }

    // ----- status -----

    async fn set_status(&mut self, status: SessionStatus) {
        if status == self.status {
            return;
        }
        let from = self.status;
        tracing::debug!(session = %self.id, %from, to = %status, "status");
        match self.inner().store.set_status(&self.id, status).await {
            Ok(updated) => self.session = updated,
            Err(e) => tracing::warn!(session = %self.id, error = %e, "cannot store status"),
        }
        self.status = status;
        if status == SessionStatus::Working {
            self.turn_reported = false;
        }
        let _ = self.status_tx.send(status);
        self.record(EventKind::StatusChanged { from, to: status })
            .await;
        match status {
            SessionStatus::Idle => {
                self.idle_since = Some(Instant::now());
                self.idle_notified = false;
                self.queue_dirty = true;
            }
            SessionStatus::Working => {
                self.idle_since = None;
            }
            _ => {}
        }
    }

    async fn turn_started(&mut self) {
        self.turn_seen_working = true;
        if matches!(self.status, SessionStatus::Idle | SessionStatus::NeedsInput) {
            self.set_status(SessionStatus::Working).await;
        }
    }

    /// A turn ended (Stop hook, or the screen after an interrupt).
    async fn turn_ended(&mut self, last_message: Option<String>, from_hook: bool) {
        self.turn_seen_working = false;
        let was_busy = matches!(
            self.status,
            SessionStatus::Working | SessionStatus::NeedsInput | SessionStatus::Starting
        );
        self.set_status(SessionStatus::Idle).await;
        match self
            .inner()
            .store
            .release_locks_of(&self.id, Some(LockKind::Auto))
            .await
        {
            Ok(released) => self.engine.after_release(&self.id, &released).await,
            Err(e) => tracing::warn!(session = %self.id, error = %e, "cannot release auto-locks"),
        }
        if (from_hook || was_busy) && !std::mem::replace(&mut self.turn_reported, true) {
            if self.finished_turns.len() >= TURNS_REMEMBERED {
                self.finished_turns.pop_front();
            }
            self.finished_turns
                .push_back((Timestamp::now(), last_message.clone()));
            self.notify(NotificationKind::TurnCompleted {
                last_message: last_message.clone(),
            });
            self.record(EventKind::TurnCompleted {
                last_message: last_message.clone(),
            })
            .await;
            let summary = last_message
                .as_deref()
                .map(|m| format!(" Last message: {}", m.chars().take(300).collect::<String>()))
                .unwrap_or_default();
            self.tell_parent(
                self.inner().config.parent_notify.notify_parent_on_complete,
                format!(
                    "[sm] child {} completed its turn.{summary}",
                    display_name(&self.session)
                ),
            )
            .await;
        }
        if let Some(m) = last_message {
            self.last_message = Some(m);
        }
    }

    /// Appends an event about this session to the log (and publishes it).
    async fn record(&self, kind: EventKind) {
        record(self.inner(), Some(&self.id), kind).await;
    }

    /// Tells the notifiers about this session.
    fn notify(&self, kind: NotificationKind) {
        notify(
            self.inner(),
            Notification {
                session: self.id.clone(),
                name: self.session.name.clone(),
                kind,
            },
        );
    }

    /// Messages the parent about this child, when the configuration asks for it.
    async fn tell_parent(&self, wanted: bool, text: String) {
        let Some(parent) = self.session.parent.clone() else {
            return;
        };
        if !wanted {
            return;
        }
        let _ = self
            .engine
            .enqueue(None, &parent, text, DeliveryMode::Important)
            .await;
    }

    async fn needs_input(&mut self, prompt: Option<String>, options: Vec<String>) {
        if self.status == SessionStatus::NeedsInput {
            return;
        }
        self.set_status(SessionStatus::NeedsInput).await;
        self.record(EventKind::NeedsInput {
            prompt: prompt.clone(),
        })
        .await;
        self.notify(NotificationKind::NeedsInput { prompt, options });
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    // ----- hooks and screen -----

    async fn on_hook(&mut self, event: HookEvent) {
        tracing::debug!(session = %self.id, event = %event.event, "hook");
        let field = |k: &str| {
            event
                .payload
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        match event.event.as_str() {
            "SessionStart" if self.status == SessionStatus::Starting => {
                // The hook fires before the TUI takes keys: let the screen confirm.
                if self.profile.verifiable() {
                    self.screen_check_at = Some(Instant::now() + SCREEN_CHECK_DELAY);
                } else {
                    self.set_status(SessionStatus::Idle).await;
                }
            }
            "PreToolUse" | "PostToolUse" | "PostToolUseFailure" => {
                let tool = field("tool_name").unwrap_or_else(|| "?".into());
                let input = &event.payload["tool_input"];
                let target = [
                    "file_path",
                    "notebook_path",
                    "command",
                    "path",
                    "pattern",
                    "url",
                ]
                .iter()
                .find_map(|k| input.get(*k).and_then(|v| v.as_str()))
                .map(|t| t.chars().take(200).collect::<String>());
                let phase = if event.event == "PreToolUse" {
                    "pre"
                } else {
                    "post"
                };
                self.record(EventKind::ToolUse {
                    tool,
                    phase: phase.into(),
                    target,
                })
                .await;
                self.turn_started().await;
            }
            "SubagentStart" | "SubagentStop" => {
                self.record(EventKind::Subagent {
                    agent_id: field("agent_id").unwrap_or_else(|| "?".into()),
                    agent_type: field("agent_type"),
                    running: event.event == "SubagentStart",
                })
                .await;
                if event.event == "SubagentStart" {
                    self.turn_started().await;
                }
            }
            "UserPromptSubmit" => self.turn_started().await,
            "Notification" => {
                let kind = field("notification_type").unwrap_or_default();
                let message = field("message").unwrap_or_default();
                if kind == "permission_prompt" || message.contains("permission") {
                    let (question, options) = match self.screen().await {
                        Ok(ScreenState::Permission { question, options }) => {
                            (Some(question), options)
                        }
                        _ => (Some(message), Vec::new()),
                    };
                    self.needs_input(question, options).await;
                }
            }
            "Stop" => {
                self.stopped_at = Some(Instant::now());
                let last = field("last_assistant_message");
                self.turn_ended(last, true).await;
            }
            "SessionEnd" if field("reason").as_deref() != Some("clear") => {
                self.session_ended = true;
                self.set_status(SessionStatus::Stopped).await;
            }
            _ => {}
        }
    }

    async fn screen(&self) -> Result<ScreenState> {
        let rows = self.inner().backend.capture_screen(&self.id).await?;
        Ok(self.profile.read_screen(&rows))
    }

    /// The screen fallback, run after output activity settles.
    async fn check_screen(&mut self) {
        let Ok(state) = self.screen().await else {
            return;
        };
        match (self.status, state) {
            (SessionStatus::Starting, ScreenState::Ready { .. }) => {
                // Keys sent the moment the prompt appears can be lost: ready once the
                // screen has been quiet for a moment.
                let quiet_for = self.last_activity.elapsed();
                if quiet_for >= QUIET_BEFORE_IDLE {
                    self.set_status(SessionStatus::Idle).await;
                } else {
                    self.screen_check_at = Some(Instant::now() + (QUIET_BEFORE_IDLE - quiet_for));
                }
            }
            (SessionStatus::Starting, _) => {}
            (_, ScreenState::Permission { question, options }) => {
                self.needs_input(Some(question), options).await;
            }
            (SessionStatus::Idle | SessionStatus::NeedsInput, ScreenState::Working { .. }) => {
                // Right after a Stop hook the working footer may still be on screen.
                let just_stopped = self.stopped_at.is_some_and(|t| t.elapsed() < STOP_GRACE);
                if just_stopped {
                    self.screen_check_at = Some(Instant::now() + SCREEN_CHECK_DELAY);
                } else {
                    self.turn_started().await;
                }
            }
            (SessionStatus::Working, ScreenState::Working { .. }) => {
                self.turn_seen_working = true;
            }
            (SessionStatus::NeedsInput, ScreenState::Ready { .. }) => {
                // The question was answered and the turn went on or ended: let the next
                // screen check or hook decide.
                self.turn_seen_working = true;
                self.set_status(SessionStatus::Working).await;
                self.screen_check_at = Some(Instant::now() + QUIET_BEFORE_IDLE);
            }
            (SessionStatus::Working, ScreenState::Ready { .. })
                if self.turn_seen_working || !self.profile.reports_hooks() =>
            {
                // A turn that ended without a Stop hook (interrupted with Escape, or an agent
                // without hooks). Only once output has been quiet for a moment.
                let quiet_for = self.last_activity.elapsed();
                if quiet_for >= QUIET_BEFORE_IDLE {
                    // Without a Stop hook, the answer is the last `⏺` line on screen.
                    let last = self
                        .inner()
                        .backend
                        .capture_screen(&self.id)
                        .await
                        .ok()
                        .and_then(|rows| {
                            rows.iter().rev().find_map(|r| {
                                // The fake agent marks answers with ⏺, Claude Code with ●.
                                r.strip_prefix("⏺ ")
                                    .or_else(|| r.strip_prefix("● "))
                                    .map(str::to_string)
                            })
                        });
                    self.last_message = None;
                    self.turn_ended(last, false).await;
                } else {
                    self.screen_check_at = Some(Instant::now() + (QUIET_BEFORE_IDLE - quiet_for));
                }
            }
            _ => {}
        }
    }

    // ----- waits -----

    async fn fire_waits_if_idle(&mut self) {
        if self.status != SessionStatus::Idle || self.waits.is_empty() || self.queue_dirty {
            return;
        }
        match pending_for(self.inner().store.as_ref(), &self.id).await {
            Ok(false) => {}
            _ => return,
        }
        let waits: Vec<Wait> = self.waits.iter().map(|(w, _)| w.clone()).collect();
        let (name, last) = (display_name(&self.session), self.last_message.clone());
        self.fire_waits(waits, WaitOutcome::Idle, |_, turns| {
            idle_wake_text(&name, last.as_deref(), turns)
        })
        .await;
    }

    /// The turns finished at or after `since`, oldest first.
    fn turns_since(&self, since: Timestamp) -> Vec<String> {
        self.finished_turns
            .iter()
            .filter(|(at, _)| at.0 >= since.0)
            .map(|(_, m)| m.clone().unwrap_or_else(|| "(no message)".into()))
            .collect()
    }

    /// Fires `waits` with `outcome`: each is removed and recorded, and each waiter gets
    /// one message, however many of its waits fired together (two waits of one EM on one
    /// target never wake it twice). `text_for` words that message from the waiter's waits
    /// and the turns the target finished since the earliest of them.
    async fn fire_waits(
        &mut self,
        waits: Vec<Wait>,
        outcome: WaitOutcome,
        text_for: impl Fn(&[Wait], &[String]) -> String,
    ) {
        for (waiter, group) in group_by(waits, |w| w.waiter.clone()) {
            let since = group
                .iter()
                .map(|w| w.created_at)
                .min_by_key(|t| t.0)
                .unwrap_or_else(Timestamp::now);
            let turns = self.turns_since(since);
            let text = text_for(&group, &turns);
            for wait in &group {
                self.waits.retain(|(w, _)| w.id != wait.id);
                if let Err(e) = self.inner().store.remove_wait(wait.id).await {
                    tracing::warn!(error = %e, "cannot remove a wait");
                }
                self.record(EventKind::WaitFired {
                    wait: wait.id,
                    waiter: wait.waiter.clone(),
                    outcome,
                    text: text.clone(),
                    last_message: self.last_message.clone(),
                    turns: turns.clone(),
                })
                .await;
            }
            if let Some(waiter) = &waiter {
                if let Err(e) = self
                    .engine
                    .enqueue(None, waiter, text, DeliveryMode::Important)
                    .await
                {
                    tracing::info!(waiter = %waiter, error = %e, "cannot wake a waiter");
                }
            }
        }
    }

    // ----- delivery -----

    fn deliverable_modes(&self) -> &'static [DeliveryMode] {
        match self.status {
            SessionStatus::Idle => &DeliveryMode::BY_PRIORITY,
            SessionStatus::Working => &[DeliveryMode::Urgent],
            _ => &[],
        }
    }

    async fn deliver_next(&mut self) -> Outcome {
        let modes = self.deliverable_modes();
        if modes.is_empty() {
            return Outcome::Nothing;
        }
        let store = self.inner().store.clone();
        let next_mode = match store.peek_next(&self.id, modes).await {
            Ok(Some(next)) => next.mode,
            Ok(None) => return Outcome::Nothing,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "cannot read the queue");
                return Outcome::Blocked;
            }
        };
        // Look before typing: claim only when the agent can take it.
        if !self.ready_for(next_mode).await {
            return Outcome::Blocked;
        }
        let message = match store.claim_next(&self.id, &[next_mode]).await {
            Ok(Some(m)) => m,
            Ok(None) => return Outcome::Nothing,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "cannot claim");
                return Outcome::Blocked;
            }
        };
        let attempt = match self.deliver(&message).await {
            Ok(a) => a,
            Err(e) => Attempt::Retry(format!("terminal error: {e}")),
        };
        match attempt {
            Attempt::Delivered => {
                // Working first: a message seen delivered never sits beside a stale idle.
                if self.profile.verifiable() {
                    self.turn_started().await;
                }
                if let Err(e) = store.mark_delivered(message.id).await {
                    tracing::error!(message = %message.id, error = %e, "cannot mark delivered");
                }
                self.record(EventKind::MessageDelivered {
                    message: message.id,
                })
                .await;
                self.screen_check_at = Some(Instant::now() + SCREEN_CHECK_DELAY);
                Outcome::Progress
            }
            Attempt::Retry(reason) if message.attempts >= MAX_ATTEMPTS => {
                let reason = format!("gave up after {} attempts: {reason}", message.attempts);
                self.fail_message(&message, &reason).await;
                Outcome::Progress
            }
            Attempt::Retry(reason) => {
                tracing::info!(session = %self.id, message = %message.id, %reason, "delivery postponed");
                if let Err(e) = store.requeue(message.id, &reason).await {
                    tracing::error!(message = %message.id, error = %e, "cannot requeue");
                }
                Outcome::Blocked
            }
            Attempt::Fail(reason) => {
                self.fail_message(&message, &reason).await;
                Outcome::Progress
            }
        }
    }

    async fn fail_message(&mut self, message: &Message, reason: &str) {
        if let Err(e) = self.inner().store.mark_failed(message.id, reason).await {
            tracing::error!(message = %message.id, error = %e, "cannot mark failed");
        }
        self.record(EventKind::MessageFailed {
            message: message.id,
            reason: reason.to_string(),
        })
        .await;
        self.tell_sender(message, reason).await;
    }

    async fn tell_sender(&self, message: &Message, reason: &str) {
        let Some(sender) = &message.sender else {
            return;
        };
        if sender == &self.id {
            return;
        }
        let preview: String = message.text.chars().take(60).collect();
        let text = format!(
            "[sm] your message #{} to {} was not delivered: {reason}. It began: {preview}",
            message.id,
            display_name(&self.session)
        );
        let _ = self
            .engine
            .enqueue(None, sender, text, DeliveryMode::Important)
            .await;
    }

    /// Whether the agent can take a message of `mode` right now, judging by its screen.
    async fn ready_for(&mut self, mode: DeliveryMode) -> bool {
        if !self.profile.verifiable() {
            return true;
        }
        let Ok(state) = self.screen().await else {
            return false;
        };
        match state {
            ScreenState::Ready { input } if input.is_empty() => {
                self.foreign_input = None;
                true
            }
            // sm's own text that showed up late: it was never submitted and its message is
            // queued again, so take it back.
            ScreenState::Ready { input }
                if self.unlanded.as_deref().is_some_and(|t| landed(&input, t)) =>
            {
                self.unlanded = None;
                matches!(self.empty_input_box().await, Ok(true))
            }
            // Text sm did not type (a person's, or a prompt restored by an interrupt): never
            // merge a message into it. Wait until it is submitted, or cleared once stale.
            ScreenState::Ready { input } => self.stale_input_cleared(input).await,
            ScreenState::Working { input } => {
                // Just after a Stop hook, the terminal may not have drawn the finished turn
                // yet: look again in a moment rather than take it for a new turn.
                let just_stopped = self.stopped_at.is_some_and(|t| t.elapsed() < STOP_GRACE);
                if self.status == SessionStatus::Idle && just_stopped {
                    self.retry_soon = true;
                    return false;
                }
                if self.status == SessionStatus::Idle {
                    self.turn_started().await;
                }
                if mode != DeliveryMode::Urgent {
                    return false;
                }
                match input {
                    // Someone is typing while the agent works: an interrupt would mix their
                    // text with the message. Hold back and say so.
                    Some(text) if !text.is_empty() => {
                        self.note_foreign_input(&text, "an urgent message waits")
                            .await;
                        false
                    }
                    _ => true,
                }
            }
            ScreenState::Permission { question, options } => {
                self.needs_input(Some(question), options).await;
                false
            }
            ScreenState::Other => false,
        }
    }

    /// Records (once per distinct text) that foreign text blocks delivery.
    async fn note_foreign_input(&mut self, text: &str, consequence: &str) {
        let changed = self.foreign_input.as_ref().is_none_or(|(t, _)| t != text);
        if changed {
            self.foreign_input = Some((text.to_string(), Instant::now()));
            let preview: String = text.chars().take(80).collect();
            self.record(EventKind::NeedsAttention {
                reason: format!(
                    "the input box holds text sm did not type ({preview:?}); {consequence}"
                ),
            })
            .await;
        }
    }

    /// Tracks foreign text in an idle agent's box; clears it once it has sat unchanged for
    /// `input_stale_timeout` (recording what it was) and reports whether delivery may go on.
    async fn stale_input_cleared(&mut self, text: String) -> bool {
        self.note_foreign_input(&text, "delivery waits until it is submitted")
            .await;
        let stale_after = self.inner().config.input_stale_timeout;
        let since = self
            .foreign_input
            .as_ref()
            .map(|(_, t)| *t)
            .unwrap_or_else(Instant::now);
        if since.elapsed() < stale_after {
            return false;
        }
        match self.empty_input_box().await {
            Ok(true) => {
                self.record(EventKind::Note {
                    text: format!(
                        "cleared text left unchanged in the input box for {}s: {text:?}",
                        stale_after.as_secs()
                    ),
                })
                .await;
                self.foreign_input = None;
                true
            }
            _ => false,
        }
    }

    async fn wait_for_screen(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&ScreenState) -> bool,
    ) -> Option<ScreenState> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(state) = self.screen().await {
                if pred(&state) {
                    return Some(state);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(VERIFY_POLL).await;
        }
    }

    async fn key(&self, key: Key) -> Result<()> {
        self.inner().backend.send_key(&self.id, key).await
    }

    /// Empties the input box with Ctrl-U (one line per press), verified.
    async fn empty_input_box(&self) -> Result<bool> {
        for _ in 0..50 {
            match self.screen().await? {
                ScreenState::Ready { input } | ScreenState::Working { input: Some(input) }
                    if input.is_empty() =>
                {
                    return Ok(true);
                }
                ScreenState::Ready { .. } | ScreenState::Working { input: Some(_) } => {
                    self.key(Key::CtrlU).await?;
                    tokio::time::sleep(VERIFY_POLL).await;
                }
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    async fn deliver(&mut self, message: &Message) -> Result<Attempt> {
        let config = self.inner().config.clone();
        let backend = self.inner().backend.clone();
        if !self.profile.verifiable() {
            backend.send_text(&self.id, &message.text).await?;
            self.key(Key::Enter).await?;
            return Ok(Attempt::Delivered);
        }
        // Interrupt only a turn that is really running: the status says so (hooks) and the
        // screen agrees. An Escape to an idle agent is at best wasted and can eat the next key.
        if message.mode == DeliveryMode::Urgent
            && self.status == SessionStatus::Working
            && matches!(self.screen().await?, ScreenState::Working { .. })
        {
            // Interrupt once, then wait for the prompt: never two quick Escapes.
            tracing::debug!(session = %self.id, message = %message.id, "interrupting the running turn");
            self.key(Key::Escape).await?;
            // A key that follows Escape too closely is read as an Alt chord and lost: give
            // the agent a moment to take the Escape as a key of its own.
            tokio::time::sleep(ESCAPE_GAP).await;
            let settled = self
                .wait_for_screen(config.settle_timeout, |s| {
                    matches!(s, ScreenState::Ready { .. })
                })
                .await;
            if settled.is_none() {
                return Ok(Attempt::Retry(
                    "the agent did not settle after an interrupt".into(),
                ));
            }
            // An interrupt can put the interrupted prompt back into the box. Empty it only
            // when it is that prompt (sm's own text), never a person's.
            if let Some(ScreenState::Ready { input }) = &settled {
                let (now, typed) = (normalize(input), self.last_typed.as_deref().map(normalize));
                let ours = typed.is_some_and(|t| t.starts_with(&now) || now.starts_with(&t));
                if !input.is_empty() && !ours {
                    let text = input.clone();
                    self.note_foreign_input(&text, "the urgent message waits")
                        .await;
                    return Ok(Attempt::Retry(
                        "the input box holds someone's text after the interrupt".into(),
                    ));
                }
            }
            if !self.empty_input_box().await? {
                return Ok(Attempt::Retry(
                    "could not empty the input box after an interrupt".into(),
                ));
            }
            if !config.urgent_delay.is_zero() {
                tokio::time::sleep(config.urgent_delay).await;
            }
            self.turn_seen_working = false;
        }
        match self.screen().await? {
            ScreenState::Ready { input } if input.is_empty() => {}
            ScreenState::Ready { .. } => {
                return Ok(Attempt::Retry(
                    "the input box holds text sm did not type".into(),
                ));
            }
            _ => return Ok(Attempt::Retry("the agent is not at its prompt".into())),
        }
        backend.send_text(&self.id, &message.text).await?;
        let text = message.text.clone();
        let shown = self
            .wait_for_screen(
                config.verify_timeout,
                |s| matches!(s, ScreenState::Ready { input } if landed(input, &text)),
            )
            .await;
        if shown.is_none() {
            let seen = self.screen().await.ok();
            tracing::info!(session = %self.id, screen = ?seen, "typed text did not show up");
            // Nothing was submitted; take back whatever landed and try again later.
            self.unlanded = Some(message.text.clone());
            let _ = self.empty_input_box().await;
            return Ok(Attempt::Retry(
                "the text did not appear in the input box".into(),
            ));
        }
        self.last_typed = Some(message.text.clone());
        for press in 0..2 {
            self.key(Key::Enter).await?;
            // An agent takes Enter in milliseconds; a lost Enter is pressed again soon.
            let patience = if press == 0 {
                config.verify_timeout.min(SUBMIT_PATIENCE)
            } else {
                config.verify_timeout
            };
            let taken = self
                .wait_for_screen(patience, |s| submitted(s, &text))
                .await;
            if taken.is_some() {
                return Ok(Attempt::Delivered);
            }
            tracing::info!(session = %self.id, press, "submit not seen; pressing Enter again");
        }
        let _ = self.empty_input_box().await;
        Ok(Attempt::Fail(
            "the agent did not take the message after Enter was pressed twice".into(),
        ))
    }

    // ----- clear -----

    async fn clear(&mut self) -> Result<()> {
        let Some(command) = self.profile.clear_command().map(str::to_string) else {
            return Err(Error::NotSupported(format!(
                "{} agents have no clear command",
                self.session.agent
            )));
        };
        if self.status != SessionStatus::Idle {
            return Err(Error::InvalidInput(format!(
                "session {} is {}; clear it when it is idle",
                display_name(&self.session),
                self.status
            )));
        }
        let config = self.inner().config.clone();
        if !matches!(self.screen().await?, ScreenState::Ready { input } if input.is_empty()) {
            return Err(Error::InvalidInput(
                "the agent's input box is not empty; not clearing over someone's typing".into(),
            ));
        }
        self.inner().backend.send_text(&self.id, &command).await?;
        let cmd = command.clone();
        if self
            .wait_for_screen(
                config.verify_timeout,
                |s| matches!(s, ScreenState::Ready { input } if input.trim() == cmd),
            )
            .await
            .is_none()
        {
            let _ = self.empty_input_box().await;
            return Err(Error::backend_msg(
                "the clear command did not appear on screen",
            ));
        }
        self.key(Key::Enter).await?;
        let done = self
            .wait_for_screen(
                config.verify_timeout,
                |s| matches!(s, ScreenState::Ready { input } if input.is_empty()),
            )
            .await;
        if done.is_none() {
            return Err(Error::backend_msg("the agent did not confirm the clear"));
        }
        self.last_message = None;
        self.record(EventKind::Note {
            text: "context cleared".into(),
        })
        .await;
        Ok(())
    }

    /// Answers the question (permission prompt) on screen with its option `option`, by the
    /// option's number key, and checks that the question went away.
    async fn answer(&mut self, option: usize) -> Result<String> {
        let ScreenState::Permission { question, options } = self.screen().await? else {
            return Err(Error::InvalidInput(format!(
                "session {} is not asking anything now",
                display_name(&self.session)
            )));
        };
        let Some(label) = options.get(option).cloned() else {
            return Err(Error::InvalidInput(format!(
                "there is no option {} (the question offers {})",
                option + 1,
                options.len()
            )));
        };
        if option >= 9 {
            return Err(Error::NotSupported(
                "only the first nine options can be chosen by key".into(),
            ));
        }
        self.inner()
            .backend
            .send_text(&self.id, &(option + 1).to_string())
            .await?;
        let asked = question.clone();
        let gone = self
            .wait_for_screen(
                self.inner().config.verify_timeout,
                |s| !matches!(s, ScreenState::Permission { question, .. } if *question == asked),
            )
            .await;
        if gone.is_none() {
            return Err(Error::backend_msg(
                "the answer did not take: the question is still on screen",
            ));
        }
        self.record(EventKind::Note {
            text: format!("answered {question:?}: {label}"),
        })
        .await;
        // The agent carries on with its turn; the screen check that follows its output sets
        // the status.
        self.turn_started().await;
        Ok(label)
    }

    // ----- exit and recovery -----

    async fn on_exit(&mut self, status: Option<i32>, reason: String) {
        let reason = match (&self.kill_reason, self.killing) {
            (Some(why), _) => why.clone(),
            (None, true) => "killed".to_string(),
            (None, false) => reason,
        };
        let final_status = if self.session_ended || (status == Some(0) && !self.killing) {
            SessionStatus::Stopped
        } else {
            SessionStatus::Dead
        };
        let store = self.inner().store.clone();
        // The session ends first, with its reason: from here on nothing new is accepted for
        // it, and whoever asked for the kill sees it dead.
        if self.status.is_live() {
            let from = self.status;
            match store.end_session(&self.id, final_status, &reason).await {
                Ok(updated) => self.session = updated,
                Err(e) => tracing::warn!(session = %self.id, error = %e, "cannot store the end"),
            }
            self.status = final_status;
            let _ = self.status_tx.send(final_status);
            self.record(EventKind::StatusChanged {
                from,
                to: final_status,
            })
            .await;
        }
        // Then the whole queue in one transaction, one batch of events, and one notice per
        // sender however many of its messages were left.
        let failure = format!("session ended: {reason}");
        match store.fail_pending(&self.id, &failure).await {
            Ok(failed) if !failed.is_empty() => {
                let events = failed
                    .iter()
                    .map(|m| EventKind::MessageFailed {
                        message: m.id,
                        reason: reason.clone(),
                    })
                    .collect();
                super::record_all(self.inner(), Some(&self.id), events).await;
                self.tell_senders(&failed, &failure).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(session = %self.id, error = %e, "cannot fail pending messages")
            }
        }
        match store.release_locks_of(&self.id, None).await {
            Ok(released) => self.engine.after_release(&self.id, &released).await,
            Err(e) => tracing::error!(session = %self.id, error = %e, "cannot release locks"),
        }
        let text = format!("[sm] {} ended ({reason}).", display_name(&self.session));
        let waits: Vec<Wait> = std::mem::take(&mut self.waits)
            .into_iter()
            .map(|(w, _)| w)
            .collect();
        self.fire_waits(waits, WaitOutcome::Ended, |_, _| text.clone())
            .await;
        // A session that never started is no death to report: its spawner either repeats
        // the spawn (which starts it anew) or already heard its request fail.
        if final_status == SessionStatus::Dead && !self.killing && reason != super::NEVER_STARTED {
            self.tell_parent(
                self.inner().config.parent_notify.notify_parent_on_error,
                format!("[sm] child {} died: {reason}.", display_name(&self.session)),
            )
            .await;
            self.record(EventKind::Error {
                message: reason.clone(),
            })
            .await;
            self.notify(NotificationKind::Error { message: reason });
        }
    }

    /// Tells each sender of `failed` (other than this session) once that its messages were
    /// not delivered, naming how many and how the first began.
    async fn tell_senders(&self, failed: &[Message], reason: &str) {
        let told = failed
            .iter()
            .filter(|m| m.sender.as_ref().is_some_and(|s| s != &self.id));
        for (sender, list) in group_by(told, |m| m.sender.clone()) {
            let Some(sender) = sender else { continue };
            if let [one] = list.as_slice() {
                self.tell_sender(one, reason).await;
                continue;
            }
            let preview: String = list[0].text.chars().take(60).collect();
            let text = format!(
                "[sm] {} of your messages to {} (#{} to #{}) were not delivered: {reason}. \
                 The first began: {preview}",
                list.len(),
                display_name(&self.session),
                list[0].id,
                list[list.len() - 1].id,
            );
            let _ = self
                .engine
                .enqueue(None, &sender, text, DeliveryMode::Important)
                .await;
        }
    }

    /// After a restart: settle messages caught mid-delivery (never typing one twice), then
    /// take the status from the screen.
    async fn recover(&mut self) {
        let store = self.inner().store.clone();
        let delivering = store
            .list_messages(&MessageFilter {
                target: Some(self.id.clone()),
                states: vec![MessageState::Delivering],
                limit: 0,
            })
            .await
            .unwrap_or_default();
        // Read once for all of them, and only when something needs settling.
        let events = if delivering.is_empty() {
            Vec::new()
        } else {
            store
                .events(None, Some(&self.id), 0)
                .await
                .unwrap_or_default()
        };
        let transcript = super::what::last_transcript_path(&events);
        for message in delivering {
            let outcome = self
                .settle_interrupted(&message, transcript.as_deref(), &events)
                .await;
            match outcome {
                Attempt::Delivered => {
                    let _ = store.mark_delivered(message.id).await;
                    self.record(EventKind::MessageDelivered {
                        message: message.id,
                    })
                    .await;
                    self.turn_seen_working = true;
                }
                Attempt::Retry(reason) => {
                    let _ = store.requeue(message.id, &reason).await;
                }
                Attempt::Fail(reason) => self.fail_message(&message, &reason).await,
            }
        }
        if let Ok(state) = self.screen().await {
            match state {
                ScreenState::Ready { .. } => {
                    if self.status != SessionStatus::Idle {
                        // A Stop may have been lost while sm was down.
                        self.turn_ended(None, false).await;
                    }
                }
                ScreenState::Working { .. } => self.turn_started().await,
                ScreenState::Permission { question, options } => {
                    self.needs_input(Some(question), options).await
                }
                ScreenState::Other => {}
            }
        }
        self.queue_dirty = true;
    }

    /// Decides what became of a message that was being typed when sm stopped. Delivered on
    /// any positive sign (a turn running, the prompt hook recorded, a transcript entry, the
    /// echo on screen); put back only when every sign is negative after the agent has had
    /// time to write its transcript (Claude Code appends the entry a few hundred ms after
    /// the submit); failed with a clear reason when it stays unclear — never typed twice.
    async fn settle_interrupted(
        &mut self,
        message: &Message,
        transcript: Option<&std::path::Path>,
        events: &[crate::types::Event],
    ) -> Attempt {
        let claimed_at = message.updated_at.0 - 1000;
        if super::what::log_has_prompt(events, &message.text, claimed_at) {
            return Attempt::Delivered;
        }
        let settle_left = (message.updated_at.0 + RECOVERY_SETTLE.as_millis() as i64
            - Timestamp::now().0)
            .max(0) as u64;
        let deadline = Instant::now() + Duration::from_millis(settle_left);
        let (mut state, mut in_transcript);
        loop {
            state = self.screen().await.ok();
            match &state {
                Some(ScreenState::Ready { input })
                    if !input.is_empty() && landed(input, &message.text) =>
                {
                    return self.submit_left_over(message).await;
                }
                // Typed in part when sm stopped: never submitted. Take it back.
                Some(ScreenState::Ready { input })
                    if !input.is_empty()
                        && normalize(&message.text).starts_with(&normalize(input)) =>
                {
                    if matches!(self.empty_input_box().await, Ok(true)) {
                        return Attempt::Retry(
                            "it was typed only in part before the restart".into(),
                        );
                    }
                    return Attempt::Fail(MAYBE_DELIVERED.into());
                }
                // A turn runs or asks something: the agent took the prompt (it was idle
                // when the message was claimed, and only sm types into it). Not so for an
                // urgent message, claimed while a turn ran: the transcript decides.
                Some(ScreenState::Working { .. } | ScreenState::Permission { .. })
                    if message.mode != DeliveryMode::Urgent =>
                {
                    return Attempt::Delivered;
                }
                _ => {}
            }
            in_transcript = match transcript.map(std::path::Path::to_path_buf) {
                Some(path) => {
                    let text = message.text.clone();
                    tokio::task::spawn_blocking(move || {
                        super::what::transcript_has_prompt(&path, &text, claimed_at)
                    })
                    .await
                    .ok()
                    .flatten()
                }
                None => None,
            };
            if in_transcript == Some(true) {
                return Attempt::Delivered;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(RECOVERY_POLL).await;
        }
        // The transcript is the record of what the agent took; its absence after the
        // settle time is a negative.
        if in_transcript == Some(false) {
            return Attempt::Retry("it never reached the agent before the restart".into());
        }
        let ready_and_empty =
            matches!(&state, Some(ScreenState::Ready { input }) if input.is_empty());
        if !ready_and_empty {
            return Attempt::Fail(MAYBE_DELIVERED.into());
        }
        // No readable transcript: the screen's echo of submitted prompts is the fallback.
        let tail = self
            .inner()
            .backend
            .capture_tail(&self.id, 500)
            .await
            .unwrap_or_default();
        let echoes: Vec<&String> = tail
            .iter()
            .filter(|l| self.profile.is_prompt_echo(l))
            .collect();
        let pasted = message.text.contains('\n') || message.text.chars().count() > 800;
        if pasted {
            if echoes.iter().any(|l| self.profile.is_paste_placeholder(l)) {
                return Attempt::Fail(MAYBE_DELIVERED.into());
            }
            return Attempt::Retry("it never reached the agent before the restart".into());
        }
        let first_line: String = message
            .text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(40)
            .collect();
        // The screen shows tabs as spaces and may re-space text: compare without whitespace.
        let first_line = normalize(&first_line);
        let echoed =
            !first_line.is_empty() && echoes.iter().any(|l| normalize(l).contains(&first_line));
        if echoed {
            Attempt::Delivered
        } else {
            Attempt::Retry("it never reached the agent before the restart".into())
        }
    }

    /// A message typed before a restart but never submitted: press Enter (twice at most).
    async fn submit_left_over(&mut self, message: &Message) -> Attempt {
        for _ in 0..2 {
            if self.key(Key::Enter).await.is_err() {
                break;
            }
            let text = message.text.clone();
            if self
                .wait_for_screen(self.inner().config.verify_timeout, |s| submitted(s, &text))
                .await
                .is_some()
            {
                return Attempt::Delivered;
            }
        }
        Attempt::Fail("could not submit a message typed before a restart".into())
    }
}
