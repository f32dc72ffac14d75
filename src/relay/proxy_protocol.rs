//! The PROXY protocol (versions 1 and 2): the header a load balancer
//! (HAProxy, nginx `stream`, cloud TCP load balancers) puts in front of a
//! relayed connection to tell the guard who the real client is.
//!
//! [`parse`] is I/O-free and incremental: besides a complete header or an
//! error it can answer "at least N more bytes belong to the header", so
//! [`read_header`] reads exactly the header and never a byte of the SMTP
//! stream behind it, which belongs to the session.
//!
//! Section numbers refer to the specification, HAProxy's
//! `doc/proxy-protocol.txt` (revision 2020/03/05): 2 (rules common to both
//! versions), 2.1 (version 1, a text line), 2.2 (version 2, binary), 5
//! (security considerations).
//!
//! Fail closed. Anything that is not exactly a valid header is an error and
//! the caller drops the connection (2.1: "Any sequence which does not exactly
//! match the protocol must be discarded and cause the receiver to abort the
//! connection"). A version 2 PROXY command for anything but TCP over IPv4 or
//! IPv6 is refused too, although 2.2 would allow falling back to the socket's
//! own peer: that peer is the load balancer, which may well sit inside
//! `server.trusted_networks`, and the fallback would let an unknown client
//! relay as if it were trusted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte signature opening every version 2 header (2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The start of every version 1 line (2.1): "PROXY" and exactly one space.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 line, CRLF included (2.1: "PROXY UNKNOWN" with two
/// full IPv6 addresses and two 5-digit ports is 107 characters).
pub const V1_MAX_LEN: usize = 107;
/// The shortest header of either version: `PROXY UNKNOWN\r\n` (2.1). A
/// version 2 header is at least [`V2_FIXED_LEN`] bytes, so reading this many
/// bytes first can never read past a header.
const MIN_LEN: usize = 15;
/// Signature, version/command, family/protocol and the 2-byte length (2.2).
const V2_FIXED_LEN: usize = 16;
/// The largest version 2 address block plus TLVs accepted (the 2-byte length
/// field could announce 65535). The specification designs headers to fit in
/// 536 bytes (2); TLVs that real senders add (HAProxy's SSL and unique-id
/// TLVs, 2.2.5-2.2.6; the cloud load balancers' endpoint ids, 2.2.8) stay
/// well below this, and it bounds what an unauthenticated peer makes us
/// buffer.
pub const V2_MAX_PAYLOAD: usize = 2048;
/// How long a trusted peer has to deliver its whole header, by default
/// ([`crate::config::DEFAULT_PROXY_PROTOCOL_TIMEOUT`]).
pub const HEADER_TIMEOUT: Duration = crate::config::DEFAULT_PROXY_PROTOCOL_TIMEOUT;

/// Address block lengths for TCP over IPv4 and IPv6 (2.2).
const V2_INET_LEN: usize = 4 + 4 + 2 + 2;
const V2_INET6_LEN: usize = 16 + 16 + 2 + 2;

/// Which version of the protocol a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text line (2.1).
    V1,
    /// The binary header (2.2).
    V2,
}

impl Version {
    /// `v1` or `v2`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// What a valid header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Relayed on behalf of this client (v1 `TCP4`/`TCP6`, v2 `PROXY` over
    /// TCP).
    Relayed {
        /// The real client.
        source: SocketAddr,
        /// The address the client connected to (the load balancer's).
        destination: SocketAddr,
    },
    /// The proxy's own connection (v2 `LOCAL`, e.g. a health check) or one
    /// it could not describe (v1 `UNKNOWN`): 2.1 and 2.2 say to use the real
    /// connection endpoints, so the socket's peer is the client.
    Local,
}

/// A complete, valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The version it was written in.
    pub version: Version,
    /// Whom the connection is for.
    pub origin: Origin,
}

impl Header {
    /// The client address to use for a connection whose socket peer is
    /// `peer`.
    pub fn client(&self, peer: SocketAddr) -> SocketAddr {
        match self.origin {
            Origin::Relayed { source, .. } => source,
            Origin::Local => peer,
        }
    }
}

/// The result of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A header, `len` bytes long (bytes after it are not the header's).
    Complete {
        /// The header.
        header: Header,
        /// Its length in bytes.
        len: usize,
    },
    /// At least this many more bytes belong to the header (never more than
    /// the header still needs, so reading exactly this many is safe).
    Incomplete {
        /// Bytes still needed, at least 1.
        at_least: usize,
    },
}

/// Why bytes are not a valid header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Neither the version 1 nor the version 2 signature (2.2: "the
    /// connection must be dropped").
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// No CRLF within the first 107 bytes (2.1).
    #[error("PROXY v1 line longer than {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A version 1 line that does not match the grammar of 2.1.
    #[error("PROXY v1 line: {0}")]
    V1Syntax(&'static str),
    /// Version nibble other than 2 (2.2: "the receiver must only accept
    /// this value").
    #[error("PROXY v2 version nibble {0:#x}, expected 0x2")]
    V2Version(u8),
    /// Command other than LOCAL or PROXY (2.2: "Receivers must drop
    /// connections presenting unexpected values here").
    #[error("PROXY v2 command {0:#x}, expected LOCAL (0x0) or PROXY (0x1)")]
    V2Command(u8),
    /// Family or transport value the specification does not define.
    #[error("PROXY v2 family/transport byte {0:#04x} is not defined")]
    V2Family(u8),
    /// A PROXY command for something other than TCP over IPv4/IPv6.
    #[error("PROXY v2 relays {0}; only TCP over IPv4 or IPv6 is accepted")]
    V2Unsupported(&'static str),
    /// The announced length exceeds [`V2_MAX_PAYLOAD`].
    #[error("PROXY v2 header announces {0} bytes after the fixed part (at most {V2_MAX_PAYLOAD})")]
    V2TooLarge(usize),
    /// The announced length is shorter than the address block.
    #[error("PROXY v2 address block of {got} bytes, {need} needed")]
    V2AddressLength {
        /// Bytes announced.
        got: usize,
        /// Bytes the family needs.
        need: usize,
    },
    /// A TLV whose length runs past the end of the header.
    #[error("PROXY v2 TLV runs past the end of the header")]
    V2Tlv,
}

/// Parses the start of a connection. Never looks past the header, so `buf`
/// may hold more.
pub fn parse(buf: &[u8]) -> Result<Status, HeaderError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    let maybe_v2 = buf[..n] == V2_SIGNATURE[..n];
    let n = buf.len().min(V1_PREFIX.len());
    let maybe_v1 = buf[..n] == V1_PREFIX[..n];
    let incomplete = |at_least: usize| Ok(Status::Incomplete { at_least });
    match (maybe_v1, maybe_v2) {
        (false, false) => Err(HeaderError::NotProxy),
        (_, true) if buf.len() >= V2_SIGNATURE.len() => parse_v2(buf),
        (true, _) if buf.len() >= V1_PREFIX.len() => parse_v1(buf),
        (false, true) => incomplete(V2_FIXED_LEN - buf.len()),
        (true, _) => incomplete(MIN_LEN - buf.len()),
    }
}

/// Version 1 (2.1): `PROXY TCP4|TCP6|UNKNOWN ...\r\n`, printable US-ASCII.
fn parse_v1(buf: &[u8]) -> Result<Status, HeaderError> {
    let syntax = |why| Err(HeaderError::V1Syntax(why));
    for (i, &b) in buf.iter().enumerate().take(V1_MAX_LEN) {
        match b {
            // 2.1: "The receiver must not tolerate a single CR or LF
            // character to end the line when a complete CRLF sequence is
            // expected."
            b'\r' => {
                if i + 2 > V1_MAX_LEN {
                    return Err(HeaderError::V1TooLong);
                }
                return match buf.get(i + 1) {
                    Some(b'\n') => Ok(Status::Complete {
                        header: v1_line(&buf[..i])?,
                        len: i + 2,
                    }),
                    Some(_) => syntax("CR not followed by LF"),
                    None => Ok(Status::Incomplete { at_least: 1 }),
                };
            }
            b'\n' => return syntax("LF without CR"),
            0x20..=0x7e => {}
            _ => return syntax("byte outside printable US-ASCII"),
        }
    }
    if buf.len() >= V1_MAX_LEN {
        return Err(HeaderError::V1TooLong);
    }
    // The line has no length field (the reason 2.2 gives for version 2):
    // beyond the shortest header, only one more byte is certain.
    Ok(Status::Incomplete {
        at_least: MIN_LEN.saturating_sub(buf.len()).max(1),
    })
}

/// The fields of a version 1 line without its CRLF.
fn v1_line(line: &[u8]) -> Result<Header, HeaderError> {
    // Only printable ASCII reaches here, so this cannot fail.
    let line = std::str::from_utf8(line).map_err(|_| HeaderError::V1Syntax("not ASCII"))?;
    // Splitting on single spaces makes a doubled space an empty field, which
    // no rule accepts (2.1: "exactly one space").
    let fields: Vec<&str> = line.split(' ').collect();
    let v4 = match fields.get(1).copied() {
        // 2.1: "the receiver must ignore anything presented before the CRLF
        // is found" and use the real connection's endpoints.
        Some("UNKNOWN") => {
            return Ok(Header {
                version: Version::V1,
                origin: Origin::Local,
            });
        }
        Some("TCP4") => true,
        Some("TCP6") => false,
        _ => {
            return Err(HeaderError::V1Syntax(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let [_, _, src, dst, sport, dport] = fields[..] else {
        return Err(HeaderError::V1Syntax(
            "expected 6 fields separated by single spaces",
        ));
    };
    let source = SocketAddr::new(v1_ip(src, v4)?, v1_port(sport)?);
    let destination = SocketAddr::new(v1_ip(dst, v4)?, v1_port(dport)?);
    Ok(Header {
        version: Version::V1,
        origin: Origin::Relayed {
            source,
            destination,
        },
    })
}

/// An address of the announced family. The standard library's parser
/// already refuses IPv4 octets with leading zeros, as 2.1 demands (no
/// octal confusion).
fn v1_ip(s: &str, v4: bool) -> Result<IpAddr, HeaderError> {
    let ip = if v4 {
        s.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
    } else {
        s.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
    };
    ip.ok_or(HeaderError::V1Syntax(
        "address is not in the announced family's canonical form",
    ))
}

/// A decimal port, 0..=65535, digits only and no leading zero (2.1).
fn v1_port(s: &str) -> Result<u16, HeaderError> {
    let digits_only = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = s.len() > 1 && s.starts_with('0');
    match s.parse::<u16>() {
        Ok(p) if digits_only && !leading_zero => Ok(p),
        _ => Err(HeaderError::V1Syntax("port is not a decimal 0..65535")),
    }
}

/// Version 2 (2.2): signature, version/command, family/transport, length,
/// address block, TLVs.
fn parse_v2(buf: &[u8]) -> Result<Status, HeaderError> {
    if buf.len() < V2_FIXED_LEN {
        return Ok(Status::Incomplete {
            at_least: V2_FIXED_LEN - buf.len(),
        });
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 0x2 {
        return Err(HeaderError::V2Version(version));
    }
    let local = match command {
        0x0 => true,
        0x1 => false,
        other => return Err(HeaderError::V2Command(other)),
    };
    // 2.2: families above AF_UNIX and transports above DGRAM "must be
    // rejected as invalid by receivers", whatever the command.
    let fam = buf[13];
    if fam >> 4 > 0x3 || fam & 0x0f > 0x2 {
        return Err(HeaderError::V2Family(fam));
    }
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Err(HeaderError::V2TooLarge(payload));
    }
    let len = V2_FIXED_LEN + payload;
    if buf.len() < len {
        return Ok(Status::Incomplete {
            at_least: len - buf.len(),
        });
    }
    let block = &buf[V2_FIXED_LEN..len];
    // 2.2: for LOCAL the receiver "must use the real connection endpoints
    // and discard the protocol block including the family", and must skip
    // the announced length rather than assume zero.
    let origin = if local {
        Origin::Local
    } else {
        let (origin, used) = v2_addresses(fam, block)?;
        check_tlvs(&block[used..])?;
        origin
    };
    Ok(Status::Complete {
        header: Header {
            version: Version::V2,
            origin,
        },
        len,
    })
}

/// The source and destination of a PROXY command, and the bytes they used.
fn v2_addresses(fam: u8, block: &[u8]) -> Result<(Origin, usize), HeaderError> {
    let need = match fam {
        0x11 => V2_INET_LEN,
        0x21 => V2_INET6_LEN,
        0x00 => return Err(HeaderError::V2Unsupported("an unspecified family")),
        0x12 | 0x22 => return Err(HeaderError::V2Unsupported("UDP")),
        _ => return Err(HeaderError::V2Unsupported("a UNIX socket")),
    };
    let a = block.get(..need).ok_or(HeaderError::V2AddressLength {
        got: block.len(),
        need,
    })?;
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    let (source, destination) = if need == V2_INET_LEN {
        let ip = |i: usize| IpAddr::from([a[i], a[i + 1], a[i + 2], a[i + 3]]);
        (
            SocketAddr::new(ip(0), port(8)),
            SocketAddr::new(ip(4), port(10)),
        )
    } else {
        let ip = |i: usize| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[i..i + 16]);
            IpAddr::from(octets)
        };
        (
            SocketAddr::new(ip(0), port(32)),
            SocketAddr::new(ip(16), port(34)),
        )
    };
    Ok((
        Origin::Relayed {
            source,
            destination,
        },
        need,
    ))
}

/// TLVs are skipped (2.2: "A receiver may choose to skip over and ignore
/// the TLVs"), but their framing must add up: a length running past the
/// header means the sender and the guard disagree about where the SMTP
/// stream starts.
fn check_tlvs(mut rest: &[u8]) -> Result<(), HeaderError> {
    while !rest.is_empty() {
        let [_kind, hi, lo, ..] = *rest else {
            return Err(HeaderError::V2Tlv);
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        rest = rest.get(end..).ok_or(HeaderError::V2Tlv)?;
    }
    Ok(())
}

/// Why no header could be read from a connection.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not a valid header.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The peer closed the connection after `received` bytes (0: a TCP
    /// health check or port probe, not an error worth a warning).
    #[error("connection closed after {received} byte(s), before a complete PROXY header")]
    Closed {
        /// Bytes received before the close.
        received: usize,
    },
    /// No complete header within the timeout.
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    /// The socket failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads exactly one header from `r`, within `timeout`. Not a byte more is
/// consumed, so the caller can hand the stream to the SMTP session as it is.
pub async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    timeout: Duration,
) -> Result<Header, ReadError> {
    tokio::time::timeout(timeout, read_exactly_the_header(r))
        .await
        .map_err(|_| ReadError::Timeout(timeout))?
}

async fn read_exactly_the_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Header, ReadError> {
    let mut buf = Vec::with_capacity(V1_MAX_LEN);
    loop {
        let at_least = match parse(&buf)? {
            Status::Complete { header, .. } => return Ok(header),
            Status::Incomplete { at_least } => at_least,
        };
        let mut filled = buf.len();
        buf.resize(filled + at_least, 0);
        while filled < buf.len() {
            match r.read(&mut buf[filled..]).await? {
                0 => return Err(ReadError::Closed { received: filled }),
                n => filled += n,
            }
        }
    }
}

#[cfg(test)]
mod tests;
