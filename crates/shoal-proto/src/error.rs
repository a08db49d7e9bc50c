//! The errors a caller can see. Codes are stable: they go on the wire and,
//! later, into the HTTP API; messages are for people.

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
}

impl ErrorCode {
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
