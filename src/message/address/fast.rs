//! The fast path of the address-list parser: the plain elements that make
//! up nearly every real distribution list, read by byte scanning without
//! tokens. It only ever accepts what the general parser would accept the
//! same way (a proptest in `tests.rs` compares the two); on anything else it
//! declines and the general parser reads the element.
//!
//! While it scans an addr-spec it also notes whether the address is already
//! in the counter's normal form (lowercase ASCII, a plain host name), so a
//! 1,494-address list is not walked a second time to find that out.

use std::borrow::Cow;

use super::MailboxRef;
use super::lexer::{ATOM, WSP, class, run};

/// What a dot-atom byte says, one table lookup per byte: whether it ends
/// the atom, which byte may not follow it (`..`, and `=?` which starts an
/// encoded word), and what it says about the counter's normal form
/// ([`crate::policy::count`]): lowercase ASCII with a plain host name.
const UPPER: u16 = 1;
const NON_ASCII: u16 = 2;
/// Not `a-z 0-9 _ .` in a domain. `-` is here too: a label may then be
/// punycode (`xn--`), which only the full normaliser decides.
const NOT_PLAIN_HOST: u16 = 4;
/// Not atext or `.`: the dot-atom ends before it.
const END: u16 = 8;
/// The byte is `.` / `?`.
const IS_DOT: u16 = 16;
const IS_QUESTION: u16 = 32;
/// Shift from "is" to "may not follow": after `.` no `.`, after `=` no `?`.
const NOT_NEXT: u16 = 8;

static ATOM_BYTE: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let norm = match c {
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' => 0,
            b'A'..=b'Z' => UPPER | NOT_PLAIN_HOST,
            0x80..=0xff => NON_ASCII | NOT_PLAIN_HOST,
            _ => NOT_PLAIN_HOST,
        };
        let what = match c {
            b'.' => IS_DOT | (IS_DOT << NOT_NEXT),
            b'?' => IS_QUESTION,
            b'=' => IS_QUESTION << NOT_NEXT,
            _ => 0,
        };
        let end = if class(c) == ATOM { 0 } else { END };
        t[b] = norm | what | end;
        b += 1;
    }
    t
};

/// The fast path: `a@x`, `Name <a@x>`, `"Last, First" <a@x>` followed by
/// `,` or the end, which is nearly every element of a real distribution
/// list. Byte scanning, no tokens. Anything else (comments, groups, routes,
/// quoted-pairs, odd dots, encoded words, bad UTF-8) returns `None` and the
/// general parser reads the element from the same position.
///
/// `text` is `v` as a string when the whole value is valid UTF-8 (checked
/// once per field, not once per address).
/// Returns the mailbox and the offset after its separator.
pub(super) fn simple<'a>(
    v: &'a [u8],
    text: Option<&'a str>,
    pos: usize,
) -> Option<(MailboxRef<'a>, usize)> {
    let start = run(v, pos, WSP);
    let mut i = start;
    let mut first_word = true;
    let (addr, normal, span_end) = loop {
        match *v.get(i)? {
            b'"' => {
                // A quoted word without quoted-pairs, and without an `@`:
                // a name that shows an address goes the general way, so a
                // plain element's addr-spec is its only `@`
                // ([`MailboxRef::plain`]).
                let len = memchr::memchr3(b'"', b'\\', b'@', v.get(i + 1..)?)?;
                if v[i + 1 + len] != b'"' {
                    return None;
                }
                i += len + 2;
            }
            b'<' => {
                let (end, normal) = simple_addr(v, i + 1)?;
                if v.get(end) != Some(&b'>') {
                    return None;
                }
                break (i + 1..end, normal, end + 1);
            }
            b if class(b) == ATOM => {
                let end = run(v, i, ATOM);
                if first_word && v.get(end) == Some(&b'@') {
                    let (end, normal) = simple_addr(v, i)?;
                    break (i..end, normal, end);
                }
                i = end;
            }
            _ => return None,
        }
        first_word = false;
        i = run(v, i, WSP);
    };
    let after = run(v, span_end, WSP);
    let next = match v.get(after) {
        None => after,
        Some(b',') => after + 1,
        Some(_) => return None,
    };
    // Borrowed: the addr-spec is one run of bytes here, nothing to remove.
    // Its ends are ASCII bytes, so they are char boundaries of `text`.
    let address = match text {
        Some(t) => t.get(addr.clone())?,
        None => std::str::from_utf8(v.get(addr.clone())?).ok()?,
    };
    Some((
        MailboxRef {
            address: Cow::Borrowed(address),
            normal,
            plain: true,
            span: start..span_end,
        },
        next,
    ))
}

/// `dot-atom "@" dot-atom` starting at `i` with nothing odd in it; returns
/// its end, and whether it is in the counter's normal form already.
fn simple_addr(v: &[u8], i: usize) -> Option<(usize, bool)> {
    let (at, local) = simple_dot_atom(v, i)?;
    if v.get(at) != Some(&b'@') {
        return None;
    }
    let (end, domain) = simple_dot_atom(v, at + 1)?;
    let normal = local & (UPPER | NON_ASCII) == 0 && domain & (NOT_PLAIN_HOST | NON_ASCII) == 0;
    Some((end, normal))
}

/// A dot-atom at `i` (no leading, trailing or double dot, no `=?` of an
/// encoded word), checked while it is scanned; returns its end and the
/// normal-form flags of its bytes.
fn simple_dot_atom(v: &[u8], i: usize) -> Option<(usize, u16)> {
    // As if after a dot: a leading dot is refused like a double one.
    let mut forbidden = IS_DOT;
    let mut last = IS_DOT;
    let mut end = i;
    let mut flags = 0;
    for &b in v.get(i..)? {
        let t = ATOM_BYTE[usize::from(b)];
        if t & END != 0 {
            break;
        }
        if t & forbidden != 0 {
            return None;
        }
        forbidden = (t >> NOT_NEXT) & (IS_DOT | IS_QUESTION);
        flags |= t;
        last = t;
        end += 1;
    }
    (last & IS_DOT == 0).then_some((end, flags))
}
