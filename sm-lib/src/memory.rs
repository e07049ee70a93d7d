//! [`MemoryStore`]: a [`MessageStore`] kept in process memory.
//!
//! It honours every part of the store contract except durability: everything is gone when
//! the process ends. Use it in tests and in embeddings that do not need to survive a restart.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::store::{Created, Inserted, MessageFilter, MessageStore, NewSession};
use crate::types::{
    DeliveryMode, Event, EventId, EventKind, Lock, LockKind, LockRequest, Message, MessageId,
    MessageState, NewMessage, Session, SessionId, SessionName, SessionStatus, Timestamp, Wait,
    Workspace,
};

#[derive(Default)]
struct State {
    sessions: Vec<Session>,
    messages: BTreeMap<MessageId, Message>,
    /// Senders' idempotency keys.
    client_keys: std::collections::HashMap<String, MessageId>,
    /// Spawners' idempotency keys, with the first message each session was created with.
    session_keys: std::collections::HashMap<String, (SessionId, Option<MessageId>)>,
    next_message: i64,
    locks: BTreeMap<Workspace, Lock>,
    events: Vec<Event>,
    waits: Vec<Wait>,
    next_wait: i64,
}

impl State {
    fn session_index(&self, id: &SessionId) -> Result<usize> {
        self.sessions
            .iter()
            .position(|s| &s.id == id)
            .ok_or_else(|| Error::SessionNotFound(id.to_string()))
    }

    /// Refuses `name` if a live session other than `except` has it.
    fn check_name_free(&self, name: &SessionName, except: &SessionId) -> Result<()> {
        match self
            .sessions
            .iter()
            .find(|s| &s.id != except && s.status.is_live() && s.name.as_ref() == Some(name))
        {
            Some(other) => Err(Error::NameTaken {
                name: name.clone(),
                holder: other.id.clone(),
            }),
            None => Ok(()),
        }
    }

    fn message_mut(&mut self, id: MessageId) -> Result<&mut Message> {
        self.messages.get_mut(&id).ok_or(Error::MessageNotFound(id))
    }

    /// The id of the message `claim_next` would take.
    fn next_for(&self, target: &SessionId, modes: &[DeliveryMode]) -> Option<MessageId> {
        // BTreeMap iterates in id order, so the first match per mode is the oldest.
        self.messages
            .values()
            .filter(|m| {
                &m.target == target && m.state == MessageState::Queued && modes.contains(&m.mode)
            })
            .min_by_key(|m| (std::cmp::Reverse(m.mode.priority()), m.id))
            .map(|m| m.id)
    }

    fn insert_session(&mut self, session: &Session) -> Result<()> {
        if self.sessions.iter().any(|s| s.id == session.id) {
            return Err(Error::SessionExists(session.id.clone()));
        }
        if let (Some(name), true) = (&session.name, session.status.is_live()) {
            self.check_name_free(name, &session.id)?;
        }
        self.sessions.push(session.clone());
        Ok(())
    }

    fn enqueue(&mut self, message: NewMessage) -> Result<Inserted<Message>> {
        self.session_index(&message.target)?;
        if let Some(key) = &message.client_key {
            if let Some(existing) = self
                .client_keys
                .get(key)
                .and_then(|id| self.messages.get(id))
            {
                return crate::store::same_message_for_key(existing.clone(), &message)
                    .map(Inserted::existing);
            }
        }
        self.next_message += 1;
        let now = Timestamp::now();
        let stored = Message {
            id: MessageId(self.next_message),
            target: message.target,
            sender: message.sender,
            text: message.text,
            mode: message.mode,
            state: MessageState::Queued,
            attempts: 0,
            reason: None,
            created_at: now,
            updated_at: now,
        };
        if let Some(key) = message.client_key {
            self.client_keys.insert(key, stored.id);
        }
        self.messages.insert(stored.id, stored.clone());
        Ok(Inserted::new(stored))
    }

    fn append_event(&mut self, session: Option<&SessionId>, kind: EventKind) -> Event {
        let event = Event {
            id: EventId(self.events.len() as i64 + 1),
            at: Timestamp::now(),
            session: session.cloned(),
            kind,
        };
        self.events.push(event.clone());
        event
    }

    fn holder_is_live(&self, holder: &SessionId) -> bool {
        self.sessions
            .iter()
            .any(|s| &s.id == holder && s.status.is_live())
    }
}

/// An in-memory [`MessageStore`]. Cheap to create; not durable.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves to `to` every live session recorded on node `from`, returning them: what a
    /// [`crate::MemoryCluster`] node does when it adopts a dead node's sessions.
    pub(crate) fn move_live_sessions(&self, from: &str, to: &str) -> Vec<Session> {
        let mut st = self.lock();
        let mut moved = Vec::new();
        for s in st.sessions.iter_mut() {
            if s.status.is_live() && s.node.as_deref() == Some(from) {
                s.node = Some(to.to_string());
                moved.push(s.clone());
            }
        }
        moved
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters more than losing the whole store, so recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn transition(message: &Message, to: MessageState) -> Error {
    Error::InvalidTransition {
        message: message.id,
        from: message.state,
        to,
    }
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn insert_session(&self, session: &Session) -> Result<()> {
        self.lock().insert_session(session)
    }

    async fn create_session(&self, new: NewSession) -> Result<Created> {
        let mut st = self.lock();
        if let Some((id, first)) = new.client_key.as_ref().and_then(|k| st.session_keys.get(k)) {
            let session = st.sessions[st.session_index(id)?].clone();
            let first_message = first.and_then(|m| st.messages.get(&m).cloned());
            return Ok(Created {
                session,
                first_message,
                inserted: false,
            });
        }
        crate::store::check_new_session(&new)?;
        // Check everything before changing anything, so a refusal leaves no trace.
        if let Some(key) = new
            .first_message
            .as_ref()
            .and_then(|m| m.client_key.as_ref())
        {
            if st.client_keys.contains_key(key) {
                return Err(Error::InvalidInput(
                    "this client key was already used for a different message".into(),
                ));
            }
        }
        st.insert_session(&new.session)?;
        let first_message = match new.first_message {
            Some(m) => Some(st.enqueue(m)?.into_inner()),
            None => None,
        };
        if let Some(key) = new.client_key {
            st.session_keys.insert(
                key,
                (new.session.id.clone(), first_message.as_ref().map(|m| m.id)),
            );
        }
        Ok(Created {
            session: new.session,
            first_message,
            inserted: true,
        })
    }

    async fn end_session(
        &self,
        id: &SessionId,
        status: SessionStatus,
        reason: &str,
    ) -> Result<Session> {
        crate::store::check_end_status(status)?;
        let mut st = self.lock();
        let i = st.session_index(id)?;
        let s = &mut st.sessions[i];
        if s.status.is_live() {
            s.status = status;
            s.status_changed_at = Timestamp::now();
            s.end_reason = Some(reason.to_string());
        }
        Ok(s.clone())
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>> {
        Ok(self.lock().sessions.iter().find(|s| &s.id == id).cloned())
    }

    async fn find_live_by_name(&self, name: &SessionName) -> Result<Option<Session>> {
        Ok(self
            .lock()
            .sessions
            .iter()
            .find(|s| s.status.is_live() && s.name.as_ref() == Some(name))
            .cloned())
    }

    async fn list_sessions(&self) -> Result<Vec<Session>> {
        Ok(self.lock().sessions.clone())
    }

    async fn set_status(&self, id: &SessionId, status: SessionStatus) -> Result<Session> {
        let mut st = self.lock();
        let i = st.session_index(id)?;
        let current = st.sessions[i].clone();
        if current.status == status {
            return Ok(current);
        }
        if status.is_live() && !current.status.is_live() {
            if let Some(name) = &current.name {
                st.check_name_free(name, id)?;
            }
        }
        let s = &mut st.sessions[i];
        s.status = status;
        s.status_changed_at = Timestamp::now();
        Ok(s.clone())
    }

    async fn rename_session(&self, id: &SessionId, name: Option<SessionName>) -> Result<Session> {
        let mut st = self.lock();
        let i = st.session_index(id)?;
        if let (Some(name), true) = (&name, st.sessions[i].status.is_live()) {
            st.check_name_free(name, id)?;
        }
        st.sessions[i].name = name;
        Ok(st.sessions[i].clone())
    }

    async fn set_task(&self, id: &SessionId, task: Option<String>) -> Result<Session> {
        let mut st = self.lock();
        let i = st.session_index(id)?;
        st.sessions[i].task = task;
        Ok(st.sessions[i].clone())
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool> {
        let mut st = self.lock();
        let Ok(i) = st.session_index(id) else {
            return Ok(false);
        };
        if st.sessions[i].status.is_live() {
            return Err(Error::InvalidInput(format!(
                "session {id} is still live; kill it before deleting it"
            )));
        }
        st.sessions.remove(i);
        st.messages.retain(|_, m| &m.target != id);
        st.waits.retain(|w| &w.target != id);
        Ok(true)
    }

    async fn enqueue(&self, message: NewMessage) -> Result<Inserted<Message>> {
        self.lock().enqueue(message)
    }

    async fn peek_next(
        &self,
        target: &SessionId,
        modes: &[DeliveryMode],
    ) -> Result<Option<Message>> {
        let st = self.lock();
        Ok(st
            .next_for(target, modes)
            .and_then(|id| st.messages.get(&id).cloned()))
    }

    async fn claim_next(
        &self,
        target: &SessionId,
        modes: &[DeliveryMode],
    ) -> Result<Option<Message>> {
        let mut st = self.lock();
        let Some(id) = st.next_for(target, modes) else {
            return Ok(None);
        };
        let m = st.message_mut(id)?;
        m.state = MessageState::Delivering;
        m.attempts += 1;
        m.updated_at = Timestamp::now();
        Ok(Some(m.clone()))
    }

    async fn mark_delivered(&self, id: MessageId) -> Result<Message> {
        let mut st = self.lock();
        let m = st.message_mut(id)?;
        match m.state {
            MessageState::Delivered => {}
            MessageState::Delivering => {
                m.state = MessageState::Delivered;
                m.updated_at = Timestamp::now();
            }
            MessageState::Queued | MessageState::Failed => {
                return Err(transition(m, MessageState::Delivered));
            }
        }
        Ok(m.clone())
    }

    async fn mark_failed(&self, id: MessageId, reason: &str) -> Result<Message> {
        let mut st = self.lock();
        let m = st.message_mut(id)?;
        match m.state {
            MessageState::Failed => {}
            MessageState::Queued | MessageState::Delivering => {
                m.state = MessageState::Failed;
                m.reason = Some(reason.to_string());
                m.updated_at = Timestamp::now();
            }
            MessageState::Delivered => return Err(transition(m, MessageState::Failed)),
        }
        Ok(m.clone())
    }

    async fn requeue(&self, id: MessageId, reason: &str) -> Result<Message> {
        let mut st = self.lock();
        let m = st.message_mut(id)?;
        if m.state != MessageState::Delivering {
            return Err(transition(m, MessageState::Queued));
        }
        m.state = MessageState::Queued;
        m.reason = Some(reason.to_string());
        m.updated_at = Timestamp::now();
        Ok(m.clone())
    }

    async fn fail_pending(&self, target: &SessionId, reason: &str) -> Result<Vec<Message>> {
        let mut st = self.lock();
        let now = Timestamp::now();
        let mut failed = Vec::new();
        for m in st.messages.values_mut() {
            if &m.target == target
                && matches!(m.state, MessageState::Queued | MessageState::Delivering)
            {
                m.state = MessageState::Failed;
                m.reason = Some(reason.to_string());
                m.updated_at = now;
                failed.push(m.clone());
            }
        }
        Ok(failed)
    }

    async fn get_message(&self, id: MessageId) -> Result<Option<Message>> {
        Ok(self.lock().messages.get(&id).cloned())
    }

    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>> {
        let st = self.lock();
        let matching = st.messages.values().filter(|m| {
            filter.target.as_ref().is_none_or(|t| &m.target == t)
                && (filter.states.is_empty() || filter.states.contains(&m.state))
        });
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let matching: Vec<&Message> = matching.collect();
        let skip = if filter.newest {
            matching.len().saturating_sub(limit)
        } else {
            0
        };
        Ok(matching
            .into_iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn acquire_lock(&self, request: &LockRequest) -> Result<Inserted<Lock>> {
        let mut st = self.lock();
        if let Some(current) = st.locks.get(&request.workspace) {
            if current.holder == request.holder {
                let kind = if current.kind == LockKind::Explicit {
                    LockKind::Explicit
                } else {
                    request.kind
                };
                let updated = Lock {
                    reason: request.reason.clone(),
                    kind,
                    ..current.clone()
                };
                st.locks.insert(request.workspace.clone(), updated.clone());
                return Ok(Inserted::existing(updated));
            }
            if st.holder_is_live(&current.holder) {
                return Err(Error::LockConflict(Box::new(current.clone())));
            }
        }
        let lock = Lock {
            workspace: request.workspace.clone(),
            holder: request.holder.clone(),
            reason: request.reason.clone(),
            kind: request.kind,
            acquired_at: Timestamp::now(),
        };
        st.locks.insert(request.workspace.clone(), lock.clone());
        Ok(Inserted::new(lock))
    }

    async fn release_lock(
        &self,
        workspace: &Workspace,
        holder: &SessionId,
    ) -> Result<Option<Lock>> {
        let mut st = self.lock();
        match st.locks.get(workspace) {
            None => Ok(None),
            Some(current) if &current.holder != holder => {
                Err(Error::LockConflict(Box::new(current.clone())))
            }
            Some(_) => Ok(st.locks.remove(workspace)),
        }
    }

    async fn release_locks_of(
        &self,
        holder: &SessionId,
        kind: Option<LockKind>,
    ) -> Result<Vec<Lock>> {
        let mut st = self.lock();
        let (released, kept): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut st.locks)
            .into_iter()
            .partition(|(_, l)| &l.holder == holder && kind.is_none_or(|k| l.kind == k));
        st.locks = kept;
        Ok(released.into_values().collect())
    }

    async fn get_lock(&self, workspace: &Workspace) -> Result<Option<Lock>> {
        Ok(self.lock().locks.get(workspace).cloned())
    }

    async fn list_locks(&self) -> Result<Vec<Lock>> {
        Ok(self.lock().locks.values().cloned().collect())
    }

    async fn add_wait(
        &self,
        waiter: Option<&SessionId>,
        target: &SessionId,
        deadline: Timestamp,
    ) -> Result<Wait> {
        let mut st = self.lock();
        st.session_index(target)?;
        st.next_wait += 1;
        let wait = Wait {
            id: st.next_wait,
            waiter: waiter.cloned(),
            target: target.clone(),
            deadline,
            created_at: Timestamp::now(),
        };
        st.waits.push(wait.clone());
        Ok(wait)
    }

    async fn remove_wait(&self, id: i64) -> Result<bool> {
        let mut st = self.lock();
        let before = st.waits.len();
        st.waits.retain(|w| w.id != id);
        Ok(st.waits.len() != before)
    }

    async fn list_waits(&self, target: Option<&SessionId>) -> Result<Vec<Wait>> {
        Ok(self
            .lock()
            .waits
            .iter()
            .filter(|w| target.is_none_or(|t| &w.target == t))
            .cloned()
            .collect())
    }

    async fn append_event(&self, session: Option<&SessionId>, kind: EventKind) -> Result<Event> {
        Ok(self.lock().append_event(session, kind))
    }

    async fn append_events(
        &self,
        session: Option<&SessionId>,
        kinds: Vec<EventKind>,
    ) -> Result<Vec<Event>> {
        let mut st = self.lock();
        Ok(kinds
            .into_iter()
            .map(|k| st.append_event(session, k))
            .collect())
    }

    async fn events(
        &self,
        after: Option<EventId>,
        session: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let st = self.lock();
        let later = st.events.iter().filter(|e| after.is_none_or(|a| e.id > a));
        Ok(page_of(later, session, limit))
    }

    async fn events_before(
        &self,
        before: Option<EventId>,
        session: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let st = self.lock();
        let earlier = st
            .events
            .iter()
            .rev()
            .filter(|e| before.is_none_or(|b| e.id < b));
        Ok(page_of(earlier, session, limit))
    }
}

/// At most `limit` (0: all) of `events`, in their order, only those about `session` if given.
fn page_of<'a>(
    events: impl Iterator<Item = &'a Event>,
    session: Option<&SessionId>,
    limit: usize,
) -> Vec<Event> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    events
        .filter(|e| session.is_none_or(|s| e.session.as_ref() == Some(s)))
        .take(limit)
        .cloned()
        .collect()
}
