//! Latency, idle cost and scale with a real server, tmux and fake agents whose hooks call
//! the real `sm hook`. Run with
//! `cargo build --release -p sm-server -p sm-fake-agent && cargo bench -p sm-cli --bench scale`
//! (`SM_BENCH_AGENTS=200`, `SM_BENCH_IDLE_SECS=60` by default).
//!
//! - wake: the child's Stop hook starts (timestamped by a wrapper) → the waiting parent
//!   has the wake message submitted (the fake agent's prompt log);
//! - delivery: the HTTP send returns → the target has the message submitted, per mode, to
//!   an idle target, and urgent to a busy one;
//! - idle cost: CPU time of the server and the tmux server over the idle window with every
//!   agent idle, and the server's RSS;
//! - scale: spawning every agent, then one message round trip through each;
//! - `sm watch`: its CPU time over the same idle window with every session on its screen,
//!   and the time each redraw of them took (its `--stats`);
//! - the web dashboard's first load with every session: the page, its script, style sheet
//!   and icon, and `GET /status`, one after another — the time until each answer was read
//!   whole, summed, and the bytes sent (gzip, as a browser asks).
#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sm_tests::bench::{now_ms, report};

struct Bench {
    server: sm_tests::Server,
    url: String,
    admin: String,
    agent: ureq::Agent,
}

impl Bench {
    fn start() -> Bench {
        // The Stop hook wrapper timestamps the moment the hook starts.
        let hooks = sm_tests::bench::timed_stop_hooks();
        let env = |k: &str, v: &str| (k.to_string(), v.to_string());
        let server = sm_tests::Server::start_opts(sm_tests::Options {
            hooks: sm_tests::Hooks::Exactly(hooks),
            extra_config: "monitor:\n  idle_timeout: 3600\n".into(),
            env: vec![
                env("SM_FAKE_STARTUP_MS", "100"),
                // Quiet agents: the fake agent's own 60 s idle notification would redraw
                // every screen inside the idle window and measure the agents, not sm.
                env("SM_FAKE_IDLE_NOTIFY_MS", "86400000"),
                env(
                    "SM_LOG",
                    &std::env::var("SM_BENCH_LOG").unwrap_or_else(|_| "info".into()),
                ),
            ],
            ..sm_tests::Options::default()
        });
        let url = server.url();
        let admin = server.token();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .into();
        Bench {
            server,
            url,
            admin,
            agent,
        }
    }

    fn post(&self, path: &str, token: &str, body: Value) -> Value {
        sm_tests::bench::post_json(&self.agent, &format!("{}{path}", self.url), token, body)
    }

    fn spawn(&self, name: &str) -> String {
        let work = self.server.path().join("work");
        let s = self.post(
            "/sessions",
            &self.admin,
            json!({ "agent": "fake", "name": name, "working_dir": work }),
        );
        s["id"].as_str().unwrap().to_string()
    }

    fn prompts(&self) -> Vec<(String, String, f64)> {
        sm_tests::bench::prompts(self.server.path())
    }

    fn wait_prompt(&self, id: &str, needle: &str) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, _, at)) = self
                .prompts()
                .into_iter()
                .find(|(s, p, _)| s == id && p.contains(needle))
            {
                return at;
            }
            assert!(Instant::now() < deadline, "{needle} never reached {id}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn status(&self, id: &str) -> String {
        let mut r = self
            .agent
            .get(format!("{}/sessions/{id}", self.url))
            .header("Authorization", format!("Bearer {}", self.admin))
            .call()
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        v["status"].as_str().unwrap_or("").to_string()
    }

    /// How many Stop hooks `id` has fired so far.
    fn stops(&self, id: &str) -> usize {
        std::fs::read_to_string(self.server.path().join("stops"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(id))
            .count()
    }

    /// Waits until `id` has fired more than `before` Stop hooks and the server says idle:
    /// the turn the last message started is over (the status alone can still be the idle
    /// from before that message was verified as submitted).
    fn wait_turn_over(&self, id: &str, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.stops(id) <= before {
            assert!(Instant::now() < deadline, "{id}'s turn never ended");
            std::thread::sleep(Duration::from_millis(2));
        }
        self.wait_idle(id);
    }

    fn wait_idle(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.status(id) != "idle" {
            assert!(Instant::now() < deadline, "{id} never idle");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| {
            v.split_whitespace()
                .next()
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn tmux_server_pid(socket: &str) -> Option<u32> {
    let out = Command::new("tmux")
        .args(["-L", socket, "display-message", "-p", "#{pid}"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn main() {
    let agents: usize = std::env::var("SM_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let idle_secs: u64 = std::env::var("SM_BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let b = Bench::start();
    println!("sm scale benchmark: {agents} fake agents on tmux, release build");

    // Wake latency: the parent waits on the child; the child's Stop hook → the parent has
    // the wake message submitted.
    let parent = b.spawn("parent");
    let child = b.spawn("child");
    let parent_token = b.server.token_of(&parent);
    let mut wake = Vec::new();
    for i in 0..30 {
        b.wait_idle(&child);
        b.wait_idle(&parent);
        b.post(
            &format!("/sessions/{child}/input"),
            &b.admin,
            json!({ "text": format!("task {i} [[reply r{i}]]") }),
        );
        b.post(
            &format!("/sessions/{child}/watch"),
            &parent_token,
            json!({ "timeout_secs": 120 }),
        );
        let woke_at = b.wait_prompt(&parent, &format!("Last message: r{i}"));
        let stops = sm_tests::bench::stops(b.server.path(), &child);
        wake.push(woke_at - stops[i]);
    }
    report("wake (Stop hook → parent woken)", wake, Some((20.0, 100.0)));

    // Delivery latency to an idle target, per mode; urgent to a busy one.
    let target = b.spawn("target");
    for mode in ["sequential", "important", "urgent"] {
        let mut lat = Vec::new();
        for i in 0..20 {
            b.wait_idle(&target);
            let before = b.stops(&target);
            let text = format!("{mode} {i}");
            let t0 = now_ms();
            b.post(
                &format!("/sessions/{target}/input"),
                &b.admin,
                json!({ "text": text, "mode": mode }),
            );
            lat.push(b.wait_prompt(&target, &text) - t0);
            b.wait_turn_over(&target, before);
        }
        report(&format!("delivery, {mode}, idle target"), lat, None);
    }
    let mut lat = Vec::new();
    for i in 0..10 {
        b.wait_idle(&target);
        b.post(
            &format!("/sessions/{target}/input"),
            &b.admin,
            json!({ "text": format!("long {i} [[sleep 60]]") }),
        );
        while b.status(&target) != "working" {
            std::thread::sleep(Duration::from_millis(5));
        }
        let text = format!("interrupt {i}");
        let t0 = now_ms();
        b.post(
            &format!("/sessions/{target}/input"),
            &b.admin,
            json!({ "text": text, "mode": "urgent" }),
        );
        lat.push(b.wait_prompt(&target, &text) - t0);
    }
    report("delivery, urgent, busy target", lat, None);

    // Scale: spawn the rest concurrently, then one round trip through each.
    let started = Instant::now();
    let names: Vec<String> = (0..agents.saturating_sub(3))
        .map(|i| format!("a{i}"))
        .collect();
    let ids: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<_> = names
            .chunks(names.len().div_ceil(16).max(1))
            .map(|chunk| s.spawn(|| chunk.iter().map(|n| b.spawn(n)).collect::<Vec<_>>()))
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let spawn_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        b.post(
            &format!("/sessions/{id}/input"),
            &b.admin,
            json!({ "text": format!("ping {i} [[reply pong {i}]]") }),
        );
    }
    let mut failures = 0;
    for (i, id) in ids.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !b
            .prompts()
            .iter()
            .any(|(s, p, _)| s == id && p.starts_with(&format!("ping {i} ")))
        {
            if Instant::now() > deadline {
                failures += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let round_secs = started.elapsed().as_secs_f64();
    let total = ids.len() + 3;
    println!(
        "scale: spawned {} agents in {spawn_secs:.1} s ({:.0} ms each, 16 at a time); one message to each delivered in {round_secs:.1} s; {failures} failures",
        ids.len(),
        spawn_secs * 1000.0 / ids.len().max(1) as f64
    );

    // Idle cost with everyone idle.
    for id in &ids {
        b.wait_idle(id);
    }
    let server_pid = b.server.child.id();
    let tmux_pid = tmux_server_pid(&b.server.socket).unwrap_or(0);
    // The dashboard watches the idle swarm from a tmux of its own.
    let watch_socket = format!("sm-bench-watch-{}", std::process::id());
    let watch_stats = b.server.path().join("watch.stats");
    let watch_cmd = format!(
        "exec env -u SM_SESSION_ID -u SM_TOKEN -u SM_SERVER_URL SM_CONFIG={} {} watch --stats 2> {}",
        b.server.path().join("config.yaml").display(),
        sm_tests::sm_bin().display(),
        watch_stats.display()
    );
    let tmux_watch = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &watch_socket])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    tmux_watch(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-x",
        "200",
        "-y",
        "60",
        &watch_cmd,
    ]);
    let watch_pid: u32 = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = tmux_watch(&["capture-pane", "-p"]);
            if screen.contains(&format!("{} live", ids.len() + 3)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sm watch never showed the swarm:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        tmux_watch(&["display-message", "-p", "#{pane_pid}"])
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let w0 = cpu_secs(watch_pid);
    let (s0, t0) = (cpu_secs(server_pid), cpu_secs(tmux_pid));
    std::thread::sleep(Duration::from_secs(idle_secs));
    let (s1, t1) = (cpu_secs(server_pid), cpu_secs(tmux_pid));
    let w1 = cpu_secs(watch_pid);
    tmux_watch(&["send-keys", "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&watch_stats)
        .unwrap_or_default()
        .contains("frames drawn")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux_watch(&["kill-server"]);
    let share = |d: f64| d / idle_secs as f64 * 100.0;
    let cpu = share((s1 - s0) + (t1 - t0));
    println!(
        "idle cost: {total} idle agents, {idle_secs} s: server {:.2}% + tmux {:.2}% of one core = {cpu:.2}% ({})",
        share(s1 - s0),
        share(t1 - t0),
        if cpu < 1.0 {
            "meets < 1%"
        } else {
            "MISSES < 1%"
        }
    );
    println!(
        "sm watch idle with {total} sessions shown, {idle_secs} s: {:.0} CPU ticks ({:.2}% of one core); {}",
        (w1 - w0) * 100.0,
        share(w1 - w0),
        std::fs::read_to_string(&watch_stats)
            .unwrap_or_default()
            .trim()
            .trim_start_matches("sm watch: ")
    );
    let rss = rss_mb(server_pid);
    println!(
        "server RSS with {total} sessions: {rss:.1} MB ({})",
        if rss < 40.0 {
            "meets < 40 MB"
        } else {
            "MISSES < 40 MB"
        }
    );

    dashboard_first_load(&b, total);
    kill_with_a_long_queue(&b);
}

/// What a browser fetches to show the dashboard's overview, as it would with a login.
fn dashboard_first_load(b: &Bench, total: usize) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let login = agent
        .post(format!("{}/ui/login", b.url))
        .content_type("application/x-www-form-urlencoded")
        .send(format!("token={}", b.admin))
        .unwrap();
    assert_eq!(login.status(), 303, "the dashboard login");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let get = |path: &str| {
        let t0 = Instant::now();
        let mut r = agent
            .get(format!("{}{path}", b.url))
            .header("Cookie", &cookie)
            // As a browser asks; the bytes counted are the bytes sent.
            .header("Accept-Encoding", "gzip")
            .call()
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let headers: usize = r
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        let body = r.body_mut().read_to_vec().unwrap();
        (t0.elapsed().as_secs_f64() * 1000.0, body, headers)
    };
    let mut page = agent
        .get(format!("{}/", b.url))
        .header("Cookie", &cookie)
        .call()
        .unwrap();
    let page = page.body_mut().read_to_string().unwrap();
    let asset = |name: &str| {
        let start = page.find(&format!("/ui/{name}")).unwrap();
        let end = start + page[start..].find('"').unwrap();
        page[start..end].to_string()
    };
    let paths = [
        "/".to_string(),
        asset("app.js"),
        asset("app.css"),
        "/ui/icon.svg".into(),
        "/status".into(),
    ];
    let mut totals = Vec::new();
    let mut bytes = 0;
    let mut status_ms = Vec::new();
    for _ in 0..30 {
        let mut ms = 0.0;
        bytes = 0;
        for path in &paths {
            let (t, body, headers) = get(path);
            ms += t;
            bytes += body.len() + headers;
            if path == "/status" {
                status_ms.push(t);
            }
        }
        totals.push(ms);
    }
    totals.sort_by(f64::total_cmp);
    status_ms.sort_by(f64::total_cmp);
    println!(
        "dashboard first load with {total} sessions (page, script, style, icon, /status in turn): {:.1} ms p50, {:.1} ms max, of which /status {:.1} ms p50; {:.0} KB sent ({}, {})",
        totals[totals.len() / 2],
        totals[totals.len() - 1],
        status_ms[status_ms.len() / 2],
        bytes as f64 / 1024.0,
        if totals[totals.len() / 2] < 100.0 {
            "meets < 100 ms"
        } else {
            "MISSES < 100 ms"
        },
        if bytes < 200 * 1024 {
            "meets < 200 KB"
        } else {
            "MISSES < 200 KB"
        },
    );
}

/// `DELETE /sessions/{id}` (what `sm kill` calls) on a busy agent with a long queue: it
/// returns once the session is dead and every queued message failed.
fn kill_with_a_long_queue(b: &Bench) {
    let queued: usize = std::env::var("SM_BENCH_KILL_QUEUE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let victim = b.spawn("victim");
    b.wait_idle(&victim);
    b.post(
        &format!("/sessions/{victim}/input"),
        &b.admin,
        json!({ "text": "busy [[sleep 600]]" }),
    );
    while b.status(&victim) != "working" {
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..queued {
        b.post(
            &format!("/sessions/{victim}/input"),
            &b.admin,
            json!({ "text": format!("queued {i}") }),
        );
    }
    let started = Instant::now();
    let mut r = b
        .agent
        .delete(format!("{}/sessions/{victim}", b.url))
        .header("Authorization", format!("Bearer {}", b.admin))
        .call()
        .unwrap();
    let took = started.elapsed();
    let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
    assert_eq!(v["status"], "dead", "{v}");
    println!(
        "kill with {queued} queued messages: returned in {:.0} ms, the session dead and its queue failed ({})",
        took.as_secs_f64() * 1000.0,
        if took < Duration::from_secs(1) {
            "meets < 1 s"
        } else {
            "MISSES < 1 s"
        }
    );
}
