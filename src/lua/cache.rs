//! Per-worker LRU cache with optional per-entry TTL, backing `harmony.cache`.
//!
//! The cache never reads a clock: every operation that cares about time takes
//! `now_ms`, milliseconds on a monotonic clock chosen by the caller. Expired
//! entries are removed lazily when touched (or evicted by LRU pressure), so
//! [`Cache::len`] may count entries that have expired but not been touched.

use std::num::NonZeroUsize;

use lru::LruCache;

/// A value stored in the cache; `get` returns exactly the type that was stored.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CacheValue {
    Str(Vec<u8>),
    Int(i64),
    Num(f64),
    Bool(bool),
}

#[derive(Debug)]
struct Entry {
    value: CacheValue,
    /// Absolute expiry time in `now_ms` units; `None` = never expires.
    expires_at: Option<u64>,
}

impl Entry {
    fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|at| now_ms >= at)
    }
}

/// Per-worker LRU cache with TTL for harmony.cache, bounded by entries.
pub struct Cache {
    entries: LruCache<String, Entry>,
}

impl Cache {
    /// A cache holding at most `max_entries` entries (a value of 0 is treated as 1).
    pub fn new(max_entries: usize) -> Self {
        let cap = NonZeroUsize::new(max_entries).unwrap_or(NonZeroUsize::MIN);
        Cache { entries: LruCache::new(cap) }
    }

    /// The value under `key`, marking it most recently used. Expired entries
    /// are removed and reported as missing.
    pub(crate) fn get(&mut self, key: &str, now_ms: u64) -> Option<CacheValue> {
        let expired = self.entries.peek(key)?.is_expired(now_ms);
        if expired {
            self.entries.pop(key);
            return None;
        }
        self.entries.get(key).map(|e| e.value.clone())
    }

    /// Store `value` under `key`, replacing any previous entry (and its TTL).
    /// `ttl_ms = None` means the entry never expires; the least recently used
    /// entry is evicted when the cache is full.
    pub(crate) fn set(&mut self, key: &str, value: CacheValue, ttl_ms: Option<u64>, now_ms: u64) {
        let expires_at = ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
        self.entries.put(key.to_owned(), Entry { value, expires_at });
    }

    /// Add `delta` to an integer entry (missing or expired counts as 0; a
    /// non-integer → Err); `ttl_ms` applies only when the entry is created.
    /// Returns the new value. Overflow is an error and leaves the entry as is.
    pub(crate) fn incr(&mut self, key: &str, delta: i64, ttl_ms: Option<u64>, now_ms: u64) -> Result<i64, String> {
        if let Some(entry) = self.entries.get_mut(key) {
            if !entry.is_expired(now_ms) {
                return match entry.value {
                    CacheValue::Int(ref mut n) => {
                        *n = n
                            .checked_add(delta)
                            .ok_or_else(|| format!("cache entry '{key}' would overflow a 64-bit integer"))?;
                        Ok(*n)
                    }
                    ref other => Err(format!("cache entry '{key}' holds a {}, not an integer", type_name(other))),
                };
            }
        }
        self.set(key, CacheValue::Int(delta), ttl_ms, now_ms);
        Ok(delta)
    }

    /// Remove `key`; true if an entry (possibly already expired) was removed.
    pub(crate) fn delete(&mut self, key: &str) -> bool {
        self.entries.pop(key).is_some()
    }

    /// Number of stored entries, including expired ones not yet purged.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn type_name(v: &CacheValue) -> &'static str {
    match v {
        CacheValue::Str(_) => "string",
        CacheValue::Int(_) => "integer",
        CacheValue::Num(_) => "number",
        CacheValue::Bool(_) => "boolean",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_types() {
        let mut c = Cache::new(10);
        c.set("s", CacheValue::Str(b"a\0b".to_vec()), None, 0);
        c.set("i", CacheValue::Int(-5), None, 0);
        c.set("n", CacheValue::Num(1.5), None, 0);
        c.set("b", CacheValue::Bool(false), None, 0);
        assert_eq!(c.get("s", 1), Some(CacheValue::Str(b"a\0b".to_vec())));
        assert_eq!(c.get("i", 1), Some(CacheValue::Int(-5)));
        assert_eq!(c.get("n", 1), Some(CacheValue::Num(1.5)));
        assert_eq!(c.get("b", 1), Some(CacheValue::Bool(false)));
        assert_eq!(c.get("missing", 1), None);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn ttl_expiry() {
        let mut c = Cache::new(10);
        c.set("k", CacheValue::Int(1), Some(100), 1_000);
        assert_eq!(c.get("k", 1_099), Some(CacheValue::Int(1)));
        assert_eq!(c.get("k", 1_100), None);
        assert_eq!(c.len(), 0, "expired entry removed on get");
        // Overwriting resets the TTL; None means forever.
        c.set("k", CacheValue::Int(2), Some(10), 0);
        c.set("k", CacheValue::Int(3), None, 0);
        assert_eq!(c.get("k", u64::MAX), Some(CacheValue::Int(3)));
        // Huge TTLs saturate instead of overflowing.
        c.set("h", CacheValue::Bool(true), Some(u64::MAX), 5);
        assert_eq!(c.get("h", u64::MAX - 1), Some(CacheValue::Bool(true)));
    }

    #[test]
    fn lru_eviction() {
        let mut c = Cache::new(2);
        c.set("a", CacheValue::Int(1), None, 0);
        c.set("b", CacheValue::Int(2), None, 0);
        assert!(c.get("a", 0).is_some()); // a is now most recent
        c.set("c", CacheValue::Int(3), None, 0); // evicts b
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("b", 0), None);
        assert_eq!(c.get("a", 0), Some(CacheValue::Int(1)));
        assert_eq!(c.get("c", 0), Some(CacheValue::Int(3)));
        // Capacity 0 is clamped to 1.
        let mut one = Cache::new(0);
        one.set("x", CacheValue::Int(1), None, 0);
        one.set("y", CacheValue::Int(2), None, 0);
        assert_eq!(one.len(), 1);
        assert_eq!(one.get("x", 0), None);
    }

    #[test]
    fn incr_semantics() {
        let mut c = Cache::new(10);
        assert_eq!(c.incr("n", 1, Some(50), 0), Ok(1));
        assert_eq!(c.incr("n", 5, Some(1_000_000), 10), Ok(6)); // ttl ignored: exists
        assert_eq!(c.incr("n", -10, None, 20), Ok(-4));
        assert_eq!(c.get("n", 49), Some(CacheValue::Int(-4)));
        // Original TTL (created at 0 with 50ms) still applies.
        assert_eq!(c.get("n", 50), None);
        // Expired entries count as 0 and take the new TTL.
        c.set("e", CacheValue::Int(100), Some(10), 0);
        assert_eq!(c.incr("e", 2, Some(5), 10), Ok(2));
        assert_eq!(c.get("e", 14), Some(CacheValue::Int(2)));
        assert_eq!(c.get("e", 15), None);
        // Expired non-integers are replaced too.
        c.set("s", CacheValue::Str(b"x".to_vec()), Some(1), 0);
        assert_eq!(c.incr("s", 3, None, 1), Ok(3));
    }

    #[test]
    fn incr_type_errors_and_overflow() {
        let mut c = Cache::new(10);
        c.set("s", CacheValue::Str(b"x".to_vec()), None, 0);
        c.set("f", CacheValue::Num(1.0), None, 0);
        c.set("b", CacheValue::Bool(true), None, 0);
        let e = c.incr("s", 1, None, 0).unwrap_err();
        assert!(e.contains("string") && e.contains("not an integer"), "{e}");
        assert!(c.incr("f", 1, None, 0).unwrap_err().contains("number"));
        assert!(c.incr("b", 1, None, 0).unwrap_err().contains("boolean"));
        assert_eq!(c.get("s", 0), Some(CacheValue::Str(b"x".to_vec())));
        c.set("max", CacheValue::Int(i64::MAX), None, 0);
        assert!(c.incr("max", 1, None, 0).unwrap_err().contains("overflow"));
        assert_eq!(c.get("max", 0), Some(CacheValue::Int(i64::MAX)));
    }

    #[test]
    fn delete() {
        let mut c = Cache::new(10);
        c.set("k", CacheValue::Int(1), None, 0);
        assert!(c.delete("k"));
        assert!(!c.delete("k"));
        assert_eq!(c.get("k", 0), None);
        assert_eq!(c.len(), 0);
    }
}
