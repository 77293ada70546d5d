//! The connection layer end to end, over raw `TcpStream`s on 127.0.0.1: framing,
//! keep-alive, limits, timeouts, overload, descriptor exhaustion and graceful stop.

mod common;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use support::{Client, Gate, READ_LIMIT, TestServer, echo, join_within, quick_config};
use user_api::http::server::{Server, ServerConfig};
use user_api::http::{Handler, Method, Note, Request, Response};

const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn request_is_echoed_with_lowercase_headers_query_and_peer_when_plain() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send("GET /users/7?limit=5 HTTP/1.1\r\nHost: t\r\nX-Mixed-Case: Value\r\n\r\n");
    let resp = c.response();
    assert_eq!(resp.status, 200);
    let json = resp.json();
    assert_eq!(json["path"], "/users/7");
    assert_eq!(json["query"], "limit=5");
    assert_eq!(
        json["headers"][1],
        serde_json::json!(["x-mixed-case", "Value"])
    );
    let local = c.stream.local_addr().unwrap().to_string();
    assert_eq!(json["peer"], local);
    assert_eq!(resp.header("server"), Some("user-api"));
    let date = resp.header("date").expect("a Date header");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    assert_eq!(resp.header("x-handler"), Some("echo"));
}

#[test]
fn pipelined_requests_are_answered_in_order_when_sent_in_one_write() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send(
        "GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
         POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
         GET /three HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    for (path, body) in [("/one", ""), ("/two", "abc"), ("/three", "")] {
        let json = c.response().json();
        assert_eq!(
            (json["path"].as_str(), json["body"].as_str()),
            (Some(path), Some(body))
        );
    }
}

#[test]
fn request_is_served_when_it_arrives_one_byte_at_a_time() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.stream.set_nodelay(true).unwrap();
    let request = "POST /split?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    for b in request.bytes() {
        c.send([b]);
    }
    let json = c.response().json();
    assert_eq!(json["path"], "/split");
    assert_eq!(json["body"], "hello");
}

#[test]
fn slow_head_gets_408_at_the_header_deadline_when_bytes_trickle_in() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.stream.set_nodelay(true).unwrap();
    let mut writer = c.stream.try_clone().unwrap();
    let start = Instant::now();
    // Keeps sending a byte every 50 ms: trickling must not push the deadline back.
    let trickle = thread::spawn(move || {
        let _ = writer.write_all(b"GET / HTTP/1.1\r\n");
        while start.elapsed() < Duration::from_secs(2) {
            if writer.write_all(b"X").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let resp = c.response();
    let elapsed = start.elapsed();
    resp.assert_layer_error(408);
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1500),
        "408 after {elapsed:?}"
    );
    trickle.join().unwrap();
}

#[test]
fn slow_body_gets_408_at_the_body_deadline_when_it_never_completes() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let start = Instant::now();
    c.response().assert_layer_error(408);
    assert!(start.elapsed() < Duration::from_millis(1500));
}

#[test]
fn idle_connection_is_closed_silently_when_the_keepalive_timeout_passes() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send(GET);
    assert_eq!(c.response().status, 200);
    let waited = c.time_until_closed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1500),
        "closed after {waited:?}"
    );
}

#[test]
fn fresh_connection_is_closed_silently_when_it_sends_nothing() {
    let server = TestServer::echo();
    let waited = server.client().time_until_closed();
    assert!(
        waited < Duration::from_millis(1500),
        "closed after {waited:?}"
    );
}

#[test]
fn head_gets_431_when_a_header_is_too_large_or_too_many() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send(format!(
        "GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    ));
    c.response().assert_layer_error(431);
    c.assert_closed();

    let mut c = server.client();
    let many: String = (0..20).map(|i| format!("X-{i}: v\r\n")).collect();
    c.send(format!("GET / HTTP/1.1\r\n{many}\r\n"));
    c.response().assert_layer_error(431);
    c.assert_closed();
}

#[test]
fn long_target_gets_414_when_it_passes_the_head_limit() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(2000)));
    c.response().assert_layer_error(414);
}

#[test]
fn ambiguous_or_unsupported_framing_is_refused_and_closed_when_smuggling_is_possible() {
    let server = TestServer::echo();
    let cases = [
        (
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "CL + TE",
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "TE gzip",
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "TE gzip, chunked",
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
            400,
            "bad CL",
        ),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            "conflicting CL",
        ),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, "HTTP/2.0"),
        (
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            400,
            "malformed header",
        ),
        ("GARBAGE\r\n\r\n", 400, "malformed request line"),
    ];
    for (request, status, what) in cases {
        let mut c = server.client();
        c.send(request);
        let resp = c.response();
        assert_eq!(resp.status, status, "{what}");
        resp.assert_layer_error(status);
        c.assert_closed();
    }
}

#[test]
fn chunked_body_is_decoded_when_it_has_extensions_and_trailers() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send(
        "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;note=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n",
    );
    assert_eq!(c.response().json()["body"], "hello world");
    c.send(GET);
    assert_eq!(c.response().status, 200, "the connection stays usable");
}

/// Sends `request` to an echo server: its handler hears that the body was too large, and
/// the answer closes the connection.
fn assert_too_large_and_closed(request: &str) {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send(request);
    let resp = c.response();
    assert_eq!(resp.json()["too_large"], true);
    assert_eq!(resp.header("connection"), Some("close"));
    c.assert_closed();
}

#[test]
fn chunked_body_is_too_large_for_the_handler_when_it_passes_the_cap() {
    let chunk = "a".repeat(600);
    assert_too_large_and_closed(&format!(
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    ));
}

#[test]
fn large_body_is_not_read_and_the_connection_closes_when_content_length_passes_the_cap() {
    assert_too_large_and_closed("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
}

#[test]
fn continue_is_sent_before_the_body_when_the_body_fits() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send("POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    let interim = c.response();
    assert_eq!(interim.status, 100);
    c.send("body");
    let resp = c.response();
    assert_eq!(resp.json()["body"], "body");
}

#[test]
fn final_status_comes_at_once_without_continue_when_the_body_is_too_large() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send("POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 999999\r\n\r\n");
    let resp = c.response();
    assert_eq!(resp.status, 200, "the handler's answer, not 100");
    assert_eq!(resp.json()["too_large"], true);
    c.assert_closed();
}

#[test]
fn head_response_has_the_get_length_but_no_body_when_method_is_head() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send("GET /h HTTP/1.1\r\nHost: t\r\n\r\n");
    let get = c.response();
    c.send("HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.head_response();
    assert_eq!(head.status, 200);
    let get_len: usize = get.header("content-length").unwrap().parse().unwrap();
    let head_len: usize = head.header("content-length").unwrap().parse().unwrap();
    // The echo names the method, so HEAD's body is one byte longer than GET's.
    assert_eq!(head_len, get_len + 1);
    assert!(head.body.is_empty());
    // Had a body been sent, it would now be read as the next response's head.
    c.send("GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().json()["path"], "/next");
}

#[test]
fn no_content_response_has_no_length_when_status_is_204() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send("GET /empty HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = c.response();
    assert_eq!(resp.status, 204);
    assert!(resp.header("content-length").is_none());
}

#[test]
fn http10_connection_closes_by_default_and_stays_when_keep_alive_is_asked() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send("GET / HTTP/1.0\r\n\r\n");
    let resp = c.response();
    assert_eq!(resp.header("connection"), Some("close"));
    c.assert_closed();

    let mut c = server.client();
    c.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response().header("connection"), Some("keep-alive"));
    c.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response().json()["path"], "/b");
}

#[test]
fn connection_close_is_honoured_when_the_client_asks_for_it() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let resp = c.response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    c.assert_closed();
}

#[test]
fn extra_connection_gets_a_fast_503_when_max_connections_is_reached() {
    let config = ServerConfig {
        max_connections: 4,
        keepalive_timeout: Duration::from_secs(30),
        header_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    let server = TestServer::start(config, echo);
    let mut held: Vec<Client> = (0..4).map(|_| server.client()).collect();
    for c in &mut held {
        // An answer proves the server holds the connection; the next request, left
        // unfinished, keeps it from being idle (an idle one would make room).
        c.send(GET);
        assert_eq!(c.response().status, 200);
        c.send("GET / HTTP/1.1\r\n");
    }
    let start = Instant::now();
    let mut extra = server.client();
    let resp = extra.response();
    resp.assert_layer_error(503);
    assert!(start.elapsed() < Duration::from_secs(1));
    extra.assert_closed();

    drop(held.pop());
    // Once one closes, room frees up (the server notices the close asynchronously).
    let deadline = Instant::now() + READ_LIMIT;
    loop {
        let mut c = server.client();
        c.send(GET);
        // A refused connection may also be reset once its request arrives: not yet.
        if c.try_response(false).is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "no room freed up");
    }
}

#[test]
fn extra_requests_get_503_with_retry_after_when_the_worker_queue_is_full() {
    let (gate, handler) = Gate::handler();
    let config = ServerConfig {
        workers: 1,
        queue_depth: 1,
        ..quick_config()
    };
    let server = TestServer::start(config, handler);
    let mut busy = server.client();
    busy.send("GET /gate HTTP/1.1\r\nHost: t\r\n\r\n");
    gate.wait_entered();

    // One of these waits in the queue; which one is up to the reactor's order.
    let mut others: Vec<Client> = (0..3).map(|_| server.client()).collect();
    for c in &mut others {
        c.send("GET /gate HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    for (n, mut c) in others.into_iter().enumerate() {
        let tx = tx.clone();
        thread::spawn(move || {
            let _ = tx.send((n, c.response()));
        });
    }
    let mut refused = Vec::new();
    for _ in 0..2 {
        let (_, resp) = rx.recv_timeout(READ_LIMIT).expect("two refusals");
        resp.assert_layer_error(503);
        assert_eq!(resp.header("retry-after"), Some("1"));
        refused.push(resp);
    }
    gate.release_one();
    assert_eq!(busy.response().status, 200);
    gate.wait_entered();
    gate.release_one();
    let (_, queued) = rx.recv_timeout(READ_LIMIT).expect("the queued one");
    assert_eq!(queued.status, 200);
}

#[test]
fn a_request_carries_when_it_was_complete_so_its_wait_for_a_worker_counts() {
    let (gate, handler) = Gate::handler();
    let config = ServerConfig {
        workers: 1,
        ..quick_config()
    };
    let server = TestServer::start(config, handler);
    let mut busy = server.client();
    busy.send("GET /gate HTTP/1.1\r\nHost: t\r\n\r\n");
    gate.wait_entered();
    let mut queued = server.client();
    queued.send("GET /queued HTTP/1.1\r\nHost: t\r\n\r\n");
    // The only worker is held at the gate: the second request waits in the queue.
    let held = Duration::from_millis(300);
    thread::sleep(held);
    gate.release_one();
    assert_eq!(busy.response().status, 200);
    let ago = |v: serde_json::Value| {
        Duration::from_millis(v["received_ms_ago"].as_u64().expect("set by the layer"))
    };
    // echo reads the clock as it starts: the queued request's time includes its wait.
    // Not all of `held`: the reactor stamps the request a moment after `send` returned,
    // and the time is in whole milliseconds. Counted from when the worker took it, it
    // would be about nothing.
    let waited = ago(queued.response().json());
    assert!(
        waited >= held / 2,
        "counted from when a worker took it, not from when it was complete: {waited:?}"
    );
    // With the worker free, a request's time starts about when the handler does.
    queued.send("GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    let prompt = ago(queued.response().json());
    assert!(prompt < held, "a request that did not wait: {prompt:?}");
}

/// The gate's handler, with `/live` answerable at once, as the service's liveness is.
struct WithLive<H>(H);

impl<H: Handler> Handler for WithLive<H> {
    fn handle(&self, req: Request) -> Response {
        let on = thread::current().name().unwrap_or("?").to_owned();
        self.0.handle(req).with_header("X-Thread", on)
    }

    fn is_immediate(&self, req: &Request) -> bool {
        req.path == "/live"
    }
}

#[test]
fn immediate_request_is_answered_when_every_worker_is_busy_and_the_queue_is_full() {
    let (gate, handler) = Gate::handler();
    let config = ServerConfig {
        workers: 1,
        queue_depth: 1,
        ..quick_config()
    };
    let server = TestServer::start(config, WithLive(handler));
    let mut busy = server.client();
    busy.send("GET /gate HTTP/1.1\r\nHost: t\r\n\r\n");
    gate.wait_entered();
    let mut queued = server.client();
    queued.send("GET /gate HTTP/1.1\r\nHost: t\r\n\r\n");
    // The queue is full once one more request is refused at once (its request was
    // written after the queued one's, on a connection opened after it).
    let mut extra = server.client();
    extra.send("GET /gate HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(extra.response().status, 503, "the queue is not full");

    let mut probe = server.client();
    for _ in 0..3 {
        probe.send("GET /live HTTP/1.1\r\nHost: t\r\n\r\n");
        let resp = probe.response();
        assert_eq!(resp.status, 200);
        assert!(
            !resp
                .header("x-thread")
                .unwrap_or("")
                .starts_with("http-worker"),
            "answered by a worker: {:?}",
            resp.header("x-thread")
        );
    }

    gate.release_one();
    assert_eq!(busy.response().status, 200);
    gate.wait_entered();
    gate.release_one();
    assert_eq!(queued.response().status, 200);
}

/// Numbers each request by its `note` call and says what note every later call saw.
#[derive(Clone, Default)]
struct Noting {
    notes: Arc<AtomicUsize>,
    /// The note `refuse_head` and `is_immediate` saw, one line per call.
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Handler for Noting {
    fn note(&self, _req: &Request) -> Option<Note> {
        Some(Note(self.notes.fetch_add(1, Ordering::SeqCst) as u64 + 1))
    }

    fn refuse_head(&self, req: &Request) -> Option<Response> {
        self.record("head", req);
        None
    }

    fn is_immediate(&self, req: &Request) -> bool {
        self.record("lane", req);
        false
    }

    fn handle(&self, req: Request) -> Response {
        let note = req.note.map_or(0, |n| n.0);
        Response::new(200).with_header("X-Note", note.to_string())
    }
}

impl Noting {
    fn record(&self, call: &str, req: &Request) {
        let line = format!("{call} {} {:?}", req.path, req.note.map(|n| n.0));
        self.seen.lock().unwrap().push(line);
    }
}

#[test]
fn handler_note_is_made_once_per_request_and_reaches_every_later_call() {
    let noting = Noting::default();
    let server = TestServer::start(quick_config(), noting.clone());
    let mut c = server.client();
    c.send(
        "GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
         POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
         GET /three HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    for want in ["1", "2", "3"] {
        assert_eq!(c.response().header("x-note"), Some(want));
    }
    assert_eq!(
        noting.notes.load(Ordering::SeqCst),
        3,
        "one note per request"
    );
    assert_eq!(
        *noting.seen.lock().unwrap(),
        [
            "lane /one Some(1)",
            "head /two Some(2)",
            "lane /two Some(2)",
            "lane /three Some(3)"
        ]
    );
}

#[test]
fn pipelined_requests_keep_their_order_when_immediate_and_queued_ones_alternate() {
    let server = TestServer::start(quick_config(), WithLive(echo));
    let mut c = server.client();
    // Thousands in one go: answered on the reactor thread one after another, they must
    // neither reorder nor deepen its stack.
    let paths: Vec<String> = (0..3000)
        .map(|n| match n % 3 {
            0 => "/elsewhere".to_owned(),
            _ => format!("/live?n={n}"),
        })
        .collect();
    let mut bytes = String::new();
    for p in &paths {
        bytes.push_str(&format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    let writer = {
        let mut w = c.stream.try_clone().expect("clone");
        thread::spawn(move || w.write_all(bytes.as_bytes()))
    };
    for p in &paths {
        let resp = c.response();
        let json = resp.json();
        let query = json["query"]
            .as_str()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        assert_eq!(
            format!("{}{query}", json["path"].as_str().unwrap_or("")),
            *p
        );
        let on_worker = resp
            .header("x-thread")
            .unwrap_or("")
            .starts_with("http-worker");
        assert_eq!(on_worker, !p.starts_with("/live"), "{p}");
    }
    join_within(writer, READ_LIMIT).expect("all requests written");
}

/// The two tests that load the machine run one at a time, so neither measures the other.
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn immediate_answers_stay_prompt_when_many_clients_pipeline_them_nonstop() {
    let _heavy = heavy();
    // Keep-alive long enough for the probe's pauses on a loaded machine: with
    // quick_config's 300 ms, a probe idle a little longer finds its connection closed.
    let config = ServerConfig {
        keepalive_timeout: Duration::from_secs(10),
        ..quick_config()
    };
    let server = TestServer::start(config, WithLive(echo));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A hundred connections, each sent one more probe every round without waiting for
    // the answers, which are drained as they come: a readiness event on every one of
    // them, all the time.
    let flooder = {
        let (addr, stop) = (server.addr, Arc::clone(&stop));
        thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..100)
                .map(|_| {
                    let s = TcpStream::connect(addr).expect("connect");
                    s.set_nonblocking(true).expect("nonblocking");
                    s
                })
                .collect();
            let mut buf = vec![0; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                for c in &mut conns {
                    let _ = c.write(b"GET /live HTTP/1.1\r\nHost: t\r\n\r\n");
                    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                }
            }
        })
    };

    let mut latencies = Vec::new();
    let mut probe = server.client();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let started = Instant::now();
        probe.send("GET /live HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(probe.response().status, 200);
        latencies.push(started.elapsed());
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    join_within(flooder, READ_LIMIT);
    // Before each connection was queued at most once, duplicates piled up in the
    // reactor's queue and a probe waited longer every second (0.5 s, then seconds). A
    // loaded machine can stall one probe for a few hundred milliseconds, but not every
    // probe of the last second for more than one.
    let last_second = &latencies[latencies.len().saturating_sub(5)..];
    let best_late = last_second.iter().min().copied().unwrap_or_default();
    assert!(
        best_late < Duration::from_secs(1),
        "probes waited longer and longer behind the flood: {latencies:?}"
    );
}

/// Bigger than what loopback socket buffers hold, so the write cannot finish at once.
const BIG_BODY: usize = 32 << 20;

fn big(req: user_api::http::Request) -> user_api::http::Response {
    match req.path.as_str() {
        "/big" => user_api::http::Response::new(200).with_body(vec![b'x'; BIG_BODY]),
        _ => echo(req),
    }
}

#[test]
fn large_response_arrives_whole_when_the_reactor_finishes_the_workers_write() {
    let config = ServerConfig {
        write_timeout: Duration::from_secs(10),
        // Idle time starts once the last byte is with the kernel, while this client
        // may still be reading megabytes of it.
        keepalive_timeout: Duration::from_secs(10),
        ..quick_config()
    };
    let server = TestServer::start(config, big);
    let mut c = server.client();
    c.send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().body.len(), BIG_BODY);
    c.send(GET);
    assert_eq!(c.response().status, 200, "keep-alive survives the handoff");
}

#[test]
fn slow_reader_is_dropped_when_the_write_timeout_passes() {
    let (answered_tx, answered) = std::sync::mpsc::channel();
    let answered_tx = std::sync::Mutex::new(answered_tx);
    let handler = move |req: user_api::http::Request| {
        let resp = big(req);
        let _ = answered_tx.lock().map(|tx| tx.send(()));
        resp
    };
    let server = TestServer::start(quick_config(), handler);
    let mut c = server.client();
    c.send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    answered
        .recv_timeout(READ_LIMIT)
        .expect("the handler answered");
    // The scenario itself: a client that reads nothing for three write timeouts,
    // counted from when the response exists.
    thread::sleep(3 * quick_config().write_timeout);
    let mut received = 0;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
    }
    assert!(received < BIG_BODY, "the whole body arrived: not dropped");
}

#[test]
fn handler_panic_gives_500_and_the_server_keeps_serving_when_a_handler_panics() {
    let server = TestServer::echo();
    let mut c = server.client();
    c.send("GET /panic HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-1\r\n\r\n");
    let resp = c.response();
    assert_eq!(resp.status, 500);
    assert_eq!(
        resp.json(),
        serde_json::json!({"error": "internal server error"})
    );
    assert_eq!(resp.header("x-request-id"), Some("trace-1"));
    for _ in 0..4 {
        c.send(GET);
        assert_eq!(c.response().status, 200);
    }
}

#[test]
fn every_connection_is_served_within_a_second_when_64_keep_alive_clients_loop() {
    let _heavy = heavy();
    let config = ServerConfig {
        workers: 4,
        ..ServerConfig::default()
    };
    let server = TestServer::start(config, echo);
    let addr = server.addr;
    let total = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let total = Arc::clone(&total);
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                let start = Instant::now();
                let mut first = None;
                let mut count = 0;
                while start.elapsed() < Duration::from_secs(1) {
                    c.send(GET);
                    assert_eq!(c.response().status, 200);
                    first.get_or_insert(start.elapsed());
                    count += 1;
                }
                total.fetch_add(count, Ordering::Relaxed);
                first
            })
        })
        .collect();
    for client in clients {
        let first = client.join().expect("client thread").expect("one response");
        assert!(
            first < Duration::from_secs(1),
            "first response after {first:?}"
        );
    }
    assert!(total.load(Ordering::Relaxed) >= 64);
}

#[test]
fn request_in_flight_completes_with_connection_close_when_the_server_stops() {
    let (gate, handler) = Gate::handler();
    let config = ServerConfig {
        // Long enough that only the stop can close the idle connection.
        keepalive_timeout: Duration::from_secs(30),
        ..quick_config()
    };
    let server = TestServer::start(config, handler);
    let mut idle = server.client();
    idle.send(GET);
    assert_eq!(idle.response().status, 200);
    let mut busy = server.client();
    busy.send("GET /gate HTTP/1.1\r\nHost: t\r\n\r\n");
    gate.wait_entered();

    let addr = server.addr;
    let stopper = server.stopper.clone();
    let stopping = thread::spawn(move || server.stop_within(Duration::from_secs(5)));
    // The idle connection is closed and the listener with it, while the request runs.
    idle.assert_closed();
    assert!(
        !stopping.is_finished(),
        "run() returned with a request in flight"
    );
    assert!(stopper.is_stopped());
    gate.release_one();
    let resp = busy.response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    busy.assert_closed();
    join_within(stopping, Duration::from_secs(5)).expect("run() returned Ok");
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}

#[test]
fn stop_wakes_the_reactor_at_once_when_the_server_is_idle() {
    // Left to itself, an idle reactor wakes every 2 s (its linger sweep), so a stop it
    // is not woken for takes up to that long each time. The fastest of three stops is
    // robust to a loaded machine stalling one of them.
    let took: Vec<Duration> = (0..3)
        .map(|_| {
            let server = TestServer::start(ServerConfig::default(), echo);
            let start = Instant::now();
            server
                .stop_within(Duration::from_secs(30))
                .expect("run() returned Ok");
            start.elapsed()
        })
        .collect();
    let fastest = took.iter().min().copied().unwrap_or_default();
    assert!(
        fastest < Duration::from_secs(1),
        "stops took {took:?}: the reactor waited for its sweep"
    );
}

/// Set in the child process that plays the server for the descriptor-exhaustion test.
const EMFILE_CHILD: &str = "USER_API_EMFILE_CHILD";
/// Descriptors the child may open beyond those it has once the server is built.
const CHILD_SPARE_FDS: u64 = 6;

#[test]
fn accepting_resumes_when_descriptors_run_out_and_are_released() {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "emfile_child_server",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EMFILE_CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child server");
    let guard = KillOnDrop(&mut child);
    let stdout = guard.0.stdout.take().unwrap();
    let mut stderr = guard.0.stderr.take().unwrap();
    let stderr_text = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // stdout is read to its end, so the child's test harness can still print its result.
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness prints the test name without a newline just before it.
            if let Some((_, port)) = line.split_once("PORT ") {
                let _ = port_tx.send(port.parse::<u16>().expect("a port"));
            }
        }
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the child prints its port");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    // Open connections until one is not answered: the server is out of descriptors and
    // that connection waits in the listen backlog.
    let mut served = Vec::new();
    let stuck = loop {
        assert!(served.len() < 64, "the descriptor limit never bit");
        let mut c = Client::connect(addr);
        c.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        c.send(GET);
        match c.try_response(false) {
            Ok(resp) => {
                assert_eq!(resp.status, 200);
                served.push(c);
            }
            Err(_) => break c,
        }
    };
    assert!(!served.is_empty());
    // Releasing the held connections frees descriptors; the stuck one is accepted and
    // answered, and so is a new one.
    drop(served);
    let mut stuck = stuck;
    stuck.stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
    assert_eq!(stuck.response().status, 200);
    let mut fresh = Client::connect(addr);
    fresh.send(GET);
    assert_eq!(fresh.response().status, 200);
    drop((stuck, fresh));

    drop(guard.0.stdin.take()); // tells the child to stop
    let status = guard.0.wait().expect("child exit");
    let log = stderr_text.join().unwrap();
    assert!(status.success(), "child failed: {log}");
    assert!(log.contains("out of file descriptors"), "{log}");
}

/// The server half of the test above, run only in the child process.
#[test]
fn emfile_child_server() {
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return;
    }
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let _ = user_api::telemetry::init(log::LevelFilter::Warn, None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::new(listener, ServerConfig::default(), Arc::new(echo)).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(open + CHILD_SPARE_FDS),
            maximum: hard,
        },
    )
    .unwrap();
    println!("PORT {}", server.local_addr().port());
    let stopper = server.stopper();
    thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        stopper.stop();
    });
    server.run().unwrap();
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A valid request for the properties below, and the path the echo will report.
fn valid_request() -> impl Strategy<Value = (Vec<u8>, String, bool)> {
    let method = prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("DELETE")];
    let body = proptest::collection::vec(b'a'..=b'z', 0..200);
    (method, "/[a-z0-9]{0,10}", body, any::<bool>()).prop_map(|(method, path, body, chunked)| {
        let request = Request::new(Method::parse(method), &path)
            .with_header("Host", "t")
            .with_body(body);
        (
            request.to_wire(chunked.then_some(50)),
            path,
            method == "HEAD",
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn pipelined_stream_gets_exactly_one_response_per_request_when_all_are_valid(
        requests in proptest::collection::vec(valid_request(), 1..8),
        piece in 1usize..400,
    ) {
        let server = TestServer::echo();
        let mut c = server.client();
        let stream: Vec<u8> = requests.iter().flat_map(|(r, _, _)| r.clone()).collect();
        for part in stream.chunks(piece) {
            c.send(part);
        }
        c.send("GET /end HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        for (_, path, head) in &requests {
            let resp = if *head { c.head_response() } else { c.response() };
            prop_assert_eq!(resp.status, 200);
            if !*head {
                let json = resp.json();
                prop_assert_eq!(json["path"].as_str(), Some(path.as_str()));
            }
        }
        let last = c.response().json();
        prop_assert_eq!(last["path"].as_str(), Some("/end"));
        c.assert_closed();
    }
}

/// The scheduling policy of the thread that calls it: field 41 of its `stat`.
fn this_threads_policy() -> String {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read our stat");
    // Fields are counted from the pid; the command name (field 2) may hold spaces.
    let after_name = stat.rsplit_once(')').expect("a command name").1;
    after_name
        .split_whitespace()
        .nth(41 - 3)
        .expect("field 41")
        .to_owned()
}

#[test]
fn handlers_run_under_sched_batch_and_immediate_answers_under_the_normal_policy() {
    // The handler tells which policy its thread runs under: a worker's for `/`, the
    // reactor's for `/live`.
    struct Policy;
    impl Handler for Policy {
        fn handle(&self, _req: Request) -> Response {
            Response::json_bytes(200, this_threads_policy().into_bytes())
        }
        fn is_immediate(&self, req: &Request) -> bool {
            req.path == "/live"
        }
    }
    let server = TestServer::start(quick_config(), Policy);
    let mut client = server.client();
    const SCHED_OTHER: &str = "0";
    const SCHED_BATCH: &str = "3";

    client.send(GET);
    assert_eq!(client.response().text().trim(), SCHED_BATCH, "a worker");
    client.send("GET /live HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.response().text().trim(), SCHED_OTHER, "the reactor");
}
