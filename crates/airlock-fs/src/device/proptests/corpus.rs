//! Replays the hand-written FUSE sessions in `testdata/corpus/fuse/*.fuse` through the same
//! rig and checks as the generated ones, plus the error each request must get.
//!
//! One request per line: `OP NODE [len=N] [reply=N] BODY... [=> ERRNO]`. `OP` is an opcode
//! name (`lookup`, `mknod`, ...) or number; `NODE` a number or `$k`, the k-th node id the
//! session has been given (from 0). Body tokens: `u32:V` and `u64:V` (little-endian, decimal,
//! `0x` or `0o`), `$k` (a node id, u64), `fh:k` (the k-th file handle, u64), `'text'` (with
//! `\0`, `\xHH` and `\` before any other character for itself), hex digit pairs; any token
//! may end in `*N` to repeat it. `len=` overrides the header's length. `=> E` expects the
//! reply's error (`0`, `-22`, ...) or `none` (no reply). `raw HEX...` sends bytes as they are.
//! `#` starts a comment.

// Requests are built by cutting generated numbers down to the fields' widths.
#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use super::*;

const OPCODES: &[(&str, u32)] = &[
    ("lookup", 1),
    ("forget", 2),
    ("getattr", 3),
    ("setattr", 4),
    ("readlink", 5),
    ("symlink", 6),
    ("mknod", 8),
    ("mkdir", 9),
    ("unlink", 10),
    ("rmdir", 11),
    ("rename", 12),
    ("link", 13),
    ("open", 14),
    ("read", 15),
    ("write", 16),
    ("statfs", 17),
    ("release", 18),
    ("fsync", 20),
    ("setxattr", 21),
    ("getxattr", 22),
    ("listxattr", 23),
    ("removexattr", 24),
    ("flush", 25),
    ("init", 26),
    ("opendir", 27),
    ("readdir", 28),
    ("releasedir", 29),
    ("fsyncdir", 30),
    ("getlk", 31),
    ("setlk", 32),
    ("setlkw", 33),
    ("access", 34),
    ("create", 35),
    ("interrupt", 36),
    ("bmap", 37),
    ("destroy", 38),
    ("ioctl", 39),
    ("poll", 40),
    ("batch_forget", 42),
    ("fallocate", 43),
    ("readdirplus", 44),
    ("rename2", 45),
    ("lseek", 46),
    ("copy_file_range", 47),
    ("setupmapping", 48),
    ("removemapping", 49),
    ("syncfs", 50),
    ("tmpfile", 51),
];

/// Splits at spaces outside quotes.
fn tokens(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (None, false, false);
    for (i, c) in line.char_indices() {
        match c {
            '\\' if quoted && !escaped => {
                escaped = true;
                continue;
            }
            '\'' if !escaped => quoted = !quoted,
            '#' if !quoted => {
                if let Some(s) = start.take() {
                    out.push(&line[s..i]);
                }
                return out;
            }
            ' ' | '\t' if !quoted => {
                if let Some(s) = start.take() {
                    out.push(&line[s..i]);
                }
                continue;
            }
            _ => {}
        }
        escaped = false;
        start.get_or_insert(i);
    }
    out.extend(start.map(|s| &line[s..]));
    out
}

fn number(s: &str) -> u64 {
    let parsed = if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
    } else if let Some(o) = s.strip_prefix("0o") {
        u64::from_str_radix(o, 8)
    } else {
        s.parse()
    };
    parsed.unwrap_or_else(|e| panic!("number {s:?}: {e}"))
}

fn index(s: &str, list: &[u64], what: &str) -> u64 {
    let k = usize::try_from(number(s)).unwrap_or(usize::MAX);
    *list
        .get(k)
        .unwrap_or_else(|| panic!("{what} {k} not given yet ({} so far)", list.len()))
}

fn token_bytes(token: &str, known: &Known) -> Vec<u8> {
    let (token, times) = match token.rsplit_once('*') {
        Some((t, n)) if !t.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (t, number(n) as usize)
        }
        _ => (token, 1),
    };
    let one = if let Some(text) = token.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        let mut out = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match (c, c == '\\') {
                (_, false) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                (_, true) => match chars.next() {
                    Some('0') => out.push(0),
                    Some('x') => {
                        let hex: String = chars.by_ref().take(2).collect();
                        out.push(u8::from_str_radix(&hex, 16).unwrap_or_else(|e| panic!("{e}")));
                    }
                    Some(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    None => panic!("trailing backslash in {token:?}"),
                },
            }
        }
        out
    } else if let Some(v) = token.strip_prefix("u32:") {
        (number(v) as u32).to_le_bytes().to_vec()
    } else if let Some(v) = token.strip_prefix("u64:") {
        number(v).to_le_bytes().to_vec()
    } else if let Some(k) = token.strip_prefix('$') {
        index(k, &known.nodes, "node").to_le_bytes().to_vec()
    } else if let Some(k) = token.strip_prefix("fh:") {
        index(k, &known.handles, "handle").to_le_bytes().to_vec()
    } else {
        assert!(token.len() % 2 == 0, "odd hex token {token:?}");
        (0..token.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&token[i..i + 2], 16)
                    .unwrap_or_else(|e| panic!("{token:?}: {e}"))
            })
            .collect()
    };
    one.repeat(times)
}

/// One line as (opcode, request bytes, reply buffer size, expected error).
fn request_of(line: &str, unique: u64, known: &Known) -> Option<(u32, Vec<u8>, u32, Option<i32>)> {
    let mut toks = tokens(line);
    if toks.is_empty() {
        return None;
    }
    let mut expect = None;
    if let Some(at) = toks.iter().position(|t| *t == "=>") {
        let e = toks
            .get(at + 1)
            .copied()
            .unwrap_or_else(|| panic!("nothing after =>"));
        expect = Some(if e == "none" {
            1
        } else {
            e.parse().unwrap_or_else(|_| panic!("errno {e:?}"))
        });
        toks.truncate(at);
    }
    let (mut len, mut reply) = (None, 8192u32);
    toks.retain(|t| {
        if let Some(v) = t.strip_prefix("len=") {
            len = Some(number(v) as u32);
        } else if let Some(v) = t.strip_prefix("reply=") {
            reply = number(v) as u32;
        } else {
            return true;
        }
        false
    });
    if toks[0] == "raw" {
        let bytes = toks[1..]
            .iter()
            .flat_map(|t| token_bytes(t, known))
            .collect();
        return Some((0, bytes, reply, expect));
    }
    let op = OPCODES
        .iter()
        .find(|(n, _)| *n == toks[0])
        .map_or_else(|| number(toks[0]) as u32, |(_, op)| *op);
    let node = match toks.get(1) {
        Some(t) if t.starts_with('$') => index(&t[1..], &known.nodes, "node"),
        Some(t) => number(t),
        None => panic!("no node in {line:?}"),
    };
    let body: Vec<u8> = toks[2..]
        .iter()
        .flat_map(|t| token_bytes(t, known))
        .collect();
    let mut out = Vec::new();
    out.extend_from_slice(&len.unwrap_or(40 + body.len() as u32).to_le_bytes());
    out.extend_from_slice(&op.to_le_bytes());
    out.extend_from_slice(&unique.to_le_bytes());
    out.extend_from_slice(&node.to_le_bytes());
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&body);
    Some((op, out, reply, expect))
}

fn send_lines(rig: &Rig, known: &mut Known, text: String) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let unique = n as u64 + 1;
        let Some((op, bytes, reply_len, expect)) = request_of(line, unique, known) else {
            continue;
        };
        let at = |e: String| format!("line {}: {e}", n + 1);
        let reply = rig.send(&bytes, None, reply_len).map_err(at)?;
        let error = check_reply(op, unique, &reply, known).map_err(at)?;
        if let Some(want) = expect
            && want != error
        {
            let show = |e: i32| {
                if e == 1 {
                    "none".to_owned()
                } else {
                    e.to_string()
                }
            };
            return Err(at(format!(
                "error {}, expected {}",
                show(error),
                show(want)
            )));
        }
    }
    Ok(())
}

#[test]
fn corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/corpus/fuse");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        for resident in [1, crate::MAX_RESIDENT] {
            let limits = Limits {
                resident,
                quota: None,
            };
            run_session(limits, text.clone(), send_lines)
                .unwrap_or_else(|e| panic!("{} (resident {resident}): {e}", path.display()));
        }
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} corpus sessions");
}
