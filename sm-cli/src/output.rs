//! How sessions, messages and locks are printed for humans.

use serde_json::Value;

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
        Some(name) => format!("{name} ({})", short(id)),
        None => short(id).to_string(),
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
            .map(|t| format!("  — {t}"))
            .unwrap_or_default();
        let ended = s["end_reason"]
            .as_str()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default();
        println!(
            "{:<28} {:<12} {:<7} {}{task}{ended}",
            label(s),
            s["status"].as_str().unwrap_or("?"),
            s["agent"].as_str().unwrap_or("?"),
            s["working_dir"].as_str().unwrap_or("")
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
            l["workspace"].as_str().unwrap_or("?"),
            short(l["holder"].as_str().unwrap_or("?")),
            l["kind"].as_str().unwrap_or("?"),
            l["reason"].as_str().unwrap_or("")
        );
    }
}
