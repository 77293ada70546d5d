//! Token guessing against the real binary with `API_TOKEN` set: a wrong token and a
//! missing one get byte-identical answers (apart from `X-Request-Id` and `Date`) on
//! every protected route, and the token never reaches the log, even at `trace`.

use crate::support::*;

/// Headers that differ between any two responses.
const PER_RESPONSE: [&str; 2] = ["x-request-id", "date"];

#[test]
fn wrong_and_missing_tokens_get_identical_401s_and_the_token_is_never_logged() {
    let _serial = serial();

    // Arrange: the binary with a random token, logging everything it can.
    let token = format!("tok{:016x}{:016x}", random_u64(), random_u64());
    let db = fresh_database();
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_TOKEN", token.clone()),
        ("LOG_LEVEL", "trace".into()),
    ]);
    let good = format!("Bearer {token}");
    let mut authorized = Client::new(server.addr, std::time::Duration::from_secs(10));
    let created = authorized
        .send(
            "POST",
            "/user",
            &[
                ("Authorization", &good),
                ("Content-Type", "application/json"),
            ],
            Some(br#"{"first_name": "Ada", "last_name": "Lovelace"}"#),
        )
        .expect("create with the token");
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_i64().unwrap();

    let body = br#"{"first_name": "Eve", "last_name": "Mallory"}"#.as_slice();
    let routes: Vec<(&str, String, Option<&[u8]>)> = vec![
        ("GET", format!("/user/{id}"), None),
        ("GET", "/users?limit=5".into(), None),
        ("GET", "/users/0".into(), None),
        ("GET", "/users?limit=99999".into(), None),
        ("POST", "/user".into(), Some(body)),
        ("PUT", format!("/user/{id}"), Some(body)),
        ("PATCH", format!("/users/{id}"), Some(body)),
        ("DELETE", format!("/user/{id}"), None),
        ("HEAD", format!("/user/{id}"), None),
        ("OPTIONS", "/user".into(), None),
    ];
    let near_misses = [
        format!("Bearer {}", &token[..token.len() - 1]),
        format!("Bearer {token}x"),
        format!("Bearer {}", token.to_uppercase()),
        format!("Bearer x{}", &token[1..]),
        format!("Token {token}"),
        format!("Basic {token}"),
        token.clone(),
        "Bearer".into(),
        "Bearer ".into(),
        "Bearer wrong".into(),
        "Bearer \u{e9}t\u{e9}".into(),
    ];

    // Act and Assert: per route, the missing-token answer, then each wrong one against it.
    let mut compared = 0;
    for (method, target, body) in &routes {
        let what = format!("{method} {target}");
        let ask = |auth: Option<&str>| {
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(a) = auth {
                headers.push(("Authorization", a));
            }
            Client::new(server.addr, std::time::Duration::from_secs(10))
                .send(method, target, &headers, *body)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
        };
        let missing = ask(None);
        assert_eq!(
            missing.status,
            401,
            "{what} without a token: {}",
            missing.text()
        );
        assert_eq!(
            missing.header("www-authenticate"),
            Some("Bearer"),
            "{what} without a token"
        );
        // Equal bodies prove nothing if both are empty: the one compared against must be
        // API.md's error object (HEAD has no body to hold one).
        if *method != "HEAD" {
            let error: Value = serde_json::from_slice(&missing.body).unwrap_or_else(|e| {
                panic!(
                    "{what}: the 401 body is not JSON ({e}): {:?}",
                    missing.text()
                )
            });
            let keys: Vec<&String> = error
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            assert_eq!(keys, ["error"], "{what}: the 401 body is {error}");
            assert!(
                error["error"]
                    .as_str()
                    .is_some_and(|m| !m.trim().is_empty()),
                "{what}: the 401 body has no message: {error}"
            );
        }
        for wrong in &near_misses {
            let r = ask(Some(wrong));
            assert_eq!(r.status, 401, "{what} with {wrong:?}: {}", r.text());
            assert_eq!(
                r.body, missing.body,
                "{what}: the body differs between no token and {wrong:?}"
            );
            assert_eq!(
                stable_headers(&r),
                stable_headers(&missing),
                "{what}: the headers differ between no token and {wrong:?}"
            );
            compared += 1;
        }
    }
    // The right token still works afterwards, in any case of the scheme.
    let r = authorized
        .send(
            "GET",
            &format!("/user/{id}"),
            &[("Authorization", &good)],
            None,
        )
        .expect("read with the token");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = authorized
        .send(
            "GET",
            &format!("/user/{id}"),
            &[("Authorization", &format!("bearer {token}"))],
            None,
        )
        .expect("read with the token");
    assert_eq!(
        r.status,
        200,
        "the scheme is case-insensitive: {}",
        r.text()
    );

    // Assert: the log saw it all and holds no trace of the token.
    let log = server.stderr();
    assert!(
        log.lines().filter(|l| l.contains(" 401 ")).count() >= compared,
        "the log lacks the access lines of the 401s:\n{log}"
    );
    for secret in [
        token.as_str(),
        &token[..token.len() - 1],
        &token[1..],
        &token.to_uppercase(),
    ] {
        assert!(
            !log.contains(secret),
            "the log holds the token (or most of it): {secret:?}"
        );
    }
    eprintln!(
        "auth: {compared} wrong-token answers over {} routes byte-identical to the missing-token \
         one; {} log lines at trace, none with the token",
        routes.len(),
        log.lines().count()
    );
}

/// Header names and values, without those that differ between any two responses.
fn stable_headers(r: &HttpResponse) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(n, _)| !PER_RESPONSE.contains(&n.as_str()))
        .cloned()
        .collect();
    h.sort();
    h
}
