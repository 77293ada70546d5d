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
