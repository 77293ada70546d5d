//! `serve` writes an access line per request with its request id, warns when it runs
//! without a token, and logs a 500 with its request id.

use std::time::Duration;

use crate::support::*;

/// `serve` for `db`, logging at `info`, where access lines go.
fn serve_at_info(db: &common::TestDatabase) -> ServerProcess {
    ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
    ])
}

#[test]
fn serve_logs_each_request_with_its_request_id_to_stderr_and_log_file() {
    let db = fresh_database();
    let log_file = TempDir::new("user-api-log");
    let log_path = log_file.path().join("app.log");
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
        ("LOG_FILE", log_path.display().to_string()),
    ]);

    let r = server
        .get_with("/users?limit=2", &[("X-Request-Id", "access-line-4711")])
        .unwrap();

    assert_eq!(r.status, 200);
    let line = |text: &str| {
        text.lines()
            .find(|l| l.contains("access-line-4711"))
            .map(str::to_owned)
    };
    let found = poll_until(Duration::from_secs(5), || line(&server.stderr()));
    let access = found.unwrap_or_else(|| {
        panic!(
            "no stderr line has the request id; stderr: {}",
            server.stderr()
        )
    });
    for part in ["GET", "/users", "200"] {
        assert!(
            access.contains(part),
            "the access line lacks {part}: {access}"
        );
    }
    let in_file = poll_until(Duration::from_secs(5), || {
        line(&std::fs::read_to_string(&log_path).unwrap_or_default())
    });
    assert!(
        in_file.is_some(),
        "LOG_FILE has no access line for the request"
    );
}

#[test]
fn serve_warns_at_start_up_when_no_api_token_is_set() {
    let db = fresh_database();

    let server = serve_at_info(&db);

    let stderr = server.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("API_TOKEN") && (l.contains("WARN") || l.contains("warn"))),
        "no start-up warning names API_TOKEN: {stderr}"
    );
}

#[test]
fn serve_logs_a_500_with_its_request_id() {
    let db = fresh_database();
    let server = serve_at_info(&db);
    db.connect()
        .batch_execute("ALTER TABLE users RENAME TO users_elsewhere")
        .unwrap();

    let r = server
        .get_with("/user/1", &[("X-Request-Id", "boom-500-77")])
        .unwrap();

    assert_eq!(r.status, 500, "{}", r.text());
    let error_line = poll_until(Duration::from_secs(5), || {
        server
            .stderr()
            .lines()
            .find(|l| l.contains("boom-500-77") && l.contains("ERROR"))
            .map(str::to_owned)
    });
    assert!(
        error_line.is_some(),
        "no ERROR line with the request id: {}",
        server.stderr()
    );
}
