//! Start-up failures that a restart may cure exit 1 (what systemd's `Restart=on-failure`
//! and container restart policies go by).

use std::net::TcpListener;
use std::time::Duration;

use crate::support::*;

#[test]
fn serve_and_migrate_exit_1_when_the_database_never_answers_within_db_connect_timeout() {
    let sandbox = Sandbox::new();
    for command in ["serve", "migrate"] {
        let run = sandbox.run(&[command], &valid_env(), Duration::from_secs(30));

        // systemd's Restart=on-failure and container restart policies go by this code.
        assert_eq!(run.status.code(), Some(1), "{command}: {}", run.describe());
        assert!(
            run.stderr.to_lowercase().contains("database"),
            "{command}: the error does not say the database is the problem: {}",
            run.describe()
        );
    }
}

#[test]
fn serve_exits_1_when_its_port_is_taken() {
    let db = fresh_database();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let sandbox = Sandbox::new();
    let envs = [
        ("DATABASE_URL", db.url.clone()),
        ("BIND", taken.clone()),
        ("LOG_LEVEL", "error".into()),
    ];

    let run = sandbox.run(&["serve"], &envs, Duration::from_secs(60));

    assert_eq!(run.status.code(), Some(1), "{}", run.describe());
    assert!(
        run.stderr.contains(&taken),
        "the error does not name {taken}: {}",
        run.describe()
    );
    drop(held);
}
