//! The `user-api` binary: its command line, configuration errors, migrations, the
//! `healthcheck` command, waiting for the database at start-up, and SIGTERM.
//!
//! Every run starts from an empty environment (plus `PATH`) in a temporary working
//! directory, so neither the developer's environment nor a `.env` of theirs leaks in.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::pg::{superuser_password, wait_for_lock_waiters};
use common::{TempDir, TestCluster, free_port, fresh_database, poll_until, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_user-api");

/// Environment variables for one run.
type Env = Vec<(&'static str, String)>;

/// What a finished run left behind.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn describe(&self) -> String {
        format!(
            "exit {:?}, stdout {:?}, stderr {:?}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }
}

/// A working directory of its own for the binary, with its output files.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            dir: TempDir::new("user-api-cli"),
        }
    }

    /// The binary with `args`, an empty environment but `PATH` and `envs`, run in the
    /// sandbox, its output going to files there.
    fn command(&self, name: &str, args: &[&str], envs: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(File::create(self.out_path(name, "stdout")).unwrap())
            .stderr(File::create(self.out_path(name, "stderr")).unwrap());
        cmd
    }

    fn out_path(&self, name: &str, stream: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.{stream}"))
    }

    fn read(&self, name: &str, stream: &str) -> String {
        std::fs::read_to_string(self.out_path(name, stream)).unwrap_or_default()
    }

    /// Runs the binary to its end; panics if it takes longer than `timeout`.
    fn run(&self, args: &[&str], envs: &[(&str, String)], timeout: Duration) -> Run {
        let name = format!("run{:08x}", common::random_u64() as u32);
        let child = self
            .command(&name, args, envs)
            .spawn()
            .expect("start user-api");
        self.finish(&name, child, timeout)
    }

    fn finish(&self, name: &str, mut child: Child, timeout: Duration) -> Run {
        let status = wait_with_deadline(&mut child, timeout).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "user-api did not finish within {timeout:?}; stderr: {}",
                self.read(name, "stderr")
            )
        });
        Run {
            status,
            stdout: self.read(name, "stdout"),
            stderr: self.read(name, "stderr"),
        }
    }
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    poll_until(timeout, || child.try_wait().ok().flatten())
}

fn sigterm(child: &Child) {
    signal(child, "TERM");
}

/// Sends `SIG{name}` to `child`.
fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {}", child.id());
}

/// A `user-api serve` running in the background; killed on drop if still running.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    name: String,
    sandbox: Sandbox,
}

impl ServerProcess {
    /// Starts `user-api serve` on a free port and waits until `/health/live` answers.
    fn start(envs: &[(&str, String)]) -> ServerProcess {
        ServerProcess::start_with_dotenv(envs, None)
    }

    /// As [`ServerProcess::start`], with `dotenv` as the `.env` file of its working
    /// directory.
    fn start_with_dotenv(envs: &[(&str, String)], dotenv: Option<&str>) -> ServerProcess {
        let mut last = String::new();
        for attempt in 0..3 {
            let sandbox = Sandbox::new();
            if let Some(text) = dotenv {
                sandbox.dir.write(".env", text);
            }
            let port = free_port();
            let name = format!("serve{attempt}");
            let mut envs = envs.to_vec();
            envs.push(("BIND", format!("127.0.0.1:{port}")));
            let child = sandbox
                .command(&name, &["serve"], &envs)
                .spawn()
                .expect("start user-api serve");
            let mut server = ServerProcess {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                name,
                sandbox,
            };
            let live = poll_until(Duration::from_secs(30), || {
                if server.child.try_wait().ok().flatten().is_some() {
                    return Some(false);
                }
                let r = common::client::send(server.addr, "GET", "/health/live", &[], None);
                r.ok().filter(|r| r.status == 200).map(|_| true)
            });
            // Ready too: the pool opens its connections in the background.
            let ready = live == Some(true)
                && poll_until(Duration::from_secs(30), || {
                    server.get("/health/ready").ok().filter(|r| r.status == 200)
                })
                .is_some();
            if ready {
                return server;
            }
            // Lost the port to someone else, or it failed: try again, then report.
            last = server.stderr();
        }
        panic!("user-api serve did not become live; stderr: {last}");
    }

    fn stderr(&self) -> String {
        self.sandbox.read(&self.name, "stderr")
    }

    fn get(&self, target: &str) -> std::io::Result<common::HttpResponse> {
        common::client::send(self.addr, "GET", target, &[], None)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A complete, valid configuration for a database nobody listens on.
fn valid_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "DATABASE_URL",
            format!("postgres://app:app-pw@127.0.0.1:{}/app", free_port()),
        ),
        ("DB_CONNECT_TIMEOUT", "1".into()),
        ("LOG_LEVEL", "error".into()),
    ]
}

// ---- command line ----------------------------------------------------------------------

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
            let lines: Vec<&str> = run
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            assert_eq!(lines.len(), 1, "one line on stderr: {context}");
            assert!(
                lines[0].contains(variable),
                "the line names {variable}: {context}"
            );
            for secret in ["env-secret-4411", "file-secret-4410"] {
                assert!(!run.output().contains(secret), "{secret} leaked: {context}");
            }
        }
    }
    drop(held);
}

// ---- migrations ------------------------------------------------------------------------

/// The number of migration files under `sql/`.
fn migration_files() -> Vec<PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migration in {dir}");
    files
}

/// The migrations table: `(name, version column)`, found by name since the contract
/// does not fix it.
fn migrations_table(db: &mut postgres::Client) -> (String, String) {
    let tables: Vec<String> = db
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             AND table_name ILIKE '%migration%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables.len(), 1, "one migrations table: {tables:?}");
    let (schema, name) = tables[0].split_once('.').unwrap();
    let columns: Vec<String> = db
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let version = ["version", "id", "name", "filename"]
        .iter()
        .find(|c| columns.iter().any(|col| col == *c))
        .map_or_else(|| columns[0].clone(), |c| (*c).to_owned());
    (format!("\"{schema}\".\"{name}\""), version)
}

/// Every migration is recorded exactly once; returns the table's rows as text.
fn assert_each_migration_once(db: &mut postgres::Client) -> Vec<String> {
    let (table, version) = migrations_table(db);
    let versions: Vec<String> = db
        .query(&format!("SELECT \"{version}\"::text FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let unique: HashSet<&String> = versions.iter().collect();
    assert_eq!(
        unique.len(),
        versions.len(),
        "a version recorded twice: {versions:?}"
    );
    assert_eq!(
        versions.len(),
        migration_files().len(),
        "one row per file of sql/: {versions:?}"
    );
    let users: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(users, 1, "the users table exists");
    db.query(&format!("SELECT t::text FROM {table} t ORDER BY 1"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn migrate_applies_every_migration_and_is_a_no_op_the_second_time() {
    let db = fresh_database();
    let sandbox = Sandbox::new();
    let envs = [
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
    ];

    let first = sandbox.run(&["migrate"], &envs, Duration::from_secs(60));
    assert_eq!(
        first.status.code(),
        Some(0),
        "first migrate: {}",
        first.describe()
    );
    let after_first = assert_each_migration_once(&mut db.connect());
    let second = sandbox.run(&["migrate"], &envs, Duration::from_secs(60));

    assert_eq!(
        second.status.code(),
        Some(0),
        "second migrate: {}",
        second.describe()
    );
    let after_second = assert_each_migration_once(&mut db.connect());
    assert_eq!(after_first, after_second, "the second run changed nothing");
    // the server's harmless "relation ... already exists, skipping" is not for the log
    assert!(
        !second.stderr.contains("NOTICE"),
        "second migrate logs a notice: {}",
        second.stderr
    );
}

#[test]
fn two_migrate_processes_at_once_both_succeed_and_apply_each_migration_once() {
    let db = fresh_database();
    let sandbox = Sandbox::new();
    let envs = [
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
    ];

    let a = sandbox.command("a", &["migrate"], &envs).spawn().unwrap();
    let b = sandbox.command("b", &["migrate"], &envs).spawn().unwrap();
    let a = sandbox.finish("a", a, Duration::from_secs(60));
    let b = sandbox.finish("b", b, Duration::from_secs(60));

    assert_eq!(a.status.code(), Some(0), "first process: {}", a.describe());
    assert_eq!(b.status.code(), Some(0), "second process: {}", b.describe());
    assert_each_migration_once(&mut db.connect());
}

#[test]
fn sql_files_apply_with_psql_as_the_postgres_image_would_and_migrate_still_succeeds() {
    // Arrange: what /docker-entrypoint-initdb.d does, twice (the files are idempotent).
    let db = fresh_database();
    let psql = common::pg::psql().expect("psql next to the PostgreSQL server binaries");
    for pass in 1..=2 {
        for file in migration_files() {
            let out = Command::new(&psql)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
                .arg(&file)
                .output()
                .expect("run psql");
            assert!(
                out.status.success(),
                "pass {pass}, psql -f {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // Act
    let sandbox = Sandbox::new();
    let run = sandbox.run(
        &["migrate"],
        &[("DATABASE_URL", db.url.clone())],
        Duration::from_secs(60),
    );

    // Assert
    assert_eq!(run.status.code(), Some(0), "{}", run.describe());
    assert_each_migration_once(&mut db.connect());
}

// ---- healthcheck -----------------------------------------------------------------------

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

// ---- lifecycle -------------------------------------------------------------------------

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
fn sigterm_lets_requests_in_flight_finish_and_exits_0() {
    stop_signal_lets_requests_in_flight_finish_and_exits_0("TERM");
}

#[test]
fn sigint_is_a_graceful_stop_too_it_lets_requests_in_flight_finish_and_exits_0() {
    stop_signal_lets_requests_in_flight_finish_and_exits_0("INT");
}

/// SIG`name` while five requests wait on a table lock: intake stops, the five get their
/// answers, the process exits 0.
fn stop_signal_lets_requests_in_flight_finish_and_exits_0(name: &str) {
    // Arrange: a server with a user, and five requests blocked behind our table lock.
    let db = fresh_database();
    let mut server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("WORKERS", "8".into()),
        ("DB_POOL_SIZE", "10".into()),
        ("SHUTDOWN_TIMEOUT", "10".into()),
        // Longer than this test could hold its lock on the slowest machine.
        ("DB_STATEMENT_TIMEOUT_MS", "60000".into()),
        ("LOG_LEVEL", "info".into()),
    ]);
    // The pool fills in the background; with six connections open, none of the requests
    // below waits for a new one.
    let warm = poll_until(Duration::from_secs(30), || {
        let text = server.get("/metrics").ok()?.text();
        let idle: f64 = text
            .lines()
            .find(|l| l.starts_with("db_pool_connections{state=\"idle\"}"))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()?;
        (idle >= 6.0).then_some(())
    });
    assert!(warm.is_some(), "the pool never had six idle connections");
    let body = br#"{"first_name": "Ada", "last_name": "Lovelace"}"#;
    let created = common::client::send(
        server.addr,
        "POST",
        "/user",
        &[("Content-Type", "application/json")],
        Some(body),
    )
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_i64().unwrap();
    let mut locker = db.connect();
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let addr = server.addr;
    // One at a time, each seen blocked before the next is sent (a burst of new
    // connections meets a separate problem, see http::new_connections_are_served_...).
    let mut watcher = db.connect();
    let mut in_flight = Vec::new();
    for n in 1..=5 {
        in_flight.push(std::thread::spawn(move || {
            common::client::send(addr, "GET", &format!("/user/{id}"), &[], None)
        }));
        if !wait_for_lock_waiters(&mut watcher, &db.name, n, Duration::from_secs(10)) {
            lock.commit().unwrap();
            let answers: Vec<_> = in_flight.into_iter().map(|t| t.join().unwrap()).collect();
            let statuses: Vec<_> = answers
                .iter()
                .map(|a| a.as_ref().map(|r| (r.status, r.text())))
                .collect();
            panic!(
                "request {n} never waited on the lock: {statuses:?}; stderr: {}",
                server.stderr()
            );
        }
    }

    // Act: the signal, wait until the server takes no new work, then let the five go.
    let signalled = Instant::now();
    signal(&server.child, name);
    let stopped_intake = poll_until(Duration::from_secs(5), || {
        let Ok(mut probe) = common::HttpConnection::open(addr) else {
            return Some(());
        };
        let _ = probe.set_read_timeout(Duration::from_millis(500));
        match probe.send("GET", "/health/live", &[], None) {
            Ok(r) if r.status == 200 => None,
            _ => Some(()),
        }
    });
    lock.commit().unwrap();

    // Assert
    let answers: Vec<_> = in_flight.into_iter().map(|t| t.join().unwrap()).collect();
    let status = wait_with_deadline(&mut server.child, Duration::from_secs(11));
    let elapsed = signalled.elapsed();
    let stderr = server.stderr();
    assert!(
        stopped_intake.is_some(),
        "new requests were still served 5 s after SIG{name}; stderr: {stderr}"
    );
    for (i, answer) in answers.iter().enumerate() {
        let r = answer.as_ref().unwrap_or_else(|e| {
            panic!("request {i} in flight got no answer: {e}; stderr: {stderr}")
        });
        assert_eq!(r.status, 200, "request {i} in flight: {}", r.text());
        assert_eq!(r.json()["id"], id);
    }
    let status = status.unwrap_or_else(|| {
        panic!("still running {elapsed:?} after SIG{name} (SHUTDOWN_TIMEOUT=10); stderr: {stderr}")
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIG{name}; stderr: {stderr}"
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

#[test]
fn sigterm_when_idle_exits_0_promptly() {
    let db = fresh_database();
    let mut server = ServerProcess::start(&[("DATABASE_URL", db.url.clone())]);
    assert_eq!(server.get("/health").unwrap().status, 200);

    let signalled = Instant::now();
    sigterm(&server.child);
    let status = wait_with_deadline(&mut server.child, Duration::from_secs(3));

    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 3 s after SIGTERM while idle; stderr: {}",
            server.stderr()
        )
    });
    assert_eq!(status.code(), Some(0), "{:?}", signalled.elapsed());
}

#[test]
fn sighup_does_not_stop_the_server() {
    let db = fresh_database();
    let mut server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
    ]);

    signal(&server.child, "HUP");

    // The signal was handled once the log says so; had it killed the process, it is gone.
    let handled = poll_until(Duration::from_secs(10), || {
        let exited = server.child.try_wait().ok().flatten().is_some();
        (exited || server.stderr().contains("SIGHUP")).then_some(())
    });
    let stderr = server.stderr();
    assert!(handled.is_some(), "no log line mentions SIGHUP: {stderr}");
    assert!(
        server.child.try_wait().ok().flatten().is_none(),
        "SIGHUP ended the process: {:?}; stderr: {stderr}",
        server.child.try_wait()
    );
    let r = server.get("/health").expect("still serving after SIGHUP");
    assert_eq!(r.status, 200, "{}", r.text());
    sigterm(&server.child);
    let status = wait_with_deadline(&mut server.child, Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM after SIGHUP"
    );
}

#[test]
fn shutdown_timeout_bounds_a_request_that_outlasts_it() {
    // Arrange: one request blocked behind our table lock, which outlives the stop.
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
    let db = fresh_database();
    let mut server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT.as_secs().to_string()),
        // Far longer than the test: only SHUTDOWN_TIMEOUT can end the wait.
        ("DB_STATEMENT_TIMEOUT_MS", "600000".into()),
        ("LOG_LEVEL", "info".into()),
    ]);
    let mut locker = db.connect();
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let addr = server.addr;
    let blocked = std::thread::spawn(move || {
        common::client::send(addr, "GET", "/user/1", &[], None).map(|r| r.status)
    });
    let mut watcher = db.connect();
    assert!(
        wait_for_lock_waiters(&mut watcher, &db.name, 1, Duration::from_secs(30)),
        "the request never waited on the lock; stderr: {}",
        server.stderr()
    );

    // Act
    let signalled = Instant::now();
    sigterm(&server.child);
    // Generous: the point is that the process ends while the request still waits.
    let status = wait_with_deadline(
        &mut server.child,
        SHUTDOWN_TIMEOUT + Duration::from_secs(15),
    );
    let elapsed = signalled.elapsed();
    lock.commit().unwrap();

    // Assert: it waited for the request, but no longer than SHUTDOWN_TIMEOUT allows.
    let stderr = server.stderr();
    let answer = blocked.join().unwrap();
    let status = status.unwrap_or_else(|| {
        panic!("still running {elapsed:?} after SIGTERM with SHUTDOWN_TIMEOUT=2; stderr: {stderr}")
    });
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(
        elapsed >= SHUTDOWN_TIMEOUT,
        "exited {elapsed:?} after SIGTERM, before SHUTDOWN_TIMEOUT, with a request in flight"
    );
    assert!(
        answer.is_err(),
        "the blocked request was answered {answer:?} although its statement never ran"
    );
}

#[test]
fn serve_answers_the_api_end_to_end() {
    let db = fresh_database();
    let server = ServerProcess::start(&[("DATABASE_URL", db.url.clone())]);
    let body = br#"{"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}"#;

    let created = common::client::send(
        server.addr,
        "POST",
        "/users",
        &[("Content-Type", "application/json")],
        Some(body),
    )
    .unwrap();
    let listed = server.get("/users").unwrap();

    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["users"][0], created.json());
    let stored: BTreeMap<String, i64> = db
        .connect()
        .query("SELECT email, id FROM users", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(stored.len(), 1);
}

#[test]
fn serve_reads_dot_env_and_real_environment_variables_win() {
    // DATABASE_URL only in .env: the server starts only if it reads the file. SERVED_BY in
    // both: the real environment's value must be the one used.
    let db = fresh_database();
    let dotenv = format!(
        "# as an operator would write it\nDATABASE_URL={}\nSERVED_BY=from-dotenv\n",
        db.url
    );

    let server = ServerProcess::start_with_dotenv(
        &[("SERVED_BY", "from-environment".into())],
        Some(&dotenv),
    );

    let r = server.get("/health").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-served-by"), Some("from-environment"));
}

// ---- start-up failures -----------------------------------------------------------------

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
    let cases: Vec<(&str, Env, &str, Option<&str>)> = vec![
        (
            "a database that never answers, DB_PASSWORD",
            vec![
                ("DB_HOST", "127.0.0.1".into()),
                ("DB_PORT", nobody.clone()),
                ("DB_NAME", "app".into()),
                ("DB_USER", "app".into()),
                ("DB_PASSWORD", "env-secret-6611".into()),
            ],
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
            vec![
                ("DB_HOST", "127.0.0.1".into()),
                ("DB_PORT", nobody.clone()),
                ("DB_NAME", "app".into()),
                ("DB_USER", "app".into()),
                ("DB_PASSWORD_FILE", password_file.display().to_string()),
            ],
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

// ---- logging ---------------------------------------------------------------------------

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

    let r = common::client::send(
        server.addr,
        "GET",
        "/users?limit=2",
        &[("X-Request-Id", "access-line-4711")],
        None,
    )
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

    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
    ]);

    let stderr = server.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("API_TOKEN") && (l.contains("WARN") || l.contains("warn"))),
        "no start-up warning names API_TOKEN: {stderr}"
    );
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
        let r = common::client::send(
            server.addr,
            "GET",
            "/users",
            &[("Authorization", auth)],
            None,
        )
        .unwrap();
        assert_eq!(r.status, expected, "{auth}: {}", r.text());
    }
    let _ = common::client::send(server.addr, "GET", "/health", &[], None);

    let stderr = server.stderr();
    for secret in [token, "log-wrong-token-9932", superuser_password()] {
        assert!(!stderr.contains(secret), "the log holds {secret:?}");
    }
}

#[test]
fn serve_logs_a_500_with_its_request_id() {
    let db = fresh_database();
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
    ]);
    db.connect()
        .batch_execute("ALTER TABLE users RENAME TO users_elsewhere")
        .unwrap();

    let r = common::client::send(
        server.addr,
        "GET",
        "/user/1",
        &[("X-Request-Id", "boom-500-77")],
        None,
    )
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

// ---- API keys --------------------------------------------------------------------------

/// `user-api keys new NAME --scope SCOPES`: the secret, then its keys-file line.
fn new_key(sandbox: &Sandbox, name: &str, scopes: &str) -> (String, String) {
    let run = sandbox.run(
        &["keys", "new", name, "--scope", scopes],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(run.status.code(), Some(0), "{}", run.describe());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "exactly two lines: {}", run.describe());
    (lines[0].to_owned(), lines[1].to_owned())
}

/// SHA-256 in hex by coreutils' `sha256sum`, not by the code under test.
fn sha256sum(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// Writes `contents` to `path` the way an operator should: a new file, then a rename,
/// so the server never reads half a file.
fn replace_file(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sighup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {}", child.id());
}

/// Sends SIGHUP and waits for the log line of the reload (or of its refusal), the
/// `nth` such line since start-up.
fn reload(server: &ServerProcess, nth: usize) -> String {
    sighup(&server.child);
    let done = poll_until(Duration::from_secs(10), || {
        let stderr = server.stderr();
        (stderr.matches("API keys reloaded").count()
            + stderr.matches("API keys NOT reloaded").count()
            >= nth)
            .then_some(())
    });
    done.unwrap_or_else(|| panic!("no reload logged after SIGHUP: {}", server.stderr()));
    // A refused reload logs its summary first and one line per problem after it: give
    // those lines the moment they take to follow.
    std::thread::sleep(Duration::from_millis(200));
    server.stderr()
}

fn get_users(conn: &mut common::HttpConnection, secret: &str) -> u16 {
    let auth = format!("Bearer {secret}");
    let r = conn
        .send("GET", "/users", &[("Authorization", &auth)], None)
        .expect("the keep-alive connection still answers");
    assert!(
        !r.closes_connection(),
        "the server closed the keep-alive connection"
    );
    r.status
}

#[test]
fn keys_new_prints_a_fresh_secret_then_its_line_with_the_secrets_sha256() {
    let sandbox = Sandbox::new();

    let (secret, line) = new_key(&sandbox, "dashboard", "read");
    let (other, both) = new_key(&sandbox, "provisioning", "read,write");

    let hex = secret
        .strip_prefix("uak_")
        .expect("the secret has its prefix");
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "256 bits in hex: {secret}"
    );
    assert_ne!(secret, other, "each secret is new");
    assert_eq!(
        line,
        format!("dashboard read sha256:{}", sha256sum(&secret))
    );
    assert_eq!(
        both,
        format!("provisioning read,write sha256:{}", sha256sum(&other))
    );
}

#[test]
fn keys_new_refuses_a_bad_name_or_scope_with_exit_2() {
    let sandbox = Sandbox::new();
    for args in [
        &["keys", "new", "dash board", "--scope", "read"][..],
        &["keys", "new", "dash", "--scope", "admin"],
        &["keys", "new", "dash"],
        &["keys", "new"],
        &["keys", "frobnicate"],
    ] {
        let run = sandbox.run(args, &[], Duration::from_secs(10));

        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.describe());
        assert!(
            run.stdout.is_empty(),
            "{args:?}: no secret printed: {}",
            run.describe()
        );
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "{args:?}: {}",
            run.describe()
        );
    }
}

#[test]
fn keys_check_exits_0_for_a_sound_file_and_2_with_one_line_per_problem() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let (_, line) = new_key(&sandbox, "dash", "read");
    let (_, other) = new_key(&sandbox, "prov", "write");
    let hash = line.rsplit(' ').next().unwrap().to_owned();
    let check = |contents: &str, mode: u32| {
        let path = sandbox.dir.write("keys", contents);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let run = sandbox.run(
            &["keys", "check", &path.display().to_string()],
            &[],
            Duration::from_secs(10),
        );
        (
            run.status.code(),
            run.stdout.lines().map(str::to_owned).collect::<Vec<_>>(),
            path,
        )
    };

    let (code, out, _) = check(&format!("# keys\n\n{line}\n{other}\n"), 0o600);
    assert_eq!(code, Some(0), "{out:?}");
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].contains("ok, 2 keys"), "{out:?}");

    let (code, out, _) = check(&format!("\u{feff}{line}\r\n{other}\r\n"), 0o600);
    assert_eq!(
        code,
        Some(0),
        "a byte-order mark and CRLF are accepted: {out:?}"
    );

    let (code, out, path) = check(&format!("{line}\n"), 0o644);
    assert_eq!(code, Some(0), "{out:?}");
    assert!(
        out[0].starts_with("warning:") && out[0].contains("readable by every user"),
        "{out:?}"
    );

    let bad = [
        line.as_str(),
        &line.replace("sha256:", "sha256:0"),
        &format!("dash write {}", &other[other.len() - 71..]),
        &format!("admin admin {hash}"),
        &format!("bad name read {hash}"),
        &format!("twin read {hash}"),
    ]
    .join("\n");
    let (code, out, _) = check(&bad, 0o600);
    assert_eq!(code, Some(2), "{out:?}");
    let p = path.display().to_string();
    let want = [
        format!("{p}:2: the hash must be 64 hex digits"),
        format!("{p}:3: duplicate name \"dash\" (first on line 1)"),
        format!("{p}:4: unknown scope \"admin\""),
        format!("{p}:5: expected 3 fields"),
        format!("{p}:6: the same hash as line 1"),
    ];
    assert_eq!(out.len(), want.len(), "one line per problem: {out:#?}");
    for (got, want) in out.iter().zip(&want) {
        assert!(
            got.starts_with(want.as_str()),
            "{got:?} does not start with {want:?}"
        );
    }

    for empty in ["", "# nothing yet\n"] {
        let (code, out, _) = check(empty, 0o600);
        assert_eq!(code, Some(2), "{empty:?}: {out:?}");
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("no keys"), "{out:?}");
    }

    let missing = sandbox.dir.path().join("nope").display().to_string();
    let run = sandbox.run(&["keys", "check", &missing], &[], Duration::from_secs(10));
    assert_eq!(run.status.code(), Some(2), "{}", run.describe());
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
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {context}");
        assert!(
            lines[0].contains("API_KEYS_FILE") && lines[0].contains(says),
            "{context}"
        );
        assert!(!run.output().contains("tok-secret-5150"), "{context}");
    }
}

#[test]
fn sighup_rotates_the_keys_with_a_keep_alive_connection_open_across_each_reload() {
    let db = fresh_database();
    let sandbox = Sandbox::new();
    let (old, old_line) = new_key(&sandbox, "dashboard", "read");
    let (new, new_line) = new_key(&sandbox, "dashboard-2", "read");
    let file = sandbox.dir.path().join("api_keys");
    replace_file(&file, &format!("{old_line}\n"));
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_KEYS_FILE", file.display().to_string()),
        ("LOG_LEVEL", "info".into()),
    ]);
    let mut conn = common::HttpConnection::open(server.addr).unwrap();
    assert_eq!(get_users(&mut conn, &old), 200);
    assert_eq!(get_users(&mut conn, &new), 401);

    // Step 1 of a rotation: both lines, both work.
    replace_file(&file, &format!("{old_line}\n{new_line}\n"));
    let log = reload(&server, 1);
    assert!(log.contains("added: dashboard-2; removed: none"), "{log}");
    assert_eq!(
        get_users(&mut conn, &old),
        200,
        "the old key, during the overlap"
    );
    assert_eq!(
        get_users(&mut conn, &new),
        200,
        "the new key, during the overlap"
    );

    // Step 2: the old line goes, and so does the old key.
    replace_file(&file, &format!("{new_line}\n"));
    let log = reload(&server, 2);
    assert!(log.contains("added: none; removed: dashboard"), "{log}");
    assert_eq!(
        get_users(&mut conn, &new),
        200,
        "the new key, after the reload"
    );
    assert_eq!(
        get_users(&mut conn, &old),
        401,
        "the removed key, after the reload"
    );
    let fresh = |secret: &str| {
        let auth = format!("Bearer {secret}");
        common::client::send(
            server.addr,
            "GET",
            "/users",
            &[("Authorization", &auth)],
            None,
        )
        .unwrap()
        .status
    };
    assert_eq!(
        (fresh(&new), fresh(&old)),
        (200, 401),
        "on a new connection"
    );

    let stderr = server.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("\"GET /users\" 200") && l.contains("key=dashboard-2")),
        "the access line names the key: {stderr}"
    );
    for secret in [old.as_str(), new.as_str(), &old_line[old_line.len() - 64..]] {
        assert!(!stderr.contains(secret), "the log holds {secret:?}");
    }
}

#[test]
fn sighup_with_a_broken_keys_file_keeps_the_keys_in_force_and_logs_why() {
    let db = fresh_database();
    let sandbox = Sandbox::new();
    let (key, line) = new_key(&sandbox, "dashboard", "read");
    let file = sandbox.dir.path().join("api_keys");
    replace_file(&file, &format!("{line}\n"));
    {
        use std::os::unix::fs::PermissionsExt;
        let world_readable = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&file, world_readable).unwrap();
    }
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_KEYS_FILE", file.display().to_string()),
        ("LOG_LEVEL", "info".into()),
    ]);
    let mut conn = common::HttpConnection::open(server.addr).unwrap();
    assert_eq!(get_users(&mut conn, &key), 200);
    let stderr = server.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("readable by every user (mode 0644)")),
        "a world-readable keys file is worth a warning at start-up: {stderr}"
    );

    replace_file(&file, &format!("{line}\nintruder admin sha256:00\n"));
    let log = reload(&server, 1);

    assert!(
        log.contains("API keys NOT reloaded, keeping the 1 in force"),
        "{log}"
    );
    assert!(log.contains("api_keys:2: unknown scope \"admin\""), "{log}");
    assert_eq!(get_users(&mut conn, &key), 200, "the old key still works");

    std::fs::remove_file(&file).unwrap();
    let log = reload(&server, 2);
    assert!(log.contains("cannot read"), "{log}");
    assert_eq!(
        get_users(&mut conn, &key),
        200,
        "a missing file changes nothing either"
    );
}

// ---- the harness itself ----------------------------------------------------------------

/// Run by `test_cluster_is_removed_when_the_test_process_is_killed` in a child process.
#[test]
#[ignore = "a helper: run by test_cluster_is_removed_when_the_test_process_is_killed"]
fn helper_holds_a_cluster_until_killed() {
    if std::env::var_os("USER_API_TEST_HELPER").is_none() {
        return;
    }
    let cluster = TestCluster::start();
    println!("CLUSTER {} {}", cluster.port(), cluster.dir().display());
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn test_cluster_is_removed_when_the_test_process_is_killed() {
    use std::io::BufRead;
    // Arrange: a child test process holding a cluster.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_holds_a_cluster_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("USER_API_TEST_HELPER", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("CLUSTER "))
        .expect("the helper reports its cluster");
    let mut parts = line.split_whitespace().skip(1);
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let dir = PathBuf::from(parts.next().unwrap());
    assert!(dir.exists(), "the cluster directory exists while it runs");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the cluster serves"
    );

    // Act: kill it as a crash or a CI timeout would, with no destructor running.
    child.kill().unwrap();
    child.wait().unwrap();

    // Assert: its watchdog stopped the server and removed the directory.
    let gone = poll_until(Duration::from_secs(30), || {
        (!dir.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_err()).then_some(())
    });
    assert!(
        gone.is_some(),
        "{} or port {port} outlived the test process",
        dir.display()
    );
}
