//! `/openapi.json`: an OpenAPI 3 document of exactly the routes of API.md.

use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::*;

/// API.md's routes: path template and the methods served there (besides HEAD).
fn documented_routes() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let item: &[&str] = &["get", "put", "patch", "delete"];
    [
        ("/user", &["post"][..]),
        ("/users", &["get", "post"]),
        ("/user/{id}", item),
        ("/users/{id}", item),
        ("/health", &["get"]),
        ("/health/live", &["get"]),
        ("/health/ready", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
    ]
    .into_iter()
    .map(|(p, m)| (p, m.iter().copied().collect()))
    .collect()
}

const OPERATIONS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document(app: &TestApp) -> Value {
    let r = app.openapi();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_json_content_type(&r, "/openapi.json");
    r.json()
}

#[test]
fn openapi_json_is_an_openapi_3_document() {
    let app = spawn_app();

    let doc = document(&app);

    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi is {version:?}");
    assert!(doc["info"]["title"].is_string(), "info.title");
    assert!(doc["info"]["version"].is_string(), "info.version");
    assert!(doc["paths"].is_object(), "paths");
}

#[test]
fn openapi_json_documents_exactly_the_routes_of_the_contract() {
    let app = spawn_app();

    let doc = document(&app);

    let paths = doc["paths"].as_object().expect("paths is an object");
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let expected = documented_routes();
    assert_eq!(
        documented,
        expected.keys().copied().collect::<BTreeSet<_>>(),
        "the documented paths"
    );
    for (path, methods) in &expected {
        let item = &paths[*path];
        for method in methods {
            let op = &item[*method];
            assert!(
                op.is_object(),
                "{} {path} is documented",
                method.to_uppercase()
            );
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{} {path} documents its responses",
                method.to_uppercase()
            );
        }
        for op in OPERATIONS {
            if item.get(op).is_some() && op != "head" {
                assert!(
                    methods.contains(op),
                    "{} {path} is documented but not in API.md",
                    op.to_uppercase()
                );
            }
        }
    }
}

#[test]
fn openapi_json_references_resolve() {
    let app = spawn_app();
    let doc = document(&app);
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);

    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("$ref {r:?} points outside the document"));

        assert!(
            doc.pointer(pointer).is_some(),
            "$ref {r:?} does not resolve"
        );
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(s)) => out.push(s.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_documented_operation_is_served() {
    let app = spawn_app();
    let doc = document(&app);
    let body = json!({"first_name": "A", "last_name": "B"});
    let mut operations: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for op in OPERATIONS {
            if item.get(op).is_some() {
                operations.push((op.to_uppercase(), path.clone()));
            }
        }
    }
    let id = app.create_named("Ada", "Lovelace", None);
    for (method, path) in operations {
        // Each delete gets a user of its own, so that every operation finds one.
        let id = if method == "DELETE" {
            app.create_named("Del", "Me", None)
        } else {
            id
        };
        let target = path.replace("{id}", &id.to_string());

        let r = if ["POST", "PUT", "PATCH"].contains(&method.as_str()) {
            app.json(&method, &target, &body)
        } else {
            app.request(&method, &target, &[], None)
        };

        assert!(
            r.status < 400,
            "{method} {path} is documented but answers {}: {}",
            r.status,
            r.text()
        );
    }
}

#[test]
fn openapi_json_carries_the_version_in_cargo_toml() {
    let app = spawn_app();

    let doc = document(&app);

    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

// ---- the document against docs/API.md ---------------------------------------------------

/// docs/API.md, the contract in the repository.
fn contract() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The success status API.md's Routes table gives each method and path (both paths of a
/// row, and the plural one where a row says "(and plural)").
fn contract_successes(api_md: &str) -> BTreeMap<(String, String), u16> {
    let table = api_md
        .split("## Routes")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Routes section in API.md");
    let mut successes = BTreeMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (routes, success) = (cells[1], cells[2]);
        let own: Option<u16> = success
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 3)
            .and_then(|w| w.parse().ok());
        // "same as `/health`": the status of GET on that path, from an earlier row.
        let same_as = || {
            let other = success.strip_prefix("same as `")?.split('`').next()?;
            successes
                .get(&("GET".to_owned(), other.to_owned()))
                .copied()
        };
        let status = own
            .or_else(same_as)
            .unwrap_or_else(|| panic!("no status in the success cell of {row:?}"));
        for route in routes.split('`').skip(1).step_by(2) {
            let (method, path) = route.split_once(' ').expect("`METHOD /path`");
            successes.insert((method.to_owned(), path.to_owned()), status);
            if routes.contains("(and plural)") {
                let plural = path.replacen("/user/", "/users/", 1);
                successes.insert((method.to_owned(), plural), status);
            }
        }
    }
    successes
}

#[test]
fn openapi_statuses_per_route_follow_the_contract_in_docs_api_md() {
    let app = spawn_app();
    let doc = document(&app);
    let api_md = contract();
    let successes = contract_successes(&api_md);
    let errors = contract_error_statuses().clone();
    assert!(
        successes.len() >= 16 && errors.len() >= 9,
        "API.md's tables were not read: {successes:?} {errors:?}"
    );

    let mut problems = Vec::new();
    let mut error_statuses_used = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            let method = method.to_uppercase();
            let documented: BTreeSet<u16> = responses
                .keys()
                .map(|s| s.parse().unwrap_or_else(|_| panic!("{method} {path}: {s}")))
                .collect();
            // HEAD answers as GET does (API.md: "HEAD works wherever GET does").
            let as_method = if method == "HEAD" {
                "GET"
            } else {
                method.as_str()
            };
            let Some(&success) = successes.get(&(as_method.to_owned(), path.clone())) else {
                problems.push(format!("{method} {path} is not in API.md's Routes table"));
                continue;
            };
            // What API.md says of each status, route by route.
            let user_route = path.starts_with("/user");
            let has_id = path.contains("{id}");
            let has_body = ["POST", "PUT", "PATCH"].contains(&as_method);
            let mut expected = BTreeSet::from([success]);
            let is_write = as_method != "GET";
            if user_route {
                // 400 bad input, 401 and 403 (Authentication: every /user… route needs a
                // key, and a key its scope), 429 when configured, 503 and 500 for what
                // the database and the server do.
                expected.extend([400, 401, 403, 429, 500, 503]);
                if has_id {
                    expected.insert(404); // no such user
                }
                if has_body {
                    expected.extend([409, 413, 415]); // email, size, Content-Type
                }
                if is_write {
                    // Idempotency-Key: 409 while its first request runs, 422 when it
                    // named another request.
                    expected.extend([409, 422]);
                }
                if has_id && is_write {
                    expected.extend([412, 428]); // If-Match, REQUIRE_IF_MATCH
                }
                if has_id && !is_write {
                    expected.insert(304); // If-None-Match
                }
            } else if path == "/health" || path == "/health/ready" {
                expected.insert(503); // while the database can't be reached
            }
            if documented != expected {
                problems.push(format!(
                    "{method} {path}: openapi.json has {documented:?}, API.md implies {expected:?}"
                ));
            }
            error_statuses_used.extend(documented.iter().filter(|s| **s >= 400));
        }
    }
    let unknown: Vec<&u16> = error_statuses_used.difference(&errors).collect();
    assert!(
        unknown.is_empty(),
        "openapi.json uses statuses API.md's Errors table lacks: {unknown:?}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The property names and required names of a component schema.
fn schema_keys(doc: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &doc["components"]["schemas"][name];
    assert_eq!(
        schema["additionalProperties"],
        json!(false),
        "{name} admits keys API.md does not name"
    );
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has properties"))
        .keys()
        .cloned()
        .collect();
    let required = schema["required"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has required"))
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    (properties, required)
}

#[test]
fn openapi_body_schemas_have_exactly_the_keys_of_docs_api_md() {
    let app = spawn_app();
    let doc = document(&app);
    let api_md = contract();
    // The user: the example object under "Resource: user".
    let example = api_md
        .split("```json")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a JSON example of a user in API.md");
    let user: Value = serde_json::from_str(example).expect("the example user is JSON");
    let user_keys: BTreeSet<String> = user.as_object().unwrap().keys().cloned().collect();
    // The error body: `{"error": ...}` with an optional `"field"` and no other keys.
    assert!(
        api_md.contains(r#"`{"error": "<one sentence for a person>"}`"#)
            && api_md.contains(r#"`"field": "<name>"`"#)
            && api_md.contains("no other keys"),
        "API.md's error body wording changed: update this test"
    );
    // The listing: the four keys of the Routes table's `GET /users` row.
    let listing_row = api_md
        .lines()
        .find(|l| l.starts_with("| `GET /users` |"))
        .expect("a GET /users row");
    let listing_keys: BTreeSet<String> = ["users", "limit", "offset", "next_after_id"]
        .into_iter()
        .filter(|k| listing_row.contains(&format!("\"{k}\"")))
        .map(str::to_owned)
        .collect();
    assert_eq!(listing_keys.len(), 4, "the GET /users row: {listing_row}");

    for (name, properties, required) in [
        ("User", user_keys.clone(), user_keys),
        (
            "Error",
            BTreeSet::from(["error".to_owned(), "field".to_owned()]),
            BTreeSet::from(["error".to_owned()]),
        ),
        ("UserList", listing_keys.clone(), listing_keys),
    ] {
        assert_eq!(
            schema_keys(&doc, name),
            (properties, required),
            "{name}: (properties, required) against API.md"
        );
    }
    // Every error answer of a user route is that Error object.
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/user") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                // 304 Not Modified has no body at all (API.md: If-None-Match).
                if status.starts_with('2') || status == "304" {
                    continue;
                }
                let response = match response["$ref"].as_str() {
                    Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap()],
                    None => response,
                };
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
            }
        }
    }
}
