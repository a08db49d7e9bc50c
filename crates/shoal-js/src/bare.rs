//! A bare QuickJS runtime — no pool, no threads, no `shoal` beyond a stub —
//! so `shoal bench js` can tell what the pool costs on top of QuickJS.

use crate::error::JsError;
use std::time::{Duration, Instant};

/// Times an expression in a bare QuickJS runtime after evaluating `setup`:
/// the baseline that `shoal bench js` compares the pool against.
pub fn time_bare(setup: &str, expression: &str) -> Result<Duration, JsError> {
    let runtime = rquickjs::Runtime::new().map_err(thrown)?;
    let context = rquickjs::Context::full(&runtime).map_err(thrown)?;
    context.with(|ctx| {
        ctx.eval::<(), _>("var shoal = { register() {}, call() {}, progress() {}, node: 'bare' };")
            .map_err(thrown)?;
        ctx.eval::<(), _>(setup).map_err(thrown)?;
        let started = Instant::now();
        ctx.eval::<rquickjs::Value, _>(expression).map_err(thrown)?;
        Ok(started.elapsed())
    })
}

/// An engine error, with the same text the bench printed before it was typed.
fn thrown(error: rquickjs::Error) -> JsError {
    JsError::Thrown {
        message: error.to_string(),
        stack: None,
    }
}
