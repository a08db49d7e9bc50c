//! Events in simulated time, taken in order (ties in the order they were
//! added): what the membership and placement simulations run on.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

pub struct Timeline<W> {
    events: BinaryHeap<Reverse<Entry<W>>>,
    added: u64,
}

struct Entry<W> {
    at: Duration,
    order: u64,
    what: W,
}

impl<W> PartialEq for Entry<W> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<W> Eq for Entry<W> {}
impl<W> PartialOrd for Entry<W> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<W> Ord for Entry<W> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl<W> Default for Timeline<W> {
    fn default() -> Self {
        Timeline {
            events: BinaryHeap::new(),
            added: 0,
        }
    }
}

impl<W> Timeline<W> {
    pub fn push(&mut self, at: Duration, what: W) {
        self.added += 1;
        self.events.push(Reverse(Entry {
            at,
            order: self.added,
            what,
        }));
    }

    /// The earliest event, if it is due by `until`.
    pub fn pop_until(&mut self, until: Duration) -> Option<(Duration, W)> {
        let Reverse(next) = self.events.peek()?;
        if next.at > until {
            return None;
        }
        let Reverse(next) = self.events.pop()?;
        Some((next.at, next.what))
    }
}
