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

/// Waits (up to 20 s) for the next signal that `want` accepts, skipping others.
async fn next_signal(
    rx: &mut tokio::sync::broadcast::Receiver<sm_lib::Signal>,
    want: impl Fn(&sm_lib::Signal) -> bool,
) -> sm_lib::Signal {
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Ok(s) if want(&s) => return s,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("signals closed: {e}"),
            }
        }
    })
    .await
    .expect("no signal within 20 s")
}

/// Two nodes on one database: each holds a lease the other sees, a poke reaches only the
/// node it names, and each node's pending work is its own sessions' queued messages and
/// waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_see_each_others_leases_and_pokes_reach_only_their_node() {
    use sm_lib::Cluster;
    use sm_store_postgres::PostgresCluster;
    let url = fresh_url().await;
    let store = PostgresStore::connect(PostgresConfig::new(url))
        .await
        .unwrap();
    let lease = std::time::Duration::from_secs(15);
    let a = PostgresCluster::join(&store, "node-a", lease)
        .await
        .unwrap();
    let b = PostgresCluster::join(&store, "node-b", lease)
        .await
        .unwrap();
    a.heartbeat("http://127.0.0.1:1").await.unwrap();
    b.heartbeat("http://127.0.0.1:2").await.unwrap();
    let nodes = a.nodes().await.unwrap();
    let seen: Vec<(&str, &str, bool)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.url.as_str(), n.reachable))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("node-a", "http://127.0.0.1:1", true),
            ("node-b", "http://127.0.0.1:2", true)
        ]
    );

    let mut on_a = a.signals();
    let mut on_b = b.signals();
    let mut worker = session();
    worker.node = Some("node-b".into());
    store.insert_session(&worker).await.unwrap();
    a.poke("node-b", &worker.id).await.unwrap();
    let got = next_signal(&mut on_b, |s| matches!(s, sm_lib::Signal::Poke(_))).await;
    assert_eq!(got, sm_lib::Signal::Poke(worker.id.clone()));
    assert!(
        !matches!(on_a.try_recv(), Ok(sm_lib::Signal::Poke(_))),
        "node-a must not hear node-b's poke"
    );

    assert!(b.pending().await.unwrap().is_empty());
    store
        .enqueue(message(&worker.id, "queued".into()))
        .await
        .unwrap();
    let wait = store
        .add_wait(None, &worker.id, sm_lib::Timestamp(i64::MAX / 2))
        .await
        .unwrap();
    let pending = b.pending().await.unwrap();
    assert_eq!(
        pending,
        vec![sm_lib::Pending {
            session: worker.id.clone(),
            queued: true,
            newest_wait: wait.id,
        }]
    );
    assert!(
        a.pending().await.unwrap().is_empty(),
        "not node-a's session"
    );

    assert!(
        sm_store_postgres::valid_node_name("a b").is_err()
            && sm_store_postgres::valid_node_name("x\"; DROP").is_err()
    );
}

/// A node's notification connection is lost in a PostgreSQL restart: it reconnects on its
/// own, says so (`Resync`, so the engine looks at everything), and hears pokes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_listens_again_after_a_postgres_restart() {
    use sm_lib::Cluster;
    use sm_store_postgres::PostgresCluster;
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap()
        .unwrap();
    let cluster = Arc::new(cluster);
    let url = cluster.fresh_database().await.unwrap();
    let store = PostgresStore::connect(PostgresConfig::new(url))
        .await
        .unwrap();
    let node = PostgresCluster::join(&store, "solo", std::time::Duration::from_secs(15))
        .await
        .unwrap();
    let mut signals = node.signals();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.kill())
        .await
        .unwrap()
        .unwrap();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart())
        .await
        .unwrap()
        .unwrap();
    next_signal(&mut signals, |s| *s == sm_lib::Signal::Resync).await;
    let id = sm_lib::SessionId::new_random();
    // Pokes sent right after the reconnect may race the LISTEN; keep poking until heard.
    let heard = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            node.poke("solo", &id).await.unwrap();
            if let Ok(Ok(s)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), signals.recv()).await
            {
                if s == sm_lib::Signal::Poke(id.clone()) {
                    return;
                }
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "no poke heard after the restart");
}

/// The live sessions of a node whose lease ran out past the grace go to exactly one of
/// the nodes adopting them at once; a node still within its grace keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_sessions_are_adopted_by_exactly_one_node() {
    use sm_lib::Cluster;
    use sm_store_postgres::PostgresCluster;
    let url = fresh_url().await;
    let store = PostgresStore::connect(PostgresConfig::new(url))
        .await
        .unwrap();
    let lease = std::time::Duration::from_millis(200);
    let join = |name: &'static str| PostgresCluster::join(&store, name, lease);
    let (a, b, c, gone) = (
        join("a").await.unwrap(),
        join("b").await.unwrap(),
        join("c").await.unwrap(),
        join("gone").await.unwrap(),
    );
    for n in [&a, &b, &c, &gone] {
        n.heartbeat("http://127.0.0.1:1").await.unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..40 {
        let mut s = session();
        s.node = Some("gone".into());
        if i == 0 {
            s.status = sm_lib::SessionStatus::Dead;
        }
        store.insert_session(&s).await.unwrap();
        if i > 0 {
            ids.push(s.id);
        }
    }
    let grace = std::time::Duration::from_secs(2);
    // Within the lease and grace: nothing moves.
    gone.heartbeat("http://127.0.0.1:1").await.unwrap();
    assert!(a.adopt_orphans("gone", grace).await.unwrap().is_empty());
    // Polls the database's view of the lease (its own clock) with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let nodes = a.nodes().await.unwrap();
        let gone_at = nodes
            .iter()
            .find(|n| n.name == "gone")
            .unwrap()
            .heartbeat_at;
        if sm_lib::Timestamp::now().0 - gone_at.0 > 3_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never ran out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for n in [&a, &b, &c] {
        n.heartbeat("http://127.0.0.1:1").await.unwrap();
    }
    let (x, y, z) = tokio::join!(
        a.adopt_orphans("gone", grace),
        b.adopt_orphans("gone", grace),
        c.adopt_orphans("gone", grace)
    );
    let (x, y, z) = (x.unwrap(), y.unwrap(), z.unwrap());
    let mut all: Vec<sm_lib::SessionId> =
        x.iter().chain(&y).chain(&z).map(|s| s.id.clone()).collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected, "every live session adopted once");
    for (adopter, got) in [("a", &x), ("b", &y), ("c", &z)] {
        assert!(got.iter().all(|s| s.node.as_deref() == Some(adopter)));
    }
    // A node never adopts its own, nor a live node's.
    assert!(a.adopt_orphans("a", grace).await.unwrap().is_empty());
    assert!(a.adopt_orphans("b", grace).await.unwrap().is_empty());
}

/// `sslmode=require` speaks TLS, for the pool and for a node's listening connection, and
/// checks the server's certificate: against `ca_file` it is accepted; against the system's
/// roots it is refused; a server that takes only TLS refuses a plain connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_spoken_when_required_and_the_servers_certificate_is_checked() {
    use sm_lib::Cluster;
    use std::time::Duration;
    let cluster = tokio::task::spawn_blocking(TestCluster::start_tls)
        .await
        .unwrap()
        .unwrap();
    let plain = cluster.fresh_database().await.unwrap();
    let tls = format!("{plain}?sslmode=require");
    let quick = |url: &str| PostgresConfig {
        reconnect_for: Duration::from_secs(1),
        ..PostgresConfig::new(url)
    };

    // libpq's spelling is understood too.
    let store = PostgresStore::connect(PostgresConfig {
        ca_file: Some(cluster.ca_file()),
        ..quick(&format!("{plain}?sslmode=verify-full"))
    })
    .await
    .unwrap();
    let target = session();
    store.insert_session(&target).await.unwrap();
    let sent = store
        .enqueue(message(&target.id, "over TLS".into()))
        .await
        .unwrap();
    assert_eq!(
        store.get_message(sent.id).await.unwrap().unwrap().text,
        "over TLS"
    );
    let node = sm_store_postgres::PostgresCluster::join(&store, "t", Duration::from_secs(5))
        .await
        .unwrap();
    let mut signals = node.signals();
    node.poke("t", &target.id).await.unwrap();
    next_signal(
        &mut signals,
        |s| matches!(s, sm_lib::Signal::Poke(id) if *id == target.id),
    )
    .await;

    let untrusted = PostgresStore::connect(quick(&tls)).await.err().unwrap();
    assert!(
        untrusted.to_string().to_lowercase().contains("certificate"),
        "{untrusted}"
    );
    let refused = PostgresStore::connect(quick(&plain)).await.err().unwrap();
    assert!(
        refused.to_string().contains("pg_hba.conf") || refused.to_string().contains("encryption"),
        "{refused}"
    );
}
