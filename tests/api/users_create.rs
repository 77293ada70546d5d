//! `POST /user` and `POST /users`: creation, validation of every field, conflicts and
//! concurrency.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use crate::helpers::*;

#[test]
fn create_user_returns_201_with_the_user_and_a_location_header() {
    // Arrange
    let app = spawn_app();

    // Act
    let r = app.create_user(&ada());

    // Assert
    assert_eq!(r.status, 201, "{}", r.text());
    assert_json_content_type(&r, "POST /user");
    assert_request_id(&r, "POST /user");
    let user = r.json();
    assert_user_shape(&user);
    assert_eq!(user["first_name"], "Ada");
    assert_eq!(user["last_name"], "Lovelace");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(
        user["created_at"], user["updated_at"],
        "a new user was never changed"
    );
    assert_location_is_singular(&r, &user);
}

/// `Location` names the new user at its singular path, whichever path created it.
fn assert_location_is_singular(r: &HttpResponse, user: &Value) {
    assert_eq!(
        r.header("location"),
        Some(format!("/user/{}", id_of(user)).as_str())
    );
}

#[test]
fn create_user_via_the_plural_alias_returns_201_and_a_singular_location() {
    let app = spawn_app();

    let r = app.json("POST", "/users", &ada());

    assert_eq!(r.status, 201, "{}", r.text());
    let user = r.json();
    assert_user_shape(&user);
    assert_location_is_singular(&r, &user);
}

#[test]
fn create_user_stores_the_row_in_the_database() {
    let app = spawn_app();

    let user = app.create_user_ok(&ada());

    let row = app
        .db()
        .query_one(
            "SELECT first_name, last_name, email FROM users WHERE id = $1",
            &[&id_of(&user)],
        )
        .expect("the created row");
    assert_eq!(row.get::<_, String>(0), "Ada");
    assert_eq!(row.get::<_, String>(1), "Lovelace");
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("ada@example.com")
    );
}

#[test]
fn create_user_sets_email_to_null_when_it_is_absent_or_null() {
    let app = spawn_app();
    for (case, body) in [
        (
            "absent",
            json!({"first_name": "Ada", "last_name": "Lovelace"}),
        ),
        (
            "null",
            json!({"first_name": "Ada", "last_name": "Lovelace", "email": null}),
        ),
    ] {
        let r = app.create_user(&body);

        assert_eq!(r.status, 201, "email {case}: {}", r.text());
        let user = r.json();
        assert_user_shape(&user);
        let email = user.get("email");
        assert_eq!(
            email,
            Some(&Value::Null),
            "email {case}: present as null in {user}"
        );
    }
}

#[test]
fn create_user_allows_many_users_without_an_email() {
    let app = spawn_app();

    for i in 0..3 {
        let r = app.create_user(&json!({"first_name": format!("N{i}"), "last_name": "L"}));
        assert_eq!(r.status, 201, "user {i} without email: {}", r.text());
    }

    assert_eq!(count_users(&app), 3);
}

#[test]
fn create_user_trims_surrounding_white_space_from_names() {
    let app = spawn_app();

    let user = app.create_user_ok(&json!({
        "first_name": "  Ada\t", "last_name": "\n Lovelace  ", "email": null
    }));

    assert_eq!(user["first_name"], "Ada");
    assert_eq!(user["last_name"], "Lovelace");
}

#[test]
fn create_user_accepts_names_of_exactly_100_unicode_characters() {
    let app = spawn_app();
    for (case, name) in [
        ("100 ASCII", "a".repeat(100)),
        ("100 two-byte characters", "é".repeat(100)),
        ("100 four-byte characters", "𝔸".repeat(100)),
        (
            "100 characters once trimmed",
            format!("  {}  ", "b".repeat(100)),
        ),
        ("1 character", "A".to_owned()),
        ("non-Latin script", "Ада Лавлейс 艾达".to_owned()),
    ] {
        let r = app.create_user(&json!({"first_name": name, "last_name": name}));

        assert_eq!(r.status, 201, "{case}: {}", r.text());
        let user = r.json();
        assert_eq!(user["first_name"], name.trim(), "{case}");
        assert_eq!(user["last_name"], name.trim(), "{case}");
    }
}

/// Bad values for a name, each with why it is bad.
fn bad_names() -> Vec<(&'static str, Value)> {
    vec![
        ("empty", json!("")),
        ("white space only", json!(" \t\n ")),
        ("101 characters", json!("a".repeat(101))),
        ("101 two-byte characters", json!("é".repeat(101))),
        (
            "101 characters once trimmed",
            json!(format!(" {} ", "c".repeat(101))),
        ),
        ("a NUL", json!("Ada\u{0}")),
        ("a newline inside", json!("Ada\nLovelace")),
        ("a tab inside", json!("A\tda")),
        ("a DEL", json!("Ada\u{7f}")),
        ("a C1 control character", json!("A\u{9b}da")),
        ("an escape character", json!("\u{1b}[31mAda")),
        ("null", Value::Null),
    ]
}

#[test]
fn create_user_returns_400_when_a_name_is_invalid() {
    let app = spawn_app();
    for field in ["first_name", "last_name"] {
        for (case, value) in bad_names() {
            let mut body = ada();
            body[field] = value;

            let r = app.create_user(&body);

            assert_validation_error(&r, field, &format!("{field} {case}"));
        }
    }
    assert_eq!(count_users(&app), 0, "no invalid user was stored");
}

#[test]
fn create_user_returns_400_when_a_name_is_missing() {
    let app = spawn_app();
    for field in ["first_name", "last_name"] {
        let mut body = ada();
        body.as_object_mut().unwrap().remove(field);

        let r = app.create_user(&body);

        assert_validation_error(&r, field, &format!("{field} missing"));
    }
    let r = app.create_user(&json!({}));
    assert_error(&r, 400, "empty object");
}

#[test]
fn create_user_accepts_valid_emails() {
    let app = spawn_app();
    let local_243 = "a".repeat(243);
    for (case, email) in [
        ("plus tag", "ada+tag@example.com".to_owned()),
        ("subdomain", "ada@mail.example.co.uk".to_owned()),
        ("shortest", "a@b.c".to_owned()),
        ("exactly 255 bytes", format!("{local_243}@example.com")),
        (
            "254 bytes of 134 characters",
            format!("{}@example.com", "é".repeat(121)),
        ),
    ] {
        let r = app.create_user(&json!({"first_name": "A", "last_name": "B", "email": email}));

        assert_eq!(r.status, 201, "{case}: {}", r.text());
        assert_eq!(r.json()["email"], email.as_str(), "{case}");
    }
}

#[test]
fn create_user_returns_400_when_the_email_is_invalid() {
    let app = spawn_app();
    for (case, email) in [
        ("empty", String::new()),
        ("no @", "ada.example.com".to_owned()),
        ("two @", "ada@lovelace@example.com".to_owned()),
        ("two @ together", "ada@@example.com".to_owned()),
        ("empty local part", "@example.com".to_owned()),
        ("no dot in the domain", "ada@localhost".to_owned()),
        ("empty domain", "ada@".to_owned()),
        (
            "a space in the local part",
            "ada lovelace@example.com".to_owned(),
        ),
        ("a space in the domain", "ada@exam ple.com".to_owned()),
        ("a tab inside", "ada\t@example.com".to_owned()),
        ("a newline inside", "ada@example.com\nBcc: x@y.z".to_owned()),
        (
            "a no-break space inside",
            "ada\u{a0}x@example.com".to_owned(),
        ),
        ("256 bytes", format!("{}@example.com", "a".repeat(244))),
        (
            "256 bytes in 134 characters",
            format!("{}@example.com", "é".repeat(122)),
        ),
    ] {
        let r = app.create_user(&json!({"first_name": "A", "last_name": "B", "email": email}));

        assert_validation_error(&r, "email", &format!("email {case} ({email:?})"));
    }
    assert_eq!(count_users(&app), 0, "no invalid user was stored");
}

#[test]
fn create_user_returns_400_when_the_body_is_malformed_json() {
    let app = spawn_app();
    for (case, body) in [
        ("empty body", &b""[..]),
        ("truncated", b"{\"first_name\": \"Ada\","),
        (
            "trailing comma",
            b"{\"first_name\": \"Ada\", \"last_name\": \"L\",}",
        ),
        (
            "missing comma",
            b"{\"first_name\": \"Ada\" \"last_name\": \"L\"}",
        ),
        ("not JSON at all", b"first_name=Ada&last_name=Lovelace"),
        (
            "two documents",
            b"{\"first_name\": \"A\", \"last_name\": \"B\"} {}",
        ),
        (
            "invalid UTF-8",
            b"{\"first_name\": \"\xff\xfe\", \"last_name\": \"B\"}",
        ),
        ("single quotes", b"{'first_name': 'Ada', 'last_name': 'L'}"),
    ] {
        let r = app.request(
            "POST",
            "/user",
            &[("Content-Type", "application/json")],
            Some(body),
        );

        assert_error(&r, 400, case);
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn create_user_returns_400_when_the_body_is_not_a_json_object() {
    let app = spawn_app();
    for body in [
        json!([]),
        json!([{"first_name": "Ada", "last_name": "Lovelace"}]),
        json!("Ada Lovelace"),
        json!(42),
        json!(true),
        Value::Null,
    ] {
        let r = app.create_user(&body);

        assert_error(&r, 400, &format!("body {body}"));
    }
}

#[test]
fn create_user_returns_400_when_a_field_has_the_wrong_type() {
    let app = spawn_app();
    for (field, value) in [
        ("first_name", json!(42)),
        ("first_name", json!(true)),
        ("first_name", json!(["Ada"])),
        ("first_name", json!({"name": "Ada"})),
        ("last_name", json!(1.5)),
        ("last_name", json!(false)),
        ("email", json!(42)),
        ("email", json!(true)),
        ("email", json!(["ada@example.com"])),
        ("email", json!({"address": "ada@example.com"})),
    ] {
        let mut body = ada();
        body[field] = value.clone();

        let r = app.create_user(&body);

        assert_validation_error(&r, field, &format!("{field} = {value}"));
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn create_user_returns_400_when_the_body_has_an_unknown_field() {
    let app = spawn_app();
    for (field, value) in [
        ("id", json!(7)),
        ("created_at", json!("2026-11-30T12:00:00.000000Z")),
        ("age", json!(36)),
        ("First_Name", json!("Ada")),
        ("emails", json!("ada@example.com")),
    ] {
        let mut body = ada();
        body[field] = value;

        let r = app.create_user(&body);

        assert_error(&r, 400, &format!("unknown field {field}"));
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn create_user_returns_409_when_the_email_is_taken() {
    let app = spawn_app();
    app.create_user_ok(&ada());

    let r = app.create_user(&json!({
        "first_name": "Augusta", "last_name": "King", "email": "ada@example.com"
    }));

    assert_error(&r, 409, "the same email again");
    assert_eq!(count_users(&app), 1);
}

#[test]
fn create_user_returns_409_when_email_differs_only_in_case() {
    let app = spawn_app();
    app.create_user_ok(&json!({
        "first_name": "Ada", "last_name": "Lovelace", "email": "Ada@Example.com"
    }));

    for email in ["ada@example.com", "ADA@EXAMPLE.COM", "aDa@eXample.Com"] {
        let r = app.create_user(&json!({"first_name": "A", "last_name": "B", "email": email}));

        assert_error(&r, 409, email);
    }
    assert_eq!(count_users(&app), 1);
}

/// Runs `clients` threads, each with a keep-alive connection of its own, lets them go
/// at once, and returns what each returned (`client` gets its number and connection).
fn from_concurrent_clients<T: Send + 'static>(
    app: &TestApp,
    clients: usize,
    client: impl Fn(usize, &mut HttpConnection) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let start = Arc::new(Barrier::new(clients));
    let client = Arc::new(client);
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let (start, client, addr) = (Arc::clone(&start), Arc::clone(&client), app.addr);
            std::thread::spawn(move || {
                let mut conn = HttpConnection::open(addr).expect("connect");
                start.wait();
                client(t, &mut conn)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a client thread"))
        .collect()
}

/// `POST target` with a JSON `body` on `conn`.
fn post_json(conn: &mut HttpConnection, target: &str, body: &Value) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap();
    conn.send(
        "POST",
        target,
        &[("Content-Type", "application/json")],
        Some(&bytes),
    )
    .expect("a response")
}

#[test]
fn create_user_loses_and_duplicates_no_row_under_32_concurrent_clients() {
    // Arrange
    let app = spawn_app();

    // Act: 32 clients, each on its own keep-alive connection, create 10 users each.
    let ids: Vec<i64> = from_concurrent_clients(&app, 32, |t, conn| {
        (0..10)
            .map(|i| {
                let email = (i % 3 != 0).then(|| format!("u{t}-{i}@example.com"));
                let body = json!({"first_name": format!("T{t}"), "last_name": format!("N{i}"), "email": email});
                let r = post_json(conn, "/users", &body);
                assert_eq!(r.status, 201, "client {t} create {i}: {}", r.text());
                id_of(&r.json())
            })
            .collect::<Vec<i64>>()
    })
    .into_iter()
    .flatten()
    .collect();

    // Assert
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 320);
    assert_eq!(unique.len(), 320, "every 201 has its own id");
    let stored: HashSet<i64> = app
        .db()
        .query("SELECT id FROM users", &[])
        .expect("ids")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, unique, "the table holds exactly the users created");
}

#[test]
fn create_user_gives_exactly_one_201_when_clients_race_for_the_same_email() {
    let app = spawn_app();

    let responses = from_concurrent_clients(&app, 32, |t, conn| {
        let email = if t % 2 == 0 {
            "race@example.com"
        } else {
            "RACE@example.com"
        };
        post_json(
            conn,
            "/user",
            &json!({"first_name": "R", "last_name": format!("{t}"), "email": email}),
        )
    });

    let created = responses.iter().filter(|r| r.status == 201).count();
    let conflicts: Vec<_> = responses.iter().filter(|r| r.status != 201).collect();
    assert_eq!(created, 1, "exactly one client wins the email");
    for r in conflicts {
        assert_error(r, 409, "a client that lost the race");
    }
    let stored: i64 = app
        .db()
        .query_one(
            "SELECT count(*) FROM users WHERE lower(email) = 'race@example.com'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
}
