//! The HTTP API as a client sees it: every route, driven through the real
//! router without a socket (`Router::oneshot`), against real in-process
//! nodes with Raft.
//!
//! Each test starts one node and covers one area (calls, jobs, documents,
//! the cluster's state, bad input, auth), because starting a node costs a
//! Raft election. Errors are checked the way a client matches them: the
//! status, the stable `code`, and a message that names the problem.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shoal_node::testkit::{start_cluster, test_config};
use shoal_node::{Node, NodeConfig, builtins};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tower::ServiceExt;

use shoal_node::testkit::wait_until;

/// Long enough for a linearizable read or a Raft write on a loaded test
/// machine; a request that takes longer is a hang, not a slow answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Starts one node with the built-in functions and returns it with its API,
/// once it has elected itself Raft leader (so writes need no retries).
pub(crate) async fn start_node(api_token: Option<&str>) -> (Node, Router) {
    let config = NodeConfig {
        api_token: api_token.map(str::to_string),
        ..test_config(2)
    };
    let node = start_cluster(1, |_, builder| {
        builtins::register(builder.config(config.clone()))
    })
    .await
    .remove(0);
    wait_until(Duration::from_secs(20), "a Raft leader", async || {
        let raft = node.status().raft;
        if raft.leader.is_some() {
            Ok(())
        } else {
            Err(format!("{raft:?}"))
        }
    })
    .await;
    let api = shoal_node::http::router(node.clone());
    (node, api)
}

fn request(method: Method, uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("a valid request")
}

async fn respond(api: &Router, request: Request<Body>) -> Response<Body> {
    api.clone()
        .oneshot(request)
        .await
        .expect("the router is infallible")
}

/// The status and the JSON body (`null` when empty) of a response.
async fn read_json(response: Response<Body>) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = tokio::time::timeout(ANSWER_WITHIN, response.into_body().collect())
        .await
        .expect("the body ends")
        .expect("the body reads")
        .to_bytes();
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

/// Sends `body` as JSON, or no body at all.
pub(crate) async fn send(
    api: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    read_json(respond(api, request(method, uri, body)).await).await
}

pub(crate) async fn get(api: &Router, uri: &str) -> (StatusCode, Value) {
    send(api, Method::GET, uri, None).await
}

pub(crate) async fn post(api: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    send(api, Method::POST, uri, Some(body)).await
}

/// Sends bytes as they are, for bodies that are not valid JSON.
pub(crate) async fn send_raw(
    api: &Router,
    method: Method,
    uri: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    read_json(respond(api, request(method, uri, body)).await).await
}

/// Asserts a reply is the documented error: status, code, and a message
/// that mentions `mentions`.
#[track_caller]
pub(crate) fn assert_error(
    reply: &(StatusCode, Value),
    status: StatusCode,
    code: &str,
    mentions: &str,
) {
    let (got_status, body) = reply;
    assert_eq!(*got_status, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().expect("an error has a message");
    assert!(
        message.contains(mentions),
        "the message should mention {mentions:?}: {message}"
    );
}

#[track_caller]
pub(crate) fn assert_ok(reply: &(StatusCode, Value)) -> &Value {
    assert_eq!(reply.0, StatusCode::OK, "{}", reply.1);
    &reply.1
}

/// Polls a job through the API until it has ended.
async fn wait_until_finished(api: &Router, id: u64) -> Value {
    wait_until(ANSWER_WITHIN, &format!("job {id} to end"), async || {
        let reply = get(api, &format!("/v1/jobs/{id}")).await;
        let job = assert_ok(&reply);
        if ["succeeded", "dead_letter", "cancelled"].contains(&job["state"].as_str().unwrap()) {
            Ok(job.clone())
        } else {
            Err(job.to_string())
        }
    })
    .await
}

/// One server-sent event.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: Value,
}

/// Reads server-sent events from a response body as they arrive.
struct SseReader {
    body: Body,
    buffer: String,
}

impl SseReader {
    fn new(response: Response<Body>) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = &response.headers()[header::CONTENT_TYPE];
        assert_eq!(content_type, "text/event-stream");
        SseReader {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event, skipping keep-alive comments; `None` once the stream
    /// has ended. Cancel-safe: each frame is buffered the moment it arrives,
    /// so a timeout around it loses nothing.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_sse_block(&block) {
                    return Some(event);
                }
                continue;
            }
            let frame = self.body.frame().await?.expect("the stream reads");
            if let Ok(data) = frame.into_data() {
                self.buffer
                    .push_str(std::str::from_utf8(&data).expect("UTF-8 events"));
            }
        }
    }

    /// The next event, or `None` if none came within `within` or the
    /// stream ended.
    async fn next_within(&mut self, within: Duration) -> Option<SseEvent> {
        tokio::time::timeout(within, self.next())
            .await
            .ok()
            .flatten()
    }
}

fn parse_sse_block(block: &str) -> Option<SseEvent> {
    let (mut event, mut id, mut data) = (None, None, String::new());
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            event = Some(value.trim().to_string());
        } else if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().to_string());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
    let data = serde_json::from_str(&data).ok()?;
    Some(SseEvent {
        event: event.unwrap_or_else(|| "message".to_string()),
        id,
        data,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_batches_return_results_or_the_documented_error() {
    let (node, api) = start_node(None).await;

    let echoed = post(&api, "/v1/call/echo", json!({"args": {"n": [1, 2, 3]}})).await;
    assert_eq!(assert_ok(&echoed), &json!({"result": {"n": [1, 2, 3]}}));

    let no_body = respond(
        &api,
        Request::post("/v1/call/echo").body(Body::empty()).unwrap(),
    )
    .await;
    let no_body = read_json(no_body).await;
    assert_eq!(
        assert_ok(&no_body),
        &json!({"result": null}),
        "an empty body calls with null"
    );

    let in_time = post(
        &api,
        "/v1/call/sleep",
        json!({"args": 10, "timeout_ms": 5_000}),
    )
    .await;
    assert_eq!(assert_ok(&in_time), &json!({"result": 10}));
    let started = Instant::now();
    let too_slow = post(
        &api,
        "/v1/call/sleep",
        json!({"args": 10_000, "timeout_ms": 200}),
    )
    .await;
    assert_error(
        &too_slow,
        StatusCode::GATEWAY_TIMEOUT,
        "deadline_exceeded",
        "sleep",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline cut the call short: {:?}",
        started.elapsed()
    );

    let unknown = post(&api, "/v1/call/no.such.fn", json!({"args": 1})).await;
    assert_error(
        &unknown,
        StatusCode::NOT_FOUND,
        "unknown_function",
        "no.such.fn",
    );
    let failed = post(&api, "/v1/call/sleep", json!({"args": "a while"})).await;
    assert_error(
        &failed,
        StatusCode::UNPROCESSABLE_ENTITY,
        "function_failed",
        "milliseconds",
    );

    // A script ships the function with the call: no node had `double`.
    let before = post(&api, "/v1/call/double", json!({"args": 21})).await;
    assert_error(&before, StatusCode::NOT_FOUND, "unknown_function", "double");
    let script = json!({"name": "double.js", "source": "shoal.register('double', x => x * 2)"});
    let doubled = post(
        &api,
        "/v1/call/double",
        json!({"args": 21, "script": script}),
    )
    .await;
    assert_eq!(assert_ok(&doubled), &json!({"result": 42}));
    let broken = json!({"name": "broken.js", "source": "shoal.register('broken', x => "});
    let broken = post(
        &api,
        "/v1/call/broken",
        json!({"args": 1, "script": broken}),
    )
    .await;
    assert_error(
        &broken,
        StatusCode::BAD_REQUEST,
        "invalid_arguments",
        "broken.js",
    );

    // Results come in the calls' order, not the order they finish in.
    let calls = json!([
        {"function": "sleep", "args": 300},
        {"function": "sleep", "args": 50},
        {"function": "echo", "args": "first to finish"},
        {"function": "noop"},
    ]);
    let batch = post(&api, "/v1/batch", json!({"calls": calls})).await;
    assert_eq!(
        assert_ok(&batch),
        &json!({"results": [
            {"result": 300},
            {"result": 50},
            {"result": "first to finish"},
            {"result": null},
        ]})
    );

    let mixed = json!([
        {"function": "echo", "args": 1},
        {"function": "no.such.fn", "args": 2},
        {"function": "echo", "args": 3},
    ]);
    let mixed = post(&api, "/v1/batch", json!({"calls": mixed, "in_flight": 1})).await;
    let results = assert_ok(&mixed)["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0], json!({"result": 1}));
    assert_eq!(results[1]["error"]["code"], "unknown_function");
    assert!(
        results[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no.such.fn")
    );
    assert!(results[1].get("result").is_none(), "{}", results[1]);
    assert_eq!(results[2], json!({"result": 3}));

    let too_many: Vec<Value> = (0..10_001).map(|_| json!({"function": "noop"})).collect();
    let too_many = post(&api, "/v1/batch", json!({"calls": too_many})).await;
    assert_error(
        &too_many,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "10001",
    );

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_submitted_listed_followed_and_cancelled() {
    let (node, api) = start_node(None).await;

    let mut echoes = Vec::new();
    for n in 0..3 {
        let submitted = post(
            &api,
            "/v1/jobs",
            json!({"function": "echo", "args": {"n": n}}),
        )
        .await;
        echoes.push(assert_ok(&submitted)["id"].as_u64().expect("a job id"));
    }
    for (n, id) in echoes.iter().enumerate() {
        let job = wait_until_finished(&api, *id).await;
        assert_eq!(job["id"], *id);
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["result"], json!({"n": n}));
        assert_eq!(job["spec"]["function"], "echo");
    }
    let stale = get(&api, &format!("/v1/jobs/{}?stale=true", echoes[0])).await;
    assert_eq!(assert_ok(&stale)["state"], "succeeded");

    // Pages of two, in id order, chained by `next`.
    let first = get(&api, "/v1/jobs?state=succeeded&limit=2").await;
    let first = assert_ok(&first);
    let ids: Vec<u64> = first["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, echoes[..2]);
    assert_eq!(first["next"], echoes[1]);
    let rest = get(
        &api,
        &format!("/v1/jobs?state=succeeded&limit=2&after={}", echoes[1]),
    )
    .await;
    let rest = assert_ok(&rest);
    assert_eq!(rest["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(rest["jobs"][0]["id"], echoes[2]);
    assert_eq!(rest["next"], Value::Null, "the last page has no next");
    let all = get(&api, "/v1/jobs").await;
    assert_eq!(assert_ok(&all)["jobs"].as_array().unwrap().len(), 3);
    let none_queued = get(&api, "/v1/jobs?state=queued").await;
    assert_eq!(assert_ok(&none_queued), &json!({"jobs": [], "next": null}));

    // A long job is cancelled wherever it is, once.
    let long = post(
        &api,
        "/v1/jobs",
        json!({"function": "sleep", "args": 600_000}),
    )
    .await;
    let long = assert_ok(&long)["id"].as_u64().unwrap();
    let cancelled = post(&api, &format!("/v1/jobs/{long}/cancel"), json!(null)).await;
    let cancelled = assert_ok(&cancelled);
    assert_eq!(cancelled["id"], long);
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert!(cancelled["finished_ms"].as_u64().is_some(), "{cancelled}");
    let read_back = get(&api, &format!("/v1/jobs/{long}")).await;
    assert_eq!(assert_ok(&read_back)["state"], "cancelled");
    let again = send(&api, Method::POST, &format!("/v1/jobs/{long}/cancel"), None).await;
    assert_error(&again, StatusCode::CONFLICT, "rejected", "already finished");
    let listed = get(&api, "/v1/jobs?state=cancelled").await;
    let listed = assert_ok(&listed)["jobs"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], long);

    let missing = 9_999_999;
    let unknown = get(&api, &format!("/v1/jobs/{missing}")).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", "9999999");
    let unknown = send(
        &api,
        Method::POST,
        &format!("/v1/jobs/{missing}/cancel"),
        None,
    )
    .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", "9999999");
    let unknown = get(&api, &format!("/v1/jobs/{missing}/events")).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", "9999999");
    let nameless = post(&api, "/v1/jobs", json!({"args": 1})).await;
    assert_error(
        &nameless,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "function",
    );
    let bad_state = get(&api, "/v1/jobs?state=done").await;
    assert_error(
        &bad_state,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "done",
    );

    // Following a job: one event per change, the last when it has ended.
    let steps = post(
        &api,
        "/v1/jobs",
        json!({"function": "steps", "args": {"count": 4, "ms": 250}}),
    )
    .await;
    let steps = assert_ok(&steps)["id"].as_u64().unwrap();
    let events = respond(
        &api,
        request(
            Method::GET,
            &format!("/v1/jobs/{steps}/events"),
            Body::empty(),
        ),
    )
    .await;
    let mut events = SseReader::new(events);
    let mut seen = Vec::new();
    let deadline = Instant::now() + ANSWER_WITHIN;
    while let Some(event) = tokio::time::timeout_at(deadline.into(), events.next())
        .await
        .expect("the job ends while it is followed")
    {
        assert_eq!(event.event, "job");
        assert_eq!(event.data["id"], steps);
        seen.push(event.data);
    }
    let last = seen.last().expect("at least one event");
    assert_eq!(last["state"], "succeeded", "{seen:?}");
    assert_eq!(last["result"], 4, "steps returns its count");
    assert_eq!(last["progress"], 1.0);
    assert!(
        seen.iter().any(|job| job["state"] == "running"
            && job["progress"].as_f64().unwrap() > 0.0
            && job["progress"].as_f64().unwrap() < 1.0),
        "progress shows while it runs: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|job| job["state"] == "succeeded")
            .count(),
        1,
        "the stream ends after the last event: {seen:?}"
    );

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_created_read_updated_found_and_deleted() {
    let (node, api) = start_node(None).await;

    let created = send(&api, Method::PUT, "/v1/db/fish", None).await;
    assert_eq!(created, (StatusCode::NO_CONTENT, Value::Null));
    let twice = send(&api, Method::PUT, "/v1/db/fish", None).await;
    assert_error(&twice, StatusCode::CONFLICT, "collection_exists", "fish");

    let inserted = post(
        &api,
        "/v1/db/fish/docs",
        json!({"name": "cod", "sea": "north"}),
    )
    .await;
    let inserted = assert_ok(&inserted);
    assert_eq!(inserted["version"], 1);
    let id = inserted["id"].as_str().expect("an id").to_string();
    let doc_uri = format!("/v1/db/fish/docs/{id}");
    let not_object = post(&api, "/v1/db/fish/docs", json!([1, 2])).await;
    assert_error(
        &not_object,
        StatusCode::BAD_REQUEST,
        "invalid_document",
        "object",
    );

    let read = get(&api, &doc_uri).await;
    assert_eq!(
        assert_ok(&read),
        &json!({"id": id, "version": 1, "body": {"name": "cod", "sea": "north"}})
    );
    let stale = get(&api, &format!("{doc_uri}?stale=true")).await;
    assert_eq!(assert_ok(&stale)["version"], 1);

    let replaced = send(
        &api,
        Method::PUT,
        &doc_uri,
        Some(json!({"body": {"name": "cod", "sea": "baltic"}, "expected_version": 1})),
    )
    .await;
    assert_eq!(assert_ok(&replaced), &json!({"id": id, "version": 2}));
    let lost_race = send(
        &api,
        Method::PUT,
        &doc_uri,
        Some(json!({"body": {"name": "haddock"}, "expected_version": 1})),
    )
    .await;
    assert_error(
        &lost_race,
        StatusCode::CONFLICT,
        "version_conflict",
        "version 2",
    );

    let patched = send(
        &api,
        Method::PATCH,
        &doc_uri,
        Some(json!({"body": {"sea": null, "kg": 4}})),
    )
    .await;
    assert_eq!(assert_ok(&patched), &json!({"id": id, "version": 3}));
    let read = get(&api, &doc_uri).await;
    assert_eq!(
        assert_ok(&read)["body"],
        json!({"name": "cod", "kg": 4}),
        "a merge patch removes null fields and adds new ones"
    );
    let stale_patch = send(
        &api,
        Method::PATCH,
        &doc_uri,
        Some(json!({"body": {"kg": 5}, "expected_version": 2})),
    )
    .await;
    assert_error(
        &stale_patch,
        StatusCode::CONFLICT,
        "version_conflict",
        "not 2",
    );
    let bad_patch = send(&api, Method::PATCH, &doc_uri, Some(json!({"body": 7}))).await;
    assert_error(
        &bad_patch,
        StatusCode::BAD_REQUEST,
        "invalid_document",
        "object",
    );

    for (name, sea) in [
        ("herring", "baltic"),
        ("sprat", "baltic"),
        ("plaice", "north"),
    ] {
        let reply = post(&api, "/v1/db/fish/docs", json!({"name": name, "sea": sea})).await;
        assert_ok(&reply);
    }
    let baltic = json!({"filter": {"sea": "baltic"}});
    let count = post(&api, "/v1/db/fish/count", baltic.clone()).await;
    assert_eq!(assert_ok(&count), &json!({"count": 2}));
    let everything = post(&api, "/v1/db/fish/count", json!({})).await;
    assert_eq!(assert_ok(&everything), &json!({"count": 4}));
    let found = post(&api, "/v1/db/fish/find", baltic).await;
    let names: Vec<&str> = assert_ok(&found)["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|doc| doc["body"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["herring", "sprat"]);
    let first_page = post(&api, "/v1/db/fish/find", json!({"limit": 3})).await;
    let first_page = assert_ok(&first_page);
    assert_eq!(first_page["documents"].as_array().unwrap().len(), 3);
    let next = first_page["next"]
        .as_str()
        .expect("a next page")
        .to_string();
    let last_page = post(&api, "/v1/db/fish/find", json!({"limit": 3, "after": next})).await;
    let last_page = assert_ok(&last_page);
    assert_eq!(last_page["documents"][0]["body"]["name"], "plaice");
    assert_eq!(last_page["next"], Value::Null);

    let wrong_version = send(
        &api,
        Method::DELETE,
        &format!("{doc_uri}?expected_version=1"),
        None,
    )
    .await;
    assert_error(
        &wrong_version,
        StatusCode::CONFLICT,
        "version_conflict",
        "version 3",
    );
    let deleted = send(
        &api,
        Method::DELETE,
        &format!("{doc_uri}?expected_version=3"),
        None,
    )
    .await;
    assert_eq!(deleted, (StatusCode::NO_CONTENT, Value::Null));
    let gone = get(&api, &doc_uri).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "not_found", &id);
    let gone = send(&api, Method::DELETE, &doc_uri, None).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "not_found", &id);
    let gone = send(&api, Method::PUT, &doc_uri, Some(json!({"body": {}}))).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "not_found", &id);

    let dropped = send(&api, Method::DELETE, "/v1/db/fish", None).await;
    assert_eq!(dropped, (StatusCode::NO_CONTENT, Value::Null));
    let missing = [
        send(&api, Method::DELETE, "/v1/db/fish", None).await,
        get(&api, "/v1/db/fish/docs/0000000000000001").await,
        post(&api, "/v1/db/fish/docs", json!({"name": "eel"})).await,
        post(&api, "/v1/db/fish/find", json!({})).await,
        post(&api, "/v1/db/fish/count", json!({})).await,
        send(&api, Method::PATCH, &doc_uri, Some(json!({"body": {}}))).await,
    ];
    for reply in &missing {
        assert_error(reply, StatusCode::NOT_FOUND, "no_such_collection", "fish");
    }

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_reports_its_cluster_status_metrics_and_events() {
    let (node, api) = start_node(None).await;
    let me = node.peer_id().to_base58();

    let cluster = get(&api, "/v1/cluster").await;
    let cluster = assert_ok(&cluster);
    let own = &cluster["members"][0];
    assert_eq!(own["peer_id"], me.as_str(), "the node itself comes first");
    assert_eq!(own["is_self"], true);
    assert_eq!(own["liveness"], "alive");
    assert_eq!(own["slots"], 2);
    assert_eq!(cluster["members"].as_array().unwrap().len(), 1);
    assert_eq!(cluster["raft"]["leader"], me.as_str());
    assert_eq!(cluster["raft"]["voters"], json!([me]));

    let called = post(&api, "/v1/call/noop", json!({})).await;
    assert_ok(&called);
    let status = get(&api, "/v1/status").await;
    let status = assert_ok(&status);
    assert_eq!(status["peer_id"], me.as_str());
    assert_eq!(status["slots"], 2);
    assert!(status["calls"]["ok"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(status["raft"]["member"], true);
    assert_eq!(status["raft"]["leader"], me.as_str());
    assert!(!status["version"].as_str().unwrap().is_empty());

    let metrics = respond(&api, request(Method::GET, "/metrics", Body::empty())).await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let content_type = metrics.headers()[header::CONTENT_TYPE].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = metrics.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(text.to_vec()).unwrap();
    let ok_calls: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("shoal_calls_total{outcome=\"ok\"} "))
        .unwrap_or_else(|| panic!("no count of successful calls:\n{text}"))
        .parse()
        .unwrap();
    assert!(ok_calls >= 1, "{text}");
    assert!(
        text.lines()
            .any(|line| line.starts_with("shoal_raft_term ")),
        "{text}"
    );

    // The node elected itself, so the recent events include that.
    let events = respond(&api, request(Method::GET, "/v1/events", Body::empty())).await;
    let mut events = SseReader::new(events);
    let deadline = Instant::now() + Duration::from_secs(10);
    let elected = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let event = events
            .next_within(remaining)
            .await
            .expect("a leader_changed event within 10 s");
        if event.event == "leader_changed" {
            break event;
        }
    };
    assert_eq!(elected.data["kind"], "leader_changed");
    assert_eq!(elected.data["node"], me.as_str());
    assert!(elected.data["message"].as_str().unwrap().contains(&me));
    let seq = elected.data["seq"].as_u64().unwrap();
    assert_eq!(elected.id.as_deref(), Some(seq.to_string().as_str()));
    // `after` skips what the reader has seen.
    let later = respond(
        &api,
        request(
            Method::GET,
            &format!("/v1/events?after={seq}"),
            Body::empty(),
        ),
    )
    .await;
    let mut later = SseReader::new(later);
    if let Some(event) = later.next_within(Duration::from_millis(500)).await {
        assert!(event.data["seq"].as_u64().unwrap() > seq, "{event:?}");
    }

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_every_listed_route_is_served() {
    let (node, api) = start_node(None).await;

    let document = get(&api, "/openapi.json").await;
    let document = assert_ok(&document);
    assert_eq!(
        document,
        &serde_json::to_value(shoal_node::http::openapi()).unwrap()
    );
    let mut listed = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for method in operations.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                listed.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let expected = [
        ("POST", "/v1/call/{function}"),
        ("POST", "/v1/batch"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{id}"),
        ("POST", "/v1/jobs/{id}/cancel"),
        ("GET", "/v1/jobs/{id}/events"),
        ("PUT", "/v1/db/{collection}"),
        ("DELETE", "/v1/db/{collection}"),
        ("POST", "/v1/db/{collection}/docs"),
        ("GET", "/v1/db/{collection}/docs/{id}"),
        ("PUT", "/v1/db/{collection}/docs/{id}"),
        ("PATCH", "/v1/db/{collection}/docs/{id}"),
        ("DELETE", "/v1/db/{collection}/docs/{id}"),
        ("POST", "/v1/db/{collection}/find"),
        ("POST", "/v1/db/{collection}/count"),
        ("POST", "/v1/db/{collection}/update"),
        ("POST", "/v1/db/{collection}/delete"),
        ("GET", "/v1/db"),
        ("GET", "/v1/cluster"),
        ("GET", "/v1/status"),
        ("GET", "/v1/events"),
        ("GET", "/metrics"),
        ("POST", "/v1/topics/{topic}"),
        ("GET", "/v1/topics/{topic}"),
        ("GET", "/v1/topics/{topic}/events"),
        ("POST", "/v1/queues/{name}/push"),
        ("POST", "/v1/queues/{name}/pop"),
        ("GET", "/v1/queues/{name}"),
        ("POST", "/v1/queues/{name}/close"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    ];
    for (method, path) in expected {
        assert!(
            listed.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is missing from /openapi.json"
        );
    }

    for (method, path) in &listed {
        let uri = path
            .replace("{function}", "echo")
            .replace("{collection}", "sweep")
            .replace("{topic}", "sweep")
            .replace("{name}", "sweep")
            .replace("{id}", "1");
        let method: Method = method.parse().unwrap();
        let response = respond(&api, request(method.clone(), &uri, "{}")).await;
        let status = response.status();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if response.headers().get(header::CONTENT_TYPE)
            == Some(&header::HeaderValue::from_static("text/event-stream"))
        {
            // An open event stream: served, and it would never end.
            continue;
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            !body.contains("no such route"),
            "{method} {uri} is listed but not served: {status} {body}"
        );
    }

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_the_node_keeps_serving() {
    let (node, api) = start_node(None).await;

    let malformed = send_raw(
        &api,
        Method::POST,
        "/v1/call/echo",
        b"{\"args\": [1, 2".to_vec(),
    )
    .await;
    assert_error(
        &malformed,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "not valid",
    );
    // Two bodies in one: the second must not be silently dropped.
    let two_values = send_raw(
        &api,
        Method::POST,
        "/v1/jobs",
        b"{\"function\": \"echo\"} {\"function\": \"fib\"}".to_vec(),
    )
    .await;
    assert_error(
        &two_values,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "trailing characters",
    );
    let not_json = send_raw(&api, Method::POST, "/v1/jobs", b"function=echo".to_vec()).await;
    assert_error(
        &not_json,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "not valid",
    );

    let mistyped = post(
        &api,
        "/v1/call/echo",
        json!({"args": 1, "timeout_ms": "soon"}),
    )
    .await;
    assert_error(
        &mistyped,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "soon",
    );
    let mistyped = post(&api, "/v1/batch", json!({"calls": {"function": "echo"}})).await;
    assert_error(
        &mistyped,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "sequence",
    );
    let missing = post(&api, "/v1/batch", json!({})).await;
    assert_error(
        &missing,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "calls",
    );

    let typo = post(&api, "/v1/jobs", json!({"function": "echo", "priorty": 2})).await;
    assert_error(&typo, StatusCode::BAD_REQUEST, "invalid_request", "priorty");
    let typo = post(&api, "/v1/call/echo", json!({"arg": 1})).await;
    assert_error(&typo, StatusCode::BAD_REQUEST, "invalid_request", "arg");
    let typo = get(&api, "/v1/jobs?sate=queued").await;
    assert_error(&typo, StatusCode::BAD_REQUEST, "invalid_request", "sate");
    let not_a_number = get(&api, "/v1/jobs?limit=many").await;
    assert_error(
        &not_a_number,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "limit",
    );

    for uri in ["/v1/jobs/abc", "/v1/jobs/abc/events"] {
        let reply = get(&api, uri).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", "abc");
    }
    let reply = send(&api, Method::POST, "/v1/jobs/-1/cancel", None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", "-1");

    for uri in ["/v2/call/echo", "/v1/nothing", "/nothing"] {
        let reply = get(&api, uri).await;
        assert_error(&reply, StatusCode::NOT_FOUND, "not_found", "no such route");
    }
    let reply = get(&api, "/ui/nothing.js").await;
    assert_error(
        &reply,
        StatusCode::NOT_FOUND,
        "not_found",
        "no such dashboard asset",
    );
    let wrong_method = send(&api, Method::DELETE, "/v1/call/echo", None).await;
    assert_error(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method",
    );
    let wrong_method = get(&api, "/v1/batch").await;
    assert_error(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method",
    );

    let limit = shoal_proto::api::MAX_BODY_BYTES;
    let mut huge = br#"{"args": ""#.to_vec();
    huge.resize(limit + 1, b'x');
    huge.extend_from_slice(br#""}"#);
    let too_large = send_raw(&api, Method::POST, "/v1/call/echo", huge).await;
    assert_error(
        &too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &limit.to_string(),
    );

    let still_fine = post(&api, "/v1/call/echo", json!({"args": {"still": "here"}})).await;
    assert_eq!(
        assert_ok(&still_fine),
        &json!({"result": {"still": "here"}})
    );
    let status = get(&api, "/v1/status").await;
    assert_eq!(
        assert_ok(&status)["calls"]["failed"],
        json!({}),
        "no call ran"
    );

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_api_token_answers_only_requests_that_carry_it() {
    let (node, api) = start_node(Some("s3cret")).await;
    let with_authorization = |value: &str, method: Method, uri: &str, body: &'static str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, value)
            .body(Body::from(body))
            .unwrap()
    };

    for uri in ["/v1/status", "/metrics", "/openapi.json", "/v1/nothing"] {
        let anonymous = get(&api, uri).await;
        assert_error(
            &anonymous,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Bearer",
        );
    }
    let anonymous = post(&api, "/v1/call/echo", json!({"args": 1})).await;
    assert_error(
        &anonymous,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "token",
    );
    // Probes carry no token.
    let health = get(&api, "/healthz").await;
    assert_eq!(assert_ok(&health)["status"], "ok");
    // The dashboard's page and scripts hold no data: served to anyone, they
    // ask for the token before they show anything.
    for (uri, kind) in [("/", "text/html"), ("/ui/app.js", "text/javascript")] {
        let page = respond(&api, request(Method::GET, uri, Body::empty())).await;
        assert_eq!(page.status(), StatusCode::OK, "{uri}");
        let content_type = page.headers()[axum::http::header::CONTENT_TYPE]
            .to_str()
            .unwrap();
        assert!(content_type.starts_with(kind), "{uri}: {content_type}");
    }

    for wrong in [
        "Bearer s3cre",
        "Bearer s3cret2",
        "Bearer ",
        "Basic czNjcmV0",
    ] {
        let request = with_authorization(wrong, Method::GET, "/v1/status", "");
        let refused = read_json(respond(&api, request).await).await;
        assert_error(&refused, StatusCode::UNAUTHORIZED, "unauthorized", "token");
    }

    let request = with_authorization("Bearer s3cret", Method::GET, "/v1/status", "");
    let status = read_json(respond(&api, request).await).await;
    assert_eq!(assert_ok(&status)["peer_id"], node.peer_id().to_base58());
    let request = with_authorization(
        "Bearer s3cret",
        Method::POST,
        "/v1/call/echo",
        r#"{"args": "let in"}"#,
    );
    let called = read_json(respond(&api, request).await).await;
    assert_eq!(assert_ok(&called), &json!({"result": "let in"}));

    node.shutdown().await;
}

/// `http/error.rs` promises that a mistyped body is refused "naming the
/// field"; today serde_json's message gives only a line and column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_field_is_named_in_the_error() {
    let (node, api) = start_node(None).await;
    let mistyped = post(
        &api,
        "/v1/call/echo",
        json!({"args": 1, "timeout_ms": "soon"}),
    )
    .await;
    assert_error(
        &mistyped,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "timeout_ms",
    );
    let mistyped = post(&api, "/v1/batch", json!({"calls": {"function": "echo"}})).await;
    assert_error(
        &mistyped,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "calls",
    );
    node.shutdown().await;
}

/// A lease of 0 ms expires before any attempt can renew it, so even `echo`
/// dead-letters with "lease expired". The API should refuse such a job, or
/// raise the lease to a workable minimum; either way it must not be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_lease_too_short_to_hold_is_refused_or_still_runs() {
    let (node, api) = start_node(None).await;
    let spec = json!({"function": "echo", "args": "hi", "lease_ms": 0});
    let submitted = post(&api, "/v1/jobs", spec).await;
    if submitted.0 == StatusCode::BAD_REQUEST {
        assert_error(
            &submitted,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "lease_ms",
        );
    } else {
        let id = assert_ok(&submitted)["id"].as_u64().unwrap();
        let job = wait_until_finished(&api, id).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["result"], "hi");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_queues_answer_over_http() {
    let (node, api) = start_node(None).await;

    // Topics: a subscriber that joins after three kept messages gets them
    // first, then live ones; a resumed one only what it missed.
    for text in ["one", "two", "three"] {
        let published = post(
            &api,
            "/v1/topics/room",
            json!({"value": {"text": text}, "name": "ann", "retain": 10}),
        )
        .await;
        assert_ok(&published);
    }
    let response = respond(&api, request(Method::GET, "/v1/topics/room/events", "")).await;
    let mut events = SseReader::new(response);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = events
            .next_within(ANSWER_WITHIN)
            .await
            .expect("a kept message");
        assert_eq!(event.event, "message");
        assert_eq!(event.data["name"], "ann");
        assert_eq!(event.data["publisher"], node.peer_id().to_base58());
        seen.push((event.id.unwrap(), event.data["value"]["text"].clone()));
    }
    assert_eq!(
        seen.iter()
            .map(|(_, text)| text.clone())
            .collect::<Vec<_>>(),
        vec![json!("one"), json!("two"), json!("three")]
    );
    let four = post(&api, "/v1/topics/room", json!({"value": {"text": "four"}})).await;
    assert_eq!(assert_ok(&four)["seq"], 4);
    let live = events
        .next_within(ANSWER_WITHIN)
        .await
        .expect("a live message");
    assert_eq!(live.data["value"]["text"], "four");
    assert_eq!(live.data["seq"], 4);
    let resume = Request::builder()
        .method(Method::GET)
        .uri("/v1/topics/room/events")
        .header("last-event-id", seen[1].0.as_str())
        .body(Body::empty())
        .unwrap();
    let mut resumed = SseReader::new(respond(&api, resume).await);
    let next = resumed
        .next_within(ANSWER_WITHIN)
        .await
        .expect("the missed message");
    assert_eq!(next.data["value"]["text"], "three", "only what came after");
    let info = get(&api, "/v1/topics/room").await;
    let info = assert_ok(&info);
    assert_eq!(info["retained"], 3, "'four' was not kept: {info}");
    assert_eq!(info["subscribers"], 2);
    assert_error(
        &post(&api, "/v1/topics/no%20spaces", json!({"value": 1})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "' '",
    );
    assert_error(
        &post(
            &api,
            "/v1/topics/room",
            json!({"value": "x".repeat(70_000)}),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "65536",
    );
    assert_error(
        &post(&api, "/v1/topics/room", json!({"value": 1, "retain": 5000})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "1000",
    );

    // The queue: push, size, pop each item once, timeout when empty, close.
    let pushed = post(&api, "/v1/queues/work/push", json!({"items": [1, 2, 3]})).await;
    assert_eq!(assert_ok(&pushed)["pushed"], 3);
    let size = get(&api, "/v1/queues/work").await;
    assert_eq!(assert_ok(&size)["size"], 3);
    let mut popped = Vec::new();
    for _ in 0..3 {
        let item = post(&api, "/v1/queues/work/pop", json!({})).await;
        popped.push(assert_ok(&item)["item"].as_u64().unwrap());
    }
    popped.sort_unstable();
    assert_eq!(popped, vec![1, 2, 3]);
    assert_error(
        &post(&api, "/v1/queues/work/pop", json!({"timeout_ms": 100})).await,
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        "empty",
    );
    let closed = post(&api, "/v1/queues/work/close", json!({})).await;
    assert_eq!(assert_ok(&closed)["closed"], true);
    assert_error(
        &post(&api, "/v1/queues/work/push", json!({"items": [4]})).await,
        StatusCode::CONFLICT,
        "closed",
        "work",
    );
    assert_error(
        &post(&api, "/v1/queues/work/pop", json!({})).await,
        StatusCode::CONFLICT,
        "closed",
        "closed",
    );

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_whether_the_node_can_serve_and_why_not() {
    let (node, api) = start_node(None).await;
    wait_until(Duration::from_secs(10), "a ready node", async || {
        let (status, body) = get(&api, "/readyz").await;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    node.shutdown().await;

    // Told to join a cluster that is not there: not ready, and it says why.
    let lonely = Node::builder()
        .config(NodeConfig {
            join: vec!["/ip4/127.0.0.1/tcp/9".parse().unwrap()],
            ..test_config(1)
        })
        .start()
        .await
        .unwrap();
    let api = shoal_node::http::router(lonely.clone());
    let (status, body) = get(&api, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not_ready");
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("no member of the cluster"), "{reasons}");
    lonely.shutdown().await;
}
