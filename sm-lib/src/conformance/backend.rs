//! The [`TerminalBackend`] conformance suite.
//!
//! The cases start real programs (`sh`, `stty`, `cat`) in the backend's terminals and check
//! what reaches the program byte for byte, or what the screen shows — never only that a call
//! returned `Ok`. Run it with [`crate::terminal_backend_conformance!`], giving an async
//! factory that returns a fresh backend and a guard that cleans it up when dropped.
//!
//! The suite holds a backend to its [`crate::Capabilities`]. A backend whose terminals are
//! simulated ([`crate::Capabilities::runs_programs`] is `false`, like
//! [`crate::MemoryBackend`]) cannot run `sh`; it passes the cases any terminal must pass —
//! identity, lifecycle, errors, typed text on screen, output events — and the byte-level
//! cases say they were skipped. Backends that run programs assert their capabilities in their
//! own tests, so one cannot skip cases by declaring less than it does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::backend::{BackendEvent, Key, SpawnSpec, TerminalBackend};
use crate::error::Error;
use crate::types::SessionId;

/// Generates one `#[tokio::test]` per conformance case, each on a fresh backend.
#[macro_export]
macro_rules! terminal_backend_conformance {
    ($make:path) => {
        $crate::terminal_backend_conformance!(@cases $make;
            runs_the_program_with_args_env_and_cwd,
            literal_text_arrives_byte_exact,
            multi_line_and_long_text_arrive_whole,
            bracketed_paste_only_when_the_program_asks_for_it,
            keys_arrive_as_terminal_bytes,
            ctrl_c_interrupts_the_foreground_program,
            capture_screen_shows_the_visible_rows,
            a_styled_capture_is_the_same_text_with_its_colours,
            capture_tail_reaches_into_scrollback,
            exit_is_reported_and_the_terminal_is_no_longer_alive,
            kill_ends_the_program_and_is_idempotent,
            list_shows_exactly_the_live_terminals,
            a_duplicate_id_is_refused,
            bad_working_dir_and_missing_program_are_clear_errors,
            output_is_reported_as_activity_events,
            unknown_terminals_are_not_found,
            attach_is_offered_exactly_when_declared,
            typed_text_shows_on_the_screen_of_an_echoing_program,
            echoed_input_is_announced_as_output_of_its_terminal,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (backend, _guard) = $make().await;
                $crate::conformance::backend::$case(backend).await;
            }
        )*
    };
}

type Backend = Arc<dyn TerminalBackend>;

/// How long any single expectation may take before the case fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `check` until it returns `Some`, failing the case after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn screen_text(backend: &Backend, id: &SessionId) -> String {
    backend
        .capture_screen(id)
        .await
        .map(|rows| rows.join("\n"))
        .unwrap_or_default()
}

async fn wait_for_screen(backend: &Backend, id: &SessionId, needle: &str) -> String {
    eventually(&format!("{needle:?} on screen"), || async {
        let text = screen_text(backend, id).await;
        text.contains(needle).then_some(text)
    })
    .await
}

async fn wait_for_file(path: &Path, expected: &[u8]) {
    let got = eventually(
        &format!("{} to hold the sent bytes", path.display()),
        || async {
            let got = std::fs::read(path).unwrap_or_default();
            (got.len() >= expected.len()).then_some(got)
        },
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected),
        "bytes received by the program differ"
    );
    assert_eq!(got, expected);
}

async fn wait_event(
    rx: &mut broadcast::Receiver<BackendEvent>,
    what: &str,
    mut wanted: impl FnMut(&BackendEvent) -> bool,
) -> BackendEvent {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => panic!("timed out waiting for {what}"),
            Ok(Ok(event)) if wanted(&event) => return event,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("event stream closed"),
        }
    }
}

/// Whether the backend runs real programs, which the byte-level cases need; says so when a
/// case is skipped for a simulated backend.
fn runs_programs(backend: &Backend, case: &str) -> bool {
    let runs = backend.capabilities().runs_programs;
    if !runs {
        eprintln!("{case}: skipped, {} runs no real programs", backend.name());
    }
    runs
}

fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn sh(id: &SessionId, cwd: &Path, script: &str, args: &[&str]) -> SpawnSpec {
    let mut spec = SpawnSpec::new(id.clone(), "sh", cwd);
    spec.args = vec!["-c".into(), script.into(), "sh".into()];
    spec.args.extend(args.iter().map(|a| a.to_string()));
    spec.cols = 120;
    spec.rows = 30;
    spec
}

/// Starts a program that puts its terminal in raw mode (optionally asks for bracketed
/// paste), shows READY and records every byte it receives into `<dir>/received`.
async fn start_recorder(backend: &Backend, dir: &Path, bracketed: bool) -> (SessionId, PathBuf) {
    let id = SessionId::new_random();
    let out = dir.join("received");
    let enable = if bracketed { "\\033[?2004h" } else { "" };
    let script = format!("stty raw -echo; printf '{enable}READY'; exec cat > \"$1\"");
    backend
        .create(&sh(&id, dir, &script, &[out.to_str().expect("utf-8 path")]))
        .await
        .expect("create recorder");
    wait_for_screen(backend, &id, "READY").await;
    (id, out)
}

/// The program gets its argv (no shell re-parsing), its extra environment and its cwd.
pub async fn runs_the_program_with_args_env_and_cwd(backend: Backend) {
    if !runs_programs(&backend, "runs_the_program_with_args_env_and_cwd") {
        return;
    }
    let dir = workdir();
    let cwd = dir.path().canonicalize().expect("canonical");
    let id = SessionId::new_random();
    let mut spec = sh(
        &id,
        &cwd,
        "printf '[%s|%s|%s]\\n' \"$1\" \"$SM_CONFORMANCE\" \"$(pwd -P)\"; exec cat",
        &["one arg; $HOME `x` *"],
    );
    spec.env
        .insert("SM_CONFORMANCE".into(), "value with spaces ✓".into());
    backend.create(&spec).await.expect("create");
    let expected = format!(
        "[one arg; $HOME `x` *|value with spaces ✓|{}]",
        cwd.display()
    );
    wait_for_screen(&backend, &id, &expected).await;
    assert!(backend.is_alive(&id).await.expect("is_alive"));
    backend.kill(&id).await.expect("kill");
}

/// Short single-line text of every kind reaches the program exactly as sent.
pub async fn literal_text_arrives_byte_exact(backend: Backend) {
    if !runs_programs(&backend, "literal_text_arrives_byte_exact") {
        return;
    }
    let dir = workdir();
    let (id, out) = start_recorder(&backend, dir.path(), false).await;
    let pieces = [
        "plain ascii ",
        "ünïcødé ✓ 日本語 🚀👍🏽 ",
        "tab\there ",
        "$HOME `whoami` \"dq\" 'sq' \\ ",
        "-starts-with-dash ",
        "Enter C-c Escape ",
        "#{pane_id} ",
        "ends with semicolon;",
        ";",
        " {braces} ",
    ];
    for p in pieces {
        backend.send_text(&id, p).await.expect("send_text");
    }
    wait_for_file(&out, pieces.concat().as_bytes()).await;
    backend.kill(&id).await.expect("kill");
}

/// Multi-line text arrives whole, newlines as carriage returns (as a terminal sends them);
/// 10 KB of text arrives complete and in order.
pub async fn multi_line_and_long_text_arrive_whole(backend: Backend) {
    if !runs_programs(&backend, "multi_line_and_long_text_arrive_whole") {
        return;
    }
    let dir = workdir();
    let (id, out) = start_recorder(&backend, dir.path(), false).await;
    let multi = "first line\nsecond line\n\nfourth ✓";
    backend
        .send_text(&id, multi)
        .await
        .expect("send multi-line");
    let long: String = (0..10_240)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    backend.send_text(&id, &long).await.expect("send long");
    let expected = format!("{}{}", multi.replace('\n', "\r"), long);
    wait_for_file(&out, expected.as_bytes()).await;
    backend.kill(&id).await.expect("kill");
}

/// When the program enabled bracketed paste, multi-line text arrives as one bracketed
/// paste; short single lines are typed, not pasted.
pub async fn bracketed_paste_only_when_the_program_asks_for_it(backend: Backend) {
    if !runs_programs(
        &backend,
        "bracketed_paste_only_when_the_program_asks_for_it",
    ) {
        return;
    }
    let dir = workdir();
    let (id, out) = start_recorder(&backend, dir.path(), true).await;
    backend.send_text(&id, "typed").await.expect("send line");
    backend
        .send_text(&id, "pasted\ntwo lines")
        .await
        .expect("send multi-line");
    wait_for_file(&out, b"typed\x1b[200~pasted\rtwo lines\x1b[201~").await;
    backend.kill(&id).await.expect("kill");
}

/// Keys arrive as the bytes a terminal sends for them.
pub async fn keys_arrive_as_terminal_bytes(backend: Backend) {
    if !runs_programs(&backend, "keys_arrive_as_terminal_bytes") {
        return;
    }
    let dir = workdir();
    let (id, out) = start_recorder(&backend, dir.path(), false).await;
    let keys = [
        Key::Enter,
        Key::Tab,
        Key::CtrlC,
        Key::CtrlU,
        Key::Backspace,
        Key::Up,
        Key::Down,
        Key::Escape,
    ];
    let mut expected = Vec::new();
    for k in keys {
        backend.send_key(&id, k).await.expect("send_key");
        expected.extend_from_slice(k.bytes());
    }
    wait_for_file(&out, &expected).await;
    backend.kill(&id).await.expect("kill");
}

/// Ctrl-C reaches the foreground program as an interrupt (the terminal's line discipline
/// turns it into SIGINT), like a user pressing it.
pub async fn ctrl_c_interrupts_the_foreground_program(backend: Backend) {
    if !runs_programs(&backend, "ctrl_c_interrupts_the_foreground_program") {
        return;
    }
    let dir = workdir();
    let id = SessionId::new_random();
    let mut events = backend.events();
    let script = "trap 'echo INTERRUPTED; sleep 60' INT; echo WAITING; sleep 60 & wait";
    backend
        .create(&sh(&id, dir.path(), script, &[]))
        .await
        .expect("create");
    wait_for_screen(&backend, &id, "WAITING").await;
    backend.send_key(&id, Key::CtrlC).await.expect("ctrl-c");
    wait_for_screen(&backend, &id, "INTERRUPTED").await;
    backend.kill(&id).await.expect("kill");
    wait_event(
        &mut events,
        "exit after kill",
        |e| matches!(e, BackendEvent::Exited { id: x, .. } if x == &id),
    )
    .await;
}

/// The visible screen has one entry per row, showing what the program printed.
pub async fn capture_screen_shows_the_visible_rows(backend: Backend) {
    if !runs_programs(&backend, "capture_screen_shows_the_visible_rows") {
        return;
    }
    let dir = workdir();
    let id = SessionId::new_random();
    let spec = sh(
        &id,
        dir.path(),
        "printf 'row one\\nrow two ✓\\n   indented\\n'; exec cat",
        &[],
    );
    let rows = usize::from(spec.rows);
    backend.create(&spec).await.expect("create");
    wait_for_screen(&backend, &id, "indented").await;
    let screen = backend.capture_screen(&id).await.expect("capture");
    assert_eq!(screen.len(), rows, "one entry per row: {screen:?}");
    assert_eq!(&screen[..3], ["row one", "row two ✓", "   indented"]);
    assert!(screen.iter().all(|r| !r.ends_with(' ')), "rows are trimmed");
    backend.kill(&id).await.expect("kill");
}

/// The styled screen is the plain screen's text with SGR sequences around it, and keeps
/// a program's colours.
pub async fn a_styled_capture_is_the_same_text_with_its_colours(backend: Backend) {
    if !runs_programs(
        &backend,
        "a_styled_capture_is_the_same_text_with_its_colours",
    ) {
        return;
    }
    let dir = workdir();
    let id = SessionId::new_random();
    let spec = sh(
        &id,
        dir.path(),
        "printf '\\033[31mred\\033[0m plain \\033[1;38;5;208mhot\\033[0m\\ndone\\n'; exec cat",
        &[],
    );
    backend.create(&spec).await.expect("create");
    wait_for_screen(&backend, &id, "done").await;
    let plain = backend.capture_screen(&id).await.expect("capture");
    let styled = backend.capture_styled(&id).await.expect("capture styled");
    let kept: Vec<String> = styled
        .iter()
        .map(|r| crate::engine::sanitize::keep_sgr(r))
        .collect();
    let text: Vec<String> = kept
        .iter()
        .map(|r| {
            crate::engine::sanitize::strip_controls(r)
                .trim_end()
                .to_string()
        })
        .collect();
    assert_eq!(text, plain, "the same text: {styled:?}");
    assert_eq!(plain[0], "red plain hot");
    assert!(
        kept[0].contains('\u{1b}') && kept[0].contains("31") && kept[0].contains("208"),
        "the colours are kept: {:?}",
        kept[0]
    );
    backend.kill(&id).await.expect("kill");
}

/// The tail reaches lines that scrolled off the screen, oldest first.
pub async fn capture_tail_reaches_into_scrollback(backend: Backend) {
    if !runs_programs(&backend, "capture_tail_reaches_into_scrollback") {
        return;
    }
    let dir = workdir();
    let id = SessionId::new_random();
    let script = "i=1; while [ $i -le 300 ]; do echo \"line $i\"; i=$((i+1)); done; exec cat";
    backend
        .create(&sh(&id, dir.path(), script, &[]))
        .await
        .expect("create");
    wait_for_screen(&backend, &id, "line 300").await;
    let tail = backend.capture_tail(&id, 120).await.expect("tail");
    let expected: Vec<String> = (181..=300).map(|i| format!("line {i}")).collect();
    assert_eq!(tail, expected);
    backend.kill(&id).await.expect("kill");
}

/// A program that exits is reported — with its status when the backend declares
/// [`crate::Capabilities::exit_status`], without one when it does not — and its terminal is
/// no longer alive.
pub async fn exit_is_reported_and_the_terminal_is_no_longer_alive(backend: Backend) {
    if !runs_programs(
        &backend,
        "exit_is_reported_and_the_terminal_is_no_longer_alive",
    ) {
        return;
    }
    let dir = workdir();
    let id = SessionId::new_random();
    let mut events = backend.events();
    backend
        .create(&sh(&id, dir.path(), "read line; exit 3", &[]))
        .await
        .expect("create");
    assert!(backend.is_alive(&id).await.expect("is_alive"));
    backend.send_text(&id, "go").await.expect("send");
    backend.send_key(&id, Key::Enter).await.expect("enter");
    let event = wait_event(
        &mut events,
        "the exit event",
        |e| matches!(e, BackendEvent::Exited { id: x, .. } if x == &id),
    )
    .await;
    let BackendEvent::Exited { status, .. } = event else {
        unreachable!("wait_event matched an exit");
    };
    if backend.capabilities().exit_status {
        assert_eq!(
            status,
            Some(3),
            "exit status (the backend declares it reports one)"
        );
    } else {
        assert_eq!(
            status, None,
            "a status from a backend that declares it has none"
        );
    }
    eventually("is_alive to turn false", || async {
        (!backend.is_alive(&id).await.expect("is_alive")).then_some(())
    })
    .await;
    assert!(!backend.list().await.expect("list").contains(&id));
}

/// A backend that declares [`crate::Capabilities::attach`] gives every live terminal an
/// argv whose program can run; one that does not gives none.
pub async fn attach_is_offered_exactly_when_declared(backend: Backend) {
    let dir = workdir();
    let id = SessionId::new_random();
    backend
        .create(&sh(&id, dir.path(), "read line", &[]))
        .await
        .expect("create");
    let argv = backend.attach_command(&id);
    if backend.capabilities().attach {
        let argv = argv.expect("an attach command (the backend declares it can attach)");
        let program = argv.first().expect("a program in the attach command");
        assert!(
            crate::backend::missing_program(program, &Default::default()).is_none(),
            "the attach command's program {program:?} cannot run"
        );
    } else {
        assert_eq!(
            argv, None,
            "an attach command from a backend that declares none"
        );
    }
    backend.kill(&id).await.expect("kill");
}

/// Kill ends the terminal — and its program, reaped, when it runs real programs — reports
/// the exit, and may be repeated.
pub async fn kill_ends_the_program_and_is_idempotent(backend: Backend) {
    let dir = workdir();
    let pid_file = dir.path().join("pid");
    let id = SessionId::new_random();
    let mut events = backend.events();
    backend
        .create(&sh(
            &id,
            dir.path(),
            "echo $$ > \"$1\"; echo STARTED; exec cat",
            &[pid_file.to_str().expect("utf-8")],
        ))
        .await
        .expect("create");
    let pid: Option<u32> = if backend.capabilities().runs_programs {
        wait_for_screen(&backend, &id, "STARTED").await;
        let pid = std::fs::read_to_string(&pid_file).expect("pid file");
        Some(pid.trim().parse().expect("pid"))
    } else {
        None
    };
    assert!(backend.is_alive(&id).await.expect("is_alive"));
    backend.kill(&id).await.expect("kill");
    assert!(!backend.is_alive(&id).await.expect("is_alive"));
    wait_event(
        &mut events,
        "the exit event of the killed terminal",
        |e| matches!(e, BackendEvent::Exited { id: x, .. } if x == &id),
    )
    .await;
    if let Some(pid) = pid {
        eventually("the killed program to be gone (reaped)", || async {
            (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        })
        .await;
    }
    backend.kill(&id).await.expect("kill again");
    assert!(!backend.list().await.expect("list").contains(&id));
    backend
        .kill(&SessionId::new_random())
        .await
        .expect("kill unknown");
}

/// `list` returns the live terminals this backend made, and forgets killed ones.
pub async fn list_shows_exactly_the_live_terminals(backend: Backend) {
    let dir = workdir();
    let a = SessionId::new_random();
    let b = SessionId::new_random();
    for id in [&a, &b] {
        backend
            .create(&sh(id, dir.path(), "exec cat", &[]))
            .await
            .expect("create");
    }
    let mut listed = backend.list().await.expect("list");
    listed.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    backend.kill(&a).await.expect("kill");
    assert_eq!(backend.list().await.expect("list"), vec![b.clone()]);
    backend.kill(&b).await.expect("kill");
}

/// Two live terminals never share an id.
pub async fn a_duplicate_id_is_refused(backend: Backend) {
    let dir = workdir();
    let id = SessionId::new_random();
    let spec = sh(&id, dir.path(), "exec cat", &[]);
    backend.create(&spec).await.expect("create");
    let err = backend.create(&spec).await.expect_err("duplicate");
    assert!(matches!(err, Error::SessionExists(_)), "{err:?}");
    backend.kill(&id).await.expect("kill");
}

/// A missing working directory or program is refused with a clear error, leaving nothing.
pub async fn bad_working_dir_and_missing_program_are_clear_errors(backend: Backend) {
    let dir = workdir();
    let id = SessionId::new_random();
    let spec = sh(&id, &dir.path().join("missing"), "exec cat", &[]);
    let err = backend.create(&spec).await.expect_err("missing cwd");
    assert!(matches!(err, Error::InvalidWorkingDir { .. }), "{err:?}");
    assert!(!backend.list().await.expect("list").contains(&id));
    if !runs_programs(
        &backend,
        "bad_working_dir_and_missing_program_are_clear_errors",
    ) {
        return;
    }
    let mut spec = SpawnSpec::new(id.clone(), "sm-no-such-program-xyz", dir.path());
    spec.args = vec!["arg".into()];
    let err = backend.create(&spec).await.expect_err("missing program");
    assert!(
        err.to_string().contains("sm-no-such-program-xyz"),
        "the error names the program: {err}"
    );
    assert!(!backend.list().await.expect("list").contains(&id));
}

/// Output from a program is announced as an activity event for its terminal.
pub async fn output_is_reported_as_activity_events(backend: Backend) {
    if !runs_programs(&backend, "output_is_reported_as_activity_events") {
        return;
    }
    let dir = workdir();
    let (id, _out) = start_recorder(&backend, dir.path(), false).await;
    let other = SessionId::new_random();
    backend
        .create(&sh(
            &other,
            dir.path(),
            "stty -echo; echo READY; while read l; do echo \"got $l\"; done",
            &[],
        ))
        .await
        .expect("create");
    wait_for_screen(&backend, &other, "READY").await;
    let mut events = backend.events();
    backend.send_text(&other, "ping").await.expect("send");
    backend.send_key(&other, Key::Enter).await.expect("enter");
    let mut seen = Vec::new();
    wait_event(
        &mut events,
        "an output event for the echoing program",
        |e| {
            seen.push(e.clone());
            e == &BackendEvent::Output(other.clone())
        },
    )
    .await;
    wait_for_screen(&backend, &other, "got ping").await;
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    // The recorder printed nothing meanwhile: no event may name it.
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, BackendEvent::Output(x) if x == &id)),
        "an output event for a terminal that printed nothing: {seen:?}"
    );
    backend.kill(&id).await.expect("kill");
    backend.kill(&other).await.expect("kill");
}

/// Operations on an unknown terminal say so; `is_alive` is simply false.
pub async fn unknown_terminals_are_not_found(backend: Backend) {
    let id = SessionId::new_random();
    assert!(!backend.is_alive(&id).await.expect("is_alive"));
    for err in [
        backend.send_text(&id, "x").await.expect_err("send_text"),
        backend
            .send_key(&id, Key::Enter)
            .await
            .expect_err("send_key"),
        backend.capture_screen(&id).await.expect_err("capture"),
        backend.capture_tail(&id, 5).await.expect_err("tail"),
    ] {
        assert!(matches!(err, Error::SessionNotFound(_)), "{err:?}");
    }
}

/// Text typed into a terminal whose program echoes its input shows on the screen, whole.
pub async fn typed_text_shows_on_the_screen_of_an_echoing_program(backend: Backend) {
    let dir = workdir();
    let id = SessionId::new_random();
    backend
        .create(&sh(&id, dir.path(), "exec cat", &[]))
        .await
        .expect("create");
    let text = "typed on screen: ünïcødé ✓ $HOME `x` #{pane_id};";
    backend.send_text(&id, text).await.expect("send_text");
    wait_for_screen(&backend, &id, text).await;
    backend.kill(&id).await.expect("kill");
}

/// Typing into a terminal whose program echoes is announced as output of that terminal.
pub async fn echoed_input_is_announced_as_output_of_its_terminal(backend: Backend) {
    let dir = workdir();
    let id = SessionId::new_random();
    backend
        .create(&sh(&id, dir.path(), "exec cat", &[]))
        .await
        .expect("create");
    let mut events = backend.events();
    backend.send_text(&id, "ping").await.expect("send_text");
    wait_event(
        &mut events,
        "an output event for the typed-in terminal",
        |e| e == &BackendEvent::Output(id.clone()),
    )
    .await;
    wait_for_screen(&backend, &id, "ping").await;
    backend.kill(&id).await.expect("kill");
}
