//! `sm hook <event>`: forwards a Claude Code hook's JSON to the server. An instant no-op
//! outside managed sessions or when the server is down, and bounded everywhere (stdin and
//! the request each give up after 2 s): a hook must never block its agent.

use serde_json::Value;

use crate::client::{Client, enc, my_session};

/// Runs `sm hook`; always exits 0.
pub fn run(event: &str, client: Option<Client>) -> i32 {
    if my_session().is_none() {
        return 0;
    }
    // A stdin that never closes costs the payload, never the agent's time: the event is
    // still reported, with what is known.
    let input = super::read_stdin_within(4 << 20, super::HOOK_STDIN_TIMEOUT).unwrap_or_default();
    let payload = serde_json::from_str::<Value>(&input)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    let event = hook_name(event);
    if let Some(client) = client {
        if let Err(e) = client.post(&format!("/hooks/{}", enc(&event)), &payload) {
            if std::env::var_os("SM_HOOK_DEBUG").is_some() {
                eprintln!("sm hook {event}: {e}");
            }
        }
    }
    0
}

/// `stop`, `user-prompt-submit` and `UserPromptSubmit` all name the same event.
fn hook_name(event: &str) -> String {
    fn capitalize(word: &str, lower_rest: bool) -> String {
        let mut chars = word.chars();
        match chars.next() {
            Some(first) => {
                let rest: String = chars.collect();
                let rest = if lower_rest {
                    rest.to_lowercase()
                } else {
                    rest
                };
                first.to_uppercase().collect::<String>() + &rest
            }
            None => String::new(),
        }
    }
    if event.contains(['-', '_']) {
        event
            .split(['-', '_'])
            .map(|w| capitalize(w, true))
            .collect()
    } else {
        capitalize(event, false)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hook_names_are_normalised() {
        assert_eq!(super::hook_name("stop"), "Stop");
        assert_eq!(super::hook_name("Stop"), "Stop");
        assert_eq!(super::hook_name("user-prompt-submit"), "UserPromptSubmit");
        assert_eq!(super::hook_name("UserPromptSubmit"), "UserPromptSubmit");
        assert_eq!(super::hook_name("session_end"), "SessionEnd");
        assert_eq!(super::hook_name("pre-tool-use"), "PreToolUse");
    }
}
