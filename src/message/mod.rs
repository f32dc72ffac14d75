//! The I/O-free view of one message: the header section split into fields
//! with their byte offsets ([`headers`]) and RFC 5322 address lists with the
//! byte span of every element ([`address`]). The policy reads it; the
//! rewriter cuts and splices by its offsets.

pub mod address;
pub mod headers;
