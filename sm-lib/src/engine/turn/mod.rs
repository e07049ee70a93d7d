//! The turn logic of one session as a pure state machine: what its status is, when a turn
//! started and ended, when it needs input, when it has been idle too long. No store, no
//! terminal, no async: typed inputs (an [`AgentSignal`] from a hook, a [`ScreenState`] from
//! a screen check, the clock) go in, [`Effect`]s come out, and the session's actor applies
//! them — it is the only place that writes to the store, the notifiers or the terminal.
//!
//! The rules here are the ones real agents taught us; `tests.rs` states each as a table
//! case. Changing idle detection means changing this file and its tests, nothing else.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::profile::AgentSignal;
use super::screen::ScreenState;
use crate::types::{EventKind, SessionStatus, Timestamp};

#[cfg(test)]
mod tests;

/// How long output must have been quiet before a ready-looking screen counts as idle
/// (guards against the instant between a turn's last tool and its final render).
pub(crate) const QUIET_BEFORE_IDLE: Duration = Duration::from_millis(300);
/// Delay between output activity and the screen check it triggers (coalesces bursts).
pub(crate) const SCREEN_CHECK_DELAY: Duration = Duration::from_millis(100);
/// After a Stop hook, how long a working footer on screen is taken as a late render rather
/// than a new turn.
pub(crate) const STOP_GRACE: Duration = Duration::from_millis(1500);
/// How many finished turns are remembered for the wakes that name them.
const TURNS_REMEMBERED: usize = 20;

/// The present, on both clocks: `mono` orders timers, `wall` stamps finished turns (waits
/// are stored with wall-clock times).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// The runtime's clock.
    pub mono: Instant,
    /// The wall clock.
    pub wall: Timestamp,
}

impl Now {
    /// This instant.
    pub(crate) fn current() -> Now {
        Now {
            mono: Instant::now(),
            wall: Timestamp::now(),
        }
    }
}

/// What the actor does because of an input, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Store and publish the new status, and log the change.
    Status {
        /// The status before.
        from: SessionStatus,
        /// The status now.
        to: SessionStatus,
    },
    /// Release the session's automatic locks: its turn is over.
    ReleaseAutoLocks,
    /// Report a finished turn (event, notification, parent).
    TurnCompleted {
        /// Its last message, when known.
        last_message: Option<String>,
    },
    /// Report that the agent waits for an answer (event, notification).
    NeedsInput {
        /// The question, when known.
        prompt: Option<String>,
        /// Its options, in order.
        options: Vec<String>,
    },
    /// Read the question off the screen and pass it to [`Turns::on_question`]: the hook
    /// that said the agent asks names no options. `fallback` is the hook's own words.
    ReadQuestion {
        /// What the hook said.
        fallback: String,
    },
    /// Log this event.
    Record(EventKind),
    /// Idle for `idle_for` past the idle timeout; reported when nobody waits on it.
    IdleTimedOut {
        /// How long it has been idle.
        idle_for: Duration,
    },
}

/// What the turn logic needs to know about the agent and the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// The screen shows an input box, so a ready screen means ready.
    pub verifiable: bool,
    /// The agent reports turns through hooks; without, the screen alone ends a turn.
    pub reports_hooks: bool,
    /// Idle this long with nobody waiting is reported.
    pub idle_timeout: Duration,
}

/// One session's turn state. Every field changes only here.
#[derive(Debug)]
pub(crate) struct Turns {
    rules: Rules,
    status: SessionStatus,
    /// The running turn has been seen working (by a hook or the screen): a ready screen
    /// now means it ended.
    seen_working: bool,
    /// The end of the current turn has been reported; a second sign of the same end (a
    /// Stop after the screen saw it, or the reverse) reports nothing. Cleared when a turn
    /// starts.
    reported: bool,
    /// When the last Stop hook came: the screen may show the working footer a moment more.
    stopped_at: Option<Instant>,
    idle_since: Option<Instant>,
    idle_notified: bool,
    last_activity: Instant,
    screen_check_at: Option<Instant>,
    last_message: Option<String>,
    /// Turns seen ending, newest last (when, and the last message).
    finished: VecDeque<(Timestamp, Option<String>)>,
    /// The agent said its session ended (its exit is then a stop, not a death).
    session_ended: bool,
}

impl Turns {
    /// The state of a session now in `status`.
    pub(crate) fn new(status: SessionStatus, rules: Rules, now: Now) -> Turns {
        Turns {
            rules,
            status,
            seen_working: false,
            reported: false,
            stopped_at: None,
            idle_since: (status == SessionStatus::Idle).then_some(now.mono),
            idle_notified: false,
            last_activity: now.mono,
            screen_check_at: None,
            last_message: None,
            finished: VecDeque::new(),
            session_ended: false,
        }
    }

    /// The current status.
    pub(crate) fn status(&self) -> SessionStatus {
        self.status
    }

    /// The agent's last answer, when known.
    pub(crate) fn last_message(&self) -> Option<&str> {
        self.last_message.as_deref()
    }

    /// Whether the agent said its session ended.
    pub(crate) fn session_ended(&self) -> bool {
        self.session_ended
    }

    /// A Stop hook came so recently that a working screen may be a late render.
    pub(crate) fn just_stopped(&self, now: Now) -> bool {
        self.stopped_at
            .is_some_and(|t| now.mono.duration_since(t) < STOP_GRACE)
    }

    /// The last messages of the turns finished at or after `since`, oldest first.
    pub(crate) fn turns_since(&self, since: Timestamp) -> Vec<String> {
        self.finished
            .iter()
            .filter(|(at, _)| at.0 >= since.0)
            .map(|(_, m)| m.clone().unwrap_or_else(|| "(no message)".into()))
            .collect()
    }

    /// When the turn logic next needs the actor: a screen check or the idle timeout.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let idle = match (self.status, self.idle_since, self.idle_notified) {
            (SessionStatus::Idle, Some(since), false) => Some(since + self.rules.idle_timeout),
            _ => None,
        };
        [self.screen_check_at, idle].into_iter().flatten().min()
    }

    /// Whether a screen check is due now (it is then taken off the schedule).
    pub(crate) fn take_screen_check(&mut self, now: Now) -> bool {
        let due = self.screen_check_at.is_some_and(|t| now.mono >= t);
        if due {
            self.screen_check_at = None;
        }
        due
    }

    /// Asks for a screen check at `at`, replacing any scheduled one.
    pub(crate) fn check_screen_at(&mut self, at: Instant) {
        self.screen_check_at = Some(at);
    }

    /// The terminal printed something: check the screen once the burst settles.
    pub(crate) fn on_activity(&mut self, now: Now) {
        self.last_activity = now.mono;
        if self.screen_check_at.is_none() {
            self.screen_check_at = Some(now.mono + SCREEN_CHECK_DELAY);
        }
    }

    /// A hook event.
    pub(crate) fn on_signal(&mut self, signal: &AgentSignal, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        match signal {
            AgentSignal::SessionStarted if self.status == SessionStatus::Starting => {
                // The hook fires before the TUI takes keys: let the screen confirm.
                if self.rules.verifiable {
                    self.screen_check_at = Some(now.mono + SCREEN_CHECK_DELAY);
                } else {
                    self.set_status(SessionStatus::Idle, now, &mut fx);
                }
            }
            AgentSignal::SessionStarted | AgentSignal::Ignored => {}
            AgentSignal::Tool {
                tool,
                phase,
                target,
            } => {
                fx.push(Effect::Record(EventKind::ToolUse {
                    tool: tool.clone(),
                    phase: (*phase).into(),
                    target: target.clone(),
                }));
                self.turn_started(now, &mut fx);
            }
            AgentSignal::Subagent {
                agent_id,
                agent_type,
                running,
            } => {
                fx.push(Effect::Record(EventKind::Subagent {
                    agent_id: agent_id.clone(),
                    agent_type: agent_type.clone(),
                    running: *running,
                }));
                if *running {
                    self.turn_started(now, &mut fx);
                }
            }
            AgentSignal::PromptSubmitted => self.turn_started(now, &mut fx),
            AgentSignal::PermissionAsked { message } => fx.push(Effect::ReadQuestion {
                fallback: message.clone(),
            }),
            AgentSignal::TurnEnded { last_message } => {
                self.stopped_at = Some(now.mono);
                self.turn_ended(last_message.clone(), true, now, &mut fx);
            }
            AgentSignal::TurnInterrupted => {
                // The screen says whether the turn is over (quiet at its prompt) or sm's
                // own urgent message already started the next one.
                if self.status == SessionStatus::Working {
                    self.screen_check_at = Some(now.mono + SCREEN_CHECK_DELAY);
                }
            }
            AgentSignal::SessionEnded => {
                self.session_ended = true;
                self.set_status(SessionStatus::Stopped, now, &mut fx);
            }
        }
        fx
    }

    /// A screen check: the fallback where hooks say nothing (readiness at start, permission
    /// prompts, turns interrupted with Escape, agents without hooks). `answer` is the last
    /// answer the screen shows.
    pub(crate) fn on_screen(
        &mut self,
        state: &ScreenState,
        answer: Option<String>,
        now: Now,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let quiet_for = now.mono.duration_since(self.last_activity);
        match (self.status, state) {
            (SessionStatus::Starting, ScreenState::Ready { .. }) => {
                // Keys sent the moment the prompt appears can be lost: ready once the
                // screen has been quiet for a moment.
                if quiet_for >= QUIET_BEFORE_IDLE {
                    self.set_status(SessionStatus::Idle, now, &mut fx);
                } else {
                    self.screen_check_at = Some(now.mono + (QUIET_BEFORE_IDLE - quiet_for));
                }
            }
            (SessionStatus::Starting, _) => {}
            (_, ScreenState::Permission { question, options }) => {
                self.needs_input(Some(question.clone()), options.clone(), now, &mut fx);
            }
            (SessionStatus::Idle | SessionStatus::NeedsInput, ScreenState::Working { .. }) => {
                // Right after a Stop hook the working footer may still be on screen.
                if self.just_stopped(now) {
                    self.screen_check_at = Some(now.mono + SCREEN_CHECK_DELAY);
                } else {
                    self.turn_started(now, &mut fx);
                }
            }
            (SessionStatus::Working, ScreenState::Working { .. }) => self.seen_working = true,
            (SessionStatus::NeedsInput, ScreenState::Ready { .. }) => {
                // The question was answered and the turn went on or ended: let the next
                // screen check or hook decide.
                self.seen_working = true;
                self.set_status(SessionStatus::Working, now, &mut fx);
                self.screen_check_at = Some(now.mono + QUIET_BEFORE_IDLE);
            }
            (SessionStatus::Working, ScreenState::Ready { .. })
                if self.seen_working || !self.rules.reports_hooks =>
            {
                // A turn that ended without a Stop hook (interrupted with Escape, or an agent
                // without hooks), once output has been quiet for a moment. Its answer is
                // what the screen shows last.
                if quiet_for >= QUIET_BEFORE_IDLE {
                    self.last_message = None;
                    self.turn_ended(answer, false, now, &mut fx);
                } else {
                    self.screen_check_at = Some(now.mono + (QUIET_BEFORE_IDLE - quiet_for));
                }
            }
            _ => {}
        }
        fx
    }

    /// The screen after a restart: a Stop or a question may have been missed while sm was
    /// down.
    pub(crate) fn on_recovered_screen(&mut self, state: &ScreenState, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        match state {
            ScreenState::Ready { .. } if self.status != SessionStatus::Idle => {
                self.turn_ended(None, false, now, &mut fx);
            }
            ScreenState::Ready { .. } | ScreenState::Other => {}
            ScreenState::Working { .. } => self.turn_started(now, &mut fx),
            ScreenState::Permission { question, options } => {
                self.needs_input(Some(question.clone()), options.clone(), now, &mut fx);
            }
        }
        fx
    }

    /// The question the agent asks, as read off the screen (or the hook's words).
    pub(crate) fn on_question(
        &mut self,
        prompt: Option<String>,
        options: Vec<String>,
        now: Now,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.needs_input(prompt, options, now, &mut fx);
        fx
    }

    /// The clock: reports an idle timeout once per idle period.
    pub(crate) fn on_tick(&mut self, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.status != SessionStatus::Idle || self.idle_notified {
            return fx;
        }
        if let Some(since) = self.idle_since {
            let idle_for = now.mono.duration_since(since);
            if idle_for >= self.rules.idle_timeout {
                self.idle_notified = true;
                fx.push(Effect::IdleTimedOut { idle_for });
            }
        }
        fx
    }

    /// sm saw a message it typed submitted. On a verifiable screen the turn runs from
    /// here (a message seen delivered never sits beside a stale idle).
    pub(crate) fn on_delivered(&mut self, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.rules.verifiable {
            self.turn_started(now, &mut fx);
        }
        self.screen_check_at = Some(now.mono + SCREEN_CHECK_DELAY);
        fx
    }

    /// sm interrupted the running turn to type an urgent message: the turn that follows is
    /// the message's own.
    pub(crate) fn on_interrupted(&mut self) {
        self.seen_working = false;
    }

    /// Restart recovery found that a message reached the agent: its turn runs.
    pub(crate) fn on_recovered_delivery(&mut self) {
        self.seen_working = true;
    }

    /// sm answered the agent's question: the turn carries on (the screen check that follows
    /// its output sets the status).
    pub(crate) fn on_answered(&mut self, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.turn_started(now, &mut fx);
        fx
    }

    /// The agent's context was reset.
    pub(crate) fn on_cleared(&mut self) {
        self.last_message = None;
    }

    /// The terminal is gone and the session ends as `to`; the status before, when it was
    /// still live.
    pub(crate) fn on_end(&mut self, to: SessionStatus) -> Option<SessionStatus> {
        let from = self.status;
        if !from.is_live() {
            return None;
        }
        self.status = to;
        Some(from)
    }

    fn set_status(&mut self, to: SessionStatus, now: Now, fx: &mut Vec<Effect>) {
        if to == self.status {
            return;
        }
        let from = std::mem::replace(&mut self.status, to);
        match to {
            SessionStatus::Working => {
                self.reported = false;
                self.idle_since = None;
            }
            SessionStatus::Idle => {
                self.idle_since = Some(now.mono);
                self.idle_notified = false;
            }
            _ => {}
        }
        fx.push(Effect::Status { from, to });
    }

    fn turn_started(&mut self, now: Now, fx: &mut Vec<Effect>) {
        self.seen_working = true;
        if matches!(self.status, SessionStatus::Idle | SessionStatus::NeedsInput) {
            self.set_status(SessionStatus::Working, now, fx);
        }
    }

    /// A turn ended (a Stop hook, or the screen after an interrupt).
    fn turn_ended(
        &mut self,
        last_message: Option<String>,
        from_hook: bool,
        now: Now,
        fx: &mut Vec<Effect>,
    ) {
        self.seen_working = false;
        let was_busy = matches!(
            self.status,
            SessionStatus::Working | SessionStatus::NeedsInput | SessionStatus::Starting
        );
        self.set_status(SessionStatus::Idle, now, fx);
        fx.push(Effect::ReleaseAutoLocks);
        if (from_hook || was_busy) && !std::mem::replace(&mut self.reported, true) {
            if self.finished.len() >= TURNS_REMEMBERED {
                self.finished.pop_front();
            }
            self.finished.push_back((now.wall, last_message.clone()));
            fx.push(Effect::TurnCompleted {
                last_message: last_message.clone(),
            });
        }
        if let Some(m) = last_message {
            self.last_message = Some(m);
        }
    }

    fn needs_input(
        &mut self,
        prompt: Option<String>,
        options: Vec<String>,
        now: Now,
        fx: &mut Vec<Effect>,
    ) {
        if self.status == SessionStatus::NeedsInput {
            return;
        }
        self.set_status(SessionStatus::NeedsInput, now, fx);
        fx.push(Effect::NeedsInput { prompt, options });
    }
}
