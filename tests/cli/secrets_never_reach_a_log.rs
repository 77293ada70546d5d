//! No secret (database password, API token) reaches stderr, `LOG_FILE` or a `Debug`
//! output, whichever way start-up or serving goes.

use std::net::TcpListener;
use std::time::Duration;

use crate::support::*;

/// `postgres://user:pw@HOST:PORT/db` → `(HOST, PORT)`.
fn host_and_port(url: &str) -> (String, String) {
    let rest = url.rsplit('@').next().unwrap_or_default();
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority.rsplit_once(':').expect("a port in the URL");
    (host.to_owned(), port.to_owned())
}

#[test]
fn start_up_failures_never_log_a_secret() {
    // Every way start-up can fail after the configuration is read, at the most verbose
    // level, with secrets in every place one can be given.
    let db = fresh_database();
    let (host, port) = host_and_port(&db.url);
    let nobody = free_port().to_string();
    let sandbox = Sandbox::new();
    let password_file = sandbox.dir.write("db-password", "file-secret-6613\n");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let token = "token-secret-6610";
    // Settings for a database nobody listens on, with one more setting (its password).
    let nobody_with = |name: &'static str, value: String| -> Env {
        vec![
            ("DB_HOST", "127.0.0.1".into()),
            ("DB_PORT", nobody.clone()),
            ("DB_NAME", "app".into()),
            ("DB_USER", "app".into()),
            (name, value),
        ]
    };
    let cases: Vec<(&str, Env, &str, Option<&str>)> = vec![
        (
            "a database that never answers, DB_PASSWORD",
            nobody_with("DB_PASSWORD", "env-secret-6611".into()),
            "env-secret-6611",
            Some("database not reachable"),
        ),
        (
            "a database that never answers, DATABASE_URL",
            vec![(
                "DATABASE_URL",
                format!("postgres://app:url-secret-6612@127.0.0.1:{nobody}/app"),
            )],
            "url-secret-6612",
            Some("database not reachable"),
        ),
        (
            "a database that never answers, DB_PASSWORD_FILE",
            nobody_with("DB_PASSWORD_FILE", password_file.display().to_string()),
            "file-secret-6613",
            Some("database not reachable"),
        ),
        (
            "a wrong password",
            vec![
                ("DB_HOST", host.clone()),
                ("DB_PORT", port.clone()),
                ("DB_NAME", db.name.clone()),
                ("DB_USER", common::pg::SUPERUSER.into()),
                ("DB_PASSWORD", "wrong-secret-6614".into()),
            ],
            "wrong-secret-6614",
            None,
        ),
        (
            "a database that does not exist",
            vec![(
                "DATABASE_URL",
                format!(
                    "postgres://{}:{}@{host}:{port}/no_such_db_6615",
                    common::pg::SUPERUSER,
                    superuser_password()
                ),
            )],
            superuser_password(),
            None,
        ),
        (
            "a port that is taken",
            vec![
                ("DATABASE_URL", db.url.clone()),
                ("BIND", held.local_addr().unwrap().to_string()),
            ],
            superuser_password(),
            None,
        ),
    ];
    for (case, mut envs, secret, expected_line) in cases {
        let log_file = sandbox
            .dir
            .path()
            .join(format!("log-{:08x}", common::random_u64() as u32));
        envs.extend([
            ("DB_CONNECT_TIMEOUT", "2".to_owned()),
            ("LOG_LEVEL", "trace".to_owned()),
            ("LOG_FILE", log_file.display().to_string()),
            ("API_TOKEN", token.to_owned()),
        ]);
        if !envs.iter().any(|(k, _)| *k == "BIND") {
            envs.push(("BIND", format!("127.0.0.1:{}", free_port())));
        }

        let run = sandbox.run(&["serve"], &envs, Duration::from_secs(60));

        let logged = std::fs::read_to_string(&log_file).unwrap_or_default();
        let context = format!("{case}: {}; LOG_FILE {logged:?}", run.describe());
        assert_eq!(run.status.code(), Some(1), "{context}");
        if let Some(line) = expected_line {
            assert!(run.stderr.contains(line), "no {line:?} line: {context}");
            assert!(logged.contains(line), "no {line:?} in LOG_FILE: {context}");
        }
        for s in [secret, token] {
            assert!(!run.output().contains(s), "{s} in the output: {context}");
            assert!(!logged.contains(s), "{s} in LOG_FILE: {context}");
        }
    }
    drop(held);
}

#[test]
fn the_configuration_never_prints_a_secret_in_debug_output() {
    // A panic message or a `{:?}` in a log line is how a secret would reach the log
    // outside the paths above: whatever holds one must redact it in Debug.
    let secrets = [
        ("DB_PASSWORD", "debug-secret-6620"),
        ("API_TOKEN", "debug-secret-6621"),
    ];
    for url in [
        None,
        Some("postgres://app:debug-secret-6622@127.0.0.1:5432/app"),
    ] {
        let lookup = |name: &str| -> Option<String> {
            let fixed = match name {
                "DATABASE_URL" => url,
                "DATABASE_READ_URL" => Some("postgres://app:debug-secret-6623@127.0.0.1:5433/app"),
                "DB_NAME" | "DB_USER" => Some("app"),
                _ => None,
            };
            fixed.map(str::to_owned).or_else(|| {
                secrets
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            })
        };

        let config = user_api::Config::from_lookup(lookup).expect("a valid configuration");

        let debug = format!("{config:?} {:#?}", config.db);
        assert!(
            debug.contains("api_keys: Some") && debug.contains("5433"),
            "the Debug output shows the settings: {debug}"
        );
        for secret in [
            "debug-secret-6620",
            "debug-secret-6621",
            "debug-secret-6622",
            "debug-secret-6623",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }
}

#[test]
fn serve_never_logs_the_api_token_or_the_database_password() {
    let db = fresh_database();
    let token = "log-secret-token-9931";
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_TOKEN", token.into()),
        ("LOG_LEVEL", "trace".into()),
    ]);
    let good = format!("Bearer {token}");
    let wrong = "Bearer log-wrong-token-9932";

    for (auth, expected) in [(good.as_str(), 200), (wrong, 401)] {
        let r = server
            .get_with("/users", &[("Authorization", auth)])
            .unwrap();
        assert_eq!(r.status, expected, "{auth}: {}", r.text());
    }
    let _ = server.get("/health");

    let stderr = server.stderr();
    for secret in [token, "log-wrong-token-9932", superuser_password()] {
        assert!(!stderr.contains(secret), "the log holds {secret:?}");
    }
}
