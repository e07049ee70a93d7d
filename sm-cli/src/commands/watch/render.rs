//! Drawing one frame of `sm watch` from the [`App`]: a pure function of the model, so it is
//! tested on ratatui's test backend. Every status has a symbol as well as a colour, so the
//! tree reads the same with `NO_COLOR`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use sm_lib::SessionStatus;

use super::model::{App, Input, KINDS, Link, MODES, describe, short_duration};

/// Below this the dashboard does not fit; a message says so instead.
pub const MIN_WIDTH: u16 = 50;
pub const MIN_HEIGHT: u16 = 10;

/// A status's symbol, word and colour.
pub fn status_look(status: SessionStatus) -> (&'static str, &'static str, Color) {
    match status {
        SessionStatus::Starting => ("…", "starting", Color::Cyan),
        SessionStatus::Idle => ("○", "idle", Color::Green),
        SessionStatus::Working => ("●", "working", Color::Yellow),
        SessionStatus::NeedsInput => ("?", "needs input", Color::Magenta),
        SessionStatus::Stopped => ("■", "stopped", Color::DarkGray),
        SessionStatus::Dead => ("✗", "dead", Color::DarkGray),
    }
}

/// Agent-controlled text made safe to draw: control characters (escape sequences a
/// hostile name or screen could carry) become `?`.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn style(app: &App, color: Color) -> Style {
    if app.color {
        Style::default().fg(color)
    } else {
        Style::default()
    }
}

fn truncate(s: &str, width: usize) -> String {
    let count = s.chars().count();
    if count <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "sm watch needs a terminal of at least {MIN_WIDTH}×{MIN_HEIGHT} (this one is {}×{}); \
             make it larger, or press q to quit",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let outer = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .split(area);
    draw_header(frame, app, outer[0]);
    // Side by side when wide, the selected agent below the tree when not.
    let wide = area.width >= 110;
    let panes = Layout::default()
        .direction(if wide {
            Direction::Horizontal
        } else {
            Direction::Vertical
        })
        .constraints(if wide {
            [Constraint::Percentage(55), Constraint::Percentage(45)]
        } else {
            [Constraint::Percentage(50), Constraint::Percentage(50)]
        })
        .split(outer[1]);
    draw_tree(frame, app, panes[0]);
    draw_selected(frame, app, panes[1]);
    draw_bottom(frame, app, outer[2]);
    if app.help {
        draw_help(frame, app, area);
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let (live, working, asking, queued, locks) = app.totals();
    let link = match &app.link {
        Link::Live => Span::styled("● live", style(app, Color::Green)),
        Link::Connecting => Span::styled("… connecting", style(app, Color::Yellow)),
        Link::Lost(why) => Span::styled(
            format!("✗ connection lost, retrying: {}", clean(why)),
            style(app, Color::Red),
        ),
    };
    let line = Line::from(vec![
        Span::styled("sm watch", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {live} live · {working} working · {asking} need input · {queued} queued · {locks} lock{}  ",
            if locks == 1 { "" } else { "s" }
        )),
        link,
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_tree(frame: &mut Frame, app: &App, area: Rect) {
    let title = if app.filter.is_empty() {
        " sessions ".to_string()
    } else {
        format!(" sessions matching {:?} ", clean(&app.filter))
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = app.rows();
    if rows.is_empty() {
        let text = if app.sessions.is_empty() {
            "no sessions yet — press n to start an agent"
        } else {
            "nothing to show (filter with /, show ended sessions with e)"
        };
        frame.render_widget(Paragraph::new(text), inner);
        return;
    }
    let width = inner.width as usize;
    let height = inner.height as usize;
    let at = rows
        .iter()
        .position(|r| Some(&r.view.session.id) == app.selected.as_ref())
        .unwrap_or(0);
    // Scroll so the selection stays in view.
    let first = at.saturating_sub(height.saturating_sub(1));
    let label_of = |row: &super::model::Row| -> String {
        let s = &row.view.session;
        let marker = match (row.children, row.collapsed) {
            (0, _) => "  ",
            (_, true) => "▸ ",
            (_, false) => "▾ ",
        };
        let name = s
            .name
            .as_ref()
            .map(|n| clean(&n.to_string()))
            .unwrap_or_else(|| "(unnamed)".into());
        let collapsed = if row.collapsed {
            format!(" (+{})", row.children)
        } else {
            String::new()
        };
        format!(
            "{}{marker}{}{collapsed}",
            "  ".repeat(row.depth),
            truncate(&name, 24)
        )
    };
    // The name column is as wide as the widest shown name, within bounds.
    let name_width = rows
        .iter()
        .map(|r| label_of(r).chars().count())
        .max()
        .unwrap_or(8)
        .clamp(8, 32);
    let mut lines = Vec::new();
    for row in rows.iter().skip(first).take(height) {
        let s = &row.view.session;
        let (symbol, word, color) = if row.view.unreachable {
            ("✕", "unreachable", Color::Red)
        } else {
            status_look(s.status)
        };
        let head = truncate(&label_of(row), name_width);
        let id: String = s.id.as_str().chars().take(8).collect();
        let queued = if row.view.queued > 0 {
            format!("✉{}", row.view.queued)
        } else {
            String::new()
        };
        let lock = if row.lock.is_some() { "⚿" } else { "" };
        let time = short_duration(app.now - s.status_changed_at.0);
        let fixed = format!(
            "{head:<name_width$} {id} {:<6} {symbol} {word:<11} {time:>4} {queued:>4} {lock:1} ",
            truncate(&s.agent.to_string(), 6)
        );
        let task = truncate(
            &clean(s.task.as_deref().unwrap_or("")),
            width.saturating_sub(fixed.chars().count()),
        );
        let selected = Some(&s.id) == app.selected.as_ref();
        let mut spans = vec![
            Span::raw(format!(
                "{head:<name_width$} {id} {:<6} ",
                truncate(&s.agent.to_string(), 6)
            )),
            Span::styled(format!("{symbol} {word:<11}"), style(app, color)),
            Span::raw(format!(" {time:>4} {queued:>4} {lock:1} ")),
            Span::styled(task, style(app, Color::Gray)),
        ];
        if selected {
            for span in &mut spans {
                span.style = span.style.add_modifier(Modifier::REVERSED);
            }
        }
        lines.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_selected(frame: &mut Frame, app: &App, area: Rect) {
    let Some(view) = app.selected_view() else {
        let block = Block::default().borders(Borders::ALL).title(" agent ");
        frame.render_widget(block, area);
        return;
    };
    let s = &view.session;
    let (symbol, word, color) = status_look(s.status);
    let name = s
        .name
        .as_ref()
        .map(|n| clean(&n.to_string()))
        .unwrap_or_else(|| s.id.to_string());
    let title = Line::from(vec![
        Span::raw(format!(" {name} ")),
        Span::styled(format!("{symbol} {word} "), style(app, color)),
    ]);
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut top: Vec<Line> = Vec::new();
    let node = match (&s.node, view.unreachable) {
        (Some(node), false) => format!(" · node {}", clean(node)),
        (Some(node), true) => format!(" · node {} (unreachable)", clean(node)),
        (None, _) => String::new(),
    };
    top.push(Line::from(format!(
        "{} · {} · {}{node}",
        s.agent,
        s.id,
        clean(&s.working_dir.display().to_string())
    )));
    if s.status == SessionStatus::NeedsInput {
        let q = app
            .questions
            .get(&s.id)
            .map(|q| clean(q))
            .unwrap_or_else(|| "it waits for an answer (see its screen)".into());
        top.push(Line::from(Span::styled(
            format!("? {q} (a: answer)"),
            style(app, Color::Magenta).add_modifier(Modifier::BOLD),
        )));
    }
    if let Some(reason) = &s.end_reason {
        top.push(Line::from(format!("ended: {}", clean(reason))));
    }
    let events: Vec<String> = app
        .events
        .get(&s.id)
        .map(|list| {
            list.iter()
                .filter_map(describe)
                .map(|d| clean(&d))
                .collect()
        })
        .unwrap_or_default();
    let event_rows = (inner.height as usize / 3)
        .clamp(1, 8)
        .min(events.len().max(1));
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(top.len() as u16),
            Constraint::Min(1),
            Constraint::Length(event_rows as u16 + 1),
        ])
        .split(inner);
    frame.render_widget(Paragraph::new(top), parts[0]);
    // The screen's last lines that fit, blank trailing lines dropped.
    let screen: Vec<String> = match &app.screen {
        Some((id, lines)) if id == &s.id => {
            let mut lines: Vec<String> = lines.iter().map(|l| clean(l)).collect();
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            lines
        }
        _ => vec!["(loading its screen…)".into()],
    };
    let fit = parts[1].height as usize;
    let shown: Vec<Line> = screen
        .iter()
        .skip(screen.len().saturating_sub(fit))
        .map(|l| Line::from(l.clone()))
        .collect();
    frame.render_widget(Paragraph::new(shown), parts[1]);
    let mut history = vec![Line::from(Span::styled(
        "recent events",
        Style::default().add_modifier(Modifier::UNDERLINED),
    ))];
    if events.is_empty() {
        history.push(Line::from("(none since sm watch started)"));
    }
    for e in events.iter().skip(events.len().saturating_sub(event_rows)) {
        history.push(Line::from(e.clone()));
    }
    frame.render_widget(Paragraph::new(history), parts[2]);
}

fn draw_bottom(frame: &mut Frame, app: &App, area: Rect) {
    let target = app
        .selected_view()
        .map(|v| {
            v.session
                .name
                .as_ref()
                .map(|n| clean(&n.to_string()))
                .unwrap_or_else(|| v.session.id.to_string())
        })
        .unwrap_or_default();
    let line = match &app.input {
        Input::None if !app.message.is_empty() => Line::from(clean(&app.message)),
        Input::None => Line::from(
            "q quit · ? help · ↑↓/jk move · s send · a answer · c clear · K kill · ⏎ attach · n new · / filter",
        ),
        Input::Filter(f) => Line::from(format!("filter: {}▏  (⏎ keep, esc clear)", clean(f))),
        Input::Send { text, mode } => Line::from(vec![
            Span::raw(format!("send to {target} ")),
            Span::styled(
                format!("[{}]", MODES[*mode]),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                " › {}▏  (tab mode, ctrl-e editor, ⏎ send, esc cancel)",
                clean(&text.replace('\n', "↵"))
            )),
        ]),
        Input::ConfirmKill(id) => {
            let name = app
                .sessions
                .iter()
                .find(|s| &s.session.id == id)
                .and_then(|s| s.session.name.as_ref().map(|n| clean(&n.to_string())))
                .unwrap_or_default();
            Line::from(Span::styled(
                format!("kill {name} [{id}]? y to kill, any other key to keep it"),
                style(app, Color::Red).add_modifier(Modifier::BOLD),
            ))
        }
        Input::Answer => Line::from(format!(
            "answer {target}: press the option's number (1-9), esc to cancel"
        )),
        Input::New { dir, kind } => Line::from(format!(
            "new [{}] agent in › {}▏  (tab kind, ⏎ start, esc cancel)",
            KINDS[*kind],
            clean(dir)
        )),
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The key table, shown by `?` (also in the README).
pub const KEYS: [(&str, &str); 16] = [
    ("↑ ↓  j k", "move the selection"),
    ("g  G", "first / last session"),
    ("space  ← →", "collapse / expand the selected subtree"),
    ("/", "filter by name, id, status, kind or task"),
    ("e", "show / hide stopped and dead sessions"),
    ("s", "send a message (tab: sequential / important / urgent)"),
    ("ctrl-e", "while sending: write the message in $EDITOR"),
    ("a", "answer the selected agent's question (then 1-9)"),
    ("c", "clear the selected agent's context"),
    ("K", "kill the selected agent (asks first)"),
    ("⏎", "attach to its terminal (tmux; detach to come back)"),
    ("n", "start a new agent in a directory (tab: kind)"),
    ("r", "fetch everything again"),
    ("?", "this help"),
    ("q  ctrl-c", "quit"),
    ("esc", "cancel what is being typed"),
];

fn draw_help(frame: &mut Frame, app: &App, area: Rect) {
    let width = 64.min(area.width);
    let height = (KEYS.len() as u16 + 4).min(area.height);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| Line::from(format!(" {k:<12} {what}")))
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(format!(" server: {}", clean(&app.url))));
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (any key closes) "),
        ),
        rect,
    );
}
