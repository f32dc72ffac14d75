//! Delivery status notifications (RFC 3464, RFC 3462 multipart/report) for
//! spooled copies (split leftovers, refused deferred recipients) that
//! finally could not be delivered. Pure: inputs in, message bytes out.
//!
//! The notice goes to the envelope sender from the null sender (RFC 5321
//! 4.5.5) and is marked `Auto-Submitted: auto-replied` (RFC 3834) so no
//! auto-responder answers it. It returns the header section of the copy
//! that failed: a split copy shows only its own recipient, so the notice
//! does not repeat the distribution list it was split from; a deferred
//! recipient's copy is the message as it went out (already within the
//! policy, or rewritten).

use std::fmt::Write as _;

/// One recipient that finally failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The envelope recipient.
    pub recipient: String,
    /// Enhanced status code (RFC 3463), e.g. `5.1.1` or `4.4.7`.
    pub status: String,
    /// What upstream said, or why the guard gave up.
    pub diagnostic: String,
}

/// Everything a notice needs.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    /// The guard's host name (Reporting-MTA, From, Message-ID).
    pub hostname: &'a str,
    /// The original envelope sender, who gets the notice.
    pub sender: &'a str,
    /// The transaction id the client was given.
    pub queue_id: &'a str,
    /// When the guard accepted the message (RFC 5322 date).
    pub arrival: &'a str,
    /// Now (RFC 5322 date).
    pub date: &'a str,
    /// A unique token for the MIME boundary and Message-ID.
    pub token: &'a str,
    /// The recipients that failed.
    pub failures: &'a [Failure],
    /// The header section of the failed copy (CRLF line ends).
    pub original_headers: &'a [u8],
}

/// Extracts the enhanced status code from an SMTP reply text such as
/// `550 5.1.1 <x>: User unknown`, falling back to the reply class.
pub fn status_of(reply: &str) -> String {
    let mut words = reply.split_ascii_whitespace();
    let code = words.next().unwrap_or_default();
    if let Some(enhanced) = words.next().filter(|w| is_enhanced(w)) {
        return enhanced.to_string();
    }
    match code.as_bytes().first() {
        Some(b'4') => "4.0.0".into(),
        _ => "5.0.0".into(),
    }
}

fn is_enhanced(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Builds the notice (CRLF line ends, no final dot).
pub fn build(n: &Notice<'_>) -> Vec<u8> {
    let boundary = format!("bccguard-dsn-{}", n.token);
    let mut m = String::with_capacity(2048 + n.original_headers.len());
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender / Unzustellbare Nachricht\r\n\
         Date: {date}\r\n\
         Message-ID: <{token}.dsn@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n",
        host = n.hostname,
        to = n.sender,
        date = n.date,
        token = n.token,
    );
    let _ = write!(
        m,
        "Your message {id} was sent as separate copies, one per recipient, so\r\n\
         that no recipient could see the others. The copies below could not be\r\n\
         delivered; all other copies were.\r\n\
         \r\n\
         Ihre Nachricht {id} wurde als einzelne Kopien verschickt, eine je\r\n\
         Empf\u{e4}nger. Die folgenden Kopien konnten nicht zugestellt werden; alle\r\n\
         anderen wurden zugestellt.\r\n\
         \r\n",
        id = n.queue_id
    );
    for f in n.failures {
        let _ = write!(m, "  <{}>: {}\r\n", f.recipient, one_line(&f.diagnostic));
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         X-Bccguard-Queue-ID: {id}\r\n\
         Arrival-Date: {arrival}\r\n",
        host = n.hostname,
        id = n.queue_id,
        arrival = n.arrival
    );
    for f in n.failures {
        let _ = write!(
            m,
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\n\
             Action: failed\r\n\
             Status: {status}\r\n\
             Diagnostic-Code: smtp; {diag}\r\n",
            rcpt = f.recipient,
            status = f.status,
            diag = one_line(&f.diagnostic)
        );
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    );
    let mut out = m.into_bytes();
    out.extend_from_slice(n.original_headers);
    if !n.original_headers.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A diagnostic is one header line: no CR/LF may split it.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_come_from_the_reply() {
        assert_eq!(status_of("550 5.1.1 <x>: User unknown"), "5.1.1");
        assert_eq!(status_of("451 try later"), "4.0.0");
        assert_eq!(status_of("554 rejected"), "5.0.0");
        assert_eq!(status_of("452 4.3.1 full"), "4.3.1");
    }

    #[test]
    fn the_notice_is_a_delivery_status_report() {
        let failures = [Failure {
            recipient: "p7@mail.test".into(),
            status: "5.1.1".into(),
            diagnostic: "550 5.1.1 User unknown\r\nX-Injected: yes".into(),
        }];
        let notice = Notice {
            hostname: "guard.test",
            sender: "termine@example.org",
            queue_id: "Q1",
            arrival: "Mon, 1 Mar 2021 10:00:00 +0000",
            date: "Mon, 1 Mar 2021 11:00:00 +0000",
            token: "T1",
            failures: &failures,
            original_headers: b"From: termine@example.org\r\nTo: p7@mail.test\r\n",
        };
        let text = String::from_utf8(build(&notice)).unwrap();
        for needle in [
            "To: <termine@example.org>\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "multipart/report; report-type=delivery-status",
            "Final-Recipient: rfc822; p7@mail.test\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: termine@example.org\r\nTo: p7@mail.test\r\n",
            "--bccguard-dsn-T1--\r\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(
            !text.contains("\r\nX-Injected"),
            "a diagnostic must not add header lines"
        );
        assert!(
            text.split("\r\n")
                .all(|l| !l.contains('\n') && !l.contains('\r'))
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(text.as_bytes())
            .unwrap();
        assert_eq!(parsed.parts.len(), 4, "report, text, status, headers");
    }
}
