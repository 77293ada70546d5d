//! `user-api healthcheck`: exit 0 against a running app, 1 against a closed port, one
//! line of output either way.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

#[test]
fn healthcheck_exits_0_with_one_line_against_a_running_app() {
    let app = spawn_app();
    let sandbox = Sandbox::new();
    let url = format!("http://{}/health", app.addr);

    for (case, args, bind) in [
        ("the URL given", vec!["healthcheck", url.as_str()], None),
        (
            "the configured BIND",
            vec!["healthcheck"],
            Some(app.addr.to_string()),
        ),
    ] {
        let mut envs = valid_env();
        envs.extend(bind.map(|b| ("BIND", b)));

        let run = sandbox.run(&args, &envs, Duration::from_secs(15));

        assert_eq!(run.status.code(), Some(0), "{case}: {}", run.describe());
        assert_eq!(
            run.output().trim().lines().count(),
            1,
            "{case}: {}",
            run.describe()
        );
    }
}

#[test]
fn healthcheck_exits_1_with_one_line_against_a_closed_port() {
    let sandbox = Sandbox::new();
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let url = format!("http://{closed}/health");

    for (case, args, bind) in [
        ("the URL given", vec!["healthcheck", url.as_str()], None),
        (
            "the configured BIND",
            vec!["healthcheck"],
            Some(closed.to_string()),
        ),
    ] {
        let mut envs = valid_env();
        envs.extend(bind.map(|b| ("BIND", b)));

        let run = sandbox.run(&args, &envs, Duration::from_secs(15));

        assert_eq!(run.status.code(), Some(1), "{case}: {}", run.describe());
        assert_eq!(
            run.output().trim().lines().count(),
            1,
            "{case}: {}",
            run.describe()
        );
    }
}
