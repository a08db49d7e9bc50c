//! `shoal bench sim`: membership and placement past one machine, in
//! simulated time. Each virtual node runs the nodes' own code — membership
//! (`cluster::swim`), or placement, queueing, load reports and stealing
//! (`calls::sim`) — over a simulated network that delays and loses
//! packets; no sockets, no clock, the same figures for the same seed.

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};
use shoal_node::calls::sim::{FanoutSettings, fan_out};
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

/// What a simulation covers.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Forming, a join and a death, and the traffic of a steady cluster.
    Membership,
    /// A fan-out of sleeping calls from one node over all of them.
    Placement,
}

#[derive(Args)]
pub struct SimArgs {
    /// Cluster sizes to simulate, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    nodes: Vec<usize>,
    /// What to simulate, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "membership,placement")]
    parts: Vec<Part>,
    /// The membership period in milliseconds (a node's `--heartbeat-ms`; two probes each).
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
    /// Worker slots per node, for placement.
    #[arg(long, default_value_t = 2)]
    slots: u32,
    /// Calls in the fan-out per slot in the cluster (1,000 calls over 100
    /// nodes × 2 slots by default).
    #[arg(long, default_value_t = 5)]
    calls_per_slot: usize,
    /// How many nodes make the fan-out's calls (1: all through one node,
    /// as `shoal bench cluster` does).
    #[arg(long, default_value_t = 1)]
    owners: usize,
    /// How long each call of the fan-out sleeps, in milliseconds.
    #[arg(long, default_value_t = 50)]
    task_ms: u64,
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
        let mut run = Map::new();
        run.insert("nodes".into(), json!(nodes));
        if args.parts.contains(&Part::Membership) {
            eprintln!("simulating membership of {nodes} nodes…");
            let figures = membership(nodes, args)?;
            println!(
                "{nodes:>6} nodes: formed {:.1} s after the last start; {:.1} messages ({:.0} bytes) per node per s; \
                 a join known everywhere in {:.1} s, a death in {:.1} s (simulated in {:.1} s)",
                figures["converge_s"].as_f64().unwrap_or(0.0),
                figures["msgs_per_node_per_s"].as_f64().unwrap_or(0.0),
                figures["bytes_per_node_per_s"].as_f64().unwrap_or(0.0),
                figures["join_known_s"].as_f64().unwrap_or(0.0),
                figures["death_known_s"].as_f64().unwrap_or(0.0),
                figures["wall_s"].as_f64().unwrap_or(0.0),
            );
            run.extend(figures.as_object().cloned().unwrap_or_default());
        }
        if args.parts.contains(&Part::Placement) {
            eprintln!("simulating a fan-out over {nodes} nodes…");
            run.extend(placement(nodes, args));
        }
        runs.push(Value::Object(run));
    }
    if args.json {
        println!("{}", json!({ "runs": runs }));
    }
    Ok(())
}

fn membership(nodes: usize, args: &SimArgs) -> anyhow::Result<Value> {
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

/// A fan-out over `nodes` nodes whose function no node has run yet.
fn placement(nodes: usize, args: &SimArgs) -> Map<String, Value> {
    let settings = FanoutSettings {
        nodes,
        slots: args.slots,
        calls: args.calls_per_slot * nodes * args.slots as usize,
        owners: args.owners.clamp(1, nodes),
        task: Duration::from_millis(args.task_ms),
        period: Duration::from_millis(args.period_ms),
        loss: args.loss,
        delay: Duration::from_secs_f64(args.delay_ms / 1000.0),
        seed: args.seed,
    };
    let wall = Instant::now();
    let outcome = fan_out(settings.clone());
    let least = outcome.ran.iter().copied().min().unwrap_or(0);
    let most = outcome.ran.iter().copied().max().unwrap_or(0);
    println!(
        "{nodes:>6} nodes: a fan-out of {} × {} ms calls from {} node(s) took {:.3} s, efficiency {:.2}; \
         {} calls stolen; each node ran {least}–{most}; {:.1} messages per node per s (simulated in {:.1} s)",
        settings.calls,
        args.task_ms,
        settings.owners,
        outcome.took.as_secs_f64(),
        outcome.efficiency,
        outcome.stolen,
        outcome.messages_per_node_per_s,
        wall.elapsed().as_secs_f64(),
    );
    let figures = json!({
        "fanout_efficiency": outcome.efficiency,
        "fanout_s": outcome.took.as_secs_f64(),
        "fanout_calls": settings.calls,
        "fanout_owners": settings.owners,
        "fanout_task_ms": args.task_ms,
        "fanout_stolen": outcome.stolen,
        "fanout_most_calls_per_node": most,
        "fanout_msgs_per_node_per_s": outcome.messages_per_node_per_s,
    });
    figures.as_object().cloned().unwrap_or_default()
}
