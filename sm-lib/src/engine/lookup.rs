//! Finding sessions (by id, id prefix or name), their families, and who may act on whom.

use super::{Caller, Engine, display_name};
use crate::error::{Error, Result};
use crate::types::{Session, SessionId, SessionName};

impl Engine {
    /// Finds a session by id, by a unique id prefix (8+ characters) or by live name.
    pub async fn resolve(&self, reference: &str) -> Result<Session> {
        // Surrounding spaces are forgiven (copy and paste); a newline or other control
        // character is not: `"w1\n"` must not quietly mean `w1`.
        if reference.chars().any(char::is_control) {
            return Err(Error::InvalidInput(format!(
                "{reference:?} is not a session reference: it contains a control character"
            )));
        }
        let reference = reference.trim_matches(' ');
        if let Ok(id) = reference.parse::<SessionId>() {
            return self
                .inner
                .store
                .get_session(&id)
                .await?
                .ok_or_else(|| Error::SessionNotFound(reference.to_string()));
        }
        // An id prefix wins over a name (names cannot look like ids, but older records may).
        if reference.len() >= 8 && reference.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let lower = reference.to_ascii_lowercase();
            let mut matches: Vec<Session> = self
                .inner
                .store
                .list_sessions()
                .await?
                .into_iter()
                .filter(|s| s.id.as_str().starts_with(&lower))
                .collect();
            if matches.len() > 1 {
                let candidates: Vec<String> = matches.iter().map(display_name).collect();
                return Err(Error::InvalidInput(format!(
                    "{reference:?} matches {} sessions ({}); give more of the id",
                    matches.len(),
                    candidates.join(", ")
                )));
            }
            if let Some(s) = matches.pop() {
                return Ok(s);
            }
        }
        if let Ok(name) = reference.parse::<SessionName>() {
            if let Some(s) = self.inner.store.find_live_by_name(&name).await? {
                return Ok(s);
            }
        }
        Err(Error::SessionNotFound(reference.to_string()))
    }

    /// Every session, oldest first.
    pub async fn sessions(&self) -> Result<Vec<Session>> {
        self.inner.store.list_sessions().await
    }

    /// How many messages wait for each session (queued, or being typed): one store read.
    pub async fn queue_depths(&self) -> Result<std::collections::HashMap<SessionId, usize>> {
        self.waiting_for(None).await
    }

    /// How many messages wait for `session` (queued, or being typed).
    pub async fn queue_depth(&self, session: &SessionId) -> Result<usize> {
        let depths = self.waiting_for(Some(session.clone())).await?;
        Ok(depths.get(session).copied().unwrap_or(0))
    }

    async fn waiting_for(
        &self,
        target: Option<SessionId>,
    ) -> Result<std::collections::HashMap<SessionId, usize>> {
        let waiting = self
            .inner
            .store
            .list_messages(&crate::store::MessageFilter {
                target,
                states: vec![
                    crate::types::MessageState::Queued,
                    crate::types::MessageState::Delivering,
                ],
                limit: 0,
                ..Default::default()
            })
            .await?;
        let mut depths = std::collections::HashMap::new();
        for m in waiting {
            *depths.entry(m.target).or_insert(0) += 1;
        }
        Ok(depths)
    }

    /// The children of `parent` (all descendants when `recursive`).
    pub async fn children(&self, parent: &SessionId, recursive: bool) -> Result<Vec<Session>> {
        let all = self.inner.store.list_sessions().await?;
        let mut out = Vec::new();
        let mut frontier = vec![parent.clone()];
        while let Some(p) = frontier.pop() {
            for s in all.iter().filter(|s| s.parent.as_ref() == Some(&p)) {
                out.push(s.clone());
                if recursive {
                    frontier.push(s.id.clone());
                }
            }
        }
        Ok(out)
    }

    /// Whether `ancestor` is `id`'s parent, grandparent, …
    pub async fn is_ancestor(&self, ancestor: &SessionId, id: &SessionId) -> Result<bool> {
        let mut current = self.inner.store.get_session(id).await?;
        let mut hops = 0;
        while let Some(s) = current {
            match s.parent {
                Some(p) if &p == ancestor => return Ok(true),
                Some(p) if hops < 1000 => {
                    current = self.inner.store.get_session(&p).await?;
                    hops += 1;
                }
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    pub(super) async fn authorize(
        &self,
        caller: &Caller,
        target: &SessionId,
        action: &str,
    ) -> Result<()> {
        match caller {
            Caller::Admin => Ok(()),
            Caller::Session(me) if self.is_ancestor(me, target).await? => Ok(()),
            Caller::Session(_) => Err(Error::Forbidden(format!(
                "only an ancestor of session {target} (or an admin) may {action} it"
            ))),
        }
    }

    /// The registered session `id`, or `SessionNotFound`.
    pub(super) async fn session(&self, id: &SessionId) -> Result<Session> {
        self.inner
            .store
            .get_session(id)
            .await?
            .ok_or_else(|| Error::SessionNotFound(id.to_string()))
    }

    /// The session `id` if it is live; otherwise an error saying why `action` is impossible.
    pub(super) async fn live_session(&self, id: &SessionId, consequence: &str) -> Result<Session> {
        let session = self.session(id).await?;
        if !session.status.is_live() {
            return Err(Error::NotLive {
                name: display_name(&session),
                status: session.status,
                consequence: consequence.into(),
            });
        }
        Ok(session)
    }
}
