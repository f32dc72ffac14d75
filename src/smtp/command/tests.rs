//! Tests of the command parser: tables of command lines and what they parse
//! to, or the error.

use super::*;

fn mail(address: &str, params: &str) -> Result<Command, CommandError> {
    Ok(Command::Mail {
        address: address.into(),
        params: params.into(),
    })
}

fn rcpt(address: &str, params: &str) -> Result<Command, CommandError> {
    Ok(Command::Rcpt {
        address: address.into(),
        params: params.into(),
    })
}

fn check(table: &[(&str, Result<Command, CommandError>)]) {
    for (line, expected) in table {
        assert_eq!(&parse(line.as_bytes()), expected, "{line:?}");
        // Both ways must agree on every row.
        assert_eq!(&full(line.as_bytes()), expected, "{line:?} (full)");
    }
}

#[test]
fn plain_envelopes_take_the_short_way() {
    for line in [
        "MAIL FROM:<sender@example.org>\r\n",
        "mail from:<>\r\n",
        "RCPT TO:<patient7@mail7.test>\r\n",
        "Rcpt To:<first.last+tag@sub-1.example.org>\n",
    ] {
        assert!(plain_envelope(line.as_bytes()).is_some(), "{line:?}");
    }
    for line in [
        "RCPT TO:<>\r\n",
        "RCPT TO:<postmaster>\r\n",
        "RCPT TO:<a%b@x.test>\r\n",
        "RCPT TO:<a@b@x.test>\r\n",
        "RCPT TO:<\"a b\"@x.test>\r\n",
        "RCPT TO:<a@x.test> NOTIFY=NEVER\r\n",
        "RCPT TO: <a@x.test>\r\n",
        "RCPT TO:<.a@x.test>\r\n",
        "RCPT TO:<a@-x.test>\r\n",
        "RCPT TO:<a@x..test>\r\n",
        "RCPT TO:<a@x.test>\r\r\n",
        "MAIL FROM:<@relay:a@x.test>\r\n",
    ] {
        assert!(plain_envelope(line.as_bytes()).is_none(), "{line:?}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

    /// The short way answers only where the full grammar says the same.
    #[test]
    fn plain_envelopes_parse_as_the_full_grammar_does(
        verb in proptest::sample::select(vec![
            "MAIL FROM:<", "mail from:<", "MaIl FrOm:<", "RCPT TO:<", "rcpt to:<",
            "RCPT TO: <", "MAIL FROM:", "RCPT  TO:<",
        ]),
        local in "[a-zA-Z0-9._+%!\"\\@ -]{0,12}",
        domain in "[a-zA-Z0-9.\\[\\]:_-]{0,12}",
        at in proptest::bool::weighted(0.9),
        end in proptest::sample::select(vec![">\r\n", ">\n", "> \r\n", ">", ">\r\r\n", "> SIZE=10\r\n"]),
    ) {
        let line = format!("{verb}{local}{}{domain}{end}", if at { "@" } else { "" });
        if let Some(short) = plain_envelope(line.as_bytes()) {
            proptest::prop_assert_eq!(Ok(short), full(line.as_bytes()), "{:?}", line);
        }
    }
}

#[test]
fn verbs() {
    use Command::*;
    check(&[
        (
            "EHLO client.example\r\n",
            Ok(Ehlo {
                host: "client.example".into(),
            }),
        ),
        (
            "ehlo [192.0.2.1]\r\n",
            Ok(Ehlo {
                host: "[192.0.2.1]".into(),
            }),
        ),
        (
            "HELO client.example\r\n",
            Ok(Helo {
                host: "client.example".into(),
            }),
        ),
        ("EHLO\r\n", Err(CommandError::Syntax("EHLO domain"))),
        ("DATA\r\n", Ok(Data)),
        ("data\r\n", Ok(Data)),
        ("BDAT 100 LAST\r\n", Ok(Bdat)),
        ("RSET\r\n", Ok(Rset)),
        ("NOOP\r\n", Ok(Noop)),
        ("NOOP hello\r\n", Ok(Noop)),
        ("QUIT\r\n", Ok(Quit)),
        ("HELP\r\n", Ok(Help)),
        ("HELP MAIL\r\n", Ok(Help)),
        ("VRFY alice\r\n", Ok(Vrfy)),
        ("EXPN staff\r\n", Ok(Vrfy)),
        ("STARTTLS\r\n", Ok(StartTls)),
        ("starttls\r\n", Ok(StartTls)),
        (
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
            Ok(Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGFsaWNlAHNlY3JldA==".into()),
            }),
        ),
        (
            "auth login\r\n",
            Ok(Auth {
                mechanism: "LOGIN".into(),
                initial: None,
            }),
        ),
        ("ETRN example.org\r\n", Ok(NotImplemented)),
        ("ATRN example.org\r\n", Ok(NotImplemented)),
        ("BURL imap://x LAST\r\n", Ok(NotImplemented)),
        ("LHLO client.example\r\n", Ok(NotImplemented)),
        ("ETRN\r\n", Ok(NotImplemented)),
        ("XCLIENT ADDR=1.2.3.4\r\n", Err(CommandError::Unknown)),
        ("GET / HTTP/1.1\r\n", Err(CommandError::Unknown)),
        ("MAILFROM:<a@b.example>\r\n", Err(CommandError::Unknown)),
        ("\r\n", Err(CommandError::Unknown)),
    ]);
}

#[test]
fn line_framing() {
    check(&[
        // A bare LF ending is tolerated: the guard re-serialises.
        ("RSET\n", Ok(Command::Rset)),
        ("MAIL FROM:<a@b.example>\n", mail("a@b.example", "")),
        // smtp-proto would skip these CRs and read RSET / a@b.example.
        ("RS\rET\r\n", Err(CommandError::Syntax(LINE_SYNTAX))),
        (
            "RCPT TO:<a\r@b.example>\r\n",
            Err(CommandError::Syntax(LINE_SYNTAX)),
        ),
        ("RSET\r\r\n", Err(CommandError::Syntax(LINE_SYNTAX))),
        ("RSET\r\nQUIT\r\n", Err(CommandError::Syntax(LINE_SYNTAX))),
        ("RSET\r\n\r\n", Err(CommandError::Syntax(LINE_SYNTAX))),
        ("RSET", Err(CommandError::Syntax(LINE_SYNTAX))),
        ("NOOP \0\r\n", Err(CommandError::Syntax(LINE_SYNTAX))),
    ]);
    assert_eq!(
        parse(b"EHLO h\xff\r\n"),
        Err(CommandError::Syntax(LINE_SYNTAX))
    );
}

#[test]
fn mail_from() {
    use CommandError::*;
    check(&[
        (
            "MAIL FROM:<alice@example.org>\r\n",
            mail("alice@example.org", ""),
        ),
        (
            "mail from:<alice@example.org>\r\n",
            mail("alice@example.org", ""),
        ),
        (
            "MAIL FROM: <alice@example.org>\r\n",
            mail("alice@example.org", ""),
        ),
        ("MAIL FROM:<>\r\n", mail("", "")),
        ("MAIL FROM:<> BODY=8BITMIME\r\n", mail("", "BODY=8BITMIME")),
        (
            "MAIL FROM:<a@example.org> SIZE=1000 BODY=8BITMIME\r\n",
            mail("a@example.org", "SIZE=1000 BODY=8BITMIME"),
        ),
        (
            "MAIL FROM:<a@example.org>   size=1000  body=8bitmime  \r\n",
            mail("a@example.org", "size=1000  body=8bitmime"),
        ),
        (
            "MAIL FROM:<a@example.org> ENVID=xyz RET=HDRS\r\n",
            mail("a@example.org", "ENVID=xyz RET=HDRS"),
        ),
        (
            "MAIL FROM:<jörg@bücher.de> SMTPUTF8\r\n",
            mail("jörg@bücher.de", "SMTPUTF8"),
        ),
        (
            "MAIL FROM:<\"a b\"@example.org>\r\n",
            mail("\"a b\"@example.org", ""),
        ),
        // Source route on a reverse-path: accepted, route dropped.
        (
            "MAIL FROM:<@relay.example:a@example.org>\r\n",
            mail("a@example.org", ""),
        ),
        ("MAIL FROM:<@relay.example:>\r\n", Err(BadSender)),
        ("MAIL FROM:<postmaster>\r\n", Err(BadSender)),
        ("MAIL FROM:<alice>\r\n", Err(BadSender)),
        ("MAIL FROM:<alice@>\r\n", Err(BadSender)),
        ("MAIL FROM:<alice@example.org.>\r\n", Err(BadSender)),
        ("MAIL FROM:<alice@-example.org>\r\n", Err(BadSender)),
        ("MAIL FROM:<alice@[192.0.2.1]>\r\n", Err(BadSender)),
        ("MAIL FROM:<a@b@example.org>\r\n", Err(BadSender)),
        (
            "MAIL FROM:alice@example.org\r\n",
            Err(Syntax("MAIL FROM:<reverse-path> [parameters]")),
        ),
        (
            "MAIL TO:<alice@example.org>\r\n",
            Err(Syntax("MAIL FROM:<reverse-path> [parameters]")),
        ),
        (
            "MAIL\r\n",
            Err(Syntax("MAIL FROM:<reverse-path> [parameters]")),
        ),
        (
            "MAIL FROM:<a@example.org> SIZE=big\r\n",
            Err(Parameter("SIZE".into())),
        ),
        (
            "MAIL FROM:<a@example.org> BODY=9BIT\r\n",
            Err(Parameter("BODY".into())),
        ),
        (
            "MAIL FROM:<a@example.org> XFOO=bar\r\n",
            Err(Parameter("XFOO".into())),
        ),
    ]);
}

#[test]
fn rcpt_to() {
    use CommandError::*;
    check(&[
        ("RCPT TO:<bob@example.org>\r\n", rcpt("bob@example.org", "")),
        (
            "rcpt to: <bob@example.org>\r\n",
            rcpt("bob@example.org", ""),
        ),
        ("RCPT TO:<Bob@Example.ORG>\r\n", rcpt("Bob@Example.ORG", "")),
        ("RCPT TO:<postmaster>\r\n", rcpt("postmaster", "")),
        ("RCPT TO:<PostMaster>\r\n", rcpt("PostMaster", "")),
        ("RCPT TO:<jörg@bücher.de>\r\n", rcpt("jörg@bücher.de", "")),
        (
            "RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b\r\n",
            rcpt("bob@example.org", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b"),
        ),
        (
            "RCPT TO:<bob@example.org> NOTIFY=NEVER\n",
            rcpt("bob@example.org", "NOTIFY=NEVER"),
        ),
        ("RCPT TO:<>\r\n", Err(BadRecipient)),
        ("RCPT TO:<bob>\r\n", Err(BadRecipient)),
        ("RCPT TO:<bob@>\r\n", Err(BadRecipient)),
        ("RCPT TO:<bob@exa_mple.org>\r\n", Err(BadRecipient)),
        ("RCPT TO:<.bob@example.org>\r\n", Err(BadRecipient)),
        // Relay tricks (the upstream trusts the guard).
        (
            "RCPT TO:<@relay.example:bob@example.org>\r\n",
            Err(RoutedRecipient),
        ),
        (
            "RCPT TO:<@a.example,@b.example:bob@example.org>\r\n",
            Err(RoutedRecipient),
        ),
        (
            "RCPT TO:<bob%victim.example@example.org>\r\n",
            Err(RoutedRecipient),
        ),
        (
            "RCPT TO:<victim.example!bob@example.org>\r\n",
            Err(RoutedRecipient),
        ),
        (
            "RCPT TO:<\"bob%victim.example\"@example.org>\r\n",
            Err(RoutedRecipient),
        ),
        (
            "RCPT TO:<\"victim!bob\"@example.org>\r\n",
            Err(RoutedRecipient),
        ),
        (
            "RCPT TO:<\"bob@victim.example\"@example.org>\r\n",
            Err(RoutedRecipient),
        ),
        (
            "RCPT TO:<bob@example.org%victim.example>\r\n",
            Err(RoutedRecipient),
        ),
        (
            "RCPT TO:bob@example.org\r\n",
            Err(Syntax("RCPT TO:<forward-path> [parameters]")),
        ),
        (
            "RCPT TO:<bob@example.org> NOTIFY=SOMETIMES\r\n",
            Err(Parameter("NOTIFY".into())),
        ),
        (
            "RCPT TO:<bob@example.org> ORCPT=x400;a\r\n",
            Err(Parameter("ORCPT".into())),
        ),
        (
            "RCPT TO:<bob@example.org> XFOO\r\n",
            Err(Parameter("XFOO".into())),
        ),
    ]);
}

#[test]
fn quoted_angle_bracket_stays_in_the_address() {
    // The raw path is located by smtp-proto's own scan, so a `>` inside
    // quotes does not cut the address short.
    check(&[(
        "MAIL FROM:<\"a>b\"@example.org> SIZE=10\r\n",
        mail("\"a>b\"@example.org", "SIZE=10"),
    )]);
}
