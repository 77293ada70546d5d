//! What every response carries (`Content-Type`, `X-Request-Id`), HEAD wherever GET
//! works, keep-alive and `Connection: close`, and chunked request bodies.

use std::time::Duration;

use crate::helpers::*;

/// Every GET route of API.md, for a user `id`.
fn get_targets(id: i64) -> Vec<String> {
    vec![
        format!("/user/{id}"),
        format!("/users/{id}"),
        "/users".to_owned(),
        "/users?limit=1&offset=0".to_owned(),
        "/health".to_owned(),
        "/health/live".to_owned(),
        "/health/ready".to_owned(),
        "/metrics".to_owned(),
        "/openapi.json".to_owned(),
    ]
}

#[test]
fn every_response_has_a_json_content_type_except_metrics() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    let mut requests: Vec<(String, String, Option<Value>)> = get_targets(id)
        .into_iter()
        .map(|t| ("GET".to_owned(), t, None))
        .collect();
    requests.extend([
        (
            "POST".into(),
            "/user".into(),
            Some(json!({"first_name": "A", "last_name": "B"})),
        ),
        (
            "PUT".into(),
            format!("/user/{id}"),
            Some(json!({"first_name": "A", "last_name": "B"})),
        ),
        (
            "PATCH".into(),
            format!("/users/{id}"),
            Some(json!({"last_name": "C"})),
        ),
        ("GET".into(), "/user/0".into(), None),
        ("GET".into(), "/user/777777".into(), None),
        ("GET".into(), "/nowhere".into(), None),
        ("POST".into(), "/health".into(), None),
        (
            "POST".into(),
            "/user".into(),
            Some(json!({"first_name": ""})),
        ),
    ]);

    for (method, target, body) in requests {
        let r = match &body {
            Some(b) => app.json(&method, &target, b),
            None => app.request(&method, &target, &[], None),
        };

        let context = format!("{method} {target} ({})", r.status);
        if target == "/metrics" {
            let ct = r.header("content-type").unwrap_or_default();
            assert!(
                ct.starts_with("text/plain; version=0.0.4"),
                "{context}: {ct:?}"
            );
        } else {
            assert_json_content_type(&r, &context);
        }
        assert_request_id(&r, &context);
    }
}

#[test]
fn request_id_is_echoed_when_the_client_sends_a_sane_one() {
    let app = spawn_app();
    let longest = "a".repeat(64);
    for (target, id) in [
        ("/health/live", "abc-1.2_Z"),
        ("/users", "0123456789abcdef"),
        ("/user/0", "x"),
        ("/nowhere", longest.as_str()),
    ] {
        let r = app.request("GET", target, &[("X-Request-Id", id)], None);

        assert_eq!(
            r.header("x-request-id"),
            Some(id),
            "GET {target} with id {id:?}"
        );
    }
}

#[test]
fn request_id_is_replaced_when_the_client_sends_an_unsafe_one() {
    let app = spawn_app();
    let too_long = "b".repeat(65);
    for id in [too_long.as_str(), "a b", "a/b", "ab\"cd", "<script>", "a,b"] {
        let r = app.request("GET", "/health/live", &[("X-Request-Id", id)], None);

        let echoed = assert_request_id(&r, &format!("id {id:?}"));
        assert_ne!(echoed, id, "the unsafe id {id:?} is not echoed");
    }
}

#[test]
fn request_id_is_replaced_when_it_has_non_ascii_bytes() {
    let app = spawn_app();

    let r = app.request("GET", "/health/live", &[("X-Request-Id", "réq-é")], None);

    assert_eq!(r.status, 200, "{}", r.text());
    let echoed = assert_request_id(&r, "id \"réq-é\"");
    assert_ne!(echoed, "réq-é");
}

#[test]
fn request_ids_differ_between_requests() {
    let app = spawn_app();

    let ids: std::collections::HashSet<String> = (0..20)
        .map(|_| assert_request_id(&app.health_live(), "/health/live"))
        .collect();

    assert_eq!(ids.len(), 20, "every request gets a fresh id");
}

#[test]
fn head_works_wherever_get_does_with_the_same_headers_and_no_body() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));
    let mut conn = app.connection();

    for target in get_targets(id) {
        let (get, head) = get_then_head(&mut conn, &target);

        assert_eq!(head.status, get.status, "HEAD {target}");
        assert_eq!(head.status, 200, "HEAD {target}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {target}"
        );
        if let Some(len) = head.header("content-length") {
            if target != "/metrics" && !target.starts_with("/health") {
                // Health and metrics bodies change between two requests; the rest do not.
                assert_eq!(len, get.body.len().to_string(), "HEAD {target}");
            }
        }
        assert_request_id(&head, &target);
    }
    // Had any HEAD response carried a body, this one would not parse.
    let r = conn.send("GET", &format!("/user/{id}"), &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], id);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let app = spawn_app();
    let mut conn = app.connection();
    let body = serde_json::to_vec(&ada()).unwrap();

    let created = conn
        .send(
            "POST",
            "/user",
            &[("Content-Type", "application/json")],
            Some(&body),
        )
        .unwrap();
    let id = id_of(&created.json());
    let responses: Vec<HttpResponse> = [
        ("GET", format!("/user/{id}")),
        ("GET", "/users".to_owned()),
        ("GET", "/health/live".to_owned()),
        ("GET", "/nowhere".to_owned()),
        ("HEAD", format!("/users/{id}")),
        ("GET", "/user/0".to_owned()),
        ("DELETE", format!("/user/{id}")),
        ("GET", format!("/user/{id}")),
    ]
    .iter()
    .map(|(method, target)| {
        conn.send(method, target, &[], None)
            .unwrap_or_else(|e| panic!("{method} {target} on the kept-alive connection: {e}"))
    })
    .collect();

    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(created.status, 201);
    assert_eq!(statuses, [200, 200, 200, 404, 200, 400, 204, 404]);
    for r in &responses {
        assert!(
            !r.closes_connection(),
            "the server keeps the connection: {r:?}"
        );
    }
}

#[test]
fn connection_close_is_honoured() {
    let app = spawn_app();
    let mut conn = app.connection();

    let first = conn.send("GET", "/health/live", &[], None).unwrap();
    let last = conn
        .send("GET", "/health/live", &[("Connection", "close")], None)
        .unwrap();

    assert_eq!(first.status, 200);
    assert_eq!(last.status, 200);
    assert!(
        last.closes_connection(),
        "the last response says Connection: close (RFC 9112 9.6)"
    );
    assert!(
        conn.closed_by_server_within(Duration::from_secs(5)),
        "the server closes the connection after Connection: close"
    );
}

/// `POST /user` of JSON sent as `chunks` in chunked transfer coding.
fn post_chunked(app: &TestApp, chunks: &[&[u8]]) -> HttpResponse {
    let mut body = Vec::new();
    for chunk in chunks {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    app.request(
        "POST",
        "/user",
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
        Some(&body),
    )
}

#[test]
fn create_user_accepts_a_chunked_body() {
    let app = spawn_app();
    let json = serde_json::to_vec(&ada()).unwrap();
    let (a, b) = json.split_at(10);

    let r = post_chunked(&app, &[a, b]);

    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["email"], "ada@example.com");
}

#[test]
fn create_user_returns_413_when_a_chunked_body_grows_past_max_body_bytes() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_BODY_BYTES".into(), "1024".into());
    });
    let spaces = [b' '; 0x200];

    let r = post_chunked(&app, &[&spaces[..]; 4]);

    assert_error(&r, 413, "a 2048-byte chunked body");
    assert_eq!(count_users(&app), 0);
}

/// `GET target` from `n` threads let go at once, each on a new connection (with
/// `read_timeout` when given).
fn burst_of_new_connections(
    addr: std::net::SocketAddr,
    n: usize,
    target: String,
    read_timeout: Option<Duration>,
) -> Vec<std::thread::JoinHandle<std::io::Result<HttpResponse>>> {
    let start = std::sync::Arc::new(std::sync::Barrier::new(n));
    (0..n)
        .map(|_| {
            let (start, target) = (std::sync::Arc::clone(&start), target.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut conn = HttpConnection::open(addr)?;
                if let Some(timeout) = read_timeout {
                    conn.set_read_timeout(timeout)?;
                }
                conn.send("GET", &target, &[], None)
            })
        })
        .collect()
}

#[test]
fn new_connections_are_served_while_other_requests_wait_on_the_database() {
    // Arrange: four requests, sent at once on new connections, blocked behind our lock.
    let app = spawn_app_with(|vars| {
        vars.insert("WORKERS".into(), "8".into());
        vars.insert("DB_POOL_SIZE".into(), "8".into());
    });
    let id = app.create_named("Ada", "Lovelace", None);
    wait_for_idle_connections(app.addr, 5.0);
    let mut locker = app.db();
    let lock = lock_users(&mut locker, "ACCESS EXCLUSIVE");
    let addr = app.addr;
    let blocked = burst_of_new_connections(addr, 4, format!("/user/{id}"), None);
    let reached = crate::common::pg::wait_for_lock_waiters(
        &mut app.db(),
        &app.db_name,
        4,
        Duration::from_secs(10),
    );

    // Act: a burst of new connections for a route that needs no database.
    let probes = burst_of_new_connections(
        addr,
        4,
        "/health/live".to_owned(),
        Some(Duration::from_secs(3)),
    );
    let probes: Vec<_> = probes.into_iter().map(|t| t.join().unwrap()).collect();
    lock.commit().unwrap();
    let blocked: Vec<_> = blocked.into_iter().map(|t| t.join().unwrap()).collect();

    // Assert
    let blocked: Vec<_> = blocked
        .iter()
        .map(|r| r.as_ref().map(|r| r.status).map_err(|e| e.to_string()))
        .collect();
    assert!(
        reached,
        "the four requests never all waited on the lock: {blocked:?}"
    );
    for (i, probe) in probes.iter().enumerate() {
        let status = probe.as_ref().map(|r| r.status).map_err(|e| e.to_string());
        assert_eq!(
            status,
            Ok(200),
            "new connection {i} while four requests wait on the database (4 of 8 workers free)"
        );
    }
    assert_eq!(blocked, vec![Ok(200); 4], "the blocked requests complete");
}

#[test]
fn every_json_body_ends_with_a_newline_that_content_length_counts() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    let mut responses: Vec<(String, HttpResponse)> = get_targets(id)
        .into_iter()
        .filter(|t| t != "/metrics")
        .map(|t| (t.clone(), app.request("GET", &t, &[], None)))
        .collect();
    responses.push(("GET /user/0 (an error)".into(), app.get_user(0)));

    for (what, r) in responses {
        assert_eq!(r.body.last(), Some(&b'\n'), "{what}: {:?}", r.text());
        assert_eq!(
            r.header("Content-Length"),
            Some(r.body.len().to_string().as_str()),
            "{what}"
        );
    }
}
