//! What the connection layer refuses by itself (400, 431, 501, 505, 408, the 503s) is
//! counted in `/metrics` like any other answer and written in the access log, once each, so
//! a flood of them is visible.

use crate::common::spawn_app_with;
use crate::support::Client;

/// The sum of `http_requests_total` over every series with this status.
fn total_with_status(metrics: &str, status: u16) -> f64 {
    let label = format!("status=\"{status}\"}}");
    metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn layer_refusals_are_counted_in_metrics_with_their_status() {
    let app = spawn_app_with(|_| {});
    for (raw, status) in [
        ("GET /users HTTP/1.1\r\n\r\n", 400),
        ("GET /users HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (
            "POST /users HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
    ] {
        let mut c = Client::connect(app.addr);
        c.send(raw);
        assert_eq!(c.response().status, status, "{raw:?}");
    }
    let metrics = app.metrics().text();
    for status in [400, 505, 501] {
        assert!(
            total_with_status(&metrics, status) >= 1.0,
            "no http_requests_total with status {status}:\n{metrics}"
        );
    }
}

#[test]
fn layer_refusals_are_written_to_the_access_log_with_the_method_clipped() {
    let db = crate::common::fresh_database();
    let server = crate::chaos_support::ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
    ]);
    let mut c = Client::connect(server.addr);
    c.send("GET /no-host HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().status, 400);
    let method = "M".repeat(5000);
    let mut c = Client::connect(server.addr);
    c.send(format!("{method} /long-method HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(c.response().status, 404);

    let logged = crate::common::poll_until(std::time::Duration::from_secs(5), || {
        let log = server.stderr();
        (log.contains("refused by the connection layer") && log.contains("/long-method"))
            .then_some(log)
    })
    .unwrap_or_else(|| panic!("no access lines for the refusals:\n{}", server.stderr()));
    let refused = logged
        .lines()
        .find(|l| l.contains(" 400 ") && l.contains("refused by the connection layer"))
        .unwrap_or_else(|| panic!("no access line for the 400:\n{logged}"));
    assert!(refused.contains("127.0.0.1"), "{refused}");
    let long = logged
        .lines()
        .find(|l| l.contains("/long-method"))
        .unwrap_or_else(|| panic!("no access line for the long method:\n{logged}"));
    assert!(
        long.len() < 400,
        "the method was not clipped: {} bytes",
        long.len()
    );
}

/// Starts the app (with `vars`) logging at info, has it refuse `raw` with `status`, and
/// checks the refusal is counted once under that status and written in exactly one
/// access line.
fn refusal_is_counted_and_logged_once(vars: &[(&str, String)], raw: &str, status: u16) {
    let db = crate::common::fresh_database();
    let mut env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
    ];
    env.extend(vars.iter().cloned());
    let server = crate::chaos_support::ServerProcess::start(&env);
    let mut c = Client::connect(server.addr);
    c.send(raw);
    assert_eq!(c.response().status, status);

    // `" 431 "`: where an access line has its status, after the quoted request line.
    let field = format!("\" {status} ");
    let log = crate::common::poll_until(std::time::Duration::from_secs(5), || {
        let log = server.stderr();
        log.contains(&field).then_some(log)
    })
    .unwrap_or_else(|| panic!("no access line for the {status}:\n{}", server.stderr()));
    let metrics =
        crate::common::client::send(server.addr, "GET", "/metrics", &[], None).expect("metrics");
    assert_eq!(
        total_with_status(&metrics.text(), status),
        1.0,
        "http_requests_total with status {status}:\n{}",
        metrics.text()
    );
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&field)).collect();
    assert_eq!(lines.len(), 1, "access lines for the {status}:\n{log}");
    assert!(
        lines[0].contains("refused by the connection layer"),
        "{}",
        lines[0]
    );
}

#[test]
fn head_too_large_431_is_counted_and_written_in_one_access_line() {
    let raw = format!(
        "GET /users HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    refusal_is_counted_and_logged_once(&[], &raw, 431);
}

#[test]
fn head_too_slow_408_is_counted_and_written_in_one_access_line() {
    refusal_is_counted_and_logged_once(
        &[("HEADER_TIMEOUT_MS", "300".into())],
        "GET /users HTTP/1.1\r\nHost: t\r\n",
        408,
    );
}
