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
        let mut child = Command::new("tmux")
            .args(["-L", socket, "-C", "attach-session", "-t"])
            .arg(format!("={session}"))
            .env_remove("TMUX")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::backend("cannot start the tmux control client", e))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::backend_msg("tmux control client has no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::backend_msg("tmux control client has no stdout"))?;
        let tx = EventCoalescer::start(events)?.sender();
        std::thread::Builder::new()
            .name("sm-tmux-control".into())
            .spawn(move || read_notifications(stdout, ids, tx))
            .map_err(|e| Error::backend("cannot start the tmux control reader", e))?;
        Ok(ControlClient {
            child,
            _stdin: stdin,
        })
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

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
