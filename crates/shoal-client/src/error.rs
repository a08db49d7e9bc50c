//! [`ClientError`]: every way a request can fail, as the caller sees it.
//! A node's own error keeps its stable [`ErrorCode`]; failures to reach any
//! node say which were tried.

use shoal_proto::ErrorCode;
use shoal_proto::api::ApiError;

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// A node answered with an error.
    #[error("{error} (HTTP {status})")]
    Api { status: u16, error: ApiError },
    /// No node answered.
    #[error("no Shoal node answered (tried {}): {last_error}", tried.join(", "))]
    Unreachable {
        tried: Vec<String>,
        last_error: String,
    },
    /// The answer was not what the API promises (another service on that
    /// port, or another Shoal version).
    #[error("{0}")]
    Protocol(String),
    /// The client was set up wrongly.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The API's error code, when a node answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }
}
