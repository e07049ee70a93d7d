//! The SQLite store: the conformance suite, durability across SIGKILL, several processes on
//! one file, and migrations.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sm_lib::{
    AgentKind, DeliveryMode, MessageFilter, MessageId, MessageState, MessageStore, NewMessage,
    Session, SessionId,
};
use sm_store_sqlite::SqliteStore;

async fn fresh() -> (Arc<dyn MessageStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("sm.db")).await.unwrap();
    (Arc::new(store), dir)
}

sm_lib::message_store_conformance!(fresh);

/// Environment variable that turns a test process into a child helper.
const CHILD_ROLE: &str = "SM_SQLITE_TEST_CHILD";
const CHILD_DB: &str = "SM_SQLITE_TEST_DB";
const CHILD_TARGET: &str = "SM_SQLITE_TEST_TARGET";

/// Runs this test binary again as a helper doing `role` on `db`.
fn spawn_child(role: &str, db: &Path, target: &SessionId) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .env(CHILD_DB, db)
        .env(CHILD_TARGET, target.as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Not a test of its own: the body of the child processes the tests below start. Without
/// the environment variable it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_helper() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let db = PathBuf::from(std::env::var(CHILD_DB).unwrap());
    let target: SessionId = std::env::var(CHILD_TARGET).unwrap().parse().unwrap();
    let store = SqliteStore::open(&db).await.unwrap();
    match role.as_str() {
        // Enqueue forever, printing each id only after enqueue returned.
        "enqueue-forever" => {
            for i in 0.. {
                let m = store
                    .enqueue(NewMessage {
                        target: target.clone(),
                        sender: None,
                        text: format!("message {i}"),
                        mode: DeliveryMode::Sequential,
                        client_key: None,
                    })
                    .await
                    .unwrap();
                println!("enqueued {}", m.id.0);
            }
        }
        // Claim until the queue is empty, printing each claimed id.
        "claim-all" => {
            while let Some(m) = store
                .claim_next(&target, &DeliveryMode::BY_PRIORITY)
                .await
                .unwrap()
            {
                println!("claimed {}", m.id.0);
                store.mark_delivered(m.id).await.unwrap();
            }
            println!("done");
        }
        // Enqueue, claim and mark delivered forever (progress writes, committed without
        // their own fsync), printing each id only after it was marked delivered.
        "deliver-forever" => {
            for i in 0.. {
                store
                    .enqueue(NewMessage {
                        target: target.clone(),
                        sender: None,
                        text: format!("message {i}"),
                        mode: DeliveryMode::Sequential,
                        client_key: None,
                    })
                    .await
                    .unwrap();
                let m = store
                    .claim_next(&target, &DeliveryMode::BY_PRIORITY)
                    .await
                    .unwrap()
                    .unwrap();
                store.mark_delivered(m.id).await.unwrap();
                println!("delivered {}", m.id.0);
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

/// The text after `marker` in a child's output line. The test harness prints `test name ...`
/// without a newline before the child's first line, so the marker may not start the line.
fn after_marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| line[i + marker.len()..].trim())
}

/// Runs a child helper doing `role` until it has printed 300 message ids after `marker`
/// (each printed only once its call returned), then SIGKILLs it: no destructor, no flush,
/// no checkpoint. Returns those ids.
fn sigkill_after(role: &str, marker: &str, db: &Path, target: &SessionId) -> Vec<MessageId> {
    let mut child = spawn_child(role, db, target);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids.len() < 300 {
        assert!(Instant::now() < deadline, "child too slow");
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(id) = after_marker(&line, marker) {
            ids.push(MessageId(id.parse().unwrap()));
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    ids
}

async fn registered(store: &SqliteStore) -> SessionId {
    let s = Session::new(SessionId::new_random(), AgentKind::Fake, "/tmp".into());
    store.insert_session(&s).await.unwrap();
    s.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_that_returned_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sm.db");
    let target = registered(&SqliteStore::open(&db).await.unwrap()).await;

    let acknowledged = sigkill_after("enqueue-forever", "enqueued ", &db, &target);

    let store = SqliteStore::open(&db).await.unwrap();
    for id in &acknowledged {
        let m = store.get_message(*id).await.unwrap();
        let m = m.unwrap_or_else(|| panic!("acknowledged message {id} was lost"));
        assert_eq!(m.state, MessageState::Queued);
    }
    // The store is usable after the crash, and its ids go on increasing.
    let next = store
        .enqueue(NewMessage {
            target,
            sender: None,
            text: "after".into(),
            mode: DeliveryMode::Urgent,
            client_key: None,
        })
        .await
        .unwrap();
    assert!(next.id > *acknowledged.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_marked_before_sigkill_is_still_delivered_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sm.db");
    let target = registered(&SqliteStore::open(&db).await.unwrap()).await;

    let delivered = sigkill_after("deliver-forever", "delivered ", &db, &target);

    let store = SqliteStore::open(&db).await.unwrap();
    for id in &delivered {
        let m = store.get_message(*id).await.unwrap().unwrap();
        assert_eq!(m.state, MessageState::Delivered, "message {id}");
    }
    // Nothing the child had claimed is lost either: at most the one in flight is still
    // delivering, none is queued twice.
    let all = store
        .list_messages(&MessageFilter::default())
        .await
        .unwrap();
    let in_flight = all
        .iter()
        .filter(|m| m.state != MessageState::Delivered)
        .count();
    assert!(in_flight <= 2, "{in_flight} messages not delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_claiming_from_one_file_never_share_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sm.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let target = registered(&store).await;
    let mut all = Vec::new();
    for i in 0..600 {
        let m = store
            .enqueue(NewMessage {
                target: target.clone(),
                sender: None,
                text: format!("m{i}"),
                mode: DeliveryMode::BY_PRIORITY[i % 3],
                client_key: None,
            })
            .await
            .unwrap();
        all.push(m.id.0);
    }
    let children: Vec<_> = (0..2)
        .map(|_| spawn_child("claim-all", &db, &target))
        .collect();
    // This process claims too, so three claimers share the file.
    let mut claimed = Vec::new();
    while let Some(m) = store
        .claim_next(&target, &DeliveryMode::BY_PRIORITY)
        .await
        .unwrap()
    {
        claimed.push(m.id.0);
        store.mark_delivered(m.id).await.unwrap();
    }
    for mut child in children {
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut finished = false;
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(id) = after_marker(&line, "claimed ") {
                claimed.push(id.parse().unwrap());
            }
            finished |= line.ends_with("done");
        }
        assert!(child.wait().unwrap().success());
        assert!(finished, "a child did not finish");
    }
    claimed.sort();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!(before, claimed.len(), "a message was claimed twice");
    assert_eq!(claimed, all, "every message claimed exactly once");
    let left = store
        .list_messages(&MessageFilter {
            target: Some(target),
            states: vec![MessageState::Queued, MessageState::Delivering],
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(left.is_empty());
}

#[tokio::test]
async fn reopening_keeps_everything_and_reapplies_no_migration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/dir/sm.db");
    let target = {
        let store = SqliteStore::open(&db).await.unwrap();
        registered(&store).await
    };
    let store = SqliteStore::open(&db).await.unwrap();
    assert!(store.get_session(&target).await.unwrap().is_some());
    let version: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert!(version >= 1);
}

#[tokio::test]
async fn a_database_from_a_newer_sm_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sm.db");
    drop(SqliteStore::open(&db).await.unwrap());
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let err = SqliteStore::open(&db).await.err().expect("refused");
    assert!(err.to_string().contains("newer than this sm"), "{err}");
}

#[tokio::test]
async fn an_unwritable_location_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = SqliteStore::open(file.join("sm.db"))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("cannot create"), "{err}");
}
