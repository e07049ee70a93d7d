//! Sending, waiting and hooks: what enters a session's queue, the waits on its turns, and
//! the hook events its agent reports.

use std::time::Duration;

use tokio::sync::broadcast;

use super::{
    Caller, Engine, HookEvent, WaitResult, actor::Command, lock_map, sanitize_message, what,
};
use crate::error::{Error, Result};
use crate::types::{
    DeliveryMode, Event, EventKind, Message, NewMessage, Session, SessionId, Timestamp,
};

impl Engine {
    /// Queues `text` for `target` in `mode` and returns the stored message. Returns once the
    /// message is durable; delivery follows (see the module docs).
    ///
    /// Errors: [`Error::InvalidInput`] for empty or oversized text; [`Error::SessionNotFound`];
    /// [`Error::InvalidInput`] when the target is stopped or dead.
    pub async fn send(
        &self,
        caller: &Caller,
        target: &SessionId,
        text: &str,
        mode: DeliveryMode,
    ) -> Result<Message> {
        self.send_with_key(caller, target, text, mode, None).await
    }

    /// [`Engine::send`] with the sender's idempotency key: sending again with the same key
    /// (after a connection broke before the answer came) returns the message already
    /// stored instead of queueing it twice.
    pub async fn send_with_key(
        &self,
        caller: &Caller,
        target: &SessionId,
        text: &str,
        mode: DeliveryMode,
        client_key: Option<String>,
    ) -> Result<Message> {
        let text = sanitize_message(text, self.inner.config.max_message_bytes)?;
        self.enqueue_keyed(caller.session(), target, text, mode, client_key)
            .await
    }

    pub(super) async fn enqueue(
        &self,
        sender: Option<&SessionId>,
        target: &SessionId,
        text: String,
        mode: DeliveryMode,
    ) -> Result<Message> {
        self.enqueue_keyed(sender, target, text, mode, None).await
    }

    pub(super) async fn enqueue_keyed(
        &self,
        sender: Option<&SessionId>,
        target: &SessionId,
        text: String,
        mode: DeliveryMode,
        client_key: Option<String>,
    ) -> Result<Message> {
        let session = self
            .live_session(target, "it cannot receive messages")
            .await?;
        let message = self
            .inner
            .store
            .enqueue(NewMessage {
                target: target.clone(),
                sender: sender.cloned(),
                text,
                mode,
                client_key,
            })
            .await?;
        if !message.inserted {
            // A repeat of a send already stored: nothing new happened.
            return Ok(message.into_inner());
        }
        self.record(
            Some(target),
            EventKind::MessageQueued {
                message: message.id,
                mode,
            },
        )
        .await;
        self.kick(&session).await;
        Ok(message.into_inner())
    }

    /// Tells `target`'s actor its queue changed: at once when it runs here, else by
    /// poking the node that owns it.
    pub(super) async fn kick(&self, target: &Session) {
        if let Some(h) = lock_map(&self.inner.actors).get(&target.id) {
            let _ = h.commands.send(Command::Kick);
            return;
        }
        self.poke_owner(target).await;
    }

    /// Returns at once; when `target` next finishes a turn with nothing left queued for it
    /// (at once if it already idles with nothing queued), or when `timeout` passes, the
    /// caller gets a short message saying which — delivered like any important message,
    /// which wakes it. An admin caller gets only the event.
    pub async fn wait(&self, caller: &Caller, target: &SessionId, timeout: Duration) -> Result<()> {
        self.register_wait(caller.session(), target, timeout)
            .await
            .map(drop)
    }

    /// For programs driving agents (EM programs): waits — asynchronously, in this task —
    /// until `target` finishes its turn with nothing queued for it, ends, or `timeout`
    /// passes, with the same rules as [`Engine::wait`]. Returns why, and the target's last
    /// assistant message when known.
    pub async fn wait_for(&self, target: &SessionId, timeout: Duration) -> Result<WaitResult> {
        let mut events = self.subscribe();
        let wait = self.register_wait(None, target, timeout).await?;
        loop {
            match events.recv().await {
                Ok(Event {
                    kind:
                        EventKind::WaitFired {
                            wait: id,
                            outcome,
                            last_message,
                            turns,
                            ..
                        },
                    ..
                }) if id == wait.id => {
                    return Ok(WaitResult {
                        outcome,
                        last_message,
                        turns,
                    });
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed live events: the log has them.
                    let fired = self
                        .inner
                        .store
                        .events(None, Some(target), 0)
                        .await?
                        .into_iter()
                        .find_map(|e| match e.kind {
                            EventKind::WaitFired {
                                wait: id,
                                outcome,
                                last_message,
                                turns,
                                ..
                            } if id == wait.id => Some(WaitResult {
                                outcome,
                                last_message,
                                turns,
                            }),
                            _ => None,
                        });
                    if let Some(result) = fired {
                        return Ok(result);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Error::Closed("the engine"));
                }
            }
        }
    }

    pub(super) async fn register_wait(
        &self,
        waiter: Option<&SessionId>,
        target: &SessionId,
        timeout: Duration,
    ) -> Result<crate::types::Wait> {
        let session = self
            .live_session(target, "there is nothing to wait for")
            .await?;
        let deadline = Timestamp(Timestamp::now().0 + timeout.as_millis() as i64);
        let wait = self.inner.store.add_wait(waiter, target, deadline).await?;
        let local = lock_map(&self.inner.actors).get(target).cloned();
        match local {
            Some(h) => {
                let _ = h.commands.send(Command::WaitAdded(wait.clone()));
                Ok(wait)
            }
            // Its owner loads the wait from the store when poked (or at its next sweep).
            None if !self.owns(&session) => {
                self.poke_owner(&session).await;
                Ok(wait)
            }
            None => Err(Error::SessionNotFound(target.to_string())),
        }
    }

    /// Takes a hook event reported by agent `id`: its profile turns it into an
    /// [`AgentSignal`](super::profile::AgentSignal) (turn started, turn ended, needs input, …) and its
    /// actor acts on what it means.
    pub async fn hook(&self, id: &SessionId, event: HookEvent) -> Result<()> {
        let handle = lock_map(&self.inner.actors).get(id).cloned();
        let Some(h) = handle else {
            self.refuse_if_elsewhere(id).await?;
            return Err(Error::SessionNotFound(id.to_string()));
        };
        let report = h.profile.read_hook(&event.event, &event.payload);
        let kind = EventKind::Hook {
            event: report.event,
            transcript_path: report.transcript_path,
            prompt_digest: report.prompt.as_deref().map(what::prompt_digest),
            agent_session: report.agent_session,
        };
        let _ = h.commands.send(Command::Signal(report.signal));
        // Recorded here, as it arrives, not by the actor: the actor may be busy typing the
        // very message this hook reports, and a restart right now must find the record.
        self.record(Some(id), kind).await;
        Ok(())
    }
}
