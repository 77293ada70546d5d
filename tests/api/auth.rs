//! `API_TOKEN` / `API_TOKEN_FILE`: bearer authentication of the user routes, checked
//! before anything else; the health, metrics and OpenAPI routes stay open.

use crate::helpers::*;

const TOKEN: &str = "tok_3xAmple-T0ken.for.tests";

type Headers<'a> = Vec<(&'a str, &'a str)>;

fn spawn_with_token() -> TestApp {
    spawn_app_with(|vars| {
        vars.insert("API_TOKEN".into(), TOKEN.into());
    })
}

/// Every user route, on both paths, with a body where it takes one.
fn user_routes(id: i64) -> Vec<(&'static str, String, Option<Value>)> {
    let body = Some(json!({"first_name": "A", "last_name": "B"}));
    let mut routes = Vec::new();
    for base in ["/user", "/users"] {
        routes.push(("POST", base.to_owned(), body.clone()));
        routes.push(("GET", format!("{base}/{id}"), None));
        routes.push(("HEAD", format!("{base}/{id}"), None));
        routes.push(("PUT", format!("{base}/{id}"), body.clone()));
        routes.push(("PATCH", format!("{base}/{id}"), body.clone()));
        routes.push(("DELETE", format!("{base}/{id}"), None));
    }
    routes.push(("GET", "/users".to_owned(), None));
    routes.push(("HEAD", "/users".to_owned(), None));
    routes.push(("GET", "/users?limit=5".to_owned(), None));
    routes
}

fn send_with(
    app: &TestApp,
    method: &str,
    path: &str,
    body: &Option<Value>,
    auth: Option<&str>,
) -> HttpResponse {
    let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = auth {
        headers.push(("Authorization", auth));
    }
    app.raw(method, path, &headers, bytes.as_deref())
}

fn assert_401(r: &HttpResponse, context: &str) {
    assert_eq!(r.status, 401, "{context}: {}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.to_ascii_lowercase().starts_with("bearer"),
        "{context}: WWW-Authenticate is {challenge:?}, not a Bearer challenge"
    );
    assert_request_id(r, context);
    assert_json_content_type(r, context);
    // API.md: every error is `{"error": ...}` (a HEAD answer has no body to hold one).
    if !context.starts_with("HEAD ") {
        assert_error(r, 401, context);
    }
    assert!(!r.text().contains(TOKEN), "{context}: the token is echoed");
}

#[test]
fn user_routes_return_401_with_www_authenticate_when_the_token_is_missing() {
    let app = spawn_with_token();
    let id = app.create_named("Ada", "Lovelace", None);

    for (method, path, body) in user_routes(id) {
        let r = send_with(&app, method, &path, &body, None);

        assert_401(&r, &format!("{method} {path} without a token"));
    }
    assert_eq!(app.get_user(id).status, 200, "nothing was changed");
}

#[test]
fn user_routes_return_401_when_the_token_is_wrong() {
    let app = spawn_with_token();
    let id = app.create_named("Ada", "Lovelace", None);
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let longer = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    let bare = TOKEN.to_owned();
    let wrong = [
        "Bearer wrong-token",
        prefix.as_str(),
        longer.as_str(),
        basic.as_str(),
        bare.as_str(),
        "Bearer",
        "Bearer ",
        "",
    ];
    for auth in wrong {
        for (method, path, body) in [
            ("GET", format!("/user/{id}"), None),
            ("GET", "/users".to_owned(), None),
            (
                "POST",
                "/users".to_owned(),
                Some(json!({"first_name": "A", "last_name": "B"})),
            ),
            ("DELETE", format!("/users/{id}"), None),
        ] {
            let r = send_with(&app, method, &path, &body, Some(auth));

            assert_401(&r, &format!("{method} {path} with Authorization {auth:?}"));
        }
    }
    assert_eq!(count_users(&app), 1, "nothing was created or deleted");
}

#[test]
fn user_routes_work_with_the_right_token() {
    let app = spawn_with_token();
    let auth = format!("Bearer {TOKEN}");

    let created = send_with(&app, "POST", "/user", &Some(ada()), Some(&auth));
    assert_eq!(created.status, 201, "{}", created.text());
    let id = id_of(&created.json());
    let body = Some(json!({"first_name": "A", "last_name": "B"}));
    for (method, path, body, expected) in [
        ("GET", format!("/user/{id}"), None, 200),
        ("HEAD", format!("/users/{id}"), None, 200),
        ("GET", "/users".to_owned(), None, 200),
        ("PUT", format!("/user/{id}"), body.clone(), 200),
        ("PATCH", format!("/users/{id}"), body, 200),
        ("DELETE", format!("/user/{id}"), None, 204),
    ] {
        let r = send_with(&app, method, &path, &body, Some(&auth));

        assert_eq!(r.status, expected, "{method} {path}: {}", r.text());
    }
}

#[test]
fn authentication_is_checked_before_anything_else_about_the_request() {
    let app = spawn_with_token();
    let huge_length = [
        ("Content-Type", "application/json"),
        ("Content-Length", "100000000"),
    ];
    let cases: Vec<(&str, &str, Headers<'_>, Option<&[u8]>)> = vec![
        ("GET", "/user/0", vec![], None),
        ("GET", "/users/abc", vec![], None),
        ("GET", "/users?limit=0", vec![], None),
        ("GET", "/users?bogus=1", vec![], None),
        (
            "POST",
            "/user",
            vec![("Content-Type", "application/json")],
            Some(b"{nope"),
        ),
        (
            "POST",
            "/user",
            vec![("Content-Type", "text/plain")],
            Some(b"{}"),
        ),
        ("POST", "/user", vec![], Some(b"{}")),
        ("DELETE", "/users", vec![], None),
        ("GET", "/user/424242", vec![], None),
        ("POST", "/users", huge_length.to_vec(), Some(b"")),
    ];
    for (method, path, headers, body) in cases {
        let context = format!("{method} {path} {headers:?} without a token");
        let mut conn = app.connection();
        conn.write_request(method, path, &headers, body).unwrap();

        let r = conn.read_response(method == "HEAD").expect(&context);

        assert_401(&r, &context);
    }
}

#[test]
fn health_metrics_and_openapi_need_no_token() {
    let app = spawn_with_token();
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/openapi.json",
    ] {
        for auth in [None, Some("Bearer wrong-token")] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();

            let r = app.raw("GET", path, &headers, None);

            assert_eq!(r.status, 200, "GET {path} with {auth:?}: {}", r.text());
            assert!(r.header("www-authenticate").is_none(), "GET {path}");
        }
    }
}

#[test]
fn the_token_can_come_from_api_token_file() {
    let dir = TempDir::new("user-api-token");
    let file = dir.write("token", &format!("{TOKEN}\n"));
    let app = spawn_app_with(|vars| {
        vars.insert("API_TOKEN_FILE".into(), file.display().to_string());
    });
    let auth = format!("Bearer {TOKEN}");

    let without = send_with(&app, "GET", "/users", &None, None);
    let with = send_with(&app, "GET", "/users", &None, Some(&auth));

    assert_401(&without, "GET /users without a token");
    assert_eq!(
        with.status,
        200,
        "the file's token (less its final newline) is accepted: {}",
        with.text()
    );
}

#[test]
fn user_routes_need_no_token_when_none_is_configured() {
    let app = spawn_app();

    let r = app.raw(
        "GET",
        "/users",
        &[("Authorization", "Bearer anything")],
        None,
    );

    assert_eq!(r.status, 200, "{}", r.text());
}
