//! Tests of the MIME walk: which parts are attached messages, how deep, and
//! what is refused.

use super::*;

const LIMITS: Limits = Limits {
    max_depth: 10,
    max_header_size: 10_000,
};

fn headers_of(msg: &str) -> Result<Vec<(String, usize)>, MimeError> {
    let h = scan(msg.as_bytes(), 10_000).expect("fits");
    Ok(attached(msg.as_bytes(), &h, LIMITS)?
        .into_iter()
        .map(|a| (String::from_utf8_lossy(&a.header).into_owned(), a.depth))
        .collect())
}

const FORWARD: &str = "From: a@example.org\r\nTo: x@ext.test\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
        preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n\
        To: p1@e.net, p2@e.net\r\nSubject: old\r\n\r\nold body\r\n--b1--\r\nepilogue\r\n";

#[test]
fn a_forwarded_message_is_found() {
    assert_eq!(
        headers_of(FORWARD),
        Ok(vec![(
            "To: p1@e.net, p2@e.net\r\nSubject: old\r\n".to_string(),
            1
        )])
    );
}

#[test]
fn nested_encoded_and_named_attachments() {
    use base64::Engine as _;
    let inner = "To: deep@e.net\nSubject: lf only\n\nbody\n";
    let b64 = base64::engine::general_purpose::STANDARD.encode(inner);
    let msg = format!(
        "Content-Type: multipart/mixed; boundary*0=\"ou\"; boundary*1=\"ter\"\r\n\r\n--outer\r\n\
             Content-Type: message/global\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--outer\r\n\
             Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"Fwd.EML\"\r\n\r\n\
             To: eml@e.net\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\nContent-Type: text/rfc822-headers\r\n\r\n\
             To: bounced@e.net\r\n--in--\r\n--outer--\r\n"
    );
    assert_eq!(
        headers_of(&msg),
        Ok(vec![
            ("To: deep@e.net\r\nSubject: lf only\r\n".to_string(), 1),
            (
                "To: eml@e.net\r\nContent-Type: multipart/mixed; boundary=in\r\n".to_string(),
                1
            ),
            ("To: bounced@e.net".to_string(), 2),
        ])
    );
}

#[test]
fn top_level_message_and_missing_close() {
    assert_eq!(
        headers_of("Content-Type: message/rfc822\r\n\r\nCc: a@e.net\r\n\r\nx"),
        Ok(vec![("Cc: a@e.net\r\n".to_string(), 1)])
    );
    let open = "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: message/rfc822\r\n\r\nTo: a@e.net\r\n";
    assert_eq!(
        headers_of(open),
        Ok(vec![("To: a@e.net\r\n".to_string(), 1)])
    );
    // A line that merely starts like the delimiter is not one.
    let near = "Content-Type: multipart/mixed; boundary=z\r\n\r\n--zz\r\nContent-Type: message/rfc822\r\n\r\nTo: a@e.net\r\n";
    assert_eq!(headers_of(near), Ok(vec![]));
    assert_eq!(headers_of("To: a@e.net\r\n\r\nplain"), Ok(vec![]));
}

#[test]
fn too_deep_fails_closed() {
    let mut msg = String::from("To: x@e.net\r\n\r\n");
    for _ in 0..12 {
        msg = format!("Content-Type: message/rfc822\r\n\r\n{msg}");
    }
    assert_eq!(headers_of(&msg), Err(MimeError::TooDeep));
    let big = format!(
        "Content-Type: message/rfc822\r\n\r\nTo: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(headers_of(&big), Err(MimeError::HeaderTooBig));
}

#[test]
fn rfc2231_values() {
    let (media, p) = params(b" Multipart/Mixed (c); name*=utf-8''Fwd%20x.eml; boundary=\"a;b\"");
    assert_eq!(media, "multipart/mixed");
    assert_eq!(param(&p, "name").as_deref(), Some("Fwd x.eml"));
    assert_eq!(param(&p, "boundary").as_deref(), Some("a;b"));
}

proptest::proptest! {
    #[test]
    fn never_panics(v in proptest::collection::vec(proptest::sample::select(vec![
        "Content-Type: multipart/mixed; boundary=b\r\n", "Content-Type: message/rfc822\r\n", "\r\n", "--b\r\n", "--b--\r\n",
        "To: a@e.net\r\n", "Content-Transfer-Encoding: base64\r\n", "VG86IGFAZS5uZXQ=\r\n", "x",
    ]), 0..30)) {
        let msg = v.concat();
        if let Ok(h) = scan(msg.as_bytes(), 10_000) {
            let _ = attached(msg.as_bytes(), &h, LIMITS);
        }
    }
}
