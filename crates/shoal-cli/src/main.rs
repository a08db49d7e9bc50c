//! The `shoal` binary: run a node, try the demo, measure with benchmarks.
//!
//! ```text
//!   shoal node   — join or start a cluster and serve calls until stopped
//!   shoal config print — the settings `shoal node` would run with, as TOML
//!   shoal call   — call one function on a cluster (optionally shipping a script)
//!   shoal submit / jobs / db / status — durable jobs, documents, cluster state
//!   shoal drain  — hand a node's work to the others, then stop it
//!   shoal pub / sub / queue — topics and the distributed queue
//!   shoal chat   — a terminal chat room on a topic
//!   shoal top    — a live terminal dashboard of a cluster
//!   shoal demo   — a local cluster in this process: Monte Carlo Pi or fib
//!   shoal bench  — calls (throughput, latency, idle memory) and scale
//!   shoal chaos  — faults under load, and a check of what survived
//! ```
//!
//! Each command lives in its own module (`node_cmd`, `call_cmd`, `data_cmd`,
//! `drain_cmd`, `topics_cmd`, `queue_cmd`, `chat`, `top`, `demo`, `bench`,
//! `chaos`); `main` parses the command line and hands it to one of them.
//! What several commands share sits below them, and never imports a
//! command: `api` (reaching a node's HTTP API), `args` (labels, resources,
//! durations, script files), `config_file` (`--config`: a TOML file's values
//! as the defaults of the flags), `terminal` (what the full-screen `top` and
//! `chat` share) and `pi` (Monte Carlo Pi over a cluster, for `demo` and
//! `bench`).

mod api;
mod args;
mod bench;
mod call_cmd;
mod chaos;
mod chat;
mod config_file;
mod data_cmd;
mod demo;
mod drain_cmd;
mod node_cmd;
mod pi;
mod python_workers;
mod queue_cmd;
mod terminal;
mod top;
mod topics_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use shoal_node::telemetry::logs::LogRing;
use std::io::IsTerminal;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "shoal", version, about = "A peer-to-peer compute fabric")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node: join peers, serve calls, publish heartbeats.
    Node(node_cmd::NodeArgs),
    /// Config files for `shoal node` (`--config FILE` or SHOAL_CONFIG).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Call a function on a cluster and print its result as JSON.
    Call(call_cmd::CallArgs),
    /// Submit a durable job; prints its id.
    Submit(data_cmd::SubmitArgs),
    /// List, inspect, cancel and watch jobs.
    Jobs(data_cmd::JobsArgs),
    /// The document store: shoal db list; shoal db <collection> create|insert|get|find|count|update|update-where|delete|delete-where|drop.
    Db(data_cmd::DbArgs),
    /// Members, Raft leader and voters, and jobs by state.
    Status(data_cmd::StatusArgs),
    /// Drain a node (it hands its work to the others) and wait until it stops.
    Drain(drain_cmd::DrainArgs),
    /// Publish a JSON message on a topic; prints its sequence number and time.
    Pub(topics_cmd::PubArgs),
    /// Print a topic's messages as JSON lines until Ctrl-C.
    Sub(topics_cmd::SubArgs),
    /// The distributed queue: shoal queue NAME push|pop|size|close.
    Queue(queue_cmd::QueueArgs),
    /// A chat room on a topic, in the terminal.
    Chat(chat::ChatArgs),
    /// Live terminal dashboard of a cluster.
    Top(top::TopArgs),
    /// Start a local cluster in this process and run a demo on it.
    Demo(demo::DemoArgs),
    /// Measure Shoal on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Real nodes under a nemesis (kills, pauses, partitions) and a check
    /// that nothing acknowledged was lost or duplicated.
    Chaos(chaos::ChaosArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings `shoal node` would run with, given the same flags,
    /// environment and --config file, as a config file: every key, defaults
    /// filled in, secrets commented out.
    Print(node_cmd::NodeArgs),
}

/// Logs to stderr at `default_level` (or `RUST_LOG`), and keeps warnings
/// and errors in `ring` for `GET /v1/logs`, whatever `RUST_LOG` says.
fn init_logging(format: &str, default_level: &str, ring: &Arc<LogRing>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only for a person at a terminal, not in files or journald.
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let stderr = if format == "json" {
        stderr.json().with_filter(filter).boxed()
    } else {
        stderr.with_filter(filter).boxed()
    };
    let kept = ring
        .layer()
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(stderr)
        .with(kept)
        .init();
}

fn main() -> anyhow::Result<()> {
    // Not `Cli::parse()`: a config file's values become the flags' defaults.
    let command_line = config_file::CommandLine::parse(Cli::command())?;
    let cli = Cli::from_arg_matches(command_line.matches()).unwrap_or_else(|error| error.exit());
    // Only `config print` reads the parsed command line again; a node runs
    // for weeks without clap's tree of every command (about 300 KB).
    let settings = match cli.command {
        Command::Config(ConfigCommand::Print(_)) => command_line.settings_toml(),
        _ => String::new(),
    };
    drop(command_line);
    let default_level = match cli.command {
        // openraft's INFO lines (every election step, every membership
        // change) would drown the node's own.
        Command::Node(_) => "info,openraft=warn,libp2p=warn",
        _ => "error",
    };
    let logs = LogRing::warnings();
    init_logging(&cli.log_format, default_level, &logs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => node_cmd::run(args, logs).await,
            Command::Config(ConfigCommand::Print(_)) => {
                print!("{settings}");
                Ok(())
            }
            Command::Call(args) => call_cmd::run(args).await,
            Command::Submit(args) => data_cmd::submit(args).await,
            Command::Jobs(args) => data_cmd::jobs(args).await,
            Command::Db(args) => data_cmd::db(args).await,
            Command::Status(args) => data_cmd::status(args).await,
            Command::Drain(args) => drain_cmd::run(args).await,
            Command::Pub(args) => topics_cmd::publish(args).await,
            Command::Sub(args) => topics_cmd::subscribe(args).await,
            Command::Queue(args) => queue_cmd::run(args).await,
            Command::Chat(args) => chat::run(args).await,
            Command::Top(args) => top::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(command) => bench::run(command).await,
            Command::Chaos(args) => chaos::run(args).await,
        }
    })
}
