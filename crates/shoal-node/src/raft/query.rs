//! Reads of the replicated state, as values that can travel: a node that
//! keeps no replica sends its query to a member.

use super::types::ShoalState;
use crate::jobs::{Capabilities, JobId, JobState, Leasing};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use shoal_proto::ErrorCode;
use shoal_proto::api::{ApiError, SortKey};

/// Largest page a `Find` or `Jobs` query returns.
pub const MAX_PAGE: usize = shoal_proto::api::MAX_PAGE;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Query {
    Job {
        id: JobId,
    },
    /// Jobs in id order, optionally in one state, starting after `after`.
    Jobs {
        state: Option<JobState>,
        limit: usize,
        after: Option<JobId>,
    },
    JobCounts,
    Doc {
        collection: String,
        id: String,
    },
    Find {
        collection: String,
        filter: Map<String, Value>,
        /// Empty: id order. Defaulted so members of an older version that
        /// send no sort are still understood.
        #[serde(default)]
        sort: Vec<SortKey>,
        limit: usize,
        after: Option<String>,
    },
    Count {
        collection: String,
        filter: Map<String, Value>,
    },
    /// Every collection with its number of documents.
    Collections,
    /// The answering member's view of Raft (leader, term, voters).
    RaftStatus,
    /// How many queued jobs a node offering `offer` could lease at
    /// `now_ms` (counting no further than `up_to`), and the index of the
    /// last job command applied: how a node without a replica finds work.
    Leasable {
        offer: Capabilities,
        now_ms: u64,
        up_to: usize,
        /// The asking node, whose running jobs hold resources (absent
        /// from an older node's question: none held).
        #[serde(default)]
        node: String,
        /// Its room for jobs with requirements (absent: unlimited).
        #[serde(default = "unlimited")]
        max_local: u32,
    },
}

fn unlimited() -> u32 {
    u32::MAX
}

/// The answer to [`Query::Leasable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leasable {
    pub leasable: usize,
    pub applied: u64,
}

/// Answers `query` from `state`; errors are for the user.
pub fn answer(state: &ShoalState, query: &Query) -> Result<Value, ApiError> {
    match query {
        Query::Job { id } => to_value(&state.jobs.get(*id)),
        Query::Jobs {
            state: wanted,
            limit,
            after,
        } => {
            let jobs: Vec<_> = state
                .jobs
                .list(*wanted)
                .filter(|job| after.is_none_or(|after| job.id > after))
                .take((*limit).min(MAX_PAGE))
                .collect();
            to_value(&jobs)
        }
        Query::JobCounts => {
            let counts: Map<String, Value> = state
                .jobs
                .counts()
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), json!(n)))
                .collect();
            Ok(Value::Object(counts))
        }
        Query::Doc { collection, id } => to_value(&state.docs.document(collection, id)?),
        Query::Find {
            collection,
            filter,
            sort,
            limit,
            after,
        } => {
            let limit = (*limit).min(MAX_PAGE);
            let (documents, next) =
                state
                    .docs
                    .find(collection, filter, sort, limit, after.as_deref())?;
            Ok(json!({ "documents": documents, "next": next }))
        }
        Query::Count { collection, filter } => Ok(json!(state.docs.count(collection, filter)?)),
        Query::Collections => to_value(&state.docs.collection_sizes()),
        Query::Leasable {
            offer,
            now_ms,
            up_to,
            node,
            max_local,
        } => {
            let leasing = Leasing {
                node: node.clone(),
                offer: offer.clone(),
                max_local: *max_local,
            };
            to_value(&Leasable {
                leasable: state.jobs.leasable(&leasing, *now_ms, *up_to),
                applied: state.jobs.applied_id(),
            })
        }
        Query::RaftStatus => Err(ApiError::new(
            ErrorCode::Internal,
            "Raft status is answered by the consensus module",
        )),
    }
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}
