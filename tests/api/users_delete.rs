//! `DELETE /user/{id}` and `DELETE /users/{id}`.

use std::io::{Read, Write};

use crate::helpers::*;

/// Writes `request` on a new connection and reads everything until the server closes it.
fn raw_exchange(app: &TestApp, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(app.addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read to the end");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn delete_user_returns_204_with_an_empty_body_on_both_paths() {
    let app = spawn_app();
    for base in ["/user", "/users"] {
        let id = app.create_named("Ada", "Lovelace", None);
        let path = format!("{base}/{id}");

        let r = app.request("DELETE", &path, &[], None);

        assert_eq!(r.status, 204, "DELETE {path}: {}", r.text());
        assert!(
            r.header("content-length").is_none_or(|l| l == "0"),
            "DELETE {path}: Content-Length {:?}",
            r.header("content-length")
        );
        assert_request_id(&r, &path);
    }
    // The client above reads no body after a 204 whatever the server sends: read the
    // raw bytes of one to the end of the connection.
    let id = app.create_named("Ada", "Lovelace", None);
    let raw = raw_exchange(
        &app,
        &format!("DELETE /user/{id} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    );
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole response head");
    assert!(head.starts_with("HTTP/1.1 204"), "{raw:?}");
    assert_eq!(body, "", "a 204 followed by bytes: {raw:?}");
    assert_eq!(count_users(&app), 0, "both rows are gone");
}

#[test]
fn delete_user_makes_the_user_unreachable() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    assert_eq!(app.delete_user(id).status, 204);

    assert_error(&app.get_user(id), 404, "GET after DELETE");
    let r = app.patch_user(id, &json!({"first_name": "A"}));
    assert_error(&r, 404, "PATCH after DELETE");
}

#[test]
fn delete_user_returns_404_when_the_user_does_not_exist() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    assert_eq!(app.delete_user(id).status, 204);

    for path in [format!("/user/{id}"), format!("/users/{}", id + 1)] {
        let r = app.request("DELETE", &path, &[], None);

        assert_error(&r, 404, &format!("DELETE {path}"));
    }
}

#[test]
fn delete_user_returns_400_when_the_id_is_not_in_range() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);

    for bad in ["0", "-1", "9223372036854775808", "abc"] {
        let r = app.delete_user(bad);

        assert_error(&r, 400, &format!("DELETE /user/{bad}"));
    }
    assert_eq!(app.get_user(id).status, 200, "no user was deleted");
}

#[test]
fn delete_user_frees_the_email_for_a_new_user() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));
    assert_eq!(app.delete_user(id).status, 204);

    let r = app.create_user(&json!({
        "first_name": "Augusta", "last_name": "King", "email": "ADA@example.com"
    }));

    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn delete_user_removes_only_that_user() {
    let app = spawn_app();
    let keep = app.create_named("Grace", "Hopper", None);
    let gone = app.create_named("Ada", "Lovelace", None);

    assert_eq!(app.delete_user(gone).status, 204);

    assert_eq!(app.get_user(keep).status, 200);
    assert_eq!(count_users(&app), 1);
}
