//! Latency across nodes: two `sm-server` nodes (release build) on one throwaway PostgreSQL
//! on loopback, tmux, fake agents whose hooks call the real `sm hook`. Run with
//! `cargo build --release -p sm-server -p sm-fake-agent && cargo bench -p sm-cli --bench nodes`.
//!
//! - cross-node wake: a child on node b ends its turn (its Stop hook starts, timestamped by
//!   a wrapper) → its parent on node a, waiting on it, has the wake message submitted;
//! - cross-node delivery: `POST /sessions/{id}/input` to node a returns → the target on
//!   node b has the message submitted;
//! - the same delivery with sender and target on one node of the cluster, for comparison.
#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sm_store_postgres::test_cluster::TestCluster;
use sm_tests::bench::{now_ms, prompts, report, stops, timed_stop_hooks};

struct Node {
    server: sm_tests::Server,
    url: String,
}

struct Bench {
    a: Node,
    b: Node,
    admin: String,
    http: ureq::Agent,
}

impl Bench {
    fn post(&self, on: &Node, path: &str, token: &str, body: Value) -> Value {
        sm_tests::bench::post_json(&self.http, &format!("{}{path}", on.url), token, body)
    }

    fn spawn(&self, on: &Node, name: &str) -> String {
        let work = on.server.path().join("work");
        let s = self.post(
            on,
            "/sessions",
            &self.admin,
            json!({ "agent": "fake", "name": name, "working_dir": work }),
        );
        s["id"].as_str().unwrap().to_string()
    }

    fn wait_prompt(&self, on: &Node, id: &str, needle: &str) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, _, at)) = prompts(on.server.path())
                .into_iter()
                .find(|(s, p, _)| s == id && p.contains(needle))
            {
                return at;
            }
            assert!(Instant::now() < deadline, "{needle} never reached {id}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn wait_idle(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut r = self
                .http
                .get(format!("{}/sessions/{id}", self.a.url))
                .header("Authorization", format!("Bearer {}", self.admin))
                .call()
                .unwrap();
            let v: Value = r.body_mut().read_json().unwrap();
            if v["status"] == "idle" {
                return;
            }
            assert!(Instant::now() < deadline, "{id} never idle");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `id` (on `on`) has fired more than `before` Stop hooks and is idle.
    fn wait_turn_over(&self, on: &Node, id: &str, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while stops(on.server.path(), id).len() <= before {
            assert!(Instant::now() < deadline, "{id}'s turn never ended");
            std::thread::sleep(Duration::from_millis(2));
        }
        self.wait_idle(id);
    }

    fn delivery(&self, via: &Node, on: &Node, target: &str, label: &str) {
        let mut lat = Vec::new();
        for i in 0..30 {
            self.wait_idle(target);
            let before = stops(on.server.path(), target).len();
            let text = format!("{label} {i}");
            let t0 = now_ms();
            self.post(
                via,
                &format!("/sessions/{target}/input"),
                &self.admin,
                json!({ "text": text }),
            );
            lat.push(self.wait_prompt(on, target, &text) - t0);
            self.wait_turn_over(on, target, before);
        }
        report(label, lat, None);
    }
}

fn node(db: &str, name: &str) -> Node {
    let server = sm_tests::Server::start_opts(sm_tests::Options {
        hooks: sm_tests::Hooks::Exactly(timed_stop_hooks()),
        extra_config: format!(
            "monitor:\n  idle_timeout: 3600\nstore:\n  postgres_url: {db}\nnode:\n  name: {name}\n"
        ),
        env: vec![
            ("SM_FAKE_STARTUP_MS".into(), "100".into()),
            ("SM_FAKE_IDLE_NOTIFY_MS".into(), "86400000".into()),
        ],
        ..sm_tests::Options::default()
    });
    let url = server.url();
    Node { server, url }
}

fn main() {
    let pg =
        TestCluster::start().expect("PostgreSQL's server programs (apt-get install postgresql)");
    let db = pg.fresh_database_blocking().unwrap();
    let a = node(&db, "a");
    let b = node(&db, "b");
    let bench = Bench {
        admin: a.server.token(),
        http: ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .into(),
        a,
        b,
    };
    println!("sm nodes benchmark: 2 nodes on PostgreSQL (loopback), fake agents on tmux");

    let parent = bench.spawn(&bench.a, "parent");
    let child = bench.spawn(&bench.b, "child");
    let parent_token = bench.a.server.token_of(&parent);
    let mut wake = Vec::new();
    for i in 0..30 {
        bench.wait_idle(&child);
        bench.wait_idle(&parent);
        bench.post(
            &bench.a,
            &format!("/sessions/{child}/input"),
            &bench.admin,
            json!({ "text": format!("task {i} [[reply r{i}]]") }),
        );
        bench.post(
            &bench.a,
            &format!("/sessions/{child}/watch"),
            &parent_token,
            json!({ "timeout_secs": 120 }),
        );
        let woke_at = bench.wait_prompt(&bench.a, &parent, &format!("Last message: r{i}"));
        wake.push(woke_at - stops(bench.b.server.path(), &child)[i]);
    }
    report("cross-node wake (b's Stop → a woken)", wake, None);

    let far = bench.spawn(&bench.b, "far");
    bench.delivery(&bench.a, &bench.b, &far, "cross-node delivery (a → b)");
    let near = bench.spawn(&bench.a, "near");
    bench.delivery(&bench.a, &bench.a, &near, "same-node delivery (a → a)");
}
