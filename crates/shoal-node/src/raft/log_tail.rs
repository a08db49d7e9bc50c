//! The newest log entries, kept in memory as they were appended.
//!
//! A leader's replication stream for each follower reads the entries it
//! has just appended. Read from redb, every follower's read is a blocking
//! task, a read transaction and a JSON decode of the same entries: with
//! eight followers, eight decodes of each entry. Read from here, it is a
//! clone, and a cheap one: an entry's command is shared (`Arc`), not
//! copied.
//!
//! A read is served whole from the tail or not at all (the caller then
//! reads redb), so it never mixes the two. The tail only ever holds a run
//! of consecutive entries that are on disk: `append` pushes after its
//! commit, and a truncation or purge drops what it removes.

use std::collections::VecDeque;
use std::ops::Bound;

use openraft::RaftTypeConfig;
use openraft::entry::RaftEntry;

/// At most this many entries are kept… (a follower that keeps up lags by
/// a few entries; one that does not is read from disk)
const MAX_ENTRIES: usize = 512;
/// …and at most this much of their encoded size (every replica keeps a
/// tail, and an idle node should stay small).
const MAX_BYTES: usize = 512 * 1024;

/// See the module docs.
pub(super) struct LogTail<C: RaftTypeConfig> {
    /// Consecutive entries, each with its encoded size.
    entries: VecDeque<(C::Entry, usize)>,
    bytes: usize,
}

impl<C: RaftTypeConfig> Default for LogTail<C> {
    fn default() -> Self {
        LogTail {
            entries: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<C: RaftTypeConfig> LogTail<C> {
    /// Adds entries just committed to disk, each with its encoded size.
    pub(super) fn push(&mut self, appended: impl IntoIterator<Item = (C::Entry, usize)>) {
        for (entry, size) in appended {
            if self.next_index() != Some(entry.index()) {
                // Not the run held (the first append, or after a gap).
                self.clear();
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            self.pop_front();
        }
    }

    /// The entries in `range`, if the tail holds every one of them.
    pub(super) fn get(&self, range: &(Bound<u64>, Bound<u64>)) -> Option<Vec<C::Entry>>
    where
        C::Entry: Clone,
    {
        let first = self.entries.front()?.0.index();
        let last = self.entries.back()?.0.index();
        let start = match range.0 {
            Bound::Included(start) => start,
            Bound::Excluded(start) => start.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let end = match range.1 {
            Bound::Included(end) => end,
            Bound::Excluded(end) => end.checked_sub(1)?,
            // To the end of the log: the tail's end is the log's, but for
            // an append between its commit and its push, and a read in
            // that moment may as well have come a moment earlier.
            Bound::Unbounded => last,
        };
        if start < first || end > last || start > end {
            return None;
        }
        let skip = (start - first) as usize;
        let take = (end - start) as usize + 1;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take(take)
                .map(|(entry, _)| entry.clone())
                .collect(),
        )
    }

    /// Drops the entries from `first_removed` on.
    pub(super) fn truncate(&mut self, first_removed: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(entry, _)| entry.index() >= first_removed)
        {
            let (_, size) = self.entries.pop_back().expect("checked");
            self.bytes -= size;
        }
    }

    /// Drops the entries up to `upto`, inclusive.
    pub(super) fn purge(&mut self, upto: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(entry, _)| entry.index() <= upto)
        {
            self.pop_front();
        }
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn next_index(&self) -> Option<u64> {
        self.entries.back().map(|(entry, _)| entry.index() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::TypeConfig;
    use openraft::type_config::alias::{EntryOf, LogIdOf};
    use openraft::vote::RaftLeaderIdExt;

    type Config = TypeConfig;

    fn entry(index: u64) -> EntryOf<Config> {
        let leader = <Config as RaftTypeConfig>::LeaderId::new_committed(1, 1);
        EntryOf::<Config>::new_blank(LogIdOf::<Config>::new(leader, index))
    }

    fn tail(indexes: std::ops::RangeInclusive<u64>) -> LogTail<Config> {
        let mut tail = LogTail::default();
        tail.push(indexes.map(|i| (entry(i), 10)));
        tail
    }

    fn indexes(entries: Option<Vec<EntryOf<Config>>>) -> Option<Vec<u64>> {
        entries.map(|entries| entries.iter().map(|e| e.index()).collect())
    }

    #[test]
    fn serves_a_range_only_when_it_holds_all_of_it() {
        let tail = tail(5..=9);
        let get = |start, end| indexes(tail.get(&(start, end)));
        use Bound::*;
        assert_eq!(get(Included(6), Excluded(9)), Some(vec![6, 7, 8]));
        assert_eq!(get(Excluded(5), Included(9)), Some(vec![6, 7, 8, 9]));
        assert_eq!(get(Included(7), Unbounded), Some(vec![7, 8, 9]));
        assert_eq!(get(Included(4), Included(6)), None, "4 is not held");
        assert_eq!(get(Included(8), Included(10)), None, "10 is not held");
        assert_eq!(get(Unbounded, Included(6)), None);
        assert_eq!(get(Included(7), Excluded(7)), None, "an empty range");
    }

    #[test]
    fn truncation_purge_and_gaps_keep_the_run_consecutive() {
        let mut tail = tail(1..=6);
        tail.truncate(5);
        tail.purge(2);
        assert_eq!(
            indexes(tail.get(&(Bound::Unbounded, Bound::Unbounded))),
            None
        );
        assert_eq!(
            indexes(tail.get(&(Bound::Included(3), Bound::Unbounded))),
            Some(vec![3, 4])
        );
        // New entries after the truncation continue the run…
        tail.push([(entry(5), 10)]);
        assert_eq!(
            indexes(tail.get(&(Bound::Included(3), Bound::Unbounded))),
            Some(vec![3, 4, 5])
        );
        // …and ones after a gap start a new one.
        tail.push([(entry(9), 10)]);
        assert_eq!(
            indexes(tail.get(&(Bound::Included(9), Bound::Unbounded))),
            Some(vec![9])
        );
        assert_eq!(
            indexes(tail.get(&(Bound::Included(5), Bound::Unbounded))),
            None
        );
    }

    #[test]
    fn holds_at_most_its_bounds() {
        let mut tail = tail(1..=(MAX_ENTRIES as u64 + 10));
        assert_eq!(tail.entries.len(), MAX_ENTRIES);
        assert_eq!(tail.entries.front().unwrap().0.index(), 11);
        tail.push([(entry(MAX_ENTRIES as u64 + 11), MAX_BYTES)]);
        assert_eq!(tail.entries.len(), 1, "one large entry pushes out the rest");
        assert!(tail.bytes <= MAX_BYTES);
    }
}
