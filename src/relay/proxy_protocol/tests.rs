//! Table tests of the PROXY protocol parser: valid headers of both versions,
//! every strict prefix of them (never read past a header), garbage,
//! truncated, oversized and malformed input, and the async reader on
//! fragmented, closed and silent connections.

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn relayed(version: Version, src: &str, dst: &str) -> Header {
    Header {
        version,
        origin: Origin::Relayed {
            source: sa(src),
            destination: sa(dst),
        },
    }
}

fn local(version: Version) -> Header {
    Header {
        version,
        origin: Origin::Local,
    }
}

/// A version 2 header: `ver_cmd`, `fam`, then `block` (addresses + TLVs).
fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(ver_cmd);
    h.push(fam);
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(block);
    h
}

/// TCP over IPv4 address block: 203.0.113.7:40000 -> 192.0.2.1:25.
fn inet_block() -> Vec<u8> {
    let mut b = vec![203, 0, 113, 7, 192, 0, 2, 1];
    b.extend_from_slice(&40000u16.to_be_bytes());
    b.extend_from_slice(&25u16.to_be_bytes());
    b
}

/// TCP over IPv6 address block: [2001:db8::7]:40000 -> [2001:db8::1]:587.
fn inet6_block() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&40000u16.to_be_bytes());
    b.extend_from_slice(&587u16.to_be_bytes());
    b
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut t = vec![kind];
    t.extend_from_slice(&(value.len() as u16).to_be_bytes());
    t.extend_from_slice(value);
    t
}

const WORST_V1: &str = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

/// Every valid header in the tables, with what it must parse to.
fn valid() -> Vec<(&'static str, Vec<u8>, Header)> {
    let v4 = || relayed(Version::V2, "203.0.113.7:40000", "192.0.2.1:25");
    let mut with_tlvs = inet_block();
    with_tlvs.extend(tlv(0x01, b"smtp")); // PP2_TYPE_ALPN
    with_tlvs.extend(tlv(0x04, b"")); // PP2_TYPE_NOOP, empty
    with_tlvs.extend(tlv(0x05, &[0xAB; 128])); // PP2_TYPE_UNIQUE_ID, longest
    with_tlvs.extend(tlv(0xEA, b"\x01vpce-0123456789abcdef0")); // custom range (2.2.8)
    let mut local_with_block = inet_block();
    local_with_block.extend(tlv(0x04, b"pad"));
    vec![
        (
            "v1 TCP4",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n".to_vec(),
            relayed(Version::V1, "203.0.113.7:40000", "192.0.2.1:25"),
        ),
        (
            "v1 TCP4 longest (56 bytes)",
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".to_vec(),
            relayed(
                Version::V1,
                "255.255.255.255:65535",
                "255.255.255.255:65535",
            ),
        ),
        (
            "v1 TCP6",
            b"PROXY TCP6 2001:db8::7 2001:DB8::1 40000 587\r\n".to_vec(),
            relayed(Version::V1, "[2001:db8::7]:40000", "[2001:db8::1]:587"),
        ),
        (
            "v1 port 0",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 0 25\r\n".to_vec(),
            relayed(Version::V1, "203.0.113.7:0", "192.0.2.1:25"),
        ),
        (
            "v1 UNKNOWN short form",
            b"PROXY UNKNOWN\r\n".to_vec(),
            local(Version::V1),
        ),
        (
            "v1 UNKNOWN worst case (107 bytes)",
            WORST_V1.as_bytes().to_vec(),
            local(Version::V1),
        ),
        ("v2 PROXY TCP4", v2(0x21, 0x11, &inet_block()), v4()),
        (
            "v2 PROXY TCP6",
            v2(0x21, 0x21, &inet6_block()),
            relayed(Version::V2, "[2001:db8::7]:40000", "[2001:db8::1]:587"),
        ),
        (
            "v2 PROXY TCP4 with TLVs skipped",
            v2(0x21, 0x11, &with_tlvs),
            v4(),
        ),
        (
            "v2 LOCAL, no block",
            v2(0x20, 0x00, &[]),
            local(Version::V2),
        ),
        (
            "v2 LOCAL with a block that must be skipped",
            v2(0x20, 0x11, &local_with_block),
            local(Version::V2),
        ),
        (
            "v2 LOCAL over UNIX (family ignored)",
            v2(0x20, 0x31, &[0u8; 216]),
            local(Version::V2),
        ),
    ]
}

#[test]
fn valid_headers_parse_and_report_their_exact_length() {
    for (name, bytes, want) in valid() {
        let mut with_smtp = bytes.clone();
        with_smtp.extend_from_slice(b"EHLO client.test\r\n");
        for input in [&bytes, &with_smtp] {
            match parse(input) {
                Ok(Status::Complete { header, len }) => {
                    assert_eq!(header, want, "{name}");
                    assert_eq!(len, bytes.len(), "{name}: length");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}

#[test]
fn every_strict_prefix_asks_for_no_more_than_the_header_has_left() {
    for (name, bytes, _) in valid() {
        for k in 0..bytes.len() {
            match parse(&bytes[..k]) {
                Ok(Status::Incomplete { at_least }) => assert!(
                    (1..=bytes.len() - k).contains(&at_least),
                    "{name}: prefix {k} asks for {at_least} of {} left",
                    bytes.len() - k
                ),
                other => panic!("{name}: prefix {k}: {other:?}"),
            }
        }
    }
}

#[test]
fn version_2_lengths_are_known_from_the_fixed_part() {
    let h = v2(0x21, 0x21, &inet6_block());
    assert_eq!(parse(&h[..0]), Ok(Status::Incomplete { at_least: 15 }));
    assert_eq!(parse(&h[..1]), Ok(Status::Incomplete { at_least: 15 }));
    assert_eq!(parse(&h[..12]), Ok(Status::Incomplete { at_least: 4 }));
    assert_eq!(parse(&h[..16]), Ok(Status::Incomplete { at_least: 36 }));
}

#[test]
fn invalid_headers_are_refused_with_the_reason() {
    use HeaderError::*;
    let too_long_v1 = format!("PROXY UNKNOWN {}", "a".repeat(200));
    let cr_at_106 = format!("PROXY UNKNOWN {}\r\n", "a".repeat(92));
    assert_eq!(cr_at_106.len(), 108);
    let mut bad_sig = v2(0x21, 0x11, &inet_block());
    bad_sig[11] = b'X';
    let mut short_tlv = inet_block();
    short_tlv.extend_from_slice(&[0x01, 0x00]);
    let mut overrunning_tlv = inet_block();
    overrunning_tlv.extend_from_slice(&[0x01, 0x00, 0x10, b's', b'm']);
    let table: Vec<(&str, Vec<u8>, HeaderError)> = vec![
        ("SMTP", b"EHLO client.test\r\n".to_vec(), NotProxy),
        ("HTTP", b"GET / HTTP/1.1\r\n".to_vec(), NotProxy),
        (
            "TLS ClientHello",
            b"\x16\x03\x01\x02\x00\x01".to_vec(),
            NotProxy,
        ),
        ("lower case", b"proxy TCP4 1.2.3.4".to_vec(), NotProxy),
        ("no space after PROXY", b"PROXYTCP4".to_vec(), NotProxy),
        ("v2 signature damaged", bad_sig, NotProxy),
        (
            "v1 LF without CR",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\n".to_vec(),
            V1Syntax("LF without CR"),
        ),
        (
            "v1 CR without LF",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\rX".to_vec(),
            V1Syntax("CR not followed by LF"),
        ),
        (
            "v1 double space",
            b"PROXY TCP4  203.0.113.7 192.0.2.1 40000 25\r\n".to_vec(),
            V1Syntax("expected 6 fields separated by single spaces"),
        ),
        (
            "v1 trailing space",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25 \r\n".to_vec(),
            V1Syntax("expected 6 fields separated by single spaces"),
        ),
        (
            "v1 missing port",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 40000\r\n".to_vec(),
            V1Syntax("expected 6 fields separated by single spaces"),
        ),
        (
            "v1 UDP",
            b"PROXY UDP4 203.0.113.7 192.0.2.1 40000 25\r\n".to_vec(),
            V1Syntax("protocol is not TCP4, TCP6 or UNKNOWN"),
        ),
        (
            "v1 TCP4 with IPv6 addresses",
            b"PROXY TCP4 2001:db8::7 2001:db8::1 40000 25\r\n".to_vec(),
            V1Syntax("address is not in the announced family's canonical form"),
        ),
        (
            "v1 TCP6 with IPv4 addresses",
            b"PROXY TCP6 203.0.113.7 192.0.2.1 40000 25\r\n".to_vec(),
            V1Syntax("address is not in the announced family's canonical form"),
        ),
        (
            "v1 octal-looking octet",
            b"PROXY TCP4 203.000.113.7 192.0.2.1 40000 25\r\n".to_vec(),
            V1Syntax("address is not in the announced family's canonical form"),
        ),
        (
            "v1 host name",
            b"PROXY TCP4 client.test 192.0.2.1 40000 25\r\n".to_vec(),
            V1Syntax("address is not in the announced family's canonical form"),
        ),
        (
            "v1 port with leading zero",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 040000 25\r\n".to_vec(),
            V1Syntax("port is not a decimal 0..65535"),
        ),
        (
            "v1 port with sign",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 +4000 25\r\n".to_vec(),
            V1Syntax("port is not a decimal 0..65535"),
        ),
        (
            "v1 port too large",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 25\r\n".to_vec(),
            V1Syntax("port is not a decimal 0..65535"),
        ),
        (
            "v1 NUL byte",
            b"PROXY TCP4 203.0.113.7\0".to_vec(),
            V1Syntax("byte outside printable US-ASCII"),
        ),
        (
            "v1 non-ASCII byte",
            b"PROXY TCP4 203.0.113.7 \xff".to_vec(),
            V1Syntax("byte outside printable US-ASCII"),
        ),
        (
            "v1 no CRLF in 107 bytes",
            too_long_v1.into_bytes(),
            V1TooLong,
        ),
        (
            "v1 CRLF ending at byte 108",
            cr_at_106.into_bytes(),
            V1TooLong,
        ),
        (
            "v2 version 1",
            v2(0x11, 0x11, &inet_block()),
            V2Version(0x1),
        ),
        (
            "v2 version 3",
            v2(0x31, 0x11, &inet_block()),
            V2Version(0x3),
        ),
        (
            "v2 command 2",
            v2(0x22, 0x11, &inet_block()),
            V2Command(0x2),
        ),
        (
            "v2 command 0xF",
            v2(0x2F, 0x11, &inet_block()),
            V2Command(0xF),
        ),
        ("v2 family 4", v2(0x21, 0x41, &inet_block()), V2Family(0x41)),
        (
            "v2 transport 3",
            v2(0x21, 0x13, &inet_block()),
            V2Family(0x13),
        ),
        (
            "v2 LOCAL does not excuse an undefined family",
            v2(0x20, 0x51, &[]),
            V2Family(0x51),
        ),
        (
            "v2 PROXY with unspecified family",
            v2(0x21, 0x00, &[]),
            V2Unsupported("an unspecified family"),
        ),
        (
            "v2 PROXY over UDP",
            v2(0x21, 0x12, &inet_block()),
            V2Unsupported("UDP"),
        ),
        (
            "v2 PROXY over UNIX stream",
            v2(0x21, 0x31, &[0u8; 216]),
            V2Unsupported("a UNIX socket"),
        ),
        (
            "v2 TCP4 block too short",
            v2(0x21, 0x11, &inet_block()[..8]),
            V2AddressLength { got: 8, need: 12 },
        ),
        (
            "v2 TCP6 block too short",
            v2(0x21, 0x21, &inet_block()),
            V2AddressLength { got: 12, need: 36 },
        ),
        ("v2 TLV header cut", v2(0x21, 0x11, &short_tlv), V2Tlv),
        (
            "v2 TLV value overruns",
            v2(0x21, 0x11, &overrunning_tlv),
            V2Tlv,
        ),
    ];
    for (name, bytes, want) in table {
        assert_eq!(parse(&bytes), Err(want), "{name}");
    }
}

#[test]
fn oversized_version_2_headers_are_refused_from_the_fixed_part_alone() {
    for len in [V2_MAX_PAYLOAD + 1, usize::from(u16::MAX)] {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11]);
        h.extend_from_slice(&(len as u16).to_be_bytes());
        assert_eq!(parse(&h), Err(HeaderError::V2TooLarge(len)));
    }
    let mut block = inet_block();
    block.extend(tlv(0xE0, &vec![0; V2_MAX_PAYLOAD - block.len() - 3]));
    assert!(matches!(
        parse(&v2(0x21, 0x11, &block)),
        Ok(Status::Complete { len, .. }) if len == 16 + V2_MAX_PAYLOAD
    ));
}

#[test]
fn the_client_is_the_relayed_source_or_the_socket_peer() {
    let peer = sa("10.0.0.5:51000");
    let r = relayed(Version::V2, "203.0.113.7:40000", "192.0.2.1:25");
    assert_eq!(r.client(peer), sa("203.0.113.7:40000"));
    assert_eq!(local(Version::V2).client(peer), peer);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_nor_claim_more_than_given(
        v2_start in proptest::bool::ANY,
        tail in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
    ) {
        let mut input = if v2_start { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
        input.extend(tail);
        if let Ok(Status::Complete { len, .. }) = parse(&input) {
            proptest::prop_assert!(len <= input.len());
        }
    }
}

/// Hands out one byte per read, like the worst fragmenting middlebox.
struct OneByteAtATime<'a>(&'a [u8]);

impl AsyncRead for OneByteAtATime<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some((first, rest)) = self.0.split_first() {
            buf.put_slice(&[*first]);
            self.0 = rest;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn the_reader_consumes_exactly_the_header() {
    for (name, bytes, want) in valid() {
        let mut input = bytes.clone();
        input.extend_from_slice(b"EHLO client.test\r\n");
        let mut r = &input[..];
        let got = read_header(&mut r, HEADER_TIMEOUT).await;
        assert_eq!(got.expect(name), want, "{name}");
        assert_eq!(r, b"EHLO client.test\r\n", "{name}: SMTP bytes untouched");

        let mut slow = OneByteAtATime(&input);
        let got = read_header(&mut slow, HEADER_TIMEOUT).await;
        assert_eq!(got.expect(name), want, "{name}: fragmented");
        assert_eq!(slow.0, b"EHLO client.test\r\n", "{name}: fragmented");
    }
}

#[tokio::test]
async fn the_reader_reports_closes_garbage_and_silence() {
    let mut empty: &[u8] = b"";
    assert!(matches!(
        read_header(&mut empty, HEADER_TIMEOUT).await,
        Err(ReadError::Closed { received: 0 })
    ));
    let mut cut = OneByteAtATime(b"PROXY TCP4 203.0");
    assert!(matches!(
        read_header(&mut cut, HEADER_TIMEOUT).await,
        Err(ReadError::Closed { received: 16 })
    ));
    let mut smtp: &[u8] = b"EHLO client.test\r\n";
    assert!(matches!(
        read_header(&mut smtp, HEADER_TIMEOUT).await,
        Err(ReadError::Header(HeaderError::NotProxy))
    ));
    // A peer that connects and says nothing: the writer stays open.
    let (_writer, mut silent) = tokio::io::duplex(64);
    let short = Duration::from_millis(20);
    assert!(matches!(
        read_header(&mut silent, short).await,
        Err(ReadError::Timeout(d)) if d == short
    ));
}
