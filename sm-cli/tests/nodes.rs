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
    pg.fresh_database_blocking().unwrap()
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
            "claude:\n  command: sm-test-no-claude-here\n{}{more}",
            cluster_node_config(db, name)
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
    // Its terminal cannot be attached from a's machine, and sm says where it is.
    let out = a.sm(&["attach", "far"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("far runs on node b (http://127.0.0.1:"),
        "{}",
        stderr(&out)
    );
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

/// A storm across three nodes: senders send through every node to agents on every node,
/// while node b is SIGKILLed and restarted and PostgreSQL itself crashes and restarts.
/// Every accepted message reaches its agent exactly once, byte for byte, in order within
/// its sender and mode; no refused send is delivered. `SM_NODE_STORM_MESSAGES` scales it.
#[test]
fn a_storm_across_nodes_with_a_node_killed_and_postgres_restarted_loses_and_doubles_nothing() {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let messages: usize = std::env::var("SM_NODE_STORM_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(450);
    let senders = 3;
    // A PostgreSQL of its own: crashing the shared one would upset the other tests.
    let pg = TestCluster::start().expect("a PostgreSQL server for the storm");
    let db = pg.fresh_database_blocking().unwrap();
    let quiet = "  grace: 0\n";
    let env = vec![("SM_FAKE_IDLE_NOTIFY_MS".to_string(), "3600000".to_string())];
    let start = |name: &str| {
        Server::start_opts(Options {
            extra_config: format!(
                "claude:\n  command: sm-test-no-claude-here\nstore:\n  postgres_url: {db}\n  pool_size: 6\nnode:\n  name: {name}\n  lease: 3\n{quiet}"
            ),
            fixed_port: true,
            env: env.clone(),
            ..Options::default()
        })
    };
    let a = start("a");
    let mut b = start("b");
    let c = start("c");
    let mut names = Vec::new();
    for node in ["a", "b", "c"] {
        for i in 0..3 {
            let name = format!("{node}{i}");
            a.ok(&["spawn", "--agent", "fake", "--node", node, "--name", &name]);
            names.push(name);
        }
    }
    let ids: Vec<String> = names
        .iter()
        .map(|n| a.session(n)["id"].as_str().unwrap().to_string())
        .collect();
    for n in &names {
        a.wait_status(n, "idle");
    }
    let entry: Vec<(std::path::PathBuf, std::path::PathBuf)> = [&a, &b, &c]
        .iter()
        .map(|s| (s.dir.path().join("config.yaml"), s.work()))
        .collect();

    #[derive(Debug)]
    struct Attempt {
        target: usize,
        sender: usize,
        seq: usize,
        mode: &'static str,
        text: String,
        accepted: bool,
    }
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let started = Instant::now();
    let mut threads = Vec::new();
    for sender in 0..senders {
        let attempts = attempts.clone();
        let names = names.clone();
        let entry = entry.clone();
        let share = messages / senders;
        threads.push(std::thread::spawn(move || {
            let mut via = sender;
            let mut x: u64 = 0x9e37_79b9 ^ (sender as u64 + 1);
            let mut rnd = move |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            for seq in 0..share {
                let target = rnd(names.len() as u64) as usize;
                let mode = match rnd(20) {
                    0 => "urgent",
                    1..=3 => "important",
                    _ => "sequential",
                };
                for attempt in 0.. {
                    let (config, work) = &entry[via % entry.len()];
                    let text = format!(
                        "storm s{sender} n{seq} try{attempt} {mode} via {} to {} :: $(id) `x` ünï ✓",
                        via % entry.len(),
                        names[target]
                    );
                    let mut cmd = std::process::Command::new(sm_bin());
                    cmd.env("SM_CONFIG", config)
                        .env_remove("SM_SESSION_ID")
                        .env_remove("SM_SERVER_URL")
                        .env_remove("SM_TOKEN")
                        .current_dir(work)
                        .args(["send", &names[target], &text, "--json"]);
                    if mode != "sequential" {
                        cmd.arg(format!("--{mode}"));
                    }
                    let ok = cmd.output().unwrap().status.success();
                    attempts.lock().unwrap().push(Attempt {
                        target,
                        sender,
                        seq,
                        mode,
                        text,
                        accepted: ok,
                    });
                    if ok {
                        break;
                    }
                    // A client fails over to another node.
                    via += 1;
                    assert!(attempt < 400, "a message was refused 400 times in a row");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }));
    }

    // The chaos: node b killed and back, PostgreSQL crashed and back, twice each.
    let accepted_now = || {
        attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|x| x.accepted)
            .count()
    };
    for round in 0..2 {
        let goal = messages * (2 * round + 1) / 5;
        until("the storm to get going", Duration::from_secs(300), || {
            (accepted_now() >= goal).then_some(())
        });
        b.kill9();
        std::thread::sleep(Duration::from_millis(500));
        b.restart();
        let goal = messages * (2 * round + 2) / 5;
        until("the storm to go on", Duration::from_secs(300), || {
            (accepted_now() >= goal).then_some(())
        });
        pg.kill().unwrap();
        pg.restart().unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    let attempts = Arc::try_unwrap(attempts).unwrap().into_inner().unwrap();
    let accepted: Vec<&Attempt> = attempts.iter().filter(|a| a.accepted).collect();
    assert_eq!(accepted.len(), messages / senders * senders);
    let by_text: HashMap<&str, &Attempt> = attempts.iter().map(|a| (a.text.as_str(), a)).collect();
    let all_prompts = || {
        let mut all = a.all_prompts();
        all.extend(b.all_prompts());
        all.extend(c.all_prompts());
        all
    };
    until(
        "every accepted message to reach its agent",
        Duration::from_secs(300),
        || {
            let arrived = all_prompts()
                .iter()
                .filter(|(_, p)| by_text.get(p.as_str()).is_some_and(|a| a.accepted))
                .count();
            (arrived >= accepted.len()).then_some(())
        },
    );
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut order: BTreeMap<(usize, usize, &str), Vec<usize>> = BTreeMap::new();
    let prompts = all_prompts();
    for (session, prompt) in &prompts {
        if !prompt.starts_with("storm ") {
            continue;
        }
        let attempt = by_text
            .get(prompt.as_str())
            .unwrap_or_else(|| panic!("{session} got text nobody sent: {prompt:?}"));
        assert!(attempt.accepted, "a refused send was delivered: {prompt:?}");
        assert_eq!(
            *session, ids[attempt.target],
            "{prompt:?} reached the wrong agent"
        );
        let n = seen.entry(prompt.as_str()).or_default();
        *n += 1;
        assert_eq!(*n, 1, "delivered twice: {prompt:?}");
        order
            .entry((attempt.target, attempt.sender, attempt.mode))
            .or_default()
            .push(attempt.seq);
    }
    for ((target, sender, mode), seqs) in &order {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            seqs, &sorted,
            "{mode} messages from sender {sender} to {} arrived out of order",
            names[*target]
        );
    }
    for s in [&a, &b, &c] {
        assert!(
            !s.log().contains("panicked"),
            "a node panicked:\n{}",
            s.log()
        );
    }
    println!(
        "node storm: {} messages accepted through 3 nodes ({} attempts refused), 2 node kills, \
         2 PostgreSQL crashes, all delivered in {:.1} s; lost 0, doubled 0, out of order 0",
        accepted.len(),
        attempts.len() - accepted.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_second_server_with_a_running_nodes_name_is_refused_with_the_reason() {
    let db = database();
    let a = node(&db, "a");
    let state = tempfile::tempdir().unwrap();
    let (code, output) = run_server_expecting_exit(&format!(
        "server:\n  port: 0\npaths:\n  state_file: {}/state.json\nterminal:\n  backend: pty\nstore:\n  postgres_url: {db}\n  pool_size: 2\nnode:\n  name: a\n",
        state.path().display()
    ));
    assert_ne!(code, Some(0), "{output}");
    assert!(
        output.contains("node a is already running at") && output.contains("another node.name"),
        "{output}"
    );
    // The running node was not disturbed.
    a.ok(&["status"]);
    assert_eq!(a.json(&["all"]).as_array().unwrap().len(), 0);
}

#[test]
fn the_event_stream_of_any_node_carries_the_events_of_every_node() {
    use std::io::BufRead;
    let db = database();
    let a = node(&db, "a");
    let b = node(&db, "b");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let url = format!("{}/events/stream", a.url());
    let token = a.token();
    std::thread::spawn(move || {
        let response = ureq::get(&url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        let _ = tx.send("(connected)".into());
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(first, "(connected)");

    b.ok(&["spawn", "--agent", "fake", "--name", "far", "hello"]);
    let far = b.session("far")["id"].as_str().unwrap().to_string();
    // Node a, which runs nothing, streams what happens to node b's agent.
    let mut seen = Vec::new();
    let idle = until(
        "node b's agent going idle, on node a's stream",
        std::time::Duration::from_secs(30),
        || {
            while let Ok(line) = rx.try_recv() {
                seen.push(line);
            }
            seen.iter()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|e| e["session"] == far.as_str() && e["kind"]["to"] == "idle")
        },
    );
    assert_eq!(idle["session"], far.as_str(), "{idle}");
}
