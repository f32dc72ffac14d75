//! The header section of a message as a list of fields with byte offsets
//! (RFC 5322 2.2). Names compare case-insensitively and may be followed by
//! whitespace before the colon (`Cc :`, obsolete syntax RFC 5322 4.5).
//! Folded lines belong to their field. A line in the header section that is
//! not a field and not a continuation is kept as [`FieldKind::Malformed`] and
//! scanning goes on, so a To/Cc hidden after it is still seen (fail closed).

use std::ops::Range;

/// Which fields the guard cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `To`.
    To,
    /// `Cc`.
    Cc,
    /// `Bcc` (always removed before relaying).
    Bcc,
    /// `Resent-Bcc` (always removed before relaying).
    ResentBcc,
    /// `From`.
    From,
    /// `Subject`.
    Subject,
    /// `Message-ID`.
    MessageId,
    /// `Content-Type` (to notice signed/encrypted mail).
    ContentType,
    /// Any other well-formed field.
    Other,
    /// A line that is neither a field nor a continuation.
    Malformed,
}

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// What the name says.
    pub kind: FieldKind,
    /// The whole field: name, colon, value, folded lines, final CRLF.
    pub span: Range<usize>,
    /// The name as written, up to the colon (whitespace before the colon
    /// included); empty for a line without a colon.
    pub name: Range<usize>,
    /// The value: after the colon up to (not including) the final CRLF;
    /// folding CRLFs inside are kept.
    pub value: Range<usize>,
}

/// Why the header section, or one of an attached message
/// ([`super::mime`]), cannot be read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// No end of the header section within the limit.
    TooBig,
    /// An attached message's (or MIME part's) header section is over the
    /// limit.
    AttachedTooBig,
    /// MIME parts and attached messages nest deeper than the limit.
    TooDeep,
}

/// The scanned header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// Fields in order of appearance.
    pub fields: Vec<Field>,
    /// Offset of the first byte after the header section: the empty line
    /// separating it from the body (or the end of the message if none).
    pub end: usize,
}

impl Field {
    /// The name as a lenient reader takes it: without the whitespace before
    /// the colon, and for a malformed name without its control bytes and
    /// spaces (mail-parser and mail clients show `Reply-To\x0c:` as a
    /// Reply-To). Compare case-insensitively.
    pub fn lenient_name<'m>(&self, msg: &'m [u8]) -> std::borrow::Cow<'m, [u8]> {
        let name = trim_wsp_end(msg.get(self.name.clone()).unwrap_or_default());
        if name.iter().all(u8::is_ascii_graphic) {
            std::borrow::Cow::Borrowed(name)
        } else {
            std::borrow::Cow::Owned(name.iter().copied().filter(u8::is_ascii_graphic).collect())
        }
    }
}

impl Headers {
    /// Fields of one kind, in order.
    pub fn of_kind(&self, kind: FieldKind) -> impl Iterator<Item = &Field> + '_ {
        self.fields.iter().filter(move |f| f.kind == kind)
    }
}

/// Scans the header section of `msg` (lines end in CRLF: the DATA reader
/// guarantees it). A header section longer than `max_header_size` bytes is
/// an error, never truncated.
///
/// The limit applies to the header section proper (`0..end`): a section that
/// ends exactly at `max_header_size` passes, one byte more fails closed.
pub fn scan(msg: &[u8], max_header_size: usize) -> Result<Headers, HeaderError> {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        if pos > max_header_size {
            return Err(HeaderError::TooBig);
        }
        let (line_end, next) = line_at(msg, pos);
        if line_end == pos && next > pos {
            // The empty line: the body follows (RFC 5322 2.1).
            return Ok(Headers { fields, end: pos });
        }
        match msg[pos] {
            // A continuation line (RFC 5322 2.2.3) belongs to the field above;
            // one before any field has nothing to continue and is malformed.
            b' ' | b'\t' if !fields.is_empty() => {
                if let Some(last) = fields.last_mut() {
                    last.span.end = next;
                    if !last.name.is_empty() {
                        last.value.end = line_end;
                    }
                }
            }
            _ => fields.push(field_at(msg, pos, line_end, next)),
        }
        pos = next;
    }
    if msg.len() > max_header_size {
        return Err(HeaderError::TooBig);
    }
    Ok(Headers {
        fields,
        end: msg.len(),
    })
}

/// The line starting at `pos`: (offset of its CRLF, offset of the next line).
/// Only CRLF ends a line; a last line without one ends at the message end.
fn line_at(msg: &[u8], pos: usize) -> (usize, usize) {
    let mut from = pos;
    while let Some(i) = memchr::memchr(b'\n', &msg[from..]) {
        let lf = from + i;
        if lf > pos && msg[lf - 1] == b'\r' {
            return (lf - 1, lf + 1);
        }
        from = lf + 1;
    }
    (msg.len(), msg.len())
}

/// Classifies the first line of a field: `name [WSP] ":" value`.
fn field_at(msg: &[u8], start: usize, line_end: usize, next: usize) -> Field {
    let line = &msg[start..line_end];
    let Some(colon) = memchr::memchr(b':', line) else {
        return Field {
            kind: FieldKind::Malformed,
            span: start..next,
            name: start..start,
            value: line_end..line_end,
        };
    };
    // A malformed name keeps its name and value: a lenient reader may still
    // show it as a field ([`Field::lenient_name`]), so the counter looks.
    let malformed = Field {
        kind: FieldKind::Malformed,
        span: start..next,
        name: start..start + colon,
        value: start + colon + 1..line_end,
    };
    // Obsolete syntax allows WSP between the name and the colon (RFC 5322
    // 4.5): `Cc : x` is a Cc field and must be counted.
    let name = trim_wsp_end(&line[..colon]);
    // Field names are printable US-ASCII except colon (RFC 5322 2.2).
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        // Fail closed: a name that is a recipient field once control bytes
        // and spaces are dropped (`Cc\x0c:`) is one for a lenient reader
        // (mail-parser, mail clients): count it and rewrite it as one.
        let lenient: Vec<u8> = name.iter().copied().filter(u8::is_ascii_graphic).collect();
        let kind = kind_of(&lenient);
        if !matches!(
            kind,
            FieldKind::To | FieldKind::Cc | FieldKind::Bcc | FieldKind::ResentBcc
        ) {
            return malformed;
        }
        return Field { kind, ..malformed };
    }
    Field {
        kind: kind_of(name),
        ..malformed
    }
}

fn trim_wsp_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn kind_of(name: &[u8]) -> FieldKind {
    const KINDS: [(&[u8], FieldKind); 8] = [
        (b"to", FieldKind::To),
        (b"cc", FieldKind::Cc),
        (b"bcc", FieldKind::Bcc),
        (b"resent-bcc", FieldKind::ResentBcc),
        (b"from", FieldKind::From),
        (b"subject", FieldKind::Subject),
        (b"message-id", FieldKind::MessageId),
        (b"content-type", FieldKind::ContentType),
    ];
    KINDS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or(FieldKind::Other, |&(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FieldKind::*;

    /// (kind, whole field, value) of every field, and the end offset.
    fn fields(msg: &[u8]) -> (Vec<(FieldKind, String, String)>, usize) {
        let h = scan(msg, 1000).expect("fits");
        let text = |r: &Range<usize>| String::from_utf8_lossy(&msg[r.clone()]).into_owned();
        let f = h
            .fields
            .iter()
            .map(|f| (f.kind, text(&f.span), text(&f.value)))
            .collect();
        (f, h.end)
    }

    #[test]
    fn table() {
        type Want<'a> = &'a [(FieldKind, &'a str, &'a str)];
        let cases: &[(&str, Want, usize)] = &[
            ("", &[], 0),
            ("\r\nTo: a@x\r\n", &[], 0),
            ("To: a@x\r\n\r\nbody", &[(To, "To: a@x\r\n", " a@x")], 9),
            ("to:a@x\r\n", &[(To, "to:a@x\r\n", "a@x")], 8),
            ("Cc : a@x\r\n\r\n", &[(Cc, "Cc : a@x\r\n", " a@x")], 10),
            ("CC\t:a\r\n\r\n", &[(Cc, "CC\t:a\r\n", "a")], 7),
            (
                "To: a@x,\r\n b@y,\r\n\tc@z\r\nX: 1\r\n\r\n",
                &[
                    (
                        To,
                        "To: a@x,\r\n b@y,\r\n\tc@z\r\n",
                        " a@x,\r\n b@y,\r\n\tc@z",
                    ),
                    (Other, "X: 1\r\n", " 1"),
                ],
                29,
            ),
            (
                "BCC: a\r\nResent-Bcc: b\r\nFrom: f\r\nSubject: s\r\nMessage-ID: m\r\nContent-Type: t\r\n",
                &[
                    (Bcc, "BCC: a\r\n", " a"),
                    (ResentBcc, "Resent-Bcc: b\r\n", " b"),
                    (From, "From: f\r\n", " f"),
                    (Subject, "Subject: s\r\n", " s"),
                    (MessageId, "Message-ID: m\r\n", " m"),
                    (ContentType, "Content-Type: t\r\n", " t"),
                ],
                76,
            ),
            // A broken line does not end the section: the To after it counts.
            (
                "junk line\r\nTo: a@x\r\n\r\n",
                &[
                    (Malformed, "junk line\r\n", ""),
                    (To, "To: a@x\r\n", " a@x"),
                ],
                20,
            ),
            (
                ": no name\r\nTo x: a\r\n",
                &[
                    (Malformed, ": no name\r\n", " no name"),
                    (Malformed, "To x: a\r\n", " a"),
                ],
                20,
            ),
            ("\t\tcc: a@x\r\n", &[(Cc, "\t\tcc: a@x\r\n", " a@x")], 11),
            (
                "Cc\x0c: a@x\r\nT\x01o : b@y\r\n",
                &[
                    (Cc, "Cc\x0c: a@x\r\n", " a@x"),
                    (To, "T\x01o : b@y\r\n", " b@y"),
                ],
                21,
            ),
            (
                " lead\r\n more\r\nTo: a\r\n",
                &[
                    (Malformed, " lead\r\n more\r\n", ""),
                    (To, "To: a\r\n", " a"),
                ],
                21,
            ),
            // No CRLF at the very end; a bare LF does not end a line.
            ("To: a@x", &[(To, "To: a@x", " a@x")], 7),
            (
                "To: a\nCc: b\r\n",
                &[(To, "To: a\nCc: b\r\n", " a\nCc: b")],
                13,
            ),
            (
                "Subject: x\r\n\r\n\r\nTo: y\r\n",
                &[(Subject, "Subject: x\r\n", " x")],
                12,
            ),
        ];
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|&(msg, want, end)| {
                let want: Vec<_> = want
                    .iter()
                    .map(|&(k, s, v)| (k, s.to_string(), v.to_string()))
                    .collect();
                let got = fields(msg.as_bytes());
                (got != (want.clone(), end))
                    .then(|| format!("{msg:?}: got {got:?}, want {want:?} {end}"))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn too_big_fails_closed() {
        let head = "To: a@x\r\n".repeat(100); // 900 bytes
        let ok = format!("{head}\r\nbody");
        assert_eq!(scan(ok.as_bytes(), 900).map(|h| h.end), Ok(900));
        assert_eq!(scan(ok.as_bytes(), 899), Err(HeaderError::TooBig));
        // No empty line at all: the whole message is the header section.
        assert_eq!(scan(head.as_bytes(), 900).map(|h| h.end), Ok(900));
        assert_eq!(scan(head.as_bytes(), 899), Err(HeaderError::TooBig));
        let one_line = format!("To: {}\r\n\r\n", "a".repeat(5000));
        assert_eq!(scan(one_line.as_bytes(), 4096), Err(HeaderError::TooBig));
        // A long body after a short header is fine.
        let body = format!("To: a\r\n\r\n{}", "b".repeat(5000));
        assert_eq!(scan(body.as_bytes(), 100).map(|h| h.end), Ok(7));
    }

    #[test]
    fn of_kind_sees_repeated_fields() {
        let msg = b"To: a\r\nCc: b\r\nTO: c\r\n\r\n";
        let h = scan(msg, 100).expect("fits");
        assert_eq!(h.of_kind(To).count(), 2);
        assert_eq!(h.of_kind(Cc).count(), 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_spans_tile(v in proptest::collection::vec(
            proptest::sample::select(b"ab: \t\r\n".to_vec()), 0..200)) {
            if let Ok(h) = scan(&v, 150) {
                let mut at = 0;
                for f in &h.fields {
                    proptest::prop_assert_eq!(f.span.start, at);
                    proptest::prop_assert!(f.value.start <= f.value.end && f.value.end <= f.span.end);
                    at = f.span.end;
                }
                proptest::prop_assert_eq!(at, h.end);
            }
        }
    }
}
