//! `user-api healthcheck`: exit 0 against a running app, 1 against a closed port, one
//! line of output either way.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

/// `healthcheck` against `addr`, given as a URL and as the configured `BIND`: each run
/// exits `code` with one line of output.
fn assert_healthcheck_exits(addr: SocketAddr, code: i32) {
    let sandbox = Sandbox::new();
    let url = format!("http://{addr}/health");

    for (case, args, bind) in [
        ("the URL given", vec!["healthcheck", url.as_str()], None),
        (
            "the configured BIND",
            vec!["healthcheck"],
            Some(addr.to_string()),
        ),
    ] {
        let mut envs = valid_env();
        envs.extend(bind.map(|b| ("BIND", b)));

        let run = sandbox.run(&args, &envs, Duration::from_secs(15));

        let context = format!("{case}: {}", run.describe());
        assert_eq!(run.status.code(), Some(code), "{context}");
        assert_eq!(run.output().trim().lines().count(), 1, "{context}");
    }
}

#[test]
fn healthcheck_exits_0_with_one_line_against_a_running_app() {
    let app = spawn_app();

    assert_healthcheck_exits(app.addr, 0);
}

#[test]
fn healthcheck_exits_1_with_one_line_against_a_closed_port() {
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));

    assert_healthcheck_exits(closed, 1);
}
