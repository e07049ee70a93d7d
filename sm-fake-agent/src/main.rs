//! `sm-fake-agent`: a stand-in for the Claude Code TUI, for testing sm without a model.
//!
//! It behaves on a real terminal the way the real CLI does in the ways that matter to a
//! session manager: a start-up pause that drops Enter, a `❯` prompt with a footer hint, a
//! `esc to interrupt` working state, a `✻ Worked for Ns` line when a turn ends, collapsed
//! `[Pasted text #N +M lines]` pastes, Escape interrupts (restoring an unanswered prompt into
//! the input box, firing no Stop hook), a rewind menu on a double Escape, permission prompts
//! answered by keys, `/clear`, and Claude Code hooks from `.claude/settings.json` with the
//! same payloads and exit-code rules.
//!
//! What a turn does is scripted by directives in the prompt:
//! `[[sleep 2.5]]`, `[[reply some text]]`, `[[write path content…]]`, `[[bash command]]`,
//! `[[error message]]`, `[[crash]]`, `[[exit]]`. Without a reply directive it answers
//! `Done: <first line of the prompt>`.
//!
//! Every submitted prompt is appended as one JSON line to the file named by
//! `$SM_FAKE_AGENT_LOG`, so tests can check exactly what arrived, and how many times.
//!
//! With `--style codex` it imitates OpenAI's Codex CLI instead (its screen, hooks, quirks
//! and arguments; see `style.rs`), for testing sm's Codex profile without the real CLI.
//!
//! Environment knobs: `SM_FAKE_STARTUP_MS` (start-up pause, default 400),
//! `SM_FAKE_NOTIFY_MS` (delay of the permission Notification hook, default 6000),
//! `SM_FAKE_IDLE_NOTIFY_MS` (delay of the idle Notification hook, default 60000),
//! `SM_FAKE_TRANSCRIPT_DELAY_MS` (how long after the event each transcript entry is
//! written, default 0; Claude Code writes a prompt's entry 150–350 ms after its timestamp).

mod hooks;
mod input;
mod style;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use hooks::Hooks;
use input::{Decoder, Input};
use serde_json::{Value, json};
use style::Style;

const WORKING_VERBS: [&str; 3] = ["Thinking", "Cogitating", "Brewing"];

struct Args {
    style: Style,
    session_id: String,
    model: String,
    skip_permissions: bool,
    resumed: bool,
    prompt: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        style: Style::Claude,
        session_id: String::new(),
        model: "sonnet".into(),
        skip_permissions: false,
        resumed: false,
        prompt: None,
    };
    let mut positional = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--style" => {
                args.style = match it.next().as_deref() {
                    Some("claude") => Style::Claude,
                    Some("codex") => Style::Codex,
                    other => anyhow::bail!("unknown style {other:?}: claude or codex"),
                }
            }
            // Codex's flags, as sm passes them.
            "--no-daemon" | "--dangerously-bypass-hook-trust" => {}
            "--dangerously-bypass-approvals-and-sandbox" => args.skip_permissions = true,
            "-m" => args.model = it.next().unwrap_or_default(),
            "--session-id" => args.session_id = it.next().unwrap_or_default(),
            "--resume" | "-r" => {
                args.session_id = it.next().unwrap_or_default();
                args.resumed = true;
            }
            "--model" => args.model = it.next().unwrap_or_default(),
            "--dangerously-skip-permissions" => args.skip_permissions = true,
            "--help" | "-h" => {
                println!(
                    "usage: sm-fake-agent [--style claude|codex] [--session-id ID] [--resume ID] \
                     [--model M] [--dangerously-skip-permissions] [PROMPT]\n       \
                     sm-fake-agent --style codex [resume ID] [--model M] \
                     [--dangerously-bypass-approvals-and-sandbox] [PROMPT]"
                );
                std::process::exit(0);
            }
            other if other.starts_with('-') => anyhow::bail!("unknown option {other}"),
            _ => positional.push(a),
        }
    }
    // Codex resumes with a subcommand: `codex resume <id> [PROMPT]`.
    if args.style == Style::Codex && positional.first().is_some_and(|p| p == "resume") {
        positional.remove(0);
        if positional.is_empty() {
            anyhow::bail!("resume needs a session id");
        }
        args.session_id = positional.remove(0);
        args.resumed = true;
    }
    args.prompt = positional.pop();
    if args.style == Style::Codex && args.model == "sonnet" {
        args.model = "gpt-5.5".into();
    }
    if args.session_id.is_empty() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        args.session_id = match args.style {
            Style::Claude => format!("fake-{}", std::process::id()),
            // Codex chooses its own ids; sm learns them from the hooks.
            Style::Codex => format!("01fake-{:x}-{nanos:x}", std::process::id()),
        };
    }
    Ok(args)
}

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// What the agent shares with turn threads.
struct Context {
    style: Style,
    model: String,
    session_id: String,
    transcript_path: PathBuf,
    cwd: PathBuf,
    permission_mode: &'static str,
    hooks: Hooks,
    /// With a transcript delay: the thread that writes entries when they are due, in order.
    delayed_transcript: Option<Sender<(Instant, Value)>>,
}

impl Context {
    fn payload(&self, event: &str, extra: Value) -> Value {
        let mut v = json!({
            "session_id": self.session_id,
            "transcript_path": self.transcript_path,
            "cwd": self.cwd,
            "hook_event_name": event,
            "permission_mode": self.permission_mode,
            "model": self.model,
        });
        if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        v
    }

    fn hook(&self, event: &str, tool: Option<&str>, extra: Value) -> hooks::HookOutcome {
        self.hooks
            .run(event, tool, &self.payload(event, extra), &self.cwd)
    }

    fn append_transcript(&self, entry: Value) {
        match &self.delayed_transcript {
            Some(writer) => {
                let _ = writer.send((Instant::now(), entry));
            }
            None => write_transcript(&self.transcript_path, &entry),
        }
    }
}

/// Starts the thread that writes each transcript entry `delay` after it was made.
fn delayed_transcript_writer(path: PathBuf, delay: Duration) -> Sender<(Instant, Value)> {
    let (tx, rx) = mpsc::channel::<(Instant, Value)>();
    std::thread::spawn(move || {
        for (made, entry) in rx {
            let due = made + delay;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            write_transcript(&path, &entry);
        }
    });
    tx
}

fn write_transcript(path: &std::path::Path, entry: &Value) {
    {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(format!("{entry}\n").as_bytes());
        }
    }
}

/// A segment of the input box.
#[derive(Clone, Debug)]
enum Segment {
    Typed(String),
    /// A paste shown collapsed, as `label`.
    Pasted {
        label: String,
        content: String,
    },
}

impl Segment {
    fn shown(&self) -> String {
        match self {
            Segment::Typed(t) => t.clone(),
            Segment::Pasted { label, .. } => label.clone(),
        }
    }
    fn content(&self) -> &str {
        match self {
            Segment::Typed(t) => t,
            Segment::Pasted { content, .. } => content,
        }
    }
}

#[derive(Debug)]
enum PermissionAnswer {
    Yes,
    YesAll,
    No,
}

enum TurnMsg {
    Lines(Vec<String>),
    Permission {
        header: String,
        question: String,
        edit: bool,
        tool: String,
        tool_input: Value,
        answer: Sender<PermissionAnswer>,
    },
    Done(String),
    Crash,
    Exit,
}

enum Msg {
    Input(Vec<Input>),
    InputClosed,
    Turn(u64, TurnMsg),
}

enum Phase {
    Starting { until: Instant },
    Idle,
    Working(Turn),
    Rewind,
}

struct Turn {
    id: u64,
    started: Instant,
    prompt: Vec<Segment>,
    produced_output: bool,
    cancel: Sender<()>,
    permission: Option<Permission>,
    transcript_len_before: usize,
}

struct Permission {
    header: String,
    question: String,
    edit: bool,
    selected: usize,
    answer: Sender<PermissionAnswer>,
    notify_at: Option<Instant>,
}

struct App {
    ctx: Arc<Context>,
    model: String,
    skip_permissions: bool,
    log: Option<PathBuf>,
    phase: Phase,
    input: Vec<Segment>,
    pastes: usize,
    transcript: Vec<String>,
    allow_all_edits: bool,
    ctrl_c_armed: Option<Instant>,
    last_escape: Option<Instant>,
    idle_since: Option<Instant>,
    idle_notified: bool,
    next_turn: u64,
    notify_delay: Duration,
    idle_notify_delay: Duration,
    tx: Sender<Msg>,
    status_line: Option<String>,
    quit: Option<i32>,
    /// Codex: whether the thread has had its first prompt (SessionStart fires then).
    thread_started: bool,
    /// Started with a resume: the thread's SessionStart says so.
    resumed: bool,
    /// When text last arrived: Codex takes an Enter right after it as a newline.
    last_text_at: Option<Instant>,
}

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sm-fake-agent: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn run() -> anyhow::Result<i32> {
    let args = parse_args()?;
    let cwd = std::env::current_dir()?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let style = args.style;
    let transcript_path = style.transcript_path(home.as_deref(), &cwd, &args.session_id);
    let hooks = Hooks::load(&style.hook_files(home.as_deref(), &cwd));
    let ctx = Arc::new(Context {
        style,
        model: args.model.clone(),
        session_id: args.session_id.clone(),
        transcript_path: transcript_path.clone(),
        cwd,
        permission_mode: if args.skip_permissions {
            "bypassPermissions"
        } else {
            "default"
        },
        hooks,
        delayed_transcript: Some(env_ms("SM_FAKE_TRANSCRIPT_DELAY_MS", 0))
            .filter(|d| !d.is_zero())
            .map(|d| delayed_transcript_writer(transcript_path.clone(), d)),
    });

    let stdin = rustix::stdio::stdin();
    let saved = rustix::termios::tcgetattr(stdin).ok();
    if let Some(saved) = &saved {
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw);
    }
    print!("\x1b[?2004h");

    let (tx, rx) = mpsc::channel();
    spawn_reader(tx.clone());
    let mut app = App {
        transcript: style.banner(&args.model, &ctx.cwd),
        ctx,
        model: args.model,
        skip_permissions: args.skip_permissions,
        log: std::env::var_os("SM_FAKE_AGENT_LOG").map(PathBuf::from),
        phase: Phase::Starting {
            until: Instant::now() + env_ms("SM_FAKE_STARTUP_MS", 400),
        },
        input: Vec::new(),
        pastes: 0,
        allow_all_edits: false,
        ctrl_c_armed: None,
        last_escape: None,
        idle_since: None,
        idle_notified: false,
        next_turn: 1,
        notify_delay: env_ms("SM_FAKE_NOTIFY_MS", 6000),
        idle_notify_delay: env_ms("SM_FAKE_IDLE_NOTIFY_MS", 60_000),
        tx,
        status_line: None,
        quit: None,
        thread_started: false,
        resumed: args.resumed,
        last_text_at: None,
    };
    for w in app.ctx.hooks.warnings.clone() {
        app.transcript.push(format!("⚠ {w}"));
    }
    let source = if args.resumed { "resume" } else { "startup" };
    if style == Style::Claude {
        app.run_hook("SessionStart", None, json!({ "source": source }));
    }
    let initial = args.prompt;
    app.render();

    let code = app.event_loop(rx, initial);
    print!("\x1b[?2004l\r\n");
    let _ = std::io::stdout().flush();
    if let Some(saved) = &saved {
        let _ = rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, saved);
    }
    Ok(code)
}

/// Reads the terminal on its own thread; a lone ESC is resolved after a short pause.
fn spawn_reader(tx: Sender<Msg>) {
    std::thread::spawn(move || {
        let mut decoder = Decoder::default();
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        loop {
            if decoder.pending_escape() {
                let fd = rustix::stdio::stdin();
                let mut fds = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
                let timeout = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 50_000_000,
                };
                if matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(0)) {
                    let keys = decoder.flush_escape();
                    if tx.send(Msg::Input(keys)).is_err() {
                        return;
                    }
                    continue;
                }
            }
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Msg::InputClosed);
                    return;
                }
                Ok(n) => {
                    let keys = decoder.feed(&buf[..n]);
                    if !keys.is_empty() && tx.send(Msg::Input(keys)).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

impl App {
    fn event_loop(&mut self, rx: Receiver<Msg>, mut initial: Option<String>) -> i32 {
        loop {
            if let Some(code) = self.quit {
                return code;
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(timeout) {
                Ok(Msg::Input(keys)) => {
                    for k in keys {
                        self.on_input(k);
                    }
                }
                Ok(Msg::InputClosed) => return 0,
                Ok(Msg::Turn(id, m)) => self.on_turn(id, m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return 0,
            }
            self.on_timers(&mut initial);
            self.render();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Vec<Instant> = Vec::new();
        match &self.phase {
            Phase::Starting { until } => d.push(*until),
            Phase::Working(turn) => {
                // The spinner's seconds tick while a turn runs.
                let elapsed = turn.started.elapsed().as_secs() + 1;
                d.push(turn.started + Duration::from_secs(elapsed));
                if let Some(at) = turn.permission.as_ref().and_then(|p| p.notify_at) {
                    d.push(at);
                }
            }
            Phase::Idle if !self.idle_notified => {
                if let Some(since) = self.idle_since {
                    d.push(since + self.idle_notify_delay);
                }
            }
            _ => {}
        }
        if let Some(at) = self.ctrl_c_armed {
            d.push(at);
        }
        d.into_iter().min()
    }

    fn on_timers(&mut self, initial: &mut Option<String>) {
        let now = Instant::now();
        if let Phase::Starting { until } = self.phase {
            if now >= until {
                self.become_idle();
                if let Some(prompt) = initial.take() {
                    self.input = vec![Segment::Typed(prompt)];
                    self.submit();
                }
            }
        }
        if self.ctrl_c_armed.is_some_and(|at| now >= at) {
            self.ctrl_c_armed = None;
            self.status_line = None;
        }
        let mut fire_permission = None;
        if let Phase::Working(turn) = &mut self.phase {
            if let Some(p) = turn.permission.as_mut() {
                if p.notify_at.is_some_and(|at| now >= at) {
                    p.notify_at = None;
                    fire_permission = Some(p.question.clone());
                }
            }
        }
        if let Some(question) = fire_permission {
            self.run_hook(
                "Notification",
                None,
                json!({
                    "message": "Claude needs your permission to use a tool",
                    "notification_type": "permission_prompt",
                    "details": question,
                }),
            );
        }
        if matches!(self.phase, Phase::Idle)
            && self.ctx.style == Style::Claude
            && !self.idle_notified
            && self
                .idle_since
                .is_some_and(|s| now >= s + self.idle_notify_delay)
        {
            self.idle_notified = true;
            self.run_hook(
                "Notification",
                None,
                json!({
                    "message": "Claude is waiting for your input",
                    "notification_type": "idle_prompt",
                }),
            );
        }
    }

    fn become_idle(&mut self) {
        self.phase = Phase::Idle;
        self.idle_since = Some(Instant::now());
        self.idle_notified = false;
    }

    fn run_hook(&mut self, event: &str, tool: Option<&str>, extra: Value) -> hooks::HookOutcome {
        let outcome = self.ctx.hook(event, tool, extra);
        for e in &outcome.errors {
            self.transcript.push(format!("  ⎿ {e}"));
        }
        outcome
    }

    fn on_input(&mut self, key: Input) {
        if !matches!(key, Input::Escape) {
            self.last_escape = None;
        }
        if !matches!(key, Input::CtrlC) && self.ctrl_c_armed.is_some() {
            self.ctrl_c_armed = None;
            self.status_line = None;
        }
        match &mut self.phase {
            Phase::Starting { .. } => match key {
                // Early keys are partly lost: text lands, Enter does not.
                Input::Text(t) => self.type_text(&t),
                Input::Paste(p) => self.paste(p),
                _ => {}
            },
            Phase::Rewind => {
                if key == Input::Escape {
                    self.phase = Phase::Idle;
                }
            }
            Phase::Working(turn) if turn.permission.is_some() => {
                let Some(p) = turn.permission.as_mut() else {
                    return;
                };
                let codex = self.ctx.style == Style::Codex;
                let choice = match key {
                    Input::Text(t) if t == "1" => Some(PermissionAnswer::Yes),
                    Input::Text(t) if t == "2" => Some(PermissionAnswer::YesAll),
                    Input::Text(t) if t == "3" => Some(PermissionAnswer::No),
                    Input::Text(t) if codex && t == "y" => Some(PermissionAnswer::Yes),
                    Input::Text(t) if codex && (t == "a" || t == "p") => {
                        Some(PermissionAnswer::YesAll)
                    }
                    // Codex: Esc at a question cancels it and interrupts the turn.
                    Input::Escape if codex => {
                        self.interrupt();
                        return;
                    }
                    Input::Escape => Some(PermissionAnswer::No),
                    Input::Up => {
                        p.selected = p.selected.saturating_sub(1);
                        None
                    }
                    Input::Down => {
                        p.selected = (p.selected + 1).min(2);
                        None
                    }
                    Input::Enter => Some(match p.selected {
                        0 => PermissionAnswer::Yes,
                        1 => PermissionAnswer::YesAll,
                        _ => PermissionAnswer::No,
                    }),
                    _ => None,
                };
                if let Some(choice) = choice {
                    if let Some(p) = turn.permission.take() {
                        if matches!(choice, PermissionAnswer::YesAll) && p.edit {
                            self.allow_all_edits = true;
                        }
                        let _ = p.answer.send(choice);
                    }
                }
            }
            Phase::Working(_) => match key {
                Input::Escape | Input::CtrlC => self.interrupt(),
                other => self.edit(other),
            },
            Phase::Idle => match key {
                Input::Enter
                    if self.ctx.style == Style::Codex
                        && self
                            .last_text_at
                            .is_some_and(|t| t.elapsed() < style::CODEX_ENTER_SUPPRESS) =>
                {
                    // Enter in the same burst as text: a newline, not a submit.
                    self.type_text("\n");
                }
                Input::Enter => self.submit(),
                Input::Escape => {
                    let now = Instant::now();
                    if self
                        .last_escape
                        .is_some_and(|t| now.duration_since(t) < Duration::from_millis(800))
                    {
                        self.last_escape = None;
                        self.phase = Phase::Rewind;
                    } else {
                        self.last_escape = Some(now);
                    }
                }
                Input::CtrlC => {
                    if !self.input.is_empty() {
                        self.input.clear();
                    } else if self.ctx.style == Style::Codex {
                        // Codex quits at once on an empty composer.
                        self.end_session("other", 0);
                    } else if self.ctrl_c_armed.is_some() {
                        self.end_session("prompt_input_exit", 0);
                    } else {
                        self.ctrl_c_armed = Some(Instant::now() + Duration::from_secs(2));
                        self.status_line = Some("  Press Ctrl-C again to exit".into());
                    }
                }
                Input::CtrlD if self.input.is_empty() => self.end_session("prompt_input_exit", 0),
                other => self.edit(other),
            },
        }
    }

    fn edit(&mut self, key: Input) {
        match key {
            Input::Text(t) => self.type_text(&t),
            Input::Paste(p) => self.paste(p),
            Input::Backspace => match self.input.last_mut() {
                Some(Segment::Typed(t)) => {
                    t.pop();
                    if t.is_empty() {
                        self.input.pop();
                    }
                }
                Some(Segment::Pasted { .. }) => {
                    self.input.pop();
                }
                None => {}
            },
            // Ctrl-U erases back to the start of the current line only.
            Input::CtrlU => match self.input.last_mut() {
                Some(Segment::Typed(t)) => match t.rfind('\n') {
                    Some(nl) => t.truncate(nl + 1),
                    None => {
                        self.input.pop();
                    }
                },
                Some(Segment::Pasted { .. }) => {
                    self.input.pop();
                }
                None => {}
            },
            _ => {}
        }
    }

    fn type_text(&mut self, t: &str) {
        self.last_text_at = Some(Instant::now());
        match self.input.last_mut() {
            Some(Segment::Typed(s)) => s.push_str(t),
            _ => self.input.push(Segment::Typed(t.to_string())),
        }
    }

    fn paste(&mut self, content: String) {
        match self.ctx.style.collapsed_paste(self.pastes + 1, &content) {
            Some(label) => {
                self.pastes += 1;
                self.last_text_at = Some(Instant::now());
                self.input.push(Segment::Pasted { label, content });
            }
            None => self.type_text(&content),
        }
    }

    fn log_prompt(&self, prompt: &str, kind: &str) {
        let Some(path) = &self.log else { return };
        let line = json!({
            "session_id": self.ctx.session_id,
            "kind": kind,
            "prompt": prompt,
            "at_ms": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        });
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write per line: many agents append to one log, and O_APPEND keeps a single
            // write whole, where `writeln!` may split it and interleave with others.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    fn submit(&mut self) {
        let segments = std::mem::take(&mut self.input);
        let prompt: String = segments.iter().map(Segment::content).collect();
        if prompt.trim().is_empty() {
            return;
        }
        let shown: String = segments.iter().map(Segment::shown).collect();
        if let Some(command) = prompt.trim().strip_prefix('/') {
            self.log_prompt(prompt.trim(), "command");
            self.slash_command(command.trim());
            return;
        }
        self.log_prompt(&prompt, "prompt");
        let before = self.transcript.len();
        let echo = self.ctx.style.prompt_echo(&shown);
        self.transcript.extend(echo);
        if self.ctx.style == Style::Codex && !std::mem::replace(&mut self.thread_started, true) {
            let source = if self.resumed { "resume" } else { "startup" };
            self.run_hook("SessionStart", None, json!({ "source": source }));
        }
        let outcome = self.run_hook("UserPromptSubmit", None, json!({ "prompt": prompt }));
        if let Some(reason) = outcome.blocked {
            self.transcript.push(format!(
                "  ⎿ UserPromptSubmit hook blocked this prompt: {reason}"
            ));
            return;
        }
        let entry = self
            .ctx
            .style
            .transcript_entry(&self.ctx.session_id, "user", &prompt);
        self.ctx.append_transcript(entry);
        let (cancel_tx, cancel_rx) = mpsc::channel();
        let id = self.next_turn;
        self.next_turn += 1;
        self.phase = Phase::Working(Turn {
            id,
            started: Instant::now(),
            prompt: segments,
            produced_output: false,
            cancel: cancel_tx,
            permission: None,
            transcript_len_before: before,
        });
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let skip = self.skip_permissions;
        let allow_edits = self.allow_all_edits;
        std::thread::spawn(move || run_turn(id, &prompt, &ctx, skip, allow_edits, &tx, &cancel_rx));
    }

    fn slash_command(&mut self, command: &str) {
        let name = command.split_whitespace().next().unwrap_or("");
        match name {
            "new" | "clear" if self.ctx.style == Style::Codex => {
                // A new chat: the screen starts over; SessionStart comes with its first prompt.
                self.transcript = self.ctx.style.banner(&self.model, &self.ctx.cwd);
                self.allow_all_edits = false;
                self.thread_started = false;
                self.resumed = false;
            }
            "clear" => {
                self.run_hook("SessionEnd", None, json!({ "reason": "clear" }));
                self.transcript.clear();
                self.transcript.push("(no content)".into());
                self.allow_all_edits = false;
                self.run_hook("SessionStart", None, json!({ "source": "clear" }));
            }
            "exit" | "quit" => self.end_session("prompt_input_exit", 0),
            "model" => self
                .transcript
                .push(format!("  ⎿ Current model: {}", self.model)),
            other => self
                .transcript
                .push(format!("  ⎿ Unknown slash command: {other}")),
        }
    }

    fn interrupt(&mut self) {
        let Phase::Working(turn) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let _ = turn.cancel.send(());
        if self.ctx.style == Style::Codex {
            // Codex keeps the prompt in the history, leaves the box as it is, and says so
            // in a hook of its own (no Stop).
            self.transcript.push(self.ctx.style.interrupted().into());
            self.transcript.push(String::new());
            self.become_idle();
            self.run_hook("Interrupt", None, json!({}));
            return;
        }
        if turn.produced_output {
            self.transcript.push(self.ctx.style.interrupted().into());
        } else {
            // Nothing was answered yet: the turn vanishes and its prompt comes back into
            // the input box, ahead of anything typed meanwhile.
            self.transcript.truncate(turn.transcript_len_before);
            let mut restored = turn.prompt;
            restored.append(&mut self.input);
            self.input = restored;
        }
        self.become_idle();
    }

    fn end_session(&mut self, reason: &str, code: i32) {
        self.run_hook("SessionEnd", None, json!({ "reason": reason }));
        self.quit = Some(code);
    }

    fn on_turn(&mut self, id: u64, msg: TurnMsg) {
        let Phase::Working(turn) = &mut self.phase else {
            return;
        };
        if turn.id != id {
            return;
        }
        match msg {
            TurnMsg::Lines(lines) => {
                turn.produced_output = true;
                self.transcript.extend(lines);
            }
            TurnMsg::Permission {
                header,
                question,
                edit,
                tool,
                tool_input,
                answer,
            } => {
                turn.produced_output = true;
                if edit && self.allow_all_edits {
                    let _ = answer.send(PermissionAnswer::Yes);
                    return;
                }
                // Claude Code notifies a while after the question shows; Codex at once.
                let codex = self.ctx.style == Style::Codex;
                turn.permission = Some(Permission {
                    header,
                    question,
                    edit,
                    selected: 0,
                    answer,
                    notify_at: (!codex).then(|| Instant::now() + self.notify_delay),
                });
                if codex {
                    let event = self.ctx.style.permission_event();
                    self.render();
                    self.run_hook(
                        event,
                        Some(&tool),
                        json!({ "tool_name": tool, "tool_input": tool_input }),
                    );
                }
            }
            TurnMsg::Done(reply) => {
                let secs = turn.started.elapsed().as_secs();
                let done = self.ctx.style.turn_done(&reply, secs);
                self.transcript.extend(done);
                let entry =
                    self.ctx
                        .style
                        .transcript_entry(&self.ctx.session_id, "assistant", &reply);
                self.ctx.append_transcript(entry);
                self.become_idle();
                // The finished screen is drawn before the Stop hook runs, as in the real TUI.
                self.render();
                self.run_hook(
                    "Stop",
                    None,
                    json!({ "stop_hook_active": false, "last_assistant_message": reply }),
                );
            }
            TurnMsg::Crash => {
                print!("\r\nfatal: the fake agent crashed on purpose\r\n");
                let _ = std::io::stdout().flush();
                std::process::exit(3);
            }
            TurnMsg::Exit => self.end_session("other", 0),
        }
    }

    fn render(&self) {
        let (rows, cols) = rustix::termios::tcgetwinsize(rustix::stdio::stdout())
            .map(|w| (usize::from(w.ws_row.max(10)), usize::from(w.ws_col.max(20))))
            .unwrap_or((24, 80));
        let fit = |s: &str| -> String { s.chars().take(cols).collect() };
        let mut bottom: Vec<String> = Vec::new();
        match &self.phase {
            Phase::Starting { .. } => bottom.push("  Starting…".into()),
            Phase::Rewind => {
                bottom.push("─".repeat(cols));
                bottom.push(" Rewind".into());
                bottom.push(" Restore the conversation to the point before…".into());
                bottom.push(" ❯ (current)".into());
                bottom.push(" Esc to cancel".into());
            }
            Phase::Working(Turn {
                permission: Some(p),
                ..
            }) => {
                bottom = self.ctx.style.permission_area(
                    &p.header,
                    &p.question,
                    p.edit,
                    p.selected,
                    cols,
                );
            }
            phase => {
                let working = match phase {
                    Phase::Working(turn) => Some((
                        WORKING_VERBS[(turn.id as usize) % WORKING_VERBS.len()],
                        turn.started.elapsed().as_secs(),
                    )),
                    _ => None,
                };
                // Long input wraps inside the box, as in the real TUI.
                let shown: String = self.input.iter().map(Segment::shown).collect();
                bottom = self.ctx.style.input_area(
                    working,
                    &shown,
                    self.status_line.as_deref(),
                    cols,
                    &self.model,
                    &self.ctx.cwd,
                );
            }
        }
        let room = rows.saturating_sub(bottom.len());
        let wrapped: Vec<String> = self
            .transcript
            .iter()
            .flat_map(|l| l.split('\n'))
            .flat_map(|l| wrap(l, cols))
            .collect();
        let start = wrapped.len().saturating_sub(room);
        // Like the real TUI, the input box sits right under the conversation.
        let mut screen: Vec<String> = wrapped[start..].to_vec();
        screen.extend(bottom.iter().map(|l| fit(l)));
        let mut out = String::from("\x1b[H\x1b[2J");
        out.push_str(&screen.join("\r\n"));
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

fn wrap(line: &str, cols: usize) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(cols).map(|c| c.iter().collect()).collect()
}

/// A step of a scripted turn.
#[derive(Debug, PartialEq)]
enum Step {
    Sleep(Duration),
    Reply(String),
    Write { path: String, content: String },
    Bash(String),
    Error(String),
    Crash,
    Exit,
}

fn parse_steps(prompt: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("[[") {
        let Some(len) = rest[start + 2..].find("]]") else {
            break;
        };
        let body = rest[start + 2..start + 2 + len].trim();
        rest = &rest[start + 2 + len + 2..];
        let (word, arg) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let arg = arg.trim().to_string();
        let step = match word {
            "sleep" => arg
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Step::Sleep(Duration::from_secs_f64(s))),
            "reply" => Some(Step::Reply(arg)),
            "write" => {
                let (path, content) = arg.split_once(char::is_whitespace).unwrap_or((&arg, ""));
                Some(Step::Write {
                    path: path.to_string(),
                    content: content.to_string(),
                })
            }
            "bash" => Some(Step::Bash(arg)),
            "error" => Some(Step::Error(arg)),
            "crash" => Some(Step::Crash),
            "exit" => Some(Step::Exit),
            _ => None,
        };
        steps.extend(step);
    }
    steps
}

/// Runs one scripted turn; returns early (silently) when cancelled.
fn run_turn(
    id: u64,
    prompt: &str,
    ctx: &Context,
    skip_permissions: bool,
    allow_all_edits: bool,
    tx: &Sender<Msg>,
    cancel: &Receiver<()>,
) {
    let send = |m: TurnMsg| tx.send(Msg::Turn(id, m)).is_ok();
    // A model takes a moment before it answers.
    if wait_or_cancel(cancel, Duration::from_millis(50)) {
        return;
    }
    let mut reply = None;
    for step in parse_steps(prompt) {
        match step {
            Step::Sleep(d) => {
                if wait_or_cancel(cancel, d) {
                    return;
                }
            }
            Step::Reply(text) => reply = Some(text),
            Step::Error(message) => {
                send(TurnMsg::Lines(vec![format!("  ⎿ API Error: {message}")]));
                reply = Some(format!("API Error: {message}"));
                break;
            }
            Step::Crash => {
                send(TurnMsg::Crash);
                return;
            }
            Step::Exit => {
                send(TurnMsg::Exit);
                return;
            }
            Step::Write { path, content } => {
                // Claude Code reports absolute paths to hooks.
                let absolute = ctx.cwd.join(&path);
                let (tool, tool_input) = ctx.style.write_tool(&absolute, &content);
                let verb = if ctx.cwd.join(&path).exists() {
                    "make this edit to"
                } else {
                    "create"
                };
                let question = ctx
                    .style
                    .question(&format!("Do you want to {verb} {path}?"), true);
                let run = || {
                    let target = ctx.cwd.join(&path);
                    if let Some(parent) = target.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    std::fs::write(&target, &content)
                        .map(|()| format!("Wrote {} bytes to {path}", content.len()))
                        .map_err(|e| e.to_string())
                };
                if !use_tool(
                    ctx,
                    &send,
                    tool,
                    &tool_input,
                    &question,
                    true,
                    skip_permissions || allow_all_edits,
                    run,
                ) {
                    return;
                }
            }
            Step::Bash(command) => {
                let tool_input = json!({ "command": command });
                let run = || {
                    std::process::Command::new("sh")
                        .arg("-c")
                        .arg(&command)
                        .current_dir(&ctx.cwd)
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                        .map_err(|e| e.to_string())
                };
                if !use_tool(
                    ctx,
                    &send,
                    "Bash",
                    &tool_input,
                    &ctx.style.question("Do you want to proceed?", false),
                    false,
                    skip_permissions,
                    run,
                ) {
                    return;
                }
            }
        }
    }
    let reply = reply.unwrap_or_else(|| {
        let first = prompt.lines().next().unwrap_or("").trim();
        format!("Done: {}", first.chars().take(60).collect::<String>())
    });
    send(TurnMsg::Done(reply));
}

/// PreToolUse hook → permission prompt (unless allowed) → the tool → PostToolUse hook.
/// Returns false when the turn was cancelled.
#[allow(clippy::too_many_arguments)]
fn use_tool(
    ctx: &Context,
    send: &dyn Fn(TurnMsg) -> bool,
    tool: &str,
    tool_input: &Value,
    question: &str,
    edit: bool,
    allowed: bool,
    run: impl FnOnce() -> Result<String, String>,
) -> bool {
    let target = tool_input
        .get("file_path")
        .or_else(|| tool_input.get("command"))
        .and_then(Value::as_str)
        .unwrap_or("");
    // A patch names its file on its second line.
    let target = if tool == "apply_patch" {
        target
            .lines()
            .find_map(|l| l.strip_prefix("*** Add File: "))
            .unwrap_or(target)
    } else {
        target
    };
    let header = match ctx.style {
        Style::Claude => format!("{tool}({target})"),
        Style::Codex => target.to_string(),
    };
    send(TurnMsg::Lines(vec![ctx.style.tool_header(tool, target)]));
    let pre = ctx.hook(
        "PreToolUse",
        Some(tool),
        json!({ "tool_name": tool, "tool_input": tool_input }),
    );
    if let Some(reason) = pre.blocked {
        send(TurnMsg::Lines(ctx.style.blocked(tool, &reason)));
        return true;
    }
    if !allowed {
        let (answer_tx, answer_rx) = mpsc::channel();
        send(TurnMsg::Permission {
            header: header.clone(),
            question: question.to_string(),
            edit,
            tool: tool.to_string(),
            tool_input: tool_input.clone(),
            answer: answer_tx,
        });
        // An interrupt drops the prompt, and with it the sender.
        let Ok(answer) = answer_rx.recv() else {
            return false;
        };
        if matches!(answer, PermissionAnswer::No) {
            send(TurnMsg::Lines(vec![format!(
                "  ⎿ User rejected {tool} of {target}"
            )]));
            return true;
        }
    }
    let result = run();
    let text = match &result {
        Ok(out) => out.clone(),
        Err(e) => format!("Error: {e}"),
    };
    send(TurnMsg::Lines(ctx.style.tool_output(&text)));
    ctx.hook(
        "PostToolUse",
        Some(tool),
        json!({
            "tool_name": tool,
            "tool_input": tool_input,
            "tool_response": match result { Ok(o) => json!({ "output": o }), Err(e) => json!({ "error": e }) },
        }),
    );
    true
}

/// Sleeps for `d` unless cancelled first; returns true when cancelled.
fn wait_or_cancel(cancel: &Receiver<()>, d: Duration) -> bool {
    !matches!(cancel.recv_timeout(d), Err(RecvTimeoutError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read_in_order() {
        let steps = parse_steps(
            "do it [[sleep 0.5]] then [[write src/a.txt hello world]] [[bash echo hi]] \
             [[reply All done.]] [[bogus]] [[crash]]",
        );
        assert_eq!(
            steps,
            vec![
                Step::Sleep(Duration::from_millis(500)),
                Step::Write {
                    path: "src/a.txt".into(),
                    content: "hello world".into()
                },
                Step::Bash("echo hi".into()),
                Step::Reply("All done.".into()),
                Step::Crash,
            ]
        );
    }
}
