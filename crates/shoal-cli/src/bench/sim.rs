//! `shoal bench sim`: membership past one machine, in simulated time. Each
//! virtual node runs the nodes' own membership code (`cluster::swim`) over
//! a simulated network that delays and loses packets; no sockets, no
//! clock, the same figures for the same seed.

use clap::Args;
use serde_json::{Value, json};
use shoal_node::cluster::sim::{Sim, SimSettings};
use std::time::{Duration, Instant};

/// How often the simulation checks whether every view agrees.
const CHECK: Duration = Duration::from_millis(50);
/// One more node starts this often while the cluster forms.
const STARTS_EVERY: Duration = Duration::from_millis(10);
/// Simulated time between forming and counting steady-state traffic.
const SETTLE: Duration = Duration::from_secs(30);
/// The longest a join or a death may take to be known everywhere.
const PATIENCE: Duration = Duration::from_secs(300);

#[derive(Args)]
pub struct SimArgs {
    /// Cluster sizes to simulate, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    nodes: Vec<usize>,
    /// The probe period in milliseconds (a node's `--heartbeat-ms`).
    #[arg(long, default_value_t = 1000)]
    period_ms: u64,
    /// How long a suspect has to refute, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    suspicion_ms: u64,
    /// Fraction of packets the network loses.
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    /// Mean one-way delay of a packet, in milliseconds.
    #[arg(long, default_value_t = 1.0)]
    delay_ms: f64,
    /// Simulated seconds of steady state over which traffic is counted.
    #[arg(long, default_value_t = 20)]
    steady_seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &SimArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..1.0).contains(&args.loss),
        "--loss is a fraction below 1"
    );
    let mut runs = Vec::new();
    for &nodes in &args.nodes {
        anyhow::ensure!(nodes >= 3, "cluster sizes must be at least 3");
        eprintln!("simulating {nodes} nodes…");
        let run = simulate(nodes, args)?;
        println!(
            "{nodes:>6} nodes: formed {:.1} s after the last start; {:.1} messages ({:.0} bytes) per node per s; \
             a join known everywhere in {:.1} s, a death in {:.1} s (simulated in {:.1} s)",
            run["converge_s"].as_f64().unwrap_or(0.0),
            run["msgs_per_node_per_s"].as_f64().unwrap_or(0.0),
            run["bytes_per_node_per_s"].as_f64().unwrap_or(0.0),
            run["join_known_s"].as_f64().unwrap_or(0.0),
            run["death_known_s"].as_f64().unwrap_or(0.0),
            run["wall_s"].as_f64().unwrap_or(0.0),
        );
        runs.push(run);
    }
    if args.json {
        println!("{}", json!({ "runs": runs }));
    }
    Ok(())
}

fn simulate(nodes: usize, args: &SimArgs) -> anyhow::Result<Value> {
    let wall = Instant::now();
    let settings = SimSettings {
        nodes,
        period: Duration::from_millis(args.period_ms),
        suspicion: Duration::from_millis(args.suspicion_ms),
        loss: args.loss,
        delay: Duration::from_secs_f64(args.delay_ms / 1000.0),
        seed: args.seed,
    };
    let mut sim = Sim::new(settings);
    // Nodes start one after another, as `shoal bench cluster` starts them,
    // each knowing only the first.
    for node in 1..nodes as u32 {
        sim.join_after(node, 0, STARTS_EVERY * node);
    }
    sim.run_for(STARTS_EVERY * nodes as u32);
    let converge = known_everywhere(&mut sim, "the cluster to form")?;

    // Traffic is counted once the formation's news has died down.
    sim.run_for(SETTLE);
    let (packets, bytes, start) = (sim.packets, sim.bytes, sim.now());
    sim.run_for(Duration::from_secs(args.steady_seconds));
    let seconds = (sim.now() - start).as_secs_f64() * nodes as f64;
    let msgs_per_node_per_s = (sim.packets - packets) as f64 / seconds;
    let bytes_per_node_per_s = (sim.bytes - bytes) as f64 / seconds;

    let newcomer = sim.add_node();
    sim.join(newcomer, (nodes / 2) as u32);
    let join = known_everywhere(&mut sim, "a join")?;

    sim.kill((nodes / 3) as u32);
    let death = known_everywhere(&mut sim, "a death")?;

    Ok(json!({
        "nodes": nodes,
        "converge_s": converge.as_secs_f64(),
        "msgs_per_node_per_s": msgs_per_node_per_s,
        "bytes_per_node_per_s": bytes_per_node_per_s,
        "join_known_s": join.as_secs_f64(),
        "death_known_s": death.as_secs_f64(),
        "loss": args.loss,
        "period_ms": args.period_ms,
        "suspicion_ms": args.suspicion_ms,
        "wall_s": wall.elapsed().as_secs_f64(),
    }))
}

/// Simulated time until every live node's view is every other live node.
fn known_everywhere(sim: &mut Sim, what: &str) -> anyhow::Result<Duration> {
    sim.run_until(PATIENCE, CHECK, Sim::converged)
        .ok_or_else(|| anyhow::anyhow!("{what} was not known everywhere within {PATIENCE:?}"))
}
