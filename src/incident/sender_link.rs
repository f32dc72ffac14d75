//! The sender's own link to a held mail (`quarantine.sender_release`): a
//! URL in the hold notice with which the sender alone can send the mail on
//! as Bcc or as separate copies, or discard it, without an account.
//!
//! The token is `EXPIRY.MAC`: the Unix second the link stops working (the
//! end of `quarantine.retention`) and an HMAC-SHA256, under a key the
//! store makes once ([`crate::incident::store::Store::key`]), over the
//! incident id, the sender's address (lower-cased) and the expiry. So a
//! link opens only its own incident, only for the sender it was sent to,
//! only until the hold would expire anyway, and cannot be made from
//! another one; no address is in the URL. Link scanners (Microsoft Safe
//! Links) fetch every URL of a mail: the link only shows a page, the
//! decision is a POST from it.

use base64::Engine as _;
use ring::hmac;

/// The store's name of the key.
pub const KEY_NAME: &str = "sender-link";
/// Domain separation: a MAC for this purpose is no MAC for another.
const LABEL: &[u8] = b"bccguard sender-release v1";

/// Why a link does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not of the form, or not ours.
    #[error("this link is not valid")]
    Bad,
    /// Past its expiry.
    #[error("this link has expired")]
    Expired,
}

/// What the MAC covers: the purpose, the incident, the sender, the expiry.
fn signed(id: &str, sender: &str, expires: i64) -> Vec<u8> {
    let mut msg = Vec::new();
    for part in [LABEL, id.as_bytes(), sender.to_ascii_lowercase().as_bytes()] {
        msg.extend_from_slice(part);
        msg.push(0);
    }
    msg.extend_from_slice(expires.to_string().as_bytes());
    msg
}

/// The token for `sender`'s link to incident `id`, valid until `expires`.
pub fn token(key: &[u8], id: &str, sender: &str, expires: i64) -> String {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        &signed(id, sender, expires),
    );
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
    format!("{expires}.{b64}")
}

/// Checks a token for incident `id` held from `sender` at `now`, in
/// constant time.
pub fn verify(key: &[u8], id: &str, sender: &str, token: &str, now: i64) -> Result<(), LinkError> {
    let (expires, b64) = token.split_once('.').ok_or(LinkError::Bad)?;
    let expires: i64 = expires.parse().map_err(|_| LinkError::Bad)?;
    let presented = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| LinkError::Bad)?;
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&k, &signed(id, sender, expires), &presented).map_err(|_| LinkError::Bad)?;
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(())
}

/// The link's path on the console: `/release/{id}/{token}`.
pub fn path(id: &str, token: &str) -> String {
    format!("/release/{id}/{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_link_opens_only_its_incident_for_its_sender_until_it_expires() {
        let t = token(KEY, "INC1", "Alice@Example.org", 1000);
        assert_eq!(verify(KEY, "INC1", "alice@example.org", &t, 999), Ok(()));
        assert_eq!(
            verify(KEY, "INC1", "alice@example.org", &t, 1000),
            Err(LinkError::Expired)
        );
        assert_eq!(
            verify(KEY, "INC2", "alice@example.org", &t, 1),
            Err(LinkError::Bad)
        );
        assert_eq!(
            verify(KEY, "INC1", "mallory@example.org", &t, 1),
            Err(LinkError::Bad)
        );
        assert_eq!(
            verify(
                b"another key, another guard......",
                "INC1",
                "alice@example.org",
                &t,
                1
            ),
            Err(LinkError::Bad)
        );
        // A longer life written into the token breaks its MAC.
        let (_, mac) = t.split_once('.').unwrap();
        assert_eq!(
            verify(KEY, "INC1", "alice@example.org", &format!("99999.{mac}"), 1),
            Err(LinkError::Bad)
        );
        for junk in ["", ".", "1000.", "x.y", "1000.!!!"] {
            assert_eq!(
                verify(KEY, "INC1", "alice@example.org", junk, 1),
                Err(LinkError::Bad),
                "{junk:?}"
            );
        }
    }
}
