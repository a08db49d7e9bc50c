//! `shoal bench …`: figures, never pass/fail. Each command prints a table
//! and, with `--json`, one JSON object of its figures as the last line.
//!
//! ```text
//!   calls    (calls.rs)    two in-process nodes: no-op calls, remote and local
//!   scale    (scale.rs)    node processes of one slot each: Monte Carlo Pi
//!   js       (js.rs)       JavaScript against native calls and bare QuickJS
//!   jobs, db (durable.rs)  durable jobs and documents on three fsync'ing voters
//!   http     (http.rs)     calls through one node's HTTP API
//!   pubsub   (pubsub.rs)   topics: a publisher and a subscriber on each of 3 nodes
//!   cluster  (cluster.rs)  N node processes: forming, idle cost, deaths, fan-out, jobs
//!   sim      (sim.rs)      membership of 1,000s of nodes in simulated time
//! ```
//!
//! Every command builds on `measure` (how figures are taken) and `nodes`
//! (what they are taken on); none reaches back into this file.

mod calls;
mod cluster;
mod durable;
mod http;
mod js;
mod measure;
mod nodes;
mod pubsub;
mod python;
mod scale;
mod sim;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// No-op calls between two nodes: throughput, round trips, idle memory.
    Calls(calls::CallsArgs),
    /// CPU-bound Monte Carlo Pi on 1, 2, 4… node processes: speedup and efficiency.
    Scale(scale::ScaleArgs),
    /// JavaScript: Pi per core against bare QuickJS, call overhead, remote calls.
    Js(js::JsArgs),
    /// Durable jobs on 3 voters with fsync: submit → lease → complete.
    Jobs(durable::JobsArgs),
    /// Documents: concurrent inserts, reads and versioned updates on 3 nodes.
    Db(durable::DurableArgs),
    /// Calls through the HTTP API with many concurrent clients.
    Http(http::HttpArgs),
    /// The Python client and a Python worker against a node: calls/s, round trips.
    Python(python::PythonArgs),
    /// Topics on 3 nodes: messages/s, delivery latency, fraction delivered.
    Pubsub(pubsub::PubsubArgs),
    /// N node processes: forming, idle CPU and memory per node, detecting
    /// deaths, fan-out efficiency, jobs/s.
    Cluster(cluster::ClusterArgs),
    /// Membership of thousands of virtual nodes in simulated time: messages
    /// per node, how fast joins and deaths are known everywhere.
    Sim(sim::SimArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Calls(args) => calls::run(args).await,
        BenchCommand::Scale(args) => scale::run(args).await,
        BenchCommand::Js(args) => js::run(args).await,
        BenchCommand::Jobs(args) => durable::jobs(args).await,
        BenchCommand::Db(args) => durable::db(args).await,
        BenchCommand::Http(args) => http::run(args).await,
        BenchCommand::Pubsub(args) => pubsub::run(args).await,
        BenchCommand::Python(args) => python::run(args).await,
        BenchCommand::Cluster(args) => cluster::run(args).await,
        BenchCommand::Sim(args) => sim::run(&args),
    }
}
