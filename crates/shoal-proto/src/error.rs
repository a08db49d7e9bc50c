//! The errors a caller can see. Codes are stable: they go on the wire and
//! into the HTTP API; messages are for people.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable reason for a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No node in the cluster has registered the function.
    UnknownFunction,
    /// The function ran and returned an error.
    FunctionFailed,
    /// The function panicked; only this call is affected.
    FunctionPanicked,
    /// The call did not resolve before its deadline.
    DeadlineExceeded,
    /// The arguments or the result are larger than the frame limit.
    PayloadTooLarge,
    /// The arguments were not what the function expects.
    InvalidArguments,
    /// The call was cancelled by its caller.
    Cancelled,
    /// No node that can run the function is reachable.
    Unavailable,
    /// A queue was closed.
    Closed,
    /// A bounded wait ran out (for example a queue pop).
    Timeout,
    /// The local node is shutting down.
    ShuttingDown,
    /// A protocol violation or a bug; details are in the node's log.
    Internal,
    /// The request was malformed: bad JSON, wrong types, a bad parameter.
    InvalidRequest,
    /// The API token is missing or wrong.
    Unauthorized,
    /// No such route, job or document.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    NoSuchCollection,
    CollectionExists,
    /// Another write changed the document first.
    VersionConflict,
    /// A document body that is not a JSON object.
    InvalidDocument,
    /// The job table refused the command (e.g. cancelling a finished job).
    Rejected,
    /// A write may or may not have taken effect (its node was lost).
    OutcomeUnknown,
    /// Every node that can run the function has a full queue, or the
    /// calling node waits for as many calls as it may; try again later.
    Overloaded,
    /// A document filter that cannot be read: an unknown operator, an
    /// operand of the wrong kind, a malformed field path.
    InvalidFilter,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::UnknownFunction,
        ErrorCode::FunctionFailed,
        ErrorCode::FunctionPanicked,
        ErrorCode::DeadlineExceeded,
        ErrorCode::PayloadTooLarge,
        ErrorCode::InvalidArguments,
        ErrorCode::Cancelled,
        ErrorCode::Unavailable,
        ErrorCode::Closed,
        ErrorCode::Timeout,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::NoSuchCollection,
        ErrorCode::CollectionExists,
        ErrorCode::VersionConflict,
        ErrorCode::InvalidDocument,
        ErrorCode::Rejected,
        ErrorCode::OutcomeUnknown,
        ErrorCode::Overloaded,
        ErrorCode::InvalidFilter,
    ];

    /// Its position in [`ErrorCode::ALL`], for per-code counters.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownFunction => "unknown_function",
            ErrorCode::FunctionFailed => "function_failed",
            ErrorCode::FunctionPanicked => "function_panicked",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InvalidArguments => "invalid_arguments",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Closed => "closed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NoSuchCollection => "no_such_collection",
            ErrorCode::CollectionExists => "collection_exists",
            ErrorCode::VersionConflict => "version_conflict",
            ErrorCode::InvalidDocument => "invalid_document",
            ErrorCode::Rejected => "rejected",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::InvalidFilter => "invalid_filter",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a call failed: a stable code and a message that names the function
/// and says what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallError {
    pub code: ErrorCode,
    pub message: String,
}

impl CallError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CallError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_in_order() {
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code.index(), i);
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
