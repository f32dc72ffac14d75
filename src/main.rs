//! The `bccguard` command line (being written).
fn main() {}
