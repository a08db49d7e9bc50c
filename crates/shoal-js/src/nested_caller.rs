//! The one way out of a script: `shoal.call` and `shoal.progress` go to the
//! [`NestedCaller`] the node passed in with the call, which runs on the
//! node's tokio runtime, never on the engine's thread.

use futures::future::BoxFuture;
use serde_json::Value;

/// How JavaScript reaches the rest of the cluster: given by the node with
/// each call, so nested calls run in that call's context.
pub trait NestedCaller: Send + Sync + 'static {
    /// Calls a function anywhere in the cluster; errors are messages for
    /// the script.
    fn call(&self, function: String, args: Value) -> BoxFuture<'static, Result<Value, String>>;

    /// Progress of the job this call runs for; calls outside jobs ignore it.
    fn progress(&self, _fraction: f64, _message: String) {}
}
