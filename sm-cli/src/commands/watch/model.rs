//! What `sm watch` shows, kept apart from the terminal: the sessions and locks as the
//! server last listed them, updated by the events it streams, and the state of the
//! person's interaction (selection, filter, an input line, a confirmation).

use std::collections::{HashMap, HashSet, VecDeque};

use sm_lib::wire::SessionView;
use sm_lib::{Event, EventKind, Lock, SessionId, SessionStatus};

/// How many recent events are kept per session.
const EVENTS_KEPT: usize = 30;

/// Delivery modes, in the order the send line cycles through them.
pub const MODES: [&str; 3] = ["sequential", "important", "urgent"];

/// Agent kinds the new-agent line cycles through.
pub const KINDS: [&str; 4] = ["claude", "codex", "fake", "shell"];

/// What the bottom line is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Nothing: key hints or the last result.
    None,
    /// Typing a filter.
    Filter(String),
    /// Typing a message to the selected session.
    Send { text: String, mode: usize },
    /// Asking whether to kill this session.
    ConfirmKill(SessionId),
    /// Waiting for the number of an option to answer with.
    Answer,
    /// Typing the directory of a new agent, of a kind.
    New { dir: String, kind: usize },
}

/// The connection to the server's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Live,
    Lost(String),
}

/// One row of the session tree.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub view: &'a SessionView,
    pub depth: usize,
    pub children: usize,
    pub collapsed: bool,
    pub lock: Option<&'a Lock>,
}

/// Everything on screen.
#[derive(Debug, Clone)]
pub struct App {
    pub sessions: Vec<SessionView>,
    pub locks: Vec<Lock>,
    pub selected: Option<SessionId>,
    pub filter: String,
    pub collapsed: HashSet<SessionId>,
    /// Show stopped and dead sessions too.
    pub show_ended: bool,
    /// The selected session's screen, as last fetched, and whose it is.
    pub screen: Option<(SessionId, Vec<String>)>,
    pub events: HashMap<SessionId, VecDeque<Event>>,
    /// The question each session waiting for input shows, when known.
    pub questions: HashMap<SessionId, String>,
    pub input: Input,
    pub help: bool,
    pub message: String,
    pub link: Link,
    /// Milliseconds since the epoch, the clock for "time in status".
    pub now: i64,
    pub color: bool,
    pub url: String,
}

impl App {
    pub fn new(url: &str, color: bool) -> App {
        App {
            sessions: Vec::new(),
            locks: Vec::new(),
            selected: None,
            filter: String::new(),
            collapsed: HashSet::new(),
            show_ended: false,
            screen: None,
            events: HashMap::new(),
            questions: HashMap::new(),
            input: Input::None,
            help: false,
            message: String::new(),
            link: Link::Connecting,
            now: 0,
            color,
            url: url.to_string(),
        }
    }

    /// A fresh listing from the server; the selection stays on the same session.
    pub fn set_sessions(&mut self, mut sessions: Vec<SessionView>, locks: Vec<Lock>) {
        sessions.sort_by_key(|s| s.session.created_at);
        self.sessions = sessions;
        self.locks = locks;
        for s in &self.sessions {
            if s.session.status != SessionStatus::NeedsInput {
                self.questions.remove(&s.session.id);
            }
        }
        self.keep_selection_visible();
    }

    fn shown(&self, s: &SessionView) -> bool {
        self.show_ended || s.session.status.is_live()
    }

    fn matches(&self, s: &SessionView) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let f = self.filter.to_lowercase();
        let name = s
            .session
            .name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default();
        name.to_lowercase().contains(&f)
            || s.session.id.as_str().starts_with(&f)
            || s.session.status.as_str().contains(&f)
            || s.session.agent.to_string().contains(&f)
            || s.session
                .task
                .as_deref()
                .is_some_and(|t| t.to_lowercase().contains(&f))
    }

    /// The rows in tree order: each session under its parent (a parent that is not shown
    /// makes it a root), oldest first; a filter shows the matches as a flat list.
    pub fn rows(&self) -> Vec<Row<'_>> {
        let shown: Vec<&SessionView> = self.sessions.iter().filter(|s| self.shown(s)).collect();
        let lock_of = |id: &SessionId| self.locks.iter().find(|l| &l.holder == id);
        let ids: HashSet<&SessionId> = shown.iter().map(|s| &s.session.id).collect();
        let children_of = |id: &SessionId| -> Vec<&SessionView> {
            shown
                .iter()
                .copied()
                .filter(|s| s.session.parent.as_ref() == Some(id))
                .collect()
        };
        let mut rows = Vec::new();
        if !self.filter.is_empty() {
            for s in shown.iter().copied().filter(|s| self.matches(s)) {
                rows.push(Row {
                    view: s,
                    depth: 0,
                    children: children_of(&s.session.id).len(),
                    collapsed: false,
                    lock: lock_of(&s.session.id),
                });
            }
            return rows;
        }
        let mut stack: Vec<(&SessionView, usize)> = shown
            .iter()
            .copied()
            .filter(|s| s.session.parent.as_ref().is_none_or(|p| !ids.contains(p)))
            .rev()
            .map(|s| (s, 0))
            .collect();
        let mut seen = HashSet::new();
        while let Some((s, depth)) = stack.pop() {
            if !seen.insert(&s.session.id) {
                continue;
            }
            let kids = children_of(&s.session.id);
            let collapsed = self.collapsed.contains(&s.session.id);
            rows.push(Row {
                view: s,
                depth,
                children: kids.len(),
                collapsed,
                lock: lock_of(&s.session.id),
            });
            if !collapsed {
                for k in kids.into_iter().rev() {
                    stack.push((k, depth + 1));
                }
            }
        }
        rows
    }

    pub fn selected_view(&self) -> Option<&SessionView> {
        let id = self.selected.as_ref()?;
        self.sessions.iter().find(|s| &s.session.id == id)
    }

    fn keep_selection_visible(&mut self) {
        let rows = self.rows();
        let visible = self
            .selected
            .as_ref()
            .is_some_and(|id| rows.iter().any(|r| &r.view.session.id == id));
        if !visible {
            self.selected = rows.first().map(|r| r.view.session.id.clone());
        }
    }

    /// Moves the selection by `delta` rows (clamped).
    pub fn move_selection(&mut self, delta: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            self.selected = None;
            return;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|id| rows.iter().position(|r| &r.view.session.id == id))
            .unwrap_or(0) as isize;
        let to = (at + delta).clamp(0, rows.len() as isize - 1) as usize;
        self.selected = Some(rows[to].view.session.id.clone());
    }

    pub fn set_filter(&mut self, filter: String) {
        self.filter = filter;
        self.keep_selection_visible();
    }

    pub fn toggle_collapsed(&mut self) {
        if let Some(id) = self.selected.clone() {
            if !self.collapsed.remove(&id) {
                self.collapsed.insert(id);
            }
        }
    }

    pub fn toggle_ended(&mut self) {
        self.show_ended = !self.show_ended;
        self.keep_selection_visible();
    }

    /// Applies one event of the stream. Returns whether the listing must be fetched again
    /// (a new session, a lock, a rename: things the event does not carry whole).
    pub fn apply(&mut self, event: Event) -> bool {
        let mut refetch = false;
        if let Some(id) = &event.session {
            match &event.kind {
                EventKind::StatusChanged { to, .. } => {
                    if let Some(s) = self.sessions.iter_mut().find(|s| &s.session.id == id) {
                        s.session.status = *to;
                        s.session.status_changed_at = event.at;
                    } else {
                        refetch = true;
                    }
                    if *to != SessionStatus::NeedsInput {
                        self.questions.remove(id);
                    }
                }
                EventKind::MessageQueued { .. } => self.count_queue(id, 1),
                EventKind::MessageDelivered { .. } | EventKind::MessageFailed { .. } => {
                    self.count_queue(id, -1)
                }
                EventKind::NeedsInput {
                    prompt: Some(p), ..
                } => {
                    self.questions.insert(id.clone(), p.clone());
                }
                EventKind::SessionCreated { .. }
                | EventKind::LockAcquired { .. }
                | EventKind::LockReleased { .. } => refetch = true,
                _ => {}
            }
            if !matches!(event.kind, EventKind::Hook { .. }) {
                let list = self.events.entry(id.clone()).or_default();
                list.push_back(event);
                while list.len() > EVENTS_KEPT {
                    list.pop_front();
                }
            }
        } else {
            refetch = true;
        }
        if !self
            .sessions
            .iter()
            .any(|s| Some(&s.session.id) == self.selected.as_ref())
        {
            self.keep_selection_visible();
        }
        refetch
    }

    /// A session's events before `sm watch` saw them stream: its recent history and the
    /// question it waits on, ahead of anything streamed since.
    pub fn set_history(&mut self, id: &SessionId, events: Vec<Event>) {
        let streamed = self.events.remove(id).unwrap_or_default();
        let first_streamed = streamed.front().map(|e| e.id);
        let mut list: VecDeque<Event> = VecDeque::new();
        for e in events {
            if first_streamed.is_some_and(|f| e.id >= f) {
                break;
            }
            if let EventKind::NeedsInput {
                prompt: Some(p), ..
            } = &e.kind
            {
                self.questions.insert(id.clone(), p.clone());
            }
            if let EventKind::StatusChanged { to, .. } = &e.kind {
                if *to != SessionStatus::NeedsInput {
                    self.questions.remove(id);
                }
            }
            if !matches!(e.kind, EventKind::Hook { .. }) {
                list.push_back(e);
            }
        }
        list.extend(streamed);
        while list.len() > EVENTS_KEPT {
            list.pop_front();
        }
        self.events.insert(id.clone(), list);
    }

    fn count_queue(&mut self, id: &SessionId, delta: isize) {
        if let Some(s) = self.sessions.iter_mut().find(|s| &s.session.id == id) {
            s.queued = (s.queued as isize + delta).max(0) as usize;
        }
    }

    /// Totals for the header: live, working, waiting for input, queued messages, locks.
    pub fn totals(&self) -> (usize, usize, usize, usize, usize) {
        let live = self.sessions.iter().filter(|s| s.session.status.is_live());
        let (mut n, mut working, mut asking, mut queued) = (0, 0, 0, 0);
        for s in live {
            n += 1;
            working += usize::from(s.session.status == SessionStatus::Working);
            asking += usize::from(s.session.status == SessionStatus::NeedsInput);
            queued += s.queued;
        }
        (n, working, asking, queued, self.locks.len())
    }

    /// The shortest time any shown session has been in its status (to pace the clock).
    pub fn youngest_status_ms(&self) -> Option<i64> {
        self.sessions
            .iter()
            .filter(|s| self.shown(s))
            .map(|s| self.now - s.session.status_changed_at.0)
            .min()
    }
}

/// A duration as the tree shows it: `42s`, `7m`, `3h`, `2d`.
pub fn short_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// An event as one short line of the selected agent's history.
pub fn describe(event: &Event) -> Option<String> {
    let text = match &event.kind {
        EventKind::SessionCreated { .. } => "created".to_string(),
        EventKind::StatusChanged { to, .. } => format!("now {to}"),
        EventKind::MessageQueued { message, .. } => format!("message #{message} queued"),
        EventKind::MessageDelivered { message } => format!("message #{message} delivered"),
        EventKind::MessageFailed { message, reason } => {
            format!("message #{message} failed: {reason}")
        }
        EventKind::NeedsInput { prompt, .. } => {
            format!("asks: {}", prompt.as_deref().unwrap_or("(a question)"))
        }
        EventKind::TurnCompleted { last_message } => format!(
            "turn done{}",
            last_message
                .as_deref()
                .map(|m| format!(": {}", m.lines().next().unwrap_or("")))
                .unwrap_or_default()
        ),
        EventKind::WaitFired { outcome, .. } => format!("wait fired ({outcome:?})"),
        EventKind::ToolUse {
            tool,
            phase,
            target,
        } => format!("{phase} {tool} {}", target.as_deref().unwrap_or_default()),
        EventKind::LockAcquired { .. } => "took the lock".into(),
        EventKind::LockReleased { .. } => "released the lock".into(),
        EventKind::Error { .. } => "error".into(),
        EventKind::Hook { .. } => return None,
        other => other.tag().replace('_', " "),
    };
    Some(text)
}
