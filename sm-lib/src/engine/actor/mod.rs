//! One actor per live session: the only code that types into its terminal or changes its
//! status. Commands (new messages, hook signals, output activity, waits, clear, exit)
//! arrive on a channel and are handled one at a time.
//!
//! The actor is glue: the turn rules are the pure state machine in [`super::turn`], whose
//! effects [`Actor::apply`] carries out; delivery, verified typing, recovery, control and
//! everything said to others each have their own module here.

mod control;
mod delivery;
mod outbox;
mod recovery;
mod typing;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::profile::AgentSignal;
use super::screen::ScreenState;
use super::turn::{Effect, Now, Rules, Turns};
use super::{AgentProfile, Engine};
use crate::error::Result;
use crate::notifier::NotificationKind;
use crate::types::{
    EventKind, LockKind, Session, SessionId, SessionStatus, Timestamp, Wait, WaitOutcome,
};

pub(crate) enum Command {
    /// Messages were queued.
    Kick,
    /// The terminal printed something.
    Activity,
    /// What the agent reported through a hook.
    Signal(AgentSignal),
    /// A wait on this session was registered.
    WaitAdded(Wait),
    /// Another node changed this session's queue or waits in the store: load the waits
    /// again and look at the queue.
    Refresh,
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

pub(crate) struct Actor {
    engine: Engine,
    id: SessionId,
    session: Session,
    profile: Arc<dyn AgentProfile>,
    status_tx: watch::Sender<SessionStatus>,
    /// Bumped on each output event of the terminal: verification waits on it.
    output: watch::Receiver<u64>,
    /// The turn state: status, turns, idle time. Changed only through its inputs.
    turns: Turns,
    /// Waits on this session, each with its deadline on the runtime's clock (the stored
    /// deadline is wall-clock; timers must follow tokio time).
    waits: Vec<(Wait, Instant)>,
    /// The queue may hold something deliverable: look before sleeping.
    queue_dirty: bool,
    /// A claim failed without saying whether it happened (the store's connection was
    /// lost): a message may sit claimed that nothing typed; settled before the next claim.
    claim_unsettled: bool,
    /// When a blocked delivery is tried again.
    retry_at: Option<Instant>,
    /// The last blocked delivery is worth retrying almost at once (a screen still settling).
    retry_soon: bool,
    /// The last blocked delivery met an idle agent whose screen was between states (mid
    /// redraw, the working footer not yet gone): try again on its next output rather than
    /// only when the retry timer fires.
    retry_on_output: bool,
    killing: bool,
    /// Why the session is being killed, when it is not a plain kill.
    kill_reason: Option<String>,
    /// Text in the input box that sm did not type, and since when it has been unchanged.
    foreign_input: Option<(String, Instant)>,
    /// The last message sm submitted, to recognise it when an interrupt restores it.
    last_typed: Option<String>,
    /// Text sm typed that had not shown up when it gave up waiting; if it appears later it
    /// is sm's own and is cleared at once (the message was put back in the queue).
    unlanded: Option<String>,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    pub(crate) fn new(
        engine: Engine,
        session: Session,
        profile: Arc<dyn AgentProfile>,
        status_tx: watch::Sender<SessionStatus>,
        output: watch::Receiver<u64>,
    ) -> Self {
        let rules = Rules {
            verifiable: profile.verifiable(),
            reports_hooks: profile.reports_hooks(),
            idle_timeout: engine.inner.config.idle_timeout,
        };
        Actor {
            id: session.id.clone(),
            turns: Turns::new(session.status, rules, Now::current()),
            engine,
            session,
            profile,
            status_tx,
            output,
            waits: Vec::new(),
            queue_dirty: true,
            claim_unsettled: false,
            retry_at: None,
            retry_soon: false,
            retry_on_output: false,
            killing: false,
            kill_reason: None,
            foreign_input: None,
            last_typed: None,
            unlanded: None,
        }
    }

    fn inner(&self) -> &super::Inner {
        &self.engine.inner
    }

    fn status(&self) -> SessionStatus {
        self.turns.status()
    }

    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        first: Option<Command>,
    ) {
        self.load_waits().await;
        let mut running = match first {
            Some(command) => self.handle(command).await,
            None => true,
        };
        while running {
            if self.queue_dirty {
                match self.deliver_next().await {
                    delivery::Outcome::Progress => continue,
                    delivery::Outcome::Nothing => self.queue_dirty = false,
                    delivery::Outcome::Blocked => {
                        self.queue_dirty = false;
                        let wait = if std::mem::take(&mut self.retry_soon) {
                            super::turn::SCREEN_CHECK_DELAY / 4
                        } else {
                            delivery::BLOCKED_RETRY
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

    /// Takes every stored wait on this session it does not know yet.
    async fn load_waits(&mut self) {
        match self.inner().store.list_waits(Some(&self.id)).await {
            Ok(waits) => {
                for w in waits {
                    self.add_wait(w);
                }
            }
            Err(e) => tracing::warn!(session = %self.id, error = %e, "cannot load waits"),
        }
    }

    /// Adds a wait, unless it is known already.
    fn add_wait(&mut self, wait: Wait) {
        if self.waits.iter().any(|(w, _)| w.id == wait.id) {
            return;
        }
        let left = (wait.deadline.0 - Timestamp::now().0).max(0) as u64;
        let due = Instant::now() + Duration::from_millis(left);
        self.waits.push((wait, due));
    }

    fn next_deadline(&self) -> Option<Instant> {
        let wait_deadline = self.waits.iter().map(|(_, due)| *due).min();
        [self.turns.next_deadline(), self.retry_at, wait_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Returns false when the actor should stop.
    async fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Kick => self.queue_dirty = true,
            Command::Activity => {
                self.turns.on_activity(Now::current());
                if std::mem::take(&mut self.retry_on_output) {
                    self.queue_dirty = true;
                }
            }
            Command::Signal(signal) => {
                tracing::debug!(session = %self.id, ?signal, "hook");
                let fx = self.turns.on_signal(&signal, Now::current());
                self.apply(fx).await;
            }
            Command::WaitAdded(wait) => self.add_wait(wait),
            Command::Refresh => {
                self.queue_dirty = true;
                self.load_waits().await;
            }
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
                self.turns.check_screen_at(Instant::now());
            }
            Command::Recover => self.recover().await,
            Command::Shutdown => return false,
        }
        true
    }

    async fn on_timer(&mut self) {
        let now = Now::current();
        if self.turns.take_screen_check(now) {
            self.check_screen().await;
        }
        if self.retry_at.is_some_and(|t| now.mono >= t) {
            self.retry_at = None;
            self.queue_dirty = true;
        }
        let expired: Vec<Wait> = self
            .waits
            .iter()
            .filter(|(_, due)| *due <= now.mono)
            .map(|(w, _)| w.clone())
            .collect();
        if !expired.is_empty() {
            let (name, status) = (super::display_name(&self.session), self.status());
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
        let fx = self.turns.on_tick(Now::current());
        self.apply(fx).await;
    }

    /// The screen fallback, run after output activity settles.
    async fn check_screen(&mut self) {
        let Ok(rows) = self.inner().backend.capture_screen(&self.id).await else {
            return;
        };
        let state = self.profile.read_screen(&rows);
        let answer = self.profile.last_answer(&rows);
        let fx = self.turns.on_screen(&state, answer, Now::current());
        self.apply(fx).await;
    }

    /// Carries out what the turn logic decided, in order.
    async fn apply(&mut self, effects: Vec<Effect>) {
        let mut effects = VecDeque::from(effects);
        while let Some(effect) = effects.pop_front() {
            match effect {
                Effect::Status { from, to } => self.store_status(from, to).await,
                Effect::ReleaseAutoLocks => {
                    match self
                        .inner()
                        .store
                        .release_locks_of(&self.id, Some(LockKind::Auto))
                        .await
                    {
                        Ok(released) => self.engine.after_release(&self.id, &released).await,
                        Err(e) => {
                            tracing::warn!(session = %self.id, error = %e, "cannot release auto-locks")
                        }
                    }
                }
                Effect::TurnCompleted { last_message } => self.report_turn(last_message).await,
                Effect::NeedsInput { prompt, options } => {
                    self.record(EventKind::NeedsInput {
                        prompt: prompt.clone(),
                        options: options.clone(),
                    })
                    .await;
                    self.notify(NotificationKind::NeedsInput { prompt, options });
                }
                Effect::ReadQuestion { fallback } => {
                    let (prompt, options) = match self.screen().await {
                        Ok(ScreenState::Permission { question, options }) => (question, options),
                        // The agent is at its prompt or working: the question was answered
                        // before its notification came (Claude Code sends it ~6 s late).
                        // Taking it would hold the session in needs-input, its queue stuck.
                        Ok(ScreenState::Ready { .. } | ScreenState::Working { .. }) => {
                            tracing::debug!(session = %self.id, "a permission notification for a question already gone");
                            continue;
                        }
                        _ => (fallback, Vec::new()),
                    };
                    let more = self
                        .turns
                        .on_question(Some(prompt), options, Now::current());
                    effects.extend(more);
                }
                Effect::Record(kind) => self.record(kind).await,
                Effect::IdleTimedOut { idle_for } => self.report_idle(idle_for).await,
            }
        }
    }

    /// Stores and publishes a status change the turn logic made.
    async fn store_status(&mut self, from: SessionStatus, to: SessionStatus) {
        tracing::debug!(session = %self.id, %from, %to, "status");
        match self.inner().store.set_status(&self.id, to).await {
            Ok(updated) => self.session = updated,
            Err(e) => tracing::warn!(session = %self.id, error = %e, "cannot store status"),
        }
        let _ = self.status_tx.send(to);
        self.record(EventKind::StatusChanged { from, to }).await;
        if to == SessionStatus::Idle {
            self.queue_dirty = true;
        }
    }
}
