//! More concurrent requests than pooled connections: each waits up to
//! `DB_POOL_TIMEOUT_MS` for one, then gets 503 with `Retry-After`, and
//! `db_pool_wait_timeouts_total` counts exactly those.

use std::sync::Arc;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::support::*;

/// Long enough that "waited one pool timeout, not two" survives a loaded machine.
const POOL_TIMEOUT: Duration = Duration::from_millis(2000);

#[test]
fn requests_wait_the_pool_timeout_then_get_503_counted_exactly_when_the_only_connection_is_held() {
    let _serial = serial();

    // Arrange: one pooled connection, six workers, two users.
    let app = spawn_app_with(|vars| {
        vars.insert("WORKERS".into(), "6".into());
        vars.insert("DB_POOL_SIZE".into(), "1".into());
        vars.insert(
            "DB_POOL_TIMEOUT_MS".into(),
            POOL_TIMEOUT.as_millis().to_string(),
        );
    });
    let keep = app.create_named("Ada", "Lovelace", None);
    let doomed = app.create_named("Grace", "Hopper", Some("grace@example.com"));
    // The only connection is held by a request blocked behind our lock.
    let mut locker = app.db();
    let mut lock = locker.transaction().expect("begin");
    lock.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .expect("lock the users table");
    let addr = app.addr;
    let blocked =
        std::thread::spawn(move || client::send(addr, "GET", &format!("/user/{keep}"), &[], None));
    assert!(
        pg::wait_for_lock_waiters(&mut app.db(), &app.db_name, 1, Duration::from_secs(10)),
        "the first request never reached the database"
    );
    let timeouts_before = scrape(app.addr, "db_pool_wait_timeouts_total");
    let in_use = scrape(app.addr, "db_pool_connections{state=\"in_use\"}");
    assert_eq!(in_use, 1.0, "the one pooled connection is in use");

    // Act: five requests at once, every kind that needs the database.
    let requests: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/user/{keep}"), None),
        ("GET", "/users?limit=5".into(), None),
        (
            "POST",
            "/user".into(),
            Some(json!({"first_name": "Never", "last_name": "Stored"})),
        ),
        ("DELETE", format!("/user/{doomed}"), None),
        ("GET", "/health".into(), None),
    ];
    let start = Arc::new(Barrier::new(requests.len()));
    let threads: Vec<_> = requests
        .into_iter()
        .map(|(method, target, body)| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut client = Client::new(addr, Duration::from_secs(10));
                start.wait();
                let started = Instant::now();
                let r = match &body {
                    Some(b) => client.json(method, &target, b),
                    None => client.send(method, &target, &[], None),
                };
                (format!("{method} {target}"), r, started.elapsed())
            })
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let timeouts_after = scrape(app.addr, "db_pool_wait_timeouts_total");
    lock.commit().expect("release the lock");

    // Assert: each waited the timeout, no much longer, and got 503 with Retry-After.
    for (what, r, took) in &answers {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        assert_eq!(r.status, 503, "{what}: {}", r.text());
        assert!(retry_after(r, what) >= 1, "{what}");
        if what == "GET /health" {
            assert_eq!(r.json()["status"], "unhealthy", "{what}");
        } else {
            assert_error_body(r, what);
        }
        assert!(
            *took >= POOL_TIMEOUT - Duration::from_millis(50),
            "{what}: 503 after only {took:?}: it did not wait for a connection"
        );
        assert!(
            *took < POOL_TIMEOUT * 2,
            "{what}: 503 after {took:?}, more than one DB_POOL_TIMEOUT_MS ({POOL_TIMEOUT:?})"
        );
    }
    assert_eq!(
        timeouts_after - timeouts_before,
        answers.len() as f64,
        "db_pool_wait_timeouts_total went from {timeouts_before} to {timeouts_after} \
         for {} answers of 503",
        answers.len()
    );

    // Assert: the blocked request completes, and the pool serves normally again.
    let first = blocked
        .join()
        .unwrap()
        .expect("the blocked request's answer");
    assert_eq!(first.status, 200, "the blocked request: {}", first.text());
    for _ in 0..5 {
        assert_eq!(app.get_user(keep).status, 200);
    }
    assert_eq!(
        app.get_user(doomed).status,
        200,
        "the DELETE that got 503 deleted nothing"
    );
    let mut db = app.db();
    let rows: i64 = db
        .query_one("SELECT count(*) FROM users", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 2, "the POST that got 503 stored nothing");
    assert_eq!(
        scrape(app.addr, "db_pool_wait_timeouts_total"),
        timeouts_after,
        "no timeouts once the connection is free"
    );
    let took: Vec<_> = answers
        .iter()
        .map(|(w, _, t)| format!("{w}: {t:?}"))
        .collect();
    eprintln!(
        "pool exhaustion: 5 x 503 after {} (DB_POOL_TIMEOUT_MS {POOL_TIMEOUT:?}); \
         db_pool_wait_timeouts_total {timeouts_before} -> {timeouts_after}",
        took.join(", ")
    );
}
