//! Verified typing: every key sm sends to an agent is followed by a look at its screen,
//! so delivery, clear, answer and recovery know what the agent took.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Actor;
use crate::backend::Key;
use crate::engine::profile::AgentProfile;
use crate::engine::screen::ScreenState;
use crate::error::Result;

/// While verifying a step the screen is read again on each output of the terminal, and
/// after this long without output (a missed event must not stall a delivery).
const QUIET_RECHECK: Duration = Duration::from_millis(50);

/// Text as compared with what a screen shows: without whitespace (wrapping, tabs shown as
/// spaces) and without invisible format characters, which terminals drop or merge into
/// the previous cell (zero-width joiners and spaces, soft hyphens, byte-order marks).
pub(super) fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !c.is_whitespace()
                && !matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
        })
        .collect()
}

/// Whether the input box shows `text` (typed, or collapsed as a paste).
pub(super) fn landed(profile: &dyn AgentProfile, input: &str, text: &str) -> bool {
    if profile.is_paste_placeholder(input) {
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
pub(super) fn submitted(profile: &dyn AgentProfile, state: &ScreenState, text: &str) -> bool {
    match state {
        ScreenState::Ready { input } => !landed(profile, input, text),
        ScreenState::Working { .. } | ScreenState::Permission { .. } => true,
        ScreenState::Other => false,
    }
}

/// Waits for the terminal's next output after `mark`, or [`QUIET_RECHECK`], or `deadline`,
/// whichever comes first.
async fn next_output(mark: &mut watch::Receiver<u64>, deadline: Instant) {
    let wake = (Instant::now() + QUIET_RECHECK).min(deadline);
    if let Ok(Err(_)) = tokio::time::timeout_at(wake, mark.changed()).await {
        // The session's handle is gone (it is ending): no more events will come.
        tokio::time::sleep_until(wake).await;
    }
}

impl Actor {
    pub(super) async fn screen(&self) -> Result<ScreenState> {
        let rows = self.inner().backend.capture_screen(&self.id).await?;
        Ok(self.profile.read_screen(&rows))
    }

    /// A mark in the terminal's output: [`next_output`] returns once output came after it.
    pub(super) fn output_mark(&self) -> watch::Receiver<u64> {
        let mut mark = self.output.clone();
        mark.borrow_and_update();
        mark
    }

    /// Waits until the screen satisfies `pred`, reading it at once and then whenever the
    /// terminal prints, for up to `timeout`.
    pub(super) async fn wait_for_screen(
        &self,
        timeout: Duration,
        pred: impl FnMut(&ScreenState) -> bool,
    ) -> Option<ScreenState> {
        self.wait_for_screen_after(None, timeout, pred).await
    }

    /// [`Actor::wait_for_screen`] after a key sent since `sent`: the screen is read first
    /// when the terminal has printed since then (a screen read before the agent's echo
    /// would only be read again).
    async fn wait_for_screen_after(
        &self,
        sent: Option<watch::Receiver<u64>>,
        timeout: Duration,
        mut pred: impl FnMut(&ScreenState) -> bool,
    ) -> Option<ScreenState> {
        let deadline = Instant::now() + timeout;
        if let Some(mut sent) = sent {
            next_output(&mut sent, deadline).await;
        }
        loop {
            // Marked before the capture: output after it wakes the wait below.
            let mut mark = self.output_mark();
            if let Ok(state) = self.screen().await {
                if pred(&state) {
                    return Some(state);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            next_output(&mut mark, deadline).await;
        }
    }

    pub(super) async fn key(&self, key: Key) -> Result<()> {
        self.inner().backend.send_key(&self.id, key).await
    }

    /// Empties the input box with Ctrl-U (one line per press), verified.
    pub(super) async fn empty_input_box(&self) -> Result<bool> {
        for _ in 0..50 {
            match self.screen().await? {
                ScreenState::Ready { input } | ScreenState::Working { input: Some(input) }
                    if input.is_empty() =>
                {
                    return Ok(true);
                }
                ScreenState::Ready { .. } | ScreenState::Working { input: Some(_) } => {
                    let mut mark = self.output_mark();
                    self.key(Key::CtrlU).await?;
                    next_output(&mut mark, Instant::now() + QUIET_RECHECK).await;
                }
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Types `text` and waits until the screen `shows` it; false when it never did. Returns
    /// no sooner than the profile's submit gap after the text was sent, so the Enter that
    /// follows is a submit.
    pub(super) async fn type_verified(
        &self,
        text: &str,
        shows: impl FnMut(&ScreenState) -> bool,
    ) -> Result<bool> {
        let sent = self.output_mark();
        self.inner().backend.send_text(&self.id, text).await?;
        let enter_from = Instant::now() + self.profile.submit_gap();
        let timeout = self.inner().config.verify_timeout;
        let shown = self
            .wait_for_screen_after(Some(sent), timeout, shows)
            .await
            .is_some();
        if shown {
            tokio::time::sleep_until(enter_from).await;
        }
        Ok(shown)
    }

    /// Presses Enter until the screen shows `text` was taken, at most `presses` times: an
    /// agent takes Enter in milliseconds, so the first press gets `first_patience` before
    /// it is pressed again, the last the full verify timeout.
    pub(super) async fn submit_verified(
        &self,
        text: &str,
        presses: u32,
        first_patience: Duration,
    ) -> Result<bool> {
        let timeout = self.inner().config.verify_timeout;
        let profile = self.profile.clone();
        for press in 0..presses {
            let sent = self.output_mark();
            self.key(Key::Enter).await?;
            let patience = if press + 1 < presses {
                timeout.min(first_patience)
            } else {
                timeout
            };
            if self
                .wait_for_screen_after(Some(sent), patience, |s| {
                    submitted(profile.as_ref(), s, text)
                })
                .await
                .is_some()
            {
                return Ok(true);
            }
            tracing::info!(session = %self.id, press, "submit not seen; pressing Enter again");
        }
        Ok(false)
    }
}
