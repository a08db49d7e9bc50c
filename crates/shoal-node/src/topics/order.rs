//! One publisher's messages put back in order. Gossip may deliver them out
//! of order (a relay, or two connections between the same nodes); a
//! subscriber sees them by sequence number. A message that does not come
//! within [`REORDER_WAIT`] is given up on, and the subscriber sees the gap
//! in the sequence numbers.
//!
//! Plain state: messages and the clock in, messages to deliver out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a later message waits for a missing earlier one.
pub const REORDER_WAIT: Duration = Duration::from_millis(500);
/// Most messages held back for one publisher; past it, the gap is given up.
const MAX_WAITING: usize = 256;

/// Something with a per-publisher sequence number.
pub trait Sequenced {
    fn seq(&self) -> u64;
}

/// One publisher's stream of messages.
#[derive(Debug)]
pub struct InOrder<M> {
    /// The last sequence number delivered (0: none yet).
    delivered: u64,
    /// Messages that came before the ones they follow.
    waiting: BTreeMap<u64, M>,
    /// Since when the oldest gap has been open.
    gap_since: Option<Instant>,
}

impl<M> Default for InOrder<M> {
    fn default() -> Self {
        InOrder {
            delivered: 0,
            waiting: BTreeMap::new(),
            gap_since: None,
        }
    }
}

impl<M: Sequenced> InOrder<M> {
    /// Takes a message; returns those that can be delivered now, in order.
    /// A publisher's stream starts at 1: a first message with a later
    /// number waits like any other for those before it (gossip may bring
    /// the second before the first), and if they do not come — the
    /// subscriber joined in the middle — the stream starts at the lowest
    /// that came. One older than what was delivered is a duplicate or too
    /// late, and is dropped.
    pub fn accept(&mut self, message: M, now: Instant) -> Vec<M> {
        let seq = message.seq();
        if seq <= self.delivered {
            return Vec::new();
        }
        self.waiting.insert(seq, message);
        self.release(now)
    }

    /// Records that everything up to `seq` is already known (messages a
    /// new subscriber got from another node's history).
    pub fn known_up_to(&mut self, seq: u64) {
        self.delivered = self.delivered.max(seq);
        self.waiting.retain(|waiting, _| *waiting > seq);
    }

    /// Whether messages are held back behind a gap.
    pub fn has_gap(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Delivers what is in order; skips a gap that has waited too long.
    pub fn release(&mut self, now: Instant) -> Vec<M> {
        let mut ready = Vec::new();
        loop {
            while let Some(entry) = self.waiting.first_entry() {
                if *entry.key() != self.delivered + 1 {
                    break;
                }
                self.delivered += 1;
                ready.push(entry.remove());
            }
            let Some(first) = self.waiting.keys().next().copied() else {
                self.gap_since = None;
                return ready;
            };
            let since = *self.gap_since.get_or_insert(now);
            let waited_out = now.saturating_duration_since(since) >= REORDER_WAIT;
            if !waited_out && self.waiting.len() <= MAX_WAITING {
                return ready;
            }
            // Give up on what is missing before `first`.
            self.delivered = first - 1;
            self.gap_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Sequenced for u64 {
        fn seq(&self) -> u64 {
            *self
        }
    }

    #[test]
    fn in_order_messages_pass_at_once() {
        let mut order = InOrder::default();
        let now = Instant::now();
        assert_eq!(order.accept(1, now), vec![1], "a stream starts at 1");
        assert_eq!(order.accept(2, now), vec![2]);
        assert_eq!(order.accept(2, now), Vec::<u64>::new(), "a duplicate");
    }

    #[test]
    fn a_first_message_that_overtook_the_one_before_it_waits_for_it() {
        let mut order = InOrder::default();
        let now = Instant::now();
        assert!(order.accept(2, now).is_empty());
        assert_eq!(order.accept(1, now), vec![1, 2]);
    }

    #[test]
    fn a_subscriber_that_joins_in_the_middle_starts_after_the_wait() {
        let mut order = InOrder::default();
        let start = Instant::now();
        assert!(order.accept(6, start).is_empty());
        assert!(order.accept(5, start).is_empty());
        assert!(order.release(start + REORDER_WAIT / 2).is_empty());
        assert_eq!(order.release(start + REORDER_WAIT), vec![5, 6]);
        assert_eq!(order.accept(7, start + REORDER_WAIT), vec![7]);
        assert_eq!(
            order.accept(4, start + REORDER_WAIT),
            Vec::<u64>::new(),
            "too late"
        );
    }

    #[test]
    fn a_message_that_comes_early_waits_for_the_one_before_it() {
        let mut order = InOrder::default();
        let now = Instant::now();
        order.accept(1, now);
        assert!(order.accept(3, now).is_empty());
        assert!(order.accept(4, now).is_empty());
        assert!(order.has_gap());
        assert_eq!(order.accept(2, now), vec![2, 3, 4]);
        assert!(!order.has_gap());
    }

    #[test]
    fn a_gap_is_given_up_after_the_wait() {
        let mut order = InOrder::default();
        let start = Instant::now();
        order.accept(1, start);
        assert!(order.accept(3, start).is_empty());
        assert!(order.release(start + REORDER_WAIT / 2).is_empty());
        assert_eq!(order.release(start + REORDER_WAIT), vec![3]);
        assert_eq!(
            order.accept(2, start + REORDER_WAIT),
            Vec::<u64>::new(),
            "lost for good"
        );
        assert_eq!(order.accept(4, start + REORDER_WAIT), vec![4]);
    }

    #[test]
    fn history_counts_as_delivered() {
        let mut order = InOrder::default();
        order.known_up_to(10);
        let now = Instant::now();
        assert!(order.accept(9, now).is_empty());
        assert_eq!(order.accept(11, now), vec![11]);
    }
}
