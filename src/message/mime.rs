//! The header sections of attached messages: a forwarded `message/rfc822`
//! (or `message/global`, RFC 6532 3.5) whose own To holds the list, a
//! `text/rfc822-headers` part (RFC 6522 bounces), and an attachment named
//! `*.eml` (what a mail client opens as a message, whatever its type says),
//! nested to any depth within the limit. Only the structure is walked:
//! multipart boundaries (RFC 2046 5.1.1) and part headers are read, and
//! only an attached message's own bytes are decoded (base64 or
//! quoted-printable, which RFC 2046 forbids for message/rfc822 but clients
//! decode anyway), so a 20 MB PDF beside it costs one boundary search.
//!
//! I/O-free and bounded: nesting deeper than the limit, or a part header
//! section over the header limit, is an error (the guard refuses what it
//! cannot read in full), never a silent stop.

use std::borrow::Cow;

use super::headers::{FieldKind, HeaderError, Headers, scan};

/// How deep and how large the walk may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of multiparts and attached messages read.
    pub max_depth: usize,
    /// Largest header section of a part or attached message.
    pub max_header_size: usize,
}

/// Why the structure cannot be read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MimeError {
    /// Nested deeper than [`Limits::max_depth`].
    TooDeep,
    /// A part's or attached message's header section is over the limit.
    HeaderTooBig,
}

/// One header section a reader can open inside the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The header section, CRLF line ends, without the empty line after it.
    pub header: Vec<u8>,
    /// 1 for a message attached to the top level, 2 inside that, ...
    pub depth: usize,
}

/// Every attached header section in `msg` (scanned as `headers`), in order.
pub fn attached(msg: &[u8], headers: &Headers, limits: Limits) -> Result<Vec<Attached>, MimeError> {
    let mut out = Vec::new();
    let mut walk = Walk {
        limits,
        out: &mut out,
    };
    walk.entity(msg, headers, 0, 0)?;
    Ok(out)
}

struct Walk<'o> {
    limits: Limits,
    out: &'o mut Vec<Attached>,
}

impl Walk<'_> {
    /// One MIME entity: `bytes` is its header section and body, `depth` the
    /// nesting of multiparts, `messages` how many attached messages enclose
    /// it.
    fn entity(
        &mut self,
        bytes: &[u8],
        headers: &Headers,
        depth: usize,
        messages: usize,
    ) -> Result<(), MimeError> {
        if depth > self.limits.max_depth {
            return Err(MimeError::TooDeep);
        }
        let info = Entity::read(bytes, headers);
        let body = body_of(bytes, headers);
        if info.media.starts_with("multipart/") {
            let Some(boundary) = info.boundary.as_deref() else {
                return Ok(());
            };
            for part in parts(body, boundary.as_bytes()) {
                let h = self.scan(part)?;
                self.entity(part, &h, depth + 1, messages)?;
            }
        } else if matches!(info.media.as_str(), "message/rfc822" | "message/global") || info.eml {
            let inner = decoded(body, &info.encoding);
            let h = self.scan(&inner)?;
            self.out.push(Attached {
                header: inner[..h.end].to_vec(),
                depth: messages + 1,
            });
            self.entity(&inner, &h, depth + 1, messages + 1)?;
        } else if info.media == "text/rfc822-headers" {
            let inner = decoded(body, &info.encoding);
            let h = self.scan(&inner)?;
            self.out.push(Attached {
                header: inner[..h.end].to_vec(),
                depth: messages + 1,
            });
        }
        Ok(())
    }

    fn scan(&self, bytes: &[u8]) -> Result<Headers, MimeError> {
        scan(bytes, self.limits.max_header_size).map_err(|_: HeaderError| MimeError::HeaderTooBig)
    }
}

/// The body of an entity: after the empty line that ends its header.
fn body_of<'b>(bytes: &'b [u8], headers: &Headers) -> &'b [u8] {
    let rest = bytes.get(headers.end..).unwrap_or_default();
    rest.strip_prefix(b"\r\n").unwrap_or(rest)
}

/// What the walk needs from a part's header.
#[derive(Debug, Default)]
struct Entity {
    /// Media type, lowercase; `text/plain` when absent (RFC 2045 5.2).
    media: String,
    boundary: Option<String>,
    /// Content-Transfer-Encoding, lowercase.
    encoding: String,
    /// A file name ending in `.eml`.
    eml: bool,
}

impl Entity {
    fn read(bytes: &[u8], headers: &Headers) -> Entity {
        let mut e = Entity {
            media: "text/plain".into(),
            ..Entity::default()
        };
        let mut have_type = false;
        for f in &headers.fields {
            let value = bytes.get(f.value.clone()).unwrap_or_default();
            let name = f.lenient_name(bytes);
            if f.kind == FieldKind::ContentType && !have_type {
                // The first Content-Type decides, as in mail-parser.
                have_type = true;
                let (media, params) = params(value);
                e.media = media;
                e.boundary = param(&params, "boundary");
                e.eml |= param(&params, "name").is_some_and(|n| is_eml(&n));
            } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
                e.encoding = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
            } else if name.eq_ignore_ascii_case(b"content-disposition") {
                let (_, params) = params(value);
                e.eml |= param(&params, "filename").is_some_and(|n| is_eml(&n));
            }
        }
        e
    }
}

fn is_eml(name: &str) -> bool {
    name.trim().to_ascii_lowercase().ends_with(".eml")
}

/// `type/subtype; name=value; ...` (RFC 2045 5.1): the media type
/// lowercased and the parameters, quoted strings unquoted, comments dropped.
fn params(value: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(value);
    let mut items = Vec::new();
    let (mut cur, mut quoted, mut depth, mut escaped) = (String::new(), false, 0usize, false);
    for c in text.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            ';' if !quoted => items.push(std::mem::take(&mut cur)),
            '\r' | '\n' => {}
            _ => cur.push(c),
        }
    }
    items.push(cur);
    let mut items = items.into_iter();
    let media = items.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = items
        .filter_map(|p| {
            let (n, v) = p.split_once('=')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    (media, params)
}

/// A parameter's value, RFC 2231 continuations (`name*0=`, `name*1*=`) and
/// percent-encoded values (`name*=utf-8''%41`) joined and decoded.
fn param(params: &[(String, String)], name: &str) -> Option<String> {
    if let Some((_, v)) = params.iter().find(|(n, _)| n == name) {
        return Some(v.clone());
    }
    let mut pieces: Vec<(usize, bool, &str)> = params
        .iter()
        .filter_map(|(n, v)| {
            let rest = n.strip_prefix(name)?.strip_prefix('*')?;
            let (index, encoded) = match rest.strip_suffix('*') {
                Some(i) => (i, true),
                None if rest.is_empty() => ("0", true),
                None => (rest, false),
            };
            Some((index.parse().ok()?, encoded, v.as_str()))
        })
        .collect();
    if pieces.is_empty() {
        return None;
    }
    pieces.sort_by_key(|p| p.0);
    let mut bytes = Vec::new();
    for (index, encoded, v) in pieces {
        // The first encoded piece starts with `charset'language'`.
        let v = match (index, encoded) {
            (0, true) => v.splitn(3, '\'').nth(2).unwrap_or(v),
            _ => v,
        };
        if encoded {
            bytes.extend(percent_decode(v.as_bytes()));
        } else {
            bytes.extend_from_slice(v.as_bytes());
        }
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            v[i],
            v.get(i + 1).and_then(|&b| hex(b)),
            v.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The parts of a multipart body between its delimiter lines (RFC 2046
/// 5.1.1: `--boundary` at the start of a line, optional whitespace, and
/// `--boundary--` to close). The CRLF before a delimiter belongs to it.
/// Without a close delimiter the last part runs to the end, as clients
/// show it.
fn parts<'b>(body: &'b [u8], boundary: &[u8]) -> Vec<&'b [u8]> {
    let mut delim = Vec::with_capacity(boundary.len() + 4);
    delim.extend_from_slice(b"\r\n--");
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);
    // Line starts of delimiter lines: (start of the CRLF before it, or 0;
    // offset after the line; is it the close delimiter).
    let mut delimiters = Vec::new();
    let mut candidates: Vec<usize> = Vec::new();
    if body.starts_with(&delim[2..]) {
        candidates.push(0);
    }
    candidates.extend(finder.find_iter(body));
    for at in candidates {
        let name_end = if at == 0 {
            delim.len() - 2
        } else {
            at + delim.len()
        };
        let rest = &body[name_end..];
        let close = rest.starts_with(b"--");
        let after = if close { &rest[2..] } else { rest };
        let line_end = memchr::memmem::find(after, b"\r\n").unwrap_or(after.len());
        if !after[..line_end].iter().all(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        let next = (name_end + (rest.len() - after.len()) + line_end + 2).min(body.len());
        delimiters.push((at, next, close));
    }
    let mut out = Vec::new();
    for (i, &(_, next, close)) in delimiters.iter().enumerate() {
        if close {
            break;
        }
        let end = delimiters.get(i + 1).map_or(body.len(), |d| d.0);
        if next <= end {
            out.push(&body[next..end]);
        }
    }
    out
}

/// The body decoded by its transfer encoding; as it is when the encoding
/// is an identity one or unknown, or the bytes do not decode.
fn decode<'b>(body: &'b [u8], encoding: &str) -> Cow<'b, [u8]> {
    let decoded = match encoding {
        "base64" => mail_parser::decoders::base64::base64_decode(body),
        "quoted-printable" => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
        }
        _ => None,
    };
    decoded.map_or(Cow::Borrowed(body), Cow::Owned)
}

/// The body as the header scanner reads it: decoded by its transfer
/// encoding, then with CRLF line ends. Undecoded bytes are a slice of the
/// message the DATA reader already holds to CRLF, so only decoded ones are
/// scanned for bare line ends (a hundred nested levels do not each rescan
/// the whole message).
fn decoded<'b>(body: &'b [u8], encoding: &str) -> Cow<'b, [u8]> {
    match decode(body, encoding) {
        Cow::Borrowed(b) => Cow::Borrowed(b),
        owned => crlf(owned),
    }
}

/// Line ends as SMTP has them: a bare LF or CR becomes CRLF (files and
/// decoded attachments often have LF only; the header scanner reads CRLF).
fn crlf<'b>(raw: Cow<'b, [u8]>) -> Cow<'b, [u8]> {
    let bare = raw.iter().enumerate().any(|(i, &b)| {
        (b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
            || (b == b'\r' && raw.get(i + 1) != Some(&b'\n'))
    });
    if !bare {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut prev = 0u8;
    for &b in raw.iter() {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        if prev == b'\r' && b != b'\n' {
            out.push(b'\n');
        }
        out.push(b);
        prev = b;
    }
    if prev == b'\r' {
        out.push(b'\n');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
