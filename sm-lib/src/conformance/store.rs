//! The [`MessageStore`] conformance suite.
//!
//! Run it from an implementation's tests with [`crate::message_store_conformance!`], giving
//! an async factory that returns a fresh, empty store and a guard that keeps whatever backs
//! it (a temporary directory, say) alive for the test:
//!
//! ```ignore
//! async fn fresh() -> (Arc<dyn MessageStore>, tempfile::TempDir) { todo!() }
//! sm_lib::message_store_conformance!(fresh);
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Error;
use crate::store::{MessageFilter, MessageStore, NewSession};
use crate::types::{
    AgentKind, DeliveryMode, EventKind, LockKind, LockRequest, MessageState, NewMessage, Session,
    SessionId, SessionName, SessionStatus, Timestamp, Workspace,
};

/// Generates one `#[tokio::test]` per conformance case, each on a fresh store from `$make`.
#[macro_export]
macro_rules! message_store_conformance {
    ($make:path) => {
        $crate::message_store_conformance!(@cases $make;
            registry_round_trips_every_field,
            registry_refuses_duplicates_and_unknown_ids,
            setting_the_same_status_is_idempotent,
            only_dead_sessions_can_be_deleted,
            names_are_unique_among_live_sessions_only,
            enqueue_requires_a_registered_target,
            a_repeated_client_key_returns_the_first_message,
            claims_are_fifo_within_each_mode,
            urgent_then_important_then_sequential,
            claim_only_takes_the_modes_asked_for,
            claims_are_exclusive_under_concurrency,
            delivered_is_terminal_and_idempotent,
            failed_is_terminal_and_keeps_the_first_reason,
            requeue_keeps_fifo_place_and_attempts,
            fail_pending_fails_only_unfinished_messages_of_the_target,
            list_messages_filters_by_target_state_and_limit,
            locks_conflict_between_live_sessions,
            relocking_by_the_holder_keeps_it,
            a_lock_of_a_dead_holder_is_taken_over,
            releasing_all_locks_of_a_holder_by_kind,
            event_log_keeps_append_order_and_filters,
            waits_are_kept_until_removed,
            tasks_are_set_and_cleared,
            a_session_and_its_first_message_are_created_together,
            a_repeated_spawn_key_returns_the_first_session,
            ending_a_session_records_why_once,
            peek_shows_the_next_claim_without_taking_it,
            a_batch_of_events_is_appended_in_order,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = $make().await;
                $crate::conformance::store::$case(store).await;
            }
        )*
    };
}

type Store = Arc<dyn MessageStore>;

fn session(name: Option<&str>) -> Session {
    let mut s = Session::new(
        SessionId::new_random(),
        AgentKind::Fake,
        PathBuf::from("/tmp/work"),
    );
    s.name = name.map(|n| n.parse().expect("valid test name"));
    s
}

async fn registered(store: &Store, name: Option<&str>) -> Session {
    let s = session(name);
    store.insert_session(&s).await.expect("insert session");
    s
}

fn msg(target: &SessionId, text: &str, mode: DeliveryMode) -> NewMessage {
    NewMessage {
        target: target.clone(),
        sender: None,
        text: text.to_string(),
        mode,
        client_key: None,
    }
}

async fn claim_texts(store: &Store, target: &SessionId, modes: &[DeliveryMode]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = store.claim_next(target, modes).await.expect("claim") {
        out.push(m.text);
    }
    out
}

/// Every field of a session survives insert → get and appears in list.
pub async fn registry_round_trips_every_field(store: Store) {
    let mut s = session(Some("worker-1"));
    s.parent = Some(SessionId::new_random());
    s.model = Some("sonnet".into());
    s.agent = AgentKind::Claude;
    s.working_dir = PathBuf::from("/srv/repo with space/ünï");
    s.task = Some("porting the parser ✓".into());
    store.insert_session(&s).await.expect("insert");
    assert_eq!(
        store.get_session(&s.id).await.expect("get"),
        Some(s.clone())
    );
    let other = registered(&store, None).await;
    let listed = store.list_sessions().await.expect("list");
    assert_eq!(listed, vec![s.clone(), other], "list is oldest first");
    let found = store
        .find_live_by_name(&"worker-1".parse().expect("name"))
        .await
        .expect("find");
    assert_eq!(found.map(|f| f.id), Some(s.id));
}

/// Duplicate ids are refused; unknown ids are `None` or `SessionNotFound`.
pub async fn registry_refuses_duplicates_and_unknown_ids(store: Store) {
    let s = registered(&store, None).await;
    let err = store.insert_session(&s).await.expect_err("duplicate id");
    assert!(
        matches!(err, Error::SessionExists(ref id) if id == &s.id),
        "{err:?}"
    );
    let unknown = SessionId::new_random();
    assert_eq!(store.get_session(&unknown).await.expect("get"), None);
    let err = store
        .set_status(&unknown, SessionStatus::Idle)
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::SessionNotFound(_)), "{err:?}");
    let err = store
        .rename_session(&unknown, None)
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::SessionNotFound(_)), "{err:?}");
}

/// A status change stamps the time; re-setting the same status does not.
pub async fn setting_the_same_status_is_idempotent(store: Store) {
    let s = registered(&store, None).await;
    let idle = store
        .set_status(&s.id, SessionStatus::Idle)
        .await
        .expect("idle");
    assert_eq!(idle.status, SessionStatus::Idle);
    assert!(idle.status_changed_at >= s.status_changed_at);
    let again = store
        .set_status(&s.id, SessionStatus::Idle)
        .await
        .expect("idle again");
    assert_eq!(again, idle);
    let fetched = store.get_session(&s.id).await.expect("get");
    assert_eq!(fetched, Some(idle));
}

/// Live sessions cannot be deleted; dead ones can, once; their messages go with them.
pub async fn only_dead_sessions_can_be_deleted(store: Store) {
    let s = registered(&store, None).await;
    store
        .enqueue(msg(&s.id, "hello", DeliveryMode::Sequential))
        .await
        .expect("enqueue");
    let err = store.delete_session(&s.id).await.expect_err("live");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    store
        .set_status(&s.id, SessionStatus::Dead)
        .await
        .expect("dead");
    assert!(store.delete_session(&s.id).await.expect("delete"));
    assert!(!store.delete_session(&s.id).await.expect("delete again"));
    assert_eq!(store.get_session(&s.id).await.expect("get"), None);
    let left = store
        .list_messages(&MessageFilter {
            target: Some(s.id.clone()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(
        left.is_empty(),
        "messages of a deleted session remain: {left:?}"
    );
}

/// A live session's name cannot be used by another live session; dead ones free it.
pub async fn names_are_unique_among_live_sessions_only(store: Store) {
    let name: SessionName = "em".parse().expect("name");
    let first = registered(&store, Some("em")).await;
    let second = session(Some("em"));
    let err = store.insert_session(&second).await.expect_err("taken");
    assert!(
        matches!(err, Error::NameTaken { ref holder, .. } if holder == &first.id),
        "{err:?}"
    );

    let other = registered(&store, Some("other")).await;
    let err = store
        .rename_session(&other.id, Some(name.clone()))
        .await
        .expect_err("rename onto a live name");
    assert!(matches!(err, Error::NameTaken { .. }), "{err:?}");
    let same = store
        .rename_session(&first.id, Some(name.clone()))
        .await
        .expect("renaming to its own name");
    assert_eq!(same.name, Some(name.clone()));

    store
        .set_status(&first.id, SessionStatus::Dead)
        .await
        .expect("dead");
    assert_eq!(store.find_live_by_name(&name).await.expect("find"), None);
    store
        .insert_session(&second)
        .await
        .expect("a dead session's name is free");
    let found = store.find_live_by_name(&name).await.expect("find");
    assert_eq!(found.map(|s| s.id), Some(second.id.clone()));

    let err = store
        .set_status(&first.id, SessionStatus::Idle)
        .await
        .expect_err("reviving onto a taken name");
    assert!(matches!(err, Error::NameTaken { .. }), "{err:?}");
    let still = store.get_session(&first.id).await.expect("get");
    assert_eq!(still.map(|s| s.status), Some(SessionStatus::Dead));

    let cleared = store
        .rename_session(&other.id, None)
        .await
        .expect("remove a name");
    assert_eq!(cleared.name, None);
}

/// Messages to unregistered sessions are refused.
pub async fn enqueue_requires_a_registered_target(store: Store) {
    let err = store
        .enqueue(msg(&SessionId::new_random(), "x", DeliveryMode::Sequential))
        .await
        .expect_err("unknown target");
    assert!(matches!(err, Error::SessionNotFound(_)), "{err:?}");
}

/// Enqueueing again with a client key already used adds nothing and returns the stored
/// message, in its current state; the same key for different text is refused.
pub async fn a_repeated_client_key_returns_the_first_message(store: Store) {
    let s = registered(&store, None).await;
    let keyed = |text: &str, key: &str| NewMessage {
        client_key: Some(key.to_string()),
        ..msg(&s.id, text, DeliveryMode::Sequential)
    };
    let first = store.enqueue(keyed("hello", "k1")).await.expect("enqueue");
    let again = store.enqueue(keyed("hello", "k1")).await.expect("repeat");
    assert!(first.inserted, "the first enqueue adds the message");
    assert!(!again.inserted, "the repeat adds nothing");
    assert_eq!(again.value, first.value);
    let claimed = store
        .claim_next(&s.id, &DeliveryMode::BY_PRIORITY)
        .await
        .expect("claim")
        .expect("a message");
    assert_eq!(claimed.id, first.id);
    store.mark_delivered(first.id).await.expect("deliver");
    let later = store.enqueue(keyed("hello", "k1")).await.expect("repeat");
    assert_eq!(later.id, first.id);
    assert_eq!(
        later.state,
        MessageState::Delivered,
        "the repeat sees the current state"
    );
    let other = store.enqueue(keyed("hello", "k2")).await.expect("new key");
    assert!(other.inserted);
    assert_ne!(other.id, first.id);
    let err = store
        .enqueue(keyed("something else", "k1"))
        .await
        .expect_err("a reused key");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let all = store
        .list_messages(&crate::store::MessageFilter {
            target: Some(s.id.clone()),
            states: vec![],
            limit: 0,
            newest: false,
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 2, "{all:?}");
}

/// Within one mode, messages are claimed in enqueue order and ids increase; the stored text
/// is exactly what was given.
pub async fn claims_are_fifo_within_each_mode(store: Store) {
    let s = registered(&store, None).await;
    let texts: Vec<String> = (0..20)
        .map(|i| format!("line {i}\n\tsecond line ✓ 🚀 \"quoted\" 'single' $HOME `cmd`"))
        .collect();
    let mut last_id = None;
    for t in &texts {
        let m = store
            .enqueue(msg(&s.id, t, DeliveryMode::Sequential))
            .await
            .expect("enqueue");
        assert_eq!(m.state, MessageState::Queued);
        assert_eq!(m.attempts, 0);
        assert!(last_id < Some(m.id), "ids must increase");
        last_id = Some(m.id);
    }
    let claimed = claim_texts(&store, &s.id, &DeliveryMode::BY_PRIORITY).await;
    assert_eq!(claimed, texts);
}

/// Urgent messages are claimed first, then important, then sequential, each FIFO.
pub async fn urgent_then_important_then_sequential(store: Store) {
    let s = registered(&store, None).await;
    let plan = [
        ("s1", DeliveryMode::Sequential),
        ("i1", DeliveryMode::Important),
        ("s2", DeliveryMode::Sequential),
        ("u1", DeliveryMode::Urgent),
        ("i2", DeliveryMode::Important),
        ("u2", DeliveryMode::Urgent),
        ("s3", DeliveryMode::Sequential),
    ];
    for (t, mode) in plan {
        store.enqueue(msg(&s.id, t, mode)).await.expect("enqueue");
    }
    let claimed = claim_texts(&store, &s.id, &DeliveryMode::BY_PRIORITY).await;
    assert_eq!(claimed, ["u1", "u2", "i1", "i2", "s1", "s2", "s3"]);
}

/// `modes` restricts what a claim takes, and other targets' messages are never taken.
pub async fn claim_only_takes_the_modes_asked_for(store: Store) {
    let s = registered(&store, None).await;
    let other = registered(&store, None).await;
    store
        .enqueue(msg(&other.id, "not yours", DeliveryMode::Urgent))
        .await
        .expect("enqueue");
    store
        .enqueue(msg(&s.id, "seq", DeliveryMode::Sequential))
        .await
        .expect("enqueue");
    store
        .enqueue(msg(&s.id, "urgent", DeliveryMode::Urgent))
        .await
        .expect("enqueue");
    assert_eq!(
        claim_texts(&store, &s.id, &[DeliveryMode::Important]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        claim_texts(&store, &s.id, &[DeliveryMode::Urgent]).await,
        ["urgent"]
    );
    assert_eq!(
        claim_texts(&store, &s.id, &DeliveryMode::BY_PRIORITY).await,
        ["seq"]
    );
    assert!(
        store
            .claim_next(&s.id, &[])
            .await
            .expect("claim nothing")
            .is_none()
    );
}

/// Eight concurrent claimers share 300 messages: every message is claimed exactly once.
pub async fn claims_are_exclusive_under_concurrency(store: Store) {
    let s = registered(&store, None).await;
    let mut ids = BTreeSet::new();
    for i in 0..300 {
        let mode = DeliveryMode::BY_PRIORITY[i % 3];
        let m = store
            .enqueue(msg(&s.id, &format!("m{i}"), mode))
            .await
            .expect("enqueue");
        ids.insert(m.id);
    }
    let claimers = (0..8).map(|_| {
        let store = store.clone();
        let target = s.id.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(m) = store
                .claim_next(&target, &DeliveryMode::BY_PRIORITY)
                .await
                .expect("claim")
            {
                assert_eq!(m.attempts, 1, "a message was claimed twice");
                mine.push(m.id);
            }
            mine
        })
    });
    let mut seen = BTreeSet::new();
    for claimer in claimers.collect::<Vec<_>>() {
        for id in claimer.await.expect("claimer task") {
            assert!(seen.insert(id), "message {id} was claimed twice");
        }
    }
    assert_eq!(seen, ids, "every message claimed once");
}

/// Delivering → delivered; delivered is terminal and marking it again is a no-op.
pub async fn delivered_is_terminal_and_idempotent(store: Store) {
    let s = registered(&store, None).await;
    let queued = store
        .enqueue(msg(&s.id, "a", DeliveryMode::Sequential))
        .await
        .expect("enqueue");
    let err = store
        .mark_delivered(queued.id)
        .await
        .expect_err("queued → delivered skips a step");
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: MessageState::Queued,
                ..
            }
        ),
        "{err:?}"
    );
    let claimed = store
        .claim_next(&s.id, &DeliveryMode::BY_PRIORITY)
        .await
        .expect("claim")
        .expect("one message");
    assert_eq!(claimed.state, MessageState::Delivering);
    assert_eq!(claimed.attempts, 1);
    let done = store.mark_delivered(claimed.id).await.expect("delivered");
    assert_eq!(done.state, MessageState::Delivered);
    let again = store.mark_delivered(claimed.id).await.expect("idempotent");
    assert_eq!(again.state, MessageState::Delivered);
    for err in [
        store
            .mark_failed(claimed.id, "late")
            .await
            .expect_err("terminal"),
        store
            .requeue(claimed.id, "late")
            .await
            .expect_err("terminal"),
    ] {
        assert!(matches!(err, Error::InvalidTransition { .. }), "{err:?}");
    }
    let err = store
        .mark_delivered(crate::types::MessageId(i64::MAX))
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::MessageNotFound(_)), "{err:?}");
    let stored = store.get_message(claimed.id).await.expect("get");
    assert_eq!(stored.map(|m| m.state), Some(MessageState::Delivered));
}

/// Queued or delivering → failed with a reason; failed is terminal; the first reason stays.
pub async fn failed_is_terminal_and_keeps_the_first_reason(store: Store) {
    let s = registered(&store, None).await;
    let a = store
        .enqueue(msg(&s.id, "a", DeliveryMode::Sequential))
        .await
        .expect("enqueue");
    let failed = store.mark_failed(a.id, "cancelled").await.expect("fail");
    assert_eq!(failed.state, MessageState::Failed);
    assert_eq!(failed.reason.as_deref(), Some("cancelled"));
    let again = store.mark_failed(a.id, "other").await.expect("idempotent");
    assert_eq!(again.reason.as_deref(), Some("cancelled"));
    let err = store.mark_delivered(a.id).await.expect_err("terminal");
    assert!(matches!(err, Error::InvalidTransition { .. }), "{err:?}");
    assert!(
        store
            .claim_next(&s.id, &DeliveryMode::BY_PRIORITY)
            .await
            .expect("claim")
            .is_none(),
        "a failed message is never claimed"
    );

    store
        .enqueue(msg(&s.id, "b", DeliveryMode::Sequential))
        .await
        .expect("enqueue");
    let b = store
        .claim_next(&s.id, &DeliveryMode::BY_PRIORITY)
        .await
        .expect("claim")
        .expect("b");
    let failed = store
        .mark_failed(b.id, "not submitted after retry")
        .await
        .expect("fail delivering");
    assert_eq!(failed.state, MessageState::Failed);
    assert_eq!(failed.attempts, 1);
}

/// A requeued message keeps its place ahead of later messages and its attempt count.
pub async fn requeue_keeps_fifo_place_and_attempts(store: Store) {
    let s = registered(&store, None).await;
    for t in ["first", "second"] {
        store
            .enqueue(msg(&s.id, t, DeliveryMode::Sequential))
            .await
            .expect("enqueue");
    }
    let first = store
        .claim_next(&s.id, &DeliveryMode::BY_PRIORITY)
        .await
        .expect("claim")
        .expect("first");
    let err = store
        .requeue(
            store
                .enqueue(msg(&s.id, "third", DeliveryMode::Sequential))
                .await
                .expect("enqueue")
                .id,
            "x",
        )
        .await
        .expect_err("only delivering messages are requeued");
    assert!(matches!(err, Error::InvalidTransition { .. }), "{err:?}");
    let back = store
        .requeue(first.id, "agent became busy")
        .await
        .expect("requeue");
    assert_eq!(back.state, MessageState::Queued);
    assert_eq!(back.reason.as_deref(), Some("agent became busy"));
    let again = store
        .claim_next(&s.id, &DeliveryMode::BY_PRIORITY)
        .await
        .expect("claim")
        .expect("first again");
    assert_eq!(again.id, first.id);
    assert_eq!(again.attempts, 2);
}

/// `fail_pending` fails queued and delivering messages of one target, and nothing else.
pub async fn fail_pending_fails_only_unfinished_messages_of_the_target(store: Store) {
    let s = registered(&store, None).await;
    let other = registered(&store, None).await;
    for t in ["done", "delivering", "queued"] {
        store
            .enqueue(msg(&s.id, t, DeliveryMode::Sequential))
            .await
            .expect("enqueue");
    }
    let keep = store
        .enqueue(msg(&other.id, "other", DeliveryMode::Sequential))
        .await
        .expect("enqueue");
    let done = store
        .claim_next(&s.id, &DeliveryMode::BY_PRIORITY)
        .await
        .expect("claim")
        .expect("done");
    store.mark_delivered(done.id).await.expect("delivered");
    store
        .claim_next(&s.id, &DeliveryMode::BY_PRIORITY)
        .await
        .expect("claim")
        .expect("delivering");
    let failed = store
        .fail_pending(&s.id, "session died")
        .await
        .expect("fail pending");
    let mut texts: Vec<_> = failed.iter().map(|m| m.text.as_str()).collect();
    texts.sort();
    assert_eq!(texts, ["delivering", "queued"]);
    assert!(
        failed
            .iter()
            .all(|m| m.state == MessageState::Failed
                && m.reason.as_deref() == Some("session died"))
    );
    let done = store
        .get_message(done.id)
        .await
        .expect("get")
        .expect("done");
    assert_eq!(done.state, MessageState::Delivered);
    let keep = store
        .get_message(keep.id)
        .await
        .expect("get")
        .expect("keep");
    assert_eq!(keep.state, MessageState::Queued);
}

/// `list_messages` filters by target, states and limit, in id order.
pub async fn list_messages_filters_by_target_state_and_limit(store: Store) {
    let s = registered(&store, None).await;
    let other = registered(&store, None).await;
    for i in 0..5 {
        store
            .enqueue(msg(&s.id, &format!("s{i}"), DeliveryMode::Sequential))
            .await
            .expect("enqueue");
        store
            .enqueue(msg(&other.id, &format!("o{i}"), DeliveryMode::Sequential))
            .await
            .expect("enqueue");
    }
    store
        .claim_next(&s.id, &DeliveryMode::BY_PRIORITY)
        .await
        .expect("claim");
    let all = store
        .list_messages(&MessageFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "id order");
    let queued_s = store
        .list_messages(&MessageFilter {
            target: Some(s.id.clone()),
            states: vec![MessageState::Queued],
            limit: 0,
            newest: false,
        })
        .await
        .expect("list");
    let texts: Vec<_> = queued_s.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["s1", "s2", "s3", "s4"]);
    let limited = store
        .list_messages(&MessageFilter {
            target: Some(other.id.clone()),
            states: vec![],
            limit: 2,
            newest: false,
        })
        .await
        .expect("list");
    let texts: Vec<_> = limited.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["o0", "o1"]);
    let newest = store
        .list_messages(&MessageFilter {
            target: Some(other.id.clone()),
            states: vec![],
            limit: 2,
            newest: true,
        })
        .await
        .expect("list");
    let texts: Vec<_> = newest.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["o3", "o4"], "the newest, in id order");
}

fn lock_request(workspace: &str, holder: &Session, reason: &str, kind: LockKind) -> LockRequest {
    LockRequest {
        workspace: Workspace(PathBuf::from(workspace)),
        holder: holder.id.clone(),
        reason: reason.into(),
        kind,
    }
}

/// A lock held by a live session refuses others (naming holder and reason) until released.
pub async fn locks_conflict_between_live_sessions(store: Store) {
    let a = registered(&store, Some("a")).await;
    let b = registered(&store, Some("b")).await;
    let lock = store
        .acquire_lock(&lock_request(
            "/repo",
            &a,
            "refactoring",
            LockKind::Explicit,
        ))
        .await
        .expect("acquire");
    assert_eq!(lock.holder, a.id);
    let err = store
        .acquire_lock(&lock_request("/repo", &b, "mine", LockKind::Auto))
        .await
        .expect_err("conflict");
    match err {
        Error::LockConflict(held) => {
            assert_eq!(held.holder, a.id);
            assert_eq!(held.reason, "refactoring");
        }
        other => panic!("expected a lock conflict, got {other:?}"),
    }
    store
        .acquire_lock(&lock_request("/other-repo", &b, "mine", LockKind::Auto))
        .await
        .expect("another workspace is free");
    let ws = Workspace(PathBuf::from("/repo"));
    let err = store
        .release_lock(&ws, &b.id)
        .await
        .expect_err("not the holder");
    assert!(matches!(err, Error::LockConflict(_)), "{err:?}");
    let released = store.release_lock(&ws, &a.id).await.expect("release");
    assert_eq!(released.map(|l| l.holder), Some(a.id.clone()));
    assert_eq!(
        store.release_lock(&ws, &a.id).await.expect("release again"),
        None
    );
    store
        .acquire_lock(&lock_request("/repo", &b, "now mine", LockKind::Auto))
        .await
        .expect("free after release");
    let listed = store.list_locks().await.expect("list");
    let workspaces: Vec<_> = listed.iter().map(|l| l.workspace.to_string()).collect();
    assert_eq!(workspaces, ["/other-repo", "/repo"]);
}

/// Re-taking one's own lock updates the reason, keeps the time, never downgrades explicit.
pub async fn relocking_by_the_holder_keeps_it(store: Store) {
    let a = registered(&store, None).await;
    let first = store
        .acquire_lock(&lock_request("/repo", &a, "one", LockKind::Explicit))
        .await
        .expect("acquire");
    let second = store
        .acquire_lock(&lock_request("/repo", &a, "two", LockKind::Auto))
        .await
        .expect("re-acquire");
    assert!(first.inserted, "a new lock is inserted");
    assert!(!second.inserted, "re-taking one's own lock adds nothing");
    assert_eq!(second.acquired_at, first.acquired_at);
    assert_eq!(second.reason, "two");
    assert_eq!(
        second.kind,
        LockKind::Explicit,
        "explicit is not downgraded"
    );
    let stored = store
        .get_lock(&Workspace(PathBuf::from("/repo")))
        .await
        .expect("get");
    assert_eq!(stored, Some(second.into_inner()));
}

/// A lock whose holder is dead (or no longer registered) does not block anyone.
pub async fn a_lock_of_a_dead_holder_is_taken_over(store: Store) {
    let a = registered(&store, None).await;
    let b = registered(&store, None).await;
    store
        .acquire_lock(&lock_request("/repo", &a, "a's", LockKind::Explicit))
        .await
        .expect("acquire");
    store
        .set_status(&a.id, SessionStatus::Dead)
        .await
        .expect("dead");
    let taken = store
        .acquire_lock(&lock_request("/repo", &b, "b's", LockKind::Explicit))
        .await
        .expect("take over a dead holder's lock");
    assert_eq!(taken.holder, b.id);
}

/// `release_locks_of` releases a holder's auto locks only, or all of them.
pub async fn releasing_all_locks_of_a_holder_by_kind(store: Store) {
    let a = registered(&store, None).await;
    let b = registered(&store, None).await;
    for (ws, kind) in [
        ("/w1", LockKind::Auto),
        ("/w2", LockKind::Explicit),
        ("/w3", LockKind::Auto),
    ] {
        store
            .acquire_lock(&lock_request(ws, &a, "x", kind))
            .await
            .expect("acquire");
    }
    store
        .acquire_lock(&lock_request("/w4", &b, "b", LockKind::Auto))
        .await
        .expect("acquire");
    let auto = store
        .release_locks_of(&a.id, Some(LockKind::Auto))
        .await
        .expect("release auto");
    let mut ws: Vec<_> = auto.iter().map(|l| l.workspace.to_string()).collect();
    ws.sort();
    assert_eq!(ws, ["/w1", "/w3"]);
    let rest = store
        .release_locks_of(&a.id, None)
        .await
        .expect("release all");
    let ws: Vec<_> = rest.iter().map(|l| l.workspace.to_string()).collect();
    assert_eq!(ws, ["/w2"]);
    let left = store.list_locks().await.expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].holder, b.id);
}

/// Events keep append order with increasing ids, and filter by cursor, session and limit.
pub async fn event_log_keeps_append_order_and_filters(store: Store) {
    let a = registered(&store, None).await;
    let b = registered(&store, None).await;
    let mut appended = Vec::new();
    for i in 0..30 {
        let who = if i % 3 == 0 { &b.id } else { &a.id };
        let kind = if i % 2 == 0 {
            EventKind::Note {
                text: format!("note {i}"),
            }
        } else {
            EventKind::StatusChanged {
                from: SessionStatus::Working,
                to: SessionStatus::Idle,
            }
        };
        appended.push(store.append_event(Some(who), kind).await.expect("append"));
    }
    appended.push(
        store
            .append_event(
                None,
                EventKind::Hook {
                    event: "Stop".into(),
                    transcript_path: Some("/tmp/t.jsonl".into()),
                    prompt_digest: Some("00ff".into()),
                    agent_session: Some("01a2-33".into()),
                },
            )
            .await
            .expect("append"),
    );
    assert!(appended.windows(2).all(|w| w[0].id < w[1].id));
    let all = store.events(None, None, 0).await.expect("events");
    assert_eq!(all, appended);
    let after = store
        .events(Some(appended[9].id), None, 5)
        .await
        .expect("events");
    assert_eq!(after, appended[10..15].to_vec());
    let only_b = store.events(None, Some(&b.id), 0).await.expect("events");
    let expected: Vec<_> = appended
        .iter()
        .filter(|e| e.session.as_ref() == Some(&b.id))
        .cloned()
        .collect();
    assert_eq!(only_b, expected);
    assert_eq!(only_b.len(), 10);
    // Read backwards, a page at a time.
    let newest = store.events_before(None, None, 4).await.expect("events");
    let expected: Vec<_> = appended.iter().rev().take(4).cloned().collect();
    assert_eq!(newest, expected, "newest first");
    let older = store
        .events_before(Some(newest[3].id), None, 0)
        .await
        .expect("events");
    let expected: Vec<_> = appended.iter().rev().skip(4).cloned().collect();
    assert_eq!(older, expected);
    let b_back = store
        .events_before(Some(appended[20].id), Some(&b.id), 3)
        .await
        .expect("events");
    let expected: Vec<_> = appended[..20]
        .iter()
        .rev()
        .filter(|e| e.session.as_ref() == Some(&b.id))
        .take(3)
        .cloned()
        .collect();
    assert_eq!(b_back, expected);
}

/// Waits are stored with their waiter, target and deadline until removed.
pub async fn waits_are_kept_until_removed(store: Store) {
    let em = registered(&store, None).await;
    let worker = registered(&store, None).await;
    let other = registered(&store, None).await;
    let deadline = Timestamp(Timestamp::now().0 + 600_000);
    let a = store
        .add_wait(Some(&em.id), &worker.id, deadline)
        .await
        .expect("add");
    let b = store
        .add_wait(None, &worker.id, deadline)
        .await
        .expect("add");
    let c = store
        .add_wait(Some(&worker.id), &other.id, deadline)
        .await
        .expect("add");
    assert!(a.id < b.id && b.id < c.id);
    assert_eq!(a.waiter.as_ref(), Some(&em.id));
    assert_eq!(a.deadline, deadline);
    let on_worker = store.list_waits(Some(&worker.id)).await.expect("list");
    assert_eq!(on_worker, vec![a.clone(), b.clone()]);
    assert_eq!(store.list_waits(None).await.expect("list").len(), 3);
    assert!(store.remove_wait(a.id).await.expect("remove"));
    assert!(!store.remove_wait(a.id).await.expect("remove again"));
    assert_eq!(
        store.list_waits(Some(&worker.id)).await.expect("list"),
        vec![b]
    );
    let err = store
        .add_wait(Some(&em.id), &SessionId::new_random(), deadline)
        .await
        .expect_err("unknown target");
    assert!(matches!(err, Error::SessionNotFound(_)), "{err:?}");
}

/// A session's task is stored, cleared, and refused for unknown sessions.
pub async fn tasks_are_set_and_cleared(store: Store) {
    let s = registered(&store, None).await;
    let updated = store
        .set_task(&s.id, Some("writing tests".into()))
        .await
        .expect("set");
    assert_eq!(updated.task.as_deref(), Some("writing tests"));
    let fetched = store.get_session(&s.id).await.expect("get").expect("some");
    assert_eq!(fetched.task.as_deref(), Some("writing tests"));
    let cleared = store.set_task(&s.id, None).await.expect("clear");
    assert_eq!(cleared.task, None);
    let err = store
        .set_task(&SessionId::new_random(), None)
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::SessionNotFound(_)), "{err:?}");
}

/// `create_session` stores the session and its first message in one step; a refusal
/// (the name is taken) leaves neither.
pub async fn a_session_and_its_first_message_are_created_together(store: Store) {
    let s = session(Some("first"));
    let created = store
        .create_session(NewSession {
            session: s.clone(),
            first_message: Some(msg(&s.id, "hello", DeliveryMode::Sequential)),
            client_key: None,
        })
        .await
        .expect("create");
    assert!(created.inserted);
    assert_eq!(created.session, s);
    let first = created.first_message.expect("first message");
    assert_eq!(
        (first.text.as_str(), first.state),
        ("hello", MessageState::Queued)
    );
    assert_eq!(
        store.get_session(&s.id).await.expect("get"),
        Some(s.clone())
    );
    let clash = session(Some("first"));
    let refused = store
        .create_session(NewSession {
            session: clash.clone(),
            first_message: Some(msg(&clash.id, "lost?", DeliveryMode::Sequential)),
            client_key: None,
        })
        .await;
    assert!(
        matches!(refused, Err(Error::NameTaken { .. })),
        "{refused:?}"
    );
    assert_eq!(store.get_session(&clash.id).await.expect("get"), None);
    let all = store
        .list_messages(&MessageFilter::default())
        .await
        .expect("list");
    assert_eq!(
        all.len(),
        1,
        "the refused session's message was stored: {all:?}"
    );
    let stray = session(None);
    let wrong_target = store
        .create_session(NewSession {
            session: stray.clone(),
            first_message: Some(msg(&s.id, "elsewhere", DeliveryMode::Sequential)),
            client_key: None,
        })
        .await;
    assert!(
        matches!(wrong_target, Err(Error::InvalidInput(_))),
        "{wrong_target:?}"
    );
    assert_eq!(store.get_session(&stray.id).await.expect("get"), None);
}

/// A repeated spawn key adds nothing and returns the session (and first message) the first
/// call created, as they are now.
pub async fn a_repeated_spawn_key_returns_the_first_session(store: Store) {
    let s = session(Some("keyed"));
    let new = |s: &Session| NewSession {
        session: s.clone(),
        first_message: Some(msg(&s.id, "do it", DeliveryMode::Sequential)),
        client_key: Some("caller:spawn-1".into()),
    };
    let first = store.create_session(new(&s)).await.expect("create");
    store
        .set_status(&s.id, SessionStatus::Idle)
        .await
        .expect("status");
    let other = session(Some("keyed-again"));
    let again = store.create_session(new(&other)).await.expect("repeat");
    assert!(!again.inserted);
    assert_eq!(again.session.id, s.id);
    assert_eq!(again.session.status, SessionStatus::Idle);
    assert_eq!(
        again.first_message.map(|m| m.id),
        first.first_message.map(|m| m.id)
    );
    assert_eq!(store.get_session(&other.id).await.expect("get"), None);
    let all = store
        .list_messages(&MessageFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 1);
    let unkeyed = store
        .create_session(NewSession {
            session: session(None),
            first_message: None,
            client_key: Some("caller:spawn-2".into()),
        })
        .await
        .expect("create without a message");
    assert!(unkeyed.inserted && unkeyed.first_message.is_none());
}

/// `end_session` sets a final status with its reason; a second end changes nothing; a live
/// status is refused.
pub async fn ending_a_session_records_why_once(store: Store) {
    let s = registered(&store, Some("ender")).await;
    let refused = store
        .end_session(&s.id, SessionStatus::Idle, "not an end")
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidInput(_))),
        "{refused:?}"
    );
    let ended = store
        .end_session(
            &s.id,
            SessionStatus::Dead,
            "could not start: no such program",
        )
        .await
        .expect("end");
    assert_eq!(ended.status, SessionStatus::Dead);
    assert_eq!(
        ended.end_reason.as_deref(),
        Some("could not start: no such program")
    );
    let again = store
        .end_session(&s.id, SessionStatus::Stopped, "later")
        .await
        .expect("end again");
    assert_eq!(again, ended);
    let stored = store.get_session(&s.id).await.expect("get").expect("there");
    assert_eq!(stored, ended);
    assert_eq!(
        store
            .find_live_by_name(&"ender".parse().expect("name"))
            .await
            .expect("find"),
        None
    );
    let missing = store
        .end_session(&SessionId::new_random(), SessionStatus::Dead, "x")
        .await;
    assert!(
        matches!(missing, Err(Error::SessionNotFound(_))),
        "{missing:?}"
    );
}

/// `peek_next` names the message `claim_next` takes next, in the same order, and takes
/// nothing.
pub async fn peek_shows_the_next_claim_without_taking_it(store: Store) {
    let s = registered(&store, None).await;
    assert_eq!(
        store
            .peek_next(&s.id, &DeliveryMode::BY_PRIORITY)
            .await
            .expect("peek"),
        None
    );
    for (text, mode) in [
        ("seq", DeliveryMode::Sequential),
        ("imp", DeliveryMode::Important),
        ("urg", DeliveryMode::Urgent),
    ] {
        store
            .enqueue(msg(&s.id, text, mode))
            .await
            .expect("enqueue");
    }
    for modes in [
        &DeliveryMode::BY_PRIORITY[..],
        &[DeliveryMode::Sequential, DeliveryMode::Important][..],
        &[DeliveryMode::Sequential][..],
        &[][..],
    ] {
        let peeked = store.peek_next(&s.id, modes).await.expect("peek");
        let again = store.peek_next(&s.id, modes).await.expect("peek");
        assert_eq!(peeked, again, "a peek took something");
        if let Some(p) = &peeked {
            assert_eq!(p.state, MessageState::Queued);
            assert_eq!(p.attempts, 0);
        }
        let claimed = store.claim_next(&s.id, modes).await.expect("claim");
        assert_eq!(peeked.map(|m| m.id), claimed.as_ref().map(|m| m.id));
        if let Some(c) = claimed {
            store.requeue(c.id, "put back").await.expect("requeue");
        }
    }
}

/// `append_events` appends a batch in its order, with increasing ids, after what was there.
pub async fn a_batch_of_events_is_appended_in_order(store: Store) {
    let s = registered(&store, None).await;
    let before = store
        .append_event(
            Some(&s.id),
            EventKind::Note {
                text: "before".into(),
            },
        )
        .await
        .expect("append");
    let batch = store
        .append_events(
            Some(&s.id),
            (0..50)
                .map(|i| EventKind::Note {
                    text: format!("batch {i}"),
                })
                .collect(),
        )
        .await
        .expect("append batch");
    assert_eq!(batch.len(), 50);
    assert!(batch[0].id > before.id);
    assert!(batch.windows(2).all(|w| w[0].id < w[1].id));
    let stored = store
        .events(Some(before.id), Some(&s.id), 0)
        .await
        .expect("events");
    assert_eq!(stored, batch);
    assert!(
        store
            .append_events(None, Vec::new())
            .await
            .expect("empty batch")
            .is_empty()
    );
}
