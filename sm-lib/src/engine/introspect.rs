//! Looking at a session: its terminal, a summary of what it does, its subagents and tools,
//! each from one read of the event log.

use std::time::Duration;

use super::{Engine, Subagent, what};
use crate::error::{Error, Result};
use crate::types::{Event, EventKind, SessionId, Timestamp};

impl Engine {
    /// The last `lines` lines of an agent's terminal.
    pub async fn output(&self, id: &SessionId, lines: usize) -> Result<Vec<String>> {
        self.refuse_if_elsewhere(id).await?;
        self.inner.backend.capture_tail(id, lines).await
    }

    /// The agent's visible screen with its colours: each row's text and SGR sequences only
    /// (see [`crate::engine::sanitize::keep_sgr`]), for a person's view.
    pub async fn styled_screen(&self, id: &SessionId) -> Result<Vec<String>> {
        self.refuse_if_elsewhere(id).await?;
        let rows = self.inner.backend.capture_styled(id).await?;
        Ok(rows
            .iter()
            .map(|r| crate::engine::sanitize::keep_sgr(r))
            .collect())
    }

    /// The agent's own subagents (Claude Code's, from its SubagentStart / SubagentStop
    /// hooks), in start order.
    pub async fn subagents(&self, id: &SessionId) -> Result<Vec<Subagent>> {
        let mut list: Vec<Subagent> = Vec::new();
        for event in self.inner.store.events(None, Some(id), 0).await? {
            if let EventKind::Subagent {
                agent_id,
                agent_type,
                running,
            } = event.kind
            {
                match list.iter_mut().find(|s| s.agent_id == agent_id) {
                    Some(s) => {
                        s.running = running;
                        if running {
                            s.started_at = event.at;
                        } else {
                            s.stopped_at = Some(event.at);
                        }
                    }
                    None => list.push(Subagent {
                        agent_id,
                        agent_type,
                        running,
                        started_at: event.at,
                        stopped_at: (!running).then_some(event.at),
                    }),
                }
            }
        }
        Ok(list)
    }

    /// A short summary of what the agent is doing: from the summariser when it answers,
    /// else a heuristic summary that says it is the fallback. `deep` gives the summariser
    /// more context.
    pub async fn what(&self, id: &SessionId, deep: bool) -> Result<what::Summary> {
        let session = self.session(id).await?;
        // Its screen and transcript are on its owner's machine.
        self.refuse_if_elsewhere(id).await?;
        let events = self.inner.store.events(None, Some(id), 0).await?;
        let mut last_message = None;
        let mut last_tool = None;
        for e in &events {
            match &e.kind {
                EventKind::TurnCompleted {
                    last_message: Some(m),
                } => last_message = Some(m.clone()),
                EventKind::ToolUse { tool, target, .. } => {
                    last_tool = Some(
                        format!("{tool} {}", target.as_deref().unwrap_or(""))
                            .trim()
                            .to_string(),
                    )
                }
                _ => {}
            }
        }
        let transcript = what::last_transcript_path(&events);
        let lines = if deep { 200 } else { 60 };
        let screen = self
            .inner
            .backend
            .capture_tail(id, lines)
            .await
            .unwrap_or_default();
        let profile = self.inner.profiles.get(&session.agent).cloned();
        let transcript = match (transcript, profile) {
            (Some(p), Some(profile)) => {
                let max = if deep { 40 } else { 10 };
                tokio::task::spawn_blocking(move || profile.transcript_tail(&p, max))
                    .await
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let in_state_for =
            Duration::from_millis((Timestamp::now().0 - session.status_changed_at.0).max(0) as u64);
        let input = what::SummaryInput {
            session,
            screen,
            transcript,
            last_message,
            last_tool,
            in_state_for,
            deep,
        };
        let attempt = match &self.inner.summariser {
            Some(s) => s
                .summarise(&input)
                .await
                .map(|text| (text, s.name().to_string())),
            None => Err(Error::NotSupported("no summariser is configured".into())),
        };
        Ok(match attempt {
            Ok((summary, source)) => what::Summary {
                summary,
                source,
                fallback_reason: None,
            },
            Err(e) => what::Summary {
                summary: what::fallback_summary(&input),
                source: "fallback".into(),
                fallback_reason: Some(e.to_string()),
            },
        })
    }

    /// The agent's most recent tool uses, newest last.
    pub async fn recent_tools(&self, id: &SessionId, limit: usize) -> Result<Vec<Event>> {
        let mut tools: Vec<Event> = self
            .inner
            .store
            .events(None, Some(id), 0)
            .await?
            .into_iter()
            .filter(|e| matches!(e.kind, EventKind::ToolUse { .. }))
            .collect();
        let skip = tools.len().saturating_sub(limit);
        tools.drain(..skip);
        Ok(tools)
    }
}
