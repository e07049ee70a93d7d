//! Everything an actor says to others: events in the log, notifications, messages to its
//! parent and to senders, and the wakes of the waits on its session.

use super::Actor;
use crate::engine::{display_name, notify, pending_for, record};
use crate::notifier::{Notification, NotificationKind};
use crate::types::{DeliveryMode, EventKind, Message, SessionStatus, Timestamp, Wait, WaitOutcome};

/// `items` grouped by `key`, groups in the order their first item came.
pub(super) fn group_by<K: PartialEq, T>(
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

/// How many turns one wake names (the most recent ones).
const TURNS_PER_WAKE: usize = 5;

impl Actor {
    /// Reports a finished turn: notification, event, and the parent when it asked.
    pub(super) async fn report_turn(&self, last_message: Option<String>) {
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

    /// Reports an idle timeout, unless someone waits on the session (their wait's own
    /// timeout speaks for it).
    pub(super) async fn report_idle(&self, idle_for: std::time::Duration) {
        if !self.waits.is_empty() {
            return;
        }
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

    /// Appends an event about this session to the log (and publishes it).
    pub(super) async fn record(&self, kind: EventKind) {
        record(self.inner(), Some(&self.id), kind).await;
    }

    /// Tells the notifiers about this session.
    pub(super) fn notify(&self, kind: NotificationKind) {
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
    pub(super) async fn tell_parent(&self, wanted: bool, text: String) {
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

    pub(super) async fn tell_sender(&self, message: &Message, reason: &str) {
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

    /// Tells each sender of `failed` (other than this session) once that its messages were
    /// not delivered, naming how many and how the first began.
    pub(super) async fn tell_senders(&self, failed: &[Message], reason: &str) {
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

    pub(super) async fn fire_waits_if_idle(&mut self) {
        if self.status() != SessionStatus::Idle || self.waits.is_empty() || self.queue_dirty {
            return;
        }
        match pending_for(self.inner().store.as_ref(), &self.id).await {
            Ok(false) => {}
            _ => return,
        }
        let waits: Vec<Wait> = self.waits.iter().map(|(w, _)| w.clone()).collect();
        let (name, last) = (
            display_name(&self.session),
            self.turns.last_message().map(str::to_string),
        );
        self.fire_waits(waits, WaitOutcome::Idle, |_, turns| {
            idle_wake_text(&name, last.as_deref(), turns)
        })
        .await;
    }

    /// Fires `waits` with `outcome`: each is removed and recorded, and each waiter gets
    /// one message, however many of its waits fired together (two waits of one EM on one
    /// target never wake it twice). `text_for` words that message from the waiter's waits
    /// and the turns the target finished since the earliest of them.
    pub(super) async fn fire_waits(
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
            let turns = self.turns.turns_since(since);
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
                    last_message: self.turns.last_message().map(str::to_string),
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
}
