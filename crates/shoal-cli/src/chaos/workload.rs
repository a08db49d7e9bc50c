//! The clients of a chaos run: calls, durable jobs (about one in twenty a
//! slow JavaScript job) and compare-and-set document writes, each recorded with
//! when it began and ended.

use super::history::{CallOutcome, DocRead, DocWrite, History, Micros, Submission};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shoal_client::{CallBody, Client, ClientError, Collection, ErrorCode, JobSpec, ScriptSource};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The collection the registers live in.
pub const COLLECTION: &str = "chaos";
/// A call's own deadline.
const CALL_TIMEOUT_MS: u64 = 15_000;
/// Past this, a call that has not come back counts as unresolved: its
/// deadline, plus the client's failover window, plus slack.
const UNRESOLVED_AFTER: Duration = Duration::from_secs(120);

/// One job in this many, on average, is slow (a job whose operation number
/// is a multiple of it): it runs long enough that a node is sometimes
/// stopped under it, which a rolling restart must not turn into a wait
/// for its lease.
const SLOW_JOB_EVERY: u64 = 20;
/// A slow job: JavaScript shipped with the job that waits on a nested
/// `sleep` call, then answers as `echo` does.
const SLOW_ECHO_JS: &str = r#"
shoal.register('slow.echo', async (args) => {
    await shoal.call('sleep', args.ms);
    return { key: args.key };
});
"#;
const SLOW_JOB_MS: u64 = 1_000;

/// What every client shares.
pub struct Shared {
    pub started: Instant,
    pub until: Instant,
    /// Set when the nemesis has injected its last fault (`--max-faults`):
    /// the run ends then, a moment after the heal, instead of at `until`.
    pub faults_done: std::sync::atomic::AtomicBool,
    /// The next value a write stores: unique across the run.
    pub next_value: AtomicU64,
    /// The run's tag, so its job keys are its own.
    pub run: String,
    pub docs: Vec<String>,
}

impl Shared {
    pub fn now(&self) -> Micros {
        self.started.elapsed().as_micros() as Micros
    }
}

/// One client's loop until the run ends; returns what it did.
pub async fn client(id: usize, client: Client, shared: Arc<Shared>, seed: u64) -> History {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let docs = client.collection(COLLECTION);
    let mut history = History::default();
    let mut seq = 0u64;
    while Instant::now() < shared.until
        && !shared
            .faults_done
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        seq += 1;
        match rng.random_range(0..10) {
            0..4 => call(&client, &mut rng, &mut history).await,
            4..6 => {
                let key = format!("{}-{id}-{seq}", shared.run);
                let slow = seq.is_multiple_of(SLOW_JOB_EVERY);
                submit(&client, key, slow, &shared, &mut history).await;
            }
            6..8 => {
                let doc = rng.random_range(0..shared.docs.len());
                write(&docs, doc, &shared, &mut history).await;
            }
            _ => {
                let doc = rng.random_range(0..shared.docs.len());
                read(&docs, doc, &shared, &mut history).await;
            }
        }
    }
    history
}

async fn call(client: &Client, rng: &mut StdRng, history: &mut History) {
    // fib makes nested calls, which spread over the cluster.
    let (function, args, expected) = if rng.random_bool(0.5) {
        let n = rng.random_range(3..=9u64);
        ("fib", json!(n), json!(fib(n)))
    } else {
        let payload = json!({ "nonce": rng.random::<u64>() });
        ("echo", payload.clone(), payload)
    };
    let body = CallBody {
        args,
        timeout_ms: Some(CALL_TIMEOUT_MS),
        script: None,
    };
    let outcome =
        match tokio::time::timeout(UNRESOLVED_AFTER, client.call_with(function, body)).await {
            Err(_) => CallOutcome::Unresolved,
            Ok(Ok(got)) if got == expected => CallOutcome::Correct,
            Ok(Ok(got)) => CallOutcome::Wrong { got, expected },
            Ok(Err(e)) => CallOutcome::Failed(code_of(&e)),
        };
    history.calls.push(outcome);
}

/// Submits a job whose result must be `{"key": key}`.
async fn submit(client: &Client, key: String, slow: bool, shared: &Shared, history: &mut History) {
    let job = if slow {
        JobSpec {
            script: Some(ScriptSource {
                name: "slow-echo.js".to_string(),
                source: SLOW_ECHO_JS.to_string(),
            }),
            ..JobSpec::new("slow.echo", json!({ "key": key, "ms": SLOW_JOB_MS }))
        }
    } else {
        JobSpec::new("echo", json!({ "key": key }))
    };
    let spec = JobSpec {
        max_attempts: 20,
        lease_ms: 2_000,
        idempotency_key: Some(key.clone()),
        ..job
    };
    let invoked = shared.now();
    let acknowledged = client.submit(spec).await.ok();
    if acknowledged.is_some() {
        history.acknowledged_at.push((invoked, shared.now()));
    }
    history.submissions.push(Submission { key, acknowledged });
}

/// Reads the document, then writes a new value if its version is still
/// the one read.
async fn write(docs: &Collection, doc: usize, shared: &Shared, history: &mut History) {
    let Some((version, _)) = read(docs, doc, shared, history).await else {
        return;
    };
    let value = shared.next_value.fetch_add(1, Ordering::Relaxed);
    let invoked = shared.now();
    let outcome = docs
        .replace(&shared.docs[doc], json!({ "value": value }), Some(version))
        .await;
    let completed = shared.now();
    if outcome.is_ok() {
        history.acknowledged_at.push((invoked, completed));
    }
    history.writes.push(DocWrite {
        doc,
        value,
        invoked,
        completed,
        version: outcome.as_ref().ok().map(|w| w.version),
        conflict: matches!(&outcome, Err(e) if e.code() == Some(ErrorCode::VersionConflict)),
    });
}

async fn read(
    docs: &Collection,
    doc: usize,
    shared: &Shared,
    history: &mut History,
) -> Option<(u64, u64)> {
    let invoked = shared.now();
    let seen = match docs.get(&shared.docs[doc]).await {
        Ok(Some(document)) => document.body["value"]
            .as_u64()
            .map(|value| (document.version, value)),
        _ => None,
    };
    history.reads.push(DocRead {
        doc,
        invoked,
        completed: shared.now(),
        seen,
    });
    seen
}

/// The error's code, or what kind of failure it was.
fn code_of(error: &ClientError) -> String {
    match error {
        ClientError::Api { error, .. } => error.code.as_str().to_string(),
        ClientError::Unreachable { .. } => "unreachable".into(),
        ClientError::Protocol(_) => "protocol".into(),
        ClientError::Config(_) => "config".into(),
    }
}

pub fn fib(n: u64) -> u64 {
    (0..n).fold((0u64, 1u64), |(a, b), _| (b, a + b)).0
}

/// The final state of every document, read once the cluster is healed.
pub async fn final_docs(
    client: &Client,
    ids: &[String],
) -> anyhow::Result<Vec<Option<(u64, u64)>>> {
    let docs = client.collection(COLLECTION);
    let mut out = Vec::new();
    for id in ids {
        let document = docs.get(id).await?;
        out.push(document.and_then(|d| Some((d.version, d.body["value"].as_u64()?))));
    }
    Ok(out)
}

/// Every job in the queue.
pub async fn all_jobs(client: &Client) -> anyhow::Result<Vec<shoal_client::Job>> {
    let mut jobs = Vec::new();
    let mut after = None;
    loop {
        let page = client.jobs(None, Some(1_000), after).await?;
        jobs.extend(page.jobs);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(jobs),
        }
    }
}

/// Inserts the registers, each holding 0.
pub async fn create_docs(client: &Client, count: usize) -> anyhow::Result<Vec<String>> {
    let docs = client.collection(COLLECTION);
    match docs.create().await {
        Err(e) if e.code() != Some(ErrorCode::CollectionExists) => return Err(e.into()),
        _ => {}
    }
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(docs.insert(&json!({ "value": 0 })).await?.id);
    }
    Ok(ids)
}
