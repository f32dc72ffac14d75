// The addresses mail-parser reads in To and Cc: the independent parser
// standing in for what a mail client displays. The one copy of that
// reading, for every comparison with it: the property tests
// (tests/properties.rs) and the cargo-fuzz target
// (fuzz/fuzz_targets/decide_hide.rs) through tests/oracle/mod.rs, and the
// counter's unit tests (src/policy/count/tests.rs), which `include!` this
// file. So it names no bccguard item (it compiles inside the crate and
// outside it) and has no inner attributes or `//!` lines (`include!`
// takes none).

/// How much of a message mail-parser is given to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The whole message (`MessageParser::parse`).
    Message,
    /// The header section only (`MessageParser::parse_headers`).
    Headers,
}

/// The distinct addresses mail-parser finds in the To and Cc fields of
/// `msg`, each as `shown` names the person (`None` leaves it out: no
/// address a reader would see), sorted. `None` if mail-parser reads no
/// message at all.
pub fn mail_parser_to_cc(
    msg: &[u8],
    read: Read,
    shown: impl Fn(&str) -> Option<String>,
) -> Option<Vec<String>> {
    let parser = mail_parser::MessageParser::default();
    let parsed = match read {
        Read::Message => parser.parse(msg),
        Read::Headers => parser.parse_headers(msg),
    }?;
    let mut theirs: Vec<String> = parsed
        .header_values(mail_parser::HeaderName::To)
        .chain(parsed.header_values(mail_parser::HeaderName::Cc))
        .filter_map(|h| h.as_address())
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address.as_deref())
        .filter_map(&shown)
        .collect();
    theirs.sort();
    theirs.dedup();
    Some(theirs)
}
