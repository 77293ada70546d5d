//! `ETag`, `If-Match` and `If-None-Match` on `/user/{id}` (docs/conditional-requests.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Barrier;

use crate::common::client;
use crate::helpers::*;

/// A JSON request with extra headers, on a new connection (these apps have no token).
fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> HttpResponse {
    let bytes = serde_json::to_vec(body).expect("serialise the body");
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    client::send(addr, method, target, &all, Some(&bytes))
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

/// The `ETag` of a response; panics unless it is a strong tag.
fn etag(r: &HttpResponse, context: &str) -> String {
    let tag = r
        .header("etag")
        .unwrap_or_else(|| panic!("{context}: no ETag on the {}", r.status))
        .to_owned();
    assert!(
        tag.len() >= 3 && tag.starts_with('"') && tag.ends_with('"'),
        "{context}: {tag:?} is not a strong entity tag"
    );
    tag
}

fn current(addr: SocketAddr, id: i64) -> (Value, String) {
    let r = client::send(addr, "GET", &format!("/user/{id}"), &[], None).expect("GET");
    assert_eq!(r.status, 200, "GET /user/{id}: {}", r.text());
    let tag = etag(&r, "GET");
    (r.json(), tag)
}

#[test]
fn every_user_representation_carries_a_strong_etag_that_changes_with_every_write() {
    let app = spawn_app();
    let created = app.create_user(&ada());
    let id = id_of(&created.json());
    let tag_created = etag(&created, "POST");
    let (_, tag_read) = current(app.addr, id);
    assert_eq!(tag_created, tag_read, "POST and GET of the same state");

    let mut seen = vec![tag_read];
    for n in 0..5 {
        // Back to back, often within one microsecond of database time.
        let r = app.patch_user(id, &json!({"last_name": format!("L{n}")}));
        assert_eq!(r.status, 200, "PATCH: {}", r.text());
        let tag = etag(&r, "PATCH");
        assert!(
            !seen.contains(&tag),
            "PATCH {n} reused an ETag: {tag} in {seen:?}"
        );
        assert_eq!(current(app.addr, id).1, tag, "GET after PATCH {n}");
        seen.push(tag);
    }
    let r = app.put_user(id, &ada());
    assert!(!seen.contains(&etag(&r, "PUT")), "PUT reused an ETag");
    let r = app.patch_user(id, &json!({}));
    assert_eq!(
        etag(&r, "empty PATCH"),
        current(app.addr, id).1,
        "an empty PATCH changes nothing"
    );
}

#[test]
fn the_etag_moves_on_even_when_the_database_clock_does_not() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    // A row stamped in the future stands for a clock that stepped back, or for two
    // updates within one microsecond: the clock alone would not move `updated_at`.
    app.db()
        .execute(
            "UPDATE users SET updated_at = '2100-01-01T00:00:00Z' WHERE id = $1",
            &[&id],
        )
        .unwrap();
    let (_, before) = current(app.addr, id);

    let first = app.patch_user(id, &json!({"last_name": "A"}));
    let second = app.patch_user(id, &json!({"last_name": "B"}));

    let (one, two) = (etag(&first, "first PATCH"), etag(&second, "second PATCH"));
    assert!(
        before != one && one != two && before != two,
        "{before} {one} {two}"
    );
    assert_eq!(second.json()["updated_at"], "2100-01-01T00:00:00.000002Z");
}

#[test]
fn if_none_match_with_the_current_etag_is_304_with_no_body_and_the_etag() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    let (_, tag) = current(app.addr, id);
    let target = format!("/user/{id}");
    let weak = format!("W/{tag}");
    let listed = format!("\"nope\", {tag}");

    for (method, value) in [
        ("GET", tag.as_str()),
        ("HEAD", tag.as_str()),
        ("GET", &weak),
        ("GET", &listed),
        ("GET", "*"),
    ] {
        let r = app.request(method, &target, &[("If-None-Match", value)], None);

        assert_eq!(
            r.status,
            304,
            "{method} If-None-Match: {value}: {}",
            r.text()
        );
        assert!(r.body.is_empty(), "a 304 has no body");
        assert_eq!(r.header("etag"), Some(tag.as_str()), "{method} {value}");
        assert_eq!(r.header("content-length"), None, "a 304 has no length");
    }

    app.patch_user(id, &json!({"first_name": "Augusta"}));
    let r = app.request("GET", &target, &[("If-None-Match", &tag)], None);
    assert_eq!(r.status, 200, "a stale tag gets the new state");
    assert_eq!(r.json()["first_name"], "Augusta");
    let r = app.request("GET", "/user/999999", &[("If-None-Match", "*")], None);
    assert_error(&r, 404, "If-None-Match on a missing user");
}

#[test]
fn two_clients_putting_with_the_same_etag_get_one_200_and_one_412_and_the_row_holds_the_winner() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    let (_, tag) = current(app.addr, id);
    let barrier = Barrier::new(2);

    let results: Vec<_> = std::thread::scope(|scope| {
        let clients: Vec<_> = ["Grace", "Hedy"]
            .into_iter()
            .map(|name| {
                let (addr, barrier, tag) = (app.addr, &barrier, &tag);
                scope.spawn(move || {
                    let body = json!({"first_name": name, "last_name": "Admin"});
                    barrier.wait();
                    (
                        name,
                        send(
                            addr,
                            "PUT",
                            &format!("/user/{id}"),
                            &[("If-Match", tag)],
                            &body,
                        ),
                    )
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|t| t.join().expect("client"))
            .collect()
    });

    let winners: Vec<_> = results.iter().filter(|(_, r)| r.status == 200).collect();
    let losers: Vec<_> = results.iter().filter(|(_, r)| r.status == 412).collect();
    assert_eq!(
        (winners.len(), losers.len()),
        (1, 1),
        "statuses: {:?}",
        results.iter().map(|(_, r)| r.status).collect::<Vec<_>>()
    );
    assert_error(&losers[0].1, 412, "the second PUT");
    let (user, now) = current(app.addr, id);
    assert_eq!(
        user["first_name"], winners[0].0,
        "the row holds the winner's data"
    );
    assert_eq!(Some(now.as_str()), winners[0].1.header("etag"));
}

#[test]
fn a_hundred_concurrent_patches_with_if_match_succeed_only_from_the_etag_they_saw() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    let (_, first) = current(app.addr, id);
    const CLIENTS: usize = 100;
    let barrier = Barrier::new(CLIENTS);

    // Each client reads, then writes with the tag it read: (seen, status, new tag).
    let results: Vec<_> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let (addr, barrier) = (app.addr, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let (_, seen) = current(addr, id);
                    let body = json!({"last_name": format!("client-{n}")});
                    let target = format!("/user/{id}");
                    let r = send(addr, "PATCH", &target, &[("If-Match", &seen)], &body);
                    let new = r.header("etag").map(str::to_owned);
                    (n, seen, r.status, new)
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|t| t.join().expect("client"))
            .collect()
    });

    // Every success moved the row on from exactly the state its client saw: the successes
    // form one chain from the first tag, and no two started from the same state.
    let mut next: HashMap<String, (usize, String)> = HashMap::new();
    for (n, seen, status, new) in &results {
        assert!(matches!(status, 200 | 412), "client {n}: {status}");
        if *status == 200 {
            let new = new.clone().expect("a 200 has an ETag");
            let earlier = next.insert(seen.clone(), (*n, new));
            assert!(
                earlier.is_none(),
                "two PATCHes succeeded from the state {seen}: a lost update"
            );
        }
    }
    let successes = next.len();
    assert!(successes >= 1, "at least the first write wins");
    let (mut tag, mut last) = (first, None);
    while let Some((n, new)) = next.remove(&tag) {
        (tag, last) = (new, Some(n));
    }
    assert!(next.is_empty(), "successes off the chain: {next:?}");
    let (user, now) = current(app.addr, id);
    assert_eq!(now, tag, "the row is at the end of the chain");
    assert_eq!(
        user["last_name"],
        format!("client-{}", last.expect("a winner"))
    );
    eprintln!("{successes} of {CLIENTS} PATCHes succeeded, the rest were 412");
}

#[test]
fn if_match_on_a_missing_user_is_404_on_a_changed_one_412_and_on_the_current_one_applies() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));
    let (_, tag) = current(app.addr, id);
    let target = format!("/user/{id}");
    let body = json!({"first_name": "Augusta", "last_name": "King"});

    for (method, b) in [("PUT", &body), ("PATCH", &body), ("DELETE", &json!(null))] {
        let missing = send(app.addr, method, "/user/999999", &[("If-Match", &tag)], b);
        assert_error(&missing, 404, &format!("{method} a missing user"));
        for stale in ["\"1\"", "\"not-ours\"", &format!("W/{tag}")] {
            let r = send(app.addr, method, &target, &[("If-Match", stale)], b);
            assert_error(&r, 412, &format!("{method} If-Match: {stale}"));
        }
        let r = send(app.addr, method, &target, &[("If-Match", "nonsense")], b);
        assert_error(&r, 400, &format!("{method} a malformed If-Match"));
    }
    assert_eq!(
        current(app.addr, id).1,
        tag,
        "nothing refused changed the user"
    );

    let r = send(
        app.addr,
        "PUT",
        &target,
        &[("If-Match", &format!("\"1\", {tag}"))],
        &body,
    );
    assert_eq!(
        r.status,
        200,
        "a list holding the current tag: {}",
        r.text()
    );
    let r = send(
        app.addr,
        "PATCH",
        &target,
        &[("If-Match", "*")],
        &json!({"last_name": "Byron"}),
    );
    assert_eq!(
        r.status,
        200,
        "If-Match: * on an existing user: {}",
        r.text()
    );
    let tag = etag(&r, "PATCH");
    let r = app.request("DELETE", &target, &[("If-Match", &tag)], None);
    assert_eq!(r.status, 204, "DELETE with the current tag: {}", r.text());
    let r = app.request("DELETE", &target, &[("If-Match", "*")], None);
    assert_error(&r, 404, "If-Match: * on a deleted user");
}

#[test]
fn with_require_if_match_a_write_without_it_is_428_and_changes_nothing() {
    let app = spawn_app_with(|vars| {
        vars.insert("REQUIRE_IF_MATCH".into(), "true".into());
    });
    let id = app.create_named("Ada", "Lovelace", None);
    let (before, tag) = current(app.addr, id);
    let body = json!({"first_name": "Augusta", "last_name": "King"});

    assert_error(&app.put_user(id, &body), 428, "PUT without If-Match");
    assert_error(&app.patch_user(id, &body), 428, "PATCH without If-Match");
    assert_error(&app.delete_user(id), 428, "DELETE without If-Match");
    assert_eq!(current(app.addr, id), (before, tag.clone()));

    let r = send(
        app.addr,
        "PUT",
        &format!("/user/{id}"),
        &[("If-Match", &tag)],
        &body,
    );
    assert_eq!(r.status, 200, "PUT with If-Match: {}", r.text());
    let r = send(
        app.addr,
        "PATCH",
        &format!("/user/{id}"),
        &[("If-Match", "*")],
        &body,
    );
    assert_eq!(r.status, 200, "PATCH with If-Match: *: {}", r.text());
}

#[test]
fn precondition_failures_are_counted_in_metrics() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    for _ in 0..2 {
        let r = send(
            app.addr,
            "PATCH",
            &format!("/user/{id}"),
            &[("If-Match", "\"1\"")],
            &json!({"last_name": "X"}),
        );
        assert_eq!(r.status, 412);
    }
    let text = app.metrics().text();
    assert!(
        text.contains("http_precondition_failed_total 2\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "http_requests_total{method=\"PATCH\",route=\"/user/{id}\",status=\"412\"} 2\n"
        ),
        "{text}"
    );
}
