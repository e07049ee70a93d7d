//! The one control-mode client (`tmux -C attach`) through which tmux pushes output and
//! window-close notifications for every agent, turned into coalesced [`BackendEvent`]s.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use sm_lib::{BackendEvent, Error, EventCoalescer, RawActivity, Result, SessionId};
use tokio::sync::broadcast;

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

/// A running control-mode client. Dropping it detaches the client (agents keep running).
pub(crate) struct ControlClient {
    child: Child,
    // Control mode ends when its stdin closes, so the handle is held for the client's life.
    _stdin: ChildStdin,
}

impl ControlClient {
    pub(crate) fn start(
        socket: &str,
        session: &str,
        ids: Arc<Mutex<IdMap>>,
        events: broadcast::Sender<BackendEvent>,
    ) -> Result<Self> {
        let mut command = Command::new("tmux");
        command
            .args(["-L", socket, "-C", "attach-session", "-t"])
            .arg(format!("={session}"))
            .env_remove("TMUX")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let tx = EventCoalescer::start(events)?.sender();
        // The client is started by the thread that reads it, which lives as long as the
        // client does: a parent-death signal follows the thread that forked, not the process.
        let (started_tx, started_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sm-tmux-control".into())
            .spawn(move || {
                let started = command.spawn().and_then(|mut child| {
                    let stdin = child.stdin.take();
                    let stdout = child.stdout.take();
                    match (stdin, stdout) {
                        (Some(stdin), Some(stdout)) => Ok((child, stdin, stdout)),
                        _ => Err(std::io::Error::other("the control client has no pipes")),
                    }
                });
                match started {
                    Ok((child, stdin, stdout)) => {
                        if started_tx.send(Ok((child, stdin))).is_ok() {
                            read_notifications(stdout, ids, tx);
                        }
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| Error::backend("cannot start the tmux control reader", e))?;
        let (child, stdin) = started_rx
            .recv()
            .map_err(|_| Error::backend_msg("the tmux control reader ended at start"))?
            .map_err(|e| Error::backend("cannot start the tmux control client", e))?;
        Ok(ControlClient {
            child,
            _stdin: stdin,
        })
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

impl Drop for ControlClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_notifications(
    stdout: std::process::ChildStdout,
    ids: Arc<Mutex<IdMap>>,
    tx: mpsc::Sender<RawActivity>,
) {
    let lock = || ids.lock().unwrap_or_else(|e| e.into_inner());
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut words = line.split(|b| *b == b' ');
        let kind = words.next().unwrap_or_default();
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
            b"%exit" => break,
            _ => None,
        };
        if let Some(n) = notice {
            if tx.send(n).is_err() {
                return;
            }
        }
    }
    // The control client ended: the tmux server or sm's session is gone, and with it every
    // agent the map still knew.
    for id in lock().drain() {
        let _ = tx.send(RawActivity::Exited(id, None));
    }
}
