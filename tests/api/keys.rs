//! `API_KEYS_FILE`: keys with scopes. A `read` key may GET and HEAD the user routes and
//! gets 403 for anything else; a `write` key may do everything; an unknown key gets 401.
//! Reloading on SIGHUP needs a process of its own: see tests/cli/sighup_reloads_the_keys.rs.

use crate::helpers::*;

/// Secrets and their SHA-256, computed outside the code under test
/// (`printf %s SECRET | sha256sum`).
pub const READER: &str =
    "uak_reader_0000000000000000000000000000000000000000000000000000000000000001";
pub const READER_HASH: &str =
    "sha256:8bbee9c5429e8c5be7a0c33f9d873f5fa9cc3aa1e34a79322592d1c741e5afc1";
pub const WRITER: &str =
    "uak_writer_0000000000000000000000000000000000000000000000000000000000000002";
pub const WRITER_HASH: &str =
    "sha256:a0f866ae84e8dd27e0917b816af35ae00cc50330b24d61e874c9e2e2f5afd046";

/// An app whose keys file holds `reader` (read) and `writer` (read,write).
fn spawn_with_keys() -> (TestApp, TempDir) {
    let dir = TempDir::new("user-api-keys");
    let file = dir.write(
        "api_keys",
        &format!(
            "# name scopes hash\nreader read {READER_HASH}\n\nwriter read,write {WRITER_HASH}\n"
        ),
    );
    let app = spawn_app_with(|vars| {
        vars.insert("API_KEYS_FILE".into(), file.display().to_string());
    });
    (app, dir)
}

fn send(app: &TestApp, method: &str, path: &str, secret: &str) -> HttpResponse {
    let auth = format!("Bearer {secret}");
    let mut headers = vec![("Authorization", auth.as_str())];
    let body = matches!(method, "POST" | "PUT" | "PATCH")
        .then(|| br#"{"first_name": "Grace", "last_name": "Hopper"}"#.to_vec());
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    app.raw(method, path, &headers, body.as_deref())
}

fn create(app: &TestApp) -> i64 {
    let r = send(app, "POST", "/users", WRITER);
    assert_eq!(r.status, 201, "{}", r.text());
    id_of(&r.json())
}

#[test]
fn a_read_key_may_get_and_head_but_gets_403_for_every_change() {
    let (app, _dir) = spawn_with_keys();
    let id = create(&app);

    for (method, path) in [
        ("GET", "/users".to_owned()),
        ("HEAD", "/users".to_owned()),
        ("GET", format!("/user/{id}")),
        ("HEAD", format!("/users/{id}")),
    ] {
        let r = send(&app, method, &path, READER);

        assert_eq!(
            r.status,
            200,
            "{method} {path} with the read key: {}",
            r.text()
        );
    }
    for (method, path) in [
        ("POST", "/user".to_owned()),
        ("POST", "/users".to_owned()),
        ("PUT", format!("/user/{id}")),
        ("PATCH", format!("/users/{id}")),
        ("DELETE", format!("/user/{id}")),
    ] {
        let context = format!("{method} {path} with the read key");

        let r = send(&app, method, &path, READER);

        let body = assert_error(&r, 403, &context);
        assert!(
            body["error"].as_str().unwrap_or_default().contains("write"),
            "{context}: the error names the missing scope: {body}"
        );
        assert!(r.header("www-authenticate").is_none(), "{context}");
    }
    assert_eq!(count_users(&app), 1, "nothing was created or deleted");
    let r = send(&app, "GET", &format!("/user/{id}"), READER);
    assert_eq!(r.json()["first_name"], "Grace", "nothing was changed");
}

#[test]
fn a_write_key_may_read_and_change() {
    let (app, _dir) = spawn_with_keys();
    let id = create(&app);

    for (method, path, expected) in [
        ("GET", "/users".to_owned(), 200),
        ("HEAD", format!("/user/{id}"), 200),
        ("PUT", format!("/user/{id}"), 200),
        ("PATCH", format!("/users/{id}"), 200),
        ("DELETE", format!("/users/{id}"), 204),
    ] {
        let r = send(&app, method, &path, WRITER);

        assert_eq!(
            r.status,
            expected,
            "{method} {path} with the write key: {}",
            r.text()
        );
    }
}

#[test]
fn an_unknown_key_gets_401_with_a_bearer_challenge_and_a_json_error() {
    let (app, _dir) = spawn_with_keys();
    let near = format!("{}0", &READER[..READER.len() - 1]);
    let hash_as_secret = READER_HASH.to_owned();
    let name_as_secret = "reader".to_owned();

    for secret in [near, hash_as_secret, name_as_secret, "".to_owned()] {
        for method in ["GET", "POST"] {
            let context = format!("{method} /users with {secret:?}");

            let r = send(&app, method, "/users", &secret);

            assert_error(&r, 401, &context);
            assert!(!r.body.is_empty(), "{context}: the body is empty");
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.to_ascii_lowercase().starts_with("bearer"),
                "{context}: WWW-Authenticate is {challenge:?}"
            );
        }
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn metrics_count_requests_by_key_name_and_never_show_a_secret_or_hash() {
    let (app, _dir) = spawn_with_keys();
    create(&app);
    for _ in 0..3 {
        send(&app, "GET", "/users", READER);
    }
    send(&app, "DELETE", "/user/1", READER);
    send(&app, "GET", "/users", "not-a-key");

    let text = app.metrics().text();

    assert!(
        text.contains("http_requests_by_key_total{key=\"reader\"} 4\n"),
        "three GETs and one 403 for reader:\n{text}"
    );
    assert!(
        text.contains("http_requests_by_key_total{key=\"writer\"} 1\n"),
        "{text}"
    );
    assert_eq!(
        text.matches("http_requests_by_key_total{").count(),
        2,
        "one series per key, none for an unknown secret:\n{text}"
    );
    for secret in [
        READER,
        WRITER,
        &READER_HASH[7..],
        &WRITER_HASH[7..],
        "not-a-key",
    ] {
        assert!(!text.contains(secret), "/metrics shows {secret}");
    }
}

#[test]
fn health_metrics_and_openapi_stay_open_with_keys() {
    let (app, _dir) = spawn_with_keys();

    for path in ["/health", "/health/live", "/metrics", "/openapi.json"] {
        let r = app.raw("GET", path, &[], None);

        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    }
}
