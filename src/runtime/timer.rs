//! One timer structure for every timeout on a worker. Connections keep their
//! own current deadline; the heap holds at most one entry per connection
//! (`armed`), and a stale entry is re-armed to the connection's real
//! deadline when it fires. Updating a deadline per request is a field write,
//! not a heap operation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers { heap: BinaryHeap::new() }
    }

    /// Schedule a wake-up for `key` at `at`.
    pub(crate) fn push(&mut self, at: Instant, key: usize) {
        self.heap.push(Reverse((at, key)));
    }

    /// Pop the next entry due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, k))| k),
            _ => None,
        }
    }

    /// How long the poll may sleep before the next deadline.
    pub(crate) fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.heap.peek().map(|Reverse((at, _))| {
            // round up to the next millisecond so we do not spin before it is due
            at.saturating_duration_since(now) + Duration::from_micros(500)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_entries_pop_in_order() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.push(t0 + Duration::from_millis(20), 2);
        t.push(t0 + Duration::from_millis(10), 1);
        assert_eq!(t.pop_due(t0), None);
        assert!(t.poll_timeout(t0).unwrap() >= Duration::from_millis(10));
        let later = t0 + Duration::from_millis(25);
        assert_eq!(t.pop_due(later), Some(1));
        assert_eq!(t.pop_due(later), Some(2));
        assert_eq!(t.pop_due(later), None);
    }
}
