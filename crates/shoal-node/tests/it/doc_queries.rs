//! Querying and writing the document store by filter, as a client of the
//! HTTP API and of the embedding API sees it: operators on nested paths,
//! sorted pages that return every match once, writes by filter that change
//! all matches or nothing, and clear errors for bad filters.

use crate::http_api::{assert_error, assert_ok, get, post, send, send_raw, start_node};
use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use shoal_node::store::SortKey;
use shoal_node::{ErrorCode, Read};
use std::collections::BTreeSet;

const CITIES: [&str; 3] = ["paris", "rome", "oslo"];

/// A person of the test collection: every tenth has no age.
fn person(n: usize) -> Value {
    let mut person = json!({
        "name": format!("p{n:02}"),
        "address": {"city": CITIES[n % 3], "zip": format!("{n:05}")},
        "items": [{"qty": n % 4}],
    });
    if n % 10 != 9 {
        person["age"] = json!(15 + (n * 7) % 50);
    }
    person
}

/// The filter the test pages through, checked here in plain Rust.
fn wanted(person: &Value) -> bool {
    let city = person["address"]["city"].as_str().unwrap();
    let age = person["age"].as_u64();
    ["paris", "oslo"].contains(&city)
        && age.is_some_and(|age| (18..60).contains(&age))
        && person["items"][0]["qty"] != json!(0)
}

fn wanted_filter() -> Value {
    json!({
        "address.city": {"$in": ["paris", "oslo"]},
        "age": {"$gte": 18, "$lt": 60},
        "items.0.qty": {"$ne": 0},
    })
}

fn ids(documents: &Value) -> Vec<String> {
    documents
        .as_array()
        .expect("a list of documents")
        .iter()
        .map(|doc| doc["id"].as_str().unwrap().to_string())
        .collect()
}

async fn count(api: &axum::Router, filter: Value) -> u64 {
    let reply = post(api, "/v1/db/people/count", json!({ "filter": filter })).await;
    assert_ok(&reply)["count"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_found_sorted_paged_and_written_by_filter() {
    let (node, api) = start_node(None).await;
    assert_eq!(
        send(&api, Method::PUT, "/v1/db/people", None).await.0,
        StatusCode::NO_CONTENT
    );

    let mut people: Vec<(String, Value)> = Vec::new();
    for n in 0..30 {
        let body = person(n);
        let written = post(&api, "/v1/db/people/docs", body.clone()).await;
        people.push((assert_ok(&written)["id"].as_str().unwrap().into(), body));
    }

    // Keys keep the order they were written in.
    let raw = br#"{"name": "zed", "b": 1, "a": 2}"#.to_vec();
    let written = send_raw(&api, Method::POST, "/v1/db/people/docs", raw).await;
    let zed = assert_ok(&written)["id"].as_str().unwrap().to_string();
    let read = get(&api, &format!("/v1/db/people/docs/{zed}")).await;
    assert_eq!(
        serde_json::to_string(&assert_ok(&read)["body"]).unwrap(),
        r#"{"name":"zed","b":1,"a":2}"#
    );

    // Descending age, then name, then id; page by page.
    let mut expected: Vec<&(String, Value)> = people.iter().filter(|(_, p)| wanted(p)).collect();
    expected.sort_by(|(a_id, a), (b_id, b)| {
        let age = |p: &Value| p["age"].as_u64().unwrap();
        (age(b), a["name"].as_str(), a_id).cmp(&(age(a), b["name"].as_str(), b_id))
    });
    let mut expected: Vec<String> = expected.into_iter().map(|(id, _)| id.clone()).collect();
    assert!(expected.len() > 8, "the test pages through several pages");

    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    let mut passed_id = String::new();
    loop {
        let find = json!({"filter": wanted_filter(), "sort": ["-age", "name"], "limit": 4, "after": after});
        let page = post(&api, "/v1/db/people/find", find).await;
        let page = assert_ok(&page);
        seen.extend(ids(&page["documents"]));
        pages += 1;
        if pages == 1 {
            // Written between pages: one that sorts before the cursor (not
            // returned: its place was already passed) and one after it.
            let passed =
                json!({"name": "a", "age": 59, "address": {"city": "oslo"}, "items": [{"qty": 1}]});
            let ahead = json!({"name": "zz", "age": 18, "address": {"city": "paris"}, "items": [{"qty": 2}]});
            let passed = post(&api, "/v1/db/people/docs", passed).await;
            passed_id = assert_ok(&passed)["id"].as_str().unwrap().to_string();
            let ahead = post(&api, "/v1/db/people/docs", ahead).await;
            expected.push(assert_ok(&ahead)["id"].as_str().unwrap().to_string());
        }
        match &page["next"] {
            Value::Null => break,
            next => after = next.clone(),
        }
    }
    assert_eq!(seen, expected, "every match once, in order");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
    assert_eq!(pages, expected.len().div_ceil(4));

    // The embedding API sees the same order, now with the document the
    // cursor had passed at its head.
    let filter: Map<String, Value> = serde_json::from_value(wanted_filter()).unwrap();
    let sort = vec![SortKey::descending("age"), SortKey::ascending("name")];
    let (first, next) = node
        .db_find("people", filter, sort, 4, None, Read::Linearizable)
        .await
        .unwrap();
    let first: Vec<&str> = first.iter().map(|doc| doc.id.as_str()).collect();
    let mut now_first = vec![passed_id.as_str()];
    now_first.extend(expected[..3].iter().map(String::as_str));
    assert_eq!(first, now_first);
    assert!(next.is_some());

    // Update by filter: every match, once, in one write.
    let rome = count(&api, json!({"address.city": "rome"})).await;
    let updated = post(
        &api,
        "/v1/db/people/update",
        json!({"filter": {"address.city": "rome"}, "patch": {"address": {"country": "it"}, "seen": true}}),
    )
    .await;
    assert_eq!(assert_ok(&updated), &json!({"updated": rome}));
    assert_eq!(
        count(&api, json!({"address.country": "it", "seen": true})).await,
        rome
    );
    let (roman_id, _) = people
        .iter()
        .find(|(_, p)| p["address"]["city"] == "rome")
        .unwrap();
    let roman = get(&api, &format!("/v1/db/people/docs/{roman_id}")).await;
    let roman = assert_ok(&roman);
    assert_eq!(roman["version"], 2);
    assert_eq!(
        serde_json::to_string(&roman["body"]["address"]).unwrap(),
        format!(
            r#"{{"city":"rome","zip":"{}","country":"it"}}"#,
            roman["body"]["address"]["zip"].as_str().unwrap()
        )
    );

    // A bad filter is refused before it reaches the log; nothing changes.
    let applied_before = node.status().raft.last_applied;
    let bad = post(
        &api,
        "/v1/db/people/update",
        json!({"filter": {"age": {"$gt": 1, "$foo": 2}}, "patch": {"broken": true}}),
    )
    .await;
    assert_error(
        &bad,
        StatusCode::BAD_REQUEST,
        "invalid_filter",
        "unknown operator $foo",
    );
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_filter", "$exists");
    let bad = post(
        &api,
        "/v1/db/people/delete",
        json!({"filter": {"age": {"$in": 18}}}),
    )
    .await;
    assert_error(
        &bad,
        StatusCode::BAD_REQUEST,
        "invalid_filter",
        "takes an array",
    );
    let bad = post(&api, "/v1/db/people/find", json!({"filter": {"$or": []}})).await;
    assert_error(
        &bad,
        StatusCode::BAD_REQUEST,
        "invalid_filter",
        "operators go inside a field",
    );
    let bad = post(
        &api,
        "/v1/db/people/count",
        json!({"filter": {"a": {"$exists": 1}}}),
    )
    .await;
    assert_error(
        &bad,
        StatusCode::BAD_REQUEST,
        "invalid_filter",
        "true or false",
    );
    let no_filter = post(&api, "/v1/db/people/delete", json!({})).await;
    assert_error(
        &no_filter,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "filter",
    );
    let not_object = post(
        &api,
        "/v1/db/people/update",
        json!({"filter": {}, "patch": 3}),
    )
    .await;
    assert_error(
        &not_object,
        StatusCode::BAD_REQUEST,
        "invalid_document",
        "merge patch",
    );
    let refused = node
        .db_delete_where(
            "people",
            serde_json::from_value(json!({"a": {"$lt": []}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::InvalidFilter);
    assert!(
        refused
            .to_string()
            .contains("a number or a string, not an array"),
        "{refused}"
    );
    assert_eq!(
        node.status().raft.last_applied,
        applied_before,
        "nothing was proposed"
    );
    assert_eq!(count(&api, json!({"broken": {"$exists": true}})).await, 0);

    let bad_cursor = post(
        &api,
        "/v1/db/people/find",
        json!({"sort": ["age"], "after": people[0].0}),
    )
    .await;
    assert_error(
        &bad_cursor,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "cursor",
    );

    // Delete by filter, then the list of collections.
    let total = count(&api, json!({})).await;
    let ageless = count(&api, json!({"age": {"$exists": false}})).await;
    assert!(ageless >= 3);
    let deleted = post(
        &api,
        "/v1/db/people/delete",
        json!({"filter": {"age": {"$exists": false}}}),
    )
    .await;
    assert_eq!(assert_ok(&deleted), &json!({"deleted": ageless}));
    assert_eq!(count(&api, json!({})).await, total - ageless);
    let none = post(
        &api,
        "/v1/db/people/delete",
        json!({"filter": {"age": {"$exists": false}}}),
    )
    .await;
    assert_eq!(assert_ok(&none), &json!({"deleted": 0}));

    assert_eq!(
        send(&api, Method::PUT, "/v1/db/empty", None).await.0,
        StatusCode::NO_CONTENT
    );
    let listed = get(&api, "/v1/db").await;
    assert_eq!(
        assert_ok(&listed),
        &json!({"collections": [
            {"name": "empty", "documents": 0},
            {"name": "people", "documents": total - ageless},
        ]})
    );
    let stale = node.db_collections(Read::Stale).await.unwrap();
    assert_eq!(stale.len(), 2);
    let missing = post(
        &api,
        "/v1/db/nobody/update",
        json!({"filter": {}, "patch": {}}),
    )
    .await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "no_such_collection",
        "nobody",
    );

    node.shutdown().await;
}
