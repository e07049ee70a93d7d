//! How sessions, messages and locks are printed for humans. Everything an agent controls
//! (names, dirs, tasks, messages, summaries, screen lines) passes [`clean`] or
//! [`clean_block`] first, so it cannot reach the operator's terminal as escape sequences;
//! `--json` output stays exact (JSON-escaped).

use serde_json::Value;

/// One line of agent-controlled text, safe to print: no escape sequences or control
/// characters, newlines and tabs as spaces.
pub fn clean(text: &str) -> String {
    sm_lib::engine::sanitize::display_line(text)
}

/// Several lines of agent-controlled text, safe to print (newlines kept).
pub fn clean_block(text: &str) -> String {
    sm_lib::engine::sanitize::strip_controls(text)
}

/// `value` as text (empty when it is not a string), cleaned for one line.
pub fn field(value: &Value) -> String {
    clean(value.as_str().unwrap_or(""))
}

/// Prints `value` as pretty JSON.
pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `name (abcd1234)` or the short id.
pub fn label(session: &Value) -> String {
    let id = session["id"].as_str().unwrap_or("?");
    match session["name"].as_str() {
        Some(name) => clean(&format!("{name} ({})", short(id))),
        None => clean(short(id)),
    }
}

/// One line per session: label, status, agent, directory.
pub fn sessions(list: &[Value]) {
    if list.is_empty() {
        println!("(no sessions)");
        return;
    }
    for s in list {
        let task = s["task"]
            .as_str()
            .map(|t| format!("  — {}", clean(t)))
            .unwrap_or_default();
        let ended = s["end_reason"]
            .as_str()
            .map(|r| format!("  ({})", clean(r)))
            .unwrap_or_default();
        println!(
            "{:<28} {:<12} {:<7} {}{task}{ended}",
            label(s),
            field(&s["status"]),
            field(&s["agent"]),
            field(&s["working_dir"])
        );
    }
}

/// One line per lock.
pub fn locks(list: &[Value]) {
    if list.is_empty() {
        println!("(no locks)");
        return;
    }
    for l in list {
        println!(
            "{}  held by {}  ({}, {})",
            field(&l["workspace"]),
            clean(short(l["holder"].as_str().unwrap_or("?"))),
            field(&l["kind"]),
            field(&l["reason"])
        );
    }
}
