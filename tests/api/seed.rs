//! The original Flask service's README examples, sent as curl sends them.

use crate::helpers::*;

const CURL: [(&str, &str); 2] = [("User-Agent", "curl/8.5.0"), ("Accept", "*/*")];

#[test]
fn seed_readme_curl_examples_work_end_to_end() {
    let app = spawn_app();

    // curl -X POST http://localhost:5000/user -H "Content-Type: application/json" \
    //      -d '{"first_name": "John", "last_name": "Doe", "email": "john.doe@example.com"}'
    let body = br#"{"first_name": "John", "last_name": "Doe", "email": "john.doe@example.com"}"#;
    let mut headers = CURL.to_vec();
    headers.push(("Content-Type", "application/json"));
    let created = app.request("POST", "/user", &headers, Some(body));
    assert_eq!(created.status, 201, "create: {}", created.text());
    let user = created.json();
    assert_user_shape(&user);
    let id = id_of(&user);

    // curl http://localhost:5000/user/1
    let fetched = app.request("GET", &format!("/user/{id}"), &CURL, None);
    assert_eq!(fetched.status, 200, "get: {}", fetched.text());
    assert_eq!(fetched.json(), user);

    // curl http://localhost:5000/users
    let listed = app.request("GET", "/users", &CURL, None);
    assert_eq!(listed.status, 200, "list: {}", listed.text());
    assert_eq!(listed.json()["users"], json!([user]));

    // curl http://localhost:5000/health
    let health = app.request("GET", "/health", &CURL, None);
    assert_eq!(health.status, 200, "health: {}", health.text());
    assert_eq!(health.json()["status"], "healthy");
}
