//! Tests of the DATA reader and the stuffer: tables of bytes in, bytes and
//! errors out, and properties over random input.

use super::*;
use proptest::prelude::*;

const ROOMY: DataLimits = DataLimits {
    max_message_size: 1 << 20,
    max_line_length: 998,
};

/// Feeds `input` in one call; returns (consumed, done, output, error).
fn read_whole(limits: DataLimits, input: &[u8]) -> (usize, bool, Vec<u8>, Option<DataError>) {
    let mut reader = DataReader::new(limits);
    let mut out = Vec::new();
    let fed = reader.feed(input, &mut out);
    (fed.consumed, fed.done, out, reader.error())
}

/// Feeds `input` in chunks cut at `cuts` (sorted or not, clamped), the
/// way a socket might deliver it; stops feeding once done.
fn read_split(
    limits: DataLimits,
    input: &[u8],
    cuts: &[usize],
) -> (usize, bool, Vec<u8>, Option<DataError>) {
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    let mut reader = DataReader::new(limits);
    let mut out = Vec::new();
    let (mut consumed, mut done, mut from) = (0, false, 0);
    for to in bounds {
        let chunk = &input[from..to];
        let fed = reader.feed(chunk, &mut out);
        consumed += fed.consumed;
        done = fed.done;
        if done {
            break;
        }
        assert_eq!(fed.consumed, chunk.len(), "not done but left bytes");
        from = to;
    }
    (consumed, done, out, reader.error())
}

fn stuffed(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    write_stuffed(parts, &mut out);
    out
}

/// The smuggled second transaction that must never be read as commands.
const SMUGGLED: &[u8] = b"MAIL FROM:<x>\r\nRCPT TO:<y>\r\nDATA\r\nevil\r\n";
const NEXT_COMMAND: &[u8] = b"QUIT\r\n";

#[test]
fn smuggling_sequences_never_end_early() {
    // (sequence after a body line, contains a bare CR or LF)
    const NUL: Option<DataError> = Some(DataError::Nul);
    const BARE: Option<DataError> = Some(DataError::BareNewline);
    let table: &[(&[u8], Option<DataError>)] = &[
        (b"\n.\n", BARE),
        (b"\r.\r", BARE),
        (b"\r.\n", BARE),
        (b"\n.\r", BARE),
        (b"\n.\r\n", BARE),
        (b"\r.\r\n", BARE),
        (b"\r\n.\n", BARE),
        (b"\r\n.\r", BARE),
        (b"\r\n.\r\r\n", BARE),
        (b"\r\r\n.\r\r\n", BARE),
        (b"\n\n.\r\n", BARE),
        (b"\r\n\x00.\r\n", NUL),
        (b"\r\n.\x00\r\n", NUL),
        (b"\r\n.\r\x00\n", BARE),
        (b"\r\n..\r\n", None),
    ];
    for &(sequence, expected) in table {
        let mut input = b"Subject: hi\r\n\r\nbody".to_vec();
        input.extend_from_slice(sequence);
        input.extend_from_slice(SMUGGLED);
        input.extend_from_slice(b".\r\n");
        let real_end = input.len();
        input.extend_from_slice(NEXT_COMMAND);

        let (consumed, done, out, error) = read_whole(ROOMY, &input);
        let name = String::from_utf8_lossy(sequence);
        assert!(done, "{name:?}: real terminator not found");
        assert_eq!(consumed, real_end, "{name:?}: ended at the wrong place");
        assert_eq!(error, expected, "{name:?}");
        if expected.is_none() {
            // One message, the "second transaction" is body text.
            assert!(out.ends_with(SMUGGLED), "{name:?}");
        }
        // Byte by byte gives the same answer.
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            read_split(ROOMY, &input, &cuts),
            (consumed, done, out, error),
            "{name:?} split"
        );
    }
}

#[test]
fn unterminated_smuggling_does_not_end() {
    let mut input = b"body\n.\n".to_vec();
    input.extend_from_slice(SMUGGLED);
    let (consumed, done, _, error) = read_whole(ROOMY, &input);
    assert!(!done);
    assert_eq!(consumed, input.len());
    assert_eq!(error, Some(DataError::BareNewline));
}

#[test]
fn start_of_data_is_a_line_start() {
    let table: &[(&[u8], &[u8])] = &[
        (b".\r\n", b""),
        (b"..x\r\n.\r\n", b".x\r\n"),
        (b".x\r\n.\r\n", b"x\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"\r\n.\r\n", b"\r\n"),
        (b"a\r\n.b\r\n..\r\n.\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a.\r\n.\r\n", b"a.\r\n"),
    ];
    for &(input, expected) in table {
        let (consumed, done, out, error) = read_whole(ROOMY, input);
        assert_eq!((consumed, done, error), (input.len(), true, None));
        assert_eq!(out, expected, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn pipelined_bytes_after_terminator_are_left() {
    let input = b"hello\r\n.\r\nMAIL FROM:<a@b>\r\n";
    let (consumed, done, out, _) = read_whole(ROOMY, input);
    assert!(done);
    assert_eq!(&input[consumed..], b"MAIL FROM:<a@b>\r\n");
    assert_eq!(out, b"hello\r\n");
    // A finished reader consumes nothing more.
    let mut reader = DataReader::new(ROOMY);
    let mut out = Vec::new();
    reader.feed(b".\r\n", &mut out);
    let again = reader.feed(b"RSET\r\n", &mut out);
    assert_eq!(
        again,
        Fed {
            consumed: 0,
            done: true
        }
    );
}

#[test]
fn terminator_split_at_every_point() {
    let input = b"line one\r\nline two\r\n.\r\nNOOP\r\n";
    let whole = read_whole(ROOMY, input);
    assert_eq!(whole.0, input.len() - 6);
    for a in 0..=input.len() {
        for b in a..=input.len() {
            assert_eq!(read_split(ROOMY, input, &[a, b]), whole, "cuts {a} {b}");
        }
    }
}

#[test]
fn line_length_limit() {
    let limits = DataLimits {
        max_message_size: 1 << 20,
        max_line_length: 998,
    };
    for (len, dots, expected) in [
        (998, 0, None),
        (999, 0, Some(DataError::LineTooLong)),
        // The transparency dot is not counted (RFC 5321 4.5.3.1.6).
        (998, 1, None),
        (999, 1, Some(DataError::LineTooLong)),
    ] {
        let mut input = vec![b'.'; dots];
        input.extend(std::iter::repeat_n(b'a', len));
        input.extend_from_slice(b"\r\nshort\r\n.\r\nQUIT\r\n");
        let (consumed, done, _, error) = read_whole(limits, &input);
        assert!(done, "{len}");
        assert_eq!(consumed, input.len() - 6, "{len} drained to the end");
        assert_eq!(error, expected, "{len} dots {dots}");
    }
}

#[test]
fn too_big_drains_with_bounded_output() {
    let limits = DataLimits {
        max_message_size: 100,
        max_line_length: 998,
    };
    let mut input = Vec::new();
    for _ in 0..1000 {
        input.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    input.extend_from_slice(b".\r\nQUIT\r\n");
    let (consumed, done, out, error) = read_whole(limits, &input);
    assert_eq!((done, error), (true, Some(DataError::TooBig)));
    assert_eq!(consumed, input.len() - 6);
    assert!(out.len() <= 100);
    // Exactly at the limit is fine.
    let exact = DataLimits {
        max_message_size: 7,
        max_line_length: 998,
    };
    assert_eq!(read_whole(exact, b"hello\r\n.\r\n").3, None);
    let one_less = DataLimits {
        max_message_size: 6,
        ..exact
    };
    assert_eq!(
        read_whole(one_less, b"hello\r\n.\r\n").3,
        Some(DataError::TooBig)
    );
}

#[test]
fn first_error_wins() {
    let limits = DataLimits {
        max_message_size: 1 << 20,
        max_line_length: 4,
    };
    let input = b"a\nb\r\nlong line\r\n.\r\n";
    assert_eq!(read_whole(limits, input).3, Some(DataError::BareNewline));
    let input = b"long line\r\na\nb\r\n.\r\n";
    assert_eq!(read_whole(limits, input).3, Some(DataError::LineTooLong));
}

#[test]
fn cr_at_chunk_end_then_lf_is_a_crlf() {
    let mut reader = DataReader::new(ROOMY);
    let mut out = Vec::new();
    assert_eq!(reader.feed(b"abc\r", &mut out).consumed, 4);
    assert_eq!(reader.feed(b"\n.", &mut out).consumed, 2);
    let fed = reader.feed(b"\r\nQUIT\r\n", &mut out);
    assert_eq!(
        fed,
        Fed {
            consumed: 2,
            done: true
        }
    );
    assert_eq!((out.as_slice(), reader.error()), (&b"abc\r\n"[..], None));
}

#[test]
fn stuffing_table() {
    let table: &[(&[&[u8]], &[u8])] = &[
        (&[], b".\r\n"),
        (&[b""], b".\r\n"),
        (&[b".\r\n"], b"..\r\n.\r\n"),
        (&[b"..\r\n"], b"...\r\n.\r\n"),
        (&[b".x\r\n"], b"..x\r\n.\r\n"),
        (&[b"a\r\n.\r\n"], b"a\r\n..\r\n.\r\n"),
        (&[b"a\r\n", b".b\r\n"], b"a\r\n..b\r\n.\r\n"),
        (&[b"a\r", b"\n", b".", b"b"], b"a\r\n..b\r\n.\r\n"),
        (&[b"a.", b".b\r\n"], b"a..b\r\n.\r\n"),
        (&[b"no newline"], b"no newline\r\n.\r\n"),
        (&[b"x\r\n", b""], b"x\r\n.\r\n"),
        (&[b"x\r", b""], b"x\r\r\n.\r\n"),
    ];
    for &(parts, expected) in table {
        assert_eq!(
            String::from_utf8_lossy(&stuffed(parts)),
            String::from_utf8_lossy(expected),
            "{parts:?}"
        );
    }
}

#[test]
fn body_dot_lines_round_trip() {
    let message: &[u8] = b".\r\n..\r\n.x\r\nplain\r\n.\r\n";
    let wire = stuffed(&[message]);
    let (consumed, done, out, error) = read_whole(ROOMY, &wire);
    assert_eq!((consumed, done, error), (wire.len(), true, None));
    assert_eq!(out, message);
}

/// Bytes that exercise every state: CR, LF, dot, NUL, plain text, and
/// often enough a CRLF or a whole terminator.
fn interesting_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b".".to_vec()),
            Just(b"a".to_vec()),
            Just(b"\0".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b".\r\n".to_vec()),
            any::<u8>().prop_map(|b| vec![b]),
        ],
        0..max,
    )
    .prop_map(|pieces| pieces.concat())
}

/// A message with no bare CR or LF: text pieces, dots and CRLFs.
fn clean_message() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b".".to_vec()),
            Just(b".\r\n".to_vec()),
            prop::collection::vec(
                any::<u8>().prop_filter("no CR/LF/NUL", |b| !matches!(*b, b'\r' | b'\n' | 0)),
                0..8
            ),
        ],
        0..40,
    )
    .prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn stuff_then_read_gives_the_message(
        message in clean_message(),
        part_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        read_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut cuts: Vec<usize> =
            part_cuts.iter().map(|i| i.index(message.len() + 1)).collect();
        cuts.push(0);
        cuts.push(message.len());
        cuts.sort_unstable();
        let parts: Vec<&[u8]> = cuts.windows(2).map(|w| &message[w[0]..w[1]]).collect();
        let mut wire = stuffed(&parts);
        let end = wire.len();
        wire.extend_from_slice(NEXT_COMMAND);

        let read: Vec<usize> = read_cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        let (consumed, done, out, error) = read_split(ROOMY, &wire, &read);
        let mut expected = message.clone();
        if !expected.is_empty() && !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!((consumed, done, error), (end, true, None));
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn split_feeding_equals_whole(
        input in interesting_bytes(120),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        max_message_size in 0usize..120,
        max_line_length in 0usize..20,
    ) {
        let limits = DataLimits { max_message_size, max_line_length };
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        let whole = read_whole(limits, &input);
        prop_assert!(whole.2.len() <= max_message_size);
        prop_assert_eq!(read_split(limits, &input, &cuts), whole);
    }

    #[test]
    fn matches_a_naive_oracle(input in interesting_bytes(120)) {
        // End: `.\r\n` at the start, else the first `\r\n.\r\n`.
        let end = if input.starts_with(b".\r\n") {
            Some(3)
        } else {
            memmem::find(&input, b"\r\n.\r\n").map(|at| at + 5)
        };
        let data = &input[..end.unwrap_or(input.len())];
        // A CR at the very end of unfinished input is still pending.
        // The first offending byte decides the error.
        let first = data.iter().enumerate().find_map(|(i, &b)| match b {
            b'\r' if data.get(i + 1).is_some_and(|&next| next != b'\n') => Some(DataError::BareNewline),
            b'\n' if i == 0 || data[i - 1] != b'\r' => Some(DataError::BareNewline),
            b'\0' => Some(DataError::Nul),
            _ => None,
        });
        let (consumed, done, _, error) = read_whole(ROOMY, &input);
        prop_assert_eq!(done, end.is_some());
        prop_assert_eq!(consumed, end.unwrap_or(input.len()));
        prop_assert_eq!(error, first);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        input in prop::collection::vec(any::<u8>(), 0..300),
        parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 0..4),
    ) {
        let (consumed, done, _, _) = read_whole(ROOMY, &input);
        prop_assert!(consumed <= input.len());
        prop_assert!(done || consumed == input.len());
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let wire = stuffed(&parts);
        prop_assert!(wire.ends_with(b".\r\n"));
    }
}
