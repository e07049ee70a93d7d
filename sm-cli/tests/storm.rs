//! The crash storm: concurrent senders push thousands of messages through the real `sm`
//! binary to tens of fake agents while the server is killed with SIGKILL and restarted over
//! and over. Afterwards every accepted message must have reached its agent exactly once,
//! byte for byte, and in order within its sender and mode; every refused send must have
//! been told so.
//!
//! Sized for CI by default; `SM_STORM_AGENTS`, `SM_STORM_MESSAGES`, `SM_STORM_SENDERS`,
//! `SM_STORM_KILLS` and `SM_STORM_SEED` scale or replay it. The figures are printed at the
//! end (run with `--nocapture` to see them).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sm_lib::MessageState;
use sm_tests::*;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator, so a failing storm can be replayed with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Text that would do damage if anything on the way handed it to a shell or let tmux parse
/// it, and characters that must survive byte for byte.
const FILLERS: [&str; 8] = [
    "plain words about the parser",
    "$HOME `id` $(whoami) && rm -rf ./nothing; echo done",
    "quotes \"double\" and 'single' and back\\slash",
    "ünïcödé — ✓ 日本語 🚀",
    "ends with a semicolon;",
    "braces { a } and %s %n %x",
    "tabs\tinside\ttext",
    "a #comment and ~/path/../x",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Mode {
    Sequential,
    Important,
    Urgent,
}

#[derive(Debug)]
struct Attempt {
    target: usize,
    sender: usize,
    seq: usize,
    mode: Mode,
    text: String,
    /// The message id when the server accepted it.
    accepted: Option<u64>,
    error: Option<String>,
}

#[test]
fn a_storm_of_sigkills_loses_doubles_and_garbles_nothing() {
    storm(Killer::AtRandom);
}

/// Every kill lands right after an agent took a prompt and before sm saw it on screen (the
/// agents' prompt hook kills the server), the prompt hook's report to sm dies with it, and
/// the agents write their transcripts late, as Claude Code does.
#[test]
fn a_storm_of_sigkills_right_after_enter_loses_and_doubles_nothing() {
    storm(Killer::RightAfterEnter);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Killer {
    /// At uneven intervals, wherever delivery happens to be.
    AtRandom,
    /// The moment an agent has taken a prompt.
    RightAfterEnter,
}

fn storm(killer: Killer) {
    let after_enter = killer == Killer::RightAfterEnter;
    let (agents, messages, kills) = if after_enter {
        (8, 400, 12)
    } else {
        (16, 2000, 30)
    };
    let agents = knob("SM_STORM_AGENTS", agents) as usize;
    let messages = knob("SM_STORM_MESSAGES", messages) as usize;
    let senders = knob("SM_STORM_SENDERS", 4) as usize;
    let kills = knob("SM_STORM_KILLS", kills) as usize;
    let seed = knob(
        "SM_STORM_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    println!(
        "storm ({killer:?}): {agents} agents, {messages} messages from {senders} senders, \
         {kills} kills, seed {seed}"
    );

    let mut env = vec![("SM_FAKE_IDLE_NOTIFY_MS".into(), "3600000".into())];
    if after_enter {
        env.push(("SM_FAKE_TRANSCRIPT_DELAY_MS".into(), "300".into()));
    }
    let server = Server::start_opts(Options {
        extra_config: "claude:\n  command: sm-test-no-claude-here\n".into(),
        fixed_port: true,
        env,
        // In the after-Enter storm the agents' hook kills the server.
        sandbox: after_enter.then_some("none"),
        ..Options::default()
    });
    if after_enter {
        // The kill first; the report to sm that follows finds the server dead.
        let hook = format!(
            "{}; {} hook user-prompt-submit",
            server.kill_hook_command(),
            env!("CARGO_BIN_EXE_sm")
        );
        server.set_user_hook("UserPromptSubmit", Some(&hook));
    }
    let mut names = Vec::new();
    for i in 0..agents {
        let name = format!("a{i}");
        server.ok(&["spawn", "--agent", "fake", "--name", &name]);
        names.push(name);
    }
    let ids: Vec<String> = names
        .iter()
        .map(|n| server.session(n)["id"].as_str().unwrap().to_string())
        .collect();
    let started = Instant::now();

    // Senders: each sends its share; a refused attempt is retried as a new attempt (its own
    // text), so an attempt that errored yet was stored can be told apart.
    let server = Arc::new(Mutex::new(server));
    let sm_template = {
        let s = server.lock().unwrap();
        (s.dir.path().join("config.yaml"), s.work())
    };
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let sending = Arc::new(AtomicUsize::new(senders));
    let mut threads = Vec::new();
    for sender in 0..senders {
        let attempts = attempts.clone();
        let sending = sending.clone();
        let names = names.clone();
        let (config, work) = sm_template.clone();
        let share = messages / senders + usize::from(sender < messages % senders);
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(seed.wrapping_add(sender as u64 * 7919) | 1);
            for seq in 0..share {
                let target = rng.below(names.len() as u64) as usize;
                let mode = match rng.below(20) {
                    0 => Mode::Urgent,
                    1..=3 => Mode::Important,
                    _ => Mode::Sequential,
                };
                let filler = FILLERS[rng.below(FILLERS.len() as u64) as usize];
                let multi_line = rng.below(25) == 0;
                for attempt in 0.. {
                    let mut text = format!(
                        "storm s{sender} n{seq} try{attempt} {mode:?} to {} :: {filler}",
                        names[target]
                    );
                    if multi_line {
                        text.push_str("\nsecond line of the message\nthird line");
                    }
                    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sm"));
                    cmd.env("SM_CONFIG", &config)
                        .env_remove("SM_SESSION_ID")
                        .env_remove("SM_SERVER_URL")
                        .env_remove("SM_TOKEN")
                        .current_dir(&work)
                        .args(["send", &names[target], &text, "--json"]);
                    match mode {
                        Mode::Urgent => {
                            cmd.arg("--urgent");
                        }
                        Mode::Important => {
                            cmd.arg("--important");
                        }
                        Mode::Sequential => {}
                    }
                    let out = cmd.output().unwrap();
                    let mut record = Attempt {
                        target,
                        sender,
                        seq,
                        mode,
                        text,
                        accepted: None,
                        error: None,
                    };
                    let ok = out.status.success();
                    if ok {
                        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                            panic!(
                                "sm send succeeded but printed no JSON ({e}): {}",
                                String::from_utf8_lossy(&out.stdout)
                            )
                        });
                        record.accepted = Some(v["id"].as_u64().unwrap());
                    } else {
                        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                        assert!(
                            !err.is_empty(),
                            "a refused send must say why (exit {:?})",
                            out.status.code()
                        );
                        record.error = Some(format!("exit {:?}: {err}", out.status.code()));
                    }
                    attempts.lock().unwrap().push(record);
                    if ok {
                        break;
                    }
                    assert!(attempt < 400, "a message was refused 400 times in a row");
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
            sending.fetch_sub(1, Ordering::SeqCst);
        }));
    }

    // The killer: SIGKILL, restart at once, repeat at uneven intervals.
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut kills_done = 0;
    let mut kills_with_backlog = 0;
    let delivered_count = |s: &Server| {
        s.all_prompts()
            .iter()
            .filter(|(_, p)| p.starts_with("storm "))
            .count()
    };
    while kills_done < kills && after_enter {
        std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
        server.lock().unwrap().arm_kill();
        // The next prompt any agent takes kills the server; none may come once the senders
        // are done and everything arrived.
        let died = until(
            "a prompt to kill the server",
            Duration::from_secs(120),
            || {
                let mut s = server.lock().unwrap();
                if !s.is_running() {
                    return Some(true);
                }
                let accepted_so_far = attempts
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|a| a.accepted.is_some())
                    .count();
                let idle =
                    sending.load(Ordering::SeqCst) == 0 && delivered_count(&s) >= accepted_so_far;
                idle.then_some(false)
            },
        );
        let mut s = server.lock().unwrap();
        if !died {
            let _ = std::fs::remove_file(s.dir.path().join("kill.armed"));
            break;
        }
        kills_with_backlog += 1;
        s.restart_after_death();
        kills_done += 1;
    }
    while kills_done < kills && !after_enter {
        std::thread::sleep(Duration::from_millis(200 + rng.below(900)));
        let mut s = server.lock().unwrap();
        let accepted_so_far = attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.accepted.is_some())
            .count();
        if delivered_count(&s) < accepted_so_far || sending.load(Ordering::SeqCst) > 0 {
            kills_with_backlog += 1;
        }
        s.kill9();
        s.restart();
        kills_done += 1;
    }
    for t in threads {
        t.join().unwrap();
    }
    let sent_in = started.elapsed();
    let server = Arc::try_unwrap(server)
        .map_err(|_| "still shared")
        .unwrap()
        .into_inner()
        .unwrap();
    let attempts = Arc::try_unwrap(attempts).unwrap().into_inner().unwrap();
    let accepted: Vec<&Attempt> = attempts.iter().filter(|a| a.accepted.is_some()).collect();
    let refused: Vec<&Attempt> = attempts.iter().filter(|a| a.accepted.is_none()).collect();
    assert_eq!(accepted.len(), messages, "every message was accepted once");

    // Every accepted message arrives.
    let by_text: HashMap<&str, &Attempt> = attempts.iter().map(|a| (a.text.as_str(), a)).collect();
    until(
        "every accepted message to reach its agent",
        Duration::from_secs(300),
        || {
            let got = server.all_prompts();
            let arrived = got
                .iter()
                .filter(|(_, p)| {
                    by_text
                        .get(p.as_str())
                        .is_some_and(|a| a.accepted.is_some())
                })
                .count();
            (arrived >= accepted.len()).then_some(())
        },
    );
    let drained_in = started.elapsed();

    // Nothing may still be on its way: the store holds no queued or delivering message.
    let mut server = server;
    server.stop();
    let pending = messages_in(&server, &[MessageState::Queued, MessageState::Delivering]);
    assert!(pending.is_empty(), "messages still pending: {pending:?}");
    let failed = messages_in(&server, &[MessageState::Failed]);

    // Exactly once, byte for byte, to the right agent, in order within sender and mode.
    let prompts = server.all_prompts();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut order: BTreeMap<(usize, usize, Mode), Vec<usize>> = BTreeMap::new();
    for (session, prompt) in &prompts {
        if !prompt.starts_with("storm ") {
            continue;
        }
        let attempt = by_text.get(prompt.as_str()).unwrap_or_else(|| {
            panic!("{session} received text nobody sent (garbled?): {prompt:?}")
        });
        assert_eq!(
            *session, ids[attempt.target],
            "{prompt:?} reached the wrong agent"
        );
        let n = seen.entry(prompt.as_str()).or_default();
        *n += 1;
        assert_eq!(*n, 1, "delivered twice: {prompt:?}");
        if attempt.accepted.is_some() {
            order
                .entry((attempt.target, attempt.sender, attempt.mode))
                .or_default()
                .push(attempt.seq);
        } else {
            panic!(
                "a send that was refused was delivered: {prompt:?} ({})",
                attempt.error.as_deref().unwrap_or_default()
            );
        }
    }
    for a in &accepted {
        assert_eq!(
            seen.get(a.text.as_str()),
            Some(&1),
            "accepted but lost: {:?}; failed in the store: {failed:?}",
            a.text
        );
    }
    for ((target, sender, mode), seqs) in &order {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            seqs, &sorted,
            "{mode:?} messages from sender {sender} to a{target} arrived out of order"
        );
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");

    println!(
        "storm figures: {} messages accepted ({} attempts refused while the server was down, \
         none of them delivered), \
         {kills_done} SIGKILLs ({kills_with_backlog} with messages in flight); all sent in \
         {:.1} s, all delivered in {:.1} s; lost 0, doubled 0, garbled 0, out of order 0",
        accepted.len(),
        refused.len(),
        sent_in.as_secs_f64(),
        drained_in.as_secs_f64(),
    );
}

/// The store's messages in `states`, described.
fn messages_in(server: &Server, states: &[MessageState]) -> Vec<String> {
    server
        .messages()
        .into_iter()
        .filter(|m| states.contains(&m.state))
        .map(|m| format!("{} {:?} {:?} ({:?})", m.id, m.state, m.text, m.reason))
        .collect()
}
