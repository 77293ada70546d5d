//! `GET /users`: the listing object, paging by offset and by `after_id`, the email
//! filter and every bad query parameter.

use crate::helpers::*;

/// Creates `n` users without email and returns their ids in creation order.
fn create_many(app: &TestApp, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| app.create_named(&format!("First{i}"), &format!("Last{i}"), None))
        .collect()
}

/// Lists and checks the listing object's shape; returns it.
fn list(app: &TestApp, query: &str) -> Value {
    let r = app.list_users(query);
    assert_eq!(r.status, 200, "GET /users?{query}: {}", r.text());
    assert_json_content_type(&r, query);
    assert_request_id(&r, query);
    let page = r.json();
    assert_eq!(
        sorted_keys(&page, "the listing"),
        ["limit", "next_after_id", "offset", "users"],
        "the listing has exactly four keys: {page}"
    );
    for user in page["users"].as_array().expect("users is an array") {
        assert_user_shape(user);
    }
    page
}

fn ids(page: &Value) -> Vec<i64> {
    page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

#[test]
fn list_users_returns_an_empty_page_with_the_defaults() {
    let app = spawn_app();

    let page = list(&app, "");

    assert_eq!(
        page,
        json!({"users": [], "limit": 10, "offset": 0, "next_after_id": null})
    );
}

#[test]
fn list_users_returns_users_ordered_by_id() {
    let app = spawn_app();
    let created = create_many(&app, 5);
    // Renaming the first user must not move it.
    app.patch_user(created[0], &json!({"first_name": "Zed"}));

    let page = list(&app, "");

    assert_eq!(ids(&page), created);
    assert_eq!(page["users"][0]["first_name"], "Zed");
    assert_eq!(page["next_after_id"], Value::Null, "the page is not full");
}

#[test]
fn list_users_returns_10_by_default_and_next_after_id_when_the_page_is_full() {
    let app = spawn_app();
    let created = create_many(&app, 12);

    let first = list(&app, "");
    let second = list(&app, "offset=10");

    assert_eq!(ids(&first), created[..10]);
    assert_eq!(first["limit"], 10);
    assert_eq!(first["offset"], 0);
    assert_eq!(first["next_after_id"], created[9]);
    assert_eq!(ids(&second), created[10..]);
    assert_eq!(second["offset"], 10);
    assert_eq!(second["next_after_id"], Value::Null);
}

#[test]
fn list_users_sets_next_after_id_when_the_page_is_exactly_full() {
    let app = spawn_app();
    let created = create_many(&app, 3);

    let page = list(&app, "limit=3");

    assert_eq!(ids(&page), created);
    assert_eq!(
        page["next_after_id"], created[2],
        "a full page names its last id"
    );
}

#[test]
fn list_users_echoes_limit_and_offset() {
    let app = spawn_app();
    let created = create_many(&app, 6);

    for (query, expected, limit, offset) in [
        ("limit=2&offset=1", &created[1..3], 2, 1),
        ("offset=4&limit=100", &created[4..], 100, 4),
        ("limit=1", &created[..1], 1, 0),
        ("offset=6", &created[6..], 10, 6),
        ("offset=1000", &created[6..], 10, 1000),
    ] {
        let page = list(&app, query);

        assert_eq!(ids(&page), expected, "{query}");
        assert_eq!(page["limit"], limit, "{query}");
        assert_eq!(page["offset"], offset, "{query}");
    }
}

#[test]
fn list_users_pages_by_after_id() {
    let app = spawn_app();
    let created = create_many(&app, 5);

    let page = list(&app, &format!("after_id={}&limit=2", created[1]));

    assert_eq!(ids(&page), created[2..4]);
    assert_eq!(page["offset"], 0, "offset is echoed as 0 with after_id");
    assert_eq!(page["limit"], 2);
    assert_eq!(page["next_after_id"], created[3]);
    let explicit_zero = list(&app, &format!("after_id={}&offset=0", created[1]));
    assert_eq!(ids(&explicit_zero), created[2..]);
}

#[test]
fn list_users_walks_every_user_once_by_following_next_after_id() {
    let app = spawn_app();
    let created = create_many(&app, 7);
    let mut seen = Vec::new();
    let mut query = "limit=3".to_owned();

    for _ in 0..10 {
        let page = list(&app, &query);
        seen.extend(ids(&page));
        match page["next_after_id"].as_i64() {
            Some(next) => query = format!("limit=3&after_id={next}"),
            None => break,
        }
    }

    assert_eq!(seen, created);
}

#[test]
fn list_users_skips_deleted_users() {
    let app = spawn_app();
    let created = create_many(&app, 3);
    app.delete_user(created[1]);

    let page = list(&app, "");

    assert_eq!(ids(&page), [created[0], created[2]]);
}

#[test]
fn list_users_filters_by_email_without_regard_to_case() {
    let app = spawn_app();
    app.create_named("Grace", "Hopper", Some("grace@example.com"));
    let ada = app.create_named("Ada", "Lovelace", Some("Ada@Example.com"));
    app.create_named("Alan", "Turing", None);

    for query in [
        "email=ada%40example.com",
        "email=Ada@Example.com",
        "email=ADA%40EXAMPLE.COM",
    ] {
        let page = list(&app, query);

        assert_eq!(ids(&page), [ada], "{query}");
    }
    let none = list(&app, "email=nobody%40example.com");
    assert_eq!(ids(&none), Vec::<i64>::new());
    let other_domain = list(&app, "email=ada%40example.org");
    assert_eq!(ids(&other_domain), Vec::<i64>::new(), "the match is exact");
}

#[test]
fn list_users_filters_by_an_email_with_a_plus_sign() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada+list@example.com"));

    let page = list(&app, "email=ada%2Blist%40example.com");

    assert_eq!(ids(&page), [id]);
}

#[test]
fn list_users_returns_400_when_a_query_parameter_is_bad() {
    let app = spawn_app();
    create_many(&app, 2);
    for (case, query) in [
        ("unknown parameter", "foo=1"),
        ("unknown parameter besides good ones", "limit=5&page=2"),
        ("parameter name in another case", "LIMIT=5"),
        ("limit 0", "limit=0"),
        ("limit 101", "limit=101"),
        ("limit negative", "limit=-1"),
        ("limit not a number", "limit=abc"),
        ("limit empty", "limit="),
        ("limit fractional", "limit=1.5"),
        ("limit huge", "limit=99999999999999999999"),
        ("offset negative", "offset=-1"),
        ("offset not a number", "offset=abc"),
        ("offset empty", "offset="),
        ("after_id not a number", "after_id=abc"),
        ("after_id out of range", "after_id=9223372036854775808"),
        ("after_id with a non-zero offset", "after_id=1&offset=1"),
        // API.md: numbers are decimal digits only, so a sign is refused even when the
        // number after it is in range.
        ("limit with a plus sign", "limit=+5"),
        ("limit with an encoded plus sign", "limit=%2B5"),
        ("offset with a plus sign", "offset=+0"),
        ("after_id with a plus sign", "after_id=+1"),
        ("limit with a space", "limit=%205"),
    ] {
        let r = app.list_users(query);

        assert_error(&r, 400, &format!("{case}: GET /users?{query}"));
    }
}

#[test]
fn list_users_accepts_the_limit_bounds() {
    let app = spawn_app();
    let created = create_many(&app, 2);

    for limit in [1, 100] {
        let page = list(&app, &format!("limit={limit}"));

        assert_eq!(page["limit"], limit);
        assert_eq!(ids(&page), created[..created.len().min(limit)]);
    }
}

#[test]
fn head_users_returns_the_get_headers_without_a_body() {
    let app = spawn_app();
    create_many(&app, 2);
    let mut conn = app.connection();

    for target in ["/users", "/users?limit=1"] {
        let (get, head) = get_then_head(&mut conn, target);

        assert_eq!(head.status, 200, "HEAD {target}");
        assert_eq!(head.header("content-type"), get.header("content-type"));
        if let Some(len) = head.header("content-length") {
            assert_eq!(len, get.body.len().to_string(), "HEAD {target}");
        }
    }
    assert_no_head_response_carried_a_body(&mut conn);
}
