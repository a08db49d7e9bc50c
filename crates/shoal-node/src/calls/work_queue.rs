//! The executor's worker slots and its queue of calls that have not started.
//!
//! Plain state, no I/O: the scheduler asks it what to start and acts on the
//! answer outside the lock. A call that waits for nested calls gives its slot
//! back (`release`) and later asks for one again (`resume`); resuming calls
//! are served before queued ones, because they hold half-finished work that
//! someone is waiting for.
//!
//! Fairness: queued calls start in arrival order, so no caller starves
//! behind a newer one (the p2pqueue seed popped newest-first and let one of
//! 64 callers take almost all completions). Thieves take from the back: the
//! calls that would otherwise wait longest.
//!
//! The queue is bounded: a call offered to a full queue comes back as
//! [`Admit::Full`], and its owner places it elsewhere.

use std::collections::VecDeque;
use tokio::sync::oneshot;

/// What became of a call offered to the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<C> {
    /// A slot was free and is now taken: start the call.
    Start(C),
    /// It waits its turn.
    Queued,
    /// The queue is full: the call is handed back.
    Full(C),
}

/// Slots, queue and resumers of one node.
#[derive(Debug)]
pub struct WorkQueue<C> {
    slots: u32,
    /// Slots in use.
    busy: u32,
    queue: VecDeque<C>,
    /// Most calls waiting in `queue`.
    capacity: usize,
    /// Calls waiting to get a slot back after their nested calls finished.
    resumers: VecDeque<oneshot::Sender<()>>,
}

impl<C> WorkQueue<C> {
    pub fn new(slots: u32, capacity: usize) -> Self {
        WorkQueue {
            slots,
            busy: 0,
            queue: VecDeque::new(),
            capacity,
            resumers: VecDeque::new(),
        }
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    pub fn busy(&self) -> u32 {
        self.busy
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.busy)
    }

    /// Free slots, if nothing is queued (a node with queued calls has no
    /// business stealing more).
    pub fn idle_slots(&self) -> u32 {
        if self.queue.is_empty() {
            self.free_slots()
        } else {
            0
        }
    }

    /// Offers a call.
    pub fn submit(&mut self, call: C) -> Admit<C> {
        if self.busy < self.slots && self.queue.is_empty() && self.resumers.is_empty() {
            self.busy += 1;
            return Admit::Start(call);
        }
        if self.queue.len() >= self.capacity {
            return Admit::Full(call);
        }
        self.queue.push_back(call);
        Admit::Queued
    }

    /// Offers a call a thief took from a busy peer: it is never handed
    /// back, since the thief asked for no more than its free slots, and a
    /// refusal racing the notice that the call moved would leave the owner
    /// unsure where it runs.
    pub fn submit_stolen(&mut self, call: C) -> Option<C> {
        match self.submit(call) {
            Admit::Start(call) => Some(call),
            Admit::Queued => None,
            Admit::Full(call) => {
                self.queue.push_back(call);
                None
            }
        }
    }

    /// A slot is free again. The slot passes to a waiting resumer if there
    /// is one; otherwise the returned call should start in it.
    pub fn release(&mut self) -> Option<C> {
        self.busy = self.busy.saturating_sub(1);
        while self.busy < self.slots {
            let Some(resumer) = self.resumers.pop_front() else {
                break;
            };
            self.busy += 1;
            if resumer.send(()).is_ok() {
                return None;
            }
            // That caller was cancelled while waiting.
            self.busy -= 1;
        }
        if self.busy < self.slots
            && let Some(call) = self.queue.pop_front()
        {
            self.busy += 1;
            return Some(call);
        }
        None
    }

    /// Asks for a slot back. `Ok` means it is taken; otherwise the receiver
    /// fires when `release` hands one over.
    pub fn resume(&mut self) -> Result<(), oneshot::Receiver<()>> {
        if self.busy < self.slots && self.resumers.is_empty() {
            self.busy += 1;
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.resumers.push_back(tx);
        Err(rx)
    }

    /// Takes up to `max` queued calls from the back, for a thief; `take`
    /// says whether the thief can have a call (it may not know the function,
    /// or the batch may be full).
    pub fn steal(&mut self, max: usize, mut take: impl FnMut(&C) -> bool) -> Vec<C> {
        let mut stolen = Vec::new();
        let mut index = self.queue.len();
        while index > 0 && stolen.len() < max {
            index -= 1;
            if take(&self.queue[index]) {
                stolen.extend(self.queue.remove(index));
            }
        }
        stolen
    }

    /// The queued items, first in line first.
    pub fn iter(&self) -> impl Iterator<Item = &C> {
        self.queue.iter()
    }

    /// Removes the queued calls that match.
    pub fn remove_where(&mut self, matches: impl FnMut(&C) -> bool) -> Vec<C> {
        let (removed, kept): (VecDeque<C>, VecDeque<C>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(matches);
        self.queue = kept;
        removed.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: usize = 100;

    #[test]
    fn starts_until_slots_are_full_then_queues_in_order() {
        let mut work = WorkQueue::new(2, ROOMY);
        assert_eq!(work.submit(1), Admit::Start(1));
        assert_eq!(work.submit(2), Admit::Start(2));
        assert_eq!(work.submit(3), Admit::Queued);
        assert_eq!(work.submit(4), Admit::Queued);
        assert_eq!(work.release(), Some(3), "first in, first out");
        assert_eq!(work.release(), Some(4));
        assert_eq!(work.release(), None);
        assert_eq!(work.busy(), 1);
    }

    #[test]
    fn a_slot_is_idle_only_when_nothing_waits_for_it() {
        let mut work = WorkQueue::new(2, ROOMY);
        assert_eq!(work.idle_slots(), 2);
        assert_eq!(work.submit(1), Admit::Start(1));
        assert_eq!(work.submit(2), Admit::Start(2));
        assert_eq!(work.submit(3), Admit::Queued);
        assert_eq!(work.idle_slots(), 0);
        assert_eq!(work.release(), Some(3), "a freed slot goes to the queue");
        assert_eq!(work.idle_slots(), 0);
        assert_eq!(work.release(), None);
        assert_eq!(work.idle_slots(), 1, "left free: a thief may fill it");
    }

    #[test]
    fn a_full_queue_hands_the_call_back_and_takes_more_once_it_drains() {
        let mut work = WorkQueue::new(1, 2);
        assert_eq!(work.submit(1), Admit::Start(1));
        assert_eq!(work.submit(2), Admit::Queued);
        assert_eq!(work.submit(3), Admit::Queued);
        assert_eq!(work.submit(4), Admit::Full(4));
        assert_eq!(work.queued(), 2);
        assert_eq!(work.release(), Some(2));
        assert_eq!(work.submit(4), Admit::Queued);
        assert_eq!(work.submit_stolen(5), None, "a stolen call always stays");
        assert_eq!(work.queued(), 3);
    }

    #[test]
    fn resumers_go_before_queued_calls() {
        let mut work = WorkQueue::new(1, ROOMY);
        assert_eq!(work.submit("parent"), Admit::Start("parent"));
        // The parent awaits a nested call: its slot goes to the queue.
        work.submit("queued");
        assert_eq!(work.release(), Some("queued"));
        let mut parent_back = work.resume().unwrap_err();
        work.submit("later");
        assert_eq!(work.release(), None, "the slot goes to the resumer");
        assert!(parent_back.try_recv().is_ok());
        assert_eq!(work.release(), Some("later"));
    }

    #[test]
    fn cancelled_resumer_does_not_leak_a_slot() {
        let mut work = WorkQueue::new(1, ROOMY);
        work.submit(1);
        let gone = work.resume().unwrap_err();
        drop(gone);
        work.submit(2);
        assert_eq!(work.release(), Some(2));
        assert_eq!(work.busy(), 1);
    }

    #[test]
    fn steal_takes_from_the_back() {
        let mut work = WorkQueue::new(0, ROOMY);
        for i in 0..5 {
            work.submit(i);
        }
        assert_eq!(work.steal(2, |_| true), vec![4, 3]);
        assert_eq!(
            work.steal(10, |c| c % 2 == 0),
            vec![2, 0],
            "only what the thief can take"
        );
        assert_eq!(work.steal(10, |_| true), vec![1]);
        assert!(work.steal(1, |_| true).is_empty());
    }

    #[test]
    fn remove_where_drops_matching_queued_calls() {
        let mut work = WorkQueue::new(0, ROOMY);
        for i in 0..6 {
            work.submit(i);
        }
        assert_eq!(work.remove_where(|c| c % 2 == 0), vec![0, 2, 4]);
        assert_eq!(work.queued(), 3);
    }
}
