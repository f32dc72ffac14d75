//! The fast path of the address-list parser: the plain elements that make
//! up nearly every real distribution list, read by byte scanning without
//! tokens. It only ever accepts what the general parser would accept the
//! same way (a proptest in `tests.rs` compares the two); on anything else it
//! declines and the general parser reads the element.

use super::Mailbox;
use super::lexer::{ATOM, WSP, class, run};

/// The fast path: `a@x`, `Name <a@x>`, `"Last, First" <a@x>` followed by
/// `,` or the end, which is nearly every element of a real distribution
/// list. Byte scanning, no tokens. Anything else (comments, groups, routes,
/// quoted-pairs, odd dots, encoded words, bad UTF-8) returns `None` and the
/// general parser reads the element from the same position.
/// Returns the mailbox and the offset after its separator.
pub(super) fn simple(v: &[u8], pos: usize) -> Option<(Mailbox, usize)> {
    let start = run(v, pos, WSP);
    let mut i = start;
    let mut first_word = true;
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
                if v.get(end) != Some(&b'>') {
                    return None;
                }
                break (i + 1..end, end + 1);
            }
            b if class(b) == ATOM => {
                let end = run(v, i, ATOM);
                if first_word && v.get(end) == Some(&b'@') {
                    let end = simple_addr(v, i)?;
                    break (i..end, end);
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
    if v.get(at) != Some(&b'@') {
        return None;
    }
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
