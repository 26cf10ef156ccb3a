//! Fuzzing how the supervisor cuts a gateway's stdout into event lines
//! ([`read_bounded_line`]): whatever the bytes and however the pipe delivers them, the lines
//! are exactly the input split at `\n`, and a line over [`MAX_EVENT_LINE`] is reported as
//! overlong and dropped whole, never passed on cut. What a line then says is checked by
//! `FsLine::parse` and `NetLine::parse`, fuzzed in their own crates (`docs/fuzzing.md`).

use super::*;
use proptest::prelude::*;

/// `default` cases per run unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// What the reader must yield for `input`: each `\n`-terminated piece, and a last piece
/// without `\n` if it is not empty; `(false, [])` for a piece over the limit.
fn model(input: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    pieces
        .into_iter()
        .map(|p| match p.len() > MAX_EVENT_LINE {
            true => (false, Vec::new()),
            false => (true, p.to_vec()),
        })
        .collect()
}

fn read_all(input: &[u8], capacity: usize) -> Vec<(bool, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async {
        let mut r = tokio::io::BufReader::with_capacity(capacity, input);
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            match read_bounded_line(&mut r, &mut line).await {
                Ok(Some(ok)) => out.push((ok, line)),
                Ok(None) => return out,
                Err(e) => panic!("reading from memory failed: {e}"),
            }
        }
    })
}

/// A piece of a line: a few arbitrary bytes (newlines included), or a run of one byte of a
/// length at the limit.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..48),
        1 => (
            prop_oneof![
                Just(MAX_EVENT_LINE - 1),
                Just(MAX_EVENT_LINE),
                Just(MAX_EVENT_LINE + 1),
                MAX_EVENT_LINE - 64..MAX_EVENT_LINE + 64,
            ],
            any::<u8>(),
        )
            .prop_map(|(n, b)| vec![b; n]),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    /// The lines are the input's, however the pipe hands it over.
    #[test]
    fn lines_are_the_input_split_at_newlines(
        pieces in proptest::collection::vec(piece(), 0..8),
        capacity in prop_oneof![1usize..16, Just(4096usize), Just(MAX_EVENT_LINE + 7)],
    ) {
        let input = pieces.concat();
        prop_assert_eq!(read_all(&input, capacity), model(&input));
    }
}

/// Inputs at the edges, replayed on every run with several buffer sizes.
#[test]
fn edge_inputs() {
    let long = vec![b'x'; MAX_EVENT_LINE];
    let longer = vec![b'y'; MAX_EVENT_LINE + 1];
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\n".to_vec(),
        b"\n\n\n".to_vec(),
        b"no newline at the end".to_vec(),
        b"\r\n\0\xff\n".to_vec(),
        [long.as_slice(), b"\n"].concat(),
        [longer.as_slice(), b"\nafter\n"].concat(),
        [longer.as_slice(), longer.as_slice()].concat(),
        [b"a\n".as_slice(), longer.as_slice()].concat(),
    ];
    for input in &inputs {
        for capacity in [1, 2, 7, 4096, MAX_EVENT_LINE + 1] {
            assert_eq!(
                read_all(input, capacity),
                model(input),
                "{} bytes, capacity {capacity}",
                input.len()
            );
        }
    }
    // The model itself, on inputs small enough to read.
    assert_eq!(
        model(b"a\n\nb"),
        vec![
            (true, b"a".to_vec()),
            (true, Vec::new()),
            (true, b"b".to_vec())
        ]
    );
    assert_eq!(model(&longer), vec![(false, Vec::new())]);
}
