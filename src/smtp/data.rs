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

/// Incremental, strict reader of one DATA section.
#[derive(Debug)]
pub struct DataReader {
    limits: DataLimits,
}

impl DataReader {
    /// A reader positioned right after the client's `DATA` command.
    pub fn new(limits: DataLimits) -> Self {
        Self { limits }
    }

    /// Consumes bytes from `input`, appending the un-stuffed message (without
    /// the terminating `.<CR><LF>`) to `out`. Once an error is recorded no
    /// more bytes are appended, but input is still consumed to the end.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Fed {
        let _ = (input, out, self.limits);
        todo!()
    }

    /// The first problem seen, if any (meaningful once `done`).
    pub fn error(&self) -> Option<DataError> {
        todo!()
    }
}

/// Writes `parts` (one message, split anywhere) dot-stuffed, followed by the
/// terminating `.<CR><LF>`. Every part after the first continues the line
/// state of the one before. The message must be empty or end in CRLF (the
/// reader guarantees it), otherwise a CRLF is inserted before the dot.
pub fn write_stuffed(parts: &[&[u8]], out: &mut Vec<u8>) {
    let _ = (parts, out);
    todo!()
}
