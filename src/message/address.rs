//! RFC 5322 address lists (section 3.4), as a mail client would display
//! them, with the byte span of every element so the rewriter can keep or drop
//! elements without re-serialising them.
//!
//! Handles groups (`Team: a@x, b@y;`), display names (never addresses, even
//! when they look like one: `"a@x, b@y" <c@z>`), comments, quoted strings,
//! route-addrs (`<@r:a@x>`), empty list elements (`a@x,,b@y`) and folding.
//! Whatever cannot be parsed becomes [`Element::Invalid`]; the counter treats
//! it as one external address (fail closed).

mod fast;
mod lexer;

use std::borrow::Cow;
use std::ops::Range;

use lexer::{Kind, Lexer, Token};

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

/// A [`Mailbox`] as the parser first produces it: the addr-spec borrowed
/// from the value when it is written in one piece (the fast path: nearly
/// every element of a real list), owned when comments or folding had to be
/// removed. The counter and the rewriter consume these, so reading a
/// 1,494-address list allocates nothing per address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MailboxRef<'a> {
    /// As [`Mailbox::address`].
    pub(crate) address: Cow<'a, str>,
    /// Known to be in the counter's normal form already (lowercase ASCII,
    /// a plain host name without `-`): what
    /// [`crate::policy::count::normalize_address`] would return unchanged.
    /// `false` only means "not known"; the counter then checks.
    pub(crate) normal: bool,
    /// Read by the fast path: written as `a@x`, `Name <a@x>` or
    /// `"Quoted" <a@x>` with a plain dot-atom addr-spec and no other `@`,
    /// so the address is the only address-like token in the span, unless an
    /// encoded word in the name hides one ([`crate::message::tokens`]).
    pub(crate) plain: bool,
    /// As [`Mailbox::span`].
    pub(crate) span: Range<usize>,
}

impl MailboxRef<'_> {
    fn into_owned(self) -> Mailbox {
        Mailbox {
            address: self.address.into_owned(),
            span: self.span,
        }
    }
}

/// An [`Element`] with borrowed addresses ([`MailboxRef`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ElementRef<'a> {
    /// As [`Element::Mailbox`].
    Mailbox(MailboxRef<'a>),
    /// As [`Element::Group`].
    Group {
        name: Range<usize>,
        members: Vec<MailboxRef<'a>>,
        invalid: Vec<Range<usize>>,
        span: Range<usize>,
    },
    /// As [`Element::Invalid`].
    Invalid { span: Range<usize> },
}

impl ElementRef<'_> {
    fn into_owned(self) -> Element {
        match self {
            ElementRef::Mailbox(m) => Element::Mailbox(m.into_owned()),
            ElementRef::Group {
                name,
                members,
                invalid,
                span,
            } => Element::Group {
                name,
                members: members.into_iter().map(MailboxRef::into_owned).collect(),
                invalid,
                span,
            },
            ElementRef::Invalid { span } => Element::Invalid { span },
        }
    }
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
/// 1,494 elements is built just to be taken apart again, and addresses are
/// borrowed from `value` where they can be.
pub(crate) fn for_each<'a>(value: &'a [u8], mut emit: impl FnMut(ElementRef<'a>)) {
    parse_into(value, true, &mut emit);
}

/// [`parse_list`], with or without the fast path for plain elements (the
/// tests check both give the same answer).
fn parse(value: &[u8], fast: bool) -> Vec<Element> {
    // Roughly one element per comma; capped so a field of bare commas
    // cannot make us reserve megabytes up front.
    let guess = memchr::memchr_iter(b',', value).count() + 1;
    let mut out = Vec::with_capacity(guess.min(4096));
    parse_into(value, fast, &mut |e| out.push(e.into_owned()));
    out
}

fn parse_into<'a>(value: &'a [u8], fast: bool, emit: &mut impl FnMut(ElementRef<'a>)) {
    // Checked once for the whole field, so the fast path can borrow each
    // address as a str without validating it again.
    let text = std::str::from_utf8(value).ok();
    let mut p = Parser {
        v: value,
        lex: Lexer::default(),
        buf: Vec::with_capacity(16),
    };
    loop {
        if fast
            && !p.lex.quote_broken
            && let Some((m, next)) = fast::simple(value, text, p.lex.pos)
        {
            emit(ElementRef::Mailbox(m));
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

impl<'a> Parser<'a> {
    /// Reads the tokens of one element into `buf`, up to the separator at
    /// this level. Returns the separator and whether the element is already
    /// known to be broken (stray bytes, nested or unbalanced angles).
    fn collect(&mut self, colon_ends: bool) -> (Term, bool) {
        self.buf.clear();
        self.lex.in_angle = false;
        let (term, broken) = self.collect_tokens(colon_ends);
        self.lex.in_angle = false;
        (term, broken)
    }

    fn collect_tokens(&mut self, colon_ends: bool) -> (Term, bool) {
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
                    self.lex.in_angle = true;
                    angles += 1;
                    route = false;
                    after_lt = true;
                }
                Kind::Special(b'>') => {
                    broken |= !in_angle;
                    in_angle = false;
                    self.lex.in_angle = false;
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
    fn classify(&self, broken: bool) -> Option<ElementRef<'a>> {
        let span = self.buf.first()?.start..self.buf.last()?.end;
        if self.buf.iter().all(|t| t.kind == Kind::Comment) {
            // Nothing but comments is an empty element, unless a comment
            // shows an address: `To: (p1@x, p2@y)` discloses them, so the
            // element is kept for the counter (and dropped by a rewrite).
            return memchr::memchr(b'@', &self.v[span.clone()])
                .map(|_| ElementRef::Invalid { span });
        }
        if !broken && let Some(address) = mailbox(self.v, &self.buf) {
            return Some(ElementRef::Mailbox(MailboxRef {
                address: Cow::Owned(address),
                normal: false,
                plain: false,
                span,
            }));
        }
        Some(ElementRef::Invalid { span })
    }

    /// `display-name ":" [group-list] ";"` (RFC 5322 3.4); `buf` holds the
    /// name, the colon has been read.
    fn group(&mut self, emit: &mut impl FnMut(ElementRef<'a>), broken: bool) {
        let colon_end = self.lex.pos;
        let name_start = self.buf.first().map_or(colon_end - 1, |t| t.start);
        let phrase = !broken && is_phrase(&self.buf);
        if !phrase && !self.buf.is_empty() {
            emit(ElementRef::Invalid {
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
                Some(ElementRef::Mailbox(m)) => members.push(m),
                Some(ElementRef::Invalid { span }) => invalid.push(span),
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
            emit(ElementRef::Group {
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
