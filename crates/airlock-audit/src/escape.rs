//! Escaping of guest-controlled text for human output. In the log itself JSON encoding already
//! escapes `\n`, `"` and C0 controls, so a guest path can never start a new record; but
//! `audit show`, `events -f` and error messages print decoded strings to a terminal, where an
//! ESC could set the window title or rewrite earlier lines and a bidi override could make
//! `evil<U+202E>txt.exe` read as `evilexe.txt`. Everything that prints guest text calls
//! [`display_safe`].

use std::fmt::Write as _;

/// Returns `s` with every character that a terminal or text renderer could interpret escaped,
/// so the result is one line of plain, unambiguous text:
///
/// - `\` → `\\` (so escapes in the output cannot be confused with literal text);
/// - `\n`, `\r`, `\t` → `\n`, `\r`, `\t`;
/// - other C0 controls (U+0000–U+001F, including ESC) and DEL → `\xNN`, e.g. `\x1b`;
/// - C1 controls (U+0080–U+009F, which some terminals treat like ESC sequences) → `\u{NN}`;
/// - Unicode format characters that reorder or hide text → `\u{NNNN}`: bidi embeddings,
///   overrides and isolates (U+202A–U+202E, U+2066–U+2069), marks (U+200E, U+200F, U+061C),
///   zero-width characters (U+200B–U+200D, U+2060, U+FEFF), and the line/paragraph
///   separators U+2028/U+2029.
pub fn display_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_unicode_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// True for the non-ASCII characters [`display_safe`] escapes as `\u{...}`.
fn needs_unicode_escape(c: char) -> bool {
    matches!(
        c,
        '\u{80}'..='\u{9f}'
            | '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// The last `n` lines of a text file (a guest console, a gateway's or the engine's log), each
/// made safe with [`display_safe`] and joined with newlines; empty if it cannot be read.
pub fn tail_lines(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .iter()
        .map(|l| display_safe(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_forged_lines_and_terminal_sequences() {
        let name = "a\nb\x1b]0;title\x07c";
        assert_eq!(display_safe(name), r"a\nb\x1b]0;title\x07c");
        assert!(!display_safe(name).chars().any(char::is_control));
    }

    #[test]
    fn table() {
        let cases = [
            ("plain/path.txt", "plain/path.txt"),
            ("", ""),
            ("tab\there\r", r"tab\there\r"),
            (r"back\slash", r"back\\slash"),
            ("nul\0del\x7f", r"nul\x00del\x7f"),
            ("csi\x1b[2J", r"csi\x1b[2J"),
            ("c1\u{9b}2J", r"c1\u{9b}2J"),
            ("evil\u{202e}txt.exe", r"evil\u{202e}txt.exe"),
            ("\u{2066}x\u{2069}", r"\u{2066}x\u{2069}"),
            ("\u{200e}\u{200f}\u{061c}", r"\u{200e}\u{200f}\u{61c}"),
            ("zero\u{200b}width\u{feff}", r"zero\u{200b}width\u{feff}"),
            ("line\u{2028}sep", r"line\u{2028}sep"),
            ("ünïcödé ✓ 日本", "ünïcödé ✓ 日本"),
        ];
        for (input, want) in cases {
            assert_eq!(display_safe(input), want, "{input:?}");
        }
    }
}
