//! The Raft log in redb (to be written).
