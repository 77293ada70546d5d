//! The statuses of API.md's Errors table that are not about one resource: 404 for no
//! route, 405 with `Allow`, 413, 415 and an opaque 500.

use std::time::{Duration, Instant};

use crate::helpers::*;

/// The three body-carrying routes on both paths, for a user `id`.
fn body_routes(id: i64) -> Vec<(&'static str, String)> {
    vec![
        ("POST", "/user".to_owned()),
        ("POST", "/users".to_owned()),
        ("PUT", format!("/user/{id}")),
        ("PUT", format!("/users/{id}")),
        ("PATCH", format!("/user/{id}")),
        ("PATCH", format!("/users/{id}")),
    ]
}

/// A valid body for `method` whose JSON is padded with spaces to exactly `len` bytes.
fn body_of_len(method: &str, len: usize) -> Vec<u8> {
    let email = format!("pad{len}{}@example.com", method.len());
    let mut body = serde_json::to_vec(&json!({
        "first_name": "Ada", "last_name": "Lovelace", "email": email
    }))
    .unwrap();
    assert!(body.len() <= len);
    body.splice(1..1, std::iter::repeat_n(b' ', len - body.len()));
    body
}

/// `method path` with `body` as `Content-Type: application/json`, whatever the bytes.
fn send_json_bytes(app: &TestApp, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    app.request(
        method,
        path,
        &[("Content-Type", "application/json")],
        Some(body),
    )
}

#[test]
fn unknown_routes_return_404() {
    let app = spawn_app();
    for (method, target) in [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/userss"),
        ("GET", "/user/1/extra"),
        ("GET", "/users/1/2"),
        ("GET", "/health/nope"),
        ("GET", "/metrics/x"),
        ("GET", "/openapi.yaml"),
        ("POST", "/nope"),
        ("DELETE", "/api/users/1"),
    ] {
        let r = app.request(method, target, &[], None);

        assert_error(&r, 404, &format!("{method} {target}"));
    }
}

#[test]
fn known_paths_return_405_with_allow_for_other_methods() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    let item = ["GET", "HEAD", "PUT", "PATCH", "DELETE"];
    let collection = ["GET", "HEAD", "POST"];
    let read_only = ["GET", "HEAD"];
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("POST", format!("/user/{id}"), &item),
        ("POST", format!("/users/{id}"), &item),
        ("DELETE", "/users".to_owned(), &collection),
        ("PUT", "/users".to_owned(), &collection),
        ("PATCH", "/users".to_owned(), &collection),
        ("DELETE", "/user".to_owned(), &["POST"]),
        ("POST", "/health".to_owned(), &read_only),
        ("DELETE", "/health/live".to_owned(), &read_only),
        ("PUT", "/health/ready".to_owned(), &read_only),
        ("POST", "/metrics".to_owned(), &read_only),
        ("DELETE", "/openapi.json".to_owned(), &read_only),
    ];
    for (method, path, allowed) in cases {
        let context = format!("{method} {path}");

        let r = send_json_bytes(&app, method, &path, b"{}");

        assert_error(&r, 405, &context);
        let allow: Vec<String> = r
            .headers_named("allow")
            .iter()
            .flat_map(|v| v.split(','))
            .map(|m| m.trim().to_ascii_uppercase())
            .collect();
        for m in allowed {
            assert!(
                allow.iter().any(|a| a == m),
                "{context}: Allow {allow:?} lacks {m}"
            );
        }
        assert!(
            !allow.iter().any(|a| a == method),
            "{context}: Allow {allow:?} lists the refused method"
        );
    }
    assert_eq!(app.get_user(id).status, 200, "no 405 touched the user");
}

#[test]
fn body_requests_return_415_when_content_type_is_missing_or_not_json() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    let body = serde_json::to_vec(&json!({"first_name": "A", "last_name": "B"})).unwrap();
    for (method, path) in body_routes(id) {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("text/json"),
            Some("application/jsonx"),
            Some("application/json-patch+json"),
            Some(""),
        ] {
            let headers: Vec<(&str, &str)> = content_type
                .map(|ct| ("Content-Type", ct))
                .into_iter()
                .collect();

            let r = app.request(method, &path, &headers, Some(&body));

            assert_error(&r, 415, &format!("{method} {path} with {content_type:?}"));
        }
    }
    assert_eq!(count_users(&app), 1, "nothing was created");
}

#[test]
fn body_requests_accept_json_with_a_charset_or_in_another_case() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    for (i, content_type) in [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
    ]
    .into_iter()
    .enumerate()
    {
        let body =
            serde_json::to_vec(&json!({"first_name": format!("A{i}"), "last_name": "B"})).unwrap();
        for (method, path, expected) in [
            ("POST", "/user".to_owned(), 201),
            ("PUT", format!("/user/{id}"), 200),
            ("PATCH", format!("/users/{id}"), 200),
        ] {
            let r = app.request(
                method,
                &path,
                &[("Content-Type", content_type)],
                Some(&body),
            );

            assert_eq!(
                r.status,
                expected,
                "{method} {path} with {content_type:?}: {}",
                r.text()
            );
        }
    }
}

#[test]
fn body_requests_return_413_when_larger_than_max_body_bytes() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_BODY_BYTES".into(), "1024".into());
    });
    let id = app.create_named("Ada", "Lovelace", None);
    for (method, path) in body_routes(id) {
        let body = body_of_len(method, 1025);

        let r = send_json_bytes(&app, method, &path, &body);

        assert_error(&r, 413, &format!("{method} {path} with 1025 bytes"));
    }
    assert_eq!(count_users(&app), 1, "nothing was created");
}

#[test]
fn body_requests_succeed_at_exactly_max_body_bytes() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_BODY_BYTES".into(), "1024".into());
    });
    let id = app.create_named("Ada", "Lovelace", None);
    for (method, path, expected) in [
        ("POST", "/user".to_owned(), 201),
        ("PUT", format!("/user/{id}"), 200),
        ("PATCH", format!("/user/{id}"), 200),
    ] {
        let body = body_of_len(method, 1024);

        let r = send_json_bytes(&app, method, &path, &body);

        assert_eq!(
            r.status,
            expected,
            "{method} {path} with 1024 bytes: {}",
            r.text()
        );
    }
}

#[test]
fn create_user_returns_413_over_the_default_limit_of_65536_bytes() {
    let app = spawn_app();

    let at_limit = send_json_bytes(&app, "POST", "/user", &body_of_len("POST", 65536));
    let over = send_json_bytes(&app, "POST", "/user", &body_of_len("PUT", 65537));

    assert_eq!(at_limit.status, 201, "65536 bytes: {}", at_limit.text());
    assert_error(&over, 413, "65537 bytes");
}

#[test]
fn create_user_returns_413_without_waiting_for_an_oversized_body() {
    let app = spawn_app();
    let mut conn = app.connection();
    conn.set_read_timeout(Duration::from_secs(10)).unwrap();
    let started = Instant::now();

    // Act: announce 100 MB, send a few bytes, then wait for the answer.
    conn.write_raw(
        b"POST /user HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 100000000\r\n\r\n{\"first_name\": ",
    )
    .unwrap();
    let r = conn
        .read_response(false)
        .expect("a response before the body is sent");

    assert_error(&r, 413, "Content-Length 100000000");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "413 took {:?}",
        started.elapsed()
    );
}

#[test]
fn get_user_returns_an_opaque_500_when_the_schema_is_broken() {
    // Arrange: break the table under the running app.
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    app.db()
        .batch_execute("ALTER TABLE users RENAME TO users_moved_away")
        .expect("rename the table");

    // Act
    let r = app.get_user(id);

    // Assert
    let body = assert_error(&r, 500, "GET with the users table gone");
    let message = body["error"].as_str().unwrap().to_lowercase();
    assert!(
        !message.contains("users_moved_away") && !message.contains("does not exist"),
        "the 500 names no table: {message:?}"
    );
    assert_eq!(app.health_live().status, 200, "the server still serves");
}

#[test]
fn requests_return_429_with_retry_after_past_the_configured_rate_limit() {
    let app = spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_PER_SEC".into(), "1".into());
        vars.insert("RATE_LIMIT_BURST".into(), "2".into());
    });
    let mut conn = app.connection();

    let statuses: Vec<HttpResponse> = (0..6)
        .map(|_| conn.send("GET", "/users", &[], None).unwrap())
        .collect();

    assert_eq!(
        statuses[0].status, 200,
        "the first request is within the burst"
    );
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| {
            panic!(
                "no 429 in six quick requests with a burst of 2: {:?}",
                statuses.iter().map(|r| r.status).collect::<Vec<_>>()
            )
        });
    assert_error(limited, 429, "past the rate limit");
    let retry_after = limited.header("retry-after").unwrap_or_default();
    assert!(
        !retry_after.is_empty() && retry_after.bytes().all(|b| b.is_ascii_digit()),
        "Retry-After is {retry_after:?}"
    );
}
