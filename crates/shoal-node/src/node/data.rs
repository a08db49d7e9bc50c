//! The node's durable-data API: jobs and documents, replicated with Raft.
//!
//! Writes are acknowledged only once committed by a majority of voters;
//! reads are linearizable (through the leader's read index) unless the
//! caller asks for a possibly stale local read.

use super::handle::Node;
use crate::jobs::{Job, JobCommand, JobId, JobOutcome, JobSpec, JobState};
use crate::raft::consensus::{ConsensusError, RaftStatus};
use crate::raft::query::Query;
use crate::raft::types::{Command, CommandResult};
use crate::store::{DocCommand, DocOutcome, Document, Filter, SortOrder, check_merge_patch};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use shoal_proto::ErrorCode;
use shoal_proto::api::{ApiError, CollectionInfo, SortKey};
use std::collections::BTreeMap;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Read {
    /// Sees every write acknowledged before the read began.
    #[default]
    Linearizable,
    /// This node's replica as it is; may lag the leader.
    Stale,
}

impl Read {
    /// `Stale` when the caller allows it, else `Linearizable`.
    pub fn stale_if(stale: bool) -> Read {
        if stale {
            Read::Stale
        } else {
            Read::Linearizable
        }
    }
}

/// Why a job or document operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    /// The cluster refused the operation or could not answer the read: no
    /// such collection, a version conflict, a finished job, no member
    /// reachable, ….
    #[error("{}", .0.message)]
    Refused(ApiError),
    /// A bug or a version mismatch between nodes; details for the log.
    #[error("{0}")]
    Internal(String),
}

impl DataError {
    /// The stable code a client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            DataError::Consensus(ConsensusError::NoLeader(_)) => ErrorCode::Unavailable,
            DataError::Consensus(ConsensusError::NotCommitted(_) | ConsensusError::Unknown(_)) => {
                ErrorCode::OutcomeUnknown
            }
            DataError::Consensus(ConsensusError::Failed(_)) | DataError::Internal(_) => {
                ErrorCode::Internal
            }
            DataError::Refused(e) => e.code,
        }
    }
}

fn unexpected(what: impl std::fmt::Debug) -> DataError {
    DataError::Internal(format!("unexpected outcome {what:?}"))
}

impl Node {
    async fn write(&self, command: Command) -> Result<CommandResult, DataError> {
        Ok(self.consensus().write(command).await?)
    }

    async fn query<T: DeserializeOwned>(&self, query: Query, read: Read) -> Result<T, DataError> {
        let value = self
            .consensus()
            .query(query, read == Read::Linearizable)
            .await
            .map_err(DataError::Refused)?;
        serde_json::from_value(value).map_err(|e| DataError::Internal(e.to_string()))
    }

    async fn job_command(&self, command: JobCommand) -> Result<JobOutcome, DataError> {
        match self.write(Command::Jobs(command)).await? {
            CommandResult::Jobs(JobOutcome::Rejected(reason)) => Err(DataError::Refused(
                ApiError::new(ErrorCode::Rejected, reason),
            )),
            CommandResult::Jobs(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn doc_command(&self, command: DocCommand) -> Result<DocOutcome, DataError> {
        match self.write(Command::Docs(command)).await? {
            CommandResult::Docs(DocOutcome::Error { code, message }) => {
                Err(DataError::Refused(ApiError::new(code.code(), message)))
            }
            CommandResult::Docs(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// Submits a durable job; returns once a majority of voters stored it.
    pub async fn submit_job(&self, spec: JobSpec) -> Result<JobId, DataError> {
        spec.check()
            .map_err(|e| DataError::Refused(ApiError::new(ErrorCode::InvalidRequest, e)))?;
        let submit = JobCommand::Submit {
            spec,
            now_ms: crate::clock::now_ms(),
        };
        match self.job_command(submit).await? {
            JobOutcome::Submitted { id, .. } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    pub async fn job(&self, id: JobId, read: Read) -> Result<Option<Job>, DataError> {
        self.query(Query::Job { id }, read).await
    }

    /// Jobs in id order, optionally in one state; `after` pages.
    pub async fn jobs(
        &self,
        state: Option<JobState>,
        limit: usize,
        after: Option<JobId>,
        read: Read,
    ) -> Result<Vec<Job>, DataError> {
        self.query(
            Query::Jobs {
                state,
                limit,
                after,
            },
            read,
        )
        .await
    }

    /// How many jobs are in each state.
    pub async fn job_counts(&self, read: Read) -> Result<BTreeMap<String, usize>, DataError> {
        self.query(Query::JobCounts, read).await
    }

    /// Cancels a queued or running job; a running one's runner stops it.
    pub async fn cancel_job(&self, id: JobId) -> Result<(), DataError> {
        let cancel = JobCommand::Cancel {
            id,
            now_ms: crate::clock::now_ms(),
        };
        self.job_command(cancel).await.map(|_| ())
    }

    pub async fn db_create(&self, collection: &str) -> Result<(), DataError> {
        let name = collection.to_string();
        self.doc_command(DocCommand::CreateCollection { name })
            .await
            .map(|_| ())
    }

    pub async fn db_drop(&self, collection: &str) -> Result<(), DataError> {
        let name = collection.to_string();
        self.doc_command(DocCommand::DropCollection { name })
            .await
            .map(|_| ())
    }

    /// Inserts a document; returns its assigned id and version (1).
    pub async fn db_insert(
        &self,
        collection: &str,
        body: Value,
    ) -> Result<(String, u64), DataError> {
        let insert = DocCommand::Insert {
            collection: collection.to_string(),
            body,
        };
        written(self.doc_command(insert).await?)
    }

    /// Replaces a document; with `expected_version`, only if no other write
    /// came first. Returns the new version.
    pub async fn db_replace(
        &self,
        collection: &str,
        id: &str,
        body: Value,
        expected_version: Option<u64>,
    ) -> Result<u64, DataError> {
        let replace = DocCommand::Replace {
            collection: collection.to_string(),
            id: id.to_string(),
            body,
            expected_version,
        };
        written(self.doc_command(replace).await?).map(|(_, version)| version)
    }

    /// Applies a JSON merge patch; returns the new version.
    pub async fn db_patch(
        &self,
        collection: &str,
        id: &str,
        patch: Value,
        expected_version: Option<u64>,
    ) -> Result<u64, DataError> {
        let command = DocCommand::Patch {
            collection: collection.to_string(),
            id: id.to_string(),
            patch,
            expected_version,
        };
        written(self.doc_command(command).await?).map(|(_, version)| version)
    }

    pub async fn db_delete(
        &self,
        collection: &str,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<(), DataError> {
        let delete = DocCommand::Delete {
            collection: collection.to_string(),
            id: id.to_string(),
            expected_version,
        };
        self.doc_command(delete).await.map(|_| ())
    }

    pub async fn db_get(
        &self,
        collection: &str,
        id: &str,
        read: Read,
    ) -> Result<Option<Document>, DataError> {
        let query = Query::Doc {
            collection: collection.to_string(),
            id: id.to_string(),
        };
        self.query(query, read).await
    }

    /// Documents that match `filter` (the language of [`Filter`]), in
    /// `sort` order (id order when empty); returns a page of at most
    /// `limit` and the cursor for the next one, to pass as `after`.
    pub async fn db_find(
        &self,
        collection: &str,
        filter: Map<String, Value>,
        sort: Vec<SortKey>,
        limit: usize,
        after: Option<String>,
        read: Read,
    ) -> Result<(Vec<Document>, Option<String>), DataError> {
        #[derive(serde::Deserialize)]
        struct Page {
            documents: Vec<Document>,
            next: Option<String>,
        }
        check_filter(&filter)?;
        SortOrder::parse(&sort).map_err(|e| refused(ErrorCode::InvalidFilter, e))?;
        let query = Query::Find {
            collection: collection.to_string(),
            filter,
            sort,
            limit,
            after,
        };
        let page: Page = self.query(query, read).await?;
        Ok((page.documents, page.next))
    }

    /// How many documents match `filter`.
    pub async fn db_count(
        &self,
        collection: &str,
        filter: Map<String, Value>,
        read: Read,
    ) -> Result<usize, DataError> {
        check_filter(&filter)?;
        let query = Query::Count {
            collection: collection.to_string(),
            filter,
        };
        self.query(query, read).await
    }

    /// Every collection in name order, with its number of documents.
    pub async fn db_collections(&self, read: Read) -> Result<Vec<CollectionInfo>, DataError> {
        self.query(Query::Collections, read).await
    }

    /// Merge-patches every document that matches `filter`, in one Raft
    /// entry: all of them change, or (on an error) none. Returns how many
    /// changed; each one's version went up by one.
    pub async fn db_update_where(
        &self,
        collection: &str,
        filter: Map<String, Value>,
        patch: Value,
    ) -> Result<usize, DataError> {
        // Checked here too, so a bad request never reaches the log.
        check_filter(&filter)?;
        check_merge_patch(&patch).map_err(|e| DataError::Refused(e.into()))?;
        let command = DocCommand::UpdateWhere {
            collection: collection.to_string(),
            filter: Value::Object(filter),
            patch,
        };
        changed(self.doc_command(command).await?)
    }

    /// Deletes every document that matches `filter`, in one Raft entry.
    /// Returns how many were deleted.
    pub async fn db_delete_where(
        &self,
        collection: &str,
        filter: Map<String, Value>,
    ) -> Result<usize, DataError> {
        check_filter(&filter)?;
        let command = DocCommand::DeleteWhere {
            collection: collection.to_string(),
            filter: Value::Object(filter),
        };
        changed(self.doc_command(command).await?)
    }

    /// Raft as this node sees it: leader, term, voters.
    pub fn raft_status(&self) -> RaftStatus {
        self.consensus().status()
    }

    /// Raft as the member `peer` sees it.
    pub async fn raft_status_at(&self, peer: libp2p::PeerId) -> Result<RaftStatus, DataError> {
        let value = self
            .consensus()
            .query_at(peer, Query::RaftStatus)
            .await
            .map_err(DataError::Refused)?;
        serde_json::from_value(value).map_err(|e| DataError::Internal(e.to_string()))
    }

    /// Raft as a member sees it: this node's view if it is one, else the
    /// view of the first member that answers.
    pub async fn raft_status_of_cluster(&self) -> Option<RaftStatus> {
        let own = self.raft_status();
        if own.member {
            return Some(own);
        }
        self.query(Query::RaftStatus, Read::Stale).await.ok()
    }
}

fn refused(code: ErrorCode, error: impl std::fmt::Display) -> DataError {
    DataError::Refused(ApiError::new(code, error.to_string()))
}

/// Refuses a malformed filter before it costs a query or a log entry.
fn check_filter(filter: &Map<String, Value>) -> Result<(), DataError> {
    Filter::from_fields(filter)
        .map(|_| ())
        .map_err(|e| refused(ErrorCode::InvalidFilter, e))
}

fn changed(outcome: DocOutcome) -> Result<usize, DataError> {
    match outcome {
        DocOutcome::Changed { count } => Ok(count),
        other => Err(unexpected(other)),
    }
}

fn written(outcome: DocOutcome) -> Result<(String, u64), DataError> {
    match outcome {
        DocOutcome::Written { id, version } => Ok((id, version)),
        other => Err(unexpected(other)),
    }
}
