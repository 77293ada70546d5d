//! `--version` and `--help`: they print and exit 0, and `--help` lists every command and
//! variable but never a secret.

use std::time::Duration;

use crate::support::*;

#[test]
fn version_prints_the_version_and_exits_0() {
    let sandbox = Sandbox::new();

    let run = sandbox.run(&["--version"], &[], Duration::from_secs(10));

    assert_eq!(run.status.code(), Some(0), "{}", run.describe());
    assert!(
        run.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        run.describe()
    );
}

#[test]
fn help_lists_the_commands_and_every_variable() {
    let sandbox = Sandbox::new();

    let run = sandbox.run(&["--help"], &[], Duration::from_secs(10));

    assert_eq!(run.status.code(), Some(0), "{}", run.describe());
    let help = run.output();
    let variables = user_api::config::settings::names();
    for word in ["serve", "migrate", "healthcheck"]
        .into_iter()
        .chain(variables)
    {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
}

#[test]
fn help_never_prints_a_secret() {
    let sandbox = Sandbox::new();
    sandbox.dir.write(
        ".env",
        "DB_PASSWORD=dotenv-secret-5522\nAPI_TOKEN=dotenv-token-5523\n",
    );
    let envs = [
        ("DB_PASSWORD", "env-secret-7781".to_owned()),
        ("API_TOKEN", "env-token-7782".to_owned()),
        (
            "DATABASE_URL",
            "postgres://app:url-secret-7783@127.0.0.1:1/app".to_owned(),
        ),
    ];

    let run = sandbox.run(&["--help"], &envs, Duration::from_secs(10));

    assert_eq!(run.status.code(), Some(0), "{}", run.describe());
    for secret in [
        "env-secret-7781",
        "env-token-7782",
        "url-secret-7783",
        "dotenv-secret-5522",
        "dotenv-token-5523",
    ] {
        assert!(!run.output().contains(secret), "--help prints {secret}");
    }
}
