use super::*;
use serde_json::json;

/// A store plus the next log index, so tests read like a command log.
#[derive(Default)]
struct Log {
    store: DocStore,
    index: u64,
}

impl Log {
    fn with_collection(name: &str) -> Self {
        let mut log = Log::default();
        let created = log.apply(DocCommand::CreateCollection { name: name.into() });
        assert_eq!(created, DocOutcome::Done);
        log
    }

    fn apply(&mut self, command: DocCommand) -> DocOutcome {
        self.index += 1;
        self.store.apply(self.index, &command)
    }

    fn insert(&mut self, body: Value) -> String {
        let collection = "people".to_string();
        match self.apply(DocCommand::Insert { collection, body }) {
            DocOutcome::Written { id, version: 1 } => id,
            other => panic!("insert gave {other:?}"),
        }
    }

    fn patch(&mut self, id: &str, patch: Value, expected_version: Option<u64>) -> DocOutcome {
        self.apply(DocCommand::Patch {
            collection: "people".into(),
            id: id.into(),
            patch,
            expected_version,
        })
    }

    fn body(&self, id: &str) -> &Value {
        &self.store.get("people", id).expect("document exists").body
    }
}

fn error(outcome: DocOutcome) -> (DocErrorCode, String) {
    match outcome {
        DocOutcome::Error { code, message } => (code, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn filter(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(fields) => fields,
        other => panic!("a filter is an object, not {other}"),
    }
}

#[test]
fn collections_are_created_once_and_dropped_with_their_documents() {
    let mut log = Log::with_collection("people");
    let again = log.apply(DocCommand::CreateCollection {
        name: "people".into(),
    });
    let (code, message) = error(again);
    assert_eq!(code, DocErrorCode::CollectionExists);
    assert!(message.contains("\"people\" already exists"));

    let id = log.insert(json!({"name": "ada"}));
    assert_eq!(log.store.collections().collect::<Vec<_>>(), vec!["people"]);
    let dropped = log.apply(DocCommand::DropCollection {
        name: "people".into(),
    });
    assert_eq!(dropped, DocOutcome::Done);
    assert_eq!(log.store.get("people", &id), None);
    assert_eq!(log.store.collections().count(), 0);

    let missing = log.apply(DocCommand::DropCollection {
        name: "people".into(),
    });
    assert_eq!(error(missing).0, DocErrorCode::NoSuchCollection);
}

#[test]
fn insert_assigns_unique_ids_from_the_log_index() {
    let mut log = Log::with_collection("people");
    let ids: Vec<String> = (0..50).map(|n| log.insert(json!({"n": n}))).collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert_eq!(ids[0], "0000000000000002");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "id order is insert order");
    let document = log.store.get("people", &ids[7]).expect("inserted");
    assert_eq!(document.version, 1);
    assert_eq!(document.body, json!({"n": 7}));
}

#[test]
fn insert_needs_an_existing_collection_and_an_object() {
    let mut log = Log::default();
    let nowhere = log.apply(DocCommand::Insert {
        collection: "people".into(),
        body: json!({}),
    });
    let (code, message) = error(nowhere);
    assert_eq!(code, DocErrorCode::NoSuchCollection);
    assert!(message.contains("create it first"));
    assert_eq!(log.store.collections().count(), 0, "not created implicitly");

    let mut log = Log::with_collection("people");
    let list = log.apply(DocCommand::Insert {
        collection: "people".into(),
        body: json!([1, 2]),
    });
    let (code, message) = error(list);
    assert_eq!(code, DocErrorCode::InvalidDocument);
    assert!(message.contains("not an array"));
}

#[test]
fn replace_bumps_the_version_and_checks_the_expected_one() {
    let mut log = Log::with_collection("people");
    let id = log.insert(json!({"name": "ada"}));
    let replace = |body: Value, expected_version| DocCommand::Replace {
        collection: "people".into(),
        id: id.clone(),
        body,
        expected_version,
    };
    let outcome = log.apply(replace(json!({"name": "grace"}), Some(1)));
    assert_eq!(
        outcome,
        DocOutcome::Written {
            id: id.clone(),
            version: 2
        }
    );
    assert_eq!(log.body(&id), &json!({"name": "grace"}));

    let stale = log.apply(replace(json!({"name": "lost"}), Some(1)));
    let (code, message) = error(stale);
    assert_eq!(code, DocErrorCode::VersionConflict);
    assert_eq!(
        message,
        format!(
            "document {id} is at version 2, not 1: another write came first; read it again and retry"
        )
    );
    assert_eq!(log.body(&id), &json!({"name": "grace"}), "nothing lost");

    let unconditional = log.apply(replace(json!({"name": "edsger"}), None));
    assert!(matches!(
        unconditional,
        DocOutcome::Written { version: 3, .. }
    ));
    let not_object = log.apply(replace(json!("edsger"), None));
    assert_eq!(error(not_object).0, DocErrorCode::InvalidDocument);
}

#[test]
fn patch_merges_objects_and_null_removes_fields() {
    let mut log = Log::with_collection("people");
    let id = log.insert(json!({
        "name": "ada",
        "age": 36,
        "address": {"city": "london", "street": "st james"},
        "tags": ["math"],
    }));
    let patch = json!({
        "age": null,
        "address": {"street": null, "zip": "sw1"},
        "tags": ["math", "engines"],
        "title": {"first": "countess"},
    });
    let outcome = log.patch(&id, patch, Some(1));
    assert!(matches!(outcome, DocOutcome::Written { version: 2, .. }));
    assert_eq!(
        log.body(&id),
        &json!({
            "name": "ada",
            "address": {"city": "london", "zip": "sw1"},
            "tags": ["math", "engines"],
            "title": {"first": "countess"},
        })
    );
}

#[test]
fn patch_replaces_non_object_fields_and_refuses_non_object_patches() {
    let mut log = Log::with_collection("people");
    let id = log.insert(json!({"address": "unknown"}));
    log.patch(
        &id,
        json!({"address": {"city": "paris", "zip": null}}),
        None,
    );
    assert_eq!(log.body(&id), &json!({"address": {"city": "paris"}}));

    let (code, message) = error(log.patch(&id, json!(null), None));
    assert_eq!(code, DocErrorCode::InvalidDocument);
    assert!(message.contains("use replace"));
    let (code, _) = error(log.patch(&id, json!({"a": 1}), Some(7)));
    assert_eq!(code, DocErrorCode::VersionConflict);
    assert_eq!(log.store.get("people", &id).map(|doc| doc.version), Some(2));
}

#[test]
fn delete_removes_the_document_at_the_expected_version() {
    let mut log = Log::with_collection("people");
    let id = log.insert(json!({"name": "ada"}));
    let delete = |expected_version| DocCommand::Delete {
        collection: "people".into(),
        id: id.clone(),
        expected_version,
    };
    assert_eq!(
        error(log.apply(delete(Some(2)))).0,
        DocErrorCode::VersionConflict
    );
    assert!(log.store.get("people", &id).is_some());
    assert_eq!(log.apply(delete(Some(1))), DocOutcome::Done);
    assert_eq!(log.store.get("people", &id), None);

    let (code, message) = error(log.apply(delete(None)));
    assert_eq!(code, DocErrorCode::NotFound);
    assert!(message.contains(&format!("no document \"{id}\"")));
}

#[test]
fn writes_to_missing_documents_are_not_found() {
    let mut log = Log::with_collection("people");
    let outcome = log.apply(DocCommand::Replace {
        collection: "people".into(),
        id: "00000000000000ff".into(),
        body: json!({}),
        expected_version: None,
    });
    assert_eq!(error(outcome).0, DocErrorCode::NotFound);
    let outcome = log.patch("00000000000000ff", json!({}), None);
    assert_eq!(error(outcome).0, DocErrorCode::NotFound);
}

#[test]
fn find_pages_through_every_match_exactly_once() {
    let mut log = Log::with_collection("people");
    let mut expected = Vec::new();
    for n in 0..23 {
        let team = if n % 3 == 0 { "red" } else { "blue" };
        let id = log.insert(json!({"n": n, "team": team, "active": true}));
        if team == "red" {
            expected.push(id);
        }
    }
    let red = filter(json!({"team": "red", "active": true}));
    assert_eq!(log.store.count("people", &red), Ok(expected.len()));

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let (page, next) = log
            .store
            .find("people", &red, 3, after.as_deref())
            .expect("collection exists");
        pages += 1;
        assert!(page.len() <= 3);
        seen.extend(page.into_iter().map(|doc| doc.id));
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, expected.len().div_ceil(3), "no empty last page");
}

#[test]
fn find_matches_top_level_fields_exactly() {
    let mut log = Log::with_collection("people");
    let nested = log.insert(json!({"address": {"city": "paris"}}));
    log.insert(json!({"address": {"city": "paris", "zip": "75"}}));
    log.insert(json!({"n": 1}));

    let everything = log.store.find("people", &Map::new(), 10, None);
    assert_eq!(
        everything.map(|(docs, next)| (docs.len(), next)),
        Ok((3, None))
    );
    let paris = filter(json!({"address": {"city": "paris"}}));
    let (found, _) = log.store.find("people", &paris, 10, None).expect("exists");
    assert_eq!(
        found.iter().map(|doc| &doc.id).collect::<Vec<_>>(),
        vec![&nested]
    );
    let absent = filter(json!({"n": null}));
    assert_eq!(
        log.store.count("people", &absent),
        Ok(0),
        "null is not absent"
    );
    assert_eq!(
        log.store.count("nobody", &Map::new()),
        Err(DocErrorCode::NoSuchCollection)
    );
}
