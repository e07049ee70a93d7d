//! # sm-backend-tmux — agents' terminals as tmux windows
//!
//! [`TmuxBackend`] implements [`sm_lib::TerminalBackend`] over tmux, the primary backend:
//! agents survive a restart of the sm server, and a human can attach to any of them.
//!
//! Layout: sm runs its own tmux server (`tmux -L <socket>`, default `sm`), so it never
//! touches the user's tmux. In it, one tmux session (named like the socket) holds one window
//! per agent, named by the agent's session id, plus a small keep-alive window so the session
//! outlives its last agent.
//!
//! Events come from **one** control-mode client attached to that session: tmux pushes
//! `%output` for every pane and `%window-close` when an agent's window goes away, so idle
//! agents cost nothing — there is no `capture-pane` loop. Output notifications are
//! coalesced (a burst becomes one event per window every few milliseconds). The same
//! client carries sm's commands: each is written as one line of tmux's command language
//! (every argument single-quoted) and answered by one reply block, in order — tens of
//! microseconds instead of a `tmux` process of a few milliseconds. Screens captured over
//! it come back through a private file, so agent-controlled text never travels in the
//! reply stream. The client reattaches by itself when it ends while the session lives.
//!
//! Input: single short lines go in with `send-keys -l` (literal, never parsed as key
//! names); multi-line or long text goes through `load-buffer` + `paste-buffer -p`, which
//! tmux wraps in bracketed paste when the agent enabled it. Keys (Enter, Escape, …) are
//! always separate `send-keys`. A pane in copy-mode is taken out of it before any input.
//!
//! Before the control client is up (creating the session) or for what one line cannot
//! carry (an argument with a control character), a command runs as a `tmux` child process
//! with an argv — no shell sees user text either way. The tmux version is checked at run
//! time; 3.0 or newer is required.

mod control;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sm_lib::{BackendEvent, Error, Key, Result, SessionId, SpawnSpec, TerminalBackend};
use tokio::sync::broadcast;

/// Text longer than this (in bytes) is pasted rather than typed.
const PASTE_THRESHOLD: usize = 512;
/// Name of the window that keeps sm's tmux session alive while it has no agents.
const KEEPALIVE_WINDOW: &str = "sm-keepalive";
/// Lines of scrollback kept per agent.
const HISTORY_LIMIT: u32 = 10_000;

/// The oldest tmux sm works with: `new-window -e`, and command arguments passed as an argv.
pub const MIN_VERSION: (u32, u32) = (3, 0);

/// A tmux version as reported by `tmux -V`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TmuxVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl TmuxVersion {
    /// Parses `tmux -V` output such as `tmux 3.3a`, `tmux 3.4`, `tmux next-3.5`. Builds from
    /// the development branch (`tmux master`) count as new enough.
    pub fn parse(output: &str) -> Option<TmuxVersion> {
        let word = output.split_whitespace().nth(1)?;
        if word == "master" {
            return Some(TmuxVersion {
                major: u32::MAX,
                minor: 0,
            });
        }
        let word = word.trim_start_matches("next-");
        let mut parts = word.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_text: String = parts
            .next()
            .unwrap_or("0")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let minor = minor_text.parse().unwrap_or(0);
        Some(TmuxVersion { major, minor })
    }
}

/// The tmux terminal backend.
#[derive(Clone)]
pub struct TmuxBackend {
    inner: Arc<Inner>,
}

struct Inner {
    socket: String,
    session: String,
    version: TmuxVersion,
    events: broadcast::Sender<BackendEvent>,
    /// Pane id (`%N`) and window id (`@N`) of each agent, to name events and targets.
    ids: Arc<Mutex<control::IdMap>>,
    control: tokio::sync::Mutex<Option<control::ControlClient>>,
    /// Commands over the control client while it is connected.
    commands: Arc<control::Commands>,
    /// Private files for paste buffers and captured screens.
    paste_dir: tempfile::TempDir,
    /// Commands that ran as `tmux` processes rather than over the control client.
    processes: std::sync::atomic::AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.control.try_lock() {
            guard.take();
        }
    }
}

fn tmux_missing(e: &std::io::Error) -> Error {
    Error::backend_msg(format!(
        "cannot run tmux ({e}): install tmux 3.0 or newer (e.g. `apt-get install tmux` or \
         `brew install tmux`), or set `terminal.backend: pty` to run agents without tmux"
    ))
}

impl TmuxBackend {
    /// A backend on tmux socket `socket` (`tmux -L socket`). Checks that tmux is installed
    /// and new enough; starts nothing until the first agent is created.
    pub async fn new(socket: impl Into<String>) -> Result<Self> {
        let socket = socket.into();
        if socket.is_empty() || socket.contains('/') {
            return Err(Error::InvalidInput(format!(
                "invalid tmux socket name {socket:?}: use a plain name without '/'"
            )));
        }
        let out = tokio::process::Command::new("tmux")
            .arg("-V")
            .env_remove("TMUX")
            .output()
            .await
            .map_err(|e| tmux_missing(&e))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let version = TmuxVersion::parse(&text).ok_or_else(|| {
            Error::backend_msg(format!("cannot read the tmux version from {text:?}"))
        })?;
        if (version.major, version.minor) < MIN_VERSION {
            return Err(Error::backend_msg(format!(
                "{} is too old: sm needs tmux {}.{} or newer; upgrade tmux or set \
                 `terminal.backend: pty`",
                text.trim(),
                MIN_VERSION.0,
                MIN_VERSION.1
            )));
        }
        let paste_dir = tempfile::Builder::new()
            .prefix("sm-tmux-paste-")
            .tempdir()
            .map_err(|e| Error::backend("cannot create a directory for paste buffers", e))?;
        let (events, _) = broadcast::channel(4096);
        let backend = TmuxBackend {
            inner: Arc::new(Inner {
                session: socket.clone(),
                socket,
                version,
                events,
                ids: Arc::new(Mutex::new(control::IdMap::default())),
                control: tokio::sync::Mutex::new(None),
                commands: Arc::default(),
                paste_dir,
                processes: Default::default(),
            }),
        };
        // Re-attach to a tmux server that outlived an earlier sm, so its agents' events flow.
        if backend.session_exists().await? {
            backend.ensure_control().await?;
        }
        Ok(backend)
    }

    /// The tmux version found.
    pub fn version(&self) -> TmuxVersion {
        self.inner.version
    }

    /// The tmux socket name.
    pub fn socket(&self) -> &str {
        &self.inner.socket
    }

    /// How many tmux commands this backend has run as `tmux` child processes; the others
    /// went over the control client. Once the first agent runs, only what the control
    /// client cannot carry (see the crate docs) adds to it.
    pub fn commands_run_as_processes(&self) -> u64 {
        self.inner
            .processes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops sm's tmux server and every agent in it. For tests and uninstalling; a normal
    /// shutdown leaves agents running.
    pub async fn kill_server(&self) -> Result<()> {
        // A tmux process, not the control client, which tmux ends mid-command; the client
        // then sees the session gone and reports every agent exited.
        let _ = self.tmux_process(&["kill-server"]).await;
        self.inner.control.lock().await.take();
        Ok(())
    }

    /// Runs one tmux command (or a `;`-separated sequence) on sm's socket; returns its
    /// output, or the tmux error. Over the control client while it is connected, else as
    /// a `tmux` process.
    async fn tmux(&self, args: &[&str]) -> Result<String> {
        let commands: Vec<&[&str]> = args.split(|a| *a == ";").collect();
        match self.inner.commands.send(&commands).await {
            Some(replies) => joined(replies?),
            None => self.tmux_process(args).await,
        }
    }

    /// [`TmuxBackend::tmux`] as a child process.
    async fn tmux_process(&self, args: &[&str]) -> Result<String> {
        self.inner
            .processes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = tokio::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.inner.socket)
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| tmux_missing(&e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(TmuxFailure(String::from_utf8_lossy(&out.stderr).trim().to_string()).into())
        }
    }

    async fn session_exists(&self) -> Result<bool> {
        match self
            .tmux(&["has-session", "-t", &format!("={}", self.inner.session)])
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Backend { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts sm's tmux server and session if needed, and the control client.
    async fn ensure_started(&self) -> Result<()> {
        if !self.session_exists().await? {
            let size_x = "200";
            let size_y = "50";
            let created = self
                .tmux(&[
                    "new-session",
                    "-d",
                    "-s",
                    &self.inner.session,
                    "-n",
                    KEEPALIVE_WINDOW,
                    "-x",
                    size_x,
                    "-y",
                    size_y,
                    "cat",
                    "-",
                ])
                .await;
            // Another sm process may have created it at the same moment: fine if it exists.
            if let Err(e) = created {
                if !self.session_exists().await? {
                    return Err(e);
                }
            }
            let history = HISTORY_LIMIT.to_string();
            for (scope, option, value) in [
                ("-g", "history-limit", history.as_str()),
                ("-g", "remain-on-exit", "off"),
                ("-s", "exit-empty", "off"),
                ("-s", "escape-time", "10"),
                // No periodic status-line redraws: with hundreds of windows they are the
                // main cost of an idle tmux server.
                ("-g", "status-interval", "0"),
                ("-g", "monitor-activity", "off"),
            ] {
                self.tmux(&["set-option", scope, option, value]).await?;
            }
            // A TUI that clears its screen to redraw would otherwise push a copy of every
            // frame into the history, and `output` would show each line many times (the
            // option exists since tmux 3.2).
            if (self.inner.version.major, self.inner.version.minor) >= (3, 2) {
                self.tmux(&["set-option", "-g", "scroll-on-clear", "off"])
                    .await?;
            }
        }
        self.ensure_control().await
    }

    async fn ensure_control(&self) -> Result<()> {
        let mut control = self.inner.control.lock().await;
        if control
            .as_ref()
            .is_some_and(control::ControlClient::is_running)
        {
            return Ok(());
        }
        self.detach_stale_control_clients().await;
        self.refresh_ids().await?;
        *control = Some(control::ControlClient::start(
            &self.inner.socket,
            &self.inner.session,
            self.inner.ids.clone(),
            self.inner.events.clone(),
            self.inner.commands.clone(),
        )?);
        Ok(())
    }

    /// Detaches control-mode clients that an earlier server left behind (one killed before
    /// its client could go): tmux holds back the output of panes such a client does not
    /// read. Only sm attaches control clients to its own socket.
    async fn detach_stale_control_clients(&self) {
        let Ok(listing) = self
            .tmux(&[
                "list-clients",
                "-F",
                "#{client_name} #{client_control_mode}",
            ])
            .await
        else {
            return;
        };
        for line in listing.lines() {
            if let Some((name, "1")) = line.rsplit_once(' ') {
                tracing::info!(
                    client = name,
                    "detaching a control client left by an earlier server"
                );
                let _ = self.tmux(&["detach-client", "-t", name]).await;
            }
        }
    }

    /// Rebuilds the id map from tmux's window list.
    async fn refresh_ids(&self) -> Result<Vec<SessionId>> {
        let listing = match self
            .tmux(&[
                "list-panes",
                "-s",
                "-t",
                &format!("={}", self.inner.session),
                "-F",
                "#{window_name} #{window_id} #{pane_id} #{pane_dead}",
            ])
            .await
        {
            Ok(text) => text,
            Err(Error::Backend { .. }) => String::new(),
            Err(e) => return Err(e),
        };
        let mut live = Vec::new();
        let mut map = self.inner.ids.lock().unwrap_or_else(|e| e.into_inner());
        for line in listing.lines() {
            let mut parts = line.split(' ');
            let (Some(name), Some(window), Some(pane), dead) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(id) = name.parse::<SessionId>() else {
                continue;
            };
            if map.pane_of(&id).is_none() {
                map.insert(id.clone(), window.to_string(), pane.to_string());
            }
            if dead != Some("1") {
                live.push(id);
            }
        }
        // Windows no longer listed stay mapped until the control client reports them
        // closed, so their exit events still name the agent.
        Ok(live)
    }

    /// The pane of a live agent window, or `SessionNotFound`.
    async fn pane(&self, id: &SessionId) -> Result<String> {
        let known = self
            .inner
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pane_of(id);
        if let Some(pane) = known {
            return Ok(pane);
        }
        self.refresh_ids().await?;
        self.inner
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pane_of(id)
            .ok_or_else(|| Error::SessionNotFound(id.to_string()))
    }

    /// Runs a command on an agent's pane, turning "pane is gone" into `SessionNotFound`.
    async fn on_pane(&self, id: &SessionId, args: &[&str]) -> Result<String> {
        self.tmux(args).await.map_err(|e| not_found_if_gone(id, e))
    }

    /// Runs `args` on an agent's pane after taking the pane out of copy-mode (or any other
    /// mode), so keys reach the program.
    async fn on_pane_out_of_mode(
        &self,
        id: &SessionId,
        pane: &str,
        args: &[&str],
    ) -> Result<String> {
        // Over the control client: a plain `cancel`, whose "not in a mode" error when the
        // pane is in none is expected and ignored (`if-shell` answers in two blocks).
        let cancel: &[&str] = &["send-keys", "-X", "-t", pane, "cancel"];
        let mut commands = vec![cancel];
        commands.extend(args.split(|a| *a == ";"));
        if let Some(replies) = self.inner.commands.send(&commands).await {
            let mut replies = replies?;
            let _not_in_a_mode = replies.remove(0);
            return joined(replies).map_err(|e| not_found_if_gone(id, e));
        }
        let mut argv = vec!["if-shell", "-F", "-t", pane, "#{pane_in_mode}"];
        let cancel_line = format!("send-keys -X -t {pane} cancel");
        argv.push(&cancel_line);
        argv.push(";");
        argv.extend_from_slice(args);
        self.on_pane(id, &argv).await
    }

    async fn paste(&self, id: &SessionId, pane: &str, text: &str) -> Result<()> {
        let buffer = format!("sm-{}", uuid_like());
        let file = self.inner.paste_dir.path().join(&buffer);
        write_private(&file, text.as_bytes())?;
        let file_arg = file.to_string_lossy().into_owned();
        let args = [
            "load-buffer",
            "-b",
            &buffer,
            &file_arg,
            ";",
            "paste-buffer",
            "-p",
            "-d",
            "-b",
            &buffer,
            "-t",
            pane,
        ];
        let result = self.on_pane_out_of_mode(id, pane, &args).await;
        let _ = std::fs::remove_file(&file);
        result.map(drop)
    }

    /// The pane's text as `capture-pane` gives it with `flags`. Over the control client the
    /// capture goes through a private file, never through the client's stream: a screen
    /// is agent-controlled text, and in the stream a line of it could pass for a reply
    /// guard.
    async fn capture(&self, id: &SessionId, pane: &str, flags: &[&str]) -> Result<String> {
        if self.inner.commands.connected() {
            let buffer = format!("sm-capture-{}", uuid_like());
            let file = self.inner.paste_dir.path().join(&buffer);
            let file_arg = file.to_string_lossy().into_owned();
            let mut capture = vec!["capture-pane", "-b", &buffer];
            capture.extend_from_slice(flags);
            capture.extend(["-t", pane]);
            let save: &[&str] = &["save-buffer", "-b", &buffer, &file_arg];
            let delete: &[&str] = &["delete-buffer", "-b", &buffer];
            if let Some(replies) = self.inner.commands.send(&[&capture, save, delete]).await {
                let replies = replies?;
                let read = match (&replies[0], &replies[1]) {
                    (Err(e), _) | (_, Err(e)) => Err(not_found_if_gone(
                        id,
                        TmuxFailure(e.trim().to_string()).into(),
                    )),
                    _ => std::fs::read(&file)
                        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                        .map_err(|e| Error::backend("cannot read a captured screen", e)),
                };
                let _ = std::fs::remove_file(&file);
                return read;
            }
        }
        let mut argv = vec!["capture-pane", "-p"];
        argv.extend_from_slice(flags);
        argv.extend(["-t", pane]);
        self.on_pane(id, &argv).await
    }
}

/// The output of commands run in sequence, or the first one's error.
fn joined(replies: Vec<control::Reply>) -> Result<String> {
    let mut out = String::new();
    for reply in replies {
        match reply {
            Ok(text) => out.push_str(&text),
            Err(e) => return Err(TmuxFailure(e.trim().to_string()).into()),
        }
    }
    Ok(out)
}

/// A tmux error that says the pane is gone, as `SessionNotFound`.
fn not_found_if_gone(id: &SessionId, e: Error) -> Error {
    match e {
        Error::Backend { message, .. }
            if message.contains("can't find") || message.contains("no server") =>
        {
            Error::SessionNotFound(id.to_string())
        }
        other => other,
    }
}

/// A tmux command failed; carries its stderr.
#[derive(Debug, thiserror::Error)]
#[error("tmux: {0}")]
struct TmuxFailure(String);

impl From<TmuxFailure> for Error {
    fn from(f: TmuxFailure) -> Error {
        Error::Backend {
            message: f.to_string(),
            source: None,
        }
    }
}

fn uuid_like() -> String {
    SessionId::new_random().to_string()
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::backend("cannot write a paste buffer", e))?;
    f.write_all(bytes)
        .map_err(|e| Error::backend("cannot write a paste buffer", e))
}

fn key_name(key: Key) -> &'static str {
    match key {
        Key::Enter => "Enter",
        Key::Escape => "Escape",
        Key::CtrlC => "C-c",
        Key::CtrlU => "C-u",
        Key::Tab => "Tab",
        Key::Backspace => "BSpace",
        Key::Up => "Up",
        Key::Down => "Down",
    }
}

/// Trims rows and drops trailing blank rows.
fn tidy(text: &str, keep_trailing_blank: bool) -> Vec<String> {
    let mut rows: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    if !keep_trailing_blank {
        while rows.last().is_some_and(String::is_empty) {
            rows.pop();
        }
    }
    rows
}

#[async_trait]
impl TerminalBackend for TmuxBackend {
    fn name(&self) -> &'static str {
        "tmux"
    }

    fn private_paths(&self) -> Vec<std::path::PathBuf> {
        // tmux keeps its sockets in $TMUX_TMPDIR (or /tmp)/tmux-<uid>: whoever can reach
        // the socket can type into, read and kill every agent.
        use std::os::unix::fs::MetadataExt;
        let base = std::env::var_os("TMUX_TMPDIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from("/tmp"));
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        vec![base.join(format!("tmux-{uid}"))]
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
        self.ensure_started().await?;
        if self.pane(&spec.id).await.is_ok() && self.is_alive(&spec.id).await? {
            return Err(Error::SessionExists(spec.id.clone()));
        }
        let cwd = spec.cwd.to_string_lossy().into_owned();
        let name = spec.id.to_string();
        let mut args: Vec<String> = [
            "new-window",
            "-d",
            "-t",
            &format!("={}:", self.inner.session),
            "-n",
            &name,
            "-c",
            &cwd,
            "-P",
            "-F",
            "#{window_id} #{pane_id}",
        ]
        .map(String::from)
        .to_vec();
        for (k, v) in &spec.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        // tmux hands a lone command argument to `sh -c`; with two or more it execs them
        // directly. Keep it an argv even without arguments.
        if spec.args.is_empty() {
            args.extend(["env".into(), "--".into(), spec.program.clone()]);
        } else {
            args.push(spec.program.clone());
            args.extend(spec.args.iter().cloned());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.tmux(&argv).await?;
        let mut parts = out.split_whitespace();
        let (Some(window), Some(pane)) = (parts.next(), parts.next()) else {
            return Err(Error::backend_msg(format!(
                "unexpected reply from tmux new-window: {out:?}"
            )));
        };
        let already_closed = self
            .inner
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.id.clone(), window.to_string(), pane.to_string());
        if already_closed {
            let _ = self.inner.events.send(BackendEvent::Exited {
                id: spec.id.clone(),
                status: None,
            });
            return Ok(());
        }
        let cols = spec.cols.to_string();
        let rows = spec.rows.to_string();
        // `resize-window` also pins the window's size (window-size manual for this window), so
        // neither the control client nor a human attaching later changes it. (Setting
        // window-size manual globally crashes tmux 3.3a on the next new-window.)
        // The window may already be gone if the program exited at once; that is reported
        // through events like any other exit.
        let _ = self
            .tmux(&["resize-window", "-t", window, "-x", &cols, "-y", &rows])
            .await;
        Ok(())
    }

    async fn send_text(&self, id: &SessionId, text: &str) -> Result<()> {
        let pane = self.pane(id).await?;
        if text.is_empty() {
            return Ok(());
        }
        // `send-keys` arguments ending in ';' or made of braces would be parsed by tmux as
        // command syntax; such text goes through a paste buffer, which tmux never parses.
        let needs_paste = text.contains('\n')
            || text.len() > PASTE_THRESHOLD
            || text.ends_with(';')
            || text.contains('{')
            || text.contains('}');
        if needs_paste {
            return self.paste(id, &pane, text).await;
        }
        self.on_pane_out_of_mode(id, &pane, &["send-keys", "-t", &pane, "-l", "--", text])
            .await
            .map(drop)
    }

    async fn send_key(&self, id: &SessionId, key: Key) -> Result<()> {
        let pane = self.pane(id).await?;
        self.on_pane_out_of_mode(id, &pane, &["send-keys", "-t", &pane, key_name(key)])
            .await
            .map(drop)
    }

    async fn capture_screen(&self, id: &SessionId) -> Result<Vec<String>> {
        let pane = self.pane(id).await?;
        let text = self.capture(id, &pane, &[]).await?;
        Ok(tidy(&text, true))
    }

    async fn capture_styled(&self, id: &SessionId) -> Result<Vec<String>> {
        let pane = self.pane(id).await?;
        let text = self.capture(id, &pane, &["-e"]).await?;
        Ok(tidy(&text, true))
    }

    async fn capture_tail(&self, id: &SessionId, lines: usize) -> Result<Vec<String>> {
        let pane = self.pane(id).await?;
        let start = format!("-{lines}");
        let text = self.capture(id, &pane, &["-J", "-S", &start]).await?;
        let mut rows = tidy(&text, false);
        let skip = rows.len().saturating_sub(lines);
        rows.drain(..skip);
        Ok(rows)
    }

    async fn is_alive(&self, id: &SessionId) -> Result<bool> {
        // Not `display-message -t`: it falls back to the current window when the target
        // does not exist.
        Ok(self.refresh_ids().await?.contains(id))
    }

    async fn kill(&self, id: &SessionId) -> Result<()> {
        let target = format!("={}:={}", self.inner.session, id);
        match self.tmux(&["kill-window", "-t", &target]).await {
            Ok(_) => {}
            Err(Error::Backend { message, .. })
                if message.contains("can't find")
                    || message.contains("no server")
                    || message.contains("error connecting")
                    || message.contains("No such file") => {}
            Err(e) => return Err(e),
        }
        // The mapping goes when the control client sees the window close, so the exit
        // event still names this agent.
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SessionId>> {
        self.refresh_ids().await
    }

    fn capabilities(&self) -> sm_lib::Capabilities {
        // tmux reports a closed window, not the status its program exited with.
        sm_lib::Capabilities {
            exit_status: false,
            attach: true,
            runs_programs: true,
        }
    }

    fn attach_command(&self, id: &SessionId) -> Option<Vec<String>> {
        Some(vec![
            "tmux".into(),
            "-L".into(),
            self.inner.socket.clone(),
            "attach-session".into(),
            "-t".into(),
            format!("={}:={}", self.inner.session, id),
        ])
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_across_distributions() {
        let v = |s| TmuxVersion::parse(s).map(|v| (v.major, v.minor));
        assert_eq!(v("tmux 3.3a\n"), Some((3, 3)));
        assert_eq!(v("tmux 3.4"), Some((3, 4)));
        assert_eq!(v("tmux next-3.5"), Some((3, 5)));
        assert_eq!(v("tmux 2.9a"), Some((2, 9)));
        assert_eq!(v("tmux master"), Some((u32::MAX, 0)));
        assert_eq!(v("garbage"), None);
    }
}
