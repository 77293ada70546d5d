//! Hostile and careless inputs against the app: each gets its exact 4xx promptly, never
//! a 5xx, a hang or a crash; the app serves normally afterwards and stored nothing.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

/// `MAX_BODY_BYTES` of the app: large enough that a 100 000-deep JSON document reaches
/// the parser instead of being refused for its size.
const MAX_BODY: usize = 256 * 1024;
/// Longest any answer may take.
const PROMPT: Duration = Duration::from_secs(2);

/// One request as raw bytes, and what must come back.
struct Case {
    what: String,
    bytes: Vec<u8>,
    status: u16,
    /// The connection must be closed after the answer (the request was not read whole).
    closes: bool,
}

fn case(what: impl Into<String>, bytes: impl Into<Vec<u8>>, status: u16, closes: bool) -> Case {
    Case {
        what: what.into(),
        bytes: bytes.into(),
        status,
        closes,
    }
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: hostile\r\n\r\n").into_bytes()
}

/// A request with a JSON body (`Content-Type: application/json` unless `headers` carry
/// one) framed by `Content-Length`.
fn with_body(method: &str, target: &str, headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: hostile\r\n").into_bytes();
    if !headers
        .windows(13)
        .any(|w| w.eq_ignore_ascii_case(b"content-type:"))
    {
        out.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    out.extend_from_slice(headers);
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

fn post_user(body: &[u8]) -> Vec<u8> {
    with_body("POST", "/user", b"", body)
}

/// What the server answered to one case, how fast, and whether it closed afterwards.
struct Answer {
    result: Result<HttpResponse, String>,
    took: Duration,
    closed: bool,
}

/// Sends `bytes` on a new connection and reads the answer; when `watch_close`, also
/// waits (up to 3 s) to see the server close the connection.
fn send(addr: SocketAddr, bytes: &[u8], watch_close: bool) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PROMPT * 3)).unwrap();
    stream.set_write_timeout(Some(PROMPT * 3)).unwrap();
    let started = Instant::now();
    // The server may answer (and close) before it has read everything: a failed write
    // is fine as long as the answer arrives.
    let _ = stream.write_all(bytes);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let result = read_response(&mut reader, false).map_err(|e| e.to_string());
    let took = started.elapsed();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let closed = watch_close && result.is_ok() && closed_by_server(&mut reader);
    Answer {
        result,
        took,
        closed,
    }
}

/// Whether the server ends the connection (EOF or reset) before the read timeout,
/// discarding anything it still sends.
fn closed_by_server(reader: &mut impl Read) -> bool {
    let mut rest = [0u8; 256];
    loop {
        match reader.read(&mut rest) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

fn cases(existing: i64) -> Vec<Case> {
    let deep_array = "[".repeat(100_000);
    let deep_field = format!(
        "{{\"first_name\": {}\"x\"{}, \"last_name\": \"y\"}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_object = format!("{}1{}", "{\"a\":".repeat(40_000), "}".repeat(40_000));
    let many_headers: String = (0..1000).map(|i| format!("X-Flood-{i}: {i}\r\n")).collect();
    let long_query = format!("/users?email={}", "a".repeat(100 * 1024));
    let repeated_params = format!("/users?{}", "limit=1&".repeat(1000));
    let huge_header = format!("X-Big: {}\r\n", "b".repeat(20 * 1024));
    let long_name = format!(
        "{{\"first_name\": \"{}\", \"last_name\": \"x\"}}",
        "n".repeat(100_000)
    );
    let mut all = vec![
        // Body limits, before anything is buffered.
        case(
            "Content-Length: 10000000000",
            b"POST /user HTTP/1.1\r\nHost: hostile\r\nContent-Type: application/json\r\n\
              Content-Length: 10000000000\r\n\r\n{\"first_name\": \"x\""
                .to_vec(),
            413,
            true,
        ),
        case(
            "Content-Length past u64",
            b"POST /user HTTP/1.1\r\nHost: hostile\r\nContent-Type: application/json\r\n\
              Content-Length: 99999999999999999999999\r\n\r\n"
                .to_vec(),
            400,
            true,
        ),
        // JSON nesting, encoding, duplicates, types.
        case(
            "100 000 [ as the body",
            post_user(deep_array.as_bytes()),
            400,
            false,
        ),
        case(
            "a name nested 100 000 arrays deep",
            post_user(deep_field.as_bytes()),
            400,
            false,
        ),
        case(
            "objects nested 40 000 deep",
            post_user(deep_object.as_bytes()),
            400,
            false,
        ),
        case(
            "invalid UTF-8 in a JSON string",
            post_user(b"{\"first_name\": \"\xff\xfe\", \"last_name\": \"x\"}"),
            400,
            false,
        ),
        case(
            "a lone surrogate escape",
            post_user(br#"{"first_name": "\ud800", "last_name": "x"}"#),
            400,
            false,
        ),
        case(
            "duplicate JSON keys",
            post_user(br#"{"first_name": "a", "last_name": "b", "first_name": "c"}"#),
            400,
            false,
        ),
        case(
            "a number too large for any type",
            post_user(br#"{"first_name": 1e999999, "last_name": "b"}"#),
            400,
            false,
        ),
        case("a body that is JSON null", post_user(b"null"), 400, false),
        case(
            "a 100 000-character name",
            post_user(long_name.as_bytes()),
            400,
            false,
        ),
        // NUL and other control characters.
        case(
            "an escaped NUL in first_name",
            post_user(br#"{"first_name": "a\u0000b", "last_name": "c"}"#),
            400,
            false,
        ),
        case(
            "an escaped NUL in last_name, by PATCH",
            with_body(
                "PATCH",
                &format!("/user/{existing}"),
                b"",
                br#"{"last_name": "\u0000"}"#,
            ),
            400,
            false,
        ),
        case(
            "an escaped NUL in the email, by PUT",
            with_body(
                "PUT",
                &format!("/user/{existing}"),
                b"",
                br#"{"first_name": "a", "last_name": "b", "email": "a\u0000b@x.io"}"#,
            ),
            400,
            false,
        ),
        case(
            "a raw NUL byte inside a JSON string",
            post_user(b"{\"first_name\": \"a\x00b\", \"last_name\": \"c\"}"),
            400,
            false,
        ),
        // Headers.
        case(
            "invalid UTF-8 in Content-Type",
            with_body(
                "POST",
                "/user",
                b"Content-Type: application/json; charset=\xff\xfe\r\n",
                br#"{"first_name": "a", "last_name": "b"}"#,
            ),
            415,
            false,
        ),
        case(
            "invalid UTF-8 in a header name",
            b"GET /users HTTP/1.1\r\nHost: hostile\r\nX-\xff: 1\r\n\r\n".to_vec(),
            400,
            true,
        ),
        case(
            "a NUL byte in a header value",
            b"GET /users HTTP/1.1\r\nHost: hostile\r\nX-Nul: a\x00b\r\n\r\n".to_vec(),
            400,
            true,
        ),
        case(
            "1 000 header fields",
            format!("GET /users HTTP/1.1\r\nHost: hostile\r\n{many_headers}\r\n"),
            431,
            true,
        ),
        case(
            "a 20 KiB header value",
            format!("GET /users HTTP/1.1\r\nHost: hostile\r\n{huge_header}\r\n"),
            431,
            true,
        ),
        // Targets and queries.
        case("a 100 KiB query string", get(&long_query), 414, true),
        case(
            "limit repeated 1 000 times",
            get(&repeated_params),
            400,
            false,
        ),
        case(
            "a NUL byte in the request line",
            get("/user/1\x00"),
            400,
            true,
        ),
        case(
            "invalid UTF-8 in the path",
            b"GET /user/\xff\xfe HTTP/1.1\r\nHost: hostile\r\n\r\n".to_vec(),
            400,
            true,
        ),
    ];
    for (target, status) in [
        ("/users?limit=99999999999999999999999", 400),
        ("/users?limit=%00", 400),
        ("/users?limit=-1", 400),
        ("/users?limit=0", 400),
        ("/users?limit=1e2", 400),
        ("/users?limit=", 400),
        ("/users?offset=-1", 400),
        ("/users?offset=99999999999999999999", 400),
        ("/users?after_id=0", 400),
        ("/users?after_id=9223372036854775808", 400),
        ("/users?after_id=1&offset=5", 400),
        ("/users?email=%ff", 400),
        ("/users?email=%00a@b.io", 400),
        ("/users?email=%", 400),
        ("/users?email=%zz", 400),
        ("/users?%ff=1", 400),
        ("/users?nope=1", 400),
        ("/users?offset=9223372036854775807", 400),
        ("/users?offset=10000", 200),
        ("/users?after_id=9223372036854775807", 200),
        ("/user/99999999999999999999999", 400),
        ("/user/9223372036854775808", 400),
        ("/user/9223372036854775807", 404),
        ("/user/0", 400),
        ("/user/-1", 400),
        ("/user/%00", 400),
        ("/user/1%00", 400),
        ("/user/1.5", 400),
        ("/user/%ff", 400),
    ] {
        all.push(case(format!("GET {target}"), get(target), status, false));
    }
    all
}

#[test]
fn hostile_inputs_get_their_4xx_promptly_and_the_app_serves_on() {
    let _serial = serial();

    // Arrange
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_BODY_BYTES".into(), MAX_BODY.to_string());
    });
    let existing = app.create_named("Ada", "Lovelace", Some("ada@example.com"));

    // Act
    let mut problems = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    let all = cases(existing);
    let count = all.len() + 1;
    for c in all {
        let answer = send(app.addr, &c.bytes, c.closes);
        if answer.took > slowest.0 {
            slowest = (answer.took, c.what.clone());
        }
        problems.extend(judge(&c, &answer));
    }
    let chunked = endless_chunked_body(app.addr);
    if chunked.took > slowest.0 {
        slowest = (chunked.took, "an endless chunked body".into());
    }
    let endless = case("an endless chunked body", Vec::new(), 413, true);
    problems.extend(judge(&endless, &chunked.answer));
    if !chunked.writer_stopped {
        problems.push(format!(
            "an endless chunked body: the server took all {} MiB without closing",
            chunked.sent >> 20
        ));
    }

    // Assert: every case as expected; the app alive and well; nothing stored.
    assert!(
        problems.is_empty(),
        "{} of {count} hostile inputs were not handled as expected:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(app.health().status, 200, "/health after the hostile inputs");
    let user = app.get_user(existing);
    assert_eq!(user.status, 200);
    assert_eq!(
        (
            user.json()["first_name"].as_str(),
            user.json()["last_name"].as_str(),
            user.json()["email"].as_str()
        ),
        (Some("Ada"), Some("Lovelace"), Some("ada@example.com")),
        "the user the hostile PATCH and PUT aimed at is unchanged"
    );
    let after = app.create_named("Grace", "Hopper", None);
    let rows: Vec<i64> = app
        .db()
        .query("SELECT id FROM users ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![existing, after], "no hostile input stored a row");
    let metrics = app.metrics().text();
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("status=\"5"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(server_errors.is_empty(), "5xx counted: {server_errors:?}");
    eprintln!(
        "hostile inputs: {count} cases, all as expected; slowest answer {:?} ({}); \
         endless chunked body cut off after {} KiB sent",
        slowest.0,
        slowest.1,
        chunked.sent >> 10
    );
}

fn judge(c: &Case, a: &Answer) -> Vec<String> {
    let mut problems = Vec::new();
    let r = match &a.result {
        Ok(r) => r,
        Err(e) => return vec![format!("{}: no answer after {:?}: {e}", c.what, a.took)],
    };
    if r.status != c.status {
        problems.push(format!(
            "{}: {} instead of {}: {}",
            c.what,
            r.status,
            c.status,
            r.text()
        ));
    }
    if r.status >= 400 && serde_json::from_slice::<Value>(&r.body).is_err() {
        problems.push(format!(
            "{}: the error body is not JSON: {:?}",
            c.what,
            r.text()
        ));
    }
    let id = r.header("x-request-id").unwrap_or("");
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        problems.push(format!("{}: X-Request-Id {id:?} is not a sane one", c.what));
    }
    if a.took > PROMPT {
        problems.push(format!("{}: answered after {:?}", c.what, a.took));
    }
    if c.closes && !(r.closes_connection() && a.closed) {
        problems.push(format!(
            "{}: the connection was not closed after the answer (Connection: {:?}, closed: {})",
            c.what,
            r.header("connection"),
            a.closed
        ));
    }
    problems
}

/// What an endless chunked body came to.
struct Chunked {
    answer: Answer,
    took: Duration,
    /// Bytes written before the server closed (or the cap was reached).
    sent: usize,
    /// Whether the writer was stopped by the server rather than by the cap.
    writer_stopped: bool,
}

/// Sends `POST /user` with a chunked body of 16 KiB chunks that never ends (up to a cap
/// of 64 MiB), reading the answer meanwhile.
fn endless_chunked_body(addr: SocketAddr) -> Chunked {
    const CAP: usize = 64 << 20;
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let reader_stream = stream.try_clone().unwrap();
    let started = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(reader_stream);
        let result = read_response(&mut reader, false).map_err(|e| e.to_string());
        let took = started.elapsed();
        let closed = result.is_ok() && closed_by_server(&mut reader);
        Answer {
            result,
            took,
            closed,
        }
    });
    let head = b"POST /user HTTP/1.1\r\nHost: hostile\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\n\r\n";
    let mut chunk = b"4000\r\n".to_vec();
    chunk.extend(std::iter::repeat_n(b' ', 0x4000));
    chunk.extend_from_slice(b"\r\n");
    let mut sent = 0;
    let mut writer_stopped = stream.write_all(head).is_err();
    while !writer_stopped && sent < CAP {
        match stream.write_all(&chunk) {
            Ok(()) => sent += chunk.len(),
            Err(_) => writer_stopped = true,
        }
    }
    let answer = reader.join().expect("the reader thread panicked");
    Chunked {
        took: answer.took,
        answer,
        sent,
        writer_stopped,
    }
}
