//! Delivery: claim the next message when the agent can take it, type it, verify it landed
//! and was submitted, and settle it as delivered, requeued or failed. Whether the agent can
//! take it is [`readiness`], a pure reading of its screen.

use std::time::Duration;

use tokio::time::Instant;

use super::typing::{landed, normalize};
use super::{Actor, Now};
use crate::engine::profile::AgentProfile;
use crate::engine::screen::ScreenState;
use crate::error::Result;
use crate::types::{DeliveryMode, EventKind, Message, MessageState, SessionStatus};

/// How often a blocked delivery is retried when no output suggests a change.
pub(super) const BLOCKED_RETRY: Duration = Duration::from_secs(1);
/// A message that could not be typed this many times fails (it is never typed twice, so
/// only attempts whose text did not land, or could not start, count).
const MAX_ATTEMPTS: u32 = 5;
/// The pause after an interrupt before any other key, so the agent does not read them as
/// one Alt chord (both Claude Code and the fake agent wait ~50 ms for a lone Escape).
const ESCAPE_GAP: Duration = Duration::from_millis(150);
/// How long the first Enter gets to show on screen before it is pressed once more.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(2);

pub(super) enum Outcome {
    /// A message was delivered (or failed for good): look for the next one.
    Progress,
    /// Nothing deliverable now.
    Nothing,
    /// Something is queued but the agent cannot take it yet.
    Blocked,
}

/// What became of one attempt to deliver a message.
pub(super) enum Attempt {
    Delivered,
    /// The text never reached the agent: put the message back.
    Retry(String),
    /// Give up on this message.
    Fail(String),
}

/// What the screen says about typing a message now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Readiness {
    /// The agent can take it.
    Ready,
    /// sm's own text that showed up late sits in the box (its message was requeued): take
    /// it back, then go on.
    TakeBackUnlanded,
    /// Text sm did not type is in an idle agent's box (a person's, or a prompt restored by
    /// an interrupt): never merge a message into it.
    ForeignText(String),
    /// Someone types while the agent works: an interrupt would mix their text with the
    /// message.
    TypingWhileWorking(String),
    /// A turn runs and the message is not urgent.
    Busy,
    /// Just after a Stop the screen may still show the working footer: look again soon.
    Settling,
    /// Starting, a question, a menu: nothing can be typed.
    NotAtPrompt,
}

/// Whether a message of `mode` can be typed into an agent in `status` whose screen shows
/// `state`.
pub(super) fn readiness(
    profile: &dyn AgentProfile,
    state: &ScreenState,
    mode: DeliveryMode,
    status: SessionStatus,
    just_stopped: bool,
    unlanded: Option<&str>,
) -> Readiness {
    match state {
        ScreenState::Ready { input } if input.is_empty() => Readiness::Ready,
        ScreenState::Ready { input } if unlanded.is_some_and(|t| landed(profile, input, t)) => {
            Readiness::TakeBackUnlanded
        }
        ScreenState::Ready { input } => Readiness::ForeignText(input.clone()),
        ScreenState::Working { .. } if status == SessionStatus::Idle && just_stopped => {
            Readiness::Settling
        }
        ScreenState::Working { .. } if mode != DeliveryMode::Urgent => Readiness::Busy,
        ScreenState::Working { input: Some(text) } if !text.is_empty() => {
            Readiness::TypingWhileWorking(text.clone())
        }
        ScreenState::Working { .. } => Readiness::Ready,
        ScreenState::Permission { .. } | ScreenState::Other => Readiness::NotAtPrompt,
    }
}

impl Actor {
    pub(super) fn deliverable_modes(&self) -> &'static [DeliveryMode] {
        match self.status() {
            SessionStatus::Idle => &DeliveryMode::BY_PRIORITY,
            SessionStatus::Working => &[DeliveryMode::Urgent],
            _ => &[],
        }
    }

    /// After a claim whose outcome is unknown: every message of this session still marked
    /// claimed was never typed — this actor is the only one that types into the terminal,
    /// and it typed nothing since (recovery settled those from before a restart) — so it
    /// goes back to the queue in its place. False while the store cannot be read.
    async fn settle_unknown_claims(&mut self) -> bool {
        let store = self.inner().store.clone();
        let claimed = match store
            .list_messages(&crate::store::MessageFilter {
                target: Some(self.id.clone()),
                states: vec![MessageState::Delivering],
                limit: 0,
                ..Default::default()
            })
            .await
        {
            Ok(c) => c,
            Err(_) => return false,
        };
        for message in claimed {
            if let Err(e) = store
                .requeue(message.id, "its claim was interrupted before it was typed")
                .await
            {
                tracing::warn!(message = %message.id, error = %e, "cannot requeue");
                return false;
            }
            tracing::info!(message = %message.id, "requeued a message whose claim was interrupted");
        }
        self.claim_unsettled = false;
        true
    }

    pub(super) async fn deliver_next(&mut self) -> Outcome {
        let modes = self.deliverable_modes();
        if modes.is_empty() {
            return Outcome::Nothing;
        }
        let store = self.inner().store.clone();
        if self.claim_unsettled && !self.settle_unknown_claims().await {
            return Outcome::Blocked;
        }
        let next_mode = match store.peek_next(&self.id, modes).await {
            Ok(Some(next)) => next.mode,
            Ok(None) => return Outcome::Nothing,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "cannot read the queue");
                return Outcome::Blocked;
            }
        };
        // Look before typing: claim only when the agent can take it.
        let Some(seen) = self.ready_for(next_mode).await else {
            return Outcome::Blocked;
        };
        let message = match store.claim_next(&self.id, &[next_mode]).await {
            Ok(Some(m)) => m,
            Ok(None) => return Outcome::Nothing,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "cannot claim");
                // The claim may have been committed before the error (a lost connection).
                self.claim_unsettled = true;
                return Outcome::Blocked;
            }
        };
        let attempt = match self.deliver(&message, seen).await {
            Ok(a) => a,
            Err(e) => Attempt::Retry(format!("terminal error: {e}")),
        };
        match attempt {
            Attempt::Delivered => {
                // Working first: a message seen delivered never sits beside a stale idle.
                let fx = self.turns.on_delivered(Now::current());
                self.apply(fx).await;
                if let Err(e) = store.mark_delivered(message.id).await {
                    tracing::error!(message = %message.id, error = %e, "cannot mark delivered");
                }
                self.record(EventKind::MessageDelivered {
                    message: message.id,
                })
                .await;
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

    pub(super) async fn fail_message(&mut self, message: &Message, reason: &str) {
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

    /// The screen, when the agent can take a message of `mode` right now (`None`: not
    /// now). Delivery starts from this screen instead of reading it again. A screen showing
    /// a turn or a question also goes to the turn logic (a turn sm had not seen start, a
    /// permission prompt).
    pub(super) async fn ready_for(&mut self, mode: DeliveryMode) -> Option<ScreenState> {
        let empty = ScreenState::Ready {
            input: String::new(),
        };
        if !self.profile.verifiable() {
            return Some(empty);
        }
        let state = self.screen().await.ok()?;
        let now = Now::current();
        let just_stopped = self.turns.just_stopped(now);
        let verdict = readiness(
            self.profile.as_ref(),
            &state,
            mode,
            self.status(),
            just_stopped,
            self.unlanded.as_deref(),
        );
        if matches!(
            state,
            ScreenState::Working { .. } | ScreenState::Permission { .. }
        ) {
            let fx = self.turns.on_screen(&state, None, now);
            self.apply(fx).await;
        }
        match verdict {
            Readiness::Ready => {
                self.foreign_input = None;
                Some(state)
            }
            // Emptying is verified on screen: the box is empty after it.
            Readiness::TakeBackUnlanded => {
                self.unlanded = None;
                matches!(self.empty_input_box().await, Ok(true)).then_some(empty)
            }
            // Wait until it is submitted, or clear it once stale.
            Readiness::ForeignText(text) => self.stale_input_cleared(text).await.then_some(empty),
            Readiness::TypingWhileWorking(text) => {
                self.note_foreign_input(&text, "an urgent message waits")
                    .await;
                None
            }
            Readiness::Settling => {
                self.retry_soon = true;
                None
            }
            Readiness::Busy | Readiness::NotAtPrompt => {
                // An idle agent's screen that shows no prompt is between two states: what
                // it prints next may be the prompt.
                self.retry_on_output = self.status() == SessionStatus::Idle;
                None
            }
        }
    }

    /// Records (once per distinct text) that foreign text blocks delivery.
    pub(super) async fn note_foreign_input(&mut self, text: &str, consequence: &str) {
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
    pub(super) async fn stale_input_cleared(&mut self, text: String) -> bool {
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

    /// Types `message` into the agent, starting from the screen `seen` just before.
    pub(super) async fn deliver(
        &mut self,
        message: &Message,
        seen: ScreenState,
    ) -> Result<Attempt> {
        let config = self.inner().config.clone();
        if !self.profile.verifiable() {
            self.inner()
                .backend
                .send_text(&self.id, &message.text)
                .await?;
            self.key(crate::backend::Key::Enter).await?;
            return Ok(Attempt::Delivered);
        }
        // Interrupt only a turn that is really running: the status says so (hooks) and the
        // screen agrees. An Escape to an idle agent is at best wasted and can eat the next key.
        let interrupted = message.mode == DeliveryMode::Urgent
            && self.status() == SessionStatus::Working
            && matches!(seen, ScreenState::Working { .. });
        if interrupted {
            // Interrupt once, then wait for the prompt: never two quick Escapes.
            tracing::debug!(session = %self.id, message = %message.id, "interrupting the running turn");
            self.key(self.profile.interrupt_key()).await?;
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
            self.turns.on_interrupted();
        }
        let before = if interrupted {
            self.screen().await?
        } else {
            seen
        };
        match before {
            ScreenState::Ready { input } if input.is_empty() => {}
            ScreenState::Ready { .. } => {
                return Ok(Attempt::Retry(
                    "the input box holds text sm did not type".into(),
                ));
            }
            _ => return Ok(Attempt::Retry("the agent is not at its prompt".into())),
        }
        let text = message.text.clone();
        let profile = self.profile.clone();
        let shown = self
            .type_verified(
                &text,
                |s| matches!(s, ScreenState::Ready { input } if landed(profile.as_ref(), input, &text)),
            )
            .await?;
        if !shown {
            let seen = self.screen().await.ok();
            tracing::info!(session = %self.id, screen = ?seen, "typed text did not show up");
            // Nothing was submitted; take back whatever landed and try again later.
            self.unlanded = Some(text);
            let _ = self.empty_input_box().await;
            return Ok(Attempt::Retry(
                "the text did not appear in the input box".into(),
            ));
        }
        self.last_typed = Some(text.clone());
        if self.submit_verified(&text, 2, SUBMIT_PATIENCE).await? {
            return Ok(Attempt::Delivered);
        }
        let _ = self.empty_input_box().await;
        Ok(Attempt::Fail(
            "the agent did not take the message after Enter was pressed twice".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::profile::ClaudeProfile;

    fn verdict(state: ScreenState, mode: DeliveryMode, status: SessionStatus) -> Readiness {
        readiness(&ClaudeProfile::default(), &state, mode, status, false, None)
    }

    fn ready(input: &str) -> ScreenState {
        ScreenState::Ready {
            input: input.into(),
        }
    }

    fn working(input: Option<&str>) -> ScreenState {
        ScreenState::Working {
            input: input.map(str::to_string),
        }
    }

    #[test]
    fn an_empty_prompt_takes_any_message() {
        for mode in DeliveryMode::BY_PRIORITY {
            assert_eq!(
                verdict(ready(""), mode, SessionStatus::Idle),
                Readiness::Ready
            );
        }
    }

    #[test]
    fn text_sm_did_not_type_is_never_merged_into() {
        assert_eq!(
            verdict(
                ready("half a thought"),
                DeliveryMode::Urgent,
                SessionStatus::Idle
            ),
            Readiness::ForeignText("half a thought".into())
        );
    }

    #[test]
    fn sm_s_own_late_text_is_taken_back() {
        let profile = ClaudeProfile::default();
        let state = ready("the message sm gave up on");
        assert_eq!(
            readiness(
                &profile,
                &state,
                DeliveryMode::Sequential,
                SessionStatus::Idle,
                false,
                Some("the message sm gave up on"),
            ),
            Readiness::TakeBackUnlanded
        );
    }

    #[test]
    fn a_running_turn_takes_only_an_urgent_message_and_not_over_someones_typing() {
        let status = SessionStatus::Working;
        assert_eq!(
            verdict(working(None), DeliveryMode::Important, status),
            Readiness::Busy
        );
        assert_eq!(
            verdict(working(Some("")), DeliveryMode::Urgent, status),
            Readiness::Ready
        );
        assert_eq!(
            verdict(working(Some("typing")), DeliveryMode::Urgent, status),
            Readiness::TypingWhileWorking("typing".into())
        );
    }

    #[test]
    fn a_working_footer_just_after_a_stop_is_looked_at_again_soon() {
        let profile = ClaudeProfile::default();
        assert_eq!(
            readiness(
                &profile,
                &working(None),
                DeliveryMode::Urgent,
                SessionStatus::Idle,
                true,
                None,
            ),
            Readiness::Settling
        );
    }

    #[test]
    fn nothing_is_typed_into_a_question_or_a_starting_screen() {
        let question = ScreenState::Permission {
            question: "Do you want to?".into(),
            options: vec!["Yes".into()],
        };
        assert_eq!(
            verdict(question, DeliveryMode::Urgent, SessionStatus::NeedsInput),
            Readiness::NotAtPrompt
        );
        assert_eq!(
            verdict(
                ScreenState::Other,
                DeliveryMode::Urgent,
                SessionStatus::Idle
            ),
            Readiness::NotAtPrompt
        );
    }
}
