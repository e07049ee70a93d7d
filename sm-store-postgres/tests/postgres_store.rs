//! The PostgreSQL store against a real PostgreSQL server: the conformance suite, and what
//! only a shared database can show (several stores on one database, migrations).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use sm_lib::MessageStore;
use sm_store_postgres::test_cluster::TestCluster;
use sm_store_postgres::{PostgresConfig, PostgresStore};

/// A fresh database on the process's test cluster.
async fn fresh_url() -> String {
    let cluster = tokio::task::spawn_blocking(|| TestCluster::shared().map(|_| ()))
        .await
        .unwrap();
    if let Err(e) = cluster {
        panic!("the PostgreSQL tests need a PostgreSQL server: {e}");
    }
    TestCluster::shared()
        .unwrap()
        .fresh_database()
        .await
        .unwrap()
}

async fn fresh() -> (Arc<dyn MessageStore>, ()) {
    let store = PostgresStore::connect(PostgresConfig::new(fresh_url().await))
        .await
        .unwrap();
    (Arc::new(store), ())
}

sm_lib::message_store_conformance!(fresh);

fn session() -> sm_lib::Session {
    sm_lib::Session::new(
        sm_lib::SessionId::new_random(),
        sm_lib::AgentKind::Fake,
        std::path::PathBuf::from("/tmp/work"),
    )
}

fn message(target: &sm_lib::SessionId, text: String) -> sm_lib::NewMessage {
    sm_lib::NewMessage {
        target: target.clone(),
        sender: None,
        text,
        mode: sm_lib::DeliveryMode::Sequential,
        client_key: None,
    }
}

/// Two stores on one database stand for two nodes: claims stay exclusive and FIFO across
/// them, and each sees the other's events in one order with no gaps a follower would skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_database_share_one_queue_and_one_event_log() {
    let url = fresh_url().await;
    let a = PostgresStore::connect(PostgresConfig::new(url.clone()))
        .await
        .unwrap();
    let b = PostgresStore::connect(PostgresConfig::new(url))
        .await
        .unwrap();
    let target = session();
    a.insert_session(&target).await.unwrap();
    for i in 0..200 {
        b.enqueue(message(&target.id, format!("m{i}")))
            .await
            .unwrap();
    }
    let modes = [sm_lib::DeliveryMode::Sequential];
    let claim_all = |store: PostgresStore, id: sm_lib::SessionId| async move {
        let mut got = Vec::new();
        while let Some(m) = store.claim_next(&id, &modes).await.unwrap() {
            got.push(m.id);
        }
        got
    };
    let (from_a, from_b) = tokio::join!(
        claim_all(a.clone(), target.id.clone()),
        claim_all(b.clone(), target.id.clone())
    );
    let mut all: Vec<_> = from_a.iter().chain(&from_b).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "every message claimed exactly once");
    assert!(
        from_a.windows(2).all(|w| w[0] < w[1]),
        "each claimer in FIFO order"
    );
    assert!(
        from_b.windows(2).all(|w| w[0] < w[1]),
        "each claimer in FIFO order"
    );

    // Appends from both stores at once, while a follower reads by id: every event it ever
    // sees arrives in id order, and at the end it has seen all of them.
    let writers = [a.clone(), b.clone()].map(|store| {
        tokio::spawn(async move {
            for i in 0..150 {
                store
                    .append_event(
                        None,
                        sm_lib::EventKind::Note {
                            text: format!("e{i}"),
                        },
                    )
                    .await
                    .unwrap();
            }
        })
    });
    let follower = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = None;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen.len() < 300 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "follower saw {}",
                    seen.len()
                );
                for e in a.events(after, None, 0).await.unwrap() {
                    after = Some(e.id);
                    seen.push(e.id);
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = follower.await.unwrap();
    let everything: Vec<_> = a
        .events(None, None, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        seen, everything,
        "the follower skipped or reordered an event"
    );
}

/// A restart of PostgreSQL under a running store: calls made while it is down wait and
/// succeed once it is back, and nothing committed before is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_rides_out_a_postgres_restart() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap()
        .unwrap();
    let cluster = Arc::new(cluster);
    let url = cluster.fresh_database().await.unwrap();
    let store = PostgresStore::connect(PostgresConfig::new(url))
        .await
        .unwrap();
    let target = session();
    store.insert_session(&target).await.unwrap();
    let first = store
        .enqueue(message(&target.id, "before".into()))
        .await
        .unwrap();

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.kill())
        .await
        .unwrap()
        .unwrap();
    // Down now: a call waits for it to come back (reconnect_for is 30 s).
    let waiting = {
        let store = store.clone();
        let id = target.id.clone();
        tokio::spawn(async move { store.set_status(&id, sm_lib::SessionStatus::Idle).await })
    };
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart())
        .await
        .unwrap()
        .unwrap();
    let updated = waiting.await.unwrap().unwrap();
    assert_eq!(updated.status, sm_lib::SessionStatus::Idle);
    let kept = store.get_message(first.id).await.unwrap().unwrap();
    assert_eq!(kept.text, "before");
    let after = store
        .enqueue(message(&target.id, "after".into()))
        .await
        .unwrap();
    assert!(after.id > first.id);
}

/// Text PostgreSQL cannot hold is refused with a clear error, not a store failure.
#[tokio::test]
async fn a_nul_in_a_message_is_refused_as_bad_input() {
    let (store, ()) = fresh().await;
    let target = session();
    store.insert_session(&target).await.unwrap();
    let err = store
        .enqueue(message(&target.id, "a\0b".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, sm_lib::Error::InvalidInput(_)), "{err}");
}
