//! The I/O-free view of one message: the header section split into fields
//! with their byte offsets ([`headers`]), RFC 5322 address lists with the
//! byte span of every element ([`address`]), what a reader sees beyond the
//! strict grammar: address-like tokens in free text ([`tokens`]) and RFC 2047
//! encoded words ([`encoded`]), and the header sections of attached messages
//! ([`mime`]). The policy reads it; the rewriter cuts and splices by its
//! offsets.

pub mod address;
pub mod encoded;
pub mod headers;
pub mod mime;
pub mod tokens;
