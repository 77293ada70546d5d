//! Thousands of idle keep-alive connections and a couple of hundred slowloris ones against
//! the real binary: its memory stays at or under 16 MiB, a normal request still answers
//! within a second, and each slowloris connection gets its 408 at its deadline.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

const IDLE: usize = 5_000;
/// Half dribble their head, half their body.
const SLOW: usize = 200;
const HEADER_TIMEOUT: Duration = Duration::from_secs(4);
const BODY_TIMEOUT: Duration = Duration::from_secs(4);
/// One byte per slowloris connection per tick.
const TICK: Duration = Duration::from_millis(100);
const MEMORY_LIMIT_KIB: u64 = 16 * 1024;

#[test]
fn idle_and_slowloris_connections_keep_the_server_under_16_mib_and_fast() {
    let _serial = serial();
    let needed = (IDLE + SLOW + 256) as u64;
    let nofile = user_api::http::server::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    assert!(
        nofile >= needed,
        "this test holds {needed} sockets but the open-files hard limit is {nofile}: \
         raise it (ulimit -Hn, or LimitNOFILE=) to run the chaos suite"
    );

    // Arrange: the binary, with timeouts short enough for the test and a keep-alive
    // timeout longer than it.
    let db = fresh_database();
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("HEADER_TIMEOUT_MS", HEADER_TIMEOUT.as_millis().to_string()),
        ("BODY_TIMEOUT_MS", BODY_TIMEOUT.as_millis().to_string()),
        ("KEEPALIVE_TIMEOUT_MS", "120000".into()),
        // Every connection comes from 127.0.0.1 here.
        ("MAX_CONNECTIONS_PER_PEER", "0".into()),
        ("LOG_LEVEL", "warn".into()),
    ]);
    let at_start = server.memory();

    // Act 1: 5 000 connections each make one request and stay open, idle.
    let opening = Instant::now();
    let mut idle = open_idle(server.addr, IDLE);
    let opened_in = opening.elapsed();
    let with_idle = server.memory();

    // Act 2: 200 slowloris connections, and normal requests while they dribble.
    let addr = server.addr;
    let ticks = Arc::new(AtomicUsize::new(0));
    let driver = {
        let ticks = Arc::clone(&ticks);
        std::thread::spawn(move || slowloris(addr, SLOW, &ticks))
    };
    // Measure half way to the deadlines, every slowloris connection open and mid-request.
    let half_way = HEADER_TIMEOUT.min(BODY_TIMEOUT).as_millis() / 2 / TICK.as_millis();
    let dribbling = poll_until(HEADER_TIMEOUT, || {
        (ticks.load(Ordering::SeqCst) >= half_way as usize).then_some(())
    });
    assert!(
        dribbling.is_some(),
        "the slowloris connections never got going"
    );
    let under_attack = server.memory();
    let normal = normal_requests(server.addr);
    let slow = driver.join().expect("the slowloris driver panicked");
    let idle_after = sample_idle(&mut idle, 100);
    let at_end = server.memory();

    // Assert: memory.
    let peak = at_end.hwm_kib;
    let report = format!(
        "{} build: start {} / {IDLE} idle (opened in {opened_in:?}) {} / + {SLOW} slowloris {} \
         / end {}, peak (VmHWM) {}",
        profile(),
        mib(at_start.rss_kib),
        mib(with_idle.rss_kib),
        mib(under_attack.rss_kib),
        mib(at_end.rss_kib),
        mib(peak)
    );
    eprintln!("slow clients: {report}");
    assert!(
        under_attack.rss_kib <= MEMORY_LIMIT_KIB && peak <= MEMORY_LIMIT_KIB,
        "the server's memory passed 16 MiB: {report}"
    );

    // Assert: normal requests were served within a second meanwhile.
    for (what, status, took) in &normal {
        eprintln!("slow clients: {what} -> {status} in {took:?} under attack");
    }
    for (what, status, took) in normal {
        let want = if what.starts_with("POST") { 201 } else { 200 };
        assert_eq!(status, want, "{what} while under attack");
        assert!(
            took < Duration::from_secs(1),
            "{what} took {took:?} while under attack"
        );
    }

    // Assert: every slowloris connection got a 408 at its deadline, then was closed.
    let mut problems = Vec::new();
    for s in &slow {
        let deadline = if s.in_body {
            BODY_TIMEOUT
        } else {
            HEADER_TIMEOUT
        };
        let kind = if s.in_body { "body" } else { "head" };
        match (&s.status, s.ended) {
            (Some(408), Some(at))
                if at + Duration::from_millis(50) >= deadline
                    && at <= deadline + Duration::from_millis(1500) => {}
            (status, at) => problems.push(format!(
                "slowloris {kind} #{}: {status:?} at {at:?} (deadline {deadline:?}){}",
                s.n,
                if s.closed { "" } else { ", not closed" }
            )),
        }
        if s.status == Some(408) && !s.closed {
            problems.push(format!(
                "slowloris {kind} #{}: not closed after its 408",
                s.n
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {SLOW} slowloris connections were not ended as they should be:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let mut ends: Vec<Duration> = slow.iter().filter_map(|s| s.ended).collect();
    ends.sort();
    eprintln!(
        "slow clients: {SLOW} slowloris ended with 408 between {:?} and {:?} \
         (deadlines {HEADER_TIMEOUT:?}); {idle_after} of 100 idle connections sampled still served",
        ends.first().copied().unwrap_or_default(),
        ends.last().copied().unwrap_or_default()
    );

    // Assert: the idle connections are still served; nothing but the normal create stored.
    assert_eq!(
        idle_after, 100,
        "idle connections closed before their keep-alive timeout"
    );
    let rows: i64 = db
        .connect()
        .query_one("SELECT count(*) FROM users", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "only the normal request's user was stored");
}

/// Opens `n` keep-alive connections from four threads, each after one `GET /health/live`.
fn open_idle(addr: SocketAddr, n: usize) -> Vec<BufReader<TcpStream>> {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let count = n / 4 + usize::from(t < n % 4);
            std::thread::spawn(move || {
                (0..count)
                    .map(|i| {
                        let stream = TcpStream::connect(addr)
                            .unwrap_or_else(|e| panic!("idle connection {t}/{i}: {e}"));
                        stream
                            .set_read_timeout(Some(Duration::from_secs(10)))
                            .unwrap();
                        let mut reader = BufReader::new(stream);
                        let r = ask_live(&mut reader)
                            .unwrap_or_else(|e| panic!("idle connection {t}/{i}: {e}"));
                        assert_eq!(r.status, 200, "idle connection {t}/{i}");
                        reader
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("an opener panicked"))
        .collect()
}

fn ask_live(reader: &mut BufReader<TcpStream>) -> std::io::Result<HttpResponse> {
    reader
        .get_mut()
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: idle\r\n\r\n")?;
    read_response(reader, false)
}

/// Asks again on `n` of the idle connections, spread over all of them; returns how many
/// answered 200.
fn sample_idle(idle: &mut [BufReader<TcpStream>], n: usize) -> usize {
    let step = (idle.len() / n).max(1);
    idle.iter_mut()
        .step_by(step)
        .take(n)
        .map(|c| ask_live(c).is_ok_and(|r| r.status == 200))
        .filter(|&ok| ok)
        .count()
}

/// Normal requests on fresh connections, each timed: (what, status, time).
fn normal_requests(addr: SocketAddr) -> Vec<(String, u16, Duration)> {
    let mut out = Vec::new();
    let mut timed = |what: &str, method: &str, target: &str, body: Option<Value>| {
        let started = Instant::now();
        let mut client = Client::new(addr, Duration::from_secs(5));
        let r = match &body {
            Some(b) => client.json(method, target, b),
            None => client.send(method, target, &[], None),
        };
        let took = started.elapsed();
        let r = r.unwrap_or_else(|e| panic!("{what} under attack: {e}"));
        out.push((what.to_owned(), r.status, took));
        r
    };
    let created = timed(
        "POST /user",
        "POST",
        "/user",
        Some(json!({"first_name": "Ada", "last_name": "Lovelace"})),
    );
    let id = if created.status == 201 {
        created.json()["id"].as_i64().unwrap_or(1)
    } else {
        1
    };
    timed("GET /user/{id}", "GET", &format!("/user/{id}"), None);
    timed("GET /users", "GET", "/users?limit=10", None);
    timed("GET /health", "GET", "/health", None);
    out
}

/// One slowloris connection's fate.
struct Slow {
    n: usize,
    in_body: bool,
    /// From connect to the complete answer.
    ended: Option<Duration>,
    status: Option<u16>,
    closed: bool,
}

/// Opens `n` connections and dribbles one byte per tick into each: half an endless head,
/// half a body that never completes, counting the ticks in `ticks`. Returns when every
/// one has an answer and was closed, or a few seconds past the deadlines.
fn slowloris(addr: SocketAddr, n: usize, ticks: &AtomicUsize) -> Vec<Slow> {
    struct Conn {
        stream: TcpStream,
        opened: Instant,
        script: Vec<u8>,
        sent: usize,
        got: Vec<u8>,
        done: bool,
        slow: Slow,
    }
    let head_script =
        b"POST /user HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\nX-Pad: ";
    let mut conns: Vec<Conn> = (0..n)
        .map(|i| {
            let in_body = i % 2 == 1;
            let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("slowloris {i}: {e}"));
            let opened = Instant::now();
            stream.set_nodelay(true).unwrap();
            let mut stream_w = stream.try_clone().unwrap();
            if in_body {
                // The whole head at once, then a body of which only a trickle comes.
                stream_w
                    .write_all(
                        b"POST /user HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n\
                          Content-Length: 60000\r\n\r\n",
                    )
                    .unwrap();
            }
            stream.set_nonblocking(true).unwrap();
            Conn {
                stream,
                opened,
                script: if in_body {
                    Vec::new()
                } else {
                    head_script.to_vec()
                },
                sent: 0,
                got: Vec::new(),
                done: false,
                slow: Slow {
                    n: i,
                    in_body,
                    ended: None,
                    status: None,
                    closed: false,
                },
            }
        })
        .collect();
    let give_up = Instant::now() + HEADER_TIMEOUT.max(BODY_TIMEOUT) + Duration::from_secs(5);
    let mut buf = [0u8; 1024];
    while conns.iter().any(|c| !c.done) && Instant::now() < give_up {
        let tick = Instant::now();
        for c in conns.iter_mut().filter(|c| !c.done) {
            if c.slow.status.is_none() {
                // The next byte of the head script, then padding or body forever.
                let byte = c.script.get(c.sent).copied().unwrap_or(b'a');
                match c.stream.write(&[byte]) {
                    Ok(_) => c.sent += 1,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {}
                }
            }
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        c.slow.closed = true;
                        c.done = true;
                        break;
                    }
                    Ok(k) => c.got.extend_from_slice(&buf[..k]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.slow.closed = true;
                        c.done = true;
                        break;
                    }
                }
            }
            if c.slow.status.is_none() {
                if let Ok(r) = read_response(&mut c.got.as_slice(), false) {
                    c.slow.status = Some(r.status);
                    c.slow.ended = Some(c.opened.elapsed());
                }
            }
        }
        ticks.fetch_add(1, Ordering::SeqCst);
        let elapsed = tick.elapsed();
        if elapsed < TICK {
            std::thread::sleep(TICK - elapsed);
        }
    }
    conns.into_iter().map(|c| c.slow).collect()
}
