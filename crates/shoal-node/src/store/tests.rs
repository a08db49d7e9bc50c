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
fn insert_assigns_unique_ids_from_the_command_id() {
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
            .find("people", &red, &[], 3, after.as_deref())
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
fn find_matches_whole_fields_exactly() {
    let mut log = Log::with_collection("people");
    let nested = log.insert(json!({"address": {"city": "paris"}}));
    log.insert(json!({"address": {"city": "paris", "zip": "75"}}));
    log.insert(json!({"n": 1}));

    let everything = log.store.find("people", &Map::new(), &[], 10, None);
    assert_eq!(
        everything.map(|(docs, next)| (docs.len(), next)),
        Ok((3, None))
    );
    let paris = filter(json!({"address": {"city": "paris"}}));
    let (found, _) = log
        .store
        .find("people", &paris, &[], 10, None)
        .expect("exists");
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
        log.store.count("nobody", &Map::new()).map_err(|e| e.code),
        Err(DocErrorCode::NoSuchCollection)
    );
}

// ---- queries and writes by filter ----

fn ids(documents: &[Document]) -> Vec<&str> {
    documents.iter().map(|doc| doc.id.as_str()).collect()
}

/// Every page of a find, following the cursors to the end.
fn all_pages(
    store: &DocStore,
    filter: &Map<String, Value>,
    sort: &[SortKey],
    limit: usize,
) -> Vec<Document> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = store
            .find("people", filter, sort, limit, after.as_deref())
            .expect("a valid query");
        assert!(page.len() <= limit);
        seen.extend(page);
        match next {
            Some(cursor) => after = Some(cursor),
            None => return seen,
        }
    }
}

fn sort(keys: &str) -> Vec<SortKey> {
    SortKey::parse_list(keys).expect("valid sort keys")
}

#[test]
fn find_with_operators_on_nested_paths() {
    let mut log = Log::with_collection("people");
    let young_paris = log.insert(json!({"age": 17, "address": {"city": "paris"}}));
    let adult_paris = log.insert(json!({"age": 30, "address": {"city": "paris"}, "tags": ["a"]}));
    log.insert(json!({"age": 40, "address": {"city": "rome"}}));
    let no_age = log.insert(json!({"address": {"city": "paris"}}));

    let adults = filter(json!({"address.city": "paris", "age": {"$gte": 18, "$lt": 65}}));
    let (found, next) = log.store.find("people", &adults, &[], 10, None).unwrap();
    assert_eq!((ids(&found), next), (vec![adult_paris.as_str()], None));
    let not_thirty = filter(json!({"address.city": {"$in": ["paris"]}, "age": {"$ne": 30}}));
    let (found, _) = log
        .store
        .find("people", &not_thirty, &[], 10, None)
        .unwrap();
    assert_eq!(ids(&found), [young_paris.as_str(), no_age.as_str()]);
    let tagged = filter(json!({"tags.0": {"$exists": true}}));
    assert_eq!(log.store.count("people", &tagged), Ok(1));

    let bad = filter(json!({"age": {"$gte": 18, "$between": [1, 2]}}));
    let error = log.store.find("people", &bad, &[], 10, None).unwrap_err();
    assert_eq!(error.code, DocErrorCode::InvalidFilter);
    assert!(
        error.message.contains("unknown operator $between"),
        "{error}"
    );
    assert_eq!(
        log.store.count("people", &bad).unwrap_err().code,
        DocErrorCode::InvalidFilter
    );
}

#[test]
fn sorted_pages_return_every_match_once_in_order_ties_by_id() {
    let mut log = Log::with_collection("people");
    let ages = [30, 25, 30, 41, 25, 30, 19];
    let mut by_id = Vec::new();
    for (n, age) in ages.into_iter().enumerate() {
        by_id.push(log.insert(json!({"age": age, "name": format!("p{}", n % 3)})));
    }
    log.insert(json!({"name": "no age"}));
    log.insert(json!({"age": null, "name": "null age"}));

    let everyone = Map::new();
    let seen = all_pages(&log.store, &everyone, &sort("-age,name"), 2);
    let shown: Vec<(Value, Value)> = seen
        .iter()
        .map(|doc| (doc.body["age"].clone(), doc.body["name"].clone()))
        .collect();
    assert_eq!(
        shown,
        [
            (json!(41), json!("p0")),
            (json!(30), json!("p0")),
            (json!(30), json!("p2")),
            (json!(30), json!("p2")),
            (json!(25), json!("p1")),
            (json!(25), json!("p1")),
            (json!(19), json!("p0")),
            (json!(null), json!("null age")),
            (Value::Null, json!("no age")),
        ],
        "descending: numbers, then null, then missing"
    );
    let ties: Vec<&str> = seen[2..4].iter().map(|doc| doc.id.as_str()).collect();
    assert!(ties[0] < ties[1], "ties are broken by id: {ties:?}");

    let ascending = all_pages(&log.store, &everyone, &sort("age"), 4);
    assert_eq!(ascending[0].body["name"], "no age", "missing comes first");
    assert_eq!(ascending[1].body["name"], "null age");
    assert_eq!(ascending.len(), 9);
}

#[test]
fn a_sorted_cursor_continues_after_its_point_despite_writes() {
    let mut log = Log::with_collection("people");
    for age in [10, 20, 30, 40, 50] {
        log.insert(json!({"age": age}));
    }
    let by_age = sort("age");
    let everyone = Map::new();
    let (first, next) = log
        .store
        .find("people", &everyone, &by_age, 2, None)
        .unwrap();
    assert_eq!(first.len(), 2);
    let cursor = next.expect("more pages");

    // Written between pages: one before the cursor's point, one after,
    // and the page's own last document moved back.
    log.insert(json!({"age": 5}));
    log.insert(json!({"age": 35}));
    let last_id = first[1].id.clone();
    log.patch(&last_id, json!({"age": 1}), None);

    let (rest, _) = log
        .store
        .find("people", &everyone, &by_age, 10, Some(&cursor))
        .unwrap();
    let ages: Vec<&Value> = rest.iter().map(|doc| &doc.body["age"]).collect();
    assert_eq!(ages, [&json!(30), &json!(35), &json!(40), &json!(50)]);

    let other_sort = log
        .store
        .find("people", &everyone, &sort("-age"), 2, Some(&cursor))
        .unwrap_err();
    assert_eq!(other_sort.code, DocErrorCode::InvalidCursor);
    assert!(
        other_sort.message.contains("sorted by [age], not [-age]"),
        "{other_sort}"
    );
    let unsorted = log
        .store
        .find("people", &everyone, &[], 2, Some(&cursor))
        .unwrap_err();
    assert!(
        unsorted
            .message
            .contains("sorted by [age], but this find has no sort"),
        "{unsorted}"
    );
    let made_up = log
        .store
        .find("people", &everyone, &by_age, 2, Some("0000000000000003"))
        .unwrap_err();
    assert!(
        made_up.message.contains("not one a sorted find returned"),
        "{made_up}"
    );
    assert_eq!(made_up.code.code(), shoal_proto::ErrorCode::InvalidRequest);
}

#[test]
fn update_where_patches_every_match_in_one_command() {
    let mut log = Log::with_collection("people");
    let ada = log.insert(json!({"name": "ada", "team": {"name": "red"}, "n": 1}));
    let bob = log.insert(json!({"name": "bob", "team": {"name": "red"}, "n": 2}));
    let eve = log.insert(json!({"name": "eve", "team": {"name": "blue"}, "n": 3}));
    let update = |filter: Value, patch: Value| DocCommand::UpdateWhere {
        collection: "people".into(),
        filter,
        patch,
    };

    let outcome = log.apply(update(
        json!({"team.name": "red"}),
        json!({"team": {"lead": "ada"}, "n": null}),
    ));
    assert_eq!(outcome, DocOutcome::Changed { count: 2 });
    assert_eq!(
        log.body(&ada),
        &json!({"name": "ada", "team": {"name": "red", "lead": "ada"}})
    );
    assert_eq!(log.store.get("people", &bob).map(|d| d.version), Some(2));
    assert_eq!(log.store.get("people", &eve).map(|d| d.version), Some(1));
    let none = log.apply(update(json!({"n": {"$gt": 100}}), json!({"x": 1})));
    assert_eq!(none, DocOutcome::Changed { count: 0 });

    let before = log.store.clone();
    let (code, message) = error(log.apply(update(json!({"n": {"$in": 3}}), json!({"x": 1}))));
    assert_eq!(code, DocErrorCode::InvalidFilter);
    assert!(message.contains("takes an array"), "{message}");
    let (code, _) = error(log.apply(update(json!("everyone"), json!({"x": 1}))));
    assert_eq!(code, DocErrorCode::InvalidFilter);
    let (code, message) = error(log.apply(update(json!({}), json!([1]))));
    assert_eq!(code, DocErrorCode::InvalidDocument);
    assert!(message.contains("merge patch"), "{message}");
    let (code, _) = error(log.apply(DocCommand::UpdateWhere {
        collection: "nobody".into(),
        filter: json!({}),
        patch: json!({}),
    }));
    assert_eq!(code, DocErrorCode::NoSuchCollection);
    assert_eq!(log.store, before, "a refused write changes nothing");
}

#[test]
fn delete_where_removes_every_match_and_nothing_else() {
    let mut log = Log::with_collection("people");
    let kept = log.insert(json!({"age": 10}));
    log.insert(json!({"age": 70}));
    log.insert(json!({"age": 80.5}));
    let delete = |filter: Value| DocCommand::DeleteWhere {
        collection: "people".into(),
        filter,
    };
    let outcome = log.apply(delete(json!({"age": {"$gte": 65}})));
    assert_eq!(outcome, DocOutcome::Changed { count: 2 });
    let (left, _) = log
        .store
        .find("people", &Map::new(), &[], 10, None)
        .unwrap();
    assert_eq!(ids(&left), [kept.as_str()]);

    let before = log.store.clone();
    let (code, message) = error(log.apply(delete(json!({"age": {"$exists": "yes"}}))));
    assert_eq!(code, DocErrorCode::InvalidFilter);
    assert!(
        message.contains("takes true or false, not a string"),
        "{message}"
    );
    assert_eq!(log.store, before);
    assert_eq!(
        log.apply(delete(json!({}))),
        DocOutcome::Changed { count: 1 }
    );
    assert_eq!(log.store.count("people", &Map::new()), Ok(0));
}

#[test]
fn collections_are_listed_with_their_sizes() {
    let mut log = Log::with_collection("people");
    log.apply(DocCommand::CreateCollection {
        name: "empty".into(),
    });
    log.insert(json!({}));
    log.insert(json!({}));
    let sizes: Vec<(String, usize)> = log
        .store
        .collection_sizes()
        .into_iter()
        .map(|info| (info.name, info.documents))
        .collect();
    assert_eq!(sizes, [("empty".to_string(), 0), ("people".to_string(), 2)]);
}

#[test]
fn documents_keep_their_key_order() {
    let mut log = Log::with_collection("people");
    let body: Value = serde_json::from_str(r#"{"b": 1, "a": 2, "c": {"z": 1, "y": 2}}"#).unwrap();
    let id = log.insert(body);
    log.patch(&id, json!({"d": 3, "c": {"x": 0}}), None);
    let text = serde_json::to_string(log.body(&id)).unwrap();
    assert_eq!(text, r#"{"b":1,"a":2,"c":{"z":1,"y":2,"x":0},"d":3}"#);
    let copy: DocStore = serde_json::from_slice(&serde_json::to_vec(&log.store).unwrap()).unwrap();
    let text = serde_json::to_string(&copy.get("people", &id).unwrap().body).unwrap();
    assert!(
        text.starts_with(r#"{"b":1,"a":2"#),
        "through a snapshot: {text}"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn person() -> impl Strategy<Value = Value> {
        let age = prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            (0i64..6).prop_map(|n| Some(json!(n))),
            Just(Some(json!(2.5))),
            Just(Some(json!("old"))),
        ];
        (age, prop::sample::select(vec!["a", "b", "c"]), 0i64..3).prop_map(|(age, name, n)| {
            let mut body = json!({"name": name, "info": {"n": n}});
            if let Some(age) = age {
                body["age"] = age;
            }
            body
        })
    }

    fn sort_keys() -> impl Strategy<Value = Vec<SortKey>> {
        let key = (
            prop::sample::select(vec!["age", "name", "info.n", "missing"]),
            any::<bool>(),
        )
            .prop_map(|(path, descending)| SortKey {
                path: path.to_string(),
                descending,
            });
        prop::collection::vec(key, 0..3)
    }

    proptest! {
        /// Paging through a sorted find gives the matches in the order a
        /// plain sort of all of them gives, each once, whatever the page size.
        #[test]
        fn paging_matches_one_big_sort(
            people in prop::collection::vec(person(), 0..25),
            sort in sort_keys(),
            limit in 1usize..6,
            min_n in 0i64..3,
        ) {
            let mut log = Log::with_collection("people");
            for body in people {
                log.insert(body);
            }
            let filter = filter(json!({"info.n": {"$gte": min_n}}));
            let paged = all_pages(&log.store, &filter, &sort, limit);

            let mut expected: Vec<&Document> = log.store.collections["people"]
                .values()
                .filter(|doc| doc.body["info"]["n"].as_i64().unwrap() >= min_n)
                .collect();
            let paths: Vec<path::FieldPath> =
                sort.iter().map(|key| path::FieldPath::parse(&key.path).unwrap()).collect();
            // A stable sort of id-ordered documents, key by key from the
            // least significant, leaves ties in id order.
            for (key, path) in sort.iter().zip(&paths).rev() {
                expected.sort_by(|a, b| {
                    let order = order::compare_fields(path.lookup(&a.body), path.lookup(&b.body));
                    if key.descending { order.reverse() } else { order }
                });
            }
            let expected: Vec<&str> = expected.iter().map(|doc| doc.id.as_str()).collect();
            prop_assert_eq!(ids(&paged), expected);
        }

        /// A write by filter changes exactly the documents a count finds,
        /// and only those.
        #[test]
        fn writes_by_filter_change_exactly_the_matches(
            people in prop::collection::vec(person(), 0..20),
            below in 0i64..7,
            delete in any::<bool>(),
        ) {
            let mut log = Log::with_collection("people");
            for body in people {
                log.insert(body);
            }
            let wanted = json!({"age": {"$lt": below}});
            let matching = log.store.count("people", &filter(wanted.clone())).unwrap();
            let before = log.store.clone();
            let command = if delete {
                DocCommand::DeleteWhere { collection: "people".into(), filter: wanted }
            } else {
                DocCommand::UpdateWhere {
                    collection: "people".into(),
                    filter: wanted,
                    patch: json!({"seen": true}),
                }
            };
            prop_assert_eq!(log.apply(command), DocOutcome::Changed { count: matching });
            for (id, old) in &before.collections["people"] {
                let is_match = old.body["age"].as_f64().is_some_and(|age| age < below as f64);
                let now = log.store.get("people", id);
                match (is_match, delete) {
                    (true, true) => prop_assert!(now.is_none()),
                    (true, false) => {
                        let now = now.unwrap();
                        prop_assert_eq!(now.version, old.version + 1);
                        prop_assert_eq!(&now.body["seen"], &json!(true));
                    }
                    (false, _) => prop_assert_eq!(now, Some(old)),
                }
            }
        }
    }
}
