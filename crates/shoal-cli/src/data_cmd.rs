//! `shoal submit`, `shoal jobs …`, `shoal db …`, `shoal status`: durable
//! jobs, documents and the cluster's state, from the command line.

use crate::client::connect;
use crate::node_cmd::{ClusterArgs, read_script};
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};
use shoal_node::jobs::{Job, JobSpec, JobState};
use shoal_node::{Node, Read};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Parses `key=value`.
fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {text:?}"))?;
    Ok((key.to_string(), value.to_string()))
}

/// Parses `key=amount`.
fn key_amount(text: &str) -> Result<(String, u64), String> {
    let (key, value) = key_value(text)?;
    let amount = value
        .parse()
        .map_err(|_| format!("expected key=<whole number>, got {text:?}"))?;
    Ok((key, amount))
}

pub fn parse_label(text: &str) -> Result<(String, String), String> {
    key_value(text)
}

pub fn parse_resource(text: &str) -> Result<(String, u64), String> {
    key_amount(text)
}

fn json_arg(text: &str, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON: {text}"))
}

fn object_arg(text: Option<&str>) -> anyhow::Result<Map<String, Value>> {
    match text {
        None => Ok(Map::new()),
        Some(text) => match json_arg(text, "the filter")? {
            Value::Object(map) => Ok(map),
            other => anyhow::bail!("the filter must be a JSON object, got {other}"),
        },
    }
}

#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// A JavaScript file defining the function; stored with the job.
    #[arg(long)]
    script: Option<PathBuf>,
    /// A label the running node must have (key=value); repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// A resource the running node must offer (key=amount); repeatable.
    #[arg(long = "resource", value_parser = parse_resource)]
    resources: Vec<(String, u64)>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0)]
    priority: i32,
    /// Attempts before the job is dead-lettered.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Lease of one attempt without renewal, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    lease_ms: u64,
    /// Submitting again with the same key returns the first job.
    #[arg(long)]
    key: Option<String>,
    /// Wait for the job to finish, with a progress bar.
    #[arg(long)]
    watch: bool,
    function: String,
    #[arg(default_value = "null")]
    args: String,
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let script = match &args.script {
        Some(path) => {
            let script = read_script(path)?;
            Some((script.name, script.source))
        }
        None => None,
    };
    let spec = JobSpec {
        function: args.function.clone(),
        args: json_arg(&args.args, "the arguments")?,
        script,
        labels: args.labels.iter().cloned().collect(),
        resources: args.resources.iter().cloned().collect(),
        priority: args.priority,
        max_attempts: args.max_attempts,
        lease_ms: args.lease_ms,
        idempotency_key: args.key.clone(),
    };
    let node = connect(&args.cluster).await?;
    let result = node.submit_job(spec).await;
    let outcome = match result {
        Ok(id) => {
            println!("{id}");
            if args.watch {
                watch_job(&node, id).await
            } else {
                Ok(())
            }
        }
        Err(e) => Err(anyhow::anyhow!("the job was not accepted: {e}")),
    };
    node.shutdown().await;
    outcome
}

#[derive(Args)]
pub struct JobsArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Jobs in id order.
    List {
        /// Only jobs in this state (queued, running, succeeded, dead_letter, cancelled).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One job as JSON.
    Get { id: u64 },
    /// Cancel a queued or running job.
    Cancel { id: u64 },
    /// Show a progress bar until the job ends, then its result.
    Watch { id: u64 },
}

fn parse_state(text: &str) -> anyhow::Result<JobState> {
    serde_json::from_value(json!(text)).map_err(|_| {
        anyhow::anyhow!(
            "unknown state {text:?}: use queued, running, succeeded, dead_letter or cancelled"
        )
    })
}

pub async fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    let node = connect(&args.cluster).await?;
    let outcome = match args.command {
        JobsCommand::List { state, limit } => list_jobs(&node, state.as_deref(), limit).await,
        JobsCommand::Get { id } => match node.job(id, Read::Linearizable).await? {
            Some(job) => {
                println!("{}", serde_json::to_string_pretty(&job)?);
                Ok(())
            }
            None => Err(anyhow::anyhow!(
                "no job {id} (never submitted, or collected after its retention period)"
            )),
        },
        JobsCommand::Cancel { id } => {
            node.cancel_job(id)
                .await
                .map_err(anyhow::Error::from)
                .map(|()| {
                    println!("job {id} cancelled");
                })
        }
        JobsCommand::Watch { id } => watch_job(&node, id).await,
    };
    node.shutdown().await;
    outcome
}

async fn list_jobs(node: &Node, state: Option<&str>, limit: usize) -> anyhow::Result<()> {
    let state = state.map(parse_state).transpose()?;
    let jobs = node.jobs(state, limit, None, Read::Linearizable).await?;
    println!(
        "{:>8}  {:<12} {:>7}  {:>8}  function",
        "id", "state", "attempt", "progress"
    );
    for job in jobs {
        println!(
            "{:>8}  {:<12} {:>7}  {:>7.0}%  {}",
            job.id,
            job.state.as_str(),
            job.attempt,
            job.progress * 100.0,
            job.spec.function
        );
    }
    Ok(())
}

/// Polls the job until it ends; prints its result or why it failed.
async fn watch_job(node: &Node, id: u64) -> anyhow::Result<()> {
    let bar = ProgressBar::new(1000);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {percent:>3}% {msg}",
    )?);
    let job: Job = loop {
        let job = node
            .job(id, Read::Linearizable)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no job {id}"))?;
        bar.set_position((job.progress * 1000.0) as u64);
        bar.set_message(format!(
            "{} (attempt {}) {}",
            job.state.as_str(),
            job.attempt,
            job.message
        ));
        if job.state.is_finished() {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    match job.state {
        JobState::Succeeded => {
            println!("{}", job.result.unwrap_or(Value::Null));
            Ok(())
        }
        state => Err(anyhow::anyhow!(
            "job {id} ended {}: {}",
            state.as_str(),
            job.error.unwrap_or_else(|| "no error recorded".to_string())
        )),
    }
}

#[derive(Args)]
pub struct DbArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Read this node's replica as it is instead of a linearizable read.
    #[arg(long, global = true)]
    stale: bool,
    collection: String,
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Subcommand)]
enum DbCommand {
    Create,
    Drop,
    /// Insert a JSON object; prints its id and version.
    Insert {
        document: String,
    },
    Get {
        id: String,
    },
    /// Documents whose top-level fields equal the filter's.
    Find {
        filter: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this id (the cursor printed by the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    Count {
        filter: Option<String>,
    },
    /// Replace a document (or merge-patch it with --patch).
    Update {
        id: String,
        document: String,
        #[arg(long)]
        patch: bool,
        /// Only if the document is still at this version.
        #[arg(long)]
        expect: Option<u64>,
    },
    Delete {
        id: String,
        #[arg(long)]
        expect: Option<u64>,
    },
}

pub async fn db(args: DbArgs) -> anyhow::Result<()> {
    let node = connect(&args.cluster).await?;
    let read = if args.stale {
        Read::Stale
    } else {
        Read::Linearizable
    };
    let outcome = db_command(&node, &args.collection, args.command, read).await;
    node.shutdown().await;
    outcome
}

async fn db_command(
    node: &Node,
    collection: &str,
    command: DbCommand,
    read: Read,
) -> anyhow::Result<()> {
    match command {
        DbCommand::Create => {
            node.db_create(collection).await?;
            println!("created {collection}");
        }
        DbCommand::Drop => {
            node.db_drop(collection).await?;
            println!("dropped {collection}");
        }
        DbCommand::Insert { document } => {
            let (id, version) = node
                .db_insert(collection, json_arg(&document, "the document")?)
                .await?;
            println!("{}", json!({ "id": id, "version": version }));
        }
        DbCommand::Get { id } => match node.db_get(collection, &id, read).await? {
            Some(document) => println!("{}", serde_json::to_string(&document)?),
            None => anyhow::bail!("no document {id} in {collection}"),
        },
        DbCommand::Find {
            filter,
            limit,
            after,
        } => {
            let filter = object_arg(filter.as_deref())?;
            let (documents, next) = node.db_find(collection, filter, limit, after, read).await?;
            for document in documents {
                println!("{}", serde_json::to_string(&document)?);
            }
            if let Some(next) = next {
                eprintln!("more: --after {next}");
            }
        }
        DbCommand::Count { filter } => {
            let filter = object_arg(filter.as_deref())?;
            println!("{}", node.db_count(collection, filter, read).await?);
        }
        DbCommand::Update {
            id,
            document,
            patch,
            expect,
        } => {
            let body = json_arg(&document, "the document")?;
            let version = if patch {
                node.db_patch(collection, &id, body, expect).await?
            } else {
                node.db_replace(collection, &id, body, expect).await?
            };
            println!("{}", json!({ "id": id, "version": version }));
        }
        DbCommand::Delete { id, expect } => {
            node.db_delete(collection, &id, expect).await?;
            println!("deleted {id}");
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let node = connect(&args.cluster).await?;
    // Heartbeats of the other members arrive within a second or two.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let counts = node
        .job_counts(Read::Linearizable)
        .await
        .unwrap_or_default();
    let raft = node.raft_status_of_cluster().await;
    let peers = node.peers();
    node.shutdown().await;
    if args.json {
        let members: Vec<Value> = peers
            .iter()
            .map(|p| {
                json!({ "peer_id": p.peer_id.to_string(), "liveness": format!("{:?}", p.liveness),
                        "slots": p.load.slots, "queued": p.load.queued, "running": p.load.running })
            })
            .collect();
        println!(
            "{}",
            json!({ "members": members, "raft": raft, "jobs": counts })
        );
        return Ok(());
    }
    println!(
        "{:<54} {:<10} {:>5} {:>7} {:>7}",
        "node", "liveness", "slots", "running", "queued"
    );
    for peer in &peers {
        println!(
            "{:<54} {:<10} {:>5} {:>7} {:>7}",
            peer.peer_id.to_string(),
            format!("{:?}", peer.liveness).to_lowercase(),
            peer.load.slots,
            peer.load.running,
            peer.load.queued
        );
    }
    match raft {
        Some(raft) => {
            println!(
                "raft: leader {} term {}",
                raft.leader.as_deref().unwrap_or("none"),
                raft.term
            );
            println!("      voters {}", raft.voters.join(", "));
            if !raft.learners.is_empty() {
                println!("      learners {}", raft.learners.join(", "));
            }
        }
        None => println!("raft: no member answered"),
    }
    let counts: BTreeMap<String, usize> = counts;
    println!("jobs: {}", serde_json::to_string(&counts)?);
    Ok(())
}
