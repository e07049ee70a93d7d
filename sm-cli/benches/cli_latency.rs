//! Whole-process wall time of the `sm` commands agents run most: `sm hook stop` (on every
//! turn end), `sm status` and `sm send`, against a real server on the SQLite store.
//!
//! `cargo build --release -p sm-server && cargo bench -p sm-cli --bench cli_latency`
#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn measure(label: &str, mut run: impl FnMut()) {
    for _ in 0..10 {
        run(); // warm caches
    }
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<14} p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms   ({RUNS} runs)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap())
    );
}

fn main() {
    let env = |k: &str, v: &str| (k.to_string(), v.to_string());
    let server = sm_tests::Server::start_opts(sm_tests::Options {
        backend: Some("pty"),
        env: vec![env("SHELL", "/bin/sh"), env("SM_LOG", "warn")],
        ..sm_tests::Options::default()
    });
    let sm = env!("CARGO_BIN_EXE_sm");
    let admin = |args: &[&str]| {
        let out = server.sm(args);
        assert!(
            out.status.success(),
            "sm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let work = server.work().to_str().unwrap().to_string();
    admin(&[
        "spawn", "--agent", "shell", "--name", "bench", "--dir", &work,
    ]);
    let env_file = server.path().join("agent.env");
    admin(&["send", "bench", &format!("env > {}", env_file.display())]);
    let agent_env: Vec<(String, String)> = server.until("the agent's environment", || {
        let text = std::fs::read_to_string(&env_file).unwrap_or_default();
        text.contains("SM_TOKEN=").then(|| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .filter(|(k, _)| k.starts_with("SM_"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    });
    let session = agent_env
        .iter()
        .find(|(k, _)| k == "SM_SESSION_ID")
        .map(|(_, v)| v.clone())
        .unwrap();
    let payload = format!(
        r#"{{"session_id":"{session}","hook_event_name":"Stop","last_assistant_message":"done","stop_hook_active":false}}"#
    );

    println!("sm command wall time, whole process, release build, SQLite store");
    measure("sm hook stop", || {
        let mut child = Command::new(sm)
            .args(["hook", "stop"])
            .envs(agent_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(payload.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    });
    measure("sm status", || admin(&["status"]));
    measure("sm send", || admin(&["send", "bench", "true"]));
}
