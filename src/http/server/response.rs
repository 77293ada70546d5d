//! Serialising a [`Response`] into the bytes of one HTTP/1.1 response, head and body in
//! one buffer so it leaves in one `write`.
//!
//! The connection layer owns the framing: `Content-Length`, `Connection`,
//! `Transfer-Encoding`, `Date` and `Server` are always ours, whatever a handler set.

use crate::http::{Response, reason, request_id};
use crate::short_copy::extend;

use super::date;

/// How the response is framed on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Framing {
    /// A HEAD request: send the head the GET would have had, without the body.
    pub head_only: bool,
    /// The connection closes after this response: say so with `Connection: close`.
    pub close: bool,
    /// An HTTP/1.0 client asked for keep-alive and gets it: say so, since 1.0 closes by
    /// default.
    pub announce_keep_alive: bool,
}

impl Framing {
    /// An error the layer writes itself before closing the connection.
    pub(crate) const CLOSE: Framing = Framing {
        head_only: false,
        close: true,
        announce_keep_alive: false,
    };
}

/// Header names the layer writes itself; a handler's own copies are dropped.
const OWNED: [&str; 6] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "date",
    "server",
    "keep-alive",
];

/// Appends the serialised response to `out`.
pub(crate) fn append(out: &mut Vec<u8>, resp: &Response, framing: Framing) {
    let send_body = sends_body(resp.status, framing);
    out.reserve(160 + resp.headers.len() * 48 + if send_body { resp.body.len() } else { 0 });
    append_head(out, resp, resp.body.len(), framing);
    if send_body {
        out.extend_from_slice(&resp.body);
    }
}

/// Bodies this long are not copied into the connection's buffer (see [`append_owned`]).
const BODY_KEPT_IN_PLACE: usize = 4 * 1024;

/// As [`append`], taking the response. When nothing is queued before it and its body is
/// large (a page of users), the head goes in front of the body inside the body's own
/// buffer, which then becomes `out`: the body is not allocated a second time and copied
/// over, only moved up by the head's length within its spare capacity.
pub(crate) fn append_owned(out: &mut Vec<u8>, mut resp: Response, framing: Framing) {
    if !out.is_empty() || resp.body.len() < BODY_KEPT_IN_PLACE || !sends_body(resp.status, framing)
    {
        return append(out, &resp, framing);
    }
    let mut body = std::mem::take(&mut resp.body);
    let mut head = Vec::with_capacity(160 + resp.headers.len() * 48);
    append_head(&mut head, &resp, body.len(), framing);
    body.splice(0..0, head);
    *out = body;
}

/// 1xx, 204 and 304 never carry a body (RFC 9112 §6.3), and a HEAD's answer sends none.
fn sends_body(status: u16, framing: Framing) -> bool {
    !is_bodiless(status) && !framing.head_only
}

fn is_bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// The status line and headers, through the blank line; `body_len` is what
/// `Content-Length` says (also when the body is not sent, as for HEAD).
fn append_head(out: &mut Vec<u8>, resp: &Response, body_len: usize, framing: Framing) {
    let status = resp.status;
    // Bodiless statuses get no length either.
    let bodiless = is_bodiless(status);
    let mut len_buf = itoa_buf();
    let len_text = format_usize(body_len, &mut len_buf);

    out.extend_from_slice(b"HTTP/1.1 ");
    let mut status_buf = itoa_buf();
    extend(out, format_usize(usize::from(status), &mut status_buf));
    out.push(b' ');
    extend(out, reason(status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    date::append_now(out);
    out.extend_from_slice(b"\r\nServer: user-api\r\n");
    for (name, value) in &resp.headers {
        if OWNED.iter().any(|o| name.eq_ignore_ascii_case(o)) {
            continue;
        }
        if !is_safe_header(name, value) {
            // A CR or LF here would let a value that echoes client input split the
            // response; dropping the header is safer than sending it.
            log::warn!("dropping response header {name:?}: invalid name or value");
            continue;
        }
        extend(out, name.as_bytes());
        out.extend_from_slice(b": ");
        extend(out, value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !bodiless {
        out.extend_from_slice(b"Content-Length: ");
        extend(out, len_text);
        out.extend_from_slice(b"\r\n");
    }
    if framing.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.announce_keep_alive {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The interim response to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// An error the layer answers by itself: API.md's JSON body plus a fresh request id.
pub(crate) fn layer_error(status: u16, message: &str) -> Response {
    let resp = Response::error(status, message).with_header("X-Request-Id", request_id::fresh());
    if status == 503 {
        resp.with_header("Retry-After", crate::http::RETRY_AFTER_SECS.to_string())
    } else {
        resp
    }
}

fn is_safe_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(is_token_byte)
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn format_usize(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Framing = Framing {
        head_only: false,
        close: false,
        announce_keep_alive: false,
    };

    fn render(resp: &Response, framing: Framing) -> String {
        let mut out = Vec::new();
        append(&mut out, resp, framing);
        String::from_utf8(out).unwrap()
    }

    fn header_lines(text: &str) -> Vec<&str> {
        let head = text.split("\r\n\r\n").next().unwrap();
        head.split("\r\n").skip(1).collect()
    }

    /// The same bytes but for `Date`, which may tick between two renderings.
    fn without_date(bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        text.split("\r\n")
            .filter(|l| !l.starts_with("Date: "))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    #[test]
    fn an_owned_response_is_written_byte_for_byte_as_a_borrowed_one() {
        let head_only = Framing {
            head_only: true,
            ..KEEP
        };
        for len in [0, 10, BODY_KEPT_IN_PLACE - 1, BODY_KEPT_IN_PLACE, 100_000] {
            for status in [200, 204, 404] {
                for framing in [KEEP, Framing::CLOSE, head_only] {
                    for queued in [&b""[..], b"HTTP/1.1 200 OK\r\n\r\n"] {
                        let resp = Response::new(status)
                            .with_header("Content-Type", "application/json")
                            .with_body(vec![b'x'; len]);
                        let mut borrowed = queued.to_vec();
                        append(&mut borrowed, &resp, framing);
                        let mut owned = queued.to_vec();
                        append_owned(&mut owned, resp, framing);
                        assert_eq!(
                            without_date(&owned),
                            without_date(&borrowed),
                            "{len} bytes, {status}, {framing:?}, {} queued",
                            queued.len()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_large_body_becomes_the_connections_buffer_instead_of_being_copied_into_it() {
        let mut body = Vec::with_capacity(20_000);
        body.resize(16_000, b'x');
        let at = body.as_ptr();
        let mut out = Vec::new();
        append_owned(&mut out, Response::new(200).with_body(body), KEEP);
        assert_eq!(out.as_ptr(), at);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(out.ends_with(&[b'x'; 16_000]));
    }

    #[test]
    fn response_has_status_date_server_and_length_when_plain() {
        let text = render(&Response::new(200).with_body(b"hello".to_vec()), KEEP);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
        let lines = header_lines(&text);
        assert!(lines.contains(&"Server: user-api"));
        assert!(lines.contains(&"Content-Length: 5"));
        assert!(!lines.iter().any(|l| l.starts_with("Connection")));
        assert!(text.ends_with("\r\n\r\nhello"));
    }

    #[test]
    fn response_keeps_length_but_drops_body_when_head_only() {
        let framing = Framing {
            head_only: true,
            ..KEEP
        };
        let text = render(&Response::new(200).with_body(b"hello".to_vec()), framing);
        assert!(header_lines(&text).contains(&"Content-Length: 5"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn response_has_no_length_or_body_when_status_is_204_or_304() {
        for status in [204, 304] {
            let text = render(&Response::new(status).with_body(b"x".to_vec()), KEEP);
            assert!(!text.contains("Content-Length"), "{text}");
            assert!(text.ends_with("\r\n\r\n"), "{text}");
        }
    }

    #[test]
    fn response_ignores_framing_headers_when_the_handler_sets_them() {
        let resp = Response::new(200)
            .with_header("Content-Length", "999")
            .with_header("connection", "keep-alive")
            .with_header("Transfer-Encoding", "chunked")
            .with_header("Server", "evil")
            .with_header("X-Kept", "yes")
            .with_body(b"ab".to_vec());
        let text = render(&resp, Framing::CLOSE);
        let lines = header_lines(&text);
        assert!(lines.contains(&"Content-Length: 2"));
        assert!(lines.contains(&"Connection: close"));
        assert!(lines.contains(&"X-Kept: yes"));
        assert_eq!(lines.iter().filter(|l| l.starts_with("Server")).count(), 1);
        assert!(!text.contains("999") && !text.contains("chunked") && !text.contains("evil"));
    }

    #[test]
    fn response_drops_a_header_when_its_value_contains_a_newline() {
        let resp = Response::new(200).with_header("X-Bad", "a\r\nSet-Cookie: x=1");
        let text = render(&resp, KEEP);
        assert!(!text.contains("Set-Cookie"), "{text}");
    }

    #[test]
    fn response_announces_keep_alive_when_an_http10_client_keeps_it() {
        let framing = Framing {
            announce_keep_alive: true,
            ..KEEP
        };
        let text = render(&Response::new(200), framing);
        assert!(header_lines(&text).contains(&"Connection: keep-alive"));
    }

    #[test]
    fn layer_error_is_json_with_request_id_and_retry_after_when_503() {
        let resp = layer_error(503, "busy");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.header("retry-after"), Some("1"));
        assert!(resp.header("x-request-id").is_some());
        assert_eq!(resp.body, b"{\"error\":\"busy\"}\n");
        assert!(layer_error(408, "slow").header("retry-after").is_none());
    }

    #[test]
    fn format_usize_writes_digits_when_given_edges() {
        let mut buf = itoa_buf();
        assert_eq!(format_usize(0, &mut buf), b"0");
        assert_eq!(format_usize(65_536, &mut buf), b"65536");
        assert_eq!(
            format_usize(usize::MAX, &mut buf),
            usize::MAX.to_string().as_bytes()
        );
    }
}
