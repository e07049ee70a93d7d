//! `sm watch`: a live terminal dashboard of the swarm — a thin client of the HTTP API like
//! the rest of `sm`.
//!
//! It follows the server's event stream (`GET /events/stream`) and redraws only when
//! something changed: an event, a key, a fetched listing or screen, or the clock of a
//! duration it shows (once a second while one is under a minute, else every 30 s). A
//! dropped stream is shown and retried; after a reconnect everything is fetched again, so
//! a server restart is survived. Actions go through the same API and authorisation as the
//! CLI, on a worker thread, and their result or error shows in the bottom line.

pub mod model;
pub mod render;

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;
use sm_lib::wire::{AnswerBody, InputBody, Output, SessionView, SpawnBody};
use sm_lib::{Event, Lock, SessionId, SessionStatus, Timestamp};

use crate::client::{CliError, Client, enc};
use model::{App, Input, KINDS, Link, MODES};

/// Arguments of `sm watch`.
#[derive(clap::Args)]
pub struct Args {
    /// Print one frame as plain text and exit (for scripts and tests).
    #[arg(long)]
    pub once: bool,
    /// On exit, print how many frames were drawn and how long drawing took.
    #[arg(long)]
    pub stats: bool,
}

/// Frames drawn and the time spent drawing them.
#[derive(Default)]
struct DrawStats {
    frames: u64,
    total: Duration,
    slowest: Duration,
}

/// The screen lines fetched for the selected agent.
const SCREEN_LINES: usize = 80;

/// Something for the worker thread to do against the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    List,
    Screen(SessionId),
    /// The session's events so far (its history before `sm watch` started).
    History(SessionId),
    Send {
        target: String,
        text: String,
        mode: &'static str,
    },
    Answer {
        target: String,
        option: usize,
    },
    Clear(String),
    Kill(String),
    New {
        dir: String,
        kind: &'static str,
    },
}

/// What a key asks the loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Redraw,
    Quit,
    Run(Job),
    Attach(Vec<String>),
    Editor,
}

enum Msg {
    Term(TermEvent),
    Stream(Box<Event>),
    Link(Link),
    Listing(Result<(Vec<SessionView>, Vec<Lock>), String>),
    Screen(SessionId, Vec<String>),
    History(SessionId, Vec<Event>),
    Done(String),
}

/// A session's label for messages: its name, else its id.
fn label(view: &SessionView) -> String {
    view.session
        .name
        .as_ref()
        .map(|n| n.to_string())
        .unwrap_or_else(|| view.session.id.to_string())
}

/// What a key does, given the model (which it updates for purely local changes).
pub fn on_key(app: &mut App, key: KeyEvent) -> Action {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    if app.help {
        app.help = false;
        return Action::Redraw;
    }
    let selected = app.selected_view().cloned();
    let target = selected.as_ref().map(|v| v.session.id.to_string());
    match std::mem::replace(&mut app.input, Input::None) {
        Input::Filter(mut f) => {
            match key.code {
                KeyCode::Esc => app.set_filter(String::new()),
                KeyCode::Enter => {}
                KeyCode::Backspace => {
                    f.pop();
                    app.set_filter(f.clone());
                    app.input = Input::Filter(f);
                }
                KeyCode::Char(c) => {
                    f.push(c);
                    app.set_filter(f.clone());
                    app.input = Input::Filter(f);
                }
                _ => app.input = Input::Filter(f),
            }
            return Action::Redraw;
        }
        Input::Send { mut text, mut mode } => {
            match key.code {
                KeyCode::Esc => app.message = "not sent".into(),
                KeyCode::Tab => {
                    mode = (mode + 1) % MODES.len();
                    app.input = Input::Send { text, mode };
                }
                KeyCode::Char('e') if ctrl => {
                    app.input = Input::Send { text, mode };
                    return Action::Editor;
                }
                KeyCode::Enter if !text.trim().is_empty() => {
                    if let Some(target) = target {
                        return Action::Run(Job::Send {
                            target,
                            text,
                            mode: MODES[mode],
                        });
                    }
                }
                KeyCode::Enter => app.input = Input::Send { text, mode },
                KeyCode::Backspace => {
                    text.pop();
                    app.input = Input::Send { text, mode };
                }
                KeyCode::Char(c) if !ctrl => {
                    text.push(c);
                    app.input = Input::Send { text, mode };
                }
                _ => app.input = Input::Send { text, mode },
            }
            return Action::Redraw;
        }
        Input::ConfirmKill(id) => {
            if key.code == KeyCode::Char('y') {
                return Action::Run(Job::Kill(id.to_string()));
            }
            app.message = "not killed".into();
            return Action::Redraw;
        }
        Input::Answer => {
            if let KeyCode::Char(c @ '1'..='9') = key.code {
                if let Some(target) = target {
                    return Action::Run(Job::Answer {
                        target,
                        option: c as usize - '0' as usize,
                    });
                }
            }
            app.message = "not answered".into();
            return Action::Redraw;
        }
        Input::New { mut dir, mut kind } => {
            match key.code {
                KeyCode::Esc => app.message = "no agent started".into(),
                KeyCode::Tab => {
                    kind = (kind + 1) % KINDS.len();
                    app.input = Input::New { dir, kind };
                }
                KeyCode::Enter if !dir.trim().is_empty() => {
                    return Action::Run(Job::New {
                        dir,
                        kind: KINDS[kind],
                    });
                }
                KeyCode::Backspace => {
                    dir.pop();
                    app.input = Input::New { dir, kind };
                }
                KeyCode::Char(c) if !ctrl => {
                    dir.push(c);
                    app.input = Input::New { dir, kind };
                }
                _ => app.input = Input::New { dir, kind },
            }
            return Action::Redraw;
        }
        Input::None => {}
    }
    app.message.clear();
    match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => {
            app.help = true;
            Action::Redraw
        }
        KeyCode::Down | KeyCode::Char('j') => {
            app.move_selection(1);
            Action::Redraw
        }
        KeyCode::Up | KeyCode::Char('k') => {
            app.move_selection(-1);
            Action::Redraw
        }
        KeyCode::Char('g') | KeyCode::Home => {
            app.move_selection(isize::MIN / 2);
            Action::Redraw
        }
        KeyCode::Char('G') | KeyCode::End => {
            app.move_selection(isize::MAX / 2);
            Action::Redraw
        }
        KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right => {
            app.toggle_collapsed();
            Action::Redraw
        }
        KeyCode::Char('e') => {
            app.toggle_ended();
            Action::Redraw
        }
        KeyCode::Char('/') => {
            app.input = Input::Filter(app.filter.clone());
            Action::Redraw
        }
        KeyCode::Char('r') => Action::Run(Job::List),
        KeyCode::Char('n') => {
            let here = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            app.input = Input::New { dir: here, kind: 0 };
            Action::Redraw
        }
        _ => {
            let Some(view) = selected else {
                app.message = "no session selected".into();
                return Action::Redraw;
            };
            let live = view.session.status.is_live();
            match key.code {
                KeyCode::Char('s') if live => {
                    app.input = Input::Send {
                        text: String::new(),
                        mode: 0,
                    };
                    Action::Redraw
                }
                KeyCode::Char('a') if view.session.status == SessionStatus::NeedsInput => {
                    app.input = Input::Answer;
                    Action::Redraw
                }
                KeyCode::Char('a') => {
                    app.message = format!("{} is not waiting for an answer", label(&view));
                    Action::Redraw
                }
                KeyCode::Char('c') if live => Action::Run(Job::Clear(view.session.id.to_string())),
                KeyCode::Char('K') if live => {
                    app.input = Input::ConfirmKill(view.session.id.clone());
                    Action::Redraw
                }
                KeyCode::Enter => match &view.attach {
                    Some(argv) if live && !argv.is_empty() => Action::Attach(argv.clone()),
                    _ => {
                        app.message = format!(
                            "{} cannot be attached to (not live, or not on tmux)",
                            label(&view)
                        );
                        Action::Redraw
                    }
                },
                KeyCode::Char('s' | 'c' | 'K') => {
                    app.message = format!("{} has ended", label(&view));
                    Action::Redraw
                }
                _ => Action::Nothing,
            }
        }
    }
}

/// Carries out `job`; the line to show, or what went wrong.
fn perform(client: &Client, job: &Job, tx: &Sender<Msg>) {
    let result: Result<String, CliError> = (|| match job {
        Job::List => {
            let listing = client
                .get_as::<Vec<SessionView>>("/sessions")
                .and_then(|s| Ok((s, client.get_as::<Vec<Lock>>("/locks")?)));
            let _ = tx.send(Msg::Listing(listing.map_err(|e| e.to_string())));
            Ok(String::new())
        }
        Job::Screen(id) => {
            let out: Output = client.get_as(&format!(
                "/sessions/{}/output?lines={SCREEN_LINES}",
                enc(id.as_str())
            ))?;
            let _ = tx.send(Msg::Screen(id.clone(), out.lines));
            Ok(String::new())
        }
        Job::History(id) => {
            let events: Vec<Event> =
                client.get_as(&format!("/events?session={}&limit=10000", enc(id.as_str())))?;
            let _ = tx.send(Msg::History(id.clone(), events));
            Ok(String::new())
        }
        Job::Send { target, text, mode } => {
            let body = InputBody {
                text: text.clone(),
                mode: Some(mode.to_string()),
                idempotency_key: Some(SessionId::new_random().to_string()),
            };
            let m = client.post_idempotent(&format!("/sessions/{}/input", enc(target)), &body)?;
            Ok(format!("queued message #{} ({mode})", m["id"]))
        }
        Job::Answer { target, option } => {
            let a = client.post(
                &format!("/sessions/{}/answer", enc(target)),
                &AnswerBody { option: *option },
            )?;
            Ok(format!(
                "answered: {}",
                a["answered"].as_str().unwrap_or_default()
            ))
        }
        Job::Clear(target) => {
            client.post(&format!("/sessions/{}/clear", enc(target)), &json!({}))?;
            Ok("cleared".into())
        }
        Job::Kill(target) => {
            let v: SessionView =
                crate::client::typed(client.delete(&format!("/sessions/{}", enc(target)))?)?;
            Ok(format!("killed {}", label(&v)))
        }
        Job::New { dir, kind } => {
            let dir = super::absolute_dir(Some(dir.into()))?;
            let body = SpawnBody {
                agent: Some(kind.to_string()),
                working_dir: Some(dir),
                idempotency_key: Some(SessionId::new_random().to_string()),
                ..SpawnBody::default()
            };
            let v: SessionView = crate::client::typed(client.post_idempotent("/sessions", &body)?)?;
            Ok(format!("started {}", label(&v)))
        }
    })();
    match result {
        Ok(line) if line.is_empty() => {}
        Ok(line) => {
            let _ = tx.send(Msg::Done(line));
        }
        Err(e) => {
            let _ = tx.send(Msg::Done(format!("error: {e}")));
        }
    }
}

/// Follows the event stream for as long as the program runs, reconnecting after a drop.
fn follow(client: Arc<Client>, tx: Sender<Msg>) {
    let mut pause = Duration::from_millis(250);
    loop {
        match client.stream("/events/stream") {
            Ok(body) => {
                pause = Duration::from_millis(250);
                if tx.send(Msg::Link(Link::Live)).is_err() {
                    return;
                }
                let reader = std::io::BufReader::new(body.into_reader());
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    if let Some(data) = line.strip_prefix("data:") {
                        if let Ok(event) = serde_json::from_str::<Event>(data.trim()) {
                            if tx.send(Msg::Stream(Box::new(event))).is_err() {
                                return;
                            }
                        }
                    }
                }
                if tx
                    .send(Msg::Link(Link::Lost("the server closed the stream".into())))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                if tx.send(Msg::Link(Link::Lost(e.to_string()))).is_err() {
                    return;
                }
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Reads the terminal's events until told to pause (while another program has the
/// terminal) or the program ends.
fn read_terminal(tx: Sender<Msg>, paused: Arc<AtomicBool>, parked: Sender<()>) {
    loop {
        if paused.load(Ordering::SeqCst) {
            let _ = parked.send(());
            while paused.load(Ordering::SeqCst) {
                std::thread::park();
            }
            continue;
        }
        // Polled with a timeout only so a pause is seen; nothing is drawn on wake-ups.
        match event::poll(Duration::from_millis(250)) {
            Ok(true) => match event::read() {
                Ok(e) => {
                    if tx.send(Msg::Term(e)).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            Ok(false) => {}
            Err(_) => return,
        }
    }
}

/// The terminal size for `--once`: the real one, else `$COLUMNS`×`$LINES`, else 120×40.
fn once_size() -> (u16, u16) {
    if let Ok((w, h)) = ratatui::crossterm::terminal::size() {
        if w > 0 && h > 0 {
            return (w, h);
        }
    }
    let var = |k: &str, d: u16| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (var("COLUMNS", 120), var("LINES", 40))
}

/// One frame of `app` at `width`×`height`, as plain text (trailing spaces trimmed).
pub fn frame_text(app: &App, width: u16, height: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut terminal = match ratatui::Terminal::new(backend) {
        Ok(t) => t,
        Err(never) => match never {},
    };
    let _ = terminal.draw(|f| render::draw(f, app));
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let mut line = String::new();
        let mut skip = 0;
        for x in 0..width {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let symbol = buffer[(x, y)].symbol();
            line.push_str(symbol);
            // A wide character covers the next cell too.
            skip = unicode_width(symbol).saturating_sub(1);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn unicode_width(s: &str) -> usize {
    use ratatui::text::Span;
    Span::raw(s).width()
}

/// Whether colours are wanted: not with `NO_COLOR` set (any value but empty).
fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn now() -> i64 {
    Timestamp::now().0
}

/// Runs `sm watch`.
pub fn run(client: Client, args: Args) -> Result<(), CliError> {
    let mut app = App::new(client.url(), color_wanted());
    if args.once {
        let sessions: Vec<SessionView> = client.get_as("/sessions")?;
        let locks: Vec<Lock> = client.get_as("/locks")?;
        app.link = Link::Live;
        app.now = now();
        app.set_sessions(sessions, locks);
        if let Some(id) = app.selected.clone() {
            if let Ok(out) = client.get_as::<Output>(&format!(
                "/sessions/{}/output?lines={SCREEN_LINES}",
                enc(id.as_str())
            )) {
                app.screen = Some((id, out.lines));
            }
        }
        let (w, h) = once_size();
        print!("{}", frame_text(&app, w, h));
        return Ok(());
    }
    // Fail early, with the CLI's usual message, when the server is not there.
    client.get("/health")?;
    let client = Arc::new(client);
    let (tx, rx) = mpsc::channel::<Msg>();
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    {
        let client = client.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            while let Ok(job) = jobs_rx.recv() {
                perform(&client, &job, &tx);
            }
        });
    }
    {
        let client = client.clone();
        let tx = tx.clone();
        std::thread::spawn(move || follow(client, tx));
    }
    let paused = Arc::new(AtomicBool::new(false));
    let (parked_tx, parked_rx) = mpsc::channel();
    let reader = {
        let tx = tx.clone();
        let paused = paused.clone();
        std::thread::spawn(move || read_terminal(tx, paused, parked_tx))
    };
    drop(tx);
    let mut terminal = ratatui::init();
    let mut stats = DrawStats::default();
    let result = event_loop(
        &mut terminal,
        &mut app,
        &rx,
        &jobs_tx,
        (&paused, &parked_rx, reader.thread()),
        &mut stats,
    );
    ratatui::restore();
    if args.stats {
        let mean = stats.total.as_secs_f64() * 1000.0 / stats.frames.max(1) as f64;
        eprintln!(
            "sm watch: {} frames drawn, {mean:.2} ms mean, {:.2} ms slowest, {} sessions",
            stats.frames,
            stats.slowest.as_secs_f64() * 1000.0,
            app.sessions.len()
        );
    }
    result
}

/// What giving the terminal to another program needs: the pause flag, the reader's
/// acknowledgement, and the reader thread to wake afterwards.
type Suspend<'a> = (&'a AtomicBool, &'a Receiver<()>, &'a std::thread::Thread);

/// Tracks one kind of fetch: at most one in flight, and one more if asked meanwhile.
#[derive(Default)]
struct Fetch {
    in_flight: bool,
    again: bool,
}

impl Fetch {
    fn want(&mut self) -> bool {
        if self.in_flight {
            self.again = true;
            false
        } else {
            self.in_flight = true;
            true
        }
    }

    fn done(&mut self) -> bool {
        self.in_flight = false;
        std::mem::take(&mut self.again) && self.want()
    }
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rx: &Receiver<Msg>,
    jobs: &Sender<Job>,
    (paused, parked, reader): Suspend,
    stats: &mut DrawStats,
) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Usage(format!("the terminal failed: {e}"));
    let mut listing = Fetch::default();
    let mut screen = Fetch::default();
    let mut screen_of: Option<SessionId> = None;
    let mut histories: std::collections::HashSet<SessionId> = Default::default();
    if listing.want() {
        let _ = jobs.send(Job::List);
    }
    let mut last_screen_fetch = Instant::now();
    loop {
        app.now = now();
        // The selected agent's screen: fetched when the selection changes.
        if app.selected != screen_of {
            screen_of = app.selected.clone();
            if let Some(id) = &screen_of {
                if screen.want() {
                    let _ = jobs.send(Job::Screen(id.clone()));
                    last_screen_fetch = Instant::now();
                }
                if histories.insert(id.clone()) {
                    let _ = jobs.send(Job::History(id.clone()));
                }
            }
        }
        let started = Instant::now();
        terminal.draw(|f| render::draw(f, app)).map_err(io)?;
        let took = started.elapsed();
        stats.frames += 1;
        stats.total += took;
        stats.slowest = stats.slowest.max(took);
        // Sleep until something happens, or until a shown clock changes.
        let working = app
            .selected_view()
            .is_some_and(|v| v.session.status == SessionStatus::Working);
        let wait = match app.youngest_status_ms() {
            Some(ms) if ms < 60_000 => Duration::from_millis(1000 - (ms % 1000) as u64),
            _ => Duration::from_secs(30),
        };
        let wait = if working {
            wait.min(Duration::from_secs(1))
        } else {
            wait
        };
        let first = match rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        // A working agent's screen changes without events: look again each second.
        if working && last_screen_fetch.elapsed() >= Duration::from_secs(1) {
            if let Some(id) = &app.selected {
                if screen.want() {
                    let _ = jobs.send(Job::Screen(id.clone()));
                    last_screen_fetch = Instant::now();
                }
            }
        }
        // Take everything that is waiting, then draw once.
        let mut batch: Vec<Msg> = first.into_iter().collect();
        batch.extend(rx.try_iter());
        for msg in batch {
            match msg {
                Msg::Term(TermEvent::Key(key))
                    if key.kind == ratatui::crossterm::event::KeyEventKind::Press =>
                {
                    match on_key(app, key) {
                        Action::Quit => return Ok(()),
                        Action::Run(Job::List) => {
                            if listing.want() {
                                let _ = jobs.send(Job::List);
                            }
                        }
                        Action::Run(job) => {
                            app.message = "…".into();
                            let _ = jobs.send(job);
                        }
                        Action::Attach(argv) => {
                            // Also from inside tmux: the agent's tmux runs nested then.
                            suspended(terminal, paused, parked, reader, || {
                                std::process::Command::new(&argv[0])
                                    .args(&argv[1..])
                                    .env_remove("TMUX")
                                    .status()
                            })
                            .map_err(io)?;
                            if listing.want() {
                                let _ = jobs.send(Job::List);
                            }
                        }
                        Action::Editor => edit_message(app, terminal, paused, parked, reader)?,
                        Action::Nothing | Action::Redraw => {}
                    }
                }
                Msg::Term(_) => {}
                Msg::Stream(event) => {
                    let about_selected = event.session.is_some() && event.session == app.selected;
                    if app.apply(*event) && listing.want() {
                        let _ = jobs.send(Job::List);
                    }
                    if about_selected {
                        if let Some(id) = &app.selected {
                            if screen.want() {
                                let _ = jobs.send(Job::Screen(id.clone()));
                                last_screen_fetch = Instant::now();
                            }
                        }
                    }
                }
                Msg::Link(link) => {
                    // (Re)connected: what happened while the stream was down is fetched.
                    if link == Link::Live && listing.want() {
                        let _ = jobs.send(Job::List);
                    }
                    app.link = link;
                }
                Msg::Listing(Ok((sessions, locks))) => {
                    app.set_sessions(sessions, locks);
                    if listing.done() {
                        let _ = jobs.send(Job::List);
                    }
                }
                Msg::Listing(Err(why)) => {
                    app.message = format!("error: {why}");
                    if listing.done() {
                        let _ = jobs.send(Job::List);
                    }
                }
                Msg::Screen(id, lines) => {
                    app.screen = Some((id, lines));
                    if screen.done() {
                        if let Some(id) = &app.selected {
                            let _ = jobs.send(Job::Screen(id.clone()));
                        }
                    }
                }
                Msg::History(id, events) => app.set_history(&id, events),
                Msg::Done(line) => app.message = line,
            }
        }
    }
}

/// Gives the terminal to another program (attach, the editor) and takes it back.
fn suspended<T>(
    terminal: &mut ratatui::DefaultTerminal,
    paused: &AtomicBool,
    parked: &Receiver<()>,
    reader: &std::thread::Thread,
    f: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    paused.store(true, Ordering::SeqCst);
    // The reader stops reading keys before the other program gets them.
    let _ = parked.recv_timeout(Duration::from_secs(2));
    ratatui::restore();
    let result = f();
    *terminal = ratatui::init();
    terminal.clear()?;
    paused.store(false, Ordering::SeqCst);
    reader.unpark();
    result
}

/// Ctrl-E while sending: the message is written in `$VISUAL` / `$EDITOR` (default `vi`).
fn edit_message(
    app: &mut App,
    terminal: &mut ratatui::DefaultTerminal,
    paused: &AtomicBool,
    parked: &Receiver<()>,
    reader: &std::thread::Thread,
) -> Result<(), CliError> {
    let Input::Send { text, mode } = app.input.clone() else {
        return Ok(());
    };
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let path = std::env::temp_dir().join(format!("sm-message-{}.txt", std::process::id()));
    std::fs::write(&path, &text).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi").to_string();
    let extra: Vec<String> = words.map(str::to_string).collect();
    let ran = suspended(terminal, paused, parked, reader, || {
        std::process::Command::new(&program)
            .args(&extra)
            .arg(&path)
            .status()
    });
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    match ran {
        Ok(status) if status.success() => {
            app.input = Input::Send {
                text: written.trim_end_matches('\n').to_string(),
                mode,
            };
        }
        Ok(status) => app.message = format!("{editor} exited with {status}; not sent"),
        Err(e) => app.message = format!("cannot run {editor}: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
