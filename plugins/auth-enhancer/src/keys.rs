//! [`Keys`]: what the plugin stores instead of user names, addresses and session ids.
//!
//! Every tracked thing is remembered as a 64-bit keyed hash (SipHash-1-3 from `std`, with a
//! random key per plugin instance) of its canonical form, never as its text:
//!
//! - **memory does not depend on the input**: a 100 KB session id or user name costs the same
//!   8 bytes as a short one, so no length cap can be too generous and no truncation can make two
//!   different long ids collide on purpose;
//! - **no secrets at rest**: session ids are bearer tokens; the plugin can match a logout to its
//!   login without keeping the token;
//! - **collisions are accidents, not attacks**: the key is random and never leaves the process,
//!   so nobody can pick two names that share a hash. By chance, two of 100,000 tracked keys share
//!   one with probability about 3 in 10^10 (the birthday bound, n² / 2^65); the cost of that is
//!   two users' (or addresses') counters adding up, never a crash.
//!
//! Each kind of key hashes a different tag first, so a user named `10.0.0.9` and the address
//! 10.0.0.9 are unrelated.

use crate::address::{Addr, Prefix};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;

const USER: u8 = 1;
const ADDR_V4: u8 = 2;
const ADDR_V6: u8 = 3;
const ADDR_OTHER: u8 = 4;
const PREFIX_V4: u8 = 5;
const PREFIX_V6: u8 = 6;
const SESSION: u8 = 7;

/// Turns canonical values into the plugin's 64-bit keys.
#[derive(Debug)]
pub(crate) struct Keys {
    state: RandomState,
    fold_case: bool,
}

impl Keys {
    /// Keys for one plugin instance; `fold_case` makes user ids case-insensitive.
    pub(crate) fn new(fold_case: bool) -> Self {
        Keys {
            state: RandomState::new(),
            fold_case,
        }
    }

    /// The key of a user id, already trimmed. With case folding, every character is replaced by
    /// its Unicode lowercase mapping (`Alice`, `ALICE` and `alice` are one user; so are `Σ` and
    /// `σ`, also at the end of a word, unlike `str::to_lowercase`). This is not full Unicode case
    /// folding or normalization (`ß` and `ss`, or full-width letters, stay different); `std` has
    /// neither, and the identity provider is the authority on which names are equal.
    pub(crate) fn user(&self, trimmed: &str) -> u64 {
        let mut h = self.state.build_hasher();
        h.write_u8(USER);
        if self.fold_case {
            // Lowercase into a small stack buffer, hashed a chunk at a time: no allocation even
            // for a huge id.
            let mut buf = [0u8; 128];
            let mut len = 0;
            for c in trimmed.chars().flat_map(char::to_lowercase) {
                if len + 4 > buf.len() {
                    h.write(&buf[..len]);
                    len = 0;
                }
                len += c.encode_utf8(&mut buf[len..]).len();
            }
            h.write(&buf[..len]);
        } else {
            h.write(trimmed.as_bytes());
        }
        h.finish()
    }

    /// The key of a canonical address.
    pub(crate) fn addr(&self, addr: &Addr<'_>) -> u64 {
        match addr {
            Addr::Ip(IpAddr::V4(v4)) => self.state.hash_one((ADDR_V4, v4.to_bits())),
            Addr::Ip(IpAddr::V6(v6)) => self.state.hash_one((ADDR_V6, v6.to_bits())),
            Addr::Other(s) => self.state.hash_one((ADDR_OTHER, *s)),
        }
    }

    /// The key of a network prefix.
    pub(crate) fn prefix(&self, prefix: &Prefix) -> u64 {
        match prefix {
            Prefix::V4(octets) => self.state.hash_one((PREFIX_V4, *octets)),
            Prefix::V6(top) => self.state.hash_one((PREFIX_V6, *top)),
        }
    }

    /// The key of a session id (compared exactly: session ids are opaque).
    pub(crate) fn session(&self, id: &str) -> u64 {
        self.state.hash_one((SESSION, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_fold_case_only_when_asked() {
        let k = Keys::new(true);
        assert_eq!(k.user("Alice"), k.user("alice"));
        assert_eq!(k.user("ALICE"), k.user("alice"));
        assert_eq!(k.user("ΟΔΥΣΣΕΥΣ"), k.user("οδυσσευσ"));
        assert_ne!(k.user("alice"), k.user("alicf"));
        // Long ids hash in chunks; the chunk boundary does not matter.
        let long: String = "Ä".repeat(1000);
        assert_eq!(k.user(&long), k.user(&"ä".repeat(1000)));
        assert_ne!(k.user(&long), k.user(&"ä".repeat(999)));

        let k = Keys::new(false);
        assert_ne!(k.user("Alice"), k.user("alice"));
        assert_eq!(k.user("alice"), k.user("alice"));
    }

    #[test]
    fn kinds_of_keys_do_not_mix() {
        let k = Keys::new(true);
        let addr = Addr::parse("10.0.0.9").unwrap_or(Addr::Other(""));
        assert_ne!(k.addr(&addr), k.addr(&Addr::Other("10.0.0.9")));
        assert_ne!(k.user("s1"), k.session("s1"));
        // Each instance has its own hash key.
        assert_ne!(Keys::new(true).session("s1"), Keys::new(true).session("s1"));
    }
}
