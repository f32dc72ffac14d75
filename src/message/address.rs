//! RFC 5322 address lists (section 3.4), as a mail client would display
//! them, with the byte span of every element so the rewriter can keep or drop
//! elements without re-serialising them.
//!
//! Handles groups (`Team: a@x, b@y;`), display names (never addresses, even
//! when they look like one: `"a@x, b@y" <c@z>`), comments, quoted strings,
//! route-addrs (`<@r:a@x>`), empty list elements (`a@x,,b@y`) and folding.
//! Whatever cannot be parsed becomes [`Element::Invalid`]; the counter treats
//! it as one external address (fail closed).

use std::ops::Range;

/// One mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The addr-spec with comments and folding removed, as written
    /// (`Local@Domain`); not lowercased.
    pub address: String,
    /// Bytes of the whole mailbox in the parsed value (display name, angle
    /// brackets and trailing comments included), without separators.
    pub span: Range<usize>,
}

/// One element of an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// A single mailbox.
    Mailbox(Mailbox),
    /// `display-name: [mailbox-list];`
    Group {
        /// Bytes of the display name and the colon.
        name: Range<usize>,
        /// Member mailboxes (invalid members are in `invalid`).
        members: Vec<Mailbox>,
        /// Spans of members that could not be parsed.
        invalid: Vec<Range<usize>>,
        /// Bytes of the whole group, up to and including `;` if present.
        span: Range<usize>,
    },
    /// Something a client might still display but that is not a valid
    /// mailbox.
    Invalid {
        /// Its bytes.
        span: Range<usize>,
    },
}

/// Parses a header value (bytes after the colon, folding included).
/// Empty elements are skipped. Never panics, whatever the input.
///
/// Deviations from the strict grammar, all towards showing the counter more:
/// a `;` outside a group separates like `,` (Outlook habit); a group whose
/// name is not a phrase (empty, or holding `@`, `<`...) is flattened: its
/// name becomes an [`Element::Invalid`] (unless empty) and its members
/// top-level elements; an unterminated `"`, `(` or `[` is a stray byte, so
/// the addresses after it are still seen.
pub fn parse_list(value: &[u8]) -> Vec<Element> {
    parse(value, true)
}

/// [`parse_list`] handing each element to `emit` as it is read, for callers
/// that consume elements one by one (the counter, the rewriter): no list of
/// 1,494 elements is built just to be taken apart again.
pub(crate) fn for_each(value: &[u8], mut emit: impl FnMut(Element)) {
    parse_into(value, true, &mut emit);
}

/// [`parse_list`], with or without the fast path for plain elements (the
/// tests check both give the same answer).
fn parse(value: &[u8], fast: bool) -> Vec<Element> {
    // Roughly one element per comma; capped so a field of bare commas
    // cannot make us reserve megabytes up front.
    let guess = memchr::memchr_iter(b',', value).count() + 1;
    let mut out = Vec::with_capacity(guess.min(4096));
    parse_into(value, fast, &mut |e| out.push(e));
    out
}

fn parse_into(value: &[u8], fast: bool, emit: &mut impl FnMut(Element)) {
    let mut p = Parser {
        v: value,
        lex: Lexer::default(),
        buf: Vec::with_capacity(16),
    };
    loop {
        if fast
            && !p.lex.quote_broken
            && let Some((m, next)) = simple(value, p.lex.pos)
        {
            emit(Element::Mailbox(m));
            p.lex.pos = next;
            if next >= value.len() {
                return;
            }
            continue;
        }
        let (term, broken) = p.collect(true);
        if term == Term::Colon {
            p.group(emit, broken);
        } else if let Some(e) = p.classify(broken) {
            emit(e);
        }
        if term == Term::End {
            return;
        }
    }
}

/// The fast path: `a@x`, `Name <a@x>`, `"Last, First" <a@x>` followed by
/// `,` or the end, which is nearly every element of a real distribution
/// list. Byte scanning, no tokens. Anything else (comments, groups, routes,
/// quoted-pairs, odd dots, encoded words, bad UTF-8) returns `None` and the
/// general parser reads the element from the same position.
/// Returns the mailbox and the offset after its separator.
fn simple(v: &[u8], pos: usize) -> Option<(Mailbox, usize)> {
    let start = run(v, pos, WSP);
    let mut i = start;
    let mut words = 0;
    let (addr, span_end) = loop {
        match *v.get(i)? {
            b'"' => {
                // A quoted word without quoted-pairs.
                let len = memchr::memchr2(b'"', b'\\', v.get(i + 1..)?)?;
                if v[i + 1 + len] != b'"' {
                    return None;
                }
                i += len + 2;
            }
            b'<' => {
                let end = simple_addr(v, i + 1)?;
                (v.get(end) == Some(&b'>')).then_some(())?;
                break (i + 1..end, end + 1);
            }
            b if class(b) == ATOM => {
                let end = run(v, i, ATOM);
                if words == 0 && v.get(end) == Some(&b'@') {
                    let end = simple_addr(v, i)?;
                    break (i..end, end);
                }
                i = end;
            }
            _ => return None,
        }
        words += 1;
        i = run(v, i, WSP);
    };
    let after = run(v, span_end, WSP);
    let next = match v.get(after) {
        None => after,
        Some(b',') => after + 1,
        Some(_) => return None,
    };
    let address = String::from_utf8(v[addr].to_vec()).ok()?;
    Some((
        Mailbox {
            address,
            span: start..span_end,
        },
        next,
    ))
}

/// `dot-atom "@" dot-atom` starting at `i` with nothing odd in it; returns
/// its end.
fn simple_addr(v: &[u8], i: usize) -> Option<usize> {
    let at = simple_dot_atom(v, i)?;
    (v.get(at) == Some(&b'@')).then_some(())?;
    simple_dot_atom(v, at + 1)
}

/// A dot-atom at `i` (no leading, trailing or double dot, no `=?` of an
/// encoded word), checked while it is scanned; returns its end.
fn simple_dot_atom(v: &[u8], i: usize) -> Option<usize> {
    let mut prev = b'.';
    let mut end = i;
    for &b in v.get(i..)? {
        if class(b) != ATOM {
            break;
        }
        if (b == b'.' && prev == b'.') || (b == b'?' && prev == b'=') {
            return None;
        }
        prev = b;
        end += 1;
    }
    (prev != b'.').then_some(end)
}

/// Lexical classes of RFC 5322 3.2 (whitespace and folding are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Single-pass lexer. Once a quoted string or comment is found unterminated,
/// every later opener would be too, so they are flagged instead of rescanned:
/// this keeps the lexer linear on hostile input like `(((((`.
#[derive(Debug, Clone, Copy, Default)]
struct Lexer {
    pos: usize,
    quote_broken: bool,
    comment_broken: bool,
}

/// Byte classes for the lexer, one table lookup per byte (the hot loop on
/// a 1,494-address list).
const WSP: u8 = 1;
const ATOM: u8 = 2;
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

fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

impl Lexer {
    fn next(&mut self, v: &[u8]) -> Option<Token> {
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
                    b'"' => return (Kind::Quoted, i + 1),
                    _ => i += 1,
                }
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
fn domain_literal(v: &[u8], start: usize) -> (Kind, usize) {
    for (i, &b) in v.iter().enumerate().skip(start + 1) {
        match b {
            b']' => return (Kind::DomainLiteral, i + 1),
            b'[' | b'\\' => break,
            _ => {}
        }
    }
    (Kind::Bad, start + 1)
}

/// End of the run of bytes of class `c` starting at `start`.
fn run(v: &[u8], start: usize, c: u8) -> usize {
    let rest = v.get(start..).unwrap_or_default();
    rest.iter()
        .position(|&b| class(b) != c)
        .map_or(v.len(), |n| start + n)
}

/// What ended a run of element tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Comma,
    Semicolon,
    Colon,
    End,
}

struct Parser<'a> {
    v: &'a [u8],
    lex: Lexer,
    /// Tokens of the current element, reused (one allocation per list).
    buf: Vec<Token>,
}

impl Parser<'_> {
    /// Reads the tokens of one element into `buf`, up to the separator at
    /// this level. Returns the separator and whether the element is already
    /// known to be broken (stray bytes, nested or unbalanced angles).
    fn collect(&mut self, colon_ends: bool) -> (Term, bool) {
        self.buf.clear();
        let (mut in_angle, mut route, mut angles, mut broken) = (false, false, 0, false);
        // Right after `<`: the next non-comment token says whether an
        // obs-route follows (`<@r:...`).
        let mut after_lt = false;
        while let Some(t) = self.lex.next(self.v) {
            if after_lt && t.kind != Kind::Comment {
                route = t.kind == Kind::Special(b'@');
                after_lt = false;
            }
            match t.kind {
                Kind::Special(b',') if in_angle && route && self.route_goes_on() => {}
                // A comma inside `<...>` that is not part of an obs-route
                // means the `>` is missing: the comma still separates, so
                // `<a@x, b@y, ...` does not hide the addresses after it.
                Kind::Special(b',') => return (Term::Comma, broken || in_angle),
                Kind::Special(b';') => return (Term::Semicolon, broken || in_angle),
                Kind::Special(b':') if !in_angle && colon_ends => return (Term::Colon, broken),
                Kind::Special(b':') => {
                    broken |= !route;
                    route = false;
                }
                Kind::Special(b'<') => {
                    broken |= in_angle || angles > 0;
                    in_angle = true;
                    angles += 1;
                    route = false;
                    after_lt = true;
                }
                Kind::Special(b'>') => {
                    broken |= !in_angle;
                    in_angle = false;
                    route = false;
                }
                Kind::Bad => broken = true,
                _ => {}
            }
            self.buf.push(t);
        }
        (Term::End, broken || in_angle)
    }

    /// After a comma in an obs-route (RFC 5322 4.4): another `@domain`, an
    /// empty entry or the closing `:` must follow. Peeks on a copy of the
    /// lexer; only route commas get here, so nothing is lexed twice often.
    fn route_goes_on(&self) -> bool {
        let mut lex = self.lex;
        while let Some(t) = lex.next(self.v) {
            if t.kind != Kind::Comment {
                return matches!(t.kind, Kind::Special(b'@' | b',' | b':'));
            }
        }
        false
    }

    /// Turns the collected tokens into an element; `None` when there is
    /// nothing but comments (an empty list element, RFC 5322 4.4).
    fn classify(&self, broken: bool) -> Option<Element> {
        if self.buf.iter().all(|t| t.kind == Kind::Comment) {
            return None;
        }
        let span = self.buf.first()?.start..self.buf.last()?.end;
        if !broken && let Some(address) = mailbox(self.v, &self.buf) {
            return Some(Element::Mailbox(Mailbox { address, span }));
        }
        Some(Element::Invalid { span })
    }

    /// `display-name ":" [group-list] ";"` (RFC 5322 3.4); `buf` holds the
    /// name, the colon has been read.
    fn group(&mut self, emit: &mut impl FnMut(Element), broken: bool) {
        let colon_end = self.lex.pos;
        let name_start = self.buf.first().map_or(colon_end - 1, |t| t.start);
        let phrase = !broken && is_phrase(&self.buf);
        if !phrase && !self.buf.is_empty() {
            emit(Element::Invalid {
                span: name_start..colon_end - 1,
            });
        }
        let (mut members, mut invalid) = (Vec::new(), Vec::new());
        let mut end = colon_end;
        loop {
            let (term, broken) = self.collect(false);
            if let Some(last) = self.buf.last() {
                end = last.end;
            }
            match self.classify(broken) {
                Some(e) if !phrase => emit(e),
                Some(Element::Mailbox(m)) => members.push(m),
                Some(Element::Invalid { span }) => invalid.push(span),
                _ => {}
            }
            match term {
                Term::Comma => continue,
                Term::Semicolon => end = self.lex.pos,
                _ => {}
            }
            break;
        }
        if phrase {
            emit(Element::Group {
                name: name_start..colon_end,
                members,
                invalid,
                span: name_start..end,
            });
        }
    }
}

/// A display name: one or more words, comments allowed (RFC 5322 3.2.5,
/// obs-phrase dots included in atoms).
fn is_phrase(toks: &[Token]) -> bool {
    toks.iter()
        .all(|t| matches!(t.kind, Kind::Atom | Kind::Quoted | Kind::Comment))
        && toks.iter().any(|t| t.kind != Kind::Comment)
}

/// `name-addr / addr-spec` (RFC 5322 3.4) from an element already checked
/// for balanced angles; returns the addr-spec.
fn mailbox(v: &[u8], toks: &[Token]) -> Option<String> {
    let Some(lt) = toks.iter().position(|t| t.kind == Kind::Special(b'<')) else {
        return addr_spec(v, toks);
    };
    let gt = toks.iter().position(|t| t.kind == Kind::Special(b'>'))?;
    // A display name is never an address, but an unquoted `@` in it is not
    // a display name either: a reader would see an address there.
    let display_ok = toks[..lt]
        .iter()
        .all(|t| matches!(t.kind, Kind::Atom | Kind::Quoted | Kind::Comment));
    let after_ok = toks[gt + 1..].iter().all(|t| t.kind == Kind::Comment);
    if !display_ok || !after_ok || gt < lt {
        return None;
    }
    let mut inner = &toks[lt + 1..gt];
    // obs-route `<@r1,@r2:a@x>`: the route is discarded (RFC 5322 4.4).
    if let Some(colon) = inner.iter().position(|t| t.kind == Kind::Special(b':')) {
        inner = &inner[colon + 1..];
    }
    addr_spec(v, inner)
}

/// `local-part "@" domain` (RFC 5322 3.4.1, obs forms of 4.4 included: CFWS
/// around dots, quoted words). Comments are dropped, folding removed; the
/// result is `None` for anything that is not an address, including an
/// encoded-word, which RFC 2047 5 forbids in an addr-spec (a client decoding
/// it would show another address than the one counted).
fn addr_spec(v: &[u8], toks: &[Token]) -> Option<String> {
    let mut words = toks.iter().filter(|t| t.kind != Kind::Comment);
    let mut out = Vec::with_capacity(toks.last()?.end - toks.first()?.start);
    let mut dots = DotState::Start;
    for t in words.by_ref() {
        match t.kind {
            Kind::Special(b'@') => break,
            Kind::Atom => dots = dots.atom(&v[t.start..t.end])?,
            Kind::Quoted => dots = dots.word()?,
            _ => return None,
        }
        out.extend(
            v[t.start..t.end]
                .iter()
                .filter(|&&b| b != b'\r' && b != b'\n'),
        );
    }
    if dots != DotState::Word {
        return None;
    }
    out.push(b'@');
    let domain_start = out.len();
    dots = DotState::Start;
    for t in words {
        match t.kind {
            Kind::Atom => dots = dots.atom(&v[t.start..t.end])?,
            Kind::DomainLiteral if dots == DotState::Start => dots = DotState::Literal,
            _ => return None,
        }
        out.extend_from_slice(&v[t.start..t.end]);
    }
    // One trailing dot (an absolute name) is tolerated; the domain
    // normaliser strips it.
    let trailing_dot = dots == DotState::Dot && out.len() > domain_start + 1;
    if !(matches!(dots, DotState::Word | DotState::Literal) || trailing_dot) {
        return None;
    }
    if memchr::memchr_iter(b'?', &out).any(|i| i > 0 && out[i - 1] == b'=') {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Words separated by single dots: `a.b`, `a . "b"`, never `a b`, `a..b`,
/// `.a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DotState {
    Start,
    Word,
    Dot,
    Literal,
}

impl DotState {
    fn word(self) -> Option<Self> {
        matches!(self, DotState::Start | DotState::Dot).then_some(DotState::Word)
    }

    fn atom(self, text: &[u8]) -> Option<Self> {
        let mut state = self;
        let mut first = true;
        for &b in text {
            state = match (b, state) {
                (b'.', DotState::Word) => DotState::Dot,
                (b'.', _) => return None,
                // Two words side by side across whitespace: `a b@x`.
                (_, DotState::Word) if first => return None,
                (_, DotState::Literal) => return None,
                _ => DotState::Word,
            };
            first = false;
        }
        Some(state)
    }
}

#[cfg(test)]
mod tests;
