//! A connection flood past `MAX_CONNECTIONS`, every slot busy with a request: the
//! connections over the cap get a fast 503 and are closed, the ones under it keep being
//! served, and once the flood is over
//! the app serves everyone again.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

const MAX_CONNECTIONS: usize = 50;
const FLOOD: usize = 300;
const FLOODERS: usize = 10;
const HELD_REQUEST: &str = "GET /health/live HTTP/1.1\r\nHost: held\r\n\r\n";
/// A second request's head without its final empty line: the connection is mid-request.
const HELD_HEAD_START: &str = "GET /health/live HTTP/1.1\r\nHost: held\r\n";

/// What one connection over the cap saw.
struct Refusal {
    /// From the start of `connect` to the end of the response (or the failure).
    took: Duration,
    result: Result<HttpResponse, String>,
    /// Whether the server closed the connection after its answer.
    closed: bool,
}

/// Connects and, when `ask`, sends a request at once; then reads one response.
fn flood_one(addr: SocketAddr, ask: bool) -> (TcpStream, Refusal) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect (the listener must keep accepting)");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if ask {
        let _ = stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: flood\r\n\r\n");
    }
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let result = read_response(&mut reader, false).map_err(|e| e.to_string());
    let took = started.elapsed();
    let mut rest = [0u8; 64];
    let closed = result.is_ok() && matches!(reader.read(&mut rest), Ok(0) | Err(_));
    (
        stream,
        Refusal {
            took,
            result,
            closed,
        },
    )
}

#[test]
fn connections_past_max_connections_get_a_fast_503_and_service_resumes_after_the_flood() {
    let _serial = serial();

    // Arrange: an app capped at 50 connections, slow to time idle ones out.
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_CONNECTIONS".into(), MAX_CONNECTIONS.to_string());
        vars.insert("HEADER_TIMEOUT_MS".into(), "60000".into());
        vars.insert("KEEPALIVE_TIMEOUT_MS".into(), "60000".into());
        // One address holds every connection here.
        vars.insert("MAX_CONNECTIONS_PER_PEER".into(), "0".into());
    });
    let addr = app.addr;

    // Act 1: the first 50 connections of the flood each make a request and stay, busy
    // with a second one left unfinished (an idle connection would make room instead).
    let mut held = Vec::new();
    while held.len() < MAX_CONNECTIONS {
        let n = held.len();
        // The harness's own probes may still be counted for a moment: retry a refusal.
        let kept = poll_until(Duration::from_secs(5), || {
            let stream = TcpStream::connect(addr).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let mut reader = BufReader::new(stream.try_clone().ok()?);
            let mut writer = stream;
            writer.write_all(HELD_REQUEST.as_bytes()).ok()?;
            let r = read_response(&mut reader, false).ok()?;
            (r.status == 200 && !r.closes_connection()).then_some(())?;
            writer.write_all(HELD_HEAD_START.as_bytes()).ok()?;
            Some((writer, reader))
        });
        held.push(
            kept.unwrap_or_else(|| panic!("connection {} of {MAX_CONNECTIONS} refused", n + 1)),
        );
    }

    // Act 2: the rest of the flood, ten clients at once, half asking at once and half
    // waiting for the server to speak first.
    let per = (FLOOD - MAX_CONNECTIONS) / FLOODERS;
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|f| {
            std::thread::spawn(move || {
                let mut sockets = Vec::new();
                let mut seen = Vec::new();
                for i in 0..per {
                    let (socket, refusal) = flood_one(addr, (f + i) % 2 == 0);
                    sockets.push(socket);
                    seen.push(refusal);
                }
                (sockets, seen)
            })
        })
        .collect();
    let mut flood_sockets = Vec::new();
    let mut refusals = Vec::new();
    for t in flooders {
        let (sockets, seen) = t.join().expect("a flood thread panicked");
        flood_sockets.extend(sockets);
        refusals.extend(seen);
    }
    // The held connections were served all along.
    for (i, (writer, reader)) in held.iter_mut().enumerate() {
        writer
            .write_all(b"\r\n")
            .unwrap_or_else(|e| panic!("held connection {i} during the flood: {e}"));
        let r = read_response(reader, false)
            .unwrap_or_else(|e| panic!("held connection {i} during the flood: {e}"));
        assert_eq!(r.status, 200, "held connection {i} during the flood");
    }

    // Act 3: the flood ends.
    drop(flood_sockets);
    drop(held);
    let resumed = poll_until(Duration::from_secs(5), || {
        let r = client::send(addr, "GET", "/health/live", &[], None).ok()?;
        (r.status == 200).then(Instant::now)
    });
    let burst = burst_of_creates(addr);

    // Assert: every connection over the cap got a complete 503 within a second, closed.
    let mut problems = Vec::new();
    for (i, r) in refusals.iter().enumerate() {
        match &r.result {
            Ok(resp) if resp.status == 503 => {
                let context = format!("refused connection {i}");
                assert!(retry_after(resp, &context) >= 1);
                assert_error_body(resp, &context);
                assert!(resp.closes_connection(), "{context}: no Connection: close");
                if !r.closed {
                    problems.push(format!("{context}: left open after the 503"));
                }
                if r.took > Duration::from_secs(1) {
                    problems.push(format!("{context}: 503 after {:?}", r.took));
                }
            }
            Ok(resp) => problems.push(format!("connection {i}: {} {}", resp.status, resp.text())),
            Err(e) => problems.push(format!("connection {i}: no response: {e}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} connections over the cap were not refused fast:\n{}",
        problems.len(),
        refusals.len(),
        problems.join("\n")
    );

    // Assert: service resumed, for everyone, with every write where it should be.
    assert!(
        resumed.is_some(),
        "no request was served within 5 s of the flood's end"
    );
    for a in &burst {
        assert_eq!(a.status(), Some(201), "after the flood: {}", a.describe());
    }
    check_rows(&mut app.db(), &burst, expect_by_status);
    let mut took: Vec<Duration> = refusals.iter().map(|r| r.took).collect();
    took.sort();
    eprintln!(
        "connection flood: {} connections over a cap of {MAX_CONNECTIONS}: all 503 and closed; \
         connect-to-503 p50 {:?}, p99 {:?}, max {:?}; then {} creates, all 201",
        refusals.len(),
        percentile(&took, 50.0),
        percentile(&took, 99.0),
        took.last().copied().unwrap_or_default(),
        burst.len()
    );
}

/// Eight clients creating five users each on keep-alive connections.
fn burst_of_creates(addr: SocketAddr) -> Vec<Attempt> {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut client = Client::new(addr, Duration::from_secs(10));
                (0..5u64)
                    .map(|seq| {
                        let token = format!("flood-{t}-{seq}");
                        let started = Instant::now();
                        let result =
                            client.json("POST", "/user", &create_body(&token, "flood", seq));
                        Attempt {
                            token,
                            started,
                            took: started.elapsed(),
                            result,
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("a burst thread panicked"))
        .collect()
}
