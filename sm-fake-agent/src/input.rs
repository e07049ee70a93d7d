//! Turns the bytes a terminal sends into key presses, the way a TUI like Claude Code reads
//! them — including its quirks: a lone Escape is only known after a short pause, Escape
//! followed at once by a character is an Alt-chord (the character is swallowed), and an
//! Enter that arrives in the same burst as typed text counts as part of the text.

/// One thing the user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Typed or burst text (may contain newlines from a burst).
    Text(String),
    /// A bracketed paste, whole.
    Paste(String),
    /// Enter on its own.
    Enter,
    /// Escape on its own.
    Escape,
    /// Ctrl-C.
    CtrlC,
    /// Ctrl-U.
    CtrlU,
    /// Ctrl-D.
    CtrlD,
    /// Backspace.
    Backspace,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
}

const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";

/// Incremental decoder; feed it each chunk read from the terminal.
#[derive(Default)]
pub struct Decoder {
    /// Bytes of an unfinished sequence (paste, escape, UTF-8) carried to the next chunk.
    carry: Vec<u8>,
    in_paste: bool,
    paste: Vec<u8>,
}

impl Decoder {
    /// True when the last chunk ended in a lone ESC that may still start a sequence; the
    /// reader waits briefly for more bytes and calls [`Decoder::flush_escape`] if none come.
    pub fn pending_escape(&self) -> bool {
        !self.in_paste && self.carry == [0x1b]
    }

    /// The pause passed with nothing after the ESC: it was the Escape key.
    pub fn flush_escape(&mut self) -> Vec<Input> {
        if self.pending_escape() {
            self.carry.clear();
            vec![Input::Escape]
        } else {
            Vec::new()
        }
    }

    /// Decodes one chunk of input.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Input> {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < bytes.len() {
            if self.in_paste {
                match find(&bytes[i..], PASTE_END) {
                    Some(end) => {
                        self.paste.extend_from_slice(&bytes[i..i + end]);
                        i += end + PASTE_END.len();
                        self.in_paste = false;
                        let content = String::from_utf8_lossy(&std::mem::take(&mut self.paste))
                            .replace("\r\n", "\n")
                            .replace('\r', "\n");
                        flush_text(&mut text, &mut out);
                        out.push(Input::Paste(content));
                    }
                    None => {
                        // Keep a possible partial end marker for the next chunk.
                        let keep = partial_suffix(&bytes[i..], PASTE_END);
                        let upto = bytes.len() - keep;
                        self.paste.extend_from_slice(&bytes[i..upto]);
                        self.carry = bytes[upto..].to_vec();
                        i = bytes.len();
                    }
                }
                continue;
            }
            let b = bytes[i];
            match b {
                0x1b => {
                    let rest = &bytes[i..];
                    if rest.len() == 1 {
                        flush_text(&mut text, &mut out);
                        self.carry = vec![0x1b];
                        i += 1;
                    } else if rest[1] == 0x1b {
                        // Two escapes in a row: the first is the Escape key.
                        flush_text(&mut text, &mut out);
                        out.push(Input::Escape);
                        i += 1;
                    } else if rest.starts_with(PASTE_START) {
                        flush_text(&mut text, &mut out);
                        self.in_paste = true;
                        i += PASTE_START.len();
                    } else if PASTE_START.starts_with(rest) {
                        self.carry = rest.to_vec();
                        i = bytes.len();
                    } else if rest[1] == b'[' || rest[1] == b'O' {
                        // CSI / SS3: parameters, then a final byte in 0x40..=0x7e.
                        let start = 2;
                        let end = rest[start..]
                            .iter()
                            .position(|c| (0x40..=0x7e).contains(c))
                            .map(|p| start + p);
                        match end {
                            Some(e) => {
                                flush_text(&mut text, &mut out);
                                match rest[e] {
                                    b'A' => out.push(Input::Up),
                                    b'B' => out.push(Input::Down),
                                    _ => {}
                                }
                                i += e + 1;
                            }
                            None => {
                                self.carry = rest.to_vec();
                                i = bytes.len();
                            }
                        }
                    } else {
                        // Escape immediately followed by a key: an Alt chord. The key is
                        // consumed by it, as in the real TUI.
                        flush_text(&mut text, &mut out);
                        let len = utf8_len(rest[1]).min(rest.len() - 1);
                        i += 1 + len;
                    }
                }
                b'\r' => {
                    // Enter in the same burst as typed text is taken as part of a paste.
                    if text.is_empty() {
                        out.push(Input::Enter);
                    } else {
                        text.push('\n');
                    }
                    i += 1;
                }
                b'\n' => {
                    text.push('\n');
                    i += 1;
                }
                b'\t' => {
                    text.push('\t');
                    i += 1;
                }
                0x7f | 0x08 => {
                    flush_text(&mut text, &mut out);
                    out.push(Input::Backspace);
                    i += 1;
                }
                0x03 => {
                    flush_text(&mut text, &mut out);
                    out.push(Input::CtrlC);
                    i += 1;
                }
                0x15 => {
                    flush_text(&mut text, &mut out);
                    out.push(Input::CtrlU);
                    i += 1;
                }
                0x04 => {
                    flush_text(&mut text, &mut out);
                    out.push(Input::CtrlD);
                    i += 1;
                }
                c if c < 0x20 => i += 1,
                c => {
                    let len = utf8_len(c);
                    if i + len > bytes.len() {
                        self.carry = bytes[i..].to_vec();
                        i = bytes.len();
                    } else {
                        text.push_str(&String::from_utf8_lossy(&bytes[i..i + len]));
                        i += len;
                    }
                }
            }
        }
        flush_text(&mut text, &mut out);
        out
    }
}

fn flush_text(text: &mut String, out: &mut Vec<Input>) {
    if !text.is_empty() {
        out.push(Input::Text(std::mem::take(text)));
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xf7 => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Length of the longest suffix of `bytes` that is a proper prefix of `marker`.
fn partial_suffix(bytes: &[u8], marker: &[u8]) -> usize {
    (1..marker.len())
        .rev()
        .find(|&n| n <= bytes.len() && marker.starts_with(&bytes[bytes.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_alone_submits_but_enter_in_a_burst_is_text() {
        let mut d = Decoder::default();
        assert_eq!(d.feed(b"\r"), vec![Input::Enter]);
        assert_eq!(d.feed(b"hi\r"), vec![Input::Text("hi\n".into())]);
    }

    #[test]
    fn bracketed_paste_across_chunks() {
        let mut d = Decoder::default();
        assert_eq!(d.feed(b"\x1b[200~a\rb"), vec![]);
        assert_eq!(d.feed(b"c\x1b[20"), vec![]);
        assert_eq!(
            d.feed(b"1~x"),
            vec![Input::Paste("a\nbc".into()), Input::Text("x".into())]
        );
    }

    #[test]
    fn lone_escape_waits_and_alt_chords_swallow_the_key() {
        let mut d = Decoder::default();
        assert_eq!(d.feed(b"\x1b"), vec![]);
        assert!(d.pending_escape());
        assert_eq!(d.flush_escape(), vec![Input::Escape]);
        assert_eq!(d.feed(b"\x1bxy"), vec![Input::Text("y".into())]);
        assert_eq!(d.feed(b"\x1b[A\x1bOB"), vec![Input::Up, Input::Down]);
        assert_eq!(d.feed(b"\x1b\x1b"), vec![Input::Escape]);
        assert_eq!(d.flush_escape(), vec![Input::Escape]);
    }

    #[test]
    fn utf8_split_across_chunks() {
        let mut d = Decoder::default();
        let s = "✓".as_bytes();
        assert_eq!(d.feed(&s[..1]), vec![]);
        assert_eq!(d.feed(&s[1..]), vec![Input::Text("✓".into())]);
    }
}
