//! Whole frames of `sm watch`, rendered on ratatui's test backend from a fixed model and
//! compared with the snapshot files beside this one (`SM_UPDATE_SNAPSHOTS=1` rewrites
//! them), and the keys' effects on the model.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use sm_lib::wire::SessionView;
use sm_lib::{AgentKind, Event, EventKind, Lock, LockKind, SessionId, SessionStatus, Timestamp};

use super::model::{App, Input, Link};
use super::{Action, Job, frame_text, on_key};

const NOW: i64 = 1_800_000_000_000;

fn id(n: u8) -> SessionId {
    format!("{n:08x}-0000-4000-8000-000000000000")
        .parse()
        .unwrap()
}

fn session(
    n: u8,
    name: &str,
    parent: Option<u8>,
    agent: AgentKind,
    status: SessionStatus,
    secs_in_status: i64,
) -> SessionView {
    let mut s = sm_lib::Session::new(id(n), agent, PathBuf::from("/work/repo"));
    s.name = Some(name.parse().unwrap());
    s.parent = parent.map(id);
    s.status = status;
    s.created_at = Timestamp(NOW - 3_600_000 + i64::from(n) * 1000);
    s.status_changed_at = Timestamp(NOW - secs_in_status * 1000);
    SessionView {
        session: s,
        attach: Some(vec!["tmux".into(), "attach".into()]),
        queued: 0,
        unreachable: false,
    }
}

/// An EM with three workers (one asking a question, one with a child), a lone agent, and
/// a dead one.
fn swarm(color: bool) -> App {
    let mut app = App::new("http://127.0.0.1:8420", color);
    app.now = NOW;
    app.link = Link::Live;
    let mut em = session(1, "em", None, AgentKind::Claude, SessionStatus::Idle, 75);
    em.session.task = Some("ship the parser".into());
    let mut w1 = session(
        2,
        "parser",
        Some(1),
        AgentKind::Claude,
        SessionStatus::Working,
        12,
    );
    w1.session.task = Some("write the lexer".into());
    w1.queued = 2;
    let w2 = session(
        3,
        "tests",
        Some(1),
        AgentKind::Codex,
        SessionStatus::NeedsInput,
        40,
    );
    let w3 = session(
        4,
        "docs",
        Some(1),
        AgentKind::Claude,
        SessionStatus::Working,
        7200,
    );
    let kid = session(
        5,
        "docs-helper",
        Some(4),
        AgentKind::Fake,
        SessionStatus::Starting,
        2,
    );
    let lone = session(
        6,
        "solo",
        None,
        AgentKind::Shell,
        SessionStatus::Idle,
        3 * 86400,
    );
    let mut dead = session(
        7,
        "crashed",
        None,
        AgentKind::Claude,
        SessionStatus::Dead,
        30,
    );
    dead.session.end_reason = Some("the agent exited with status 1".into());
    let lock = Lock {
        workspace: sm_lib::Workspace("/work/repo".into()),
        holder: id(2),
        reason: "editing src/lexer.rs".into(),
        kind: LockKind::Auto,
        acquired_at: Timestamp(NOW - 5000),
    };
    app.set_sessions(vec![em, w1, w2, w3, kid, lone, dead], vec![lock]);
    app.questions
        .insert(id(3), "Would you like to run the following command?".into());
    app.screen = Some((
        id(1),
        vec![
            "❯ plan the parser work".into(),
            "● I split it into lexer, tests and docs.".into(),
            String::new(),
        ],
    ));
    app.apply(Event {
        id: sm_lib::EventId(1),
        at: Timestamp(NOW - 60_000),
        session: Some(id(1)),
        kind: EventKind::MessageDelivered {
            message: sm_lib::MessageId(7),
        },
    });
    app.apply(Event {
        id: sm_lib::EventId(2),
        at: Timestamp(NOW - 50_000),
        session: Some(id(1)),
        kind: EventKind::TurnCompleted {
            last_message: Some("I split it into lexer, tests and docs.".into()),
        },
    });
    app
}

fn snapshot(name: &str, frame: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/commands/watch/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("SM_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, frame).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with SM_UPDATE_SNAPSHOTS=1 to write it:\n{frame}",
            path.display()
        )
    });
    assert_eq!(
        frame,
        want,
        "frame differs from {} (SM_UPDATE_SNAPSHOTS=1 rewrites it):\n{frame}",
        path.display()
    );
}

#[test]
fn the_tree_with_statuses_times_queues_and_locks() {
    let app = swarm(true);
    let frame = frame_text(&app, 140, 24);
    snapshot("tree_wide", &frame);
    // Children under their parent, indented; the dead session hidden.
    let em = frame.find("▾ em").unwrap();
    let parser = frame.find("  parser").unwrap();
    let helper = frame.find("    docs-helper").unwrap();
    assert!(em < parser && parser < helper, "{frame}");
    assert!(!frame.contains("crashed"));
    assert!(frame.contains("6 live · 2 working · 1 need input · 2 queued · 1 lock"));
}

#[test]
fn a_question_is_shown_with_how_to_answer_it() {
    let mut app = swarm(true);
    app.selected = Some(id(3));
    app.screen = Some((
        id(3),
        vec![
            "Would you like to run the following command?".into(),
            "  $ touch made.txt".into(),
            "› 1. Yes, proceed".into(),
            "  2. No".into(),
        ],
    ));
    let frame = frame_text(&app, 140, 24);
    snapshot("question", &frame);
    assert!(frame.contains("? Would you like to run the following command? (a: answer)"));
}

#[test]
fn a_narrow_terminal_stacks_the_panes_and_a_tiny_one_says_so() {
    let app = swarm(true);
    snapshot("narrow", &frame_text(&app, 80, 30));
    let tiny = frame_text(&app, 30, 8);
    assert!(tiny.contains("needs a terminal of"), "{tiny}");
}

#[test]
fn without_color_every_status_keeps_its_symbol_and_word() {
    let app = swarm(false);
    let frame = frame_text(&app, 140, 24);
    snapshot("no_color", &frame);
    for look in ["○ idle", "● working", "? needs input", "… starting"] {
        assert!(frame.contains(look), "{look} missing:\n{frame}");
    }
    // And no colour at all in the buffer.
    let backend = ratatui::backend::TestBackend::new(140, 24);
    let mut terminal = ratatui::Terminal::new(backend).unwrap();
    terminal.draw(|f| super::render::draw(f, &app)).unwrap();
    let coloured = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .any(|c| c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset);
    assert!(!coloured, "NO_COLOR frames use no colour");
}

#[test]
fn hostile_names_tasks_and_screens_cannot_reach_the_terminal() {
    let mut app = swarm(false);
    app.sessions[0].session.task = Some("\u{1b}[2J\u{1b}]0;pwned\u{7}".into());
    app.screen = Some((id(1), vec!["\u{1b}[31mred\u{1b}[0m".into()]));
    let frame = frame_text(&app, 140, 24);
    assert!(!frame.contains('\u{1b}'), "{frame}");
    assert!(frame.contains("?[31mred?[0m"), "{frame}");
}

#[test]
fn redrawing_two_hundred_sessions_is_quick_enough_to_measure() {
    // The figure is in the README's benchmarks; here only that it renders them all.
    let mut app = swarm(true);
    let mut many = Vec::new();
    for n in 10..210u8.saturating_add(0) {
        many.push(session(
            n,
            &format!("w{n}"),
            Some(1),
            AgentKind::Claude,
            SessionStatus::Idle,
            5,
        ));
    }
    let mut all = app.sessions.clone();
    all.extend(many);
    app.set_sessions(all, app.locks.clone());
    assert!(app.rows().len() >= 200);
    let frame = frame_text(&app, 160, 50);
    assert!(frame.contains("w10"));
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn keys_move_filter_collapse_and_act_on_the_selected_session() {
    let mut app = swarm(true);
    assert_eq!(app.selected, Some(id(1)));
    on_key(&mut app, key(KeyCode::Char('j')));
    assert_eq!(app.selected, Some(id(2)));
    on_key(&mut app, key(KeyCode::Up));
    // Collapsing the EM hides its subtree.
    on_key(&mut app, key(KeyCode::Char(' ')));
    assert_eq!(app.rows().len(), 2);
    on_key(&mut app, key(KeyCode::Char(' ')));
    assert_eq!(app.rows().len(), 6);
    // A filter narrows the list and moves the selection into it.
    on_key(&mut app, key(KeyCode::Char('/')));
    for c in "tests".chars() {
        on_key(&mut app, key(KeyCode::Char(c)));
    }
    assert_eq!(on_key(&mut app, key(KeyCode::Enter)), Action::Redraw);
    assert_eq!(app.rows().len(), 1);
    assert_eq!(app.selected, Some(id(3)));
    // Answer: a then the option's number.
    on_key(&mut app, key(KeyCode::Char('a')));
    assert_eq!(app.input, Input::Answer);
    assert_eq!(
        on_key(&mut app, key(KeyCode::Char('1'))),
        Action::Run(Job::Answer {
            target: id(3).to_string(),
            option: 1
        })
    );
    // Send with the mode cycled to urgent.
    on_key(&mut app, key(KeyCode::Char('s')));
    for c in "stop".chars() {
        on_key(&mut app, key(KeyCode::Char(c)));
    }
    on_key(&mut app, key(KeyCode::Tab));
    on_key(&mut app, key(KeyCode::Tab));
    assert_eq!(
        on_key(&mut app, key(KeyCode::Enter)),
        Action::Run(Job::Send {
            target: id(3).to_string(),
            text: "stop".into(),
            mode: "urgent"
        })
    );
    // Kill asks first, naming the session; anything but y keeps it.
    on_key(&mut app, key(KeyCode::Char('K')));
    assert_eq!(app.input, Input::ConfirmKill(id(3)));
    assert!(frame_text(&app, 140, 24).contains("kill tests [00000003"));
    assert_eq!(on_key(&mut app, key(KeyCode::Char('n'))), Action::Redraw);
    on_key(&mut app, key(KeyCode::Char('K')));
    assert_eq!(
        on_key(&mut app, key(KeyCode::Char('y'))),
        Action::Run(Job::Kill(id(3).to_string()))
    );
    // Enter attaches with the session's attach command.
    assert_eq!(
        on_key(&mut app, key(KeyCode::Enter)),
        Action::Attach(vec!["tmux".into(), "attach".into()])
    );
    assert_eq!(on_key(&mut app, key(KeyCode::Char('q'))), Action::Quit);
    assert_eq!(
        on_key(
            &mut app,
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
        ),
        Action::Quit
    );
}

#[test]
fn events_update_statuses_and_queues_without_a_fetch() {
    let mut app = swarm(true);
    let refetch = app.apply(Event {
        id: sm_lib::EventId(3),
        at: Timestamp(NOW),
        session: Some(id(2)),
        kind: EventKind::StatusChanged {
            from: SessionStatus::Working,
            to: SessionStatus::Idle,
        },
    });
    assert!(!refetch);
    assert_eq!(app.sessions[1].session.status, SessionStatus::Idle);
    app.apply(Event {
        id: sm_lib::EventId(4),
        at: Timestamp(NOW),
        session: Some(id(2)),
        kind: EventKind::MessageDelivered {
            message: sm_lib::MessageId(9),
        },
    });
    assert_eq!(app.sessions[1].queued, 1);
    // A new session is not in the listing yet: fetch it.
    assert!(app.apply(Event {
        id: sm_lib::EventId(5),
        at: Timestamp(NOW),
        session: Some(id(9)),
        kind: EventKind::SessionCreated {
            agent: AgentKind::Claude
        },
    }));
}
