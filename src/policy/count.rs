//! Counting the addresses a reader will see: distinct addresses
//! (case-insensitive) in every header a mail client shows with addresses
//! ([`VisibleHeaders`]: To, Cc, Reply-To, ...; From only when it holds more
//! than one), split into internal and external by domain. Each field is
//! read twice over: the strict parser gives its mailboxes (groups
//! expanded), and every address-like token a reader would recognise counts
//! too ([`crate::message::tokens`]): in display names, in comments, in the
//! RFC 2047-decoded value ([`crate::message::encoded`]), in elements that
//! do not parse. An element with no address in it at all counts as one
//! external address (fail closed). Header sections of attached messages
//! are counted the same way ([`count_with_attached`]).
//!
//! `headers`: which fields count. `tally`: the pass over them.
//! `addresses`: the list they end in and the normal form of an address.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::{Index, Range};

use super::DomainSet;
use super::domains::{is_normal_domain, normalize_cow, registrable_count};
use crate::message::address::{ElementRef, MailboxRef, for_each};
use crate::message::encoded;
use crate::message::headers::{FieldKind, Headers, scan};
use crate::message::mime::Attached;
use crate::message::tokens::{self, Place};
use crate::templates::Lang;

mod addresses;
mod headers;
mod tally;

pub use addresses::{Addresses, normalize_address};
pub(crate) use addresses::{domain_of, normalize_cow_address, normalize_owned};
pub use headers::{HeadersError, VisibleHeaders};
use tally::Tally;

/// The hasher of the counter's sets. The keys are addresses a sender chose,
/// so the hash must be keyed (HashDoS: 30,000 colliding addresses in a 1 MB
/// header would make deduplication quadratic); foldhash's `RandomState` is
/// seeded per process and per set, and hashes a short string several times
/// faster than std's SipHash-1-3, which was 15% of a decision in the profile.
type KeyedHasher = foldhash::fast::RandomState;

/// The visible recipients of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visible {
    /// Distinct external addresses, normalised (lowercase, IDNA domain), in
    /// order of first appearance. Unparseable elements appear here as their
    /// raw text, lowercased.
    pub external: Addresses,
    /// Distinct internal addresses, normalised.
    pub internal: Addresses,
    /// Where each external address was first seen, in the order of
    /// `external`.
    pub seen: Vec<Seen>,
    /// Distinct external addresses seen in the header of an attached
    /// message (also when they are visible at the top level too).
    pub attached: usize,
    /// Number of distinct external registrable domains (Public Suffix
    /// List: `a.partner.co.uk` and `partner.co.uk` are one), each
    /// unparseable element counting as one more.
    pub external_domains: usize,
    /// The distinct domains of `external` as written (normal form), in
    /// order of first appearance; unparseable elements have none.
    pub domains: Addresses,
    /// For each address of `external`, the index of its domain in
    /// `domains`, or [`NO_DOMAIN`] for an unparseable element.
    pub domain_index: Vec<u32>,
    /// Mailboxes shown with a display name (`Name <a@x>`), internal ones and
    /// repeats included: for Art. 33, names were disclosed along with the
    /// addresses. Counted in the same pass (a second parse of the list for
    /// the incident record cost half a decision).
    pub named: usize,
}

impl Visible {
    /// Where the external addresses are visible, for the client's reply and
    /// the notices: `To/Cc` (To and Cc read as one, as before), other
    /// headers by name, `an attached message`: "To/Cc, Reply-To and an
    /// attached message".
    pub fn places(&self, headers: &VisibleHeaders) -> String {
        self.places_in(headers, Lang::En)
    }

    /// [`Visible::places`] in `lang`, for the reply in the clerk's language
    /// ("To/Cc, Reply-To und einer angehängten Nachricht": the German reply
    /// reads "sichtbar in ..."). Header names stay as the mail client shows
    /// them.
    pub fn places_in(&self, headers: &VisibleHeaders, lang: Lang) -> String {
        let (and, attached) = match lang {
            Lang::En => ("and", "an attached message"),
            Lang::De => ("und", "einer angehängten Nachricht"),
        };
        let mut ids: Vec<u8> = self
            .seen
            .iter()
            .filter(|s| !s.attached)
            .map(|s| s.header)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut names: Vec<String> = Vec::new();
        let to_cc = ids.iter().any(|&i| {
            ["to", "cc"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(headers.name(i)))
        });
        if to_cc {
            names.push("To/Cc".into());
        }
        for &i in &ids {
            let name = headers.name(i);
            if !["to", "cc"].iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.to_string());
            }
        }
        if self.attached > 0 {
            names.push(attached.into());
        }
        match names.len() {
            0 => "To/Cc".into(),
            1 => names.remove(0),
            n => {
                let last = names.remove(n - 1);
                format!("{} {and} {last}", names.join(", "))
            }
        }
    }
}

/// [`Visible::domain_index`] of an unparseable element: it has no domain.
pub const NO_DOMAIN: u32 = u32::MAX;

/// How an address was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum How {
    /// A mailbox's own address (addr-spec).
    Address,
    /// In a display name (or a group name).
    DisplayName,
    /// In a comment.
    Comment,
    /// In the RFC 2047-decoded value.
    EncodedWord,
    /// A token of an element that does not parse, or the element itself
    /// when it holds none.
    Unparseable,
}

impl How {
    /// The words used in `explain` and incident records.
    pub fn as_str(self) -> &'static str {
        match self {
            How::Address => "address",
            How::DisplayName => "display name",
            How::Comment => "comment",
            How::EncodedWord => "encoded word",
            How::Unparseable => "unparseable token",
        }
    }
}

/// Where one address was seen first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Index into [`VisibleHeaders::names`].
    pub header: u8,
    /// How it was written there.
    pub how: How,
    /// In the header of an attached message, not the message's own.
    pub attached: bool,
}

impl Seen {
    /// `Reply-To, display name` / `To, address, attached message`.
    pub fn describe(&self, headers: &VisibleHeaders) -> String {
        let mut s = format!("{}, {}", headers.name(self.header), self.how.as_str());
        if self.attached {
            s.push_str(", attached message");
        }
        s
    }
}

/// How one distinct visible recipient counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Internal,
    External,
    /// External, and its own domain: nothing reliable can be said about it.
    Unparseable,
}

/// Counts the visible addresses in the header section `headers` of `msg`.
pub fn count(msg: &[u8], headers: &Headers, policy: &super::Policy) -> Visible {
    count_with_attached(msg, headers, policy, &[])
}

/// [`count`], plus the header sections of attached messages (each with
/// its own originator rule).
pub fn count_with_attached(
    msg: &[u8],
    headers: &Headers,
    policy: &super::Policy,
    attached: &[Attached],
) -> Visible {
    let mut tally = Tally::new(&policy.internal_domains);
    tally.section(msg, headers, &policy.visible_headers);
    for a in attached {
        // Scanned before (the walk checked the size), so this cannot fail.
        let Ok(h) = scan(&a.header, a.header.len()) else {
            continue;
        };
        let mut inner = Tally::new(&policy.internal_domains);
        inner.at.attached = true;
        inner.section(&a.header, &h, &policy.visible_headers);
        tally.named += inner.named;
        tally.all.extend(
            inner
                .all
                .into_iter()
                .map(|(k, c, s)| (Cow::Owned(k.into_owned()), c, s)),
        );
    }
    tally.finish()
}

#[cfg(test)]
mod tests;
