//! Identifiers for transactions and incidents: 16 characters of Crockford
//! base32, a 48-bit millisecond timestamp followed by 32 random bits, so ids
//! sort by time in a log and do not collide across guard replicas.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new id such as `01JDZ3K8Q4M7T2XW`.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let ms = crate::clock::since_epoch().as_millis() as u64;
    // RandomState is seeded from the OS once per process; hashing a counter
    // with it gives distinct, unpredictable values without another crate.
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u64(ms);
    let random = h.finish() & 0xFFFF_FFFF;
    let value: u128 = ((ms as u128 & 0xFFFF_FFFF_FFFF) << 32) | random as u128;
    let mut out = [0u8; 16];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (15 - i);
        *slot = ALPHABET[((value >> shift) & 31) as usize];
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_well_formed() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.len(), 16);
            assert!(id.bytes().all(|b| ALPHABET.contains(&b)), "{id}");
        }
    }
}
