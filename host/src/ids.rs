//! Random identifiers for sessions, epochs and processes.

use rand::Rng;

/// 16 hex chars (64 random bits).
pub fn short() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// 32 hex chars (128 random bits): session ids, which double as resume secrets' subject.
pub fn long() -> String {
    let mut r = rand::rng();
    format!("{:016x}{:016x}", r.random::<u64>(), r.random::<u64>())
}
