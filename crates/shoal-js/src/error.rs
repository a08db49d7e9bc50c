//! What can go wrong in JavaScript, as the node reports it: a script that
//! does not load ([`ScriptError`]) or a call that fails ([`JsError`]).

use std::time::Duration;

/// Why a script could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("script {script}: {message}")]
pub struct ScriptError {
    pub script: String,
    pub message: String,
}

/// Why a JavaScript call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsError {
    /// The function threw (or its promise rejected).
    #[error("{message}{}", stack.as_deref().map(|s| format!("\n{s}")).unwrap_or_default())]
    Thrown {
        message: String,
        stack: Option<String>,
    },
    #[error("no script registered a function named '{0}'")]
    UnknownFunction(String),
    #[error("ran longer than the limit of {0:?} without yielding, and was interrupted")]
    TimeLimit(Duration),
    #[error("exceeded the script memory limit of {} MiB", .0 / (1024 * 1024))]
    MemoryLimit(usize),
    #[error("arguments are not valid JSON for JavaScript: {0}")]
    BadArguments(String),
    #[error("the result cannot be sent as JSON: {0}")]
    BadResult(String),
    #[error("the JavaScript engine stopped")]
    EngineStopped,
}
