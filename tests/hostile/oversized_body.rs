//! A body declared larger than `MAX_BODY_BYTES` gets 413; a proxy that buffered the body
//! sends all of it before it reads the answer. Closing after a few hundred KiB reset the
//! connection under it, and nginx turned that into a 502 and a replica marked down. The
//! declared body is now drained (up to `MAX_DISCARD_BYTES`) so the 413 arrives cleanly.

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use user_api::http::server::ServerConfig;
use user_api::http::{Body, Request, Response};

use crate::support::{Client, READ_LIMIT, TestServer, join_within, quick_config};

/// 413 for a body that was too large, else 200.
fn refuse_large(req: Request) -> Response {
    match req.body {
        Body::TooLarge => Response::error(413, "too large"),
        Body::Complete(_) => Response::new(200),
    }
}

fn server(max_discard_bytes: u64) -> TestServer {
    let config = ServerConfig {
        max_body_bytes: 64 * 1024,
        max_discard_bytes,
        body_timeout: READ_LIMIT,
        ..quick_config()
    };
    TestServer::start(config, refuse_large)
}

/// Sends the head and the whole declared body the way a buffering proxy does (all of
/// it, before reading anything), on another thread; returns the client and the writer.
fn post_whole_body(
    server: &TestServer,
    len: usize,
) -> (Client, thread::JoinHandle<std::io::Result<()>>) {
    let client = server.client();
    let mut writer = client.stream.try_clone().expect("clone the stream");
    let sender = thread::spawn(move || {
        let head = format!(
            "POST /users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\n\r\n{{"
        );
        writer.write_all(head.as_bytes())?;
        writer.write_all(&vec![b' '; len - 2])?;
        writer.write_all(b"}")
    });
    (client, sender)
}

#[test]
fn oversized_body_gets_its_413_and_a_clean_close_when_the_client_sends_all_of_it() {
    // Larger than loopback's socket buffers can hold, so the upload is still under way
    // when the answer comes, as it is for a proxy that buffered the body first.
    let len = 32 << 20;
    let server = server(64 << 20);
    let (mut client, sender) = post_whole_body(&server, len);
    let resp = client.try_response(false);
    let sent = join_within(sender, Duration::from_secs(30));
    assert!(sent.is_ok(), "the server reset the upload: {sent:?}");
    let resp = resp.unwrap_or_else(|e| panic!("no answer: {e}"));
    assert_eq!(resp.status, 413);
    assert_eq!(resp.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let end = client.stream.read_to_end(&mut rest);
    assert!(
        end.is_ok() && rest.is_empty(),
        "a clean close after the answer, got {end:?} and {rest:?}"
    );
}

#[test]
fn oversized_body_past_the_discard_bound_is_not_waited_for() {
    let server = server(128 * 1024);
    let mut client = server.client();
    client.send("POST /users HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n");
    assert_eq!(client.response().status, 413);
    // Beyond the bound nobody drains 50 MB: the server closes after its short linger,
    // well before the body timeout.
    let closed_after = client.time_until_closed();
    assert!(closed_after < READ_LIMIT, "{closed_after:?}");
}
