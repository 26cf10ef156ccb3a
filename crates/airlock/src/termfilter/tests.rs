use proptest::prelude::*;

use super::*;

/// Filters `input` in one piece; returns the output and the number of removed sequences.
fn run(input: &[u8]) -> (Vec<u8>, u64) {
    let mut f = TermFilter::new();
    let mut out = Vec::new();
    f.feed(input, &mut out);
    f.finish(&mut out);
    (out, f.removed())
}

/// Filters `input` one byte at a time, checking the held bytes stay bounded.
fn run_bytewise(input: &[u8]) -> (Vec<u8>, u64) {
    let mut f = TermFilter::new();
    let mut out = Vec::new();
    for b in input {
        f.feed(std::slice::from_ref(b), &mut out);
        assert!(f.held() <= MAX_PENDING + 1, "{} bytes held", f.held());
    }
    f.finish(&mut out);
    (out, f.removed())
}

#[track_caller]
fn check(input: &[u8], want: &[u8], removed: u64) {
    let got = run(input);
    assert_eq!(
        (got.0.escape_ascii().to_string(), got.1),
        (want.escape_ascii().to_string(), removed),
        "input {}",
        input.escape_ascii()
    );
    assert_eq!(
        run_bytewise(input),
        got,
        "byte by byte: {}",
        input.escape_ascii()
    );
}

#[test]
fn clipboard_and_title_sequences_are_removed_with_every_introducer_and_terminator() {
    let cases: &[(&[u8], &[u8], u64)] = &[
        (b"a\x1b]52;c;aGVsbG8=\x07b", b"ab", 1),
        (b"\x1b]52;;aGk=\x1b\\", b"", 1),
        (b"\x1b]0;t\x07\x1b]1;t\x07\x1b]2;t\x1b\\", b"", 3),
        (b"\x9d2;t\x9c.", b".", 1),
        (b"\xc2\x9d52;c;x\xc2\x9c.", b".", 1),
        (b"\x1b\x9d2;t\x07.", b".", 1),
        (b"\x1b\xc2\x9d2;t\x07.", b".", 1),
        // Leading zeros, an empty number, C0 bytes that terminals skip inside the number.
        (b"\x1b]052;c;x\x07", b"", 1),
        (b"\x1b];t\x07", b"", 1),
        (b"\x1b]5\n2;c;x\x07", b"", 1),
        (b"\x1b]\r2;t\x07", b"", 1),
        // dtterm titles, Konsole's tab title, kitty's and iTerm2's clipboards.
        (b"\x1b]lT\x1b\\\x1b]LI\x1b\\", b"", 2),
        (b"\x1b]30;tab\x07\x1b]5522;type=write\x07", b"", 2),
        (b"\x1b]1337;Copy=:aGk=\x07", b"", 1),
        (
            b"\x1b]1337;CopyToClipboard=\x07x\x1b]1337;endcopy\x07",
            b"x",
            2,
        ),
        // A bodiless title OSC, and one the next escape aborts.
        (b"\x1b]2\x07.", b".", 1),
        (b"\x1b]2\x1b[1m.", b"\x1b[1m.", 1),
        // An escape inside a removed body ends it and starts anew, as in a terminal.
        (b"\x1b]2;t\x1b[1mX", b"\x1b[1mX", 1),
        (b"\x1b]2;t\x18X", b"X", 1),
        // tmux and screen passthrough wrap the sequence in a DCS with a doubled ESC.
        (
            b"\x1bPtmux;\x1b\x1b]52;c;x\x07\x1b\\",
            b"\x1bPtmux;\x1b\\",
            1,
        ),
        (b"\x1bP\x1b]2;t\x07\x1b\\", b"\x1bP\x1b\\", 1),
        // Inside a kept OSC an ESC ends it; what follows is looked at afresh.
        (b"\x1b]8;;\x1b]52;c;x\x07", b"\x1b]8;;", 1),
    ];
    for (input, want, removed) in cases {
        check(input, want, *removed);
    }
}

#[test]
fn everything_else_passes_byte_for_byte() {
    let cases: &[&[u8]] = &[
        b"\x1b[31mred\x1b[0m \x1b[1;38;5;208mbold\x1b[m",
        b"\x1b[2J\x1b[H\x1b[10;5H\x1b[?25l\x1b[?1049h\x1b7\x1b8\x1bc",
        b"\x1b]8;;https://example.com/\x1b\\link\x1b]8;;\x1b\\",
        b"\x1b]7;file://host/work\x07\x1b]133;A\x07$ \x1b]133;B\x07",
        b"\x1b]104\x07\x1b]4;1;rgb:ff/00/00\x1b\\\x1b]10;?\x07",
        b"\x1b]1337;File=inline=1:AAAA\x07\x1b]1337;SetMark\x07",
        b"\x1bP1$r\x1b\\\x1b_apc\x1b\\",
        "\u{275d}quote\u{275e} \u{271c} \u{4e1d} \u{dd} \u{9b}".as_bytes(),
        b"plain\ttext\r\n\x07bell \x9c \xff\xfe bytes \xc2",
        b"\x1b\x1b[1m",
    ];
    for input in cases {
        check(input, input, 0);
    }
}

#[test]
fn an_undecided_sequence_at_the_end_is_dropped() {
    check(b"x\x1b", b"x", 0);
    check(b"x\x1b\x1b", b"x", 0);
    check(b"x\x1b]", b"x", 0);
    check(b"x\x1b]5", b"x", 0);
    check(b"x\x1b]1337;Cop", b"x", 0);
    check(b"x\x1b]2\x1b", b"x", 1);
    check(b"x\xc2", b"x\xc2", 0);
    check(b"x\x1b\xe2\x9d", b"x", 0);
}

#[test]
fn memory_is_bounded() {
    // A number longer than MAX_PENDING is removed, and its body dropped to the terminator.
    let mut long = b"\x1b]".to_vec();
    long.extend(std::iter::repeat_n(b'0', 100));
    long.extend_from_slice(b";x\x07after");
    check(&long, b"after", 1);
    let mut skipped = b"\x1b]".to_vec();
    skipped.extend(std::iter::repeat_n(b'\n', 100));
    skipped.extend_from_slice(b"8;;u\x07after");
    check(&skipped, b"after", 1);
    // An unterminated body is dropped up to MAX_DROPPED bytes, then output passes again.
    let mut body = b"\x1b]52".to_vec();
    body.extend(std::iter::repeat_n(b'A', MAX_DROPPED));
    body.extend_from_slice(b"visible");
    assert_eq!(run(&body), (b"visible".to_vec(), 1));
    // A long run of ESC is held as a few.
    let mut escs = vec![ESC; 1000];
    escs.extend_from_slice(b"]2;t\x07.");
    check(&escs, b".", 1);
}

#[test]
fn output_never_ends_where_the_other_stream_could_finish_a_sequence() {
    for input in [
        &b"a\x1b"[..],
        b"a\x1b\x1b",
        b"a\x1b]5",
        b"a\x1b]1337;Co",
        b"a\x1b]",
    ] {
        let mut f = TermFilter::new();
        let mut out = Vec::new();
        f.feed(input, &mut out);
        assert_eq!(out, b"a", "{}", input.escape_ascii());
    }
}

/// A UTF-8 terminal's view: does `out` hold an OSC that sets the clipboard or a title? Written
/// apart from the filter (a plain scan), to check it.
fn dangerous(out: &[u8]) -> bool {
    let mut cont = 0u8;
    for (i, &b) in out.iter().enumerate() {
        let body = match b {
            ESC => {
                let after = out.get(i..).unwrap_or_default();
                let run = after.iter().take_while(|c| **c == ESC).count();
                match after.get(run..).unwrap_or_default() {
                    [b']' | C1_OSC, rest @ ..] | [C2, C1_OSC, rest @ ..] => Some(rest),
                    _ => None,
                }
            }
            C2 if cont == 0 && out.get(i + 1) == Some(&C1_OSC) => out.get(i + 2..),
            C1_OSC if cont == 0 => out.get(i + 1..),
            _ => None,
        };
        if body.is_some_and(removed_osc) {
            return true;
        }
        cont = if cont > 0 && is_continuation(b) {
            cont - 1
        } else {
            continuations(b)
        };
    }
    false
}

/// Whether an OSC body (after the introducer) is one the filter must remove.
fn removed_osc(body: &[u8]) -> bool {
    let ends = |n: Option<u8>| matches!(n, Some(b';' | BEL | ESC));
    let mut rest = body
        .iter()
        .copied()
        .filter(|c| !ignored_in_osc(*c))
        .peekable();
    let mut digits = String::new();
    while let Some(d) = rest.next_if(u8::is_ascii_digit) {
        digits.push(char::from(d));
    }
    let next = rest.next();
    if digits.is_empty() {
        return matches!(next, Some(b';' | b'l' | b'L'));
    }
    let value: u64 = digits.parse().unwrap_or(u64::MAX);
    if value == 1337 && next == Some(b';') {
        let mut key = String::new();
        while let Some(c) = rest.next_if(u8::is_ascii_alphanumeric) {
            key.push(char::from(c.to_ascii_lowercase()));
        }
        return ["copy", "copytoclipboard", "endcopy"].contains(&key.as_str())
            && matches!(rest.next(), Some(b'=' | b';' | BEL | ESC));
    }
    [0, 1, 2, 30, 52, 5522].contains(&value) && ends(next)
}

#[test]
fn the_reference_scan_finds_what_it_should() {
    assert!(dangerous(b"x\x1b]52;c;x\x07"));
    assert!(dangerous(b"\x1b\x1b]2;t"));
    assert!(dangerous(b"\xc2\x9d0;t"));
    assert!(dangerous(b"\x9d5\n2;"));
    assert!(dangerous(b"\x1b]1337;Copy=:x"));
    assert!(!dangerous(b"\x1b]8;;u\x07"));
    assert!(!dangerous("\u{4e1d}52;".as_bytes()));
    assert!(!dangerous(b"\x1b]5"));
}

/// Pieces that make escape sequences likely.
const PIECES: &[&[u8]] = &[
    b"\x1b",
    b"]",
    b"\x9d",
    b"\x9c",
    b"\xc2",
    b"\xe2",
    b"52",
    b"5",
    b"2",
    b"0",
    b"1",
    b"30",
    b"1337",
    b"5522",
    b"8",
    b";",
    b"Copy",
    b"=",
    b"\x07",
    b"\\",
    b"\n",
    b"\x18",
    b"l",
    b"a",
    b"[31m",
    b"P",
    b"\xe4\xb8\x9d",
    b"\x7f",
    b"\xff",
];

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(PIECES), 0..60).prop_map(|p| p.concat()),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn output_never_sets_the_clipboard_or_a_title(input in input()) {
        let (out, _) = run_bytewise(&input);
        prop_assert!(!dangerous(&out), "{} -> {}", input.escape_ascii(), out.escape_ascii());
    }

    #[test]
    fn no_prefix_of_the_output_lets_the_other_stream_finish_a_sequence(input in input()) {
        // What the other stream's filter may write: plain text that would complete one.
        let tails: [&[u8]; 4] = [b"]52;c;x\x07", b"52;c;x\x07", b"2;t\x07", b";t\x07"];
        let mut f = TermFilter::new();
        let mut out = Vec::new();
        for b in &input {
            f.feed(std::slice::from_ref(b), &mut out);
            for tail in tails {
                let joined = [out.as_slice(), tail].concat();
                prop_assert!(
                    !dangerous(&joined),
                    "{} then {}",
                    out.escape_ascii(),
                    tail.escape_ascii()
                );
            }
        }
    }

    #[test]
    fn text_without_escape_or_c1_osc_passes_unchanged(
        input in prop::collection::vec(any::<u8>().prop_filter("no ESC, no 9D", |b| *b != ESC && *b != C1_OSC), 0..300)
    ) {
        prop_assert_eq!(run(&input), (input.clone(), 0));
    }

    #[test]
    fn chunking_never_changes_the_output(
        input in input(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        at.sort_unstable();
        let mut f = TermFilter::new();
        let mut out = Vec::new();
        let mut from = 0;
        for to in at.into_iter().chain([input.len()]) {
            f.feed(input.get(from..to).unwrap_or_default(), &mut out);
            from = to;
        }
        f.finish(&mut out);
        prop_assert_eq!((out, f.removed()), run(&input));
    }
}
