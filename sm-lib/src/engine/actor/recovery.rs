//! After a restart: settle the messages caught mid-delivery without ever typing one twice,
//! then take the status from the screen.

use std::time::Duration;

use tokio::time::Instant;

use super::delivery::Attempt;
use super::typing::{landed, normalize};
use super::{Actor, Now};
use crate::engine::screen::ScreenState;
use crate::engine::what;
use crate::store::MessageFilter;
use crate::types::{DeliveryMode, EventKind, Message, MessageState, Timestamp};

/// How often recovery looks again while the agent may still be writing its transcript.
const RECOVERY_POLL: Duration = Duration::from_millis(100);
/// Why a message whose fate recovery could not tell is failed rather than typed again.
const MAYBE_DELIVERED: &str =
    "it may have reached the agent before the restart; not typed again to avoid a duplicate";

impl Actor {
    /// After a restart: settle messages caught mid-delivery (never typing one twice), then
    /// take the status from the screen.
    pub(super) async fn recover(&mut self) {
        let store = self.inner().store.clone();
        let delivering = store
            .list_messages(&MessageFilter {
                target: Some(self.id.clone()),
                states: vec![MessageState::Delivering],
                limit: 0,
                ..Default::default()
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
        let transcript = what::last_transcript_path(&events);
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
                    self.turns.on_recovered_delivery();
                }
                Attempt::Retry(reason) => {
                    let _ = store.requeue(message.id, &reason).await;
                }
                Attempt::Fail(reason) => self.fail_message(&message, &reason).await,
            }
        }
        if let Ok(state) = self.screen().await {
            let fx = self.turns.on_recovered_screen(&state, Now::current());
            self.apply(fx).await;
        }
        self.queue_dirty = true;
    }

    /// Decides what became of a message that was being typed when sm stopped. Delivered on
    /// any positive sign (a turn running, the prompt hook recorded, a transcript entry, the
    /// echo on screen); put back only when every sign is negative after the agent has had
    /// time to write its transcript (Claude Code appends the entry a few hundred ms after
    /// the submit); failed with a clear reason when it stays unclear — never typed twice.
    pub(super) async fn settle_interrupted(
        &mut self,
        message: &Message,
        transcript: Option<&std::path::Path>,
        events: &[crate::types::Event],
    ) -> Attempt {
        let claimed_at = message.updated_at.0 - 1000;
        if what::log_has_prompt(events, &message.text, claimed_at) {
            return Attempt::Delivered;
        }
        let settle_left = (message.updated_at.0 + self.profile.transcript_lag().as_millis() as i64
            - Timestamp::now().0)
            .max(0) as u64;
        let deadline = Instant::now() + Duration::from_millis(settle_left);
        let (mut state, mut in_transcript);
        loop {
            state = self.screen().await.ok();
            match &state {
                Some(ScreenState::Ready { input })
                    if !input.is_empty() && landed(self.profile.as_ref(), input, &message.text) =>
                {
                    if self.is_left_over(message, input) {
                        return self.submit_left_over(message).await;
                    }
                    // Only its end matches: it may be another message's text, such as the
                    // prompt an urgent message's interrupt put back into the box. Nothing in
                    // the box was submitted, so taking it back and typing this one again
                    // neither loses nor doubles anything.
                    if matches!(self.empty_input_box().await, Ok(true)) {
                        return Attempt::Retry(
                            "the input box held text that may not have been this message's \
                             after the restart"
                                .into(),
                        );
                    }
                    return Attempt::Fail(MAYBE_DELIVERED.into());
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
                    let profile = self.profile.clone();
                    tokio::task::spawn_blocking(move || {
                        profile.transcript_has_prompt(&path, &text, claimed_at)
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

    /// Whether the text left in the input box after a restart is `message`, typed whole
    /// and not submitted. A paste shows only as a placeholder, which is this message's
    /// unless an urgent message's interrupt may have put another prompt back into the box.
    fn is_left_over(&self, message: &Message, input: &str) -> bool {
        if self.profile.is_paste_placeholder(input) {
            return message.mode != DeliveryMode::Urgent;
        }
        normalize(input) == normalize(&message.text)
    }

    /// A message typed before a restart but never submitted: press Enter (twice at most).
    pub(super) async fn submit_left_over(&mut self, message: &Message) -> Attempt {
        match self
            .submit_verified(&message.text, 2, self.inner().config.verify_timeout)
            .await
        {
            Ok(true) => Attempt::Delivered,
            _ => Attempt::Fail("could not submit a message typed before a restart".into()),
        }
    }
}
