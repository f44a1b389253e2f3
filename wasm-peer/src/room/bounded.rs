//! [`Bounded`]: a FIFO with a fixed capacity that drops, and counts, what
//! does not fit. The driver's inbox ([`super::MAX_INPUTS`]) and its page
//! events per pump ([`super::MAX_PENDING_EVENTS`]) are both one of these.

use std::collections::VecDeque;

/// A FIFO holding at most `cap` items; pushing onto a full one drops the
/// new item and counts it (the oldest items are kept: they were first).
#[derive(Debug)]
pub struct Bounded<T> {
    items: VecDeque<T>,
    cap: usize,
    dropped: u64,
}

impl<T> Bounded<T> {
    /// An empty queue for at most `cap` items.
    #[must_use]
    pub fn new(cap: usize) -> Self {
        Self {
            items: VecDeque::new(),
            cap,
            dropped: 0,
        }
    }

    /// Appends `item`; `false` (and one more [`Self::dropped`]) when full.
    pub fn push(&mut self, item: T) -> bool {
        if self.items.len() >= self.cap {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        self.items.push_back(item);
        true
    }

    /// The oldest item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Everything queued, oldest first; the queue is empty afterwards (its
    /// drop count stays).
    pub fn take(&mut self) -> VecDeque<T> {
        std::mem::take(&mut self.items)
    }

    /// Drops everything queued (not counted: nothing was refused).
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Items queued.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items refused so far because the queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{MAX_INPUTS, MAX_PENDING_EVENTS};

    /// Fills a queue of `cap` with `cap + extra` items.
    fn cross(cap: usize, extra: usize) -> Bounded<usize> {
        let mut q = Bounded::new(cap);
        for i in 0..cap {
            assert!(q.push(i), "item {i} fits");
        }
        for i in 0..extra {
            assert!(!q.push(cap + i), "item {} is over the cap", cap + i);
        }
        q
    }

    #[test]
    fn the_inbox_keeps_max_inputs_and_counts_the_rest() {
        let mut q = cross(MAX_INPUTS, 5);
        assert_eq!(q.len(), MAX_INPUTS);
        assert_eq!(q.dropped(), 5);
        // The first ones are kept, in order.
        assert_eq!(q.pop(), Some(0));
        // Room for exactly one more now.
        assert!(q.push(usize::MAX));
        assert!(!q.push(usize::MAX));
        assert_eq!(q.dropped(), 6);
    }

    #[test]
    fn page_events_per_pump_stop_at_max_pending_events() {
        let mut q = cross(MAX_PENDING_EVENTS, 100);
        let taken = q.take();
        assert_eq!(taken.len(), MAX_PENDING_EVENTS);
        assert_eq!(taken.front(), Some(&0));
        assert_eq!(taken.back(), Some(&(MAX_PENDING_EVENTS - 1)));
        assert_eq!(q.dropped(), 100);
        // The bound is per pump: after the hand-over there is room again,
        // and the count is kept.
        assert!(q.is_empty());
        assert!(q.push(7));
        assert_eq!(q.dropped(), 100);
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.dropped(), 100);
    }
}
