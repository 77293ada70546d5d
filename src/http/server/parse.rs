//! Parsing one request head with `httparse` and deciding, from the head alone, how the
//! body is framed and whether the connection may be kept alive.
//!
//! The framing rules are where request smuggling lives (RFC 9112 §6), so every ambiguous
//! head is refused here, before a single body byte is read.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use crate::http::{Body, Method, Request};

/// The size limits that apply while reading a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
}

/// A request the layer refuses before the handler sees it; the connection closes after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub status: u16,
    pub message: Cow<'static, str>,
}

impl Rejection {
    pub(crate) fn new(status: u16, message: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection {
            status,
            message: message.into(),
        }
    }

    fn malformed() -> Rejection {
        Rejection::new(400, "the request line or a header field is malformed")
    }
}

/// How the body that follows the head is delimited: its "message body length" in
/// RFC 9112 §6.3's words. (How our *responses* are framed is `response::Framing`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// No body (no `Content-Length`, no `Transfer-Encoding`, or a length of 0).
    Empty,
    /// Exactly this many bytes, already known to be within the cap.
    Fixed(usize),
    /// `Transfer-Encoding: chunked`, decoded under the cap.
    Chunked,
    /// The declared length (over the cap): the body is never read for the handler, only
    /// discarded after the answer, so that the answer reaches the client.
    TooLarge(u64),
}

/// A complete, accepted head.
#[derive(Debug)]
pub(crate) struct Head {
    /// The request with an empty body; the body is filled in once read.
    pub request: Request,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// What the client asked for; the layer may still close (too-large body, shutdown).
    pub keep_alive: bool,
    pub body_length: BodyLength,
    /// `Expect: 100-continue` from an HTTP/1.1 client.
    pub expect_continue: bool,
}

/// Header fields parsed without a heap allocation: `MAX_HEADERS`' default.
const ON_STACK: usize = 64;

/// Parses a head that ends in an empty line (`buf` holds exactly the head).
///
/// The caller has already checked the byte limit; this checks the field-count limit and
/// every framing rule.
pub(crate) fn parse_head(buf: &[u8], limits: &Limits) -> Result<Head, Rejection> {
    // httparse fills one slot per field. Up to `MAX_HEADERS`' default they live on the
    // stack, uninitialised: no allocation and no zeroing per request.
    let mut on_stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; ON_STACK];
    let mut on_heap = Vec::new();
    let fields = if limits.max_headers <= ON_STACK {
        &mut on_stack[..limits.max_headers]
    } else {
        on_heap.resize_with(limits.max_headers, MaybeUninit::uninit);
        &mut on_heap[..]
    };
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(buf, fields) {
        Ok(httparse::Status::Complete(_)) => {}
        // The caller found the empty line, so a partial parse means the empty line was
        // somewhere httparse does not accept one: malformed.
        Ok(httparse::Status::Partial) => return Err(Rejection::malformed()),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection::new(
                431,
                format!(
                    "the request has more than {} header fields",
                    limits.max_headers
                ),
            ));
        }
        Err(httparse::Error::Version) if names_another_http_version(buf) => {
            return Err(Rejection::new(
                505,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ));
        }
        Err(_) => return Err(Rejection::malformed()),
    }
    let (Some(method), Some(target), Some(minor_version)) =
        (parsed.method, parsed.path, parsed.version)
    else {
        return Err(Rejection::malformed());
    };

    // One slot to spare: the connection layer adds `x-request-id` when the client sent
    // none (`request_id::assign`), which would otherwise grow the vector again.
    let mut headers = Vec::with_capacity(parsed.headers.len() + 1);
    headers.extend(parsed.headers.iter().map(|h| {
        (
            h.name.to_ascii_lowercase(),
            String::from_utf8_lossy(h.value).into_owned(),
        )
    }));

    let mut request = Request::new(Method::parse(method), origin_form(target));
    let body_length = decide_body_length(&headers, minor_version, limits)?;
    let count = |name: &str| headers.iter().filter(|(n, _)| n == name).count();
    match count("host") {
        // RFC 9112 §3.2: two Host fields make the target authority ambiguous.
        n if n > 1 => {
            return Err(Rejection::new(
                400,
                "the request has more than one Host header",
            ));
        }
        // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without one.
        0 if minor_version == 1 => {
            return Err(Rejection::new(
                400,
                "an HTTP/1.1 request needs a Host header",
            ));
        }
        _ => {}
    }
    if count("authorization") > 1 {
        // SECURITY: a singleton field given twice is ambiguous; "the first one wins" may
        // not be what a proxy in front checked.
        return Err(Rejection::new(
            400,
            "the request has more than one Authorization header",
        ));
    }
    let keep_alive = wants_keep_alive(
        minor_version,
        headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .map(|(_, v)| v.as_str()),
    );
    let expect_continue = minor_version == 1
        && headers
            .iter()
            .any(|(n, v)| n == "expect" && v.trim().eq_ignore_ascii_case("100-continue"));
    request.headers = headers;
    Ok(Head {
        request,
        minor_version,
        keep_alive,
        body_length,
        expect_continue,
    })
}

/// The path and query of a target in absolute form (`http://host/users?x=1`, RFC 9112
/// §3.2.2, which a server must accept), so it is routed like `/users?x=1`; any other
/// target as it is.
fn origin_form(target: &str) -> &str {
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        target
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &target[scheme.len()..])
    });
    match rest {
        Some(rest) => match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            // No path: the origin's root, RFC 9112 §3.2.1.
            _ => "/",
        },
        None => target,
    }
}

/// RFC 9112 §6.1–6.3, strictest reading: anything a proxy in front of us might frame
/// differently is refused rather than guessed.
fn decide_body_length(
    headers: &[(String, String)],
    minor_version: u8,
    limits: &Limits,
) -> Result<BodyLength, Rejection> {
    let mut te = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .peekable();
    let mut cl = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .peekable();
    if te.peek().is_some() {
        if cl.peek().is_some() {
            return Err(Rejection::new(
                400,
                "the request has both Content-Length and Transfer-Encoding",
            ));
        }
        if minor_version == 0 {
            return Err(Rejection::new(
                400,
                "Transfer-Encoding is not allowed in an HTTP/1.0 request",
            ));
        }
        let mut codings = te.flat_map(|(_, v)| v.split(',')).map(str::trim);
        return match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case("chunked") => Ok(BodyLength::Chunked),
            _ => Err(Rejection::new(
                501,
                "only the chunked transfer coding is supported",
            )),
        };
    }
    let mut length: Option<u64> = None;
    for value in cl.flat_map(|(_, v)| v.split(',')) {
        let value = value.trim();
        let n = parse_decimal(value).ok_or_else(|| {
            Rejection::new(400, "the Content-Length header is not a valid length")
        })?;
        match length {
            Some(prev) if prev != n => {
                return Err(Rejection::new(
                    400,
                    "the request has conflicting Content-Length values",
                ));
            }
            _ => length = Some(n),
        }
    }
    Ok(match length {
        None | Some(0) => BodyLength::Empty,
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= limits.max_body_bytes => BodyLength::Fixed(n),
            _ => BodyLength::TooLarge(n),
        },
    })
}

/// `1*DIGIT` that fits in a u64; no sign, no spaces, no hex.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether the client wants the connection kept after this exchange (RFC 9112 §9.3):
/// HTTP/1.1 keeps it unless `close` is listed; HTTP/1.0 only when `keep-alive` is.
pub(crate) fn wants_keep_alive<'a>(
    minor_version: u8,
    connection_values: impl Iterator<Item = &'a str>,
) -> bool {
    let (mut close, mut keep) = (false, false);
    for token in connection_values.flat_map(|v| v.split(',')).map(str::trim) {
        close |= token.eq_ignore_ascii_case("close");
        keep |= token.eq_ignore_ascii_case("keep-alive");
    }
    !close && (minor_version >= 1 || keep)
}

/// True when the request line is well formed but names an HTTP version other than 1.x
/// (`HTTP/2.0`, `HTTP/3`), which deserves a 505 rather than a 400.
fn names_another_http_version(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let line = &buf[start..];
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if method.is_empty() || target.is_empty() {
        return false;
    }
    match version.strip_prefix(b"HTTP/") {
        Some([major]) => major.is_ascii_digit(),
        Some([major, b'.', minor]) => major.is_ascii_digit() && minor.is_ascii_digit(),
        _ => false,
    }
}

/// The inverse of parsing, for tests and tools that play the client.
impl Request {
    /// The request as an HTTP/1.1 client sends it: its body with a `Content-Length`, or
    /// chunked in pieces of `chunk` bytes.
    pub fn to_wire(&self, chunk: Option<usize>) -> Vec<u8> {
        let mut out = format!("{} {}", self.method, self.path).into_bytes();
        if let Some(query) = &self.query {
            out.push(b'?');
            out.extend_from_slice(query.as_bytes());
        }
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let body = match &self.body {
            Body::Complete(body) => body.as_slice(),
            Body::TooLarge => &[],
        };
        match chunk {
            _ if body.is_empty() => out.extend_from_slice(b"\r\n"),
            Some(size) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for part in body.chunks(size.max(1)) {
                    out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    out.extend_from_slice(part);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            None => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_bytes: 1024,
        max_headers: 8,
        max_body_bytes: 100,
    };

    fn parse(text: &str) -> Result<Head, Rejection> {
        parse_head(text.as_bytes(), &LIMITS)
    }

    fn status(text: &str) -> u16 {
        match parse(text) {
            Ok(_) => 0,
            Err(r) => r.status,
        }
    }

    #[test]
    fn head_is_split_into_path_query_and_lowercase_headers_when_valid() {
        let text = b"GET /users/7?limit=5&x=%20 HTTP/1.1\r\nHost: a\r\nX-Thing: \xff-ok\r\n\r\n";
        let head = parse_head(text, &LIMITS).unwrap();
        assert_eq!(head.request.method, Method::Get);
        assert_eq!(head.request.path, "/users/7");
        assert_eq!(head.request.query.as_deref(), Some("limit=5&x=%20"));
        assert_eq!(head.request.header("x-thing"), Some("\u{fffd}-ok"));
        assert_eq!(head.request.headers[0].0, "host");
        assert_eq!(head.minor_version, 1);
        assert!(head.keep_alive);
        assert_eq!(head.body_length, BodyLength::Empty);
    }

    #[test]
    fn head_is_accepted_when_preceded_by_empty_lines() {
        assert!(parse("\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n").is_ok());
    }

    #[test]
    fn body_length_follows_content_length_when_it_is_within_the_cap() {
        let head = parse("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n").unwrap();
        assert_eq!(head.body_length, BodyLength::Fixed(10));
        let head = parse(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n",
        );
        assert_eq!(head.unwrap().body_length, BodyLength::Fixed(7));
        let head = parse("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(head.body_length, BodyLength::Empty);
    }

    #[test]
    fn body_length_is_too_large_when_content_length_passes_the_cap() {
        let head = parse("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n").unwrap();
        assert_eq!(head.body_length, BodyLength::TooLarge(101));
        let head =
            parse("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(head.unwrap().body_length, BodyLength::TooLarge(u64::MAX));
    }

    #[test]
    fn body_length_is_chunked_when_transfer_encoding_is_exactly_chunked() {
        for te in ["chunked", "Chunked", " chunked "] {
            let head = parse(&format!(
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:{te}\r\n\r\n"
            ));
            assert_eq!(head.unwrap().body_length, BodyLength::Chunked, "{te}");
        }
    }

    #[test]
    fn head_is_refused_when_framing_is_ambiguous_or_unsupported() {
        let cases = [
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
                "CL and TE",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                400,
                "TE and CL",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
                501,
                "gzip",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
                "gzip then chunked",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                501,
                "chunked twice",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, \r\n\r\n",
                501,
                "trailing comma",
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
                "TE in 1.0",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
                400,
                "non-numeric CL",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
                400,
                "negative CL",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\n",
                400,
                "signed CL",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x10\r\n\r\n",
                400,
                "hex CL",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: \r\n\r\n",
                400,
                "empty CL",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1 2\r\n\r\n",
                400,
                "spaced CL",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                400,
                "overflowing CL",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                400,
                "conflicting CL",
            ),
            (
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\n",
                400,
                "conflicting CL list",
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                400,
                "two Host fields",
            ),
        ];
        for (text, want, what) in cases {
            assert_eq!(status(text), want, "{what}");
        }
    }

    #[test]
    fn head_is_refused_with_505_when_the_version_is_not_http1() {
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/3\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/1.2\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTX/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1.1\r\n\r\n"), 400);
    }

    #[test]
    fn head_is_refused_with_400_when_malformed() {
        let cases = [
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nNo-Colon\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nName : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n",
            "G\x01T / HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        ];
        for text in cases {
            assert_eq!(status(text), 400, "{text:?}");
        }
    }

    #[test]
    fn head_is_refused_with_431_when_it_has_too_many_fields() {
        let mut text = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
        for i in 0..9 {
            text.push_str(&format!("X-{i}: v\r\n"));
        }
        text.push_str("\r\n");
        assert_eq!(status(&text), 431);
    }

    #[test]
    fn field_limits_past_the_stacks_slots_are_kept_exactly() {
        /// A head of `n` fields (`Host` and `X-1: v1` onwards) under `max_headers`.
        fn head(n: usize, max_headers: usize) -> Result<Head, Rejection> {
            let mut text = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
            for i in 1..n {
                text.push_str(&format!("X-{i}: v{i}\r\n"));
            }
            text.push_str("\r\n");
            let limits = Limits {
                max_header_bytes: 64 * 1024,
                max_headers,
                max_body_bytes: 100,
            };
            parse_head(text.as_bytes(), &limits)
        }
        let refused = |r: Result<Head, Rejection>| r.err().map(|e| e.status);
        // Past the slots on the stack the fields go to the heap; the limit still holds.
        let past = ON_STACK + 36;
        let parsed = head(past, past).expect("at the limit");
        assert_eq!(parsed.request.headers.len(), past);
        assert_eq!(parsed.request.header("x-99"), Some("v99"));
        assert_eq!(refused(head(past + 1, past)), Some(431));
        // And at the stack's own size.
        assert_eq!(
            head(ON_STACK, ON_STACK)
                .map(|h| h.request.headers.len())
                .ok(),
            Some(ON_STACK)
        );
        assert_eq!(refused(head(ON_STACK + 1, ON_STACK)), Some(431));
    }

    #[test]
    fn expect_continue_is_noted_when_an_http11_client_sends_it() {
        let text =
            "POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
        assert!(parse(text).unwrap().expect_continue);
        let text = "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        assert!(!parse(text).unwrap().expect_continue);
    }

    #[test]
    fn keep_alive_follows_version_and_connection_tokens_when_deciding() {
        let cases: [(u8, &[&str], bool); 9] = [
            (1, &[], true),
            (1, &["close"], false),
            (1, &["Keep-Alive, CLOSE"], false),
            (1, &["keep-alive", "close"], false),
            (1, &["upgrade"], true),
            (0, &[], false),
            (0, &["keep-alive"], true),
            (0, &["Keep-Alive"], true),
            (0, &["keep-alive, close"], false),
        ];
        for (minor, values, want) in cases {
            assert_eq!(
                wants_keep_alive(minor, values.iter().copied()),
                want,
                "1.{minor} {values:?}"
            );
        }
    }

    #[test]
    fn head_is_400_when_http11_has_no_host_or_two_authorization_headers() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.0\r\n\r\n"),
            0,
            "HTTP/1.0 needs no Host"
        );
        assert_eq!(
            status(
                "GET / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer a\r\nauthorization: Bearer b\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer a\r\n\r\n"),
            0
        );
    }

    #[test]
    fn absolute_form_target_is_routed_by_its_path_and_query() {
        for (target, path, query) in [
            (
                "http://example.com/users?limit=1",
                "/users",
                Some("limit=1"),
            ),
            ("HTTPS://example.com:8443/user/7", "/user/7", None),
            ("http://example.com", "/", None),
            ("/users", "/users", None),
        ] {
            let head = parse(&format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n")).unwrap();
            assert_eq!(head.request.path, path, "{target}");
            assert_eq!(head.request.query.as_deref(), query, "{target}");
        }
    }
}
