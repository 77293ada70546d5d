//! `GET /user/{id}` and `GET /users/{id}`.

use crate::helpers::*;

#[test]
fn get_user_returns_200_with_the_user_on_both_paths() {
    let app = spawn_app();
    let created = app.create_user_ok(&ada());
    let id = id_of(&created);

    for path in [format!("/user/{id}"), format!("/users/{id}")] {
        let r = app.request("GET", &path, &[], None);

        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_json_content_type(&r, &path);
        assert_request_id(&r, &path);
        let user = r.json();
        assert_user_shape(&user);
        assert_eq!(user, created, "{path} returns the user as created");
    }
}

#[test]
fn get_user_returns_email_as_null_when_unset() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    let user = app.get_user(id).json();

    assert_eq!(user.get("email"), Some(&Value::Null), "{user}");
}

#[test]
fn get_user_returns_404_when_the_user_does_not_exist() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    for path in [
        format!("/user/{}", id + 1),
        format!("/users/{}", id + 1),
        "/user/9223372036854775807".to_owned(),
    ] {
        let r = app.request("GET", &path, &[], None);

        assert_error(&r, 404, &path);
    }
}

#[test]
fn get_user_returns_400_when_the_id_is_not_in_range() {
    let app = spawn_app();
    for id in [
        "0",
        "-1",
        "-0",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999",
        "abc",
        "1.5",
        "1e3",
        "0x10",
        "1a",
    ] {
        for base in ["/user", "/users"] {
            let path = format!("{base}/{id}");

            let r = app.request("GET", &path, &[], None);

            assert_error(&r, 400, &path);
        }
    }
}

#[test]
fn head_user_returns_the_get_headers_without_a_body() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));
    let mut conn = app.connection();

    for path in [format!("/user/{id}"), format!("/users/{id}")] {
        let (get, head) = get_then_head(&mut conn, &path);

        assert_eq!(head.status, 200, "HEAD {path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {path}"
        );
        if let Some(len) = head.header("content-length") {
            assert_eq!(
                len,
                get.body.len().to_string(),
                "HEAD {path} Content-Length"
            );
        }
        assert_request_id(&head, &path);
    }
    assert_no_head_response_carried_a_body(&mut conn);
}

#[test]
fn head_user_returns_404_without_a_body_when_the_user_does_not_exist() {
    let app = spawn_app();
    let mut conn = app.connection();

    let head = conn.send("HEAD", "/user/424242", &[], None).unwrap();

    assert_eq!(head.status, 404);
    assert_json_content_type(&head, "HEAD /user/424242");
    assert_no_head_response_carried_a_body(&mut conn);
}
