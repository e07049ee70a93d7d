//! Making message text safe to type into a terminal.

use crate::error::{Error, Result};

/// Cleans `text` for typing into an agent's terminal and checks its size.
///
/// - Escape sequences (CSI, OSC, DCS, …) are removed whole, so nothing can move the cursor,
///   change the title or reprogram the terminal.
/// - Other control characters (C0 but newline and tab, DEL, C1) are removed.
/// - `\r\n` and lone `\r` become `\n`.
/// - Trailing whitespace is dropped (a trailing newline would otherwise submit early).
///
/// Errors: [`Error::InvalidInput`] when nothing printable is left, or when the result is
/// longer than `max_bytes`.
pub fn sanitize_message(text: &str, max_bytes: usize) -> Result<String> {
    let mut out = strip_controls(text);
    let trimmed_len = out.trim_end().len();
    out.truncate(trimmed_len);
    if out.trim().is_empty() {
        return Err(Error::InvalidInput(
            "the message is empty (after removing control characters)".into(),
        ));
    }
    if out.len() > max_bytes {
        return Err(Error::InvalidInput(format!(
            "the message is {} bytes; the limit is {max_bytes} (delivery.max_message_bytes)",
            out.len()
        )));
    }
    Ok(out)
}

/// Agent-controlled text made safe to print on one line of an operator's terminal: what
/// [`strip_controls`] leaves, with newlines and tabs shown as spaces.
pub fn display_line(text: &str) -> String {
    strip_controls(text)
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect()
}

/// `text` without escape sequences, control characters other than newline and tab, and
/// bidirectional overrides; `\r\n` and lone `\r` become `\n`. What is left cannot move a
/// cursor, set a title, write a clipboard or reprogram a terminal.
pub fn strip_controls(text: &str) -> String {
    clean(text, false)
}

/// A styled screen row (as [`crate::TerminalBackend::capture_styled`] gives it) with
/// nothing left but its text and its SGR sequences (`ESC [ digits ; … m`: colours and text
/// attributes), for a viewer that shows colours: every other sequence and control
/// character goes as in [`strip_controls`], and a cursor-forward (`ESC [ n C`, which some
/// terminals use for blank cells) becomes that many spaces.
pub fn keep_sgr(text: &str) -> String {
    clean(text, true)
}

fn clean(text: &str, keep_sgr: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' if keep_sgr && chars.peek() == Some(&'[') => {
                chars.next();
                keep_sgr_only(&mut chars, &mut out);
            }
            '\u{1b}' => skip_escape_sequence(&mut chars),
            // The 8-bit forms of CSI and of the string sequences (DCS, SOS, OSC, PM, APC).
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            // Unicode bidirectional overrides can make text display differently from what
            // the agent receives.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Reads a CSI sequence whose `ESC [` was just read, and writes it back only if it is an
/// SGR; a cursor-forward becomes spaces.
fn keep_sgr_only(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String) {
    let mut params = String::new();
    let mut last = None;
    for c in chars.by_ref() {
        if ('@'..='~').contains(&c) {
            last = Some(c);
            break;
        }
        params.push(c);
    }
    let numeric = params
        .chars()
        .all(|c| c.is_ascii_digit() || c == ';' || c == ':');
    match last {
        Some('m') if numeric && params.len() <= 64 => {
            out.push_str("\u{1b}[");
            out.push_str(&params);
            out.push('m');
        }
        Some('C') if numeric => {
            let n = params.parse::<usize>().unwrap_or(1).clamp(1, 1000);
            out.extend(std::iter::repeat_n(' ', n));
        }
        _ => {}
    }
}

/// Consumes the rest of an escape sequence whose ESC was just read.
fn skip_escape_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.peek().copied() {
        Some('[') => {
            chars.next();
            skip_csi(chars);
        }
        Some(']' | 'P' | 'X' | '^' | '_') => {
            chars.next();
            skip_string(chars);
        }
        // Sequences with one more character: charset designation (ESC ( B …), line
        // attributes (ESC # 8), single shifts (ESC N x, ESC O x).
        Some('(' | ')' | '*' | '+' | '#' | '%' | 'N' | 'O') => {
            chars.next();
            chars.next();
        }
        // ESC c, ESC 7, ESC =, …
        Some(_) => {
            chars.next();
        }
        None => {}
    }
}

/// CSI: parameters and intermediates, then one final byte in `@..=~`.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('@'..='~').contains(&c) {
            break;
        }
    }
}

/// OSC, DCS, SOS, PM, APC: everything up to BEL or ST (`ESC \` or U+009C).
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        if c == '\u{7}' || c == '\u{9c}' {
            break;
        }
        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
            chars.next();
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styled_rows_keep_only_their_colours() {
        let row = "\u{1b}[1;38;5;208mhot\u{1b}[0m \u{1b}]0;title\u{7}x\u{1b}[3Cy\u{1b}[2Jz\u{7}";
        assert_eq!(keep_sgr(row), "\u{1b}[1;38;5;208mhot\u{1b}[0m x   yz");
        assert_eq!(strip_controls(&keep_sgr(row)), "hot x   yz");
        // A long or non-numeric "SGR" is not one.
        assert_eq!(keep_sgr("\u{1b}[?25ma"), "a");
    }

    fn clean(s: &str) -> String {
        sanitize_message(s, 1 << 20).unwrap()
    }

    #[test]
    fn escape_sequences_are_removed_whole() {
        assert_eq!(clean("a\u{1b}[2J\u{1b}[1;1Hb"), "ab");
        assert_eq!(clean("x\u{1b}]0;evil title\u{7}y"), "xy");
        assert_eq!(
            clean("x\u{1b}]8;;http://e\u{1b}\\link\u{1b}]8;;\u{1b}\\y"),
            "xlinky"
        );
        assert_eq!(clean("a\u{1b}cb\u{1b}(Bc"), "abc");
        assert_eq!(clean("\u{1b}[200~paste\u{1b}[201~"), "paste");
    }

    #[test]
    fn controls_go_newlines_and_tabs_stay() {
        assert_eq!(clean("a\u{0}b\u{7}c\u{8}d\u{7f}e\u{9b}31mf"), "abcdef");
        assert_eq!(clean("x\u{9d}0;title\u{9c}y\u{1b}OPz"), "xyz");
        assert_eq!(
            clean("one\r\ntwo\rthree\n\tfour"),
            "one\ntwo\nthree\n\tfour"
        );
        assert_eq!(clean("unicode ✓ 日本 🚀"), "unicode ✓ 日本 🚀");
        assert_eq!(clean("trailing newline\n\n"), "trailing newline");
        assert_eq!(clean("a\u{202e}b"), "ab");
    }

    #[test]
    fn empty_and_oversized_messages_are_refused() {
        assert!(sanitize_message("", 10).is_err());
        assert!(sanitize_message("\u{1b}[2J\n \t", 10).is_err());
        let err = sanitize_message(&"x".repeat(11), 10).unwrap_err();
        assert!(err.to_string().contains("limit is 10"), "{err}");
    }
}
