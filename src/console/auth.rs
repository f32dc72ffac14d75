//! The console's accounts, passwords, sessions, CSRF tokens and login
//! throttling: the pure parts, without HTTP, so each measure is tested on
//! its own. The console holds personal data (held mail, the register), so
//! each measure below is there against a named attack.
//!
//! - **Roles** ([`Role`]): `viewer` reads the register and the header
//!   sections of held mail; only `dpo` decides and sees bodies and
//!   recipient lists (least privilege, OWASP ASVS 4.0 V4.1.3 / V4.2.1).
//! - **Passwords** ([`hash_password`], [`verify_password`]): Argon2id
//!   (RFC 9106) in a PHC string with a 128-bit random salt, at least the
//!   parameters of OWASP's Password Storage Cheat Sheet (m = 19 MiB, t = 2,
//!   p = 1; ASVS V2.4.1): a stolen database costs an attacker a memory-hard
//!   hash per guess and account. The check compares in constant time
//!   (through the `password-hash` crate). A login for a name that does not
//!   exist still runs one hash ([`verify_unknown_user`]), so the answer's
//!   timing does not tell which names exist (ASVS V2.2.1 / V3.2). New
//!   passwords have at least [`MIN_PASSWORD_CHARS`] characters and no other
//!   composition rule (NIST SP 800-63B §5.1.1.2; ASVS V2.1.1, V2.1.9).
//! - **Sessions** ([`new_session_token`], [`session_key`]): 256 random bits
//!   from the operating system (ASVS V3.2.2 asks for 64 at least), base64url
//!   in the cookie; the store keeps only the token's SHA-256, so a leaked
//!   database or backup yields no live session (the token has full entropy,
//!   so an unsalted fast hash suffices: there is nothing to guess). A fresh
//!   token at every login defeats session fixation (ASVS V3.2.1).
//! - **CSRF** ([`csrf_token`], [`csrf_ok`]): the synchronizer token of
//!   OWASP's CSRF Prevention Cheat Sheet, derived instead of stored: the
//!   HMAC-SHA256 of a fixed label keyed with the session token. It needs no
//!   column and no lookup, is bound to the one session (another session's
//!   token does not fit), and, HMAC being one-way, a CSRF token seen in a
//!   page's HTML does not reveal the session cookie. Checked with ring's
//!   constant-time `hmac::verify`. (`SameSite=Strict` cookies are the second
//!   line, RFC 6265bis §8.8.)
//! - **Throttling** ([`Throttle`]): online guessing is slowed per account
//!   and per client address (ASVS V2.2.1, NIST SP 800-63B §5.2.2): after
//!   [`MAX_USER_FAILURES`] failures within [`FAILURE_WINDOW`] an account
//!   refuses attempts for [`FIRST_LOCKOUT`], doubling with each further
//!   lockout up to [`MAX_LOCKOUT`]; an address the same after
//!   [`MAX_ADDRESS_FAILURES`]. A lockout is temporary, so an attacker cannot
//!   lock the DPO out for good, only slow her down as much as himself.
//!
//! [`Role`] itself is defined in the store (it is the `role` column's
//! type, and the store sits below the console); its permissions are here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

pub use crate::incident::store::Role;

impl Role {
    /// May release, split, drop, note and record notifications: only the
    /// DPO decides on held mail.
    pub fn may_decide(self) -> bool {
        self == Role::Dpo
    }

    /// May see message bodies, envelope recipient lists and the affected
    /// addresses (Art. 34 CSV): personal data beyond the header section
    /// the register shows, for the DPO only (Art. 5(1)(c), minimisation).
    pub fn may_see_recipients(self) -> bool {
        self == Role::Dpo
    }
}

// ---------------------------------------------------------------------------
// Passwords.

/// Argon2id memory in KiB: OWASP's Password Storage Cheat Sheet's first
/// configuration (19 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
/// Argon2id passes over the memory (OWASP: 2 with 19 MiB).
pub const ARGON2_ITERATIONS: u32 = 2;
/// Argon2id lanes (OWASP: 1; the guard's 2 cores serve mail meanwhile).
pub const ARGON2_PARALLELISM: u32 = 1;
/// Salt length in bytes: 128 bits, RFC 9106 §3.1's recommendation.
pub const SALT_BYTES: usize = 16;
/// A new password's least length in characters (Unicode code points):
/// NIST SP 800-63B §5.1.1.2 asks for 8 at least and length over
/// composition rules; 12 is ASVS 4.0 V2.1.1's.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// A password's greatest length in characters: long passphrases are
/// welcome (NIST asks to allow 64 at least), but a login form must not be
/// a way to make the server hash megabytes.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The hash [`verify_unknown_user`] checks against: a hash of a random
/// password with the parameters above, so an unknown name costs what a
/// known one does. `the_dummy_hash_has_the_current_parameters` fails if the
/// constants change without it.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$j7L6J4FxNW7xpSVv7IBDYQ$k7xiJnlTCirhWb8Gzg52wxqZKm5MuH9tha14/eQG4j0";

/// A password that cannot be set or hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Nothing given.
    #[error("the password is empty")]
    Empty,
    /// Under [`MIN_PASSWORD_CHARS`].
    #[error("the password is too short: {0} character(s), at least {MIN_PASSWORD_CHARS} needed")]
    TooShort(usize),
    /// Over [`MAX_PASSWORD_CHARS`].
    #[error("the password is too long: {0} characters, at most {MAX_PASSWORD_CHARS}")]
    TooLong(usize),
    /// The hash function failed (it does not, with valid parameters).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Whether `pw` may become a password: not empty, at least
/// [`MIN_PASSWORD_CHARS`] and at most [`MAX_PASSWORD_CHARS`] characters.
/// No composition rules and no forced changes (NIST SP 800-63B
/// §5.1.1.2).
pub fn check_new_password(pw: &str) -> Result<(), PasswordError> {
    let chars = pw.chars().count();
    match chars {
        0 => Err(PasswordError::Empty),
        n if n < MIN_PASSWORD_CHARS => Err(PasswordError::TooShort(n)),
        n if n > MAX_PASSWORD_CHARS => Err(PasswordError::TooLong(n)),
        _ => Ok(()),
    }
}

/// The hasher with this module's parameters.
fn argon2() -> Argon2<'static> {
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_PARALLELISM,
        None,
    )
    .expect("the Argon2 constants are within the algorithm's bounds");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// `N` bytes from the operating system's random source. It does not fail
/// on a working system; if it does, there is no safe fallback (a
/// predictable token or salt is worse than no login), so it panics.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed");
    bytes
}

/// The Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of
/// `pw` with a fresh random salt. It does not check the password's length:
/// [`check_new_password`] does, for new ones.
pub fn hash_password(pw: &str) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&random::<SALT_BYTES>())
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon2()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `pw` is the password of the PHC string `phc`, compared in
/// constant time. The parameters are the string's own (so hashes made
/// with weaker constants keep working after they are raised); anything but
/// Argon2id, an unreadable string or an over-long password is `false`.
pub fn verify_password(pw: &str, phc: &str) -> bool {
    if pw.chars().count() > MAX_PASSWORD_CHARS {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    argon2().verify_password(pw.as_bytes(), &hash).is_ok()
}

/// A login for a name with no account: runs the same hash as
/// [`verify_password`] on a dummy, so the reply takes as long as for a
/// known name with a wrong password, and is always `false`.
pub fn verify_unknown_user(pw: &str) -> bool {
    let _ = verify_password(pw, DUMMY_PHC);
    false
}

/// The longest account name: an e-mail address's (RFC 5321 §4.5.3.1.3:
/// a 256-octet path less its angle brackets), since `auth: header` proxies
/// often name users by address.
pub const MAX_USER_NAME_CHARS: usize = 254;

/// An account name as stored: lower case ASCII letters, digits and
/// `. _ - @ +`, not starting with `-` (it would read as an option), at
/// most [`MAX_USER_NAME_CHARS`]. Lower-cased, so `Anna` and `anna` are one
/// account (and one throttle counter); the console normalises the login
/// form's and the proxy header's names the same way.
pub fn normalize_user_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    if name.chars().count() > MAX_USER_NAME_CHARS {
        return Err(format!(
            "the user name is longer than {MAX_USER_NAME_CHARS} characters"
        ));
    }
    if name.starts_with('-') {
        return Err(format!("user name {name:?}: must not start with '-'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".-_@+".contains(*c)))
    {
        return Err(format!(
            "user name {name:?}: {c:?} is not allowed (letters, digits and . _ - @ + only)"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

// ---------------------------------------------------------------------------
// Sessions and CSRF.

/// A session token's randomness in bytes: 256 bits.
pub const SESSION_TOKEN_BYTES: usize = 32;
/// The HMAC message a CSRF token is the tag of; versioned, so a changed
/// derivation invalidates the old tokens instead of mixing with them.
const CSRF_LABEL: &[u8] = b"bccguard console csrf v1";

/// A new session token for the cookie: [`SESSION_TOKEN_BYTES`] random
/// bytes, base64url without padding (43 characters, cookie-safe).
pub fn new_session_token() -> String {
    URL_SAFE_NO_PAD.encode(random::<SESSION_TOKEN_BYTES>())
}

/// The key the store keeps a session under: the lower-case hex SHA-256 of
/// its token. Only the browser holds the token itself.
pub fn session_key(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn csrf_key(session_token: &str) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, session_token.as_bytes())
}

/// The CSRF token of a session, for every form it posts: the base64url
/// HMAC-SHA256 of a fixed label keyed with the session token.
pub fn csrf_token(session_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&csrf_key(session_token), CSRF_LABEL))
}

/// Whether a POST's `presented` CSRF token is the session's, compared in
/// constant time (ring's `hmac::verify`); a missing, malformed or foreign
/// one is `false`.
pub fn csrf_ok(session_token: &str, presented: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
        return false;
    };
    ring::hmac::verify(&csrf_key(session_token), CSRF_LABEL, &tag).is_ok()
}

// ---------------------------------------------------------------------------
// Login throttling.

/// Failed logins to one account within [`FAILURE_WINDOW`] before it is
/// locked: the "a wrong password five times is throttled".
pub const MAX_USER_FAILURES: u32 = 5;
/// Failed logins from one client address (an IPv6 /64) within
/// [`FAILURE_WINDOW`] before it is locked. Higher than per account: an
/// office sits behind one NAT address, and one clerk's typos must not lock
/// the DPO out; a guesser spraying many names from it is still stopped
/// after this many.
pub const MAX_ADDRESS_FAILURES: u32 = 20;
/// How long failures are remembered: a counter starts afresh after this
/// long without a failure (counted from a lockout's end).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The first lockout; each further one while the failures go on doubles.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(60);
/// The longest lockout: an hour (a guesser gets one try an hour; the real
/// user, locked out by someone else, waits an hour at most).
pub const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// Counters kept per kind (accounts, addresses): the table of a guesser
/// spraying names or addresses stays bounded. When it is full, counters
/// past their window go first, then the one quiet longest.
pub const MAX_TRACKED: usize = 10_000;

/// One name's or address's failures.
#[derive(Debug, Clone, Copy)]
struct Counter {
    /// Failures since the counter started.
    failures: u32,
    /// The last failure.
    last: Instant,
    /// Refused until then.
    locked_until: Option<Instant>,
    /// Lockouts so far (the next one lasts `FIRST_LOCKOUT * 2^lockouts`).
    lockouts: u32,
}

impl Counter {
    fn new(now: Instant) -> Counter {
        Counter {
            failures: 0,
            last: now,
            locked_until: None,
            lockouts: 0,
        }
    }

    /// Whether the counter has nothing left to say at `now`: no lockout
    /// and its window has passed.
    fn stale(&self, now: Instant) -> bool {
        let quiet_since = self.locked_until.map_or(self.last, |u| u.max(self.last));
        now >= quiet_since + FAILURE_WINDOW
    }

    fn retry_after(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn fail(&mut self, now: Instant, limit: u32) {
        if self.stale(now) {
            *self = Counter::new(now);
        }
        self.failures += 1;
        self.last = now;
        if self.failures >= limit {
            let lockout = FIRST_LOCKOUT
                .saturating_mul(2u32.saturating_pow(self.lockouts))
                .min(MAX_LOCKOUT);
            self.lockouts = self.lockouts.saturating_add(1);
            self.locked_until = Some(now + lockout);
        }
    }
}

/// A bounded table of counters.
#[derive(Debug)]
struct Counters<K> {
    map: HashMap<K, Counter>,
    limit: u32,
}

impl<K: std::hash::Hash + Eq + Clone> Counters<K> {
    fn new(limit: u32) -> Self {
        Counters {
            map: HashMap::new(),
            limit,
        }
    }

    fn retry_after(&self, key: &K, now: Instant) -> Option<Duration> {
        self.map.get(key).and_then(|c| c.retry_after(now))
    }

    fn fail(&mut self, key: &K, now: Instant) {
        if !self.map.contains_key(key) && self.map.len() >= MAX_TRACKED {
            self.map.retain(|_, c| !c.stale(now));
            if self.map.len() >= MAX_TRACKED
                && let Some(quietest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, c)| c.last)
                    .map(|(k, _)| k.clone())
            {
                self.map.remove(&quietest);
            }
        }
        let limit = self.limit;
        self.map
            .entry(key.clone())
            .or_insert_with(|| Counter::new(now))
            .fail(now, limit);
    }
}

/// The counter key of a client address: an IPv6 address by its /64 (one
/// host usually has a whole /64 to pick from), an IPv4-mapped one as
/// IPv4.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Failed-login counters per account name and per client address, in
/// memory (a restart forgets them, which costs a guesser more than it
/// gains him: the process restarts rarely). Shared by the login handler:
/// [`Throttle::check`] before verifying a password, then
/// [`Throttle::failed`] or [`Throttle::succeeded`].
#[derive(Debug)]
pub struct Throttle {
    inner: Mutex<(Counters<String>, Counters<IpAddr>)>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

impl Throttle {
    /// No failures yet.
    pub fn new() -> Throttle {
        Throttle {
            inner: Mutex::new((
                Counters::new(MAX_USER_FAILURES),
                Counters::new(MAX_ADDRESS_FAILURES),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Counters<String>, Counters<IpAddr>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a login for `user` from `ip` may be tried at `now`; if not,
    /// how long until it may (for `Retry-After`). Check before verifying
    /// the password, so a locked account costs no hash either.
    pub fn check(&self, user: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let guard = self.lock();
        let (users, addresses) = &*guard;
        let wait = users
            .retry_after(&user.to_string(), now)
            .max(addresses.retry_after(&address_key(ip), now));
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed login (wrong password, or no such account: both
    /// count, so the throttle does not tell them apart either).
    pub fn failed(&self, user: &str, ip: IpAddr, now: Instant) {
        let mut guard = self.lock();
        let (users, addresses) = &mut *guard;
        users.fail(&user.to_string(), now);
        addresses.fail(&address_key(ip), now);
    }

    /// A successful login: the account's counter starts afresh. The
    /// address's does not: a guesser who owns one account must not clear
    /// his address's count by logging into it between guesses.
    pub fn succeeded(&self, user: &str, _ip: IpAddr) {
        self.lock().0.map.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, n))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn roles_parse_and_only_the_dpo_decides_and_sees_recipients() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("DPO"), None);
        assert_eq!(Role::parse("admin"), None);
        assert!(Role::Dpo.may_decide() && Role::Dpo.may_see_recipients());
        assert!(!Role::Viewer.may_decide() && !Role::Viewer.may_see_recipients());
    }

    #[test]
    fn a_password_verifies_and_a_wrong_one_does_not() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterY", &phc));
        assert!(!verify_password("", &phc));
        // Salted: the same password hashes differently each time.
        assert_ne!(phc, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn anything_but_an_argon2id_phc_string_verifies_nothing() {
        assert!(!verify_password("x", ""));
        assert!(!verify_password("x", "x"));
        // Argon2i (the variant weak against side channels), right password.
        let salt = SaltString::encode_b64(b"somesaltsomesalt").unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
            .hash_password(b"password", &salt)
            .unwrap()
            .to_string();
        assert!(!verify_password("password", &argon2i));
        assert!(!verify_password(
            &"a".repeat(MAX_PASSWORD_CHARS + 1),
            DUMMY_PHC
        ));
    }

    #[test]
    fn the_dummy_hash_has_the_current_parameters() {
        let hash = PasswordHash::new(DUMMY_PHC).unwrap();
        assert_eq!(hash.algorithm, argon2::ARGON2ID_IDENT);
        let params = Params::try_from(&hash).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM),
            "regenerate DUMMY_PHC with hash_password after changing the parameters"
        );
        assert!(!verify_unknown_user("anything"));
    }

    #[test]
    fn new_passwords_need_twelve_characters_counted_as_code_points() {
        assert_eq!(check_new_password(""), Err(PasswordError::Empty));
        assert_eq!(
            check_new_password("elevenchars"),
            Err(PasswordError::TooShort(11))
        );
        assert_eq!(check_new_password("twelve chars"), Ok(()));
        // Twelve characters, 24 bytes.
        assert_eq!(check_new_password("ääääääääääää"), Ok(()));
        assert_eq!(
            check_new_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)),
            Err(PasswordError::TooLong(MAX_PASSWORD_CHARS + 1))
        );
        let msg = PasswordError::TooShort(3).to_string();
        assert!(msg.contains("at least 12"), "{msg}");
    }

    #[test]
    fn user_names_are_lower_cased_and_restricted() {
        assert_eq!(normalize_user_name("Anna.Schmidt").unwrap(), "anna.schmidt");
        assert_eq!(
            normalize_user_name("dpo+1@Example.org").unwrap(),
            "dpo+1@example.org"
        );
        for bad in ["", "-rf", "anna schmidt", "anna\n", "anna;drop", "änna"] {
            assert!(normalize_user_name(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_user_name(&"a".repeat(MAX_USER_NAME_CHARS)).is_ok());
        assert!(normalize_user_name(&"a".repeat(MAX_USER_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn session_tokens_are_random_256_bit_and_stored_only_hashed() {
        let a = new_session_token();
        let b = new_session_token();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(a.len(), 43);
        let key = session_key(&a);
        assert_eq!(key.len(), 64);
        assert!(
            key.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(!key.contains(&a));
        assert_eq!(key, session_key(&a));
        assert_ne!(key, session_key(&b));
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            session_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_csrf_token_fits_its_own_session_only() {
        let s1 = new_session_token();
        let s2 = new_session_token();
        let t1 = csrf_token(&s1);
        assert_eq!(t1, csrf_token(&s1), "stable for the session");
        assert_ne!(t1, s1, "not the session token itself");
        assert!(csrf_ok(&s1, &t1));
        assert!(!csrf_ok(&s2, &t1), "another session's token");
        assert!(!csrf_ok(&s1, ""));
        assert!(!csrf_ok(&s1, "not base64 !"));
        assert!(!csrf_ok(&s1, &t1[..t1.len() - 2]));
        assert!(!csrf_ok(&s1, &s1));
    }

    #[test]
    fn five_failures_lock_the_account_for_a_minute_then_doubling_to_an_hour() {
        let t = Throttle::new();
        let t0 = Instant::now();
        for i in 0..MAX_USER_FAILURES - 1 {
            let now = t0 + secs(i as u64);
            assert_eq!(t.check("anna", ip(i as u8), now), Ok(()));
            t.failed("anna", ip(i as u8), now);
        }
        assert_eq!(t.check("anna", IP, t0 + secs(4)), Ok(()));
        t.failed("anna", IP, t0 + secs(4));
        // The fifth failure locks the account from any address.
        assert_eq!(t.check("anna", ip(99), t0 + secs(4)), Err(secs(60)));
        assert_eq!(t.check("anna", ip(99), t0 + secs(34)), Err(secs(30)));
        assert_eq!(t.check("bert", IP, t0 + secs(34)), Ok(()), "others not");
        let mut now = t0 + secs(64);
        assert_eq!(t.check("anna", IP, now), Ok(()), "the minute is over");
        // Each further failure locks at once, twice as long, up to an hour.
        for expect in [120, 240, 480, 960, 1920, 3600, 3600] {
            t.failed("anna", ip(50), now);
            assert_eq!(t.check("anna", ip(51), now), Err(secs(expect)));
            now += secs(expect);
        }
    }

    #[test]
    fn failures_are_forgotten_after_the_window_and_after_a_success() {
        let t = Throttle::new();
        let t0 = Instant::now();
        for i in 0..MAX_USER_FAILURES - 1 {
            t.failed("anna", ip(1), t0 + secs(i as u64));
        }
        // A quiet window: the count starts afresh.
        let later = t0 + secs(3) + FAILURE_WINDOW;
        for i in 0..MAX_USER_FAILURES - 1 {
            t.failed("anna", ip(1), later + secs(i as u64));
        }
        assert_eq!(t.check("anna", ip(1), later + secs(10)), Ok(()));
        // A success clears the account's count.
        t.succeeded("anna", ip(1));
        t.failed("anna", ip(1), later + secs(11));
        assert_eq!(t.check("anna", ip(1), later + secs(11)), Ok(()));
        // A lockout's window counts from its end.
        let t = Throttle::new();
        for _ in 0..MAX_USER_FAILURES {
            t.failed("anna", ip(1), t0);
        }
        let end = t0 + FIRST_LOCKOUT;
        t.failed("anna", ip(1), end + FAILURE_WINDOW - secs(1));
        assert_eq!(
            t.check("anna", ip(1), end + FAILURE_WINDOW - secs(1)),
            Err(secs(120))
        );
    }

    #[test]
    fn one_address_spraying_names_is_locked_and_a_success_does_not_clear_it() {
        let t = Throttle::new();
        let t0 = Instant::now();
        for i in 0..MAX_ADDRESS_FAILURES {
            let now = t0 + secs(i as u64);
            assert_eq!(t.check(&format!("name{i}"), IP, now), Ok(()));
            t.failed(&format!("name{i}"), IP, now);
            // The guesser's own account logs in between guesses.
            t.succeeded("mallory", IP);
        }
        let now = t0 + secs(MAX_ADDRESS_FAILURES as u64);
        assert!(t.check("anyone", IP, now).is_err());
        assert_eq!(t.check("anyone", ip(1), now), Ok(()), "other addresses not");
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), IP);
    }

    #[test]
    fn the_tables_stay_bounded_and_keep_live_lockouts_over_stale_counters() {
        let mut c: Counters<u32> = Counters::new(MAX_USER_FAILURES);
        let t0 = Instant::now();
        for _ in 0..MAX_USER_FAILURES {
            c.fail(&0, t0);
        }
        for k in 1..MAX_TRACKED as u32 {
            c.fail(&k, t0);
        }
        assert_eq!(c.map.len(), MAX_TRACKED);
        // Past the window: the stale counters go, the lockout stays.
        let later = t0 + FAILURE_WINDOW + secs(1);
        c.fail(&u32::MAX, later);
        assert_eq!(c.map.len(), 2);
        assert!(c.map.contains_key(&0));
        // Full of live counters: the quietest goes, the table stays bounded.
        let mut c: Counters<u32> = Counters::new(MAX_USER_FAILURES);
        let ms = |k: u32| Duration::from_millis(u64::from(k));
        for k in 0..MAX_TRACKED as u32 {
            c.fail(&k, t0 + ms(k));
        }
        c.fail(&u32::MAX, t0 + ms(MAX_TRACKED as u32));
        assert_eq!(c.map.len(), MAX_TRACKED);
        assert!(!c.map.contains_key(&0) && c.map.contains_key(&1));
    }
}
