//! Connection limits per client and in all: counted at accept time (by peer address) and per
//! token subject, released when the guard drops, which is when the connection, or the WebSocket
//! session it was upgraded to, ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Counts live holders per key, up to `per_key` each and `total` in all (0 = no limit).
pub struct Limiter<K: Hash + Eq + Clone> {
    per_key: usize,
    total: usize,
    state: Mutex<(usize, HashMap<K, usize>)>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerKey,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(per_key: usize, total: usize) -> Arc<Self> {
        Arc::new(Self { per_key, total, state: Mutex::new((0, HashMap::new())) })
    }

    /// A guard when there is room for one more under `key`.
    pub fn admit(self: &Arc<Self>, key: K) -> Result<Guard<K>, Refused> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.total > 0 && st.0 >= self.total {
            return Err(Refused::Total);
        }
        let n = st.1.entry(key.clone()).or_insert(0);
        if self.per_key > 0 && *n >= self.per_key {
            return Err(Refused::PerKey);
        }
        *n += 1;
        st.0 += 1;
        Ok(Guard { limiter: self.clone(), key: Some(key) })
    }

    /// Holders now, in all.
    pub fn live(&self) -> usize {
        self.state.lock().map(|s| s.0).unwrap_or(0)
    }
}

/// One admitted holder; dropping it frees the place.
pub struct Guard<K: Hash + Eq + Clone> {
    limiter: Arc<Limiter<K>>,
    key: Option<K>,
}

impl<K: Hash + Eq + Clone> Drop for Guard<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut st = self.limiter.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 = st.0.saturating_sub(1);
        if let Some(n) = st.1.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                st.1.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_and_freed() {
        let l = Limiter::new(2, 3);
        let a1 = l.admit("a").unwrap();
        let _a2 = l.admit("a").unwrap();
        assert_eq!(l.admit("a").err(), Some(Refused::PerKey));
        let _b1 = l.admit("b").unwrap();
        assert_eq!(l.admit("c").err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(l.live(), 2);
        assert!(l.admit("a").is_ok());
        let unlimited = Limiter::new(0, 0);
        let held: Vec<_> = (0..100).map(|_| unlimited.admit(1).unwrap()).collect();
        assert_eq!(unlimited.live(), 100);
        drop(held);
        assert_eq!(unlimited.live(), 0);
    }
}
