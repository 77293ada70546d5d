//! `serve` keeps retrying a database that is not up yet, and a SIGTERM ends that wait.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

#[test]
fn serve_waits_for_a_database_that_starts_later() {
    // Arrange: the binary first, pointing at a port where no database listens yet.
    let db_port = free_port();
    let bind = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let sandbox = Sandbox::new();
    let envs = [
        ("DB_HOST", "127.0.0.1".to_owned()),
        ("DB_PORT", db_port.to_string()),
        ("DB_NAME", "postgres".to_owned()),
        ("DB_USER", common::pg::SUPERUSER.to_owned()),
        ("DB_PASSWORD", superuser_password().to_owned()),
        ("DB_CONNECT_TIMEOUT", "30".to_owned()),
        ("BIND", bind.to_string()),
        ("LOG_LEVEL", "info".to_owned()),
    ];
    let mut child = sandbox.command("serve", &["serve"], &envs).spawn().unwrap();
    // Not a synchronisation: the scenario is a database that comes up a second later.
    let exited = wait_with_deadline(&mut child, Duration::from_secs(1));
    assert!(
        exited.is_none(),
        "serve gave up at once: {exited:?}, stderr {}",
        sandbox.read("serve", "stderr")
    );

    // Act
    let _cluster = TestCluster::start_on_port(db_port);

    // Assert
    let healthy = poll_until(Duration::from_secs(40), || {
        common::client::send(bind, "GET", "/health", &[], None)
            .ok()
            .filter(|r| r.status == 200)
    });
    sigterm(&child);
    let status = wait_with_deadline(&mut child, Duration::from_secs(15));
    if status.is_none() {
        let _ = child.kill();
    }
    let stderr = sandbox.read("serve", "stderr");
    assert!(
        healthy.is_some(),
        "serve never became healthy; stderr: {stderr}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit after SIGTERM");
    // The retries were logged, and none of those lines holds the password.
    assert!(
        stderr.contains("database not reachable"),
        "no retry was logged: {stderr}"
    );
    assert!(
        !stderr.contains(superuser_password()),
        "the database password is in the log: {stderr}"
    );
}

#[test]
fn sigterm_while_waiting_for_the_database_exits_0_promptly() {
    // Arrange: nothing listens on the database port, and the wait could last 60 s.
    let sandbox = Sandbox::new();
    let envs = [
        ("DB_HOST", "127.0.0.1".to_owned()),
        ("DB_PORT", free_port().to_string()),
        ("DB_NAME", "x".to_owned()),
        ("DB_USER", "x".to_owned()),
        ("DB_PASSWORD", "x".to_owned()),
        ("DB_CONNECT_TIMEOUT", "60".to_owned()),
        ("BIND", format!("127.0.0.1:{}", free_port())),
        ("LOG_LEVEL", "info".to_owned()),
    ];
    let mut child = sandbox.command("serve", &["serve"], &envs).spawn().unwrap();
    let waiting = poll_until(Duration::from_secs(10), || {
        sandbox
            .read("serve", "stderr")
            .contains("database not reachable")
            .then_some(())
    });
    assert!(
        waiting.is_some(),
        "no retry logged: {}",
        sandbox.read("serve", "stderr")
    );

    // Act
    sigterm(&child);
    let status = wait_with_deadline(&mut child, Duration::from_secs(2));

    // Assert: as PID 1 in a container, anything else is a SIGKILL after the grace period.
    if status.is_none() {
        let _ = child.kill();
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM during the wait; stderr: {}",
        sandbox.read("serve", "stderr")
    );
}
