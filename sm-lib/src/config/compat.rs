//! The Python session manager's keys that sm accepts without using them.

use super::line_of_key;

/// Keys of the Python session manager's configuration that sm accepts but does not use,
/// each with the reason, reported once when the file is loaded.
const ACCEPTED_UNUSED: &[(&str, &str)] = &[
    ("timeouts", "sm sets its own time limits"),
    (
        "email",
        "sm has no e-mail notifier; use telegram or a webhook",
    ),
    ("services", "sm does not start other services"),
    (
        "child_agents.auto_complete",
        "sm does not end idle children on its own; use sm wait and sm kill",
    ),
    (
        "sm_send.input_poll_interval",
        "sm is event-driven and does not poll",
    ),
    (
        "sm_send.max_batch_size",
        "sm submits one message per prompt",
    ),
];

pub(super) fn compat_warnings(value: &serde_yaml_ng::Value, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (key, why) in ACCEPTED_UNUSED {
        let mut node = Some(value);
        for part in key.split('.') {
            node = node.and_then(|n| n.get(part));
        }
        let Some(node) = node else { continue };
        let line = line_of_key(text, key)
            .map(|n| format!(" (line {n})"))
            .unwrap_or_default();
        let keys = match node.as_mapping() {
            Some(m) if !m.is_empty() => {
                let names: Vec<String> = m
                    .keys()
                    .filter_map(|k| k.as_str().map(|k| format!("{key}.{k}")))
                    .collect();
                names.join(", ")
            }
            _ => key.to_string(),
        };
        out.push(format!(
            "configuration key {keys}{line} is accepted for compatibility but not used: {why}"
        ));
    }
    out
}
