//! What an actor does when asked: clear the agent's context, answer its question, and
//! settle everything when its terminal is gone.

use std::time::Duration;

use super::{Actor, Now};
use crate::engine::screen::ScreenState;
use crate::engine::{NEVER_STARTED, display_name, record_all};
use crate::error::{Error, Result};
use crate::notifier::NotificationKind;
use crate::types::{EventKind, SessionStatus, Wait, WaitOutcome};

/// How long an answer key gets to change the screen before it counts as dropped.
const ANSWER_PATIENCE: Duration = Duration::from_millis(500);
/// The most times an answer key is typed (only ever again when the last drew no output).
const ANSWER_PRESSES: u32 = 3;

impl Actor {
    pub(super) async fn clear(&mut self) -> Result<()> {
        let Some(command) = self.profile.clear_command().map(str::to_string) else {
            return Err(Error::NotSupported(format!(
                "{} agents have no clear command",
                self.session.agent
            )));
        };
        if self.status() != SessionStatus::Idle {
            return Err(Error::Busy(format!(
                "session {} is {}; clear it when it is idle",
                display_name(&self.session),
                self.status()
            )));
        }
        let config = self.inner().config.clone();
        if !matches!(self.screen().await?, ScreenState::Ready { input } if input.is_empty()) {
            return Err(Error::Busy(
                "the agent's input box is not empty; not clearing over someone's typing".into(),
            ));
        }
        let shown = self
            .type_verified(
                &command,
                |s| matches!(s, ScreenState::Ready { input } if input.trim() == command),
            )
            .await?;
        if !shown {
            let _ = self.empty_input_box().await;
            return Err(Error::AgentUnresponsive(
                "the clear command did not appear on screen".into(),
            ));
        }
        self.key(crate::backend::Key::Enter).await?;
        let done = self
            .wait_for_screen(
                config.verify_timeout,
                |s| matches!(s, ScreenState::Ready { input } if input.is_empty()),
            )
            .await;
        if done.is_none() {
            return Err(Error::AgentUnresponsive(
                "it did not confirm the clear".into(),
            ));
        }
        self.turns.on_cleared();
        self.record(EventKind::Note {
            text: "context cleared".into(),
        })
        .await;
        Ok(())
    }

    /// Answers the question (permission prompt) on screen with its option `option`, by the
    /// option's number key, and checks that the question went away.
    pub(super) async fn answer(&mut self, option: usize) -> Result<String> {
        let ScreenState::Permission { question, options } = self.screen().await? else {
            return Err(Error::Busy(format!(
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
        let asked = question.clone();
        let gone = self.press_answer(option, &asked).await?;
        if gone.is_none() {
            return Err(Error::AgentUnresponsive(
                "the answer did not take: the question is still on screen".into(),
            ));
        }
        self.record(EventKind::Note {
            text: format!("answered {question:?}: {label}"),
        })
        .await;
        // The agent carries on with its turn; the screen check that follows its output sets
        // the status.
        let fx = self.turns.on_answered(Now::current());
        self.apply(fx).await;
        Ok(label)
    }

    /// Types option `option`'s number until the question `asked` leaves the screen. A
    /// dialog that has just appeared can drop a key without a trace (Claude Code takes no
    /// input for a moment after showing one): a key that changed nothing on screen within
    /// [`ANSWER_PATIENCE`] is typed again, a few times at most; one that changed something
    /// is never repeated.
    async fn press_answer(&self, option: usize, asked: &str) -> Result<Option<ScreenState>> {
        let key = (option + 1).to_string();
        let gone = |s: &ScreenState| !matches!(s, ScreenState::Permission { question, .. } if question == asked);
        let timeout = self.inner().config.verify_timeout;
        for press in 1..=ANSWER_PRESSES {
            let mark = self.output_mark();
            self.inner().backend.send_text(&self.id, &key).await?;
            let last = press == ANSWER_PRESSES;
            let patience = if last {
                timeout
            } else {
                ANSWER_PATIENCE.min(timeout)
            };
            if let Some(state) = self.wait_for_screen(patience, gone).await {
                return Ok(Some(state));
            }
            if last {
                break;
            }
            if mark.has_changed().unwrap_or(true) {
                // The agent reacted to the key: never type it once more.
                return Ok(self.wait_for_screen(timeout, gone).await);
            }
            tracing::info!(session = %self.id, press, "the answer drew no reaction; typing it again");
        }
        Ok(None)
    }

    pub(super) async fn on_exit(&mut self, status: Option<i32>, reason: String) {
        let reason = match (&self.kill_reason, self.killing) {
            (Some(why), _) => why.clone(),
            (None, true) => "killed".to_string(),
            (None, false) => reason,
        };
        let final_status = if self.turns.session_ended() || (status == Some(0) && !self.killing) {
            SessionStatus::Stopped
        } else {
            SessionStatus::Dead
        };
        let store = self.inner().store.clone();
        // The session ends first, with its reason: from here on nothing new is accepted for
        // it, and whoever asked for the kill sees it dead.
        if let Some(from) = self.turns.on_end(final_status) {
            match store.end_session(&self.id, final_status, &reason).await {
                Ok(updated) => self.session = updated,
                Err(e) => tracing::warn!(session = %self.id, error = %e, "cannot store the end"),
            }
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
                record_all(self.inner(), Some(&self.id), events).await;
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
        if final_status == SessionStatus::Dead && !self.killing && reason != NEVER_STARTED {
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
}
