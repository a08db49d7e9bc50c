//! The owner's table of calls it waits for: where each one runs now and how
//! many each peer holds.
//!
//! Plain state, no I/O: the owner asks it where a call is, moves calls when
//! they are stolen or placed again, and takes a call out when it resolves.
//! The per-peer counts feed placement, because heartbeats are up to a second
//! old and what we sent since counts too.

use bytes::Bytes;
use libp2p::PeerId;
use shoal_proto::{CallId, JobRef, Outcome};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Where a pending call runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Where {
    Local,
    Remote(PeerId),
}

/// A call this node owns and waits for.
#[derive(Debug)]
pub struct PendingCall {
    pub function: Arc<str>,
    pub args: Bytes,
    /// Hash of the script that defines the function, if the caller shipped one.
    pub script: Option<Arc<str>>,
    pub job: Option<JobRef>,
    pub deadline: Instant,
    pub at: Where,
    /// Pinned calls (internal ones aimed at one node) fail rather than move
    /// when that node is lost.
    pub pinned: bool,
    /// Places that answered `overloaded` for this call; it is not sent
    /// there again.
    pub refused_by: Vec<Where>,
    pub reply: oneshot::Sender<Outcome>,
}

/// Pending calls by id, and how many each peer holds.
#[derive(Debug, Default)]
pub struct PendingTable {
    calls: HashMap<CallId, PendingCall>,
    outstanding: HashMap<PeerId, u32>,
}

impl PendingTable {
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn get(&self, id: CallId) -> Option<&PendingCall> {
        self.calls.get(&id)
    }

    /// Calls this node sent to `peer` and still waits for.
    pub fn outstanding(&self, peer: &PeerId) -> u32 {
        self.outstanding.get(peer).copied().unwrap_or(0)
    }

    pub fn insert(&mut self, id: CallId, call: PendingCall) {
        self.count(call.at, 1);
        if let Some(replaced) = self.calls.insert(id, call) {
            self.count(replaced.at, -1);
        }
    }

    /// Takes a call out: it resolved, or its caller stopped waiting.
    pub fn remove(&mut self, id: CallId) -> Option<PendingCall> {
        let call = self.calls.remove(&id)?;
        self.count(call.at, -1);
        Some(call)
    }

    /// Records that a call runs somewhere else now; false if it is not
    /// pending (it resolved meanwhile).
    pub fn move_to(&mut self, id: CallId, at: Where) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let from = std::mem::replace(&mut call.at, at);
        self.count(from, -1);
        self.count(at, 1);
        true
    }

    /// Moves the call to `to` if `from` holds it now: only the node that
    /// holds a call can hand it on. A stale notice (the call was placed
    /// again meanwhile) or one from any other node would point the owner
    /// at a node that does not run the call, and if that node then died,
    /// the call would not be placed again. Returns whether it moved.
    pub fn move_from(&mut self, id: CallId, from: Where, to: Where) -> bool {
        if self.calls.get(&id).is_none_or(|call| call.at != from) {
            return false;
        }
        self.move_to(id, to)
    }

    /// Records that `at` refused the call because it was full.
    pub fn refused(&mut self, id: CallId, at: Where) {
        if let Some(call) = self.calls.get_mut(&id)
            && !call.refused_by.contains(&at)
        {
            call.refused_by.push(at);
        }
    }

    /// The peers that hold calls of this node.
    pub fn holders(&self) -> HashSet<PeerId> {
        self.calls
            .values()
            .filter_map(|call| match call.at {
                Where::Remote(peer) => Some(peer),
                Where::Local => None,
            })
            .collect()
    }

    /// The calls that run on `peer`.
    pub fn held_by(&self, peer: PeerId) -> Vec<CallId> {
        let at = Where::Remote(peer);
        self.calls
            .iter()
            .filter(|(_, call)| call.at == at)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Empties the table (the node is stopping).
    pub fn drain(&mut self) -> Vec<PendingCall> {
        self.outstanding.clear();
        self.calls.drain().map(|(_, call)| call).collect()
    }

    fn count(&mut self, at: Where, delta: i32) {
        if let Where::Remote(peer) = at {
            let count = self.outstanding.entry(peer).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                self.outstanding.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn call(at: Where) -> PendingCall {
        PendingCall {
            function: Arc::from("f"),
            args: Bytes::new(),
            script: None,
            job: None,
            deadline: Instant::now(),
            at,
            pinned: false,
            refused_by: Vec::new(),
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn counts_follow_calls_as_they_move_and_resolve() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut table = PendingTable::default();
        table.insert(CallId(1), call(Where::Remote(a)));
        table.insert(CallId(2), call(Where::Remote(a)));
        table.insert(CallId(3), call(Where::Local));
        assert_eq!(table.outstanding(&a), 2);
        assert!(table.move_to(CallId(1), Where::Remote(b)), "stolen by b");
        assert_eq!((table.outstanding(&a), table.outstanding(&b)), (1, 1));
        assert_eq!(table.held_by(a), vec![CallId(2)]);
        assert!(table.remove(CallId(2)).is_some());
        assert_eq!(table.outstanding(&a), 0);
        assert!(table.remove(CallId(2)).is_none(), "a result counts once");
        assert!(
            !table.move_to(CallId(2), Where::Local),
            "resolved calls stay gone"
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn only_the_node_that_holds_a_call_can_say_where_it_went() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut table = PendingTable::default();
        table.insert(CallId(1), call(Where::Remote(a)));
        assert!(
            !table.move_from(CallId(1), Where::Remote(c), Where::Remote(c)),
            "c does not hold it"
        );
        assert_eq!(table.outstanding(&a), 1);
        assert!(table.move_from(CallId(1), Where::Remote(a), Where::Remote(b)));
        assert!(
            !table.move_from(CallId(1), Where::Remote(a), Where::Local),
            "a's second notice is stale: b holds it now"
        );
        assert_eq!(table.held_by(b), vec![CallId(1)]);
    }

    #[test]
    fn a_refusal_is_remembered_once() {
        let mut table = PendingTable::default();
        let peer = Where::Remote(PeerId::random());
        table.insert(CallId(7), call(peer));
        table.refused(CallId(7), peer);
        table.refused(CallId(7), peer);
        assert_eq!(table.get(CallId(7)).unwrap().refused_by, vec![peer]);
    }

    #[test]
    fn drain_empties_everything() {
        let peer = PeerId::random();
        let mut table = PendingTable::default();
        table.insert(CallId(1), call(Where::Remote(peer)));
        assert_eq!(table.drain().len(), 1);
        assert!(table.is_empty());
        assert_eq!(table.outstanding(&peer), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, usize),
        Move(u64, usize),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..20u64, 0..4usize).prop_map(|(id, at)| Op::Insert(id, at)),
            (0..20u64, 0..4usize).prop_map(|(id, at)| Op::Move(id, at)),
            (0..20u64).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Whatever happens, each peer's count is the number of pending
        /// calls that run there, and no count is left at zero.
        #[test]
        fn outstanding_counts_match_the_calls(ops in proptest::collection::vec(op(), 0..200)) {
            let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
            let place = |at: usize| if at == 3 { Where::Local } else { Where::Remote(peers[at]) };
            let mut table = PendingTable::default();
            for op in ops {
                match op {
                    Op::Insert(id, at) => table.insert(CallId(id), call(place(at))),
                    Op::Move(id, at) => { table.move_to(CallId(id), place(at)); }
                    Op::Remove(id) => { table.remove(CallId(id)); }
                }
                for peer in &peers {
                    let held = table.held_by(*peer).len() as u32;
                    prop_assert_eq!(table.outstanding(peer), held);
                }
                prop_assert!(table.outstanding.values().all(|count| *count > 0));
            }
        }
    }
}
