//! `shoal submit`, `shoal jobs …`, `shoal db …`, `shoal status`: durable
//! jobs, documents and the cluster's state, through a node's HTTP API.

use crate::api::{ApiArgs, explain};
use crate::args::{json_input, parse_label, parse_resource, read_script};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};
use shoal_client::{Client, Collection, Job, JobSpec, JobState, ScriptSource, SortKey};
use std::path::PathBuf;

/// A filter from the command line: a JSON object, `@FILE` or `-`; none
/// (for `find` and `count`) matches every document.
fn filter_arg(text: Option<&str>) -> anyhow::Result<Map<String, Value>> {
    match text {
        None => Ok(Map::new()),
        Some(text) => match json_input(text, "the filter")? {
            Value::Object(map) => Ok(map),
            other => anyhow::bail!(
                "the filter must be a JSON object such as '{{\"age\": {{\"$gte\": 18}}}}', got {other}"
            ),
        },
    }
}

#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// A script defining the function, stored with the job: JavaScript, or
    /// Python when its name ends in .py (run by nodes with Python workers).
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
    /// Its arguments, as JSON; `@FILE` reads them from a file, `-` from
    /// standard input.
    #[arg(default_value = "null", allow_hyphen_values = true)]
    args: String,
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let script = match &args.script {
        Some(path) => {
            let script = read_script(path)?;
            Some(ScriptSource {
                name: script.name,
                source: script.source,
            })
        }
        None => None,
    };
    let spec = JobSpec {
        function: args.function.clone(),
        args: json_input(&args.args, "the arguments")?,
        script,
        labels: args.labels.iter().cloned().collect(),
        resources: args.resources.iter().cloned().collect(),
        priority: args.priority,
        max_attempts: args.max_attempts,
        lease_ms: args.lease_ms,
        idempotency_key: args.key.clone(),
    };
    let client = args.api.client()?;
    let id = client
        .submit(spec)
        .await
        .map_err(|e| explain(e).context("the job was not accepted"))?;
    println!("{id}");
    if args.watch {
        watch_job(&client, id).await?;
    }
    Ok(())
}

#[derive(Args)]
pub struct JobsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Jobs in id order.
    List {
        /// Only jobs in this state (queued, running, succeeded, dead_letter, cancelled).
        #[arg(long)]
        state: Option<JobState>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this id (the cursor printed by the previous page).
        #[arg(long)]
        after: Option<u64>,
    },
    /// One job as JSON.
    Get { id: u64 },
    /// Cancel a queued or running job.
    Cancel { id: u64 },
    /// Show a progress bar until the job ends, then its result.
    Watch { id: u64 },
}

pub async fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    match args.command {
        JobsCommand::List {
            state,
            limit,
            after,
        } => {
            let page = client
                .jobs(state, Some(limit), after)
                .await
                .map_err(explain)?;
            println!(
                "{:>8}  {:<12} {:>7}  {:>8}  function",
                "id", "state", "attempt", "progress"
            );
            for job in page.jobs {
                println!(
                    "{:>8}  {:<12} {:>7}  {:>7.0}%  {}",
                    job.id,
                    job.state.as_str(),
                    job.attempt,
                    job.progress * 100.0,
                    job.spec.function
                );
            }
            if let Some(next) = page.next {
                eprintln!("more: --after {next}");
            }
        }
        JobsCommand::Get { id } => {
            let job = client.job(id).await.map_err(explain)?;
            println!("{}", serde_json::to_string_pretty(&job)?);
        }
        JobsCommand::Cancel { id } => {
            client.cancel(id).await.map_err(explain)?;
            println!("job {id} cancelled");
        }
        JobsCommand::Watch { id } => watch_job(&client, id).await?,
    }
    Ok(())
}

/// Follows the job until it ends; prints its result or why it failed.
async fn watch_job(client: &Client, id: u64) -> anyhow::Result<()> {
    let bar = ProgressBar::new(1000);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {percent:>3}% {msg}",
    )?);
    let mut updates = std::pin::pin!(client.watch(id));
    let mut last: Option<Job> = None;
    while let Some(job) = updates.next().await {
        let job = job.map_err(explain)?;
        bar.set_position((job.progress * 1000.0) as u64);
        bar.set_message(format!(
            "{} (attempt {}) {}",
            job.state.as_str(),
            job.attempt,
            job.message
        ));
        last = Some(job);
    }
    bar.finish_and_clear();
    let job = match last {
        Some(job) if job.state.is_finished() => job,
        _ => client.job(id).await.map_err(explain)?,
    };
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
#[command(after_help = "Filters are JSON objects of dotted field paths: \
    '{\"address.city\": \"paris\", \"age\": {\"$gte\": 18}}'; operators: \
    $eq $ne $gt $gte $lt $lte $in $nin $exists. Any JSON argument may be @FILE or - (standard input).")]
pub struct DbArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The collection; every command but `list` needs one.
    collection: Option<String>,
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Subcommand)]
enum DbCommand {
    /// List the collections and how many documents each holds.
    List,
    /// Create the collection.
    Create,
    /// Drop the collection and every document in it.
    Drop,
    /// Insert a JSON object; prints its id and version.
    Insert {
        /// JSON, `@FILE` or `-` (standard input).
        #[arg(allow_hyphen_values = true)]
        document: String,
    },
    /// One document as JSON.
    Get { id: String },
    /// Documents that match the filter (all without one), one JSON line each.
    Find {
        /// JSON, `@FILE` or `-` (standard input).
        #[arg(allow_hyphen_values = true)]
        filter: Option<String>,
        /// Sort keys, most significant first, e.g. `age,-name` (`-`: descending);
        /// ties by id. Without it, documents come in id (insert) order.
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        sort: Vec<SortKey>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue after this cursor (printed by the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// How many documents match the filter (all without one).
    Count {
        /// JSON, `@FILE` or `-` (standard input).
        #[arg(allow_hyphen_values = true)]
        filter: Option<String>,
    },
    /// Replace a document (or merge-patch it with --patch).
    Update {
        id: String,
        /// JSON, `@FILE` or `-` (standard input).
        #[arg(allow_hyphen_values = true)]
        document: String,
        #[arg(long)]
        patch: bool,
        /// Only if the document is still at this version.
        #[arg(long)]
        expect: Option<u64>,
    },
    /// Merge-patch every document that matches the filter, in one write;
    /// prints how many changed. `{}` matches every document.
    UpdateWhere {
        /// JSON, `@FILE` or `-` (standard input).
        #[arg(allow_hyphen_values = true)]
        filter: String,
        /// A JSON merge patch: `null` removes a field.
        #[arg(allow_hyphen_values = true)]
        patch: String,
    },
    /// Delete one document.
    Delete {
        id: String,
        #[arg(long)]
        expect: Option<u64>,
    },
    /// Delete every document that matches the filter, in one write; prints
    /// how many were deleted. `{}` matches every document.
    DeleteWhere {
        /// JSON, `@FILE` or `-` (standard input).
        #[arg(allow_hyphen_values = true)]
        filter: String,
    },
}

pub async fn db(args: DbArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    match (args.collection, args.command) {
        (None, DbCommand::List) => list_collections(&client).await,
        (Some(name), DbCommand::List) => {
            anyhow::bail!("`shoal db list` lists every collection; leave out {name:?}")
        }
        (Some(name), command) => collection_command(&client, &name, command).await,
        (None, _) => anyhow::bail!(
            "name the collection first: shoal db COLLECTION COMMAND (`shoal db list` lists them)"
        ),
    }
}

async fn collection_command(client: &Client, name: &str, command: DbCommand) -> anyhow::Result<()> {
    let collection = client.collection(name);
    match command {
        DbCommand::List => list_collections(client).await?,
        DbCommand::Create => {
            collection.create().await.map_err(explain)?;
            println!("created {name}");
        }
        DbCommand::Drop => {
            collection.drop_collection().await.map_err(explain)?;
            println!("dropped {name}");
        }
        DbCommand::Insert { document } => {
            let document = json_input(&document, "the document")?;
            let written = collection.insert(&document).await.map_err(explain)?;
            println!("{}", serde_json::to_string(&written)?);
        }
        DbCommand::Get { id } => match collection.get(&id).await.map_err(explain)? {
            Some(document) => println!("{}", serde_json::to_string(&document)?),
            None => anyhow::bail!("no document {id} in {name}"),
        },
        DbCommand::Find {
            filter,
            sort,
            limit,
            after,
        } => {
            let filter = filter_arg(filter.as_deref())?;
            find(&collection, filter, sort, limit, after).await?;
        }
        DbCommand::Count { filter } => {
            let filter = filter_arg(filter.as_deref())?;
            println!("{}", collection.count(filter).await.map_err(explain)?);
        }
        DbCommand::Update {
            id,
            document,
            patch,
            expect,
        } => {
            let body = json_input(&document, "the document")?;
            let written = if patch {
                collection.patch(&id, body, expect).await
            } else {
                collection.replace(&id, body, expect).await
            };
            println!("{}", serde_json::to_string(&written.map_err(explain)?)?);
        }
        DbCommand::UpdateWhere { filter, patch } => {
            let filter = filter_arg(Some(&filter))?;
            let patch = json_input(&patch, "the patch")?;
            let updated = collection
                .update_where(filter, patch)
                .await
                .map_err(explain)?;
            println!("updated {updated}");
        }
        DbCommand::Delete { id, expect } => {
            collection.delete(&id, expect).await.map_err(explain)?;
            println!("deleted {id}");
        }
        DbCommand::DeleteWhere { filter } => {
            let filter = filter_arg(Some(&filter))?;
            let deleted = collection.delete_where(filter).await.map_err(explain)?;
            println!("deleted {deleted}");
        }
    }
    Ok(())
}

async fn list_collections(client: &Client) -> anyhow::Result<()> {
    let collections = client.collections().await.map_err(explain)?;
    println!("{:<32} {:>10}", "collection", "documents");
    for info in collections {
        println!("{:<32} {:>10}", info.name, info.documents);
    }
    Ok(())
}

/// Prints one page, a JSON line per document, and on standard error how
/// to ask for the next.
async fn find(
    collection: &Collection,
    filter: Map<String, Value>,
    sort: Vec<SortKey>,
    limit: usize,
    after: Option<String>,
) -> anyhow::Result<()> {
    let page = collection
        .find(filter, sort, Some(limit), after)
        .await
        .map_err(explain)?;
    for document in page.documents {
        println!("{}", serde_json::to_string(&document)?);
    }
    if let Some(next) = page.next {
        eprintln!("more: --after {next}");
    }
    Ok(())
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let cluster = client.cluster().await.map_err(explain)?;
    let node = client.status().await.map_err(explain)?;
    if args.json {
        let status = json!({
            "members": cluster.members,
            "raft": cluster.raft,
            "jobs": node.jobs,
            "node": node,
        });
        println!("{status}");
        return Ok(());
    }
    println!(
        "{:<54} {:<12} {:>5} {:>5} {:>7} {:>7} {:>5} {:>7}  api",
        "node", "liveness", "proto", "slots", "running", "queued", "cpu", "mem"
    );
    for member in &cluster.members {
        let marker = if member.is_self { "*" } else { "" };
        println!(
            "{:<54} {:<12} {:>5} {:>5} {:>7} {:>7} {:>5} {:>7}  {}",
            format!("{}{marker}", member.peer_id),
            member.liveness,
            member.protocol_version,
            member.slots,
            member.running,
            member.queued,
            format!("{:.0}%", member.cpu_percent),
            format!("{} MB", member.memory_bytes.div_ceil(1_000_000)),
            member.api.as_deref().unwrap_or("-")
        );
    }
    let raft = &cluster.raft;
    println!(
        "raft: leader {} term {}",
        raft.leader.as_deref().unwrap_or("none"),
        raft.term
    );
    println!("      voters {}", raft.voters.join(", "));
    if !raft.learners.is_empty() {
        println!("      learners {}", raft.learners.join(", "));
    }
    println!("jobs: {}", serde_json::to_string(&node.jobs)?);
    Ok(())
}
