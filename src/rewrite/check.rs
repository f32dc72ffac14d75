//! The rewrite's own result read again the way the counter reads any mail:
//! what is still visible after the rewrite decides whether it may go.

use super::*;

/// Why a rewritten message would still show external addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsafe {
    /// Attached messages show more external addresses than the threshold;
    /// the rewrite does not touch attachments.
    Attached {
        /// Distinct external addresses visible in attached messages.
        visible: usize,
    },
    /// A header the rewrite leaves as it is (From with several addresses,
    /// typically) still shows external addresses.
    Left {
        /// The header's name.
        header: String,
        /// How many external addresses stay visible.
        visible: usize,
    },
}

impl Unsafe {
    /// The reason, for the client's reply and the incident record.
    pub fn describe(&self) -> String {
        match self {
            Unsafe::Attached { visible } => format!(
                "an attached message shows {visible} external addresses, which moving recipients to Bcc cannot hide"
            ),
            Unsafe::Left { header, visible } => format!(
                "{header} shows {visible} external addresses, which moving recipients to Bcc cannot hide"
            ),
        }
    }
}

/// Reads a rewritten header section as the counter reads any mail and says
/// whether it is safe to send in place of `decision`'s message: no external
/// address visible but the sender's own (header From, MAIL FROM) and
/// `also` (a split copy's own recipient), and attached messages within the
/// threshold.
pub fn check(
    policy: &Policy,
    decision: &Decision,
    rewritten: &Rewritten,
    mail_from: &str,
    also: Option<&str>,
) -> Result<(), Unsafe> {
    if decision.visible.attached > decision.threshold {
        return Err(Unsafe::Attached {
            visible: decision.visible.attached,
        });
    }
    let head = &rewritten.head;
    let Ok(headers) = scan(head, head.len()) else {
        return Ok(());
    };
    let left = crate::policy::count::count(head, &headers, policy);
    let sender = normalize_address(mail_from);
    let allowed = |a: &str| {
        Some(a) == decision.header_from.as_deref()
            || Some(a) == sender.as_deref()
            || Some(a) == also
    };
    let mut visible = 0;
    let mut header = None;
    for (a, seen) in left.external.iter().zip(&left.seen) {
        if !allowed(a) {
            visible += 1;
            header.get_or_insert(seen.header);
        }
    }
    match header {
        None => Ok(()),
        Some(h) => Err(Unsafe::Left {
            header: policy.visible_headers.name(h).to_string(),
            visible,
        }),
    }
}
