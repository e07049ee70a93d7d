//! # sm-backend-pty — agents' terminals as raw PTYs owned by the sm process
//!
//! [`PtyBackend`] implements [`sm_lib::TerminalBackend`] without tmux: for machines without
//! it, for CI, and for programs that embed sm. Each agent runs on a pseudo-terminal opened
//! with `portable-pty`; a reader thread feeds everything it prints into a `vt100` parser,
//! which is the screen sm captures; a waiter thread reaps the program and reports its exit
//! status. Output notices go through [`sm_lib::EventCoalescer`].
//!
//! Differences from tmux: terminals live and die with the process that owns the backend
//! (`list` after a restart is empty), and no other process can attach to them.
//!
//! Input: text is written as the bytes a terminal would send (newlines as carriage
//! returns); multi-line or long text is wrapped in bracketed paste when the program enabled
//! it. The backend answers the two terminal queries programs commonly block on (cursor
//! position and device attributes), as a real terminal would.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use sm_lib::{
    BackendEvent, Error, EventCoalescer, Key, RawActivity, Result, SessionId, SpawnSpec,
    TerminalBackend,
};
use tokio::sync::broadcast;

/// Text longer than this (in bytes) is pasted rather than typed.
const PASTE_THRESHOLD: usize = 512;
/// Lines of scrollback kept per terminal.
const SCROLLBACK: usize = 10_000;
/// How long a killed program gets to exit on SIGHUP before it is sent SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The raw PTY terminal backend.
#[derive(Clone)]
pub struct PtyBackend {
    inner: Arc<Inner>,
}

struct Inner {
    terminals: Mutex<HashMap<SessionId, Arc<Terminal>>>,
    events: broadcast::Sender<BackendEvent>,
    activity: std::sync::mpsc::Sender<RawActivity>,
    // Keeps the coalescing thread's channel open for the backend's life.
    _coalescer: EventCoalescer,
}

struct Terminal {
    id: SessionId,
    master: Mutex<Box<dyn MasterPty + Send>>,
    writer: Mutex<Box<dyn Write + Send>>,
    screen: Mutex<vt100::Parser>,
    pid: Option<u32>,
    alive: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Terminal {
    fn write_all(&self, bytes: &[u8]) -> Result<()> {
        let mut w = lock(&self.writer);
        w.write_all(bytes)
            .and_then(|()| w.flush())
            .map_err(|e| Error::backend(format!("cannot write to terminal {}", self.id), e))
    }

    fn signal_group(&self, signal: rustix::process::Signal) {
        if let Some(pid) = self
            .pid
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            // The program leads its own session and process group (setsid), so this reaches
            // whatever it started too. It may already be gone: that is fine.
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }
}

impl PtyBackend {
    /// A backend with no terminals.
    pub fn new() -> Result<Self> {
        let (events, _) = broadcast::channel(4096);
        let coalescer = EventCoalescer::start(events.clone())?;
        Ok(PtyBackend {
            inner: Arc::new(Inner {
                terminals: Mutex::new(HashMap::new()),
                events,
                activity: coalescer.sender(),
                _coalescer: coalescer,
            }),
        })
    }

    fn terminal(&self, id: &SessionId) -> Result<Arc<Terminal>> {
        lock(&self.inner.terminals)
            .get(id)
            .filter(|t| t.alive.load(Ordering::SeqCst))
            .cloned()
            .ok_or_else(|| Error::SessionNotFound(id.to_string()))
    }

    fn spawn_blocking(&self, spec: SpawnSpec) -> Result<()> {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: spec.rows,
                cols: spec.cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| Error::backend_msg(format!("cannot open a PTY: {e}")))?;
        let mut cmd = CommandBuilder::new(&spec.program);
        cmd.args(&spec.args);
        cmd.cwd(&spec.cwd);
        cmd.env("TERM", "xterm-256color");
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let mut child = pty
            .slave
            .spawn_command(cmd)
            .map_err(|e| Error::backend_msg(format!("cannot start {:?}: {e}", spec.program)))?;
        drop(pty.slave);
        let reader = pty
            .master
            .try_clone_reader()
            .map_err(|e| Error::backend_msg(format!("cannot read the PTY: {e}")))?;
        let writer = pty
            .master
            .take_writer()
            .map_err(|e| Error::backend_msg(format!("cannot write the PTY: {e}")))?;
        let terminal = Arc::new(Terminal {
            id: spec.id.clone(),
            master: Mutex::new(pty.master),
            writer: Mutex::new(writer),
            screen: Mutex::new(vt100::Parser::new(spec.rows, spec.cols, SCROLLBACK)),
            pid: child.process_id(),
            alive: AtomicBool::new(true),
        });
        {
            let mut terminals = lock(&self.inner.terminals);
            if terminals
                .get(&spec.id)
                .is_some_and(|t| t.alive.load(Ordering::SeqCst))
            {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::SessionExists(spec.id));
            }
            terminals.insert(spec.id.clone(), terminal.clone());
        }

        let activity = self.inner.activity.clone();
        let reading = terminal.clone();
        std::thread::Builder::new()
            .name(format!("sm-pty-read-{}", &spec.id.as_str()[..8]))
            .spawn(move || read_output(reading, reader, activity))
            .map_err(|e| Error::backend("cannot start a PTY reader thread", e))?;

        let activity = self.inner.activity.clone();
        let inner = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name(format!("sm-pty-wait-{}", &spec.id.as_str()[..8]))
            .spawn(move || {
                // A program ended by a signal has no exit code.
                let status = child
                    .wait()
                    .ok()
                    .filter(|s| s.signal().is_none())
                    .map(|s| s.exit_code() as i32);
                terminal.alive.store(false, Ordering::SeqCst);
                if let Some(inner) = inner.upgrade() {
                    let mut terminals = lock(&inner.terminals);
                    if terminals
                        .get(&terminal.id)
                        .is_some_and(|t| Arc::ptr_eq(t, &terminal))
                    {
                        terminals.remove(&terminal.id);
                    }
                }
                let _ = activity.send(RawActivity::Exited(terminal.id.clone(), status));
            })
            .map_err(|e| Error::backend("cannot start a PTY waiter thread", e))?;
        Ok(())
    }
}

/// Feeds the program's output into the screen, answering terminal queries on the way.
fn read_output(
    terminal: Arc<Terminal>,
    mut reader: Box<dyn Read + Send>,
    activity: std::sync::mpsc::Sender<RawActivity>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let reply = {
            let mut screen = lock(&terminal.screen);
            screen.process(chunk);
            terminal_replies(chunk, screen.screen())
        };
        if !reply.is_empty() {
            let _ = terminal.write_all(&reply);
        }
        if activity
            .send(RawActivity::Output(terminal.id.clone()))
            .is_err()
        {
            return;
        }
    }
}

/// What a terminal answers to the queries in `chunk`: cursor position (`ESC [6n`) and
/// primary device attributes (`ESC [c`).
fn terminal_replies(chunk: &[u8], screen: &vt100::Screen) -> Vec<u8> {
    let mut reply = Vec::new();
    let contains = |needle: &[u8]| chunk.windows(needle.len()).any(|w| w == needle);
    if contains(b"\x1b[6n") {
        let (row, col) = screen.cursor_position();
        reply.extend_from_slice(format!("\x1b[{};{}R", row + 1, col + 1).as_bytes());
    }
    if contains(b"\x1b[c") || contains(b"\x1b[0c") {
        reply.extend_from_slice(b"\x1b[?62;22c");
    }
    reply
}

fn trimmed_rows(screen: &vt100::Screen) -> Vec<String> {
    let (_, cols) = screen.size();
    screen
        .rows(0, cols)
        .map(|r| r.trim_end().to_string())
        .collect()
}

#[async_trait]
impl TerminalBackend for PtyBackend {
    fn name(&self) -> &'static str {
        "pty"
    }

    fn cannot_run(
        &self,
        program: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Option<String> {
        sm_lib::backend::missing_program(program, env)
    }

    async fn create(&self, spec: &SpawnSpec) -> Result<()> {
        sm_lib::backend::check_spawn_spec(spec)?;
        if self.terminal(&spec.id).is_ok() {
            return Err(Error::SessionExists(spec.id.clone()));
        }
        let backend = self.clone();
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || backend.spawn_blocking(spec))
            .await
            .map_err(|e| Error::backend("spawn task failed", e))?
    }

    async fn send_text(&self, id: &SessionId, text: &str) -> Result<()> {
        let terminal = self.terminal(id)?;
        if text.is_empty() {
            return Ok(());
        }
        let typed = text.replace('\n', "\r");
        let paste = (text.contains('\n') || text.len() > PASTE_THRESHOLD)
            && lock(&terminal.screen).screen().bracketed_paste();
        let bytes = if paste {
            format!("\x1b[200~{typed}\x1b[201~").into_bytes()
        } else {
            typed.into_bytes()
        };
        // A program that is slow to read fills the PTY buffer and blocks the write.
        tokio::task::spawn_blocking(move || terminal.write_all(&bytes))
            .await
            .map_err(|e| Error::backend("write task failed", e))?
    }

    async fn send_key(&self, id: &SessionId, key: Key) -> Result<()> {
        let terminal = self.terminal(id)?;
        let bytes: &[u8] = match key {
            // Arrow keys follow the program's cursor-key mode, as a terminal's do.
            Key::Up if lock(&terminal.screen).screen().application_cursor() => b"\x1bOA",
            Key::Down if lock(&terminal.screen).screen().application_cursor() => b"\x1bOB",
            other => other.bytes(),
        };
        tokio::task::spawn_blocking(move || terminal.write_all(bytes))
            .await
            .map_err(|e| Error::backend("write task failed", e))?
    }

    async fn capture_screen(&self, id: &SessionId) -> Result<Vec<String>> {
        let terminal = self.terminal(id)?;
        let parser = lock(&terminal.screen);
        Ok(trimmed_rows(parser.screen()))
    }

    async fn capture_styled(&self, id: &SessionId) -> Result<Vec<String>> {
        let terminal = self.terminal(id)?;
        let parser = lock(&terminal.screen);
        let screen = parser.screen();
        let (_, cols) = screen.size();
        Ok(screen
            .rows_formatted(0, cols)
            .map(|row| String::from_utf8_lossy(&row).trim_end().to_string())
            .collect())
    }

    async fn capture_tail(&self, id: &SessionId, lines: usize) -> Result<Vec<String>> {
        let terminal = self.terminal(id)?;
        let mut parser = lock(&terminal.screen);
        let (rows, _) = parser.screen().size();
        let rows = usize::from(rows);
        parser.screen_mut().set_scrollback(lines);
        let mut offset = parser.screen().scrollback();
        let mut out = Vec::new();
        // With scrollback offset `o`, the view starts `o` lines above the screen; walk down
        // a screenful at a time, keeping only history lines until the screen itself.
        while offset > 0 {
            let view = trimmed_rows(parser.screen());
            out.extend(view.into_iter().take(rows.min(offset)));
            offset = offset.saturating_sub(rows);
            parser.screen_mut().set_scrollback(offset);
        }
        out.extend(trimmed_rows(parser.screen()));
        parser.screen_mut().set_scrollback(0);
        while out.last().is_some_and(String::is_empty) {
            out.pop();
        }
        let skip = out.len().saturating_sub(lines);
        out.drain(..skip);
        Ok(out)
    }

    async fn is_alive(&self, id: &SessionId) -> Result<bool> {
        Ok(self.terminal(id).is_ok())
    }

    async fn kill(&self, id: &SessionId) -> Result<()> {
        let Some(terminal) = lock(&self.inner.terminals).remove(id) else {
            return Ok(());
        };
        terminal.signal_group(rustix::process::Signal::HUP);
        let deadline = Instant::now() + KILL_GRACE;
        while terminal.alive.load(Ordering::SeqCst) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if terminal.alive.load(Ordering::SeqCst) {
            terminal.signal_group(rustix::process::Signal::KILL);
        }
        // Closing the master hangs up anything still attached to the terminal.
        drop(lock(&terminal.master));
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SessionId>> {
        let mut ids: Vec<SessionId> = lock(&self.inner.terminals)
            .values()
            .filter(|t| t.alive.load(Ordering::SeqCst))
            .map(|t| t.id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn capabilities(&self) -> sm_lib::Capabilities {
        sm_lib::Capabilities {
            exit_status: true,
            attach: false,
            runs_programs: true,
        }
    }

    fn attach_command(&self, _id: &SessionId) -> Option<Vec<String>> {
        None
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.inner.events.subscribe()
    }
}
