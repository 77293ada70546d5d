//! `Idempotency-Key` on writes (docs/conditional-requests.md): a retry is answered with
//! the first attempt's response, never applied twice.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::common::pg::wait_for_lock_waiters;
use crate::helpers::*;

/// A JSON request with an `Idempotency-Key` (and the app's token).
fn keyed(app: &TestApp, method: &str, target: &str, key: &str, body: &Value) -> HttpResponse {
    let bytes = serde_json::to_vec(body).expect("serialise the body");
    app.request(
        method,
        target,
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", key),
        ],
        Some(&bytes),
    )
}

fn replayed(r: &HttpResponse) -> bool {
    r.header("idempotent-replayed") == Some("true")
}

/// The status, and whether the answer is a replay.
fn outcome(r: &HttpResponse) -> (u16, bool) {
    (r.status, replayed(r))
}

/// A second valid user body, unlike `ada()`.
fn grace() -> Value {
    json!({"first_name": "Grace", "last_name": "Hopper"})
}

fn stored_keys(app: &TestApp) -> i64 {
    app.db()
        .query_one("SELECT count(*) FROM idempotency_keys", &[])
        .expect("count idempotency keys")
        .get(0)
}

#[test]
fn a_post_whose_response_was_lost_is_replayed_on_retry_with_the_same_id() {
    let app = spawn_app();
    // No email: without a key, a retry would create a second Ada.
    let body = json!({"first_name": "Ada", "last_name": "Lovelace"});
    let bytes = serde_json::to_vec(&body).unwrap();

    // Act 1: send the request and hang up before any answer (a client that crashed, or a
    // network that dropped the response).
    let mut stream = TcpStream::connect(app.addr).expect("connect");
    let head = format!(
        "POST /user HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Idempotency-Key: order-17\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&bytes).unwrap();
    drop(stream);
    let created = poll_until(Duration::from_secs(10), || {
        (count_users(&app) == 1).then_some(())
    });
    assert!(created.is_some(), "the first attempt ran to its commit");

    // Act 2: the client retries, not knowing whether the first attempt happened.
    let r = keyed(&app, "POST", "/user", "order-17", &body);

    assert_eq!(r.status, 201, "the retry: {}", r.text());
    assert!(replayed(&r), "the retry says it is a replay");
    let user = r.json();
    let id: i64 = app
        .db()
        .query_one("SELECT id FROM users", &[])
        .unwrap()
        .get(0);
    assert_eq!(id_of(&user), id, "the replay names the one row");
    assert_eq!(r.header("location"), Some(format!("/user/{id}").as_str()));
    assert_eq!(r.header("etag"), app.get_user(id).header("etag"));
    assert_eq!(count_users(&app), 1, "exactly one row");
    let again = keyed(&app, "POST", "/user", "order-17", &body);
    assert_eq!(
        (again.status, again.json()),
        (201, user),
        "every replay is the same answer"
    );
    assert!(
        app.metrics()
            .text()
            .contains("idempotent_replays_total 2\n")
    );
}

#[test]
fn the_first_request_with_a_key_is_not_a_replay_and_stores_one_key() {
    let app = spawn_app();
    let r = keyed(&app, "POST", "/user", "k1", &ada());
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(!replayed(&r), "a first attempt is no replay");
    assert_eq!(stored_keys(&app), 1);
    let plain = app.create_user(&grace());
    assert_eq!(plain.status, 201);
    assert_eq!(stored_keys(&app), 1, "a write without a key stores nothing");
}

#[test]
fn the_same_key_with_a_different_request_is_422_and_changes_nothing() {
    let app = spawn_app();
    let first = keyed(&app, "POST", "/user", "k", &ada());
    assert_eq!(first.status, 201);
    let id = id_of(&first.json());

    let other_body = grace();
    assert_error(
        &keyed(&app, "POST", "/user", "k", &other_body),
        422,
        "another body",
    );
    assert_error(
        &keyed(&app, "POST", "/users", "k", &ada()),
        422,
        "another path",
    );
    assert_error(
        &keyed(&app, "PUT", &format!("/user/{id}"), "k", &ada()),
        422,
        "another method",
    );

    assert_eq!(count_users(&app), 1);
    assert_eq!(
        app.get_user(id).json()["first_name"],
        "Ada",
        "the PUT did not run"
    );
}

#[test]
fn a_retry_while_the_first_attempt_runs_is_409_with_retry_after_then_a_replay() {
    let app = spawn_app();
    let mut locker = app.db();
    let tx = lock_users(&mut locker, "EXCLUSIVE");

    let addr = app.addr;
    let first = std::thread::spawn(move || {
        let body = serde_json::to_vec(&ada()).unwrap();
        let headers = [
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "slow"),
        ];
        crate::common::client::send(addr, "POST", "/user", &headers, Some(&body)).expect("POST")
    });
    assert!(
        wait_for_lock_waiters(&mut app.db(), &app.db_name, 1, Duration::from_secs(10)),
        "the first attempt waits behind the lock"
    );

    let retry = keyed(&app, "POST", "/user", "slow", &ada());
    assert_error(&retry, 409, "a retry while the first runs");
    assert_eq!(retry.header("retry-after"), Some("1"));

    tx.rollback().unwrap();
    let first = first.join().expect("the first attempt");
    assert_eq!(first.status, 201, "{}", first.text());
    let retry = keyed(&app, "POST", "/user", "slow", &ada());
    assert_eq!(outcome(&retry), (201, true));
    assert_eq!(retry.json(), first.json());
    assert_eq!(count_users(&app), 1);
}

#[test]
fn an_error_answer_is_not_stored_so_its_retry_runs_afresh() {
    let app = spawn_app();
    let taken = app.create_named("Other", "Person", Some("ada@example.com"));

    assert_error(
        &keyed(&app, "POST", "/user", "k", &ada()),
        409,
        "the email is taken",
    );
    assert_eq!(stored_keys(&app), 0, "nothing stored for an error");
    assert_eq!(app.delete_user(taken).status, 204);
    let r = keyed(&app, "POST", "/user", "k", &ada());
    assert_eq!(outcome(&r), (201, false), "{}", r.text());
}

#[test]
fn keyed_put_patch_and_delete_are_replayed_instead_of_applied_again() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    let target = format!("/user/{id}");

    let replacement = json!({"first_name": "A", "last_name": "B"});

    let put = keyed(&app, "PUT", &target, "p1", &replacement);
    assert_eq!(put.status, 200);
    app.patch_user(id, &json!({"last_name": "Changed"}));
    let again = keyed(&app, "PUT", &target, "p1", &replacement);
    assert_eq!(outcome(&again), (200, true));
    assert_eq!(
        again.json(),
        put.json(),
        "the stored answer, not a new write"
    );
    assert_eq!(
        app.get_user(id).json()["last_name"],
        "Changed",
        "the retry changed nothing"
    );

    let patch = keyed(&app, "PATCH", &target, "p2", &json!({"first_name": "C"}));
    let again = keyed(&app, "PATCH", &target, "p2", &json!({"first_name": "C"}));
    assert_eq!(outcome(&again), (200, true));
    assert_eq!(again.json(), patch.json());

    let delete = app.request("DELETE", &target, &[("Idempotency-Key", "d1")], None);
    assert_eq!(delete.status, 204);
    let again = app.request("DELETE", &target, &[("Idempotency-Key", "d1")], None);
    assert_eq!(outcome(&again), (204, true), "not a 404");
}

#[test]
fn an_expired_key_is_purged_and_can_be_used_again() {
    let app = spawn_app_with(|vars| {
        vars.insert("IDEMPOTENCY_KEY_TTL_SECS".into(), "1".into());
    });
    let first = keyed(&app, "POST", "/user", "reuse", &ada());
    assert_eq!(first.status, 201);
    assert_eq!(stored_keys(&app), 1);

    let purged = poll_until(Duration::from_secs(15), || {
        (stored_keys(&app) == 0).then_some(())
    });
    assert!(purged.is_some(), "the purge removed the expired key");

    let other = grace();
    let second = keyed(&app, "POST", "/user", "reuse", &other);
    assert_eq!(outcome(&second), (201, false), "{}", second.text());
    assert_ne!(id_of(&second.json()), id_of(&first.json()));
    assert_eq!(count_users(&app), 2);
}

#[test]
fn a_malformed_idempotency_key_is_400_and_changes_nothing() {
    let app = spawn_app();
    let long = "k".repeat(256);
    let bytes = serde_json::to_vec(&ada()).unwrap();
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("empty", &[("Idempotency-Key", "")]),
        ("256 characters", &[("Idempotency-Key", &long)]),
        ("a space inside", &[("Idempotency-Key", "a b")]),
        (
            "two keys",
            &[("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
        ),
    ];
    for (what, key_headers) in cases {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend_from_slice(key_headers);
        let r = app.request("POST", "/user", &headers, Some(&bytes));
        assert_error(&r, 400, what);
    }
    assert_eq!(count_users(&app), 0);
    assert_eq!(stored_keys(&app), 0);
    let r = keyed(&app, "POST", "/user", &"k".repeat(255), &ada());
    assert_eq!(r.status, 201, "255 characters are fine: {}", r.text());
}

#[test]
fn an_expired_key_not_yet_purged_is_treated_as_never_used() {
    let app = spawn_app();
    let first = keyed(&app, "POST", "/user", "stale", &ada());
    assert_eq!(first.status, 201);
    // Expired a moment ago; the purge (once a minute by default) has not run.
    app.db()
        .execute(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'",
            &[],
        )
        .unwrap();

    let other = grace();
    let second = keyed(&app, "POST", "/user", "stale", &other);

    assert_eq!(outcome(&second), (201, false), "{}", second.text());
    let again = keyed(&app, "POST", "/user", "stale", &other);
    assert_eq!(
        outcome(&again),
        (201, true),
        "the key now answers the new request"
    );
    assert_eq!(again.json(), second.json());
    assert_eq!(stored_keys(&app), 1);
}

#[test]
fn a_key_is_stored_under_its_callers_identity() {
    for (token, owner) in [(Some("s3cret-token"), "api-token"), (None, "anonymous")] {
        let app = spawn_app_with(|vars| {
            if let Some(t) = token {
                vars.insert("API_TOKEN".into(), t.into());
            }
        });
        assert_eq!(keyed(&app, "POST", "/user", "k", &ada()).status, 201);
        let stored: String = app
            .db()
            .query_one("SELECT owner FROM idempotency_keys WHERE key = 'k'", &[])
            .unwrap()
            .get(0);
        assert_eq!(stored, owner, "token {token:?}");
    }
}
