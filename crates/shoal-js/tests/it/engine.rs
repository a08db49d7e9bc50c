//! The engine pool on its own, with a stand-in for the node's nested calls.

use futures::future::BoxFuture;
use serde_json::{Value, json};
use shoal_js::{EngineConfig, EnginePool, JsError, NestedCaller, Script};
use std::sync::Arc;
use std::time::Duration;

/// Answers nested calls itself: `double` doubles, everything else fails.
struct LocalCaller(Arc<EnginePool>);

impl NestedCaller for LocalCaller {
    fn call(&self, function: String, args: Value) -> BoxFuture<'static, Result<Value, String>> {
        let pool = Arc::clone(&self.0);
        Box::pin(async move {
            match function.as_str() {
                "double" => Ok(json!(args.as_i64().unwrap_or(0) * 2)),
                _ => {
                    let caller = Arc::new(LocalCaller(Arc::clone(&pool)));
                    pool.call(&function, &args, caller)
                        .await
                        .map_err(|e| e.to_string())
                }
            }
        })
    }
}

fn pool(workers: usize) -> Arc<EnginePool> {
    let config = EngineConfig {
        workers,
        memory_limit: 32 * 1024 * 1024,
        time_limit: Duration::from_millis(300),
        ..EngineConfig::default()
    };
    Arc::new(EnginePool::start(
        config,
        "test-node",
        tokio::runtime::Handle::current(),
    ))
}

async fn call(pool: &Arc<EnginePool>, function: &str, args: Value) -> Result<Value, JsError> {
    pool.call(function, &args, Arc::new(LocalCaller(Arc::clone(pool))))
        .await
}

fn example(name: &str) -> Script {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    Script::new(name, std::fs::read_to_string(path).unwrap())
}

/// The LCG of pi.js, in Rust, for an independent expected count.
fn inside(samples: u64, seed: u32) -> u64 {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345) & 0x7fff_ffff;
        state as f64 / 2_147_483_647.0
    };
    (0..samples)
        .filter(|_| next().powi(2) + next().powi(2) <= 1.0)
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_functions_run_and_nested_calls_resolve() {
    let pool = pool(2);
    let script = Script::new(
        "t.js",
        "shoal.register('add', (a) => a.x + a.y);
         shoal.register('quad', async (n) => { const d = await shoal.call('double', n); return await shoal.call('double', d); }, {memoize: true});",
    );
    let registered = pool.load(&script).await.unwrap();
    assert_eq!(registered.len(), 2);
    assert!(registered.iter().any(|f| f.name == "quad" && f.memoize));
    assert_eq!(
        call(&pool, "add", json!({"x": 2, "y": 3})).await.unwrap(),
        json!(5)
    );
    assert_eq!(call(&pool, "quad", json!(5)).await.unwrap(), json!(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_example_counts_exactly_what_rust_counts() {
    let pool = pool(2);
    pool.load(&example("pi.js")).await.unwrap();
    let result = call(&pool, "pi", json!({"samples": 400_000, "chunks": 8}))
        .await
        .unwrap();
    let expected: u64 = (0..8).map(|seed| inside(50_000, seed)).sum();
    assert_eq!(result["inside"], json!(expected));
    assert_eq!(result["total"], json!(400_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_example_counts_words() {
    let pool = pool(2);
    pool.load(&example("wordcount.js")).await.unwrap();
    let result = call(
        &pool,
        "wordcount",
        json!({"texts": ["the cat", "The dog and the cat"], "top": 2}),
    )
    .await
    .unwrap();
    assert_eq!(result["words"], json!(7));
    assert_eq!(result["top"], json!([["the", 3], ["cat", 2]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scripts_and_calls_fail_clearly_and_the_engine_keeps_serving() {
    let pool = pool(1);
    let syntax = pool
        .load(&Script::new("broken.js", "shoal.register('x', () => {"))
        .await
        .unwrap_err();
    assert!(
        syntax.to_string().contains("broken.js") && syntax.message.contains("SyntaxError"),
        "{syntax}"
    );

    let script = Script::new(
        "bad.js",
        "shoal.register('spin', () => { for (;;) {} });
         shoal.register('hog', () => { const a = []; for (;;) a.push(new Array(1e5).fill(1)); });
         shoal.register('throws', () => { throw new RangeError('out of range here'); });
         shoal.register('rejects', async () => { await null; throw new Error('later'); });
         shoal.register('upper', (s) => s.toUpperCase());
         shoal.register('fine', () => 'fine');",
    );
    pool.load(&script).await.unwrap();

    let spin = call(&pool, "spin", json!(null)).await.unwrap_err();
    assert!(matches!(spin, JsError::TimeLimit(_)), "{spin}");
    let hog = call(&pool, "hog", json!(null)).await.unwrap_err();
    assert!(matches!(hog, JsError::MemoryLimit(_)), "{hog}");
    let thrown = call(&pool, "throws", json!(null)).await.unwrap_err();
    match &thrown {
        JsError::Thrown { message, stack } => {
            assert_eq!(message, "RangeError: out of range here");
            assert!(
                stack.as_deref().unwrap_or("").contains("bad.js"),
                "{stack:?}"
            );
        }
        other => panic!("expected a thrown error, got {other}"),
    }
    let rejected = call(&pool, "rejects", json!(null)).await.unwrap_err();
    assert!(rejected.to_string().contains("Error: later"), "{rejected}");
    let wrong_type = call(&pool, "upper", json!(42)).await.unwrap_err();
    assert!(wrong_type.to_string().contains("TypeError"), "{wrong_type}");
    let unknown = call(&pool, "nope", json!(null)).await.unwrap_err();
    assert!(matches!(unknown, JsError::UnknownFunction(_)));

    assert_eq!(
        call(&pool, "fine", json!(null)).await.unwrap(),
        json!("fine")
    );
    assert_eq!(
        call(&pool, "upper", json!("ok")).await.unwrap(),
        json!("OK")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_have_no_file_network_or_process_access() {
    let pool = pool(1);
    let script = Script::new(
        "probe.js",
        "shoal.register('globals', () => [typeof require, typeof std, typeof os, typeof fetch, typeof process, typeof XMLHttpRequest]);",
    );
    pool.load(&script).await.unwrap();
    let kinds = call(&pool, "globals", json!(null)).await.unwrap();
    assert_eq!(kinds, json!(vec!["undefined"; 6]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_call_does_not_hold_its_worker() {
    // One worker: `outer` awaits a nested call of `inner` on the same
    // engine, which can only run if the waiting `outer` yielded.
    let pool = pool(1);
    let script = Script::new(
        "nest.js",
        "shoal.register('inner', (n) => n + 1);
         shoal.register('outer', async (n) => (await shoal.call('inner', n)) * 10);",
    );
    pool.load(&script).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), call(&pool, "outer", json!(4))).await;
    assert_eq!(result.unwrap().unwrap(), json!(50));
}
