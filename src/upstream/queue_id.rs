//! Upstream's own queue id, read from the text of its 250 after the final
//! dot, so the guard's log line for a transaction names both ids and an
//! admin can follow one message from the client through the guard into the
//! real mail server's log (Postfix admins grep a queue id).
//!
//! RFC 5321 leaves the text free; each server family words it its own way.
//! The ones an office is likely to run behind the guard:
//!
//! | server | 250 text |
//! |---|---|
//! | Postfix | `2.0.0 Ok: queued as 4BRqQd2rVRz9vB` |
//! | Exim | `OK id=1rBZyc-0006Xs-2v` |
//! | Sendmail | `2.0.0 4AH9x1eR012345 Message accepted for delivery` |
//! | Exchange, Microsoft 365 | `2.6.0 <id@host> [InternalId=1234, Hostname=...] Queued mail for delivery` |
//! | qmail | `ok 1700000000 qp 12345` |
//!
//! Anything else (aiosmtpd's `OK`) has no id: `None`, never a guess.

/// The queue id in upstream's reply text, if its wording is one we know.
pub fn queue_id(text: &str) -> Option<&str> {
    let after = |marker: &str| {
        let lower = text.to_ascii_lowercase();
        lower.find(marker).map(|i| &text[i + marker.len()..])
    };
    if let Some(rest) = after("queued as ") {
        return first_token(rest);
    }
    if let Some(rest) = after("internalid=") {
        return first_token(rest);
    }
    if let Some(rest) = after(" qp ") {
        return first_token(rest);
    }
    if let Some(rest) = after("id=") {
        return first_token(rest);
    }
    // Sendmail: the token before "Message accepted", after the enhanced
    // status code if there is one.
    let lower = text.to_ascii_lowercase();
    if let Some(end) = lower.find(" message accepted") {
        let before = &text[..end];
        let token = before.rsplit(char::is_whitespace).next()?;
        let is_status = token.split('.').count() == 3
            && token
                .split('.')
                .all(|p| p.chars().all(|c| c.is_ascii_digit()));
        return (!is_status).then(|| first_token(token)).flatten();
    }
    None
}

/// The first word of `rest`, if it looks like a queue id (letters,
/// digits, `-_./`, at most 64): never markup or a sentence.
fn first_token(rest: &str) -> Option<&str> {
    let token = rest
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ']' | ')'))
        .next()?;
    let token = token.trim_end_matches('.');
    let plausible = !token.is_empty()
        && token.len() <= 64
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    plausible.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::queue_id;

    #[test]
    fn each_server_familys_wording_gives_its_id() {
        let table = [
            ("2.0.0 Ok: queued as 4BRqQd2rVRz9vB", Some("4BRqQd2rVRz9vB")),
            ("Ok: queued as 3F2A81C0B5", Some("3F2A81C0B5")),
            ("OK id=1rBZyc-0006Xs-2v", Some("1rBZyc-0006Xs-2v")),
            (
                "2.0.0 4AH9x1eR012345 Message accepted for delivery",
                Some("4AH9x1eR012345"),
            ),
            (
                "2.6.0 <a1b2@mail.example.org> [InternalId=1047972153353, Hostname=EX01.example.org] Queued mail for delivery",
                Some("1047972153353"),
            ),
            ("ok 1700000000 qp 12345", Some("12345")),
            (
                "2.0.0 Ok: queued as 06H08CA8PT6997QD",
                Some("06H08CA8PT6997QD"),
            ),
            // No id in the text: no guess.
            ("OK", None),
            ("2.0.0 Ok", None),
            ("2.0.0 Message accepted for delivery", None),
            ("Ok: queued as ", None),
            ("Ok: queued as <script>", None),
        ];
        for (text, want) in table {
            assert_eq!(queue_id(text), want, "{text:?}");
        }
    }
}
