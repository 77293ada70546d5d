//! One client must not be able to take every connection slot: a per-address cap
//! (trusted proxies exempt), and at the global cap the connection idle the longest makes
//! room for the new one instead of the new one being refused, so a liveness probe is
//! always answered.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use user_api::http::server::ServerConfig;

use crate::support::{Client, READ_LIMIT, TestServer, echo, quick_config};

const GET: &str = "GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n";

fn server(max_connections: usize, per_peer: usize, uncapped: &str) -> TestServer {
    let config = ServerConfig {
        max_connections,
        max_connections_per_peer: per_peer,
        uncapped_peers: user_api::http::client_addr::parse_list(uncapped).expect("cidr list"),
        keepalive_timeout: Duration::from_secs(30),
        header_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    TestServer::start(config, echo)
}

/// A client that made one request and now idles on its keep-alive connection.
fn idle_client(server: &TestServer) -> Client {
    let mut c = server.client();
    c.send(GET);
    assert_eq!(c.response().status, 200, "an idle client's first request");
    c
}

/// A connection from another loopback address, 127.0.0.2.
fn connect_from_second_address(to: SocketAddr) -> Client {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind("127.0.0.2:0".parse().expect("address"))?;
            socket.connect(to).await
        })
        .expect("connect from 127.0.0.2");
    let stream: TcpStream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(READ_LIMIT)).expect("timeout");
    Client::from_stream(stream)
}

#[test]
fn new_client_is_served_when_the_cap_is_full_of_idle_connections() {
    let server = server(4, 0, "");
    let mut held: Vec<Client> = (0..4).map(|_| idle_client(&server)).collect();

    let mut probe = server.client();
    probe.send(GET);
    assert_eq!(probe.response().status, 200, "the probe got a slot");

    // The one idle the longest made room; the others are still served.
    held[0].assert_closed();
    for c in &mut held[1..] {
        c.send(GET);
        assert_eq!(c.response().status, 200);
    }
}

#[test]
fn connection_past_the_per_address_cap_gets_a_503_while_other_addresses_are_served() {
    let server = server(100, 3, "");
    let _held: Vec<Client> = (0..3).map(|_| idle_client(&server)).collect();

    let mut fourth = server.client();
    fourth.response().assert_layer_error(503);
    fourth.assert_closed();

    let mut other = connect_from_second_address(server.addr);
    other.send(GET);
    assert_eq!(other.response().status, 200);
}

#[test]
fn trusted_proxy_is_not_held_to_the_per_address_cap() {
    let server = server(100, 3, "127.0.0.1/32");
    let mut held: Vec<Client> = (0..6).map(|_| idle_client(&server)).collect();
    for c in &mut held {
        c.send(GET);
        assert_eq!(c.response().status, 200);
    }
}
