//! How sessions, messages and locks are printed for humans. Everything an agent controls
//! (names, dirs, tasks, messages, summaries, screen lines) passes [`clean`] or
//! [`clean_block`] first, so it cannot reach the operator's terminal as escape sequences;
//! `--json` output stays exact (JSON-escaped).

use sm_lib::wire::SessionView;
use sm_lib::{Lock, Session};

/// One line of agent-controlled text, safe to print: no escape sequences or control
/// characters, newlines and tabs as spaces.
pub fn clean(text: &str) -> String {
    sm_lib::engine::sanitize::display_line(text)
}

/// Several lines of agent-controlled text, safe to print (newlines kept).
pub fn clean_block(text: &str) -> String {
    sm_lib::engine::sanitize::strip_controls(text)
}

/// Prints `value` as pretty JSON.
pub fn json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("sm: cannot print JSON: {e}"),
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `name (abcd1234)` or the short id.
pub fn label(session: &Session) -> String {
    let id = session.id.as_str();
    match &session.name {
        Some(name) => clean(&format!("{name} ({})", short(id))),
        None => clean(short(id)),
    }
}

/// One line per session: label, status, agent, directory.
pub fn sessions(list: &[SessionView]) {
    if list.is_empty() {
        println!("(no sessions)");
        return;
    }
    // The node column appears once the swarm spans several machines.
    let mut nodes: Vec<&str> = list
        .iter()
        .filter_map(|v| v.session.node.as_deref())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let show_node = nodes.len() > 1 || list.iter().any(|v| v.unreachable);
    for SessionView {
        session: s,
        unreachable,
        ..
    } in list
    {
        let status = if *unreachable {
            "unreachable".to_string()
        } else {
            s.status.to_string()
        };
        let node = match (&s.node, show_node) {
            (Some(n), true) => format!("  [node {}]", clean(n)),
            _ => String::new(),
        };
        let task = s
            .task
            .as_deref()
            .map(|t| format!("  — {}", clean(t)))
            .unwrap_or_default();
        let ended = s
            .end_reason
            .as_deref()
            .map(|r| format!("  ({})", clean(r)))
            .unwrap_or_default();
        println!(
            "{:<28} {:<12} {:<7} {}{node}{task}{ended}",
            label(s),
            status,
            s.agent,
            clean(&s.working_dir.display().to_string())
        );
    }
}

/// One line per lock.
pub fn locks(list: &[Lock]) {
    if list.is_empty() {
        println!("(no locks)");
        return;
    }
    for l in list {
        println!(
            "{}  held by {}  ({}, {})",
            clean(&l.workspace.to_string()),
            clean(short(l.holder.as_str())),
            l.kind.as_str(),
            clean(&l.reason)
        );
    }
}
