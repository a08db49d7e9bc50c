//! `shoal bench js`: JavaScript through a node against bare QuickJS (Pi
//! per core), and the overhead of a JavaScript call against a native one.

use super::measure::{concurrent, percentile, sequential};
use super::nodes::node_config;
use crate::pi;
use clap::Args;
use serde_json::json;
use shoal_node::{Node, Script, builtins};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct JsArgs {
    /// Monte Carlo samples for the per-core Pi figures.
    #[arg(long, default_value_t = 20_000_000)]
    samples: u64,
    /// Seconds per call measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// A script with a no-op function, for call overheads.
const NOOP_JS: &str = "shoal.register('js.noop', () => null);";

pub async fn run(args: JsArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.seconds.max(0.1));
    let samples = args.samples.max(1);

    // The same loop twice: in a bare QuickJS runtime, and through a node.
    let bare = shoal_js::time_bare(pi::PI_JS, &format!("sample({samples}, 1)"))?;
    let bare_ns = bare.as_nanos() as f64 / samples as f64;

    let caller = Node::builder().config(node_config(2)).start().await?;
    let server = builtins::register(Node::builder().config(node_config(2)))
        .script(Script::new("pi.js", pi::PI_JS))
        .script(Script::new("noop.js", NOOP_JS))
        .join(caller.listen_addrs()[0].clone())
        .start()
        .await?;
    anyhow::ensure!(
        caller.wait_for_peers(1, Duration::from_secs(10)).await == 1,
        "the two benchmark nodes did not find each other"
    );
    let chunk = serde_json::json!({ "samples": samples, "seed": 1 });
    server
        .call(
            pi::JAVASCRIPT,
            serde_json::json!({ "samples": 1000, "seed": 1 }),
        )
        .await?;
    let started = Instant::now();
    server.call(pi::JAVASCRIPT, chunk).await?;
    let pool_ns = started.elapsed().as_nanos() as f64 / samples as f64;

    for _ in 0..2_000 {
        caller.call("js.noop", serde_json::Value::Null).await?;
    }
    let (_, js_local) = sequential(&server, "js.noop", duration).await?;
    let (_, native_local) = sequential(&server, "noop", duration).await?;
    let js_remote_64 = concurrent(&caller, "js.noop", 64, duration).await?;
    let native_remote_64 = concurrent(&caller, "noop", 64, duration).await?;
    caller.shutdown().await;
    server.shutdown().await;

    let figures = json!({
        "js_pi_ns_per_sample": (pool_ns * 10.0).round() / 10.0,
        "bare_quickjs_pi_ns_per_sample": (bare_ns * 10.0).round() / 10.0,
        "js_pi_vs_bare_ratio": ((pool_ns / bare_ns) * 100.0).round() / 100.0,
        "js_local_call_p50_us": percentile(&js_local, 0.50),
        "js_local_call_p99_us": percentile(&js_local, 0.99),
        "native_local_call_p50_us": percentile(&native_local, 0.50),
        "js_remote_calls_per_s_64_in_flight": js_remote_64.round(),
        "native_remote_calls_per_s_64_in_flight": native_remote_64.round(),
        "js_vs_native_remote_ratio": ((js_remote_64 / native_remote_64) * 100.0).round() / 100.0,
    });
    println!(
        "JavaScript (QuickJS-NG), {samples} Pi samples, {:.1} s per call figure",
        duration.as_secs_f64()
    );
    println!(
        "  Pi per core, through a node    {:>8.1} ns/sample",
        pool_ns
    );
    println!(
        "  Pi per core, bare QuickJS      {:>8.1} ns/sample  (ratio {})",
        bare_ns, figures["js_pi_vs_bare_ratio"]
    );
    println!(
        "  local call, JS no-op           p50 {} µs, p99 {} µs (native p50 {} µs)",
        figures["js_local_call_p50_us"],
        figures["js_local_call_p99_us"],
        figures["native_local_call_p50_us"]
    );
    println!(
        "  remote calls, 64 in flight     JS {:.0}/s, native {:.0}/s (ratio {})",
        js_remote_64, native_remote_64, figures["js_vs_native_remote_ratio"]
    );
    if args.json {
        println!("{figures}");
    }
    Ok(())
}
