//! The [`MessageStore`] trait: sm's durable state — the message queue, the session
//! registry, workspace locks and the append-only event log.
//!
//! The engine holds one `Arc<dyn MessageStore>`. Implementations: [`crate::MemoryStore`]
//! (tests, embedding without persistence) and `sm-store-sqlite` (the server's default).
//! Every implementation must pass [`crate::conformance::store`] (feature `conformance`).

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{
    DeliveryMode, Event, EventId, EventKind, Lock, LockKind, LockRequest, Message, MessageId,
    MessageState, NewMessage, Session, SessionId, SessionName, SessionStatus, Timestamp, Wait,
    Workspace,
};

/// Which messages [`MessageStore::list_messages`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Only messages to this session.
    pub target: Option<SessionId>,
    /// Only messages in one of these states (empty: any state).
    pub states: Vec<MessageState>,
    /// At most this many (0: no limit).
    pub limit: usize,
    /// With a limit: the newest that many instead of the oldest (still in id order).
    pub newest: bool,
}

/// The message a repeated `client_key` finds, if the repeat is the same message; the
/// shared rule of [`MessageStore::enqueue`] for every store.
pub fn same_message_for_key(existing: Message, repeat: &NewMessage) -> Result<Message> {
    if existing.target == repeat.target && existing.text == repeat.text {
        Ok(existing)
    } else {
        Err(crate::Error::InvalidInput(
            "this client key was already used for a different message".into(),
        ))
    }
}

/// A session to register together with its first message ([`MessageStore::create_session`]).
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The record, normally in the `Starting` state.
    pub session: Session,
    /// The first message for it (its prompt), queued in the same transaction. Its `target`
    /// is the new session's id.
    pub first_message: Option<NewMessage>,
    /// A key chosen by the caller: creating again with the same key returns the session
    /// already created instead of a second one, so a spawn may be retried safely.
    pub client_key: Option<String>,
}

/// What [`MessageStore::create_session`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The session, as stored now.
    pub session: Session,
    /// Its first message, as stored now, when one was given.
    pub first_message: Option<Message>,
    /// False when a repeated `client_key` found a session created before: nothing was added.
    pub inserted: bool,
}

/// What a store call that may or may not add something returns: the value as stored now,
/// and whether this call added it (a repeated idempotency key, or a lock its holder already
/// had, adds nothing). Reads as the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted<T> {
    /// The value as stored now.
    pub value: T,
    /// True when this call added it; false when it was there already.
    pub inserted: bool,
}

impl<T> Inserted<T> {
    /// Newly added.
    pub fn new(value: T) -> Self {
        Inserted {
            value,
            inserted: true,
        }
    }

    /// Found as it was.
    pub fn existing(value: T) -> Self {
        Inserted {
            value,
            inserted: false,
        }
    }

    /// The value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> std::ops::Deref for Inserted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Refuses a [`NewSession`] whose first message is for another session; the shared rule
/// of [`MessageStore::create_session`] for every store.
pub fn check_new_session(new: &NewSession) -> Result<()> {
    match &new.first_message {
        Some(m) if m.target != new.session.id => Err(crate::Error::InvalidInput(
            "a new session's first message must target it".into(),
        )),
        _ => Ok(()),
    }
}

/// Refuses a live status as the status a session ends with; the shared rule of
/// [`MessageStore::end_session`] for every store.
pub fn check_end_status(status: SessionStatus) -> Result<()> {
    if status.is_live() {
        Err(crate::Error::InvalidInput(format!(
            "{status} is a live status; a session ends stopped or dead"
        )))
    } else {
        Ok(())
    }
}

/// Durable state of sm.
///
/// # Shared contract
/// - **Atomic**: every method is one transaction; after an error nothing it was asked to
///   change has changed.
/// - **Durable**: when a mutating method returns `Ok`, the change survives the process being
///   killed (implementations without persistence, like [`crate::MemoryStore`], say so).
///   What a caller is told was accepted — [`MessageStore::enqueue`],
///   [`MessageStore::create_session`], [`MessageStore::acquire_lock`],
///   [`MessageStore::add_wait`] — also survives a power loss when it returns. The engine's
///   own progress ([`MessageStore::claim_next`], [`MessageStore::mark_delivered`],
///   [`MessageStore::mark_failed`], [`MessageStore::requeue`], [`MessageStore::set_status`],
///   the event log) may reach that point a little later (the SQLite store: within 50 ms, or
///   at the next fsynced commit): a power loss also ends every agent, so a delivery step it
///   takes back concerns an agent that is gone, and nothing accepted is lost.
/// - **Safe to share**: any number of tasks may call any method concurrently; implementations
///   that can be opened by several processes (SQLite) keep these guarantees across processes.
/// - **Errors**: [`crate::Error::Store`] means the store itself failed (I/O, corruption, busy
///   past its timeout); the other variants are the specific refusals documented per method.
/// - **Ordering**: message ids and event ids increase in commit order.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    // ----- session registry -----

    /// Registers a new session.
    ///
    /// Errors: [`crate::Error::SessionExists`] when the id is taken (by any session, live or
    /// not); [`crate::Error::NameTaken`] when a *live* session has the same name.
    async fn insert_session(&self, session: &Session) -> Result<()>;

    /// Registers a new session and queues its first message in one transaction: either
    /// both are stored or neither is.
    ///
    /// With a `client_key` already used, nothing is added and the session created under
    /// that key is returned as it is now (whatever its status), with `inserted: false` and
    /// the first message it was created with.
    ///
    /// Errors: as [`MessageStore::insert_session`]; [`crate::Error::InvalidInput`] when the
    /// first message does not target the new session.
    async fn create_session(&self, new: NewSession) -> Result<Created>;

    /// Ends a session: sets a status that is not live (`stopped` or `dead`) and records why,
    /// in one step. Ending an ended session again keeps its first reason and status
    /// (idempotent).
    ///
    /// Errors: [`crate::Error::SessionNotFound`]; [`crate::Error::InvalidInput`] for a live
    /// status.
    async fn end_session(
        &self,
        id: &SessionId,
        status: SessionStatus,
        reason: &str,
    ) -> Result<Session>;

    /// The session with this id, if registered (live or not).
    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>>;

    /// The *live* session with this name, if any. Dead and stopped sessions keep their name
    /// for the record but are never found by it.
    async fn find_live_by_name(&self, name: &SessionName) -> Result<Option<Session>>;

    /// Every registered session, oldest first.
    async fn list_sessions(&self) -> Result<Vec<Session>>;

    /// Sets a session's status and returns the updated record. Setting the status it already
    /// has is allowed and leaves `status_changed_at` as it was (idempotent).
    ///
    /// Errors: [`crate::Error::SessionNotFound`]; [`crate::Error::NameTaken`] when reviving a
    /// session (to a live status) whose name another live session took meanwhile.
    async fn set_status(&self, id: &SessionId, status: SessionStatus) -> Result<Session>;

    /// Gives a session a new name (`None` removes it) and returns the updated record.
    ///
    /// Errors: [`crate::Error::SessionNotFound`]; [`crate::Error::NameTaken`] when another
    /// live session has the name (renaming a session to its own name is a no-op).
    async fn rename_session(&self, id: &SessionId, name: Option<SessionName>) -> Result<Session>;

    /// Sets (or, with `None`, clears) what a session says it is working on and returns the
    /// updated record.
    ///
    /// Errors: [`crate::Error::SessionNotFound`].
    async fn set_task(&self, id: &SessionId, task: Option<String>) -> Result<Session>;

    /// Removes a session record and its messages. Only for sessions that are not live:
    /// a live session is refused with [`crate::Error::InvalidInput`]. Removing an unknown id
    /// returns `Ok(false)` (idempotent).
    async fn delete_session(&self, id: &SessionId) -> Result<bool>;

    // ----- message queue -----

    /// Accepts a message in state `Queued` with 0 attempts and returns it with its id,
    /// `inserted`. Durable before it returns.
    ///
    /// With a `client_key` already used, nothing is added: the message stored under that
    /// key is returned as it is now (whatever its state), not `inserted`. The same key with a different
    /// target or text is refused with [`crate::Error::InvalidInput`].
    ///
    /// Errors: [`crate::Error::SessionNotFound`] when the target is not registered. (Whether
    /// a registered target may receive messages is the engine's decision, not the store's.)
    async fn enqueue(&self, message: NewMessage) -> Result<Inserted<Message>>;

    /// Atomically takes the next deliverable message for `target` among `modes`: the oldest
    /// `Queued` message of the highest-priority mode present (urgent, then important, then
    /// sequential; FIFO within a mode), moves it to `Delivering`, adds one attempt and
    /// returns it. `Ok(None)` when there is none.
    ///
    /// Exclusive: two concurrent claimers (tasks or processes) never receive the same
    /// message.
    async fn claim_next(
        &self,
        target: &SessionId,
        modes: &[DeliveryMode],
    ) -> Result<Option<Message>>;

    /// The message [`MessageStore::claim_next`] would take now, without taking it.
    async fn peek_next(
        &self,
        target: &SessionId,
        modes: &[DeliveryMode],
    ) -> Result<Option<Message>>;

    /// Marks a `Delivering` message `Delivered`. Marking a `Delivered` message again is a
    /// no-op returning it (idempotent).
    ///
    /// Errors: [`crate::Error::MessageNotFound`]; [`crate::Error::InvalidTransition`] from
    /// `Queued` or `Failed`.
    async fn mark_delivered(&self, id: MessageId) -> Result<Message>;

    /// Marks a `Queued` or `Delivering` message `Failed` with a reason. Failing a `Failed`
    /// message again is a no-op that keeps the first reason (idempotent).
    ///
    /// Errors: [`crate::Error::MessageNotFound`]; [`crate::Error::InvalidTransition`] from
    /// `Delivered`.
    async fn mark_failed(&self, id: MessageId, reason: &str) -> Result<Message>;

    /// Returns a `Delivering` message to `Queued` (keeping its id, so its place in FIFO
    /// order, and its attempt count) with the reason the attempt did not finish. Used when
    /// the engine knows the text never reached the target.
    ///
    /// Errors: [`crate::Error::MessageNotFound`]; [`crate::Error::InvalidTransition`] from
    /// any state but `Delivering`.
    async fn requeue(&self, id: MessageId, reason: &str) -> Result<Message>;

    /// Fails every `Queued` and `Delivering` message to `target` with `reason` and returns
    /// them (the engine tells their senders). Used when a session dies.
    async fn fail_pending(&self, target: &SessionId, reason: &str) -> Result<Vec<Message>>;

    /// The message with this id, if any.
    async fn get_message(&self, id: MessageId) -> Result<Option<Message>>;

    /// Messages matching `filter`, in id order.
    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>>;

    // ----- locks -----

    /// Takes the lock on `request.workspace` for `request.holder`.
    ///
    /// - Unlocked, or locked by a session that is no longer live (or no longer registered):
    ///   the lock is taken and returned, `inserted`.
    /// - Already held by the same holder: the reason and kind are updated and the original
    ///   `acquired_at` is kept (idempotent), not `inserted`. An explicit lock is never
    ///   downgraded to auto.
    /// - Held by another live session: [`crate::Error::LockConflict`] with the current lock.
    async fn acquire_lock(&self, request: &LockRequest) -> Result<Inserted<Lock>>;

    /// Releases `holder`'s lock on `workspace`. `Ok(None)` when the workspace is not locked
    /// (idempotent); `Ok(Some(lock))` with the released lock.
    ///
    /// Errors: [`crate::Error::LockConflict`] when another session holds it (it stays held).
    async fn release_lock(&self, workspace: &Workspace, holder: &SessionId)
    -> Result<Option<Lock>>;

    /// Releases every lock `holder` has — only those of `kind` when given — and returns
    /// them. Used at turn end (auto locks) and when a session dies (all).
    async fn release_locks_of(
        &self,
        holder: &SessionId,
        kind: Option<LockKind>,
    ) -> Result<Vec<Lock>>;

    /// The current lock on `workspace`, if any (whether or not its holder is live).
    async fn get_lock(&self, workspace: &Workspace) -> Result<Option<Lock>>;

    /// Every current lock, ordered by workspace.
    async fn list_locks(&self) -> Result<Vec<Lock>>;

    // ----- waits -----

    /// Registers a wait and returns it with its id.
    ///
    /// Errors: [`crate::Error::SessionNotFound`] when the target is not registered.
    async fn add_wait(
        &self,
        waiter: Option<&SessionId>,
        target: &SessionId,
        deadline: Timestamp,
    ) -> Result<Wait>;

    /// Removes a wait; `Ok(false)` when it was already gone (idempotent).
    async fn remove_wait(&self, id: i64) -> Result<bool>;

    /// Every wait on `target` (all waits when `None`), oldest first.
    async fn list_waits(&self, target: Option<&SessionId>) -> Result<Vec<Wait>>;

    // ----- event log -----

    /// Appends an event stamped now and returns it with its id. Append-only: events are
    /// never changed or reordered.
    async fn append_event(&self, session: Option<&SessionId>, kind: EventKind) -> Result<Event>;

    /// Appends several events about one session in one transaction, in the order given,
    /// and returns them with their ids (consecutive in that order).
    async fn append_events(
        &self,
        session: Option<&SessionId>,
        kinds: Vec<EventKind>,
    ) -> Result<Vec<Event>>;

    /// Events with id greater than `after` (all when `None`), oldest first, at most `limit`
    /// (0: no limit), optionally only those about `session`.
    async fn events(
        &self,
        after: Option<EventId>,
        session: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Event>>;

    /// Events with id less than `before` (all when `None`), **newest first**, at most
    /// `limit` (0: no limit), optionally only those about `session`: a log read backwards
    /// one page at a time.
    async fn events_before(
        &self,
        before: Option<EventId>,
        session: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Event>>;
}
