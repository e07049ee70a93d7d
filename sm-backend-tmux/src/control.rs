//! The control-mode client (`tmux -C attach`) sm holds on its tmux session. Two jobs:
//!
//! - **Notifications**: tmux pushes `%output` for every pane and `%window-close` when an
//!   agent's window goes away; they become coalesced [`BackendEvent`]s.
//! - **Commands**: every command sm sends while the client is up is written to it as one
//!   line, and tmux answers each with one `%begin … %end` (or `%error`) block, in order. A
//!   command costs a pipe write instead of a `tmux` child process.
//!
//! The client reconnects by itself when it ends while sm's tmux session still exists (a
//! human ran `detach-client`, the client was killed); only when the session is gone are
//! its agents reported exited.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sm_lib::{BackendEvent, Error, EventCoalescer, RawActivity, Result, SessionId};
use tokio::sync::{broadcast, oneshot};

/// How long a command sent over the control client may take before it is reported as
/// failed (tmux answers in well under a millisecond unless it is stopped or wedged).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pauses between reconnection attempts, doubling from the first to the last.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// Which tmux window and pane each agent lives in.
///
/// Entries are removed only when the control client reports the window closed, so an exit
/// is always attributed to its agent, however the window went away.
#[derive(Default, Debug)]
pub(crate) struct IdMap {
    by_id: HashMap<SessionId, (String, String)>,
    by_pane: HashMap<String, SessionId>,
    by_window: HashMap<String, SessionId>,
    /// Windows reported closed before anyone mapped them (a program that exited before
    /// `new-window` returned), so the late mapping can still report the exit.
    closed_unmapped: VecDeque<String>,
}

impl IdMap {
    /// Maps an agent to its window and pane. Returns true when that window has already
    /// closed: the caller reports the exit.
    pub(crate) fn insert(&mut self, id: SessionId, window: String, pane: String) -> bool {
        if let Some(i) = self.closed_unmapped.iter().position(|w| w == &window) {
            self.closed_unmapped.remove(i);
            return true;
        }
        self.by_pane.insert(pane.clone(), id.clone());
        self.by_window.insert(window.clone(), id.clone());
        self.by_id.insert(id, (window, pane));
        false
    }

    fn note_unmapped_close(&mut self, window: String) {
        if self.closed_unmapped.len() >= 64 {
            self.closed_unmapped.pop_front();
        }
        self.closed_unmapped.push_back(window);
    }

    pub(crate) fn pane_of(&self, id: &SessionId) -> Option<String> {
        self.by_id.get(id).map(|(_, p)| p.clone())
    }

    pub(crate) fn remove(&mut self, id: &SessionId) -> bool {
        match self.by_id.remove(id) {
            Some((window, pane)) => {
                self.by_window.remove(&window);
                self.by_pane.remove(&pane);
                true
            }
            None => false,
        }
    }

    fn by_pane(&self, pane: &str) -> Option<SessionId> {
        self.by_pane.get(pane).cloned()
    }

    fn by_window(&self, window: &str) -> Option<SessionId> {
        self.by_window.get(window).cloned()
    }

    fn drain(&mut self) -> Vec<SessionId> {
        self.by_pane.clear();
        self.by_window.clear();
        self.by_id.drain().map(|(id, _)| id).collect()
    }
}

/// What tmux answered to one command: its output, or its error message.
pub(crate) type Reply = std::result::Result<String, String>;

/// Commands written in one go, with where each one's reply goes.
struct Batch {
    text: String,
    replies: Vec<oneshot::Sender<Reply>>,
}

/// Replies not yet received, oldest first: tmux answers a client's commands in order.
type Waiting = Arc<Mutex<VecDeque<oneshot::Sender<Reply>>>>;

/// The command side of the control client, shared by the backend and the client's threads.
/// While no client is connected, [`Commands::send`] declines and the backend runs a `tmux`
/// process instead.
#[derive(Default)]
pub(crate) struct Commands {
    writer: Mutex<Option<mpsc::Sender<Batch>>>,
}

impl Commands {
    /// Whether a client is connected now.
    pub(crate) fn connected(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<Batch>>> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `commands` (each an argv) over the client, in order, and returns each one's
    /// reply. `None` when no client is connected or a command cannot be written as one
    /// line: nothing was sent, and the caller may run them another way.
    pub(crate) async fn send(&self, commands: &[&[&str]]) -> Option<Result<Vec<Reply>>> {
        let mut text = String::new();
        for argv in commands {
            text.push_str(&command_line(argv)?);
            text.push('\n');
        }
        let (senders, receivers): (Vec<_>, Vec<_>) =
            commands.iter().map(|_| oneshot::channel()).unzip();
        let batch = Batch {
            text,
            replies: senders,
        };
        {
            let writer = self.lock();
            // A failed send means the writer is gone and the batch was never written.
            writer.as_ref()?.send(batch).ok()?;
        }
        let replies = async {
            let mut replies = Vec::with_capacity(receivers.len());
            for receiver in receivers {
                match receiver.await {
                    Ok(reply) => replies.push(reply),
                    // Written, perhaps run: it must not be sent again another way.
                    Err(_) => {
                        return Err(Error::backend_msg(
                            "the tmux control client ended before tmux answered",
                        ));
                    }
                }
            }
            Ok(replies)
        };
        Some(
            tokio::time::timeout(REPLY_TIMEOUT, replies)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::backend_msg(format!(
                        "tmux did not answer within {} s",
                        REPLY_TIMEOUT.as_secs()
                    )))
                }),
        )
    }
}

/// One command as a line of tmux's command language: every argument single-quoted, so tmux
/// expands nothing in it. `None` for what a line cannot carry faithfully: control
/// characters (a newline would end the command), and commands that answer with more than
/// one block (`if-shell`, `run-shell` and `source-file` run further commands, each
/// answering on its own).
pub(crate) fn command_line(argv: &[&str]) -> Option<String> {
    let first = argv.first()?;
    if matches!(
        *first,
        "if-shell" | "if" | "run-shell" | "run" | "source-file" | "source"
    ) {
        return None;
    }
    let mut line = String::new();
    for arg in argv {
        if arg.chars().any(char::is_control) {
            return None;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push('\'');
        line.push_str(&arg.replace('\'', r"'\''"));
        line.push('\'');
    }
    Some(line)
}

struct Shared {
    socket: String,
    session: String,
    ids: Arc<Mutex<IdMap>>,
    commands: Arc<Commands>,
    child: Mutex<Option<Child>>,
    /// Set when sm lets go of the client: its end is then not a reason to reconnect.
    stopping: AtomicBool,
    /// Set when the client has ended for good.
    ended: AtomicBool,
}

impl Shared {
    /// Ends the current client process, if one runs, and reaps it.
    fn end_child(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The running control-mode client. Dropping it detaches the client (agents keep running).
pub(crate) struct ControlClient {
    shared: Arc<Shared>,
}

impl ControlClient {
    pub(crate) fn start(
        socket: &str,
        session: &str,
        ids: Arc<Mutex<IdMap>>,
        events: broadcast::Sender<BackendEvent>,
        commands: Arc<Commands>,
    ) -> Result<Self> {
        let tx = EventCoalescer::start(events)?.sender();
        let shared = Arc::new(Shared {
            socket: socket.to_string(),
            session: session.to_string(),
            ids,
            commands,
            child: Mutex::new(None),
            stopping: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        });
        // The client is started by the thread that reads it, which lives as long as the
        // client does: a parent-death signal follows the thread that forked, not the process.
        let (started_tx, started_rx) = mpsc::channel();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("sm-tmux-control".into())
            .spawn(move || supervise(&thread_shared, started_tx, &tx))
            .map_err(|e| Error::backend("cannot start the tmux control reader", e))?;
        started_rx
            .recv()
            .map_err(|_| Error::backend_msg("the tmux control reader ended at start"))?
            .map_err(|e| Error::backend("cannot start the tmux control client", e))?;
        Ok(ControlClient { shared })
    }

    /// Whether the client is up or reconnecting (false once it has ended for good).
    pub(crate) fn is_running(&self) -> bool {
        !self.shared.ended.load(Ordering::SeqCst)
    }
}

impl Drop for ControlClient {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        *self.shared.commands.lock() = None;
        self.shared.end_child();
    }
}

/// Attaches a client, reads it until it ends, and reconnects while sm's session lives.
fn supervise(
    shared: &Shared,
    started: mpsc::Sender<std::io::Result<()>>,
    tx: &mpsc::Sender<RawActivity>,
) {
    let mut started = Some(started);
    let mut backoff = RECONNECT_BACKOFF.0;
    loop {
        match attach(shared) {
            Ok((stdout, waiting)) => {
                if let Some(s) = started.take() {
                    let _ = s.send(Ok(()));
                }
                backoff = RECONNECT_BACKOFF.0;
                let receiver_gone = read_client(stdout, shared, &waiting, tx);
                *shared.commands.lock() = None;
                // Commands still waiting were written to a client that is gone.
                waiting.lock().unwrap_or_else(|e| e.into_inner()).clear();
                shared.end_child();
                if receiver_gone {
                    break;
                }
            }
            Err(e) => {
                if let Some(s) = started.take() {
                    let _ = s.send(Err(e));
                    shared.ended.store(true, Ordering::SeqCst);
                    return;
                }
                tracing::warn!(error = %e, "cannot reattach the tmux control client");
            }
        }
        let stopping = shared.stopping.load(Ordering::SeqCst);
        let session_lives = session_exists(shared);
        if stopping || !session_lives {
            if !session_lives {
                // The tmux server or sm's session is gone, and with it every agent the map
                // still knew.
                let gone = shared.ids.lock().unwrap_or_else(|e| e.into_inner()).drain();
                for id in gone {
                    let _ = tx.send(RawActivity::Exited(id, None));
                }
            }
            break;
        }
        tracing::warn!("the tmux control client ended while sm's session lives; reattaching");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
    }
    shared.ended.store(true, Ordering::SeqCst);
}

fn session_exists(shared: &Shared) -> bool {
    Command::new("tmux")
        .args(["-L", &shared.socket, "has-session", "-t"])
        .arg(format!("={}", shared.session))
        .env_remove("TMUX")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts a client and its command writer; the client's output is the caller's to read.
fn attach(shared: &Shared) -> std::io::Result<(ChildStdout, Waiting)> {
    let mut command = Command::new("tmux");
    command
        .args(["-L", &shared.socket, "-C", "attach-session", "-t"])
        .arg(format!("={}", shared.session))
        .env_remove("TMUX")
        // File commands (load-buffer, save-buffer) are carried out by the client, relative
        // to its directory; sm passes absolute paths, and "/" is never removed under it.
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    die_with_parent(&mut command);
    let mut child = command.spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("the control client has no pipes"));
    };
    *shared.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    let waiting: Waiting = Arc::default();
    let (batches, batches_rx) = mpsc::channel();
    let writer_waiting = waiting.clone();
    std::thread::Builder::new()
        .name("sm-tmux-commands".into())
        .spawn(move || write_commands(stdin, &batches_rx, &writer_waiting))?;
    if !shared.stopping.load(Ordering::SeqCst) {
        *shared.commands.lock() = Some(batches);
    }
    Ok((stdout, waiting))
}

/// Writes each batch to the client, queuing its reply slots first so the reader always
/// finds the slot of the block it reads. Ends with the client (or when no one can send).
fn write_commands(mut stdin: ChildStdin, batches: &mpsc::Receiver<Batch>, waiting: &Waiting) {
    while let Ok(batch) = batches.recv() {
        waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(batch.replies);
        if stdin
            .write_all(batch.text.as_bytes())
            .and_then(|()| stdin.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Makes the control client die with sm. A client left behind by a server that was killed
/// keeps its place among tmux's clients without reading, and tmux stops reading the panes
/// such a client lags behind on: every agent's output would stall until tmux gave up on it
/// minutes later. (The server also detaches leftover control clients when it attaches.)
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and makes one raw system
    // call (prctl), which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// A reply block being read: its guard (`<time> <number>`), whether it answers one of
/// sm's commands (flags 1) rather than the attach itself, and its lines so far.
struct Block {
    guard: Vec<u8>,
    ours: bool,
    body: String,
}

/// Reads the client until it ends: notifications become activity, reply blocks go to the
/// waiting commands in order. Returns true when the activity receiver is gone (the
/// backend was dropped).
fn read_client(
    stdout: ChildStdout,
    shared: &Shared,
    waiting: &Waiting,
    tx: &mpsc::Sender<RawActivity>,
) -> bool {
    let lock = || shared.ids.lock().unwrap_or_else(|e| e.into_inner());
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut block: Option<Block> = None;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some(b) = block.as_mut() {
            // Inside a block every line is output, except the guard that closes it: the
            // same time and number as its %begin (a screen line cannot close it by chance).
            let end = guard_of(&line, b"%end ").map(|g| (g, true));
            let end = end.or_else(|| guard_of(&line, b"%error ").map(|g| (g, false)));
            match end {
                Some((guard, ok)) if guard == b.guard.as_slice() => {
                    let Some(done) = block.take() else { continue };
                    if done.ours {
                        let slot = waiting
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .pop_front();
                        if let Some(slot) = slot {
                            let _ = slot.send(if ok { Ok(done.body) } else { Err(done.body) });
                        }
                    }
                }
                _ => {
                    b.body.push_str(&String::from_utf8_lossy(&line));
                    b.body.push('\n');
                }
            }
            continue;
        }
        let mut words = line.split(|b| *b == b' ');
        let kind = words.next().unwrap_or_default();
        if kind == b"%begin" {
            if let Some(guard) = guard_of(&line, b"%begin ") {
                block = Some(Block {
                    guard: guard.to_vec(),
                    ours: line.ends_with(b" 1"),
                    body: String::new(),
                });
            }
            continue;
        }
        let arg = words
            .next()
            .map(|w| String::from_utf8_lossy(w).trim_end().to_string())
            .unwrap_or_default();
        let notice = match kind {
            b"%output" | b"%extended-output" => lock().by_pane(&arg).map(RawActivity::Output),
            b"%window-close" | b"%unlinked-window-close" => {
                let mut map = lock();
                match map.by_window(&arg) {
                    Some(id) => {
                        map.remove(&id);
                        // tmux does not keep the status of a program whose window closed.
                        Some(RawActivity::Exited(id, None))
                    }
                    None => {
                        map.note_unmapped_close(arg);
                        None
                    }
                }
            }
            b"%exit" => return false,
            _ => None,
        };
        if let Some(n) = notice {
            if tx.send(n).is_err() {
                return true;
            }
        }
    }
}

/// The `<time> <number>` of a guard line `%begin|%end|%error <time> <number> <flags>`.
fn guard_of<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(prefix)?;
    let mut fields = rest.split(|b| *b == b' ');
    let (time, number, flags) = (fields.next()?, fields.next()?, fields.next()?);
    let numeric = |f: &[u8]| !f.is_empty() && f.iter().all(u8::is_ascii_digit);
    if fields.next().is_some() || !numeric(time) || !numeric(number) || !numeric(flags) {
        return None;
    }
    Some(&rest[..time.len() + 1 + number.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_every_argument_so_tmux_expands_nothing() {
        assert_eq!(
            command_line(&["send-keys", "-l", "--", "it's $HOME ~ #{pane_id} ; x"]).as_deref(),
            Some(r"'send-keys' '-l' '--' 'it'\''s $HOME ~ #{pane_id} ; x'")
        );
    }

    #[test]
    fn what_a_line_cannot_carry_goes_another_way() {
        assert_eq!(command_line(&["send-keys", "-l", "a\nb"]), None);
        assert_eq!(command_line(&["if-shell", "-F", "x", "y"]), None);
        assert_eq!(command_line(&[]), None);
    }

    #[test]
    fn guards_are_recognised_only_whole() {
        assert_eq!(
            guard_of(b"%end 1796182566 269 1", b"%end "),
            Some(&b"1796182566 269"[..])
        );
        assert_eq!(guard_of(b"%end 1796182566 269 1 x", b"%end "), None);
        assert_eq!(guard_of(b"%end soon", b"%end "), None);
        assert_eq!(guard_of(b"%endless 1 2 3", b"%end "), None);
    }
}
