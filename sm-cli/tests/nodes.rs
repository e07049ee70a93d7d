//! Several `sm-server` nodes on one real PostgreSQL (a throwaway cluster), each with its
//! own state dir, port, tmux socket and node name: the EM loop across nodes, requests
//! that need another node's terminal, a node that dies and comes back.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::Value;
use sm_store_postgres::test_cluster::TestCluster;
use sm_tests::*;

/// A fresh database on the shared throwaway PostgreSQL.
fn database() -> String {
    let pg = TestCluster::shared().expect("a PostgreSQL server for the tests");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pg.fresh_database())
        .unwrap()
}

/// A node named `name` of the cluster on `db`. A short lease, so a dead node is seen
/// unreachable quickly; a fixed port, so its agents' hooks reach it again after a restart.
fn node(db: &str, name: &str) -> Server {
    node_with(db, name, "")
}

/// [`node`] with more `node.*` settings (indented YAML lines).
fn node_with(db: &str, name: &str, more: &str) -> Server {
    Server::start_opts(Options {
        extra_config: format!(
            "claude:\n  command: sm-test-no-claude-here\nstore:\n  postgres_url: {db}\n  pool_size: 4\nnode:\n  name: {name}\n  lease: 2\n{more}"
        ),
        fixed_port: true,
        ..Options::default()
    })
}

fn sessions_named(s: &Server, name: &str) -> Value {
    s.json(&["all"])
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn an_em_on_one_node_runs_workers_on_two_others_and_is_woken_by_each() {
    let db = database();
    let a = node(&db, "a");
    let b = node(&db, "b");
    let c = node(&db, "c");
    // One admin token for the cluster: the first node's, adopted by the others.
    assert_eq!(a.token(), b.token());
    assert_eq!(a.token(), c.token());

    std::fs::write(
        a.work().join("em.sh"),
        "sm spawn --agent fake --node b --name w1 --wait 60 'parse the input [[reply parsed 3 files]]'\n\
         sm spawn --agent fake --node c --name w2 --wait 60 'lint it [[sleep 0.3]] [[reply 2 warnings]]'\n",
    )
    .unwrap();
    a.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "em",
        "--skip-permissions",
        "plan the work [[bash sh em.sh]]",
    ]);
    // Each worker's finished turn wakes the EM on node a.
    let em = a.until("the EM woken by both workers", || {
        let p = a.prompts("em");
        (p.len() >= 3).then_some(p)
    });
    let wakes = &em[1..];
    assert!(
        wakes
            .iter()
            .any(|p| p.starts_with("[sm] w1") && p.contains("parsed 3 files")),
        "{em:?}"
    );
    assert!(
        wakes
            .iter()
            .any(|p| p.starts_with("[sm] w2") && p.contains("2 warnings")),
        "{em:?}"
    );
    // The workers ran where they were placed: their terminals are on b and c.
    assert_eq!(
        b.prompts("w1"),
        vec!["parse the input [[reply parsed 3 files]]"]
    );
    assert_eq!(
        c.prompts("w2"),
        vec!["lint it [[sleep 0.3]] [[reply 2 warnings]]"]
    );
    assert!(a.prompts("w1").is_empty() && a.prompts("w2").is_empty());

    // Every node sees the whole swarm, each session with its node.
    for s in [&a, &b, &c] {
        assert_eq!(sessions_named(s, "em")["node"], "a");
        assert_eq!(sessions_named(s, "w1")["node"], "b");
        assert_eq!(sessions_named(s, "w2")["node"], "c");
    }
    let children = a.json(&["children", "em"]);
    let mut names: Vec<&str> = children
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["w1", "w2"]);
    let status = a.ok(&["status"]);
    assert!(status.contains("node: a of a, b, c"), "{status}");
    assert!(
        status.contains("[node b]") && status.contains("[node c]"),
        "{status}"
    );

    // A message sent on c to the EM on a, and from a to the worker on b.
    c.wait_status("em", "idle");
    c.ok(&["send", "em", "from c [[reply got it]]"]);
    a.wait_prompts("em", 4);
    b.wait_status("w1", "idle");
    a.ok(&["send", "w1", "more work [[reply done again]]"]);
    let w1 = b.wait_prompts("w1", 2);
    assert_eq!(w1[1], "more work [[reply done again]]");
}

#[test]
fn what_needs_another_nodes_terminal_is_answered_by_that_node() {
    let db = database();
    let a = node(&db, "a");
    let b = node(&db, "b");
    b.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "far",
        "hello [[reply far away]]",
    ]);
    b.wait_prompts("far", 1);
    // Its screen, read through node a, comes from node b's terminal.
    a.until("the reply on screen through another node", || {
        a.ok(&["output", "far", "--lines", "30"])
            .contains("far away")
            .then_some(())
    });
    // A spawn placed on b from a, and killed from a.
    let out = a.ok(&[
        "spawn", "--agent", "fake", "--node", "b", "--name", "placed", "stand by",
    ]);
    assert!(out.contains("on node b"), "{out}");
    b.wait_prompts("placed", 1);
    assert!(a.prompts("placed").is_empty());
    a.ok(&["kill", "placed"]);
    let placed = sessions_named(&b, "placed");
    assert_eq!(placed["status"], "dead", "{placed}");
    // A node that does not exist is named in the refusal.
    let out = a.sm(&["spawn", "--agent", "fake", "--node", "zz", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no node named zz"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_dead_node_is_shown_unreachable_keeps_its_queue_and_resumes_when_back() {
    let db = database();
    let a = node(&db, "a");
    let mut b = node(&db, "b");
    b.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "far",
        "hello [[reply first]]",
    ]);
    b.wait_prompts("far", 1);
    b.wait_status("far", "idle");

    b.kill9();
    let far = a.until("node b's session shown unreachable", || {
        let far = sessions_named(&a, "far");
        (far["unreachable"] == true).then_some(far)
    });
    assert_eq!(far["node"], "b");
    let listing = a.ok(&["all"]);
    assert!(
        listing.contains("unreachable") && listing.contains("[node b]"),
        "{listing}"
    );
    // What needs its terminal says why it cannot be done; a message is queued, not lost.
    let out = a.sm(&["output", "far"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("node b cannot be reached"),
        "{}",
        stderr(&out)
    );
    a.ok(&["send", "far", "while you were away [[reply back]]"]);

    // Back on the same name, node b re-adopts its agent and delivers what waited.
    b.restart();
    let far = b.wait_prompts("far", 2);
    assert_eq!(far[1], "while you were away [[reply back]]");
    a.until("node b reachable again", || {
        (sessions_named(&a, "far")["unreachable"] != true).then_some(())
    });
    assert_eq!(b.prompts("far").len(), 2, "delivered once");
}

#[test]
fn a_node_away_past_the_grace_has_its_sessions_declared_dead_and_ends_them_when_back() {
    let db = database();
    let a = node_with(&db, "a", "  grace: 1\n");
    let mut b = node_with(&db, "b", "  grace: 1\n");
    std::fs::write(
        a.work().join("em.sh"),
        "sm spawn --agent fake --node b --name far --wait 600 'stand by'\n",
    )
    .unwrap();
    a.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "em",
        "--skip-permissions",
        "plan [[bash sh em.sh]]",
    ]);
    b.wait_prompts("far", 1);
    let far_id = sessions_named(&a, "far")["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.kill9();
    // Node a declares it dead and wakes the EM that waits on it.
    let em = a.until("the EM told its worker's node is gone", || {
        let p = a.prompts("em");
        p.iter()
            .find(|p| p.starts_with("[sm] far") && p.contains("node b was unreachable"))
            .cloned()
    });
    assert!(em.contains("ended"), "{em}");
    assert_eq!(sessions_named(&a, "far")["status"], "dead");
    // Back, node b ends the agent it left running instead of re-adopting it.
    let windows = |s: &Server| s.tmux(&["list-windows", "-a", "-F", "#{window_name}"]);
    assert!(
        windows(&b).contains(&far_id),
        "the agent outlived its node's server"
    );
    b.restart();
    b.until("the orphaned agent's terminal gone", || {
        (!windows(&b).contains(&far_id)).then_some(())
    });
    assert_eq!(sessions_named(&b, "far")["status"], "dead");
}
