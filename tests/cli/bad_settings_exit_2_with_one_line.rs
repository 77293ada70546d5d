//! A command line or a setting the binary cannot use stops it before it does anything:
//! exit 2 and one line on stderr that names the offender and holds no secret.

use std::net::TcpListener;
use std::time::Duration;

use crate::support::*;

#[test]
fn unknown_commands_and_flags_exit_2_with_a_clear_message() {
    let sandbox = Sandbox::new();
    for args in [
        &["frobnicate"][..],
        &["--frobnicate"],
        &["serve", "--frobnicate"],
        &["migrate", "extra"],
    ] {
        let run = sandbox.run(args, &valid_env(), Duration::from_secs(10));

        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.describe());
        let offender = args.last().unwrap();
        assert!(
            run.stderr.contains(offender),
            "{args:?}: stderr does not name {offender:?}: {}",
            run.describe()
        );
    }
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_variable() {
    let sandbox = Sandbox::new();
    let password_file = sandbox.dir.write("db-password", "file-secret-4410\n");
    let missing = sandbox
        .dir
        .path()
        .join("no-such-file")
        .display()
        .to_string();
    // A port we hold: had the binary tried to bind it, it would fail another way.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = vec![
        ("DB_HOST", "127.0.0.1".to_owned()),
        ("DB_PORT", free_port().to_string()),
        ("DB_NAME", "app".to_owned()),
        ("DB_USER", "app".to_owned()),
        ("DB_CONNECT_TIMEOUT", "1".to_owned()),
        ("BIND", held.local_addr().unwrap().to_string()),
    ];
    let cases: Vec<(&str, Env, &str)> = vec![
        (
            "DB_PORT=abc",
            vec![
                ("DB_PORT", "abc".into()),
                ("DB_PASSWORD", "env-secret-4411".into()),
            ],
            "DB_PORT",
        ),
        (
            "a missing DB_PASSWORD_FILE",
            vec![("DB_PASSWORD_FILE", missing.clone())],
            "DB_PASSWORD_FILE",
        ),
        (
            "both DB_PASSWORD and DB_PASSWORD_FILE",
            vec![
                ("DB_PASSWORD", "env-secret-4411".into()),
                ("DB_PASSWORD_FILE", password_file.display().to_string()),
            ],
            "DB_PASSWORD",
        ),
        (
            "WORKERS=many",
            vec![("WORKERS", "many".into()), ("DB_PASSWORD", "p".into())],
            "WORKERS",
        ),
        (
            "MAX_BODY_BYTES=-1",
            vec![("MAX_BODY_BYTES", "-1".into()), ("DB_PASSWORD", "p".into())],
            "MAX_BODY_BYTES",
        ),
        (
            "LOG_LEVEL=loud",
            vec![("LOG_LEVEL", "loud".into()), ("DB_PASSWORD", "p".into())],
            "LOG_LEVEL",
        ),
        (
            "a missing API_TOKEN_FILE",
            vec![("API_TOKEN_FILE", missing), ("DB_PASSWORD", "p".into())],
            "API_TOKEN_FILE",
        ),
        (
            "BIND=nowhere",
            vec![("BIND", "nowhere".into()), ("DB_PASSWORD", "p".into())],
            "BIND",
        ),
    ];
    for (case, extra, variable) in cases {
        for command in ["serve", "migrate"] {
            let mut envs = base.clone();
            envs.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
            envs.extend(extra.iter().cloned());

            let run = sandbox.run(&[command], &envs, Duration::from_secs(10));

            let context = format!("{command} with {case}: {}", run.describe());
            assert_eq!(run.status.code(), Some(2), "{context}");
            let line = run.one_stderr_line(&context);
            assert!(
                line.contains(variable),
                "the line names {variable}: {context}"
            );
            for secret in ["env-secret-4411", "file-secret-4410"] {
                assert!(!run.output().contains(secret), "{secret} leaked: {context}");
            }
        }
    }
    drop(held);
}

#[test]
fn serve_exits_2_with_one_line_for_a_bad_keys_file_or_a_token_beside_it() {
    let sandbox = Sandbox::new();
    let (_, line) = new_key(&sandbox, "dash", "read");
    let good = sandbox.dir.write("good", &format!("{line}\n"));
    let bad = sandbox
        .dir
        .write("bad", &format!("{line}\ndash read sha256:00\n"));
    let cases: Vec<(&str, Env, &str)> = vec![
        (
            "a bad keys file",
            vec![("API_KEYS_FILE", bad.display().to_string())],
            ":2:",
        ),
        (
            "API_KEYS_FILE and API_TOKEN",
            vec![
                ("API_KEYS_FILE", good.display().to_string()),
                ("API_TOKEN", "tok-secret-5150".into()),
            ],
            "not both",
        ),
        (
            "API_KEYS_FILE and API_TOKEN_FILE",
            vec![
                ("API_KEYS_FILE", good.display().to_string()),
                ("API_TOKEN_FILE", good.display().to_string()),
            ],
            "not both",
        ),
    ];
    for (case, extra, says) in cases {
        let mut envs = valid_env();
        envs.extend(extra);

        let run = sandbox.run(&["serve"], &envs, Duration::from_secs(10));

        let context = format!("{case}: {}", run.describe());
        assert_eq!(run.status.code(), Some(2), "{context}");
        let line = run.one_stderr_line(&context);
        assert!(
            line.contains("API_KEYS_FILE") && line.contains(says),
            "{context}"
        );
        assert!(!run.output().contains("tok-secret-5150"), "{context}");
    }
}
