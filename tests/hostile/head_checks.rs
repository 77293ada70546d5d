//! What the head alone decides is decided before a body is read: a client without the
//! token cannot make the server buffer 64 KiB (or send it `100 Continue`), and all bodies
//! in progress together stay within `BODY_BUDGET_BYTES`.

use std::time::Duration;

use user_api::http::server::ServerConfig;

use crate::common::spawn_app_with;
use crate::support::{Client, Resp, TestServer, echo, quick_config};

const TOKEN: &str = "hostile-round-two-token";

fn app_with_token() -> crate::common::TestApp {
    spawn_app_with(|vars| {
        vars.insert("API_TOKEN".into(), TOKEN.into());
    })
}

/// The answer to the head of a 60 000-byte `POST /users` without the token, with the
/// `extra` header lines, when not a byte of the body follows.
fn answer_to_a_head_without_the_token(extra: &str) -> Resp {
    let app = app_with_token();
    let mut c = Client::connect(app.addr);
    c.send(format!(
        "POST /users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         {extra}Content-Length: 60000\r\n\r\n"
    ));
    c.try_response(false)
        .expect("an answer without waiting for the body")
}

#[test]
fn body_is_refused_with_401_before_it_arrives_when_the_token_is_missing() {
    let resp = answer_to_a_head_without_the_token("");

    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"));
}

#[test]
fn continue_is_not_sent_when_the_token_is_missing() {
    let resp = answer_to_a_head_without_the_token("Expect: 100-continue\r\n");

    assert_eq!(
        resp.status, 401,
        "no 100 Continue for a client that may not send"
    );
}

#[test]
fn continue_is_still_sent_when_the_token_is_right() {
    let app = app_with_token();
    let mut c = Client::connect(app.addr);
    let body = r#"{"first_name":"Ada","last_name":"Lovelace"}"#;
    c.send(format!(
        "POST /users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    assert_eq!(c.response().status, 100);
    c.send(body);
    assert_eq!(c.response().status, 201);
}

#[test]
fn body_gets_a_503_when_bodies_in_progress_fill_the_budget() {
    let config = ServerConfig {
        max_body_bytes: 1000,
        body_budget_bytes: 2000,
        body_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    let server = TestServer::start(config, echo);
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n";
    // Two bodies under way fill the budget; the 100 Continue says each has its room.
    let mut holders: Vec<Client> = (0..2).map(|_| server.client()).collect();
    for h in &mut holders {
        h.send(
            "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
             Content-Length: 1000\r\n\r\n",
        );
        assert_eq!(h.response().status, 100);
    }
    let mut third = server.client();
    third.send(head);
    let refused = third.response();
    refused.assert_layer_error(503);
    assert!(refused.header("retry-after").is_some());

    // Once one body is complete, there is room again: released when its connection
    // comes back from the worker, which may be a moment after the client has its answer.
    holders[0].send(vec![b'x'; 1000]);
    assert_eq!(holders[0].response().status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        let mut fourth = server.client();
        fourth.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
        let status = fourth.response().status;
        if status != 503 || std::time::Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status, 200, "no room for a body once another completed");
}
