//! Reading an agent's state off its screen (Claude Code's TUI and the fake agent, which
//! mimics it). The screen is the fallback where hooks say nothing: readiness, permission
//! prompts, turns interrupted with Escape (which fire no Stop hook).

/// What an agent's screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenState {
    /// At its prompt, not working. `input` is what the input box holds (empty when empty;
    /// continuation lines joined with `\n`).
    Ready {
        /// The input box's text.
        input: String,
    },
    /// A turn is running (`esc to interrupt`). `input` is what the box holds meanwhile.
    Working {
        /// The input box's text, if the box is visible.
        input: Option<String>,
    },
    /// Waiting on a permission question.
    Permission {
        /// The question, e.g. `Do you want to create out.txt?`.
        question: String,
        /// The options offered, in order.
        options: Vec<String>,
    },
    /// Anything else: starting up, a menu, a crash message.
    Other,
}

const WORKING_MARKER: &str = "esc to interrupt";

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.chars().count() >= 10 && t.chars().all(|c| c == '─' || c == '━')
}

/// The label of a numbered option row (`1. Yes`), after any of the selection `markers`
/// an agent draws before the selected one; `None` for any other row. Every profile reads
/// its questions' options with this, each with its own markers.
pub(crate) fn numbered_option(line: &str, markers: &[char]) -> Option<String> {
    let t = line.trim_start().trim_start_matches(markers).trim_start();
    let (num, rest) = t.split_once(". ")?;
    num.parse::<u8>().ok()?;
    Some(rest.trim().to_string())
}

fn is_option(line: &str) -> Option<String> {
    numbered_option(line, &['❯'])
}

/// Classifies a captured screen.
pub fn read_screen(rows: &[String]) -> ScreenState {
    let text_has = |needle: &str| rows.iter().any(|r| r.contains(needle));
    // A permission prompt: a question and numbered options, with Esc to cancel.
    if text_has("Esc to cancel") {
        if let Some(q) = rows.iter().rposition(|r| r.contains("Do you want to")) {
            let options: Vec<String> = rows[q + 1..].iter().filter_map(|r| is_option(r)).collect();
            if !options.is_empty() {
                return ScreenState::Permission {
                    question: rows[q].trim().to_string(),
                    options,
                };
            }
        }
    }
    let input = input_box(rows);
    if text_has(WORKING_MARKER) {
        return ScreenState::Working { input };
    }
    match input {
        Some(input) => ScreenState::Ready { input },
        None => ScreenState::Other,
    }
}

/// The input box's content: the `❯` line (not a numbered option) right under a rule, up
/// to the next rule, near the bottom of the screen. The footer under it varies with the
/// agent's mode and with what is typed (`? for shortcuts` disappears once there is text),
/// so it is not relied on.
fn input_box(rows: &[String]) -> Option<String> {
    let last_text = rows.iter().rposition(|r| !r.trim().is_empty())?;
    let rules: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| is_rule(r))
        .map(|(i, _)| i)
        .collect();
    for pair in rules.windows(2).rev() {
        let (top, bottom) = (pair[0], pair[1]);
        // The box is the last thing on screen but for a short footer.
        if last_text.saturating_sub(bottom) > 4 {
            continue;
        }
        let body = &rows[top + 1..bottom];
        let Some(first) = body.first() else { continue };
        let Some(rest) = first.strip_prefix('❯') else {
            continue;
        };
        if is_option(first).is_some() {
            continue;
        }
        let mut lines = vec![rest.strip_prefix(' ').unwrap_or(rest).to_string()];
        lines.extend(
            body[1..]
                .iter()
                .map(|l| l.strip_prefix("  ").unwrap_or(l).to_string()),
        );
        return Some(lines.join("\n").trim_end().to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    const RULE: &str = "────────────────────────────────────────";

    #[test]
    fn ready_with_and_without_text() {
        let s = rows(&format!(
            "> hi\n⏺ Done\n{RULE}\n❯ \n{RULE}\n  ? for shortcuts"
        ));
        assert_eq!(read_screen(&s), ScreenState::Ready { input: "".into() });
        let s = rows(&format!(
            "{RULE}\n❯ half typed\n  second\n{RULE}\n  ? for shortcuts"
        ));
        assert_eq!(
            read_screen(&s),
            ScreenState::Ready {
                input: "half typed\nsecond".into()
            }
        );
    }

    #[test]
    fn working_wins_over_a_visible_prompt() {
        let s = rows(&format!(
            "✶ Thinking… (3s · esc to interrupt)\n{RULE}\n❯ \n{RULE}\n  ? for shortcuts"
        ));
        assert_eq!(
            read_screen(&s),
            ScreenState::Working {
                input: Some("".into())
            }
        );
    }

    #[test]
    fn permission_prompt_is_not_a_prompt() {
        let s = rows(&format!(
            "⏺ Write(out.txt)\n{RULE}\n Write(out.txt)\n Do you want to create out.txt?\n ❯ 1. Yes\n   2. Yes, allow all edits during this session\n   3. No\n Esc to cancel"
        ));
        assert_eq!(
            read_screen(&s),
            ScreenState::Permission {
                question: "Do you want to create out.txt?".into(),
                options: vec![
                    "Yes".into(),
                    "Yes, allow all edits during this session".into(),
                    "No".into()
                ]
            }
        );
    }

    #[test]
    fn claude_codes_footer_varies_and_is_not_needed() {
        let s = rows(&format!(
            "● hi\n{RULE}\n❯ child task [[reply child done]]\n{RULE}\n  ⏸ manual mode on"
        ));
        assert_eq!(
            read_screen(&s),
            ScreenState::Ready {
                input: "child task [[reply child done]]".into()
            }
        );
        let s = rows(&format!(
            "{RULE}\n❯ \n{RULE}\n  ⏵⏵ auto mode on (shift+tab to cycle) · ← for agents"
        ));
        assert_eq!(read_screen(&s), ScreenState::Ready { input: "".into() });
    }

    #[test]
    fn starting_and_menus_are_other() {
        assert_eq!(read_screen(&rows("  Starting…")), ScreenState::Other);
        let s = rows(&format!("{RULE}\n Rewind\n ❯ (current)\n Esc to cancel"));
        assert_eq!(read_screen(&s), ScreenState::Other);
    }
}
