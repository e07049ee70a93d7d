//! Acting on a session: clear, answer its question, kill, rename, set its task.

use tokio::sync::oneshot;

use super::{Caller, Engine, actor::Command, lock_map, sanitize_message};
use crate::error::{Error, Result};
use crate::types::{EventKind, Session, SessionId, SessionName, SessionStatus};

impl Engine {
    /// Resets the agent's context (Claude Code: `/clear`), verified on screen. The session
    /// keeps its id and name. The agent must be idle.
    pub async fn clear(&self, caller: &Caller, target: &SessionId) -> Result<()> {
        self.authorize(caller, target, "clear").await?;
        self.ask_actor(target, Command::Clear).await
    }

    /// Sends the session's actor a command carrying a reply channel and waits for the reply.
    pub(super) async fn ask_actor<T>(
        &self,
        target: &SessionId,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let handle = lock_map(&self.inner.actors).get(target).cloned();
        let Some(handle) = handle else {
            self.refuse_if_elsewhere(target).await?;
            return Err(Error::SessionNotFound(target.to_string()));
        };
        let (reply, rx) = oneshot::channel();
        handle
            .commands
            .send(command(reply))
            .map_err(|_| Error::SessionNotFound(target.to_string()))?;
        rx.await.map_err(|_| Error::Closed("the session"))?
    }

    /// Answers the question an agent is asking on screen (a permission prompt) with option
    /// `option` (0-based, in the order of [`crate::NotificationKind::NeedsInput`]'s
    /// options), and returns the option's label once the question has left the screen.
    ///
    /// Errors: [`Error::InvalidInput`] when nothing is being asked or there is no such
    /// option; [`Error::Forbidden`] for a caller that is not an ancestor.
    pub async fn answer(
        &self,
        caller: &Caller,
        target: &SessionId,
        option: usize,
    ) -> Result<String> {
        self.authorize(caller, target, "answer for").await?;
        self.ask_actor(target, |reply| Command::Answer { option, reply })
            .await
    }

    /// Ends the agent's terminal, marks it dead, fails its queue in one transaction
    /// (telling each sender once), releases its locks and wakes its waiters with the news,
    /// and returns when all of that is done. Idempotent.
    pub async fn kill(&self, caller: &Caller, target: &SessionId) -> Result<()> {
        self.authorize(caller, target, "kill").await?;
        self.end_agent(target, None).await
    }

    /// Kills `target` on the engine's own account, recording `reason` as why it ended.
    pub(super) async fn end_agent(&self, target: &SessionId, reason: Option<String>) -> Result<()> {
        let handle = lock_map(&self.inner.actors).get(target).cloned();
        match &handle {
            Some(h) => {
                let _ = h.commands.send(Command::Killing(reason.clone()));
            }
            // Another node's agent: only its owner may end it.
            None => self.refuse_if_elsewhere(target).await?,
        }
        // The terminal first: whatever the actor is busy with, the agent stops now.
        self.inner.backend.kill(target).await?;
        match handle {
            Some(h) => {
                let _ = h.commands.send(Command::Exited {
                    status: None,
                    reason: "killed".into(),
                });
                // Return once the actor has settled everything and ended.
                if !h.until_ended().await {
                    tracing::warn!(session = %target, "the actor took long to settle a kill");
                }
            }
            None => {
                if let Some(s) = self.inner.store.get_session(target).await? {
                    if s.status.is_live() {
                        let why = reason.as_deref().unwrap_or("killed");
                        self.inner
                            .store
                            .end_session(target, SessionStatus::Dead, why)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives a session a new name (or none). A session may rename itself or its descendants.
    pub async fn rename(
        &self,
        caller: &Caller,
        target: &SessionId,
        name: Option<SessionName>,
    ) -> Result<Session> {
        if caller.session() != Some(target) {
            self.authorize(caller, target, "rename").await?;
        }
        let session = self.inner.store.rename_session(target, name).await?;
        // Views that follow the event stream (sm watch, the dashboard) learn of it.
        let text = match &session.name {
            Some(n) => format!("named {n}"),
            None => "name removed".to_string(),
        };
        self.record(Some(target), EventKind::Note { text }).await;
        Ok(session)
    }

    /// Records what a session says it is working on (`None` clears it). A session may set
    /// its own task or a descendant's.
    pub async fn set_task(
        &self,
        caller: &Caller,
        target: &SessionId,
        task: Option<&str>,
    ) -> Result<Session> {
        if caller.session() != Some(target) {
            self.authorize(caller, target, "set the task of").await?;
        }
        let task = match task {
            Some(t) => Some(sanitize_message(t, 500)?.replace('\n', " ")),
            None => None,
        };
        let session = self.inner.store.set_task(target, task).await?;
        let text = match &session.task {
            Some(t) => format!("task: {t}"),
            None => "task cleared".to_string(),
        };
        self.record(Some(target), EventKind::Note { text }).await;
        Ok(session)
    }
}
