//! `PUT` (full replace) and `PATCH` (partial update) of `/user/{id}` and `/users/{id}`.

use crate::helpers::*;

fn get(app: &TestApp, id: i64) -> Value {
    let r = app.get_user(id);
    assert_eq!(r.status, 200, "GET /user/{id}: {}", r.text());
    r.json()
}

// ---- PUT ----------------------------------------------------------------------------

#[test]
fn put_user_replaces_every_field_and_returns_200_on_both_paths() {
    let app = spawn_app();
    for base in ["/user", "/users"] {
        let id = app.create_named(
            "Ada",
            "Lovelace",
            Some(&format!("ada{}@example.com", base.len())),
        );
        let body = json!({
            "first_name": "Augusta", "last_name": "King", "email": format!("augusta{}@example.org", base.len())
        });

        let r = app.json("PUT", &format!("{base}/{id}"), &body);

        assert_eq!(r.status, 200, "PUT {base}/{id}: {}", r.text());
        assert_json_content_type(&r, "PUT");
        let user = r.json();
        assert_user_shape(&user);
        assert_eq!(id_of(&user), id);
        assert_eq!(user["first_name"], "Augusta");
        assert_eq!(user["last_name"], "King");
        assert_eq!(user["email"], body["email"]);
        assert_eq!(get(&app, id), user, "GET after PUT {base}");
    }
}

#[test]
fn put_user_sets_email_to_null_when_it_is_missing() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));

    let r = app.put_user(id, &json!({"first_name": "Ada", "last_name": "Lovelace"}));

    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().get("email"), Some(&Value::Null));
    assert_eq!(get(&app, id)["email"], Value::Null);
}

#[test]
fn put_user_moves_updated_at_and_keeps_created_at() {
    let app = spawn_app();
    let before = app.create_user_ok(&ada());

    let after = app
        .put_user(
            id_of(&before),
            &json!({"first_name": "A", "last_name": "L"}),
        )
        .json();

    assert_only_updated_at_moves(&before, &after, "PUT");
}

/// `created_at` stays as it was, `updated_at` moves on.
fn assert_only_updated_at_moves(before: &Value, after: &Value, method: &str) {
    assert_eq!(after["created_at"], before["created_at"]);
    assert!(
        after["updated_at"].as_str() > before["updated_at"].as_str(),
        "updated_at moves on {method}: {before} -> {after}"
    );
}

#[test]
fn put_user_trims_names() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    let user = app
        .put_user(
            id,
            &json!({"first_name": " Augusta ", "last_name": "\tKing\n"}),
        )
        .json();

    assert_eq!(user["first_name"], "Augusta");
    assert_eq!(user["last_name"], "King");
}

#[test]
fn put_user_returns_400_when_a_name_is_missing_or_invalid() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));
    let cases = [
        ("first_name", "missing", json!({"last_name": "L"})),
        ("last_name", "missing", json!({"first_name": "A"})),
        (
            "first_name",
            "null",
            json!({"first_name": null, "last_name": "L"}),
        ),
        (
            "first_name",
            "empty",
            json!({"first_name": "", "last_name": "L"}),
        ),
        (
            "last_name",
            "101 characters",
            json!({"first_name": "A", "last_name": "x".repeat(101)}),
        ),
        (
            "last_name",
            "a control character",
            json!({"first_name": "A", "last_name": "L\u{7}"}),
        ),
        (
            "email",
            "no @",
            json!({"first_name": "A", "last_name": "L", "email": "nope"}),
        ),
        (
            "email",
            "wrong type",
            json!({"first_name": "A", "last_name": "L", "email": 5}),
        ),
    ];
    for (field, case, body) in cases {
        let r = app.put_user(id, &body);

        assert_validation_error(&r, field, &format!("PUT with {field} {case}"));
    }
    assert_eq!(get(&app, id)["first_name"], "Ada", "nothing changed");
}

#[test]
fn put_user_returns_400_when_the_body_has_an_unknown_field() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    for extra in ["id", "created_at", "updated_at", "nickname"] {
        let mut body = json!({"first_name": "A", "last_name": "L"});
        body[extra] = json!(1);

        let r = app.put_user(id, &body);

        assert_error(&r, 400, &format!("PUT with unknown field {extra}"));
    }
}

#[test]
fn put_user_returns_400_when_the_body_is_not_a_json_object() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    for body in [&b"[]"[..], b"\"x\"", b"{", b""] {
        let r = app.request(
            "PUT",
            &format!("/user/{id}"),
            &[("Content-Type", "application/json")],
            Some(body),
        );

        assert_error(
            &r,
            400,
            &format!("PUT body {:?}", String::from_utf8_lossy(body)),
        );
    }
}

#[test]
fn put_user_returns_404_when_the_user_does_not_exist() {
    let app = spawn_app();

    for path in ["/user/31337", "/users/31337"] {
        let r = app.json("PUT", path, &json!({"first_name": "A", "last_name": "L"}));

        assert_error(&r, 404, path);
    }
    assert_eq!(count_users(&app), 0, "PUT never creates");
}

#[test]
fn put_user_returns_400_when_the_id_is_not_in_range() {
    let app = spawn_app();
    for id in ["0", "-1", "9223372036854775808", "abc"] {
        let r = app.put_user(id, &json!({"first_name": "A", "last_name": "L"}));

        assert_error(&r, 400, &format!("PUT /user/{id}"));
    }
}

#[test]
fn put_user_returns_409_when_email_differs_only_in_case_from_another_users() {
    let app = spawn_app();
    app.create_named("Ada", "Lovelace", Some("ada@example.com"));
    let other = app.create_named("Grace", "Hopper", Some("grace@example.com"));

    let r = app.put_user(
        other,
        &json!({"first_name": "G", "last_name": "H", "email": "ADA@example.COM"}),
    );

    assert_error(&r, 409, "PUT with another user's email");
    assert_eq!(get(&app, other)["email"], "grace@example.com");
}

#[test]
fn put_user_keeps_its_own_email_without_a_conflict() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));

    for email in ["ada@example.com", "Ada@Example.com"] {
        let r = app.put_user(
            id,
            &json!({"first_name": "Ada", "last_name": "King", "email": email}),
        );

        assert_eq!(r.status, 200, "PUT its own email {email}: {}", r.text());
    }
}

// ---- PATCH --------------------------------------------------------------------------

#[test]
fn patch_user_changes_only_the_fields_given() {
    let app = spawn_app();
    let before = app.create_user_ok(&ada());
    let id = id_of(&before);

    for (field, value) in [("first_name", "Augusta"), ("last_name", "King")] {
        let r = app.patch_user(id, &json!({ field: value }));

        assert_eq!(r.status, 200, "PATCH {field}: {}", r.text());
        let user = r.json();
        assert_user_shape(&user);
        assert_eq!(user[field], value);
        assert_eq!(
            user["email"], "ada@example.com",
            "PATCH {field} kept the email"
        );
    }
    let after = get(&app, id);
    assert_eq!(after["first_name"], "Augusta");
    assert_eq!(after["last_name"], "King");
    assert_eq!(after["email"], "ada@example.com");
}

#[test]
fn patch_user_via_the_plural_alias_returns_200() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    let r = app.json(
        "PATCH",
        &format!("/users/{id}"),
        &json!({"last_name": "King"}),
    );

    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["last_name"], "King");
}

#[test]
fn patch_user_clears_email_when_it_is_null() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));

    let r = app.patch_user(id, &json!({"email": null}));

    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().get("email"), Some(&Value::Null));
    let after = get(&app, id);
    assert_eq!(after["email"], Value::Null);
    assert_eq!(after["first_name"], "Ada", "the names stay");
}

#[test]
fn patch_user_keeps_email_when_it_is_absent() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));

    let user = app.patch_user(id, &json!({"first_name": "Augusta"})).json();

    assert_eq!(user["email"], "ada@example.com");
}

#[test]
fn patch_user_sets_an_email() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    let user = app
        .patch_user(id, &json!({"email": "ada@example.com"}))
        .json();

    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(get(&app, id)["email"], "ada@example.com");
}

#[test]
fn patch_user_with_an_empty_object_changes_nothing() {
    let app = spawn_app();
    let before = app.create_user_ok(&ada());

    let r = app.patch_user(id_of(&before), &json!({}));

    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json();
    for key in ["id", "first_name", "last_name", "email", "created_at"] {
        assert_eq!(after[key], before[key], "{key}");
    }
}

#[test]
fn patch_user_moves_updated_at_and_keeps_created_at() {
    let app = spawn_app();
    let before = app.create_user_ok(&ada());

    let after = app
        .patch_user(id_of(&before), &json!({"last_name": "King"}))
        .json();

    assert_only_updated_at_moves(&before, &after, "PATCH");
}

#[test]
fn patch_user_returns_400_when_a_value_is_invalid() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));
    for (field, case, value) in [
        ("first_name", "null", Value::Null),
        ("last_name", "null", Value::Null),
        ("first_name", "empty", json!("")),
        ("first_name", "white space only", json!("   ")),
        ("last_name", "101 characters", json!("y".repeat(101))),
        ("first_name", "a control character", json!("A\u{1}")),
        ("first_name", "wrong type", json!(7)),
        ("email", "no dot in the domain", json!("ada@localhost")),
        ("email", "two @", json!("a@b@c.d")),
        ("email", "white space", json!("a b@c.d")),
        ("email", "wrong type", json!(false)),
    ] {
        let r = app.patch_user(id, &json!({ field: value }));

        assert_validation_error(&r, field, &format!("PATCH {field} {case}"));
    }
    let after = get(&app, id);
    assert_eq!(
        (after["first_name"].as_str(), after["email"].as_str()),
        (Some("Ada"), Some("ada@example.com")),
        "nothing changed"
    );
}

#[test]
fn patch_user_returns_400_when_the_body_has_an_unknown_field_or_is_not_an_object() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    for body in [
        json!({"id": 99}),
        json!({"first_name": "A", "middle_name": "B"}),
        json!([]),
        json!(null),
        json!("first_name"),
    ] {
        let r = app.patch_user(id, &body);

        assert_error(&r, 400, &format!("PATCH {body}"));
    }
}

#[test]
fn patch_user_returns_404_when_the_user_does_not_exist() {
    let app = spawn_app();

    for path in ["/user/31337", "/users/31337"] {
        let r = app.json("PATCH", path, &json!({"first_name": "A"}));

        assert_error(&r, 404, path);
    }
}

#[test]
fn patch_user_returns_400_when_the_id_is_not_in_range() {
    let app = spawn_app();
    for id in ["0", "-1", "9223372036854775808", "abc"] {
        let r = app.patch_user(id, &json!({"first_name": "A"}));

        assert_error(&r, 400, &format!("PATCH /user/{id}"));
    }
}

#[test]
fn patch_user_returns_409_when_email_differs_only_in_case_from_another_users() {
    let app = spawn_app();
    app.create_named("Ada", "Lovelace", Some("ada@example.com"));
    let other = app.create_named("Grace", "Hopper", None);

    let r = app.patch_user(other, &json!({"email": "Ada@Example.Com"}));

    assert_error(&r, 409, "PATCH with another user's email");
    assert_eq!(get(&app, other)["email"], Value::Null);
}

#[test]
fn patch_user_keeps_its_own_email_without_a_conflict() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));

    let r = app.patch_user(id, &json!({"email": "ADA@example.com"}));

    assert_eq!(r.status, 200, "{}", r.text());
}

/// Sends `method target` with a JSON body once `start` lets every racer go.
fn race(
    addr: std::net::SocketAddr,
    start: &std::sync::Arc<std::sync::Barrier>,
    method: &'static str,
    target: String,
    body: Value,
) -> std::thread::JoinHandle<HttpResponse> {
    let start = std::sync::Arc::clone(start);
    std::thread::spawn(move || {
        let bytes = serde_json::to_vec(&body).unwrap();
        let mut conn = HttpConnection::open(addr).expect("connect");
        start.wait();
        conn.send(
            method,
            &target,
            &[("Content-Type", "application/json")],
            Some(&bytes),
        )
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    })
}

#[test]
fn email_stays_unique_when_put_and_patch_race_for_it() {
    // Arrange: two users; each round, one is PUT and the other PATCHed to the same new
    // email (in different case) at the same moment.
    let app = spawn_app();
    let ada = app.create_named("Ada", "Lovelace", None);
    let grace = app.create_named("Grace", "Hopper", None);
    let mut outcomes = std::collections::BTreeMap::new();
    for round in 0..20 {
        let email = format!("race{round}@example.com");
        let (put_id, patch_id) = if round % 2 == 0 {
            (ada, grace)
        } else {
            (grace, ada)
        };
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let put_body =
            json!({"first_name": "Put", "last_name": "Racer", "email": email.to_uppercase()});
        let put = race(app.addr, &start, "PUT", format!("/user/{put_id}"), put_body);
        let patch_body = json!({"email": email});
        let patch = race(
            app.addr,
            &start,
            "PATCH",
            format!("/users/{patch_id}"),
            patch_body,
        );

        // Act
        let (put, patch) = (put.join().unwrap(), patch.join().unwrap());

        // Assert: one wins with 200, the other gets API.md's 409, and the table agrees.
        let context = format!("round {round}: PUT {}, PATCH {}", put.text(), patch.text());
        let (winner, loser) = match (put.status, patch.status) {
            (200, 409) => ((put_id, &put), &patch),
            (409, 200) => ((patch_id, &patch), &put),
            other => panic!("{context}: statuses {other:?}, not one 200 and one 409"),
        };
        assert_error(loser, 409, &context);
        assert_user_shape(&winner.1.json());
        let holders: Vec<i64> = app
            .db()
            .query(
                "SELECT id FROM users WHERE lower(email) = lower($1)",
                &[&email],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(holders, [winner.0], "{context}: who holds the email");
        *outcomes
            .entry(if winner.0 == put_id { "PUT" } else { "PATCH" })
            .or_insert(0) += 1;
    }
    eprintln!("PUT/PATCH race winners: {outcomes:?}");
}
