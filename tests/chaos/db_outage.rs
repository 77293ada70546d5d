//! The database goes away under a load of writers (a fast shutdown, and a crash: an
//! immediate shutdown) and comes back: every request is answered within the pool timeout,
//! with 503 and `Retry-After` while it is away; liveness and metrics serve on; the same
//! process recovers by itself, and from then on serves no 5xx; the table holds exactly
//! what the clients were told.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;

/// `DB_POOL_TIMEOUT_MS` of the app under test.
const POOL_TIMEOUT: Duration = Duration::from_millis(500);
/// What a request may take beyond the pool timeout: the query that found the connection
/// dead, the queue, a debug build on a busy machine.
const MARGIN: Duration = Duration::from_millis(500);
/// The same around a restart of the database, where a request may also open a fresh
/// connection (a SCRAM handshake, most of a second in a debug build on a busy machine).
/// Still well below the 5.5 s a request would hang on an unbounded statement.
const RESTART_MARGIN: Duration = Duration::from_millis(1500);
const WRITERS: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Stop {
    Fast,
    Crash,
}

#[test]
fn writes_get_503_in_time_and_recover_without_a_restart_when_the_database_stops_mid_load() {
    outage(Stop::Fast);
}

#[test]
fn writes_get_503_in_time_and_recover_without_a_restart_when_the_database_crashes_mid_load() {
    outage(Stop::Crash);
}

/// A probe made while the database was away.
struct Probe {
    what: String,
    took: Duration,
    response: HttpResponse,
}

fn probe(addr: std::net::SocketAddr, method: &str, target: &str) -> Probe {
    let started = Instant::now();
    let response = client::send(addr, method, target, &[], None)
        .unwrap_or_else(|e| panic!("{method} {target} during the outage: {e}"));
    Probe {
        what: format!("{method} {target}"),
        took: started.elapsed(),
        response,
    }
}

fn outage(how: Stop) {
    let _serial = serial();
    let bound = POOL_TIMEOUT + RESTART_MARGIN;
    let tag = format!("{how:?}").to_lowercase();

    // Arrange: an app on a cluster of its own (its pool of eight twice what four writers
    // use, so dead idle connections wait in it), four writers at full speed.
    let cluster = TestCluster::start();
    // The test clusters run with synchronous_commit=off, which a crash may cost the last
    // acknowledged commits; here an acknowledged commit must survive one.
    postgres::Client::connect(&cluster.superuser_url(), postgres::NoTls)
        .and_then(|mut c| c.batch_execute("ALTER ROLE postgres SET synchronous_commit = on"))
        .expect("make commits durable on the test cluster");
    let app = spawn_app_on(&cluster, |vars| {
        vars.insert("WORKERS".into(), "8".into());
        vars.insert("DB_POOL_SIZE".into(), "8".into());
        vars.insert(
            "DB_POOL_TIMEOUT_MS".into(),
            POOL_TIMEOUT.as_millis().to_string(),
        );
    });
    let load = Load::start(app.addr, WRITERS, &tag, Duration::from_secs(10), false);
    load.wait_for("20 users created", Duration::from_secs(60), |p| {
        p.created.load(Ordering::SeqCst) >= 20
    });
    let some_id: i64 = app
        .db()
        .query_one("SELECT min(id) FROM users", &[])
        .expect("read an id")
        .get(0);

    // Act 1: the database goes away mid-load.
    match how {
        Stop::Fast => cluster.stop(),
        Stop::Crash => cluster.stop_immediate(),
    }
    let down = Instant::now();
    let seen = load.progress.unavailable.load(Ordering::SeqCst);
    load.wait_for(
        "20 answers of 503 during the outage",
        Duration::from_secs(30),
        |p| p.unavailable.load(Ordering::SeqCst) >= seen + 20,
    );
    let probes: Vec<Probe> = [
        ("GET", "/health"),
        ("GET", "/health/ready"),
        ("GET", "/health/live"),
        ("GET", "/metrics"),
        ("GET", &format!("/user/{some_id}")),
        ("GET", "/users?limit=5"),
        ("DELETE", &format!("/user/{some_id}")),
    ]
    .into_iter()
    .map(|(m, t)| probe(app.addr, m, t))
    .collect();

    // Act 2: the database comes back; the app is left alone.
    let restart = Instant::now();
    cluster.start_again();
    let recovered = poll_until(Duration::from_secs(30), || {
        let r = client::send(app.addr, "GET", "/health", &[], None).ok()?;
        (r.status == 200).then(Instant::now)
    })
    .expect("/health did not answer 200 within 30 s of the database's return");
    let burst = after_recovery_burst(app.addr, &tag, some_id);
    let done = load.progress.attempts.load(Ordering::SeqCst);
    load.wait_for(
        "40 more requests after recovery",
        Duration::from_secs(30),
        |p| p.attempts.load(Ordering::SeqCst) >= done + 40,
    );
    let mut attempts = load.stop();
    let load_count = attempts.len();

    // Assert: while away, every answer in time, 503 with Retry-After; live and metrics on.
    let failures: Vec<String> = attempts
        .iter()
        .filter(|a| a.result.is_err())
        .map(Attempt::describe)
        .collect();
    assert!(
        failures.is_empty(),
        "requests to a running app failed below HTTP:\n{}",
        failures.join("\n")
    );
    let slow: Vec<String> = attempts
        .iter()
        .filter(|a| a.took > bound)
        .map(Attempt::describe)
        .collect();
    assert!(
        slow.is_empty(),
        "{} of {} requests took longer than DB_POOL_TIMEOUT_MS + {RESTART_MARGIN:?} = {bound:?}:\n{}",
        slow.len(),
        attempts.len(),
        slow.join("\n")
    );
    for a in &attempts {
        let r = a.result.as_ref().expect("checked above");
        assert!(
            r.status == 201 || r.status == 503,
            "only 201 or 503 may answer a create: {}",
            a.describe()
        );
        if r.status == 503 {
            let context = a.describe();
            assert!(retry_after(r, &context) >= 1, "{context}");
            assert_error_body(r, &context);
        }
    }
    let during: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.started >= down && a.finished() <= restart)
        .collect();
    assert!(
        !during.is_empty(),
        "no request ran entirely during the outage"
    );
    for a in &during {
        assert_eq!(a.status(), Some(503), "during the outage: {}", a.describe());
    }
    for p in &probes {
        let (r, what) = (&p.response, p.what.as_str());
        assert!(
            p.took <= bound,
            "{what} during the outage took {:?}",
            p.took
        );
        match what {
            "GET /health" | "GET /health/ready" => {
                assert_eq!(r.status, 503, "{what} during the outage: {}", r.text());
                let body = r.json();
                assert_eq!(body["status"], "unhealthy", "{what}: {body}");
                assert_eq!(body["database"], "unavailable", "{what}: {body}");
                assert!(retry_after(r, what) >= 1);
            }
            "GET /health/live" | "GET /metrics" => {
                assert_eq!(r.status, 200, "{what} during the outage: {}", r.text());
            }
            _ => {
                assert_eq!(r.status, 503, "{what} during the outage: {}", r.text());
                assert!(retry_after(r, what) >= 1);
                assert_error_body(r, what);
            }
        }
    }

    // Assert: once /health says so, nothing but success, dead connections included.
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.started >= recovered).collect();
    assert!(
        after.len() >= 40,
        "only {} requests after recovery",
        after.len()
    );
    for a in &after {
        assert_eq!(a.status(), Some(201), "after recovery: {}", a.describe());
    }
    for (what, r) in &burst.reads {
        assert!(
            (200..300).contains(&r.status),
            "{what} after recovery: {} {}",
            r.status,
            r.text()
        );
    }
    for a in &burst.creates {
        assert_eq!(
            a.status(),
            Some(201),
            "burst after recovery: {}",
            a.describe()
        );
    }

    // Assert: the table holds what the clients were told, and the 503s at most once.
    attempts.extend(burst.creates);
    let rows = check_rows(&mut app.db(), &attempts, expect_by_status);
    let slowest_503 = attempts
        .iter()
        .filter(|a| a.status() == Some(503))
        .map(|a| a.took)
        .max()
        .unwrap_or_default();
    let last_503 = attempts
        .iter()
        .filter(|a| a.status() == Some(503))
        .map(Attempt::finished)
        .max()
        .expect("503s were seen");
    let max_took = attempts.iter().map(|a| a.took).max().unwrap_or_default();
    eprintln!(
        "db outage ({how:?}, {} build): {load_count} load + {} burst creates {:?}; \
         slowest 503 {slowest_503:?}, slowest request {max_took:?} (bound {bound:?}); \
         restart -> /health 200 in {:?}; last 503 answered {} the restart; rows {rows:?}",
        profile(),
        attempts.len() - load_count,
        histogram(&attempts),
        recovered - restart,
        if last_503 <= restart {
            "before"
        } else {
            "after"
        },
    );
}

/// What a burst of fresh clients saw right after recovery.
struct Burst {
    creates: Vec<Attempt>,
    reads: Vec<(String, HttpResponse)>,
}

/// Eight clients on fresh connections, each creating a user, reading it back, listing,
/// and asking for health, at once.
fn after_recovery_burst(addr: std::net::SocketAddr, tag: &str, some_id: i64) -> Burst {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let tag = format!("{tag}-burst");
            std::thread::spawn(move || {
                let mut client = Client::new(addr, Duration::from_secs(10));
                let token = format!("{tag}-{t}");
                let started = Instant::now();
                let result = client.json("POST", "/user", &create_body(&token, &tag, t));
                let attempt = Attempt {
                    token,
                    started,
                    took: started.elapsed(),
                    result,
                };
                let mut reads = Vec::new();
                let mut targets = vec![
                    format!("/user/{some_id}"),
                    "/users?limit=5".to_owned(),
                    "/health".to_owned(),
                ];
                if let Some(id) = attempt.created_id() {
                    targets.push(format!("/user/{id}"));
                }
                for target in targets {
                    let r = client
                        .send("GET", &target, &[], None)
                        .unwrap_or_else(|e| panic!("GET {target} after recovery: {e}"));
                    reads.push((format!("GET {target}"), r));
                }
                (attempt, reads)
            })
        })
        .collect();
    let mut burst = Burst {
        creates: Vec::new(),
        reads: Vec::new(),
    };
    for t in threads {
        let (attempt, reads) = t.join().expect("a burst thread panicked");
        burst.creates.push(attempt);
        burst.reads.extend(reads);
    }
    burst
}

/// For `period`, ends the app's database sessions over and over with
/// `pg_terminate_backend`, every 15 ms; returns how many it ended.
pub fn terminate_app_sessions_for(app: &TestApp, period: Duration) -> i64 {
    let mut saboteur = app.db();
    let mut terminated = 0i64;
    let until = Instant::now() + period;
    while Instant::now() < until {
        let row = saboteur
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'user-api'",
                &[&app.db_name],
            )
            .expect("terminate the app's sessions");
        terminated += row.get::<_, i64>(0);
        std::thread::sleep(Duration::from_millis(15));
    }
    terminated
}

#[test]
fn writes_exist_exactly_once_when_backends_are_terminated_mid_load() {
    let _serial = serial();

    // Arrange: four writers at full speed, and a saboteur ending the app's sessions.
    let app = spawn_app_with(|vars| {
        vars.insert("WORKERS".into(), "8".into());
        vars.insert("DB_POOL_SIZE".into(), "4".into());
        vars.insert("DB_POOL_TIMEOUT_MS".into(), "1000".into());
    });
    let load = Load::start(
        app.addr,
        WRITERS,
        "terminated",
        Duration::from_secs(10),
        false,
    );
    load.wait_for("20 users created", Duration::from_secs(60), |p| {
        p.created.load(Ordering::SeqCst) >= 20
    });

    // Act: for a few seconds, pg_terminate_backend on the app's sessions, over and over
    // (what a DBA, idle_session_timeout or a pooler restart does to one session).
    let terminated = terminate_app_sessions_for(&app, Duration::from_secs(6));
    let attempts = load.stop();

    // Assert: every 201 exactly once, no row nobody was told about (a write retried
    // after it had committed would leave one).
    let rows = check_rows(&mut app.db(), &attempts, expect_by_status);
    eprintln!(
        "terminated {terminated} sessions under {} creates {:?}; rows {rows:?}",
        attempts.len(),
        histogram(&attempts)
    );
    for a in &attempts {
        assert!(
            matches!(a.status(), Some(201 | 503)),
            "only 201 or 503 may answer a create: {}",
            a.describe()
        );
    }
}

/// Every process of the cluster: the postmaster and its children.
fn cluster_pids(cluster: &TestCluster) -> Vec<String> {
    let pidfile = std::fs::read_to_string(cluster.dir().join("data/postmaster.pid"))
        .expect("read postmaster.pid");
    let postmaster = pidfile.lines().next().expect("a pid").trim().to_owned();
    let mut pids = vec![postmaster.clone()];
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid == Some(postmaster.as_str()) {
            pids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    pids
}

/// Signals each of `pids`; one that has exited meanwhile is no matter.
fn signal_all(pids: &[String], signal: &str) {
    std::process::Command::new("kill")
        .arg(signal)
        .args(pids)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run kill");
}

/// The cluster's processes stopped with SIGSTOP (a database that hangs: its kernel still
/// acknowledges every packet, nothing answers); SIGCONT when dropped.
struct Frozen(Vec<String>);

impl Frozen {
    fn new(cluster: &TestCluster) -> Frozen {
        let pids = cluster_pids(cluster);
        signal_all(&pids, "-STOP");
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal_all(&self.0, "-CONT");
    }
}

#[test]
fn requests_get_503_in_time_and_liveness_stays_200_when_the_database_hangs() {
    let _serial = serial();
    const STATEMENT_TIMEOUT: Duration = Duration::from_millis(1000);
    // DB_QUERY_TIMEOUT_MS left at its default: the statement timeout plus half a second.
    let query_timeout = STATEMENT_TIMEOUT + Duration::from_millis(500);
    // The first requests wait for their statement's deadline; those queued behind them
    // (twice the workers are sent) then wait for a pooled connection that cannot open.
    // A pool timeout and a margin long enough for a loaded machine (with 0.5 s each,
    // one loaded run in twenty saw every answer late); the pool timeout stays longer
    // than the margin, so the first four still stand apart from the four behind them.
    let pool_timeout = Duration::from_secs(2);
    let margin = RESTART_MARGIN;
    let first = query_timeout + margin;
    let bound = query_timeout + pool_timeout + margin;

    // Arrange: an app with four workers on a cluster of its own.
    let cluster = TestCluster::start();
    let app = spawn_app_on(&cluster, |vars| {
        vars.insert("WORKERS".into(), "4".into());
        vars.insert("DB_POOL_SIZE".into(), "4".into());
        vars.insert(
            "DB_POOL_TIMEOUT_MS".into(),
            pool_timeout.as_millis().to_string(),
        );
        vars.insert(
            "DB_STATEMENT_TIMEOUT_MS".into(),
            STATEMENT_TIMEOUT.as_millis().to_string(),
        );
    });
    let id = app.create_named("Ada", "Lovelace", None);
    let before = app
        .db()
        .query("SELECT id FROM users", &[])
        .expect("count")
        .len();

    // The pool full first: then each of the first four requests takes an open
    // connection at once, and "four in use" below means four workers waiting.
    let pool_full = poll_until(Duration::from_secs(30), || {
        let text = Client::new(app.addr, Duration::from_secs(5))
            .send("GET", "/metrics", &[], None)
            .ok()?
            .text();
        (metric(&text, "db_pool_connections{state=\"idle\"}") == Some(4.0)).then_some(())
    });
    assert!(
        pool_full.is_some(),
        "the pool never had four idle connections"
    );

    // Act: the database hangs; eight requests that need it (twice the workers: reads,
    // health checks and writes), then a liveness probe.
    let frozen = Frozen::new(&cluster);
    let addr = app.addr;
    let asks: Vec<_> = (0..8)
        .map(|i| {
            let (method, target, body) = match i % 4 {
                0 => ("GET", format!("/user/{id}"), None),
                1 => ("GET", "/health".to_owned(), None),
                2 => ("GET", "/users?limit=5".to_owned(), None),
                _ => (
                    "POST",
                    "/user".to_owned(),
                    Some(br#"{"first_name":"Hung","last_name":"Write"}"#.to_vec()),
                ),
            };
            std::thread::spawn(move || {
                let started = Instant::now();
                let r = Client::new(addr, bound * 3).send(
                    method,
                    &target,
                    &[("Content-Type", "application/json")],
                    body.as_deref(),
                );
                (format!("{method} {target}"), r, started.elapsed())
            })
        })
        .collect();
    // Every worker must be waiting on the database before the probe, or an idle one
    // could serve it and the test pass for the wrong reason: all four pooled
    // connections in use says so (/metrics is answered without a worker).
    let all_busy = poll_until(Duration::from_secs(10), || {
        let text = Client::new(addr, Duration::from_secs(5))
            .send("GET", "/metrics", &[], None)
            .ok()?
            .text();
        (metric(&text, "db_pool_connections{state=\"in_use\"}") == Some(4.0)).then_some(())
    });
    // One probe, no retries: a retry would be served by a worker freed meanwhile.
    let started = Instant::now();
    let live = Client::new(addr, Duration::from_secs(3))
        .send("GET", "/health/live", &[], None)
        .map(|r| (r.status, started.elapsed()));
    let started = Instant::now();
    let metrics = Client::new(addr, Duration::from_secs(3))
        .send("GET", "/metrics", &[], None)
        .map(|r| (r.status, started.elapsed(), r.text()));
    let answers: Vec<_> = asks.into_iter().map(|t| t.join().unwrap()).collect();
    // Still hung: each of the eight either timed out on its statement or found no
    // connection in time, and the counters say which.
    let counted = Client::new(addr, Duration::from_secs(3))
        .send("GET", "/metrics", &[], None)
        .map(|r| r.text())
        .unwrap_or_default();
    drop(frozen);

    // Assert: every request answered 503 with Retry-After in time, liveness at once.
    assert!(
        all_busy.is_some(),
        "the four workers were never all seen waiting on the hung database"
    );
    let mut problems = Vec::new();
    for (what, r, took) in &answers {
        match r {
            Ok(r) if r.status == 503 && *took <= bound => {
                let context = format!("{what} after {took:?}");
                assert!(retry_after(r, &context) >= 1, "{context}");
                // /health answers with the health object itself; the rest with an error.
                if !what.ends_with("/health") {
                    assert_error_body(r, &context);
                }
            }
            Ok(r) => problems.push(format!("{what}: {} after {took:?}", r.status)),
            Err(e) => problems.push(format!("{what}: no answer after {took:?}: {e}")),
        }
    }
    let within_first = answers.iter().filter(|(_, _, took)| *took <= first).count();
    if within_first < 4 {
        problems.push(format!(
            "only {within_first} of 8 answered within the query timeout + {margin:?}; \
             the four that reached a worker first should have"
        ));
    }
    match &live {
        // Through a worker it would wait for the hang (1.5 s and more).
        Ok((200, took)) if *took < Duration::from_secs(2) => {}
        other => problems.push(format!("GET /health/live: {other:?} (status, time)")),
    }
    match &metrics {
        Ok((200, took, _)) if *took < Duration::from_secs(2) => {}
        other => problems.push(format!("GET /metrics: {other:?} (status, time, text)")),
    }
    let query_timeouts = metric(&counted, "db_query_timeouts_total").unwrap_or(-1.0);
    let wait_timeouts = metric(&counted, "db_pool_wait_timeouts_total").unwrap_or(-1.0);
    if query_timeouts < 1.0 || query_timeouts + wait_timeouts != 8.0 {
        problems.push(format!(
            "/metrics counted {query_timeouts} query timeouts and {wait_timeouts} pool wait \
             timeouts; expected at least one of the first and 8 in all"
        ));
    }
    assert!(
        problems.is_empty(),
        "while the database hung (bound {bound:?} = query timeout + pool timeout + \
         {margin:?}):\n{}",
        problems.join("\n")
    );

    // And once it answers again: healthy, serving, and the writes that got 503 either
    // happened or not (their outcome is unknown to the client), nothing else.
    let healthy = poll_until(Duration::from_secs(30), || {
        (app.health().status == 200).then_some(())
    });
    assert!(
        healthy.is_some(),
        "/health did not recover once the database answered again"
    );
    let after = app
        .db()
        .query("SELECT id FROM users", &[])
        .expect("count")
        .len();
    assert!(
        (before..=before + 2).contains(&after),
        "{before} users before, {after} after two writes that got 503"
    );
    assert_eq!(app.get_user(id).status, 200);
}

#[test]
fn a_request_after_a_hang_was_seen_waits_the_pool_timeout_not_a_ping_per_idle_connection() {
    let _serial = serial();
    const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);

    // Arrange: eight pooled connections, all open and idle.
    let cluster = TestCluster::start();
    let app = spawn_app_on(&cluster, |vars| {
        vars.insert("WORKERS".into(), "2".into());
        vars.insert("DB_POOL_SIZE".into(), "8".into());
        vars.insert(
            "DB_POOL_TIMEOUT_MS".into(),
            POOL_TIMEOUT.as_millis().to_string(),
        );
        vars.insert(
            "DB_QUERY_TIMEOUT_MS".into(),
            QUERY_TIMEOUT.as_millis().to_string(),
        );
    });
    let id = app.create_named("Ada", "Lovelace", None);
    let all_idle = poll_until(Duration::from_secs(10), || {
        let idle = scrape(app.addr, "db_pool_connections{state=\"idle\"}");
        (idle == 8.0).then_some(())
    });
    assert!(all_idle.is_some(), "the pool never held 8 idle connections");

    // Act: the database hangs. One read times out on its statement, which makes every
    // idle connection suspect; then another read.
    let frozen = Frozen::new(&cluster);
    let timed_get = || {
        let started = Instant::now();
        let r = Client::new(app.addr, Duration::from_secs(10)).send(
            "GET",
            &format!("/user/{id}"),
            &[],
            None,
        );
        (r.map(|r| r.status), started.elapsed())
    };
    let first = timed_get();
    let second = timed_get();
    drop(frozen);

    // Assert: the first waited for its statement, the second only for the pool, though
    // seven idle connections were there to be checked.
    assert!(
        matches!(first, (Ok(503), took) if took >= QUERY_TIMEOUT && took <= QUERY_TIMEOUT + MARGIN),
        "first read: {first:?}, expected 503 after {QUERY_TIMEOUT:?}"
    );
    assert!(
        matches!(second, (Ok(503), took) if took <= POOL_TIMEOUT + MARGIN),
        "second read: {second:?}, expected 503 within {:?}",
        POOL_TIMEOUT + MARGIN
    );
    let healthy = poll_until(Duration::from_secs(30), || {
        (app.get_user(id).status == 200).then_some(())
    });
    assert!(healthy.is_some(), "reads did not recover after SIGCONT");
}
