//! The lexer of the address-list parser (RFC 5322 3.2): one table lookup
//! per byte, whitespace and folding skipped, and linear time on any input,
//! including the unterminated quotes, comments and literals of hostile or
//! broken mail.

/// Lexical classes of RFC 5322 3.2 (whitespace and folding are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A run of atext and dots (obs-phrase and dot-atom alike).
    Atom,
    /// `"..."` with quoted-pairs.
    Quoted,
    /// `(...)`, nested, with quoted-pairs.
    Comment,
    /// `[...]`.
    DomainLiteral,
    /// One of `< > @ , ; :`.
    Special(u8),
    /// Bytes that have no place in an address list.
    Bad,
}

/// One token and its bytes in the value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Single-pass lexer, linear on hostile input like `"\"\"\"` or `(((((`:
/// once a quoted string is found unterminated, every later `"` would be too
/// (its scan would retrace the same bytes in the same state), so it is not
/// rescanned. For comments that is a choice rather than a fact (`((a)`):
/// after one unterminated `(`, every later `(` is a stray byte, and the
/// element holding it is invalid, which counts (fail closed).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Lexer {
    /// Where the next token is looked for.
    pub(super) pos: usize,
    /// A `"` ran to the end: every later `"` is a stray byte.
    pub(super) quote_broken: bool,
    /// A `(` ran to the end: every later `(` is a stray byte.
    comment_broken: bool,
    /// Set by the parser between `<` and `>`.
    pub(super) in_angle: bool,
}

/// Byte classes for the lexer, one table lookup per byte (the hot loop on
/// a 1,494-address list).
pub(super) const WSP: u8 = 1;
pub(super) const ATOM: u8 = 2;
const BAD: u8 = 3;
const OPEN: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [ATOM; 256];
    let mut b = 0;
    while b < 256 {
        // Controls other than folding whitespace, and the closers and
        // backslash that only make sense inside a quoted string or comment.
        if b < 32 || b == 127 {
            t[b] = BAD;
        }
        b += 1;
    }
    t[b' ' as usize] = WSP;
    t[b'\t' as usize] = WSP;
    t[b'\r' as usize] = WSP;
    t[b'\n' as usize] = WSP;
    t[b')' as usize] = BAD;
    t[b']' as usize] = BAD;
    t[b'\\' as usize] = BAD;
    // Openers and specials end an atom (RFC 5322 3.2.3); "." does not, so
    // dot-atoms and obs-phrase dots stay in one token. Bytes >= 0x80 are
    // atext (UTF-8, RFC 6532 3.2).
    let mut i = 0;
    let opens = b"\"([<>@,;:";
    while i < opens.len() {
        t[opens[i] as usize] = OPEN;
        i += 1;
    }
    t
};

pub(super) const fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

impl Lexer {
    /// The next token at or after `pos`, whitespace and folding skipped.
    pub(super) fn next(&mut self, v: &[u8]) -> Option<Token> {
        let start = run(v, self.pos, WSP);
        let &b = v.get(start)?;
        let (kind, end) = match (class(b), b) {
            (_, b'"') => self.quoted(v, start),
            (_, b'(') => self.comment(v, start),
            (_, b'[') => domain_literal(v, start),
            (OPEN, _) => (Kind::Special(b), start + 1),
            (BAD, _) => (Kind::Bad, run(v, start, BAD)),
            _ => (Kind::Atom, run(v, start, ATOM)),
        };
        self.pos = end;
        Some(Token { kind, start, end })
    }

    fn quoted(&mut self, v: &[u8], start: usize) -> (Kind, usize) {
        if !self.quote_broken {
            let mut i = start + 1;
            while let Some(&b) = v.get(i) {
                match b {
                    b'\\' => i += 2,
                    // Inside `<...>` a quoted local part may hold `>` under
                    // RFC 5322, but a mail client ends the angle-addr at the
                    // first `>`: `<"x>, a@e, b@e, <"@y>` shows a and b. Fail
                    // closed: such a `"` is a stray byte (the element counts
                    // as invalid) and the `>` ends the angle-addr. Each byte
                    // is still scanned at most twice.
                    b'"' if self.in_angle && memchr::memchr(b'>', &v[start + 1..i]).is_some() => {
                        return (Kind::Bad, start + 1);
                    }
                    b'"' => return (Kind::Quoted, i + 1),
                    _ => i += 1,
                }
            }
            if self.in_angle
                && memchr::memchr(b'>', v.get(start + 1..).unwrap_or_default()).is_some()
            {
                // Unterminated, and a `>` follows: the same reading, without
                // giving up on later quotes.
                return (Kind::Bad, start + 1);
            }
            self.quote_broken = true;
        }
        (Kind::Bad, start + 1)
    }

    fn comment(&mut self, v: &[u8], start: usize) -> (Kind, usize) {
        if !self.comment_broken {
            let (mut i, mut depth) = (start + 1, 1usize);
            while let Some(&b) = v.get(i) {
                match b {
                    b'\\' => i += 1,
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            return (Kind::Comment, i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            self.comment_broken = true;
        }
        (Kind::Bad, start + 1)
    }
}

/// `[dtext]`; no quoted-pairs, so a failed scan stops at the next `[` or `\`
/// and no byte is scanned more than twice.
///
/// The scan also stops at the list and address delimiters `, ; < > @ "`:
/// dtext may carry them (RFC 5322 3.4.1), but no real domain literal does
/// (`[192.0.2.1]`, `[IPv6:2001:db8::1]`), and a mail client splits the list
/// at them. Reading `x [, a@e1, b@e2 ]` as one literal would count one
/// address where a reader sees three (found by the fuzzer): fail closed.
fn domain_literal(v: &[u8], start: usize) -> (Kind, usize) {
    let rest = v.get(start + 1..).unwrap_or_default();
    let stop = |b: &u8| {
        matches!(
            b,
            b']' | b'[' | b'\\' | b',' | b';' | b'<' | b'>' | b'@' | b'"'
        )
    };
    match rest.iter().position(stop) {
        Some(n) if rest[n] == b']' => (Kind::DomainLiteral, start + n + 2),
        _ => (Kind::Bad, start + 1),
    }
}

/// End of the run of bytes of class `c` starting at `start`.
pub(super) fn run(v: &[u8], start: usize, c: u8) -> usize {
    let rest = v.get(start..).unwrap_or_default();
    rest.iter()
        .position(|&b| class(b) != c)
        .map_or(v.len(), |n| start + n)
}
