//! Fuzzing the vsock framing and every message type decoded from it, on stable Rust as
//! property tests (`docs/fuzzing.md`). The host decodes [`GuestEvent`] (control connection)
//! and [`ExecEvent`] (exec connections) from guest bytes; the guest decodes the other three
//! from the host. Each run also replays the hand-made inputs in `testdata/corpus/frames/`.
//! Run longer with `PROPTEST_CASES=100000 cargo test -p airlock-proto --test fuzz_frames`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use airlock_proto::codec::{MAX_FRAME_LEN, decode};
use airlock_proto::{
    BootStages, CodecError, ControlRequest, Decoder, ExecControl, ExecEvent, ExecRequest,
    ExitStatus, Frame, GuestEvent, GuestTimings, SeccompProfile, SpawnFailure, Stream, WindowSize,
    encode,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `default` cases per run unless `PROPTEST_CASES` says otherwise. Failing inputs are kept in
/// `proptest-regressions/` (found by path: proptest looks for `lib.rs` beside a source file).
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz_frames.txt"
        )))),
        ..ProptestConfig::default()
    }
}

fn exit_status() -> impl Strategy<Value = ExitStatus> {
    prop_oneof![
        any::<i32>().prop_map(|code| ExitStatus::Code { code }),
        any::<i32>().prop_map(|signal| ExitStatus::Signal { signal }),
    ]
}

fn window() -> impl Strategy<Value = WindowSize> {
    (any::<u16>(), any::<u16>()).prop_map(|(rows, cols)| WindowSize { rows, cols })
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(any::<String>(), 0..4)
}

fn guest_event() -> impl Strategy<Value = GuestEvent> {
    prop_oneof![
        (
            any::<u32>(),
            any::<String>(),
            any::<String>(),
            any::<u64>(),
            any::<(u64, u64)>()
        )
            .prop_map(
                |(protocol, agent_version, kernel_release, uptime_ms, (start, init))| {
                    GuestEvent::Ready {
                        protocol,
                        agent_version,
                        kernel_release,
                        uptime_ms,
                        boot: BootStages {
                            agent_start_ms: start,
                            init_done_ms: init,
                        },
                    }
                }
            ),
        any::<u32>().prop_map(|id| GuestEvent::Mounted { id }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            strings(),
            any::<bool>(),
            any::<String>()
        )
            .prop_map(|(pid, ppid, uid, argv, argv_truncated, cwd)| {
                GuestEvent::ProcExec {
                    pid,
                    ppid,
                    uid,
                    argv,
                    argv_truncated,
                    cwd,
                }
            }),
        (any::<u32>(), any::<String>(), any::<String>()).prop_map(|(pid, syscall, reason)| {
            GuestEvent::SyscallDenied {
                pid,
                syscall,
                reason,
            }
        }),
        (any::<u32>(), exit_status())
            .prop_map(|(pid, status)| GuestEvent::ProcExit { pid, status }),
        any::<u64>().prop_map(|count| GuestEvent::EventsDropped { count }),
        Just(GuestEvent::Bye {}),
        (any::<u32>(), any::<String>())
            .prop_map(|(id, message)| GuestEvent::MountFailed { id, message }),
        any::<u32>().prop_map(|id| GuestEvent::Configured { id }),
        (any::<u32>(), any::<String>())
            .prop_map(|(id, message)| GuestEvent::ConfigureFailed { id, message }),
    ]
}

fn exec_event() -> impl Strategy<Value = ExecEvent> {
    let reason = prop_oneof![
        Just(SpawnFailure::NotFound),
        Just(SpawnFailure::PermissionDenied),
        Just(SpawnFailure::InvalidRequest),
        Just(SpawnFailure::Other),
    ];
    prop_oneof![
        any::<u32>().prop_map(|pid| ExecEvent::Started { pid }),
        (reason, any::<String>())
            .prop_map(|(reason, message)| ExecEvent::SpawnFailed { reason, message }),
        (exit_status(), any::<u32>(), any::<[u64; 5]>()).prop_map(|(status, oom_kills, t)| {
            ExecEvent::Exited {
                status,
                oom_kills,
                timings: GuestTimings {
                    request_us: t[0],
                    setup_us: t[1],
                    spawn_us: t[2],
                    run_us: t[3],
                    drain_us: t[4],
                },
            }
        }),
    ]
}

fn exec_request() -> impl Strategy<Value = ExecRequest> {
    let seccomp = prop_oneof![
        Just(SeccompProfile::Default),
        Just(SeccompProfile::Strict),
        Just(SeccompProfile::Unconfined),
    ];
    (
        strings(),
        proptest::collection::vec((any::<String>(), any::<String>()), 0..3),
        proptest::option::of(any::<String>()),
        proptest::option::of(window()),
        proptest::option::of(any::<String>()),
        any::<bool>(),
        seccomp,
        proptest::option::of(any::<u32>()),
        proptest::option::of(strings()),
        proptest::option::of(any::<String>()),
    )
        .prop_map(
            |(argv, env, cwd, tty, user, no_new_privs, seccomp, pids_max, landlock_write, root)| {
                ExecRequest {
                    argv,
                    env,
                    cwd,
                    tty,
                    user,
                    no_new_privs,
                    seccomp,
                    pids_max,
                    landlock_write,
                    root,
                }
            },
        )
}

fn exec_control() -> impl Strategy<Value = ExecControl> {
    prop_oneof![
        window().prop_map(|size| ExecControl::Resize { size }),
        any::<i32>().prop_map(|signal| ExecControl::Signal { signal }),
    ]
}

fn control_request() -> impl Strategy<Value = ControlRequest> {
    prop_oneof![
        (
            any::<u32>(),
            any::<String>(),
            any::<String>(),
            any::<bool>()
        )
            .prop_map(|(id, tag, path, read_only)| ControlRequest::Mount {
                id,
                tag,
                path,
                read_only,
            }),
        (
            any::<u32>(),
            any::<String>(),
            proptest::collection::vec((any::<String>(), any::<String>()), 0..3)
        )
            .prop_map(|(id, ca_pem, env)| ControlRequest::Configure { id, ca_pem, env }),
        Just(ControlRequest::Shutdown {}),
    ]
}

fn stream() -> impl Strategy<Value = Stream> {
    prop_oneof![
        Just(Stream::Stdin),
        Just(Stream::Stdout),
        Just(Stream::Stderr)
    ]
}

/// A frame of messages of type `M`, data or end-of-stream.
fn frame<M: std::fmt::Debug + Clone>(
    msg: impl Strategy<Value = M>,
) -> impl Strategy<Value = Frame<M>> {
    prop_oneof![
        3 => msg.prop_map(Frame::Message),
        1 => (stream(), proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(s, d)| Frame::Data(s, d)),
        1 => stream().prop_map(Frame::Eof),
    ]
}

/// Encoding, then decoding gives the frame back, using exactly its bytes; every strict
/// prefix is incomplete, never an error.
fn check_roundtrip<M>(f: &Frame<M>) -> Result<(), TestCaseError>
where
    M: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut out = Vec::new();
    encode(f, &mut out).unwrap();
    let (back, used) = decode::<M>(&out).unwrap().unwrap();
    prop_assert_eq!(&back, f);
    prop_assert_eq!(used, out.len());
    for n in 0..out.len() {
        prop_assert!(decode::<M>(&out[..n]).unwrap().is_none(), "prefix {}", n);
    }
    Ok(())
}

/// What `decode` must answer for `buf`, worked out from the header alone: `None` for
/// "incomplete", `Some(Err(len))` for a bad length, `Some(Ok(used))` for a frame to decode.
fn expected_framing(buf: &[u8]) -> Option<Result<usize, usize>> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > MAX_FRAME_LEN {
        return Some(Err(len));
    }
    (buf.len() >= 4 + len).then_some(Ok(4 + len))
}

/// Checks `decode::<M>(buf)` against [`expected_framing`], and that an accepted message
/// survives a re-encoding unchanged.
fn check_decode<M>(buf: &[u8]) -> Result<(), TestCaseError>
where
    M: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match (expected_framing(buf), decode::<M>(buf)) {
        (None, Ok(None)) => {}
        (Some(Err(len)), Err(CodecError::BadLength { len: l })) => prop_assert_eq!(len, l),
        (Some(Ok(used)), Ok(Some((frame, u)))) => {
            prop_assert_eq!(used, u);
            check_roundtrip(&frame)?;
        }
        (Some(Ok(_)), Err(e)) => prop_assert!(
            !matches!(
                e,
                CodecError::BadLength { .. } | CodecError::Truncated { .. }
            ),
            "whole frame refused for its length: {}",
            e
        ),
        (want, got) => prop_assert!(false, "expected {:?}, got {:?}", want, got),
    }
    Ok(())
}

/// Every type decoded from a peer, on the same bytes.
fn check_every_type(buf: &[u8]) -> Result<(), TestCaseError> {
    check_decode::<GuestEvent>(buf)?;
    check_decode::<ExecEvent>(buf)?;
    check_decode::<ExecRequest>(buf)?;
    check_decode::<ExecControl>(buf)?;
    check_decode::<ControlRequest>(buf)
}

/// One frame: length prefix, `tag`, `payload`.
fn framed(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len() + 1)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    out.push(tag);
    out.extend_from_slice(payload);
    out
}

/// The frames one [`Decoder`] yields for `chunks` read in turn, and how it ended (the first
/// error, or the complaint of `finish` about a partial frame).
type Decoded<M> = (Vec<Frame<M>>, Option<String>);

fn decode_stream<M: DeserializeOwned>(chunks: &[&[u8]]) -> Decoded<M> {
    let mut dec = Decoder::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        dec.extend(chunk);
        loop {
            match dec.next_frame::<M>() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e.to_string())),
            }
        }
    }
    let end = dec.finish().err().map(|e| e.to_string());
    (frames, end)
}

/// Every `type` tag of the messages and their nested enums, and one unknown.
const TAGS: &[&str] = &[
    "ready",
    "mounted",
    "proc_exec",
    "syscall_denied",
    "proc_exit",
    "events_dropped",
    "bye",
    "mount_failed",
    "configured",
    "configure_failed",
    "started",
    "spawn_failed",
    "exited",
    "code",
    "signal",
    "resize",
    "mount",
    "configure",
    "shutdown",
    "not_found",
    "other",
    "default",
    "strict",
    "nope",
];

/// Every field name of the messages, and one unknown.
const FIELDS: &[&str] = &[
    "type",
    "protocol",
    "agent_version",
    "kernel_release",
    "uptime_ms",
    "id",
    "pid",
    "ppid",
    "uid",
    "argv",
    "argv_truncated",
    "cwd",
    "syscall",
    "reason",
    "status",
    "code",
    "signal",
    "count",
    "message",
    "oom_kills",
    "rows",
    "cols",
    "size",
    "env",
    "tty",
    "user",
    "extra",
];

/// JSON values of the shapes the messages use, right and wrong: the messages' field names
/// and type tags, numbers at and past the edges of the fields' types.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(u64::from(u32::MAX)),
            Just(u64::from(u32::MAX) + 1),
            Just(u64::from(u16::MAX) + 1),
        ]
        .prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        proptest::sample::select(TAGS).prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..4).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

/// An object with a `type` tag and some of the messages' fields, each with a random value.
fn message_object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    (
        proptest::sample::select(TAGS),
        proptest::collection::vec((proptest::sample::select(FIELDS), json_value()), 0..6),
    )
        .prop_map(|(tag, fields)| {
            let mut m: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            m.insert("type".to_owned(), Value::String(tag.to_owned()));
            m
        })
}

/// An accepted message says exactly what the object said: every key of the object is a field
/// of the message, with the same value (no unknown key ignored, no number coerced).
fn check_accepts_only_what_it_says<M>(
    obj: &serde_json::Map<String, Value>,
) -> Result<(), TestCaseError>
where
    M: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = framed(0, &serde_json::to_vec(obj).unwrap());
    check_decode::<M>(&bytes)?;
    if let Ok(Some((Frame::Message(m), _))) = decode::<M>(&bytes) {
        let back = serde_json::to_value(&m).unwrap();
        for (k, v) in obj {
            prop_assert_eq!(back.get(k), Some(v), "field {} of {:?}", k, m);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Whatever the bytes, `decode` answers what the header says it must, for every message
    /// type, and a decoded message re-encodes to itself.
    #[test]
    fn arbitrary_bytes_decode_as_their_header_says(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        check_every_type(&bytes)?;
    }

    /// Frames with a plausible header and arbitrary tag and payload.
    #[test]
    fn arbitrary_payloads_in_a_valid_header(
        tag in prop_oneof![Just(0u8), 1u8..4, 0x81u8..0x84, any::<u8>()],
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        extra in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = framed(tag, &payload);
        bytes.extend_from_slice(&extra);
        check_every_type(&bytes)?;
    }

    /// Every message of every type survives encode then decode, and every strict prefix of
    /// its frame is incomplete.
    #[test]
    fn every_message_type_roundtrips(
        g in frame(guest_event()),
        e in frame(exec_event()),
        r in frame(exec_request()),
        c in frame(exec_control()),
        q in frame(control_request()),
    ) {
        check_roundtrip(&g)?;
        check_roundtrip(&e)?;
        check_roundtrip(&r)?;
        check_roundtrip(&c)?;
        check_roundtrip(&q)?;
    }

    /// Valid frames of the host-decoded types with bytes changed, inserted or cut off.
    #[test]
    fn mutated_guest_frames(
        g in guest_event(),
        e in exec_event(),
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), any::<u8>(), 0u8..3),
            1..6,
        ),
    ) {
        let mut bytes = Vec::new();
        encode(&Frame::Message(g), &mut bytes).unwrap();
        encode(&Frame::Message(e), &mut bytes).unwrap();
        for (at, byte, how) in edits {
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        check_every_type(&bytes)?;
        if let Some(Ok(used)) = expected_framing(&bytes) {
            check_every_type(&bytes[used..])?;
        }
    }

    /// JSON objects of the messages' shape with wrong, missing, extra and out-of-range
    /// fields: refused, or accepted with exactly the values sent.
    #[test]
    fn structured_wrong_messages(obj in message_object()) {
        check_accepts_only_what_it_says::<GuestEvent>(&obj)?;
        check_accepts_only_what_it_says::<ExecEvent>(&obj)?;
        check_accepts_only_what_it_says::<ExecControl>(&obj)?;
        check_accepts_only_what_it_says::<ControlRequest>(&obj)?;
    }

    /// A stream of valid frames followed by junk gives the same frames and the same end
    /// however it is cut into reads.
    #[test]
    fn the_decoder_does_not_depend_on_how_reads_split(
        frames in proptest::collection::vec(frame(guest_event()), 0..6),
        junk in proptest::collection::vec(any::<u8>(), 0..16),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut bytes = Vec::new();
        for f in &frames {
            encode(f, &mut bytes).unwrap();
        }
        bytes.extend_from_slice(&junk);
        let whole = decode_stream::<GuestEvent>(&[&bytes]);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&bytes[start..p]);
            start = p;
        }
        chunks.push(&bytes[start..]);
        let split = decode_stream::<GuestEvent>(&chunks);
        prop_assert_eq!(&split, &whole);
        prop_assert!(whole.0.len() >= frames.len());
        prop_assert_eq!(&whole.0[..frames.len()], &frames[..]);
    }
}

/// Turns a corpus file into bytes. Tokens: hex digits in pairs (`00 0a ff` or `000aff`),
/// `'text'` (UTF-8, with `\0`, `\n`, `\xHH` and `\` before any other character for itself),
/// `be32:N` (big-endian, decimal or `0x`), and `<` ... `>` around a region to put its
/// big-endian u32 length before it. A token but `<` and `>` may end in `*N` to repeat it.
/// `#` starts a comment; `#! expect` lines are read by [`corpus_replays`].
fn corpus_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut open = Vec::new();
    for line in text.lines() {
        let mut rest = strip_comment(line).trim();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('<') {
                open.push(out.len());
                out.extend_from_slice(&[0; 4]);
                rest = r.trim_start();
                continue;
            }
            if let Some(r) = rest.strip_prefix('>') {
                let at = open.pop().expect("unbalanced >");
                let len = u32::try_from(out.len() - at - 4).unwrap();
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
                rest = r.trim_start();
                continue;
            }
            let (token, after) = split_token(rest);
            let (token, times) = match token.rsplit_once('*') {
                Some((t, n)) if !t.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    (t, n.parse::<usize>().expect("repeat count"))
                }
                _ => (token, 1),
            };
            out.extend_from_slice(&token_bytes(token).repeat(times));
            rest = after.trim_start();
        }
    }
    assert!(open.is_empty(), "unbalanced <");
    out
}

/// The line up to a `#` outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            '\\' if quoted && !escaped => {
                escaped = true;
                continue;
            }
            '\'' if !escaped => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
        escaped = false;
    }
    line
}

/// The first token of `s` and what follows it.
fn split_token(s: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if quoted && !escaped => {
                escaped = true;
                continue;
            }
            '\'' if !escaped => quoted = !quoted,
            ' ' | '<' | '>' if !quoted => return (&s[..i], &s[i..]),
            _ => {}
        }
        escaped = false;
    }
    (s, "")
}

fn token_bytes(token: &str) -> Vec<u8> {
    if let Some(text) = token.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        let mut out = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            match chars.next() {
                Some('0') => out.push(0),
                Some('n') => out.push(b'\n'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(u8::from_str_radix(&hex, 16).expect("\\xHH"));
                }
                Some(c) => out.push(u8::try_from(c).expect("escaped ASCII")),
                None => panic!("trailing backslash"),
            }
        }
        return out;
    }
    if let Some(n) = token.strip_prefix("be32:") {
        let n = match n.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16),
            None => n.parse(),
        };
        return n.expect("be32 value").to_be_bytes().to_vec();
    }
    assert!(token.len().is_multiple_of(2), "odd hex token {token:?}");
    (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).expect("hex"))
        .collect()
}

/// How an input ends when fed to a [`Decoder`] as messages of type `M`: the number of frames
/// decoded, then `ok`, `incomplete` (a partial frame left) or the first error's text.
fn outcome<M: DeserializeOwned>(bytes: &[u8]) -> String {
    let (frames, end) = decode_stream::<M>(&[bytes]);
    let end = match end {
        None => "ok".to_owned(),
        Some(e) if e.starts_with("connection closed inside a frame") => "incomplete".to_owned(),
        Some(e) => e,
    };
    format!("{} {end}", frames.len())
}

/// Replays every file of `testdata/corpus/frames/`: the input and each of its first 4096
/// prefixes go through the checks of the properties above, and the input must end as each
/// `#! expect <type> <frames> <outcome>` line says (outcome as in [`outcome`], a prefix of
/// the error text is enough).
#[test]
fn corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/corpus/frames");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let bytes = corpus_bytes(&text);
        let name = path.display();
        for n in 0..=bytes.len().min(4096) {
            check_every_type(&bytes[..n]).unwrap_or_else(|e| panic!("{name} prefix {n}: {e}"));
        }
        check_every_type(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut expects = 0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("#! expect ") else {
                continue;
            };
            let (ty, want) = rest.split_once(' ').expect("#! expect <type> <outcome>");
            let got = match ty {
                "GuestEvent" => outcome::<GuestEvent>(&bytes),
                "ExecEvent" => outcome::<ExecEvent>(&bytes),
                "ExecRequest" => outcome::<ExecRequest>(&bytes),
                "ExecControl" => outcome::<ExecControl>(&bytes),
                "ControlRequest" => outcome::<ControlRequest>(&bytes),
                other => panic!("{name}: unknown type {other}"),
            };
            assert!(
                got.starts_with(want.trim()),
                "{name}: {ty}: expected {want:?}, got {got:?}"
            );
            expects += 1;
        }
        assert!(expects > 0, "{name} has no #! expect line");
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} corpus files in {dir}");
}
