//! Whether the documents of a chaos run behaved as linearizable registers,
//! and kept every acknowledged write.
//!
//! The documents are registers written with compare-and-set on their
//! version, and every write stores a value no other write stores. The
//! version therefore names each write, and the versions order the writes
//! as the cluster applied them. With the order of writes known, a history
//! is linearizable exactly when no two operations contradict real time:
//! an operation that finished before another began must not come after it
//! in version order. So the checker compares pairs, instead of searching
//! all orders as a general linearizability checker must.
//!
//! ```text
//!   acknowledgements + reads + final state ──► value of each version
//!   writes and reads, each with its version ──► pairs that contradict real time
//! ```

use super::history::{DocRead, DocWrite, Micros};
use super::report::Report;
use std::collections::{BTreeMap, HashMap};

/// One document: the version of each write, then real-time order.
pub fn check_register(
    doc: usize,
    writes: &[&DocWrite],
    reads: &[&DocRead],
    last: Option<(u64, u64)>,
    report: &mut Report,
) {
    let by_value: HashMap<u64, &DocWrite> = writes.iter().map(|w| (w.value, *w)).collect();
    // Which value each version holds, from acknowledgements and reads.
    let mut at_version: BTreeMap<u64, u64> = BTreeMap::new();
    for write in writes {
        let Some(version) = write.version else {
            continue;
        };
        report.doc_writes_acknowledged += 1;
        if let Some(other) = at_version.insert(version, write.value) {
            report.doc_writes_lost += 1;
            report.problem(format!(
                "doc {doc}: writes of {other} and {} were both acknowledged as version {version}",
                write.value
            ));
        }
    }
    let observed = reads
        .iter()
        .filter_map(|r| r.seen)
        .chain(last)
        .collect::<Vec<_>>();
    for &(version, value) in &observed {
        // Value 0 is the document as inserted before the run.
        if value != 0 && !by_value.contains_key(&value) {
            report.linearizability_violations += 1;
            report.problem(format!("doc {doc}: read value {value}, which nobody wrote"));
        }
        match at_version.get(&version) {
            Some(&known) if known != value => {
                report.doc_writes_lost += 1;
                report.problem(format!(
                    "doc {doc}: version {version} holds {value}, but the write of {known} \
                     was acknowledged as that version"
                ));
            }
            Some(_) => {}
            None => {
                at_version.insert(version, value);
            }
        }
    }
    if let Some((final_version, _)) = last {
        for (&version, value) in at_version.range(final_version + 1..) {
            report.doc_writes_lost += 1;
            report.problem(format!(
                "doc {doc}: version {version} ({value}) was seen, but the document ended at \
                 version {final_version}"
            ));
        }
    }

    // Real time. Every operation gets its version: writes the one they
    // created, reads the one they saw.
    let version_of_value: HashMap<u64, u64> = at_version.iter().map(|(v, x)| (*x, *v)).collect();
    let mut ops: Vec<Op> = Vec::new();
    for write in writes {
        if let Some(&version) = version_of_value.get(&write.value) {
            let acknowledged = write.version.is_some();
            ops.push(Op {
                invoked: write.invoked,
                // A write whose answer was lost may have taken effect at
                // any time after it was sent, even after its client gave up.
                completed: if acknowledged {
                    write.completed
                } else {
                    Micros::MAX
                },
                version,
                what: if acknowledged {
                    "acknowledged write"
                } else {
                    "unacknowledged write"
                },
            });
        }
    }
    report.doc_reads_ok += reads.iter().filter(|r| r.seen.is_some()).count();
    for read in reads {
        if let Some((version, _)) = read.seen {
            ops.push(Op {
                invoked: read.invoked,
                completed: read.completed,
                version,
                what: "read",
            });
        }
    }
    // An operation `a` that completed before `b` was invoked must not have
    // a later version, nor, when `b` is a write, the same one.
    let mut by_completion = ops.clone();
    by_completion.sort_by_key(|op| op.completed);
    ops.sort_by_key(|op| op.invoked);
    let mut finished = 0;
    // The op with the highest version among those complete so far.
    let mut highest: Option<&Op> = None;
    for b in &ops {
        while finished < by_completion.len() && by_completion[finished].completed < b.invoked {
            let a = &by_completion[finished];
            if highest.is_none_or(|h| a.version > h.version) {
                highest = Some(a);
            }
            finished += 1;
        }
        let Some(a) = highest else {
            continue;
        };
        let is_write = b.what != "read";
        if b.version < a.version || (is_write && b.version == a.version) {
            report.linearizability_violations += 1;
            report.problem(format!(
                "doc {doc}: a {} begun at {:.3} s has version {}, but a {} of version {} \
                 ended at {:.3} s, before it began",
                b.what,
                b.invoked as f64 / 1e6,
                b.version,
                a.what,
                a.version,
                a.completed as f64 / 1e6,
            ));
        }
    }
}

/// An operation on one document, placed in time and in version order.
#[derive(Clone, Debug)]
struct Op {
    invoked: Micros,
    completed: Micros,
    version: u64,
    what: &'static str,
}
