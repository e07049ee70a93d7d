//! The [`TerminalBackend`] trait: the terminals that agents run in.
//!
//! Implementations: `sm-backend-tmux` (primary) and `sm-backend-pty` (no tmux needed). Every
//! implementation must pass [`crate::conformance::backend`] (feature `conformance`). Agent
//! quirks (when to press Enter, how to interrupt) are not the backend's business: it moves
//! bytes and reports what the screen shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::types::SessionId;

/// Everything needed to start a program in a new terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSpec {
    /// The session this terminal belongs to; also its name in the backend.
    pub id: SessionId,
    /// The program to run (looked up on `PATH` when not a path). Never passed to a shell.
    pub program: String,
    /// Its arguments, passed as an argv.
    pub args: Vec<String>,
    /// Extra environment variables, on top of the backend's own environment.
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Columns of the terminal.
    pub cols: u16,
    /// Rows of the terminal.
    pub rows: u16,
}

impl SpawnSpec {
    /// A spec with no args or extra env, in a 200×50 terminal (wide enough that agent footers
    /// are not wrapped).
    pub fn new(id: SessionId, program: impl Into<String>, cwd: impl Into<PathBuf>) -> Self {
        SpawnSpec {
            id,
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: cwd.into(),
            cols: 200,
            rows: 50,
        }
    }
}

/// A key that is sent as a key press, not as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    /// Return / Enter (carriage return).
    Enter,
    /// Escape.
    Escape,
    /// Ctrl-C.
    CtrlC,
    /// Ctrl-U (erase the line before the cursor in most line editors).
    CtrlU,
    /// Tab.
    Tab,
    /// Backspace.
    Backspace,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
}

impl Key {
    /// The bytes a terminal sends for this key (xterm conventions, normal cursor mode).
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Key::Enter => b"\r",
            Key::Escape => b"\x1b",
            Key::CtrlC => b"\x03",
            Key::CtrlU => b"\x15",
            Key::Tab => b"\t",
            Key::Backspace => b"\x7f",
            Key::Up => b"\x1b[A",
            Key::Down => b"\x1b[B",
        }
    }
}

/// Something a backend observed, pushed to subscribers of [`TerminalBackend::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// The terminal's program wrote output; look at the screen if it matters. Bursts may be
    /// coalesced into one event.
    Output(SessionId),
    /// The terminal's program exited (or the terminal was killed). `status` is its exit code
    /// when the backend can know it.
    Exited {
        /// Which terminal.
        id: SessionId,
        /// Exit code, when known.
        status: Option<i32>,
    },
}

/// What a backend can do beyond the required methods. The conformance suite holds a
/// backend to what it declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// [`BackendEvent::Exited`] carries the program's exit status.
    pub exit_status: bool,
    /// [`TerminalBackend::attach_command`] gives an argv a human can run.
    pub attach: bool,
    /// `spec.program` runs as a real process on a real terminal (what the suite's
    /// byte-level cases drive with `sh`). Simulated terminals declare `false` and are held
    /// to the cases any terminal must pass.
    pub runs_programs: bool,
}

/// Terminals that agents run in.
///
/// # Shared contract
/// - Terminals are named by [`SessionId`]; at most one live terminal per id.
/// - Text is always sent literally: no shell and no key-name interpretation ever sees it.
/// - Errors: [`crate::Error::SessionNotFound`] for an id with no live terminal (except where
///   a method says it is idempotent); [`crate::Error::Backend`] when the terminal system
///   itself fails (tmux missing, PTY could not be opened, …).
#[async_trait]
pub trait TerminalBackend: Send + Sync + 'static {
    /// A short name for logs and `sm status` (`tmux`, `pty`, …).
    fn name(&self) -> &'static str;

    /// What this backend can do beyond the required methods. Default: nothing more.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Starts `spec.program` in a new terminal of the given size, with the environment and
    /// working directory asked for. Returns once the process has been started (not once it
    /// is ready for input).
    ///
    /// Errors: [`crate::Error::SessionExists`] when a live terminal has this id;
    /// [`crate::Error::InvalidWorkingDir`] when `spec.cwd` is not a directory;
    /// [`crate::Error::Backend`] when the program cannot be started.
    async fn create(&self, spec: &SpawnSpec) -> Result<()>;

    /// Paths an agent must not see when it runs sandboxed: whatever lets a process drive
    /// this backend's terminals (tmux: its socket directory). Default: none.
    fn private_paths(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// Why `program` could not be started with `env` (e.g. "not on PATH"), checked before
    /// a session is registered so a misconfigured agent leaves no record; `None` when it
    /// looks runnable. Backends that run real programs answer with [`missing_program`];
    /// the default (simulated agents) never objects.
    fn cannot_run(
        &self,
        program: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Option<String> {
        let _ = (program, env);
        None
    }

    /// Types `text` into the terminal literally (Unicode, tabs and newlines included).
    /// Newlines arrive as carriage returns, as a terminal sends them. Text with a newline,
    /// or long text, goes in as one paste — bracketed (`ESC [200~ … ESC [201~`) when the
    /// program has enabled bracketed paste — so an agent sees it as a single paste. Never
    /// presses Enter on its own: a submit is a separate [`TerminalBackend::send_key`].
    async fn send_text(&self, id: &SessionId, text: &str) -> Result<()>;

    /// Presses one key.
    async fn send_key(&self, id: &SessionId, key: Key) -> Result<()>;

    /// The visible screen, one string per row, trailing spaces trimmed.
    async fn capture_screen(&self, id: &SessionId) -> Result<Vec<String>>;

    /// The last `lines` lines of scrollback and screen together, oldest first, with trailing
    /// blank rows of the screen dropped.
    async fn capture_tail(&self, id: &SessionId, lines: usize) -> Result<Vec<String>>;

    /// The visible screen with its colours and text attributes, one string per row, as
    /// SGR escape sequences (`ESC [ … m`) before the text they style — for a person's view
    /// (the dashboard), never for reading a screen's state. Callers pass each row through
    /// [`crate::engine::sanitize::keep_sgr`] before showing it. A backend that keeps no
    /// attributes gives the plain screen (the default).
    async fn capture_styled(&self, id: &SessionId) -> Result<Vec<String>> {
        self.capture_screen(id).await
    }

    /// Whether a terminal with this id exists and its program has not exited. Unknown ids
    /// are `Ok(false)`, not an error.
    async fn is_alive(&self, id: &SessionId) -> Result<bool>;

    /// Ends the terminal and its program (the program is reaped; no zombie is left).
    /// Idempotent: killing an unknown or already-dead terminal is `Ok(())`.
    async fn kill(&self, id: &SessionId) -> Result<()>;

    /// The live terminals this backend owns, so a restarted server can re-adopt them.
    /// Terminals that belong to others (a user's own tmux sessions) are never listed.
    async fn list(&self) -> Result<Vec<SessionId>>;

    /// The argv a human runs to attach to the terminal, when the backend allows attaching
    /// from another process.
    fn attach_command(&self, id: &SessionId) -> Option<Vec<String>>;

    /// A new subscription to this backend's events. Slow subscribers may miss output events
    /// (`RecvError::Lagged`) and must then look at every screen they care about.
    fn events(&self) -> broadcast::Receiver<BackendEvent>;
}

/// A raw observation for [`EventCoalescer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawActivity {
    /// The terminal produced output.
    Output(SessionId),
    /// The terminal's program exited.
    Exited(SessionId, Option<i32>),
}

/// Turns a stream of raw output notices (one per read, possibly thousands a second) into
/// [`BackendEvent`]s: a terminal's first output is reported at once, further output within
/// [`EventCoalescer::WINDOW`] of an event is merged into one event at the window's end, and
/// an exit always comes after that terminal's last output event. So whoever waits for a
/// screen to change hears of it without delay, and a burst still costs one event per
/// terminal per window. Runs on its own thread so backends can feed it from blocking reader
/// threads.
pub struct EventCoalescer {
    sender: std::sync::mpsc::Sender<RawActivity>,
}

impl EventCoalescer {
    /// How long after an output event further output of that terminal is gathered into the
    /// next one.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

    /// Starts the coalescing thread, publishing to `events`. The thread ends when every
    /// clone of the returned sender is dropped.
    pub fn start(events: broadcast::Sender<BackendEvent>) -> Result<Self> {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sm-terminal-events".into())
            .spawn(move || coalesce(&receiver, &events))
            .map_err(|e| Error::backend("cannot start the event thread", e))?;
        Ok(EventCoalescer { sender })
    }

    /// A handle for a reader thread to report through.
    pub fn sender(&self) -> std::sync::mpsc::Sender<RawActivity> {
        self.sender.clone()
    }
}

/// A terminal whose output was just reported: until when more output is gathered, and
/// whether any came.
struct Gathering {
    until: std::time::Instant,
    more: bool,
}

fn coalesce(rx: &std::sync::mpsc::Receiver<RawActivity>, events: &broadcast::Sender<BackendEvent>) {
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Instant;
    let mut gathering: std::collections::HashMap<SessionId, Gathering> =
        std::collections::HashMap::new();
    let output = |id: &SessionId| {
        let _ = events.send(BackendEvent::Output(id.clone()));
    };
    loop {
        let next = gathering.values().map(|g| g.until).min();
        let activity = match next {
            None => match rx.recv() {
                Ok(a) => Some(a),
                Err(_) => return,
            },
            Some(until) => match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(a) => Some(a),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    for (id, g) in &gathering {
                        if g.more {
                            output(id);
                        }
                    }
                    return;
                }
            },
        };
        let now = Instant::now();
        match activity {
            Some(RawActivity::Output(id)) => match gathering.get_mut(&id) {
                Some(g) => g.more = true,
                None => {
                    output(&id);
                    gathering.insert(
                        id,
                        Gathering {
                            until: now + EventCoalescer::WINDOW,
                            more: false,
                        },
                    );
                }
            },
            Some(RawActivity::Exited(id, status)) => {
                if gathering.remove(&id).is_some_and(|g| g.more) {
                    output(&id);
                }
                let _ = events.send(BackendEvent::Exited { id, status });
            }
            None => {}
        }
        // Windows that ended: what they gathered goes out, and opens the next window.
        gathering.retain(|id, g| {
            if g.until > now {
                return true;
            }
            if g.more {
                output(id);
                g.until = now + EventCoalescer::WINDOW;
                g.more = false;
                return true;
            }
            false
        });
    }
}

/// Finds `program` the way `execvp` would, using `path_var` as `PATH`.
pub fn resolve_program(program: &str, path_var: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    let path_var = path_var
        .map(str::to_string)
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/bin:/bin".into());
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// Checks a spawn spec the way every backend must before starting anything: the working
/// directory exists, the program is an executable (on `PATH` when it has no `/`), and the
/// size is not zero.
pub fn check_spawn_spec(spec: &SpawnSpec) -> Result<()> {
    if !spec.cwd.is_dir() {
        return Err(Error::InvalidWorkingDir {
            path: spec.cwd.clone(),
            reason: "no such directory".into(),
        });
    }
    if resolve_program(&spec.program, spec.env.get("PATH").map(String::as_str)).is_none() {
        return Err(Error::backend_msg(format!(
            "cannot start {:?}: no such executable (looked on PATH)",
            spec.program
        )));
    }
    if spec.cols == 0 || spec.rows == 0 {
        return Err(Error::InvalidInput(
            "terminal size must be at least 1×1".into(),
        ));
    }
    Ok(())
}

/// Why `program` cannot be run, if it cannot: not found on `PATH` (the agent's, else the
/// server's), or not an executable file. Checked before a session is registered, so a
/// misconfigured agent leaves no record behind.
pub fn missing_program(
    program: &str,
    env: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    if program.contains('/') {
        return (!is_executable(std::path::Path::new(program)))
            .then(|| format!("`{program}` is not an executable file"));
    }
    let path = env
        .get("PATH")
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    find_on_path(program, &path).is_none().then(|| {
        format!("`{program}` is not on PATH (install it, or set its command in the configuration)")
    })
}

/// The first executable file named `program` in the directories of `path` (a `PATH`
/// value).
pub fn find_on_path(program: &str, path: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod coalescer_tests {
    use super::*;

    fn started() -> (
        std::sync::mpsc::Sender<RawActivity>,
        broadcast::Receiver<BackendEvent>,
        EventCoalescer,
    ) {
        let (events, rx) = broadcast::channel(64);
        let coalescer = EventCoalescer::start(events).unwrap();
        (coalescer.sender(), rx, coalescer)
    }

    #[tokio::test]
    async fn a_burst_is_reported_at_once_and_then_once_more() {
        let (tx, mut rx, _c) = started();
        let id = SessionId::new_random();
        tx.send(RawActivity::Output(id.clone())).unwrap();
        assert_eq!(rx.recv().await.unwrap(), BackendEvent::Output(id.clone()));
        let burst_started = std::time::Instant::now();
        for _ in 0..100 {
            tx.send(RawActivity::Output(id.clone())).unwrap();
        }
        tx.send(RawActivity::Exited(id.clone(), Some(0))).unwrap();
        let mut rest = Vec::new();
        loop {
            let event = rx.recv().await.unwrap();
            let exited = matches!(event, BackendEvent::Exited { .. });
            rest.push(event);
            if exited {
                break;
            }
        }
        // One more output event per window the burst spanned (on a busy machine the
        // sends can straddle windows), never one per write; the exit after them.
        let windows =
            (burst_started.elapsed().as_millis() / EventCoalescer::WINDOW.as_millis()) as usize;
        let outputs = rest.len() - 1;
        assert!(
            outputs <= windows + 1,
            "{outputs} outputs over {windows} windows: {rest:?}"
        );
        assert_eq!(
            rest.last(),
            Some(&BackendEvent::Exited {
                id,
                status: Some(0)
            })
        );
    }

    #[tokio::test]
    async fn terminals_are_reported_independently() {
        let (tx, mut rx, _c) = started();
        let (a, b) = (SessionId::new_random(), SessionId::new_random());
        tx.send(RawActivity::Output(a.clone())).unwrap();
        tx.send(RawActivity::Output(b.clone())).unwrap();
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        assert_eq!(
            (first, second),
            (BackendEvent::Output(a), BackendEvent::Output(b))
        );
    }
}
