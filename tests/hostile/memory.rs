//! Memory per hostile connection, measured on the server binary as a child process: a
//! client that sends a head and most of a 64 KiB body, then nothing, used to cost the
//! server the whole body (about 69 KiB) for the body timeout, with `API_TOKEN` set and no
//! token sent. The head is refused now before the body is read.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::chaos_support::{Memory, ServerProcess, mib};
use crate::common::{fresh_database, poll_until};

const CONNECTIONS: usize = 300;

#[test]
fn body_holders_without_the_token_cost_the_server_almost_nothing() {
    let db = fresh_database();
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_TOKEN", "memory-test-token".into()),
        ("MAX_CONNECTIONS_PER_PEER", "0".into()),
        ("BODY_TIMEOUT_MS", "60000".into()),
        ("LOG_LEVEL", "warn".into()),
    ]);
    let before = server.memory();
    let head = "POST /users HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n\
                Content-Length: 65536\r\n\r\n{";
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // The answer may close the connection while the body is still going out.
        let _ = s
            .write_all(head.as_bytes())
            .and_then(|()| s.write_all(&[b' '; 65_534]));
        held.push(s);
    }
    // Every connection has been read as far as the server will read it once RSS stops
    // growing; wait for two equal readings in a row.
    let mut last = 0;
    let settled = poll_until(Duration::from_secs(10), || {
        let now = server.memory().rss_kib;
        let same = now == last;
        last = now;
        same.then_some(now)
    });
    let during = Memory::of(server.pid());
    let grew = during.rss_kib.saturating_sub(before.rss_kib);
    eprintln!(
        "memory: {CONNECTIONS} body holders without a token: {} -> {} ({} each); settled: {}",
        mib(before.rss_kib),
        mib(during.rss_kib),
        grew / CONNECTIONS as u64,
        settled.is_some()
    );
    // Before: the whole 64 KiB body, about 69 KiB a connection (20 MiB here).
    assert!(
        grew < (CONNECTIONS as u64) * 8,
        "RSS grew by {} KiB for {CONNECTIONS} connections that may not even send a body",
        grew
    );
    drop(held);
}
