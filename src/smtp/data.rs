//! Strict DATA reader and dot-stuffing writer (RFC 5321 4.5.2).
//!
//! Only `<CR><LF>.<CR><LF>` ends a message, and the very start of the data
//! counts as a line start (so `.\r\n` alone is an empty message). A bare CR
//! or bare LF anywhere in the data marks the message as unacceptable but does
//! not end it: the reader keeps consuming until the real terminator, so the
//! rest of the client's bytes can never be read as commands (SMTP smuggling,
//! CVE-2023-51764/5/6). Nothing is normalised before the end is found.
//!
//! On the way out every line start is dot-stuffed, position 0 included.
//!
//! Line length is counted on the *un-stuffed* line, CRLF excluded: the
//! transparency dot is not part of the text (RFC 5321 4.5.3.1.6 says the
//! 1000-octet limit is "not counting the leading dot duplicated for
//! transparency"), so a 998-octet line that starts with `.` still passes. A
//! bare CR or LF does not end a line for this count.

use memchr::{memchr3, memmem};

/// What the reader is allowed to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLimits {
    /// Largest unstuffed message (bytes) kept; beyond it data is drained.
    pub max_message_size: usize,
    /// Longest line in octets, CRLF excluded (RFC 5321 4.5.3.1.6 allows 998).
    pub max_line_length: usize,
}

/// Why a message that was read to its end cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// A CR not followed by LF, or an LF not preceded by CR.
    BareNewline,
    /// A NUL byte. Not allowed in SMTP text without BINARYMIME (RFC 6152
    /// section 3, RFC 5321 4.5.2), and an upstream that strips NULs would
    /// read `<CR><LF><NUL>.<CR><LF>` as end-of-data: a smuggling vector.
    Nul,
    /// More than `max_message_size` bytes.
    TooBig,
    /// A line longer than `max_line_length`.
    LineTooLong,
}

/// Progress of one [`DataReader::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input consumed; the rest belongs to the next command.
    pub consumed: usize,
    /// True once `<CR><LF>.<CR><LF>` (or `.<CR><LF>` at the start) was read.
    pub done: bool,
}

/// Where the reader stands between two bytes. Every partial terminator is a
/// state of its own, so a chunk may end anywhere without losing track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a line start: right after a CRLF, or at the very start of the data.
    LineStart,
    /// Line start, then `.`: the terminator or a transparency dot.
    Dot,
    /// Line start, then `.<CR>`: only an LF now ends the data.
    DotCr,
    /// Inside a line.
    Text,
    /// Inside a line, after a CR whose successor has not arrived yet.
    Cr,
    /// The terminator was read; nothing more is consumed.
    Done,
}

/// Incremental, strict reader of one DATA section.
#[derive(Debug)]
pub struct DataReader {
    limits: DataLimits,
    state: State,
    /// Octets of the current un-stuffed line so far, CRLF excluded.
    line_len: usize,
    /// Un-stuffed message bytes appended to `out` so far.
    size: usize,
    /// The first error; once set nothing more is appended or counted.
    error: Option<DataError>,
}

impl DataReader {
    /// A reader positioned right after the client's `DATA` command.
    pub fn new(limits: DataLimits) -> Self {
        Self {
            limits,
            state: State::LineStart,
            line_len: 0,
            size: 0,
            error: None,
        }
    }

    /// Consumes bytes from `input`, appending the un-stuffed message (without
    /// the terminating `.<CR><LF>`) to `out`. Once an error is recorded no
    /// more bytes are appended, but input is still consumed to the end.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Fed {
        let mut pos = 0;
        while let Some(&byte) = input.get(pos) {
            match self.state {
                State::Done => break,
                State::Text => pos = self.text(input, pos, out),
                State::LineStart => {
                    if byte == b'.' {
                        self.state = State::Dot;
                        pos += 1;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Dot => {
                    if byte == b'\r' {
                        self.state = State::DotCr;
                        pos += 1;
                    } else {
                        // A transparency dot: dropped, and not counted in the
                        // line length. The byte itself is read as text.
                        self.state = State::Text;
                    }
                }
                State::DotCr => {
                    if byte == b'\n' {
                        self.state = State::Done;
                        pos += 1;
                    } else {
                        // `.<CR>x`: not the end (`\r\n.\r\r\n` is a smuggling
                        // probe). The dot was stuffing, the CR is bare; `x`
                        // is read as text and may start a real CRLF.
                        self.fail(DataError::BareNewline);
                        self.state = State::Text;
                    }
                }
                State::Cr => {
                    if byte == b'\n' {
                        // The CR ended the previous chunk: still a real CRLF.
                        self.emit(b"\r\n", 0, out);
                        self.line_len = 0;
                        self.state = State::LineStart;
                        pos += 1;
                    } else {
                        self.fail(DataError::BareNewline);
                        self.state = State::Text;
                    }
                }
            }
        }
        Fed {
            consumed: pos,
            done: self.state == State::Done,
        }
    }

    /// The first problem seen, if any (meaningful once `done`).
    pub fn error(&self) -> Option<DataError> {
        self.error
    }

    /// Reads one run of line text starting at `start` (state `Text`) up to
    /// and including the next CR/LF decision; returns the new position.
    fn text(&mut self, input: &[u8], start: usize, out: &mut Vec<u8>) -> usize {
        let rest = input.get(start..).unwrap_or_default();
        let Some(k) = memchr3(b'\r', b'\n', b'\0', rest) else {
            self.emit(rest, rest.len(), out);
            return input.len();
        };
        let (run, tail) = rest.split_at(k);
        match tail {
            [b'\r', b'\n', ..] => {
                // The common case: the whole line and its CRLF in one copy.
                self.emit(rest.get(..k + 2).unwrap_or(run), k, out);
                self.line_len = 0;
                self.state = State::LineStart;
                start + k + 2
            }
            [b'\0', ..] => {
                // Refused, but read on to the real end like a bare newline.
                self.emit(run, k, out);
                self.fail(DataError::Nul);
                start + k + 1
            }
            [b'\r'] => {
                // The chunk ends on CR: decide when the next byte arrives.
                self.emit(run, k, out);
                self.state = State::Cr;
                start + k + 1
            }
            _ => {
                // Bare CR (next byte is not LF) or bare LF: neither ends the
                // line, so a following `.` is NOT at a line start. The next
                // byte is read as text (it may be the CR of a real CRLF).
                self.emit(run, k, out);
                self.fail(DataError::BareNewline);
                start + k + 1
            }
        }
    }

    /// Appends `bytes` (of which the first `line_octets` are line text, the
    /// rest a CRLF) unless an error was seen or a limit would be exceeded.
    ///
    /// On a limit, the bytes before the first offending byte are still
    /// appended and the limit crossed at the earlier byte wins (LineTooLong
    /// on a tie): error and output then do not depend on how the input was
    /// split into chunks, and `out` never grows past `max_message_size`.
    fn emit(&mut self, bytes: &[u8], line_octets: usize, out: &mut Vec<u8>) {
        if self.error.is_some() {
            return;
        }
        let to_line = self.limits.max_line_length.saturating_sub(self.line_len);
        let to_size = self.limits.max_message_size.saturating_sub(self.size);
        let line_over = (line_octets > to_line).then_some(to_line);
        let size_over = (bytes.len() > to_size).then_some(to_size);
        let (keep, error) = match (line_over, size_over) {
            (None, None) => {
                out.extend_from_slice(bytes);
                self.line_len += line_octets;
                self.size += bytes.len();
                return;
            }
            (Some(line), Some(size)) if size < line => (size, DataError::TooBig),
            (Some(line), _) => (line, DataError::LineTooLong),
            (None, Some(size)) => (size, DataError::TooBig),
        };
        out.extend_from_slice(bytes.get(..keep).unwrap_or_default());
        self.fail(error);
    }

    /// Records `error` unless an earlier one is already recorded.
    fn fail(&mut self, error: DataError) {
        self.error.get_or_insert(error);
    }
}

/// Writes `parts` (one message, split anywhere) dot-stuffed, followed by the
/// terminating `.<CR><LF>`. Every part after the first continues the line
/// state of the one before. The message must be empty or end in CRLF (the
/// reader guarantees it), otherwise a CRLF is inserted before the dot.
///
/// A line start is position 0 and every position after an LF. Stuffing after
/// a bare LF too (the reader never yields one) costs nothing and keeps an
/// upstream that ends lines at a bare LF from ever seeing `<LF>.` as a
/// terminator.
pub fn write_stuffed(parts: &[&[u8]], out: &mut Vec<u8>) {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    out.reserve(total + total / 256 + 5);
    let mut stuffer = Stuffer::new();
    for part in parts {
        stuffer.push(part, out);
    }
    stuffer.finish(out);
}

/// [`write_stuffed`] in pieces, so a large message can be sent in bounded
/// chunks instead of being copied whole: [`Stuffer::push`] any split of the
/// message, then [`Stuffer::finish`].
#[derive(Debug, Clone)]
pub struct Stuffer {
    finder: memmem::Finder<'static>,
    line_start: bool,
    /// The last two bytes of the message so far, to see if it ends in CRLF.
    tail: [u8; 2],
    total: usize,
}

impl Default for Stuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl Stuffer {
    /// At the start of a message (a line start).
    pub fn new() -> Self {
        Self {
            finder: memmem::Finder::new(b"\n."),
            line_start: true,
            tail: [0; 2],
            total: 0,
        }
    }

    /// Appends the next piece of the message, dot-stuffed, to `out`.
    pub fn push(&mut self, part: &[u8], out: &mut Vec<u8>) {
        if part.is_empty() {
            return;
        }
        if self.line_start && part.first() == Some(&b'.') {
            out.push(b'.');
        }
        let mut copied = 0;
        for hit in self.finder.find_iter(part) {
            // Copy through the LF, add the stuffing dot; the original dot
            // starts the next run.
            out.extend_from_slice(part.get(copied..=hit).unwrap_or_default());
            out.push(b'.');
            copied = hit + 1;
        }
        out.extend_from_slice(part.get(copied..).unwrap_or_default());
        self.line_start = part.last() == Some(&b'\n');
        self.tail = match *part {
            [.., a, b] => [a, b],
            [b] => [self.tail[1], b],
            [] => self.tail,
        };
        self.total += part.len();
    }

    /// Appends the terminator (with a CRLF first if the message did not end
    /// in one).
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.total != 0 && self.tail != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests;
