//! `/health`, `/health/ready` and `/health/live`, and the 503s of a database that is down
//! or a pool with no connection to spare.

use std::time::{Duration, Instant};

use crate::common::pg::wait_for_lock_waiters;
use crate::helpers::*;

fn assert_health(r: &HttpResponse, status: u16, health: &str, database: &str, context: &str) {
    assert_eq!(r.status, status, "{context}: {}", r.text());
    assert_json_content_type(r, context);
    assert_request_id(r, context);
    let body = r.json();
    assert_eq!(body["status"], health, "{context}: {body}");
    assert_eq!(body["database"], database, "{context}: {body}");
    let ts = body["timestamp"].as_str().unwrap_or_default();
    assert!(
        ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{context}: timestamp {ts:?} is not RFC 3339 UTC"
    );
}

fn assert_retry_after(r: &HttpResponse, context: &str) {
    let value = r.header("retry-after").unwrap_or_default();
    assert!(
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        "{context}: Retry-After is {value:?}, not a number of seconds"
    );
}

#[test]
fn health_returns_200_healthy_with_the_database_ok() {
    let app = spawn_app();

    for path in ["/health", "/health/ready"] {
        let r = app.raw("GET", path, &[], None);

        assert_health(&r, 200, "healthy", "ok", path);
    }
}

#[test]
fn health_live_returns_200() {
    let app = spawn_app();

    let r = app.health_live();

    assert_eq!(r.status, 200);
    assert_json_content_type(&r, "/health/live");
    assert_request_id(&r, "/health/live");
    assert!(r.json().is_object(), "/health/live answers a JSON object");
}

#[test]
fn head_health_routes_return_the_get_headers_without_a_body() {
    let app = spawn_app();
    let mut conn = app.connection();

    for path in ["/health", "/health/live", "/health/ready"] {
        let (get, head) = get_then_head(&mut conn, path);

        assert_eq!(head.status, 200, "HEAD {path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {path}"
        );
        assert_request_id(&head, path);
    }
    assert_no_head_response_carried_a_body(&mut conn);
}

#[test]
fn requests_return_503_while_the_database_is_down_and_recover_without_a_restart() {
    // Arrange: an app on a cluster of its own, with a user in it.
    let cluster = TestCluster::start();
    let app = spawn_app_on(&cluster, |vars| {
        vars.insert("DB_POOL_TIMEOUT_MS".into(), "500".into());
    });
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));

    // Act: the database goes away.
    cluster.stop();

    // Assert: the user routes and the health checks say 503; live and metrics serve on.
    let body = Some(json!({"first_name": "A", "last_name": "B"}));
    for (method, path, body) in [
        ("GET", format!("/user/{id}"), None),
        ("GET", "/users".to_owned(), None),
        ("POST", "/user".to_owned(), body.clone()),
        ("PUT", format!("/user/{id}"), body.clone()),
        ("PATCH", format!("/users/{id}"), body),
        ("DELETE", format!("/user/{id}"), None),
    ] {
        let context = format!("{method} {path} with the database down");
        let started = Instant::now();

        let r = match &body {
            Some(b) => app.json(method, &path, b),
            None => app.request(method, &path, &[], None),
        };

        assert_error(&r, 503, &context);
        assert_retry_after(&r, &context);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{context}: took {:?}",
            started.elapsed()
        );
    }
    for path in ["/health", "/health/ready"] {
        let r = app.raw("GET", path, &[], None);
        assert_health(&r, 503, "unhealthy", "unavailable", path);
        assert_retry_after(&r, path);
    }
    assert_eq!(
        app.health_live().status,
        200,
        "/health/live during the outage"
    );
    assert_eq!(app.metrics().status, 200, "/metrics during the outage");

    // Act: the database comes back.
    cluster.start_again();

    // Assert: the same app serves again once /health says so.
    let healthy = poll_until(Duration::from_secs(30), || {
        (app.health().status == 200).then_some(())
    });
    assert!(healthy.is_some(), "/health did not recover within 30 s");
    for attempt in 0..5 {
        let r = app.get_user(id);
        assert_eq!(
            r.status,
            200,
            "GET /user/{id} attempt {attempt} after recovery: {}",
            r.text()
        );
    }
    let r = app.create_user(&json!({"first_name": "Grace", "last_name": "Hopper"}));
    assert_eq!(r.status, 201, "POST after recovery: {}", r.text());
}

#[test]
fn requests_return_503_when_no_pooled_connection_frees_up_in_time() {
    // Arrange: one pooled connection, held by a request blocked behind our lock.
    let app = spawn_app_with(|vars| {
        vars.insert("DB_POOL_SIZE".into(), "1".into());
        vars.insert("DB_POOL_TIMEOUT_MS".into(), "300".into());
    });
    let id = app.create_named("Ada", "Lovelace", None);
    let mut locker = app.db();
    let lock = lock_users(&mut locker, "ACCESS EXCLUSIVE");
    let blocked = get_in_background(app.addr, format!("/user/{id}"));
    assert!(
        wait_for_lock_waiters(&mut app.db(), &app.db_name, 1, Duration::from_secs(10)),
        "the first request never reached the database"
    );

    // Act
    let mut conn = app.connection();
    conn.set_read_timeout(Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    let r = conn.send("GET", &format!("/user/{id}"), &[], None);
    let waited = started.elapsed();
    lock.commit().unwrap();

    // Assert
    let r = r.expect("an answer within 10 s (is DB_POOL_SIZE=1 honoured?)");
    assert_error(&r, 503, "GET while the only connection is busy");
    assert_retry_after(&r, "pool timeout");
    assert!(
        waited < Duration::from_secs(3),
        "503 after {waited:?}, DB_POOL_TIMEOUT_MS is 300"
    );
    let first = blocked
        .join()
        .unwrap()
        .expect("the blocked request's answer");
    assert_eq!(first.status, 200, "the blocked request completes");
    let metrics = app.metrics().text();
    let timeouts: f64 = metrics
        .lines()
        .find(|l| l.starts_with("db_pool_wait_timeouts_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("db_pool_wait_timeouts_total in /metrics");
    assert!(timeouts >= 1.0, "db_pool_wait_timeouts_total is {timeouts}");
}

#[test]
fn app_connections_carry_application_name_user_api() {
    let app = spawn_app();
    app.create_user_ok(&ada());

    let names: Vec<Option<String>> = app
        .db()
        .query(
            "SELECT application_name FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            &[&app.db_name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    assert!(!names.is_empty(), "the app holds pooled connections");
    for name in names {
        assert_eq!(name.as_deref(), Some("user-api"));
    }
}

#[test]
fn reads_succeed_and_writes_never_500_when_the_server_has_ended_every_idle_pooled_session() {
    // Arrange: a database whose server ends any session idle for 300 ms (FATAL 57P05,
    // which the driver reads only when the connection is next used), as
    // `idle_session_timeout` and poolers do.
    let db = crate::common::pg::fresh_database();
    let mut admin = db.connect();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET idle_session_timeout = '300ms'",
            db.name
        ))
        .expect("set idle_session_timeout");
    let app = crate::common::spawn_app_in(db, |vars| {
        vars.insert("WORKERS".into(), "2".into());
        vars.insert("DB_POOL_SIZE".into(), "4".into());
    });
    let id = app.create_named("Ada", "Lovelace", None);

    for round in 0..3 {
        // Act: every pooled session has been ended by the time each request comes.
        std::thread::sleep(Duration::from_millis(700));
        let last = format!("Round {round}");
        let created = app.create_user(&serde_json::json!({
            "first_name": "Idle", "last_name": last
        }));
        std::thread::sleep(Duration::from_millis(700));
        let read = app.get_user(id);

        // Assert: the read ran again on a fresh connection. The write may have been
        // handed to the dead session before its end was seen, so it gets 503 (its
        // outcome is unknown to the app) or 201, never a 500; a 503 created nothing.
        assert_eq!(read.status, 200, "round {round}: {}", read.text());
        let rows = admin
            .query("SELECT 1 FROM users WHERE last_name = $1", &[&last])
            .expect("count")
            .len();
        match created.status {
            201 => assert_eq!(rows, 1, "round {round}"),
            503 => assert_eq!(rows, 0, "round {round}: a 503 write created a row"),
            other => panic!("round {round}: POST answered {other}: {}", created.text()),
        }
    }
}
