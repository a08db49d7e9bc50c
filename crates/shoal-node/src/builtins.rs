//! Functions every `shoal node` offers out of the box: the demos' Monte Carlo
//! Pi and fib, and the no-op and sleep used by benchmarks and tests.

use crate::calls::context::CallContext;
use crate::calls::registry::FnResult;
use crate::node::builder::NodeBuilder;
use serde_json::{Value, json};
use std::time::Duration;

/// Samples one chunk of Monte Carlo Pi with the MaDRPC seed's LCG, in
/// wrapping 32-bit arithmetic (JavaScript's `Math.imul`), so a JavaScript
/// version gives the very same count for the same seed.
pub fn pi_inside(samples: u64, seed: u32) -> u64 {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345) & 0x7fff_ffff;
        state as f64 / 2_147_483_647.0
    };
    let mut inside = 0;
    for _ in 0..samples {
        let x = next();
        let y = next();
        if x * x + y * y <= 1.0 {
            inside += 1;
        }
    }
    inside
}

fn arg_u64(args: &Value, name: &str) -> Result<u64, String> {
    args.get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("expected a non-negative integer argument '{name}', got {args}"))
}

/// `pi.sample {samples, seed}` → `{inside, total, node}`; the sampling runs
/// on a blocking thread so it never stalls the node's network tasks.
async fn pi_sample(ctx: CallContext, args: Value) -> FnResult {
    let samples = arg_u64(&args, "samples")?;
    let seed = arg_u64(&args, "seed")? as u32;
    let inside = tokio::task::spawn_blocking(move || pi_inside(samples, seed)).await?;
    Ok(json!({ "inside": inside, "total": samples, "node": ctx.node_id().0 }))
}

/// `fib n`: recursive through the cluster; memoized, so each value is
/// computed about once per node.
async fn fib(ctx: CallContext, args: Value) -> FnResult {
    let n = args
        .as_u64()
        .ok_or_else(|| format!("fib expects a non-negative integer, got {args}"))?;
    if n > 92 {
        return Err(format!("fib({n}) does not fit in 64 bits; the largest is fib(92)").into());
    }
    if n < 2 {
        return Ok(json!(n));
    }
    let (a, b) = tokio::try_join!(ctx.call("fib", json!(n - 1)), ctx.call("fib", json!(n - 2)))?;
    let sum = a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0);
    Ok(json!(sum))
}

/// `steps {count, ms}`: sleeps `ms` per step and reports progress after
/// each, so `shoal jobs watch` has something to show.
async fn steps(ctx: CallContext, args: Value) -> FnResult {
    let count = arg_u64(&args, "count")?.max(1);
    let ms = arg_u64(&args, "ms")?;
    for step in 1..=count {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ctx.progress(
            step as f64 / count as f64,
            format!("step {step} of {count}"),
        );
    }
    Ok(json!(count))
}

/// Adds the built-in functions to a node.
pub fn register(builder: NodeBuilder) -> NodeBuilder {
    builder
        .register("noop", |_ctx, _args| async { Ok(Value::Null) })
        .register("echo", |_ctx, args| async move { Ok(args) })
        .register("sleep", |_ctx, args| async move {
            let ms = args.as_u64().ok_or("sleep expects milliseconds")?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!(ms))
        })
        .register("pi.sample", pi_sample)
        .register("steps", steps)
        .register("fib", fib)
        .memoize("fib")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcg_matches_wrapping_32_bit_arithmetic() {
        // First states for seed 1, computed by hand with Math.imul semantics.
        let mut state: u32 = 1;
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345) & 0x7fff_ffff;
        assert_eq!(state, 1_103_527_590);
        let inside = pi_inside(1_000_000, 42);
        let estimate = 4.0 * inside as f64 / 1_000_000.0;
        assert!((estimate - std::f64::consts::PI).abs() < 0.01, "{estimate}");
        assert_eq!(
            pi_inside(1000, 7),
            pi_inside(1000, 7),
            "deterministic per seed"
        );
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let error = arg_u64(&json!({"samples": "many"}), "samples").unwrap_err();
        assert!(error.contains("'samples'"), "{error}");
    }
}
