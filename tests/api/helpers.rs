//! What the API tests share: the harness (re-exported from `common`) and assertions on the
//! shapes API.md fixes.

pub use crate::common::*;
pub use serde_json::{Value, json};

/// A valid user body.
pub fn ada() -> Value {
    json!({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"})
}

/// The id of a user in a response.
pub fn id_of(user: &Value) -> i64 {
    user["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer id in {user}"))
}

/// The keys of `object`, sorted; panics, naming it `what`, if it is no object.
pub fn sorted_keys<'a>(object: &'a Value, what: &str) -> Vec<&'a str> {
    let obj = object
        .as_object()
        .unwrap_or_else(|| panic!("{what} is an object: {object}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// A user has exactly the six keys of API.md, with the right types.
pub fn assert_user_shape(user: &Value) {
    assert_eq!(
        sorted_keys(user, "a user"),
        [
            "created_at",
            "email",
            "first_name",
            "id",
            "last_name",
            "updated_at"
        ],
        "a user has exactly six keys: {user}"
    );
    let id = user["id"].as_i64().unwrap_or(0);
    assert!(id >= 1, "id is a positive 64-bit integer: {user}");
    assert!(user["first_name"].is_string(), "first_name: {user}");
    assert!(user["last_name"].is_string(), "last_name: {user}");
    assert!(
        user["email"].is_string() || user["email"].is_null(),
        "email is a string or null: {user}"
    );
    assert_timestamp(user["created_at"].as_str().unwrap_or_default());
    assert_timestamp(user["updated_at"].as_str().unwrap_or_default());
    assert!(
        user["updated_at"].as_str() >= user["created_at"].as_str(),
        "updated_at is not before created_at: {user}"
    );
}

/// RFC 3339 in UTC with microseconds: `2026-11-30T12:00:00.123456Z`. In this fixed form
/// comparing the strings compares the instants.
pub fn assert_timestamp(ts: &str) {
    // Each `0` of the shape stands for one ASCII digit; every other byte stands for itself.
    const SHAPE: &[u8] = b"0000-00-00T00:00:00.000000Z";
    let b = ts.as_bytes();
    let ok = b.len() == SHAPE.len()
        && b.iter().zip(SHAPE).all(|(&c, &s)| match s {
            b'0' => c.is_ascii_digit(),
            _ => c == s,
        });
    assert!(
        ok,
        "{ts:?} is not RFC 3339 UTC with six fractional digits (2026-11-30T12:00:00.123456Z)"
    );
}

/// `Content-Type: application/json` (a charset parameter is tolerated).
pub fn assert_json_content_type(r: &HttpResponse, context: &str) {
    let ct = r.header("content-type").unwrap_or_default();
    let media = ct.split(';').next().unwrap_or_default().trim();
    assert!(
        media.eq_ignore_ascii_case("application/json"),
        "{context}: Content-Type is {ct:?}, not application/json"
    );
}

/// An `X-Request-Id` of 1 to 64 of `[A-Za-z0-9._-]`.
pub fn assert_request_id(r: &HttpResponse, context: &str) -> String {
    let id = r
        .header("x-request-id")
        .unwrap_or_else(|| panic!("{context}: no X-Request-Id header"));
    assert!(
        (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        "{context}: X-Request-Id {id:?} is not 1-64 of [A-Za-z0-9._-]"
    );
    id.to_owned()
}

/// The statuses of docs/API.md's Errors table (`| 400 | ... |` rows), read once.
pub fn contract_error_statuses() -> &'static std::collections::BTreeSet<u16> {
    static STATUSES: std::sync::OnceLock<std::collections::BTreeSet<u16>> =
        std::sync::OnceLock::new();
    STATUSES.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let statuses: std::collections::BTreeSet<u16> = text
            .lines()
            .filter_map(|l| l.strip_prefix("| ")?.get(..3)?.parse().ok())
            .filter(|s| (400..600).contains(s))
            .collect();
        assert!(
            statuses.len() >= 9,
            "API.md's Errors table not found: {statuses:?}"
        );
        statuses
    })
}

/// Words that would betray a database error or a panic in a client's error message.
const LEAKS: [&str; 9] = [
    "sqlstate",
    "postgres",
    "duplicate key",
    "violates",
    "constraint",
    "panicked",
    "relation \"",
    "db error",
    "unwrap",
];

/// The response is an API.md error: this status, JSON `{"error": "..."}` with at most a
/// `field` besides, no internal detail, and the standard headers. Returns the body.
pub fn assert_error(r: &HttpResponse, status: u16, context: &str) -> Value {
    assert_eq!(r.status, status, "{context}: body {:?}", r.text());
    assert!(
        contract_error_statuses().contains(&status),
        "{context}: {status} is not in docs/API.md's Errors table"
    );
    assert_json_content_type(r, context);
    assert_request_id(r, context);
    let body: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "{context}: the error body is not JSON ({e}): {:?}",
            r.text()
        )
    });
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("{context}: the error body is not an object: {body}"));
    let message = obj
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{context}: no \"error\" string in {body}"));
    assert!(!message.trim().is_empty(), "{context}: empty error message");
    for key in obj.keys() {
        assert!(
            key == "error" || key == "field",
            "{context}: unexpected key {key:?} in the error body {body}"
        );
    }
    if let Some(field) = obj.get("field") {
        assert!(
            field.is_string(),
            "{context}: field is not a string: {body}"
        );
    }
    let lower = message.to_lowercase();
    for leak in LEAKS {
        assert!(
            !lower.contains(leak),
            "{context}: the error message leaks internals ({leak:?}): {message:?}"
        );
    }
    body
}

/// A 400 validation error; when it names a field, it names `field`.
pub fn assert_validation_error(r: &HttpResponse, field: &str, context: &str) {
    let body = assert_error(r, 400, context);
    if let Some(named) = body.get("field") {
        assert_eq!(named, field, "{context}: the error names the wrong field");
    }
}

/// How many rows `users` has.
pub fn count_users(app: &TestApp) -> i64 {
    app.db()
        .query_one("SELECT count(*) FROM users", &[])
        .expect("count users")
        .get(0)
}

/// `GET target` then `HEAD target` on `conn`.
pub fn get_then_head(conn: &mut HttpConnection, target: &str) -> (HttpResponse, HttpResponse) {
    let get = conn
        .send("GET", target, &[], None)
        .expect("an answer to GET");
    let head = conn
        .send("HEAD", target, &[], None)
        .expect("an answer to HEAD");
    (get, head)
}

/// After HEAD responses on `conn`, the next request is still answered: had one of them
/// carried a body, it would have been read as the next response's head.
pub fn assert_no_head_response_carried_a_body(conn: &mut HttpConnection) {
    let after = conn
        .send("GET", "/health/live", &[], None)
        .expect("the connection still answers");
    assert_eq!(after.status, 200, "a HEAD response carried a body");
}
