//! Fuzz target: the strict DATA reader (`bccguard::smtp::data::DataReader`),
//! the guard's only defence against SMTP smuggling (CVE-2023-51764/5/6).
//!
//! The first bytes choose the limits and where the input is cut into
//! chunks (a TCP stream can be cut anywhere). Invariants:
//! - no panic; never consumes more than it is given, nothing after done;
//! - chunked feeding gives exactly what feeding it whole gives (a split
//!   terminator must not be missed or invented);
//! - the kept message never exceeds `max_message_size`;
//! - a clean message round-trips: dot-stuffing it (`write_stuffed`, the way
//!   it goes upstream) and reading that again yields the same bytes and
//!   ends exactly at the stuffed terminator (no second message inside).
#![no_main]

use bccguard::smtp::data::{DataLimits, DataReader, write_stuffed};
use libfuzzer_sys::fuzz_target;

/// Feeds `input` cut at `cuts`; returns (consumed, done, message, error).
fn read(
    limits: DataLimits,
    input: &[u8],
    cuts: &[usize],
) -> (
    usize,
    bool,
    Vec<u8>,
    Option<bccguard::smtp::data::DataError>,
) {
    let mut reader = DataReader::new(limits);
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut done = false;
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    for end in bounds {
        if done || end < consumed {
            continue;
        }
        let fed = reader.feed(&input[consumed..end], &mut out);
        assert!(fed.consumed <= end - consumed);
        consumed += fed.consumed;
        done = fed.done;
        if !done {
            assert_eq!(consumed, end, "an unfinished reader takes all it is given");
        }
    }
    if done {
        // Nothing is consumed after the terminator.
        let fed = reader.feed(b"MAIL FROM:<x@y>\r\n", &mut out);
        assert_eq!((fed.consumed, fed.done), (0, true));
    }
    (consumed, done, out, reader.error())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let limits = DataLimits {
        max_message_size: usize::from(u16::from_le_bytes([data[0], data[1]])),
        max_line_length: usize::from(data[2]) * 8,
    };
    let ncuts = usize::from(data[3] % 8);
    let (head, input) = data[4..].split_at(ncuts.min(data.len() - 4));
    let cuts: Vec<usize> = head.iter().map(|&b| usize::from(b) * 7).collect();

    let whole = read(limits, input, &[]);
    let split = read(limits, input, &cuts);
    assert_eq!(whole, split, "chunking changed the result");
    let (consumed, _done, out, error) = whole;
    assert!(consumed <= input.len());
    assert!(out.len() <= limits.max_message_size);

    if error.is_none() && !out.is_empty() && out.ends_with(b"\r\n") {
        let mut wire = Vec::new();
        write_stuffed(&[&out], &mut wire);
        let roomy = DataLimits {
            max_message_size: usize::MAX,
            max_line_length: usize::MAX,
        };
        let again = read(roomy, &wire, &[]);
        assert_eq!(
            again.0,
            wire.len(),
            "stuffed output ends early: a second message"
        );
        assert!(again.1, "stuffed output has no terminator");
        assert_eq!(again.2, out, "stuffing did not round-trip");
        assert_eq!(again.3, None);
    }
});
