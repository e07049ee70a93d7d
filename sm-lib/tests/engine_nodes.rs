//! Engines as nodes of one cluster over one store (`MemoryCluster`, simulated agents,
//! paused time): only the owner runs a session; sends, waits and wake-ups cross nodes; a
//! missed poke costs a sweep interval, never a message; what needs another node's
//! terminal is refused with the owner's name; a restarted node leaves others' sessions be.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sm_lib::engine::{EngineConfig, FakeProfile};
use sm_lib::{
    AgentKind, Caller, Cluster, DeliveryMode, Engine, Error, MemoryBackend, MemoryCluster,
    MemoryStore, MessageState, MessageStore, NewMessage, Session, SessionStatus, SpawnRequest,
};

struct Node {
    engine: Engine,
    backend: MemoryBackend,
}

async fn node(store: &Arc<MemoryStore>, cluster: MemoryCluster, backend: MemoryBackend) -> Node {
    let config = EngineConfig {
        sweep_interval: Duration::from_secs(2),
        ..EngineConfig::default()
    };
    node_with(store, cluster, backend, config).await
}

async fn node_with(
    store: &Arc<MemoryStore>,
    cluster: MemoryCluster,
    backend: MemoryBackend,
    config: EngineConfig,
) -> Node {
    let mut hooks = backend.hook_events();
    let engine = Engine::builder(store.clone(), Arc::new(backend.clone()))
        .profile(Arc::new(FakeProfile {
            program: PathBuf::from("simulated"),
            env: Default::default(),
        }))
        .cluster(Arc::new(cluster))
        .config(config)
        .start()
        .await
        .unwrap();
    let forward = engine.clone();
    tokio::spawn(async move {
        while let Some((id, event)) = hooks.recv().await {
            let _ = forward.hook(&id, event).await;
        }
    });
    Node { engine, backend }
}

async fn spawn(on: &Node, name: &str, parent: Option<&Session>, dir: &std::path::Path) -> Session {
    let caller = parent.map_or(Caller::Admin, |p| Caller::Session(p.id.clone()));
    let mut req = SpawnRequest::new(AgentKind::Fake, dir);
    req.name = Some(name.parse().unwrap());
    on.engine.spawn(&caller, req).await.unwrap()
}

async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

struct Two {
    store: Arc<MemoryStore>,
    a: Node,
    b: Node,
    cluster: MemoryCluster,
    dir: tempfile::TempDir,
}

async fn two_nodes() -> Two {
    let store = Arc::new(MemoryStore::new());
    let cluster = MemoryCluster::new("a", store.clone());
    let a = node(&store, cluster.clone(), MemoryBackend::new()).await;
    let b = node(&store, cluster.join("b"), MemoryBackend::new()).await;
    Two {
        store,
        a,
        b,
        cluster,
        dir: tempfile::tempdir().unwrap(),
    }
}

#[tokio::test(start_paused = true)]
async fn an_em_on_one_node_dispatches_to_a_worker_on_another_and_is_woken_by_it() {
    let t = two_nodes().await;
    let em = spawn(&t.a, "em", None, t.dir.path()).await;
    // The EM's child, started by node b (where `sm spawn --node b` lands).
    let worker = spawn(&t.b, "worker", Some(&em), t.dir.path()).await;
    assert_eq!(em.node.as_deref(), Some("a"));
    assert_eq!(worker.node.as_deref(), Some("b"));
    assert_eq!(worker.parent.as_ref(), Some(&em.id));

    let as_em = Caller::Session(em.id.clone());
    // Node a takes the send and the wait; node b's actor delivers and fires the wait.
    let sent =
        t.a.engine
            .send(
                &as_em,
                &worker.id,
                "build the parser",
                DeliveryMode::Sequential,
            )
            .await
            .unwrap();
    t.a.engine
        .wait(&as_em, &worker.id, Duration::from_secs(600))
        .await
        .unwrap();
    pass(Duration::from_millis(500)).await;
    assert_eq!(t.b.backend.submitted(&worker.id), vec!["build the parser"]);
    assert!(
        t.a.backend.submitted(&worker.id).is_empty(),
        "only the owner types"
    );
    pass(Duration::from_secs(3)).await;
    let woken = t.a.backend.submitted(&em.id);
    assert_eq!(woken.len(), 1, "the EM is woken once: {woken:?}");
    assert!(woken[0].contains("worker"), "{woken:?}");
    let stored = t.store.get_message(sent.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.attempts),
        (MessageState::Delivered, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_whose_poke_was_missed_is_delivered_by_the_owners_sweep() {
    let t = two_nodes().await;
    let worker = spawn(&t.b, "worker", None, t.dir.path()).await;
    // Straight into the store, as if node a's poke never arrived.
    t.store
        .enqueue(NewMessage {
            target: worker.id.clone(),
            sender: None,
            text: "found by the sweep".into(),
            mode: DeliveryMode::Sequential,
            client_key: None,
        })
        .await
        .unwrap();
    pass(Duration::from_secs(1)).await;
    assert!(t.b.backend.submitted(&worker.id).is_empty());
    pass(Duration::from_secs(3)).await;
    assert_eq!(
        t.b.backend.submitted(&worker.id),
        vec!["found by the sweep"]
    );
}

#[tokio::test(start_paused = true)]
async fn what_needs_another_nodes_terminal_is_refused_naming_the_owner() {
    let t = two_nodes().await;
    let worker = spawn(&t.b, "worker", None, t.dir.path()).await;
    let owner_named = |e: Error| match e {
        Error::Elsewhere { node, .. } => assert_eq!(node, "b"),
        other => panic!("expected Elsewhere, got {other:?}"),
    };
    owner_named(
        t.a.engine
            .kill(&Caller::Admin, &worker.id)
            .await
            .unwrap_err(),
    );
    owner_named(
        t.a.engine
            .clear(&Caller::Admin, &worker.id)
            .await
            .unwrap_err(),
    );
    owner_named(t.a.engine.output(&worker.id, 10).await.unwrap_err());
    owner_named(
        t.a.engine
            .answer(&Caller::Admin, &worker.id, 0)
            .await
            .unwrap_err(),
    );
    // Refused, not done: the worker still lives, and its owner can kill it.
    let live = t.store.get_session(&worker.id).await.unwrap().unwrap();
    assert!(live.status.is_live());
    t.b.engine.kill(&Caller::Admin, &worker.id).await.unwrap();
    let dead = t.store.get_session(&worker.id).await.unwrap().unwrap();
    assert_eq!(dead.status, SessionStatus::Dead);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_leaves_the_other_nodes_sessions_alone() {
    let t = two_nodes().await;
    let worker = spawn(&t.b, "worker", None, t.dir.path()).await;
    // A new node-a engine, with a backend that has none of b's terminals, recovers.
    t.a.engine.shutdown();
    let again = node(&t.store, t.cluster.clone(), MemoryBackend::new()).await;
    pass(Duration::from_secs(1)).await;
    let s = t.store.get_session(&worker.id).await.unwrap().unwrap();
    assert!(
        s.status.is_live(),
        "b's worker must not be declared dead by a: {s:?}"
    );
    // And the cluster still carries work to it from the new engine.
    again
        .engine
        .send(
            &Caller::Admin,
            &worker.id,
            "still there?",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    pass(Duration::from_millis(500)).await;
    assert_eq!(t.b.backend.submitted(&worker.id), vec!["still there?"]);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_stops_renewing_its_lease_is_listed_unreachable() {
    let t = two_nodes().await;
    let nodes = t.cluster.nodes().await.unwrap();
    assert_eq!(
        nodes
            .iter()
            .map(|n| (n.name.as_str(), n.reachable))
            .collect::<Vec<_>>(),
        vec![("a", true), ("b", true)]
    );
    t.cluster.join("b").expire();
    let nodes = t.cluster.nodes().await.unwrap();
    assert!(!nodes.iter().find(|n| n.name == "b").unwrap().reachable);
}

#[tokio::test(start_paused = true)]
async fn a_node_gone_past_the_grace_has_its_sessions_declared_dead_and_their_waiters_told() {
    let store = Arc::new(MemoryStore::new());
    let cluster = MemoryCluster::new("a", store.clone());
    let a = node_with(
        &store,
        cluster.clone(),
        MemoryBackend::new(),
        EngineConfig {
            sweep_interval: Duration::from_secs(2),
            orphan_grace: Some(Duration::from_secs(60)),
            ..EngineConfig::default()
        },
    )
    .await;
    let b_cluster = cluster.join("b");
    let b_backend = MemoryBackend::new();
    // Node b renews its lease only at start: once expired, it stays so.
    let b = node_with(
        &store,
        b_cluster.clone(),
        b_backend.clone(),
        EngineConfig {
            heartbeat_interval: Duration::from_secs(365 * 24 * 3600),
            ..EngineConfig::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let em = spawn(&a, "em", None, dir.path()).await;
    let worker = spawn(&b, "worker", Some(&em), dir.path()).await;
    let as_em = Caller::Session(em.id.clone());
    a.engine
        .wait(&as_em, &worker.id, Duration::from_secs(3600))
        .await
        .unwrap();

    // Node b goes away (its agent still running on its machine) and its lease runs out.
    b.engine.shutdown();
    b_cluster.expire();
    let sent = a
        .engine
        .send(
            &as_em,
            &worker.id,
            "are you there?",
            DeliveryMode::Sequential,
        )
        .await
        .unwrap();
    pass(Duration::from_secs(10)).await;

    let s = store.get_session(&worker.id).await.unwrap().unwrap();
    assert_eq!(s.status, SessionStatus::Dead, "{s:?}");
    assert!(
        s.end_reason
            .as_deref()
            .unwrap_or("")
            .contains("node b was unreachable"),
        "{s:?}"
    );
    let m = store.get_message(sent.id).await.unwrap().unwrap();
    assert_eq!(
        m.state,
        MessageState::Failed,
        "the sender learns it was not delivered"
    );
    let woken = a.backend.submitted(&em.id);
    assert!(
        woken
            .iter()
            .any(|t| t.starts_with("[sm] worker") && t.contains("ended (its node b")),
        "the waiting EM is woken: {woken:?}"
    );
    assert!(b_backend.submitted(&worker.id).is_empty());

    // Node b comes back: the agent it left running is ended, not re-adopted.
    assert!(
        sm_lib::TerminalBackend::list(&b_backend)
            .await
            .unwrap()
            .contains(&worker.id)
    );
    let _again = node(&store, b_cluster, b_backend.clone()).await;
    pass(Duration::from_secs(1)).await;
    assert!(
        !sm_lib::TerminalBackend::list(&b_backend)
            .await
            .unwrap()
            .contains(&worker.id)
    );
    let s = store.get_session(&worker.id).await.unwrap().unwrap();
    assert_eq!(s.status, SessionStatus::Dead);
}
