//! Small refusals and readings the attack session found wrong: a FIN that came with the
//! last bytes, HTTP/1.1 without `Host`, absolute-form targets, two `Authorization`
//! headers.

use std::net::Shutdown;
use std::time::{Duration, Instant};

use user_api::http::server::ServerConfig;

use crate::support::{READ_LIMIT, Resp, TestServer, echo, quick_config};

fn patient_server() -> TestServer {
    let config = ServerConfig {
        header_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    TestServer::start(config, echo)
}

/// The patient server's answer to `request`, on a connection of its own.
fn answer_to(request: &str) -> Resp {
    let server = patient_server();
    let mut c = server.client();
    c.send(request);
    c.response()
}

#[test]
fn connection_is_closed_at_once_when_the_fin_comes_with_a_partial_head() {
    let server = patient_server();
    let mut c = server.client();
    c.send("GET /users HTTP/1.1\r\nHo");
    c.stream.shutdown(Shutdown::Write).expect("FIN");
    let started = Instant::now();
    // No 408 to a peer that has gone, and no wait for the header timeout.
    c.assert_closed();
    assert!(started.elapsed() < READ_LIMIT);
}

#[test]
fn http11_request_without_host_gets_a_400() {
    answer_to("GET /users HTTP/1.1\r\n\r\n").assert_layer_error(400);
}

#[test]
fn absolute_form_target_reaches_the_handler_as_its_path() {
    let request = "GET http://example.com/users?limit=2 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let json = answer_to(request).json();
    assert_eq!(json["path"], "/users");
    assert_eq!(json["query"], "limit=2");
}

#[test]
fn two_authorization_headers_get_a_400() {
    answer_to(
        "GET /users HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
    )
    .assert_layer_error(400);
}

#[test]
fn listener_queues_far_more_than_128_connections_before_they_are_accepted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let server =
        user_api::http::server::Server::new(listener, quick_config(), std::sync::Arc::new(echo))
            .expect("server");
    // Not running: nothing is accepted, so every connect waits in the backlog, which
    // the kernel caps at net.core.somaxconn (4096 since Linux 5.4).
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    let want = somaxconn.min(400);
    assert!(
        want > 128,
        "net.core.somaxconn is {somaxconn}: nothing to test here"
    );
    let addr = server.local_addr();
    let queued: Vec<std::net::TcpStream> = (0..want)
        .map(|n| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(700))
                .unwrap_or_else(|e| panic!("connect {n} was not queued: {e}"))
        })
        .collect();
    assert_eq!(queued.len(), want);
}
