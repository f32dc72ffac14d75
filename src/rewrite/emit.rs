//! Writing the kept elements of a field back from their original bytes,
//! folded within the line limits of RFC 5322 2.1.1.

use super::*;

/// Appends the field `f` with only the kept elements, each from its
/// original bytes (or bare, [`Entry::bare`]); appends nothing when nothing
/// is kept. Returns whether an address was kept.
pub(super) fn rebuild(
    msg: &[u8],
    f: &PreparedField<'_>,
    also: Option<&str>,
    head: &mut Vec<u8>,
) -> bool {
    let start = head.len();
    // The name as written (`CC:`, `Cc :`): only the list changes.
    let name = bytes(msg, f.span.start..f.value_start);
    let value = f.value;
    head.extend_from_slice(name);
    let mut w = Folder {
        out: head,
        line: name.len(),
    };
    let mut kept = false;
    for element in &f.elements {
        match element {
            Item::Mailbox(m) => {
                if m.stays(also) {
                    w.item(m.text(value), if kept { b", " } else { b" " });
                    kept = true;
                }
            }
            Item::Group {
                name: Some(name),
                members,
            } => {
                let mut kept_members = members.iter().filter(|m| m.stays(also));
                // No member left: the group, name included, goes.
                if let Some(m) = kept_members.next() {
                    w.item(bytes(value, name.clone()), if kept { b", " } else { b" " });
                    w.item(m.text(value), b" ");
                    for m in kept_members {
                        w.item(m.text(value), b", ");
                    }
                    w.out.push(b';');
                    w.line += 1;
                    kept = true;
                }
            }
            Item::Group {
                name: None,
                members,
            } => {
                for m in members.iter().filter(|m| m.stays(also)) {
                    w.item(m.text(value), if kept { b", " } else { b" " });
                    kept = true;
                }
            }
        }
    }
    if kept {
        w.out.extend_from_slice(b"\r\n");
    } else {
        w.out.truncate(start);
    }
    kept
}

/// Writes list items, folding before one that would push the line past
/// [`FOLD_AT`] (the separator's space becomes CRLF SP, RFC 5322 2.2.3).
pub(super) struct Folder<'a> {
    pub(super) out: &'a mut Vec<u8>,
    /// Length of the current (last) line so far.
    pub(super) line: usize,
}

impl Folder<'_> {
    pub(super) fn item(&mut self, text: &[u8], sep: &[u8]) {
        let first_line = memchr::memchr(b'\r', text).unwrap_or(text.len());
        // +1: room for the `,` or `;` that may follow.
        let fold = self.line > 1 && self.line + sep.len() + first_line + 1 > FOLD_AT;
        if fold {
            self.out
                .extend_from_slice(sep.strip_suffix(b" ").unwrap_or(sep));
            self.out.extend_from_slice(b"\r\n ");
            self.line = 1;
        } else {
            self.out.extend_from_slice(sep);
            self.line += sep.len();
        }
        self.out.extend_from_slice(text);
        // An element folded in the original keeps its folding.
        self.line = match memchr::memrchr(b'\n', text) {
            Some(lf) => text.len() - lf - 1,
            None => self.line + text.len(),
        };
    }
}
