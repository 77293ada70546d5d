//! Read replicas: with `DATABASE_READ_URL` (or `DB_READ_HOST`/`DB_READ_PORT`) the GET routes
//! read from a real streaming replica of the test's own primary, a read the replica cannot
//! serve falls back to the primary (and `db_replica_fallbacks_total` counts it), writes only
//! ever go to the primary, and the `Location` of a user just created answers even while the
//! replica lags behind.
//!
//! Each test has its own primary (a [`TestCluster`]) and replica (a [`Replica`] of it), since
//! the tests stop one or the other.

use std::time::{Duration, Instant};

use crate::common::Replica;
use crate::helpers::*;

const CATCH_UP: Duration = Duration::from_secs(30);

/// A primary, its replica, and an app whose reads go to the replica.
struct Setup {
    // fields drop in this order: the app first, then the replica, then the primary
    app: TestApp,
    replica: Replica,
    primary: TestCluster,
}

/// Starts the three; `read_config` sets the app's replica settings from the replica and the
/// app's `DATABASE_URL`. Returns once the replica has the app's schema and the app's replica
/// pool is full.
fn setup(
    read_config: impl FnOnce(&Replica, &mut std::collections::HashMap<String, String>),
) -> Setup {
    let primary = TestCluster::start();
    let replica = Replica::of(&primary);
    let app = spawn_app_on(&primary, |vars| {
        // a replica that is down costs a read this long before it falls back
        vars.insert("DB_POOL_TIMEOUT_MS".into(), "1000".into());
        read_config(&replica, vars);
    });
    assert!(
        replica.wait_caught_up(&primary, CATCH_UP),
        "the replica did not replay the app's database and schema within {CATCH_UP:?}"
    );
    let workers: u64 = 4;
    let full = poll_until(CATCH_UP, || {
        (replica_pool(&app) == Some(workers)).then_some(())
    });
    assert!(
        full.is_some(),
        "the app's replica pool did not open its {workers} connections: {:?}",
        replica_pool(&app)
    );
    Setup {
        app,
        replica,
        primary,
    }
}

fn with_read_url(replica: &Replica, vars: &mut std::collections::HashMap<String, String>) {
    let url = replica.read_url_for(&vars["DATABASE_URL"]);
    vars.insert("DATABASE_READ_URL".into(), url);
}

/// A sample of `/metrics` by its full series name (`name{labels}`).
fn metric(app: &TestApp, series: &str) -> Option<u64> {
    let text = app.metrics().text();
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse::<f64>().ok().map(|v| v as u64))?
    })
}

fn fallbacks(app: &TestApp) -> u64 {
    metric(app, "db_replica_fallbacks_total").expect("db_replica_fallbacks_total in /metrics")
}

/// Idle plus in-use connections of the replica pool.
fn replica_pool(app: &TestApp) -> Option<u64> {
    Some(
        metric(app, "db_replica_pool_connections{state=\"idle\"}")?
            + metric(app, "db_replica_pool_connections{state=\"in_use\"}")?,
    )
}

fn ids_listed(app: &TestApp) -> Vec<i64> {
    let r = app.list_users("limit=100");
    assert_eq!(r.status, 200, "GET /users: {}", r.text());
    r.json()["users"]
        .as_array()
        .expect("a users array")
        .iter()
        .map(id_of)
        .collect()
}

#[test]
fn reads_are_served_by_the_replica_while_the_primary_is_down() {
    // Arrange: three users, replicated.
    let s = setup(with_read_url);
    let users: Vec<Value> = ["Ada", "Grace", "Edsger"]
        .iter()
        .map(|n| {
            s.app
                .create_user_ok(&json!({"first_name": n, "last_name": "Replica"}))
        })
        .collect();
    assert!(
        s.replica.wait_caught_up(&s.primary, CATCH_UP),
        "replication"
    );

    // Act: the primary goes away.
    s.primary.stop();

    // Assert: every user and the list still come back, from the replica, as they were
    // created; nothing fell back to the (dead) primary; writes and health say 503.
    for user in &users {
        let r = s.app.get_user(id_of(user));
        assert_eq!(
            r.status,
            200,
            "GET /user/{} with the primary down: {}",
            id_of(user),
            r.text()
        );
        assert_eq!(
            &r.json(),
            user,
            "the replica's copy of user {}",
            id_of(user)
        );
    }
    let r = s.app.list_users("");
    assert_eq!(
        r.status,
        200,
        "GET /users with the primary down: {}",
        r.text()
    );
    assert_eq!(r.json()["users"], json!(users), "the list from the replica");
    assert_eq!(fallbacks(&s.app), 0, "no read went to the primary");

    let r = s
        .app
        .create_user(&json!({"first_name": "Not", "last_name": "Written"}));
    assert_eq!(r.status, 503, "POST with the primary down: {}", r.text());
    let r = s
        .app
        .patch_user(id_of(&users[0]), &json!({"last_name": "X"}));
    assert_eq!(r.status, 503, "PATCH with the primary down: {}", r.text());
    assert_eq!(
        s.app.health_ready().status,
        503,
        "/health/ready checks the primary, whatever the replica can still serve"
    );

    // ... and reads keep coming from the replica after the primary is back.
    s.primary.start_again();
    assert_eq!(ids_listed(&s.app).len(), 3);
    assert_eq!(fallbacks(&s.app), 0, "no read went to the primary");
}

/// `DB_POOL_TIMEOUT_MS` of the fallback test.
const POOL_TIMEOUT_MS: u64 = 4000;

#[test]
fn reads_fall_back_to_the_primary_and_are_counted_while_the_replica_is_down() {
    // Arrange: two users, replicated, read once through the replica. A long pool
    // timeout makes "waited for the dead replica again" unmistakable on a loaded machine.
    let s = setup(|replica, vars| {
        with_read_url(replica, vars);
        vars.insert("DB_POOL_TIMEOUT_MS".into(), POOL_TIMEOUT_MS.to_string());
    });
    let a = s
        .app
        .create_named("Ada", "Lovelace", Some("ada@example.com"));
    let b = s.app.create_named("Grace", "Hopper", None);
    assert!(
        s.replica.wait_caught_up(&s.primary, CATCH_UP),
        "replication"
    );
    assert_eq!(ids_listed(&s.app), [a, b]);
    assert_eq!(fallbacks(&s.app), 0, "the replica served the first list");

    // Act: the replica goes away.
    s.replica.stop();

    // Assert: reads still answer, from the primary, each one counted; the primary also
    // takes the writes as ever.
    let started = Instant::now();
    assert_eq!(
        s.app.get_user(a).status,
        200,
        "GET /user/{a} with the replica down"
    );
    let first_read = started.elapsed();
    let started = Instant::now();
    assert_eq!(
        ids_listed(&s.app),
        [a, b],
        "GET /users with the replica down"
    );
    let second_read = started.elapsed();
    let c = s.app.create_named("Edsger", "Dijkstra", None);
    let r = s.app.get_user(c);
    assert_eq!(
        r.status, 200,
        "GET the user created while the replica is down"
    );
    assert_eq!(r.json()["last_name"], "Dijkstra");
    let counted = fallbacks(&s.app);
    assert!(
        counted >= 3,
        "db_replica_fallbacks_total counts each read sent to the primary: {counted}"
    );
    // The first read finds the replica gone (bounded by DB_POOL_TIMEOUT_MS); the reads
    // after it skip the resting replica instead of paying that wait again.
    let pool_timeout = Duration::from_millis(POOL_TIMEOUT_MS);
    assert!(
        first_read < pool_timeout + Duration::from_secs(5),
        "a read with the replica down took {first_read:?}"
    );
    assert!(
        second_read < pool_timeout / 2,
        "the next read waited for the dead replica again: {second_read:?}"
    );

    // Act: the replica comes back (and catches up).
    s.replica.start_again();
    assert!(
        s.replica.wait_caught_up(&s.primary, CATCH_UP),
        "replication"
    );

    // Assert: reads go back to it by themselves: the counter stops growing.
    let back = poll_until(CATCH_UP, || {
        let before = fallbacks(&s.app);
        let ids = ids_listed(&s.app);
        (fallbacks(&s.app) == before && ids == [a, b, c]).then_some(())
    });
    assert!(
        back.is_some(),
        "reads did not return to the replica once it was back (fallbacks: {})",
        fallbacks(&s.app)
    );
}

#[test]
fn writes_go_to_the_primary_and_never_to_the_read_only_replica() {
    // Arrange: the replica named the other way, by host and port.
    let s = setup(|replica, vars| {
        vars.insert("DB_READ_HOST".into(), "127.0.0.1".into());
        vars.insert("DB_READ_PORT".into(), replica.port().to_string());
    });
    // A write that reached the replica would fail: it is read-only (SQLSTATE 25006).
    let mut direct = s.replica.connect(&s.app.db_name);
    let e = direct
        .batch_execute("INSERT INTO users (first_name, last_name) VALUES ('Direct', 'Write')")
        .expect_err("the replica accepted a write");
    assert_eq!(
        e.code().map(|c| c.code()),
        Some("25006"),
        "a write on the replica: {e}"
    );

    // Act + Assert: every kind of write succeeds through the app (a write sent to the
    // replica would have been a 500), and nothing fell back.
    let r = s.app.create_user(&ada());
    assert_eq!(r.status, 201, "POST: {}", r.text());
    let id = id_of(&r.json());
    let r = s
        .app
        .put_user(id, &json!({"first_name": "Ada", "last_name": "Byron"}));
    assert_eq!(r.status, 200, "PUT: {}", r.text());
    let r = s.app.patch_user(id, &json!({"email": "ada@byron.example"}));
    assert_eq!(r.status, 200, "PATCH: {}", r.text());
    let other = s.app.create_named("Grace", "Hopper", None);
    let r = s.app.delete_user(other);
    assert_eq!(r.status, 204, "DELETE: {}", r.text());
    assert_eq!(fallbacks(&s.app), 0, "no read fell back");

    // ... and they reach the replica by replication, where the app then reads them.
    assert!(
        s.replica.wait_caught_up(&s.primary, CATCH_UP),
        "replication"
    );
    let r = s.app.get_user(id);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["last_name"], "Byron");
    assert_eq!(r.json()["email"], "ada@byron.example");
    assert_eq!(s.app.get_user(other).status, 404, "the deleted user");
    assert_eq!(ids_listed(&s.app), [id]);
    let on_replica: i64 = direct
        .query_one("SELECT count(*) FROM users", &[])
        .unwrap()
        .get(0);
    assert_eq!(on_replica, 1, "the replica's own copy");
}

#[test]
fn the_location_of_a_new_user_answers_while_the_replica_lags() {
    // Arrange: a user, replicated; then the replica stops replaying (it keeps answering).
    let s = setup(with_read_url);
    let old = s.app.create_named("Ada", "Lovelace", None);
    assert!(
        s.replica.wait_caught_up(&s.primary, CATCH_UP),
        "replication"
    );
    s.replica.pause_replay();

    // Act: a user is created, and the first one changed, on the primary.
    let r = s
        .app
        .create_user(&json!({"first_name": "Grace", "last_name": "Hopper"}));
    assert_eq!(r.status, 201, "POST: {}", r.text());
    let created = r.json();
    let location = r.header("location").expect("a Location").to_owned();
    let r = s.app.patch_user(old, &json!({"last_name": "King"}));
    assert_eq!(r.status, 200, "PATCH: {}", r.text());

    // Assert: the Location answers at once, with the user as created (the replica lacks
    // it, so the primary is asked) ...
    let r = s.app.request("GET", &location, &[], None);
    assert_eq!(
        r.status,
        200,
        "GET {location} while the replica lags: {}",
        r.text()
    );
    assert_eq!(r.json(), created, "GET {location}");
    // ... while the other reads are the replica's, behind (eventually consistent): the
    // list lacks the new user and the changed one reads as it was.
    assert_eq!(
        ids_listed(&s.app),
        [old],
        "the list from the lagging replica"
    );
    assert_eq!(
        s.app.get_user(old).json()["last_name"],
        "Lovelace",
        "a changed user read from the lagging replica"
    );
    assert_eq!(
        fallbacks(&s.app),
        0,
        "the replica was up: nothing fell back"
    );

    // Act: replay resumes.
    s.replica.resume_replay();
    assert!(
        s.replica.wait_caught_up(&s.primary, CATCH_UP),
        "replication"
    );

    // Assert: the replica's reads have caught up.
    assert_eq!(ids_listed(&s.app), [old, id_of(&created)]);
    assert_eq!(s.app.get_user(old).json()["last_name"], "King");
}
