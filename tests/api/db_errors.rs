//! Which status each database failure becomes, with every error made by a real
//! PostgreSQL and passed through the one conversion the app uses (`DbError` into
//! `ApiError`): 409 only for a clash on the email index, 503 for the passing conditions a
//! retry may cure, 500 for anything else (API.md, "Errors").

use std::process::Command;
use std::thread;
use std::time::Duration;

use postgres::{Client, NoTls};
use user_api::db::tls::{Connector, TlsSettings};
use user_api::db::{DbError, Endpoint, Kind, Session, StatementCache, users};
use user_api::error::ApiError;

use crate::helpers::*;

/// What a failure became: the server's SQLSTATE (if any), the status a client sees,
/// and, when the driver's error is inside, the status it alone becomes (the conversion
/// by SQLSTATE that a lost connection's 503 would otherwise hide).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    sqlstate: Option<String>,
    status: u16,
    driver_status: Option<u16>,
}

fn seen<T>(result: Result<T, DbError>, case: &str) -> Seen {
    let Err(e) = result else {
        panic!("{case}: the statement succeeded");
    };
    let sqlstate = e.code().map(|c| c.code().to_owned());
    let (status, driver_status) = match e {
        // The one place `DbError` hands the driver's error on as it is.
        DbError::Pg(e) => {
            let status = ApiError::from(DbError::Pg(e)).status();
            (status, Some(status))
        }
        DbError::Lost(e) | DbError::Stale(Some(e)) => {
            let status = ApiError::from(DbError::Stale(None)).status();
            (status, Some(ApiError::from(DbError::Pg(e)).status()))
        }
        other => (ApiError::from(other).status(), None),
    };
    Seen {
        sqlstate,
        status,
        driver_status,
    }
}

/// A failure the driver reports without the app's `Session` around it.
fn seen_driver<T>(result: Result<T, postgres::Error>, case: &str) -> Seen {
    seen(result.map_err(DbError::Pg), case)
}

fn expect(sqlstate: Option<&str>, status: u16) -> Seen {
    Seen {
        sqlstate: sqlstate.map(str::to_owned),
        status,
        driver_status: Some(status),
    }
}

/// `url` with `application_name` set, so that the session can be found and ended.
fn named(url: &str, name: &str) -> String {
    format!("{url}?application_name={name}")
}

/// The app's own kind of connection to `url`, as its pool opens them.
fn session(url: &str) -> Result<Session, DbError> {
    let pg: tokio_postgres::Config = url.parse().expect("a test URL parses");
    let tls = Connector::new(&TlsSettings::default()).expect("a TLS connector");
    Session::connect(
        &Endpoint { pg, tls },
        Duration::from_secs(60),
        StatementCache::On,
    )
}

/// The pid of the one session called `name`, once it runs a statement.
fn active_pid(admin: &mut Client, name: &str) -> i32 {
    poll_until(Duration::from_secs(30), || {
        admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                 AND state = 'active'",
                &[&name],
            )
            .ok()
            .flatten()
            .map(|row| row.get::<_, i32>(0))
    })
    .unwrap_or_else(|| panic!("the session {name} never ran its statement"))
}

/// Runs `victim` (a session called by the name it is given, running a long statement)
/// and ends it with `pg_terminate_backend`, up to ten times, until `wanted` accepts what
/// it saw; returns that, or the last outcome.
fn terminated<T: Send + 'static>(
    admin: &mut Client,
    victim: impl Fn(&str) -> (Seen, T) + Send + Sync + Clone + 'static,
    wanted: impl Fn(&Seen) -> bool,
) -> (Seen, T) {
    let mut last = None;
    for _ in 0..10 {
        let name = format!("victim_{:08x}", random_u64() as u32);
        let run = victim.clone();
        let thread_name = name.clone();
        let sleeper = thread::spawn(move || run(&thread_name));
        let pid = active_pid(admin, &name);
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
        let outcome = sleeper.join().unwrap();
        if wanted(&outcome.0) {
            return outcome;
        }
        last = Some(outcome);
    }
    last.expect("ten tries")
}

fn assert_all_as_expected(cases: &[(&str, Seen, Seen)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(name, got, want)| format!("{name}: got {got:?}, want {want:?}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn database_errors_name_the_constraint_a_row_clashed_with_in_the_db_layers_terms() {
    let app = spawn_app();
    app.db()
        .batch_execute(
            "INSERT INTO users (id, first_name, last_name, email) \
             VALUES (1, 'Ada', 'Lovelace', 'ada@example.com')",
        )
        .unwrap();
    let mut db = session(&app.db_url).unwrap();
    let mut kind_of = |sql: &str| match db.batch_execute(sql) {
        Err(e) => format!("{:?}", e.kind()),
        Ok(()) => panic!("{sql}: the statement succeeded"),
    };
    let insert = "INSERT INTO users (id, first_name, last_name, email) VALUES ";
    assert_eq!(
        kind_of(&format!("{insert} (2, 'A', 'B', 'ADA@example.com')")),
        format!("{:?}", Kind::Conflict(users::EMAIL_INDEX))
    );
    assert_eq!(
        kind_of(&format!("{insert} (1, 'A', 'B', NULL)")),
        format!("{:?}", Kind::Conflict("users_pkey"))
    );
    assert_eq!(kind_of("SELECT 1 / 0"), format!("{:?}", Kind::Other));
}

#[test]
fn database_errors_become_409_503_or_500_by_their_sqlstate() {
    let app = spawn_app();
    let mut admin = app.db();
    admin
        .batch_execute(
            "CREATE UNIQUE INDEX users_last_name_key ON users (last_name); \
             INSERT INTO users (id, first_name, last_name, email) \
             VALUES (1, 'Ada', 'Lovelace', 'ada@example.com')",
        )
        .unwrap();
    let mut db = session(&app.db_url).unwrap();
    let insert = |values: &str| {
        format!("INSERT INTO users (id, first_name, last_name, email) VALUES {values}")
    };
    let mut cases: Vec<(&str, Seen, Seen)> = Vec::new();

    // Unique violations: only the email index is the client's doing.
    let r = db.batch_execute(&insert("(2, 'A', 'B', 'ADA@example.com')"));
    cases.push((
        "the email index",
        seen(r, "email"),
        expect(Some("23505"), 409),
    ));
    let r = db.batch_execute(&insert("(1, 'A', 'B', NULL)"));
    cases.push((
        "the primary key",
        seen(r, "pkey"),
        expect(Some("23505"), 500),
    ));
    let r = db.batch_execute(&insert("(3, 'A', 'Lovelace', NULL)"));
    cases.push((
        "another unique index",
        seen(r, "other"),
        expect(Some("23505"), 500),
    ));
    let r = db.batch_execute("SELECT 1 / 0");
    cases.push((
        "a division by zero",
        seen(r, "div"),
        expect(Some("22012"), 500),
    ));

    // statement_timeout cancels the statement: worth a retry.
    let r = db.batch_execute("SET statement_timeout = '50ms'; SELECT pg_sleep(10)");
    cases.push((
        "statement_timeout",
        seen(r, "timeout"),
        expect(Some("57014"), 503),
    ));
    db.batch_execute("RESET statement_timeout").unwrap();

    // A serialization failure: this transaction's snapshot predates another's update.
    db.batch_execute(
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT last_name FROM users WHERE id = 1",
    )
    .unwrap();
    admin
        .execute("UPDATE users SET last_name = 'King' WHERE id = 1", &[])
        .unwrap();
    let r = db.batch_execute("UPDATE users SET last_name = 'Byron' WHERE id = 1");
    cases.push((
        "a serialization failure",
        seen(r, "serialize"),
        expect(Some("40001"), 503),
    ));
    db.batch_execute("ROLLBACK").unwrap();

    // Too many connections: a role allowed none.
    let role = format!("no_room_{:08x}", random_u64() as u32);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'pw' CONNECTION LIMIT 0"
        ))
        .unwrap();
    let (_, at) = app.db_url.split_once('@').unwrap();
    let r = session(&format!("postgres://{role}:pw@{at}"));
    cases.push(("a full role", seen(r, "full"), expect(Some("53300"), 503)));
    admin.batch_execute(&format!("DROP ROLE {role}")).unwrap();

    // An administrator ends the session mid-statement. The FATAL and the closed socket
    // race, so the driver reports one or the other: each is tried until it is seen.
    let url = app.db_url.clone();
    let (got, mut victim) = terminated(
        &mut admin,
        {
            let url = url.clone();
            move |name: &str| {
                let mut victim = session(&named(&url, name)).unwrap();
                let r = victim.batch_execute("SELECT pg_sleep(30)");
                (seen(r, "terminated"), victim)
            }
        },
        |s| s.sqlstate.is_some(),
    );
    cases.push(("pg_terminate_backend", got, expect(Some("57P01"), 503)));
    let r = victim.batch_execute("SELECT 1");
    let closed = Seen {
        driver_status: None,
        ..expect(None, 503)
    };
    cases.push(("the next statement", seen(r, "closed"), closed));
    // The driver's own client, once its session has been ended: whichever of the two
    // it saw above, its next statement meets a closed connection with no SQLSTATE.
    let (_, mut ended) = terminated(
        &mut admin,
        move |name: &str| {
            let mut victim = Client::connect(&named(&url, name), NoTls).unwrap();
            let r = victim.batch_execute("SELECT pg_sleep(30)");
            (seen_driver(r, "ended"), victim)
        },
        |_| true,
    );
    let got = seen_driver(ended.batch_execute("SELECT 1"), "closed");
    cases.push(("a closed connection", got, expect(None, 503)));

    // No server at all: an I/O error, no SQLSTATE. The session opens its socket itself,
    // so no driver error is inside.
    let r = session(&format!("postgres://a:b@127.0.0.1:{}/x", free_port()));
    cases.push((
        "a refused connection",
        seen(r, "refused"),
        Seen {
            driver_status: None,
            ..expect(None, 503)
        },
    ));

    // The driver's own error with no SQLSTATE and no I/O cause: our bug, not an outage.
    let row = admin.query_one("SELECT 'text'::text", &[]).unwrap();
    let r = row.try_get::<_, i32>(0);
    cases.push(("a type mismatch", seen_driver(r, "type"), expect(None, 500)));

    assert_all_as_expected(&cases);
}

#[test]
fn a_server_that_is_shutting_down_or_crashed_is_a_503() {
    // Arrange: a cluster of its own, since this test ends it.
    let cluster = TestCluster::start();
    let url = cluster.superuser_url();
    let mut admin = Client::connect(&url, NoTls).unwrap();
    let mut cases: Vec<(&str, Seen, Seen)> = Vec::new();

    // Another backend crashes: PostgreSQL ends every session. (PostgreSQL 15 sends 57P02
    // only as a warning before it closes the connection, hence no SQLSTATE.)
    let name = format!("bystander_{:08x}", random_u64() as u32);
    let mut bystander = session(&named(&url, &name)).unwrap();
    let sleeper = thread::spawn(move || bystander.batch_execute("SELECT pg_sleep(30)"));
    active_pid(&mut admin, &name);
    let pid: i32 = admin
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -KILL {pid}");
    let got = seen(sleeper.join().unwrap(), "crash");
    assert_eq!(got.status, 503, "a crash of another backend: {got:?}");

    // A smart shutdown waits for open sessions and refuses new ones with 57P03.
    let mut holder = poll_until(Duration::from_secs(60), || {
        Client::connect(&url, NoTls).ok()
    })
    .expect("the cluster recovers from the crash");
    holder.batch_execute("SELECT 1").unwrap();
    let pid_file = std::fs::read_to_string(cluster.dir().join("data/postmaster.pid")).unwrap();
    let postmaster = pid_file.lines().next().unwrap().trim().to_owned();
    let smart = Command::new("kill")
        .args(["-TERM", &postmaster])
        .status()
        .unwrap();
    assert!(smart.success(), "kill -TERM {postmaster}");
    let refused = poll_until(Duration::from_secs(30), || session(&url).err())
        .expect("new connections are refused during a smart shutdown");
    cases.push((
        "a smart shutdown",
        seen(Err::<(), _>(refused), "shutting down"),
        expect(Some("57P03"), 503),
    ));
    drop(holder);

    assert_all_as_expected(&cases);
}

#[test]
fn connection_failures_the_pool_reports_are_503s() {
    for (case, e) in [
        (
            "a timed-out exchange",
            DbError::TimedOut(Duration::from_secs(5)),
        ),
        ("a stale connection", DbError::Stale(None)),
        (
            "no connection",
            DbError::Connect(std::io::ErrorKind::ConnectionRefused.into()),
        ),
    ] {
        let e = ApiError::from(e);

        assert_eq!(e.status(), 503, "{case}: {e:?}");
        assert_eq!(
            e.to_response().header("retry-after"),
            Some("1"),
            "{case}: a 503 says when to retry"
        );
    }
}
