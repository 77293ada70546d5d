//! The per-connection request reader: turns the bytes a client has sent so far into
//! complete requests, one at a time, without touching a socket.
//!
//! The reactor appends what it reads to the connection's buffer and calls
//! [`Reader::advance`]; the reader consumes what it can and says what happens next. Keeping
//! it free of I/O makes every framing rule unit- and property-testable.

use std::mem;

use crate::http::{Body, Method, Request};

use super::chunked::{self, Decoder};
use super::parse::{self, BodyLength, Head, Limits, Rejection};

/// What the connection should do next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Every buffered byte is used; read more from the client.
    NeedMore,
    /// A head with a body is complete and nothing of the body is read yet: the
    /// connection may refuse it from the head alone ([`Reader::pending_request`]), or
    /// let it be read with [`Reader::allow_body`].
    CheckHead,
    /// A complete request, consumed from the buffer.
    Ready(Box<Ready>),
    /// Refuse the request with this error and close the connection.
    Reject(Rejection),
}

/// A complete request and how its response is to be framed.
#[derive(Debug)]
pub(crate) struct Ready {
    pub request: Request,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// The response gets `Connection: keep-alive`, as HTTP/1.0 needs to keep it.
    pub announce_keep_alive: bool,
    pub head_only: bool,
    /// Bytes of a too-large declared body still to come from the client: read and
    /// discarded after the answer (up to a bound), so closing does not reset the
    /// connection under a client, or a proxy, that is still sending it.
    pub unread_body: u64,
}

/// Where the reader is within the current request; decides which timeout applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Between requests, nothing buffered.
    Idle,
    /// Some of a head has arrived.
    Head,
    /// The head is complete and the body is being read.
    Body,
}

#[derive(Debug)]
enum State {
    /// Looking for the end of a head; bytes before `scanned` hold no empty line.
    Head { scanned: usize },
    /// Reading the body of an accepted head.
    Body(Box<BodyState>),
}

#[derive(Debug)]
struct BodyState {
    head: Head,
    body: Vec<u8>,
    kind: BodyKind,
    /// The head was checked and the body may be read.
    allowed: bool,
}

#[derive(Debug)]
enum BodyKind {
    Length { left: usize },
    Chunked(Decoder),
}

#[derive(Debug)]
pub(crate) struct Reader {
    state: State,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            state: State::Head { scanned: 0 },
        }
    }
}

impl Reader {
    pub(crate) fn phase(&self, buf: &[u8]) -> Phase {
        match self.state {
            State::Head { .. } if buf.is_empty() => Phase::Idle,
            State::Head { .. } => Phase::Head,
            State::Body(_) => Phase::Body,
        }
    }

    /// The method of the request whose body is being read, if any: a HEAD request that
    /// times out in its body still gets a bodiless 408.
    pub(crate) fn pending_method(&self) -> Option<&Method> {
        match &self.state {
            State::Body(b) => Some(&b.head.request.method),
            State::Head { .. } => None,
        }
    }

    /// The request whose head is complete and whose body is being read (or waits for
    /// [`allow_body`](Self::allow_body)); its body is still empty.
    pub(crate) fn pending_request(&self) -> Option<&Request> {
        match &self.state {
            State::Body(b) => Some(&b.head.request),
            State::Head { .. } => None,
        }
    }

    /// As [`pending_request`](Self::pending_request), to put the handler's note on it.
    pub(crate) fn pending_request_mut(&mut self) -> Option<&mut Request> {
        match &mut self.state {
            State::Body(b) => Some(&mut b.head.request),
            State::Head { .. } => None,
        }
    }

    /// The most body bytes the pending request may still need: what a read should
    /// take at most, and what a body in progress may come to hold.
    pub(crate) fn body_bound(&self, max_body_bytes: usize) -> usize {
        match &self.state {
            State::Body(b) => match b.kind {
                BodyKind::Length { left } => left,
                BodyKind::Chunked(_) => max_body_bytes,
            },
            State::Head { .. } => 0,
        }
    }

    /// Lets the body of the pending request be read, after [`Step::CheckHead`]. Returns
    /// whether to send `100 Continue` first: only when the client asked for it and has
    /// not started sending the body anyway (`buf` holds what arrived after the head).
    pub(crate) fn allow_body(&mut self, buf: &[u8]) -> bool {
        match &mut self.state {
            State::Body(b) if !b.allowed => {
                b.allowed = true;
                b.head.expect_continue && buf.is_empty()
            }
            _ => false,
        }
    }

    /// Consumes what it can from the front of `buf`.
    pub(crate) fn advance(&mut self, buf: &mut Vec<u8>, limits: &Limits) -> Step {
        match &mut self.state {
            State::Head { scanned } => {
                let Some(end) = find_head_end(buf, scanned) else {
                    return if buf.len() > limits.max_header_bytes {
                        Step::Reject(head_too_large(buf, limits))
                    } else {
                        Step::NeedMore
                    };
                };
                if end > limits.max_header_bytes {
                    return Step::Reject(head_too_large(buf, limits));
                }
                let head = match parse::parse_head(&buf[..end], limits) {
                    Ok(head) => head,
                    Err(rejection) => return Step::Reject(rejection),
                };
                buf.drain(..end);
                self.start_body(head, buf, limits)
            }
            State::Body(b) if !b.allowed => Step::CheckHead,
            State::Body(_) => self.advance_body(buf, limits.max_body_bytes),
        }
    }

    /// Moves buffered body bytes into the body being read.
    fn advance_body(&mut self, buf: &mut Vec<u8>, cap: usize) -> Step {
        // Taken out and put back unless finished: the box moves, the body does not.
        let mut state = match mem::replace(&mut self.state, State::Head { scanned: 0 }) {
            State::Body(state) => state,
            head @ State::Head { .. } => {
                self.state = head;
                return Step::NeedMore;
            }
        };
        let body = match &mut state.kind {
            BodyKind::Length { left } => {
                let take = (*left).min(buf.len());
                state.body.extend(buf.drain(..take));
                *left -= take;
                (*left == 0).then(|| Body::Complete(mem::take(&mut state.body)))
            }
            BodyKind::Chunked(decoder) => {
                let (used, progress) = decoder.decode(buf, &mut state.body, cap);
                buf.drain(..used);
                match progress {
                    chunked::Progress::NeedMore => None,
                    chunked::Progress::Done => Some(Body::Complete(mem::take(&mut state.body))),
                    chunked::Progress::TooLarge => Some(Body::TooLarge),
                    chunked::Progress::Invalid => {
                        return Step::Reject(Rejection::new(
                            400,
                            "the chunked request body is malformed",
                        ));
                    }
                }
            }
        };
        match body {
            Some(body) => Step::Ready(Box::new(ready(state.head, body))),
            None => {
                self.state = State::Body(state);
                Step::NeedMore
            }
        }
    }

    /// After a complete head: deliver at once, or wait for the body to be allowed.
    fn start_body(&mut self, head: Head, buf: &[u8], limits: &Limits) -> Step {
        self.state = State::Head { scanned: 0 };
        let kind = match head.body_length {
            BodyLength::Empty => return Step::Ready(Box::new(ready(head, Body::Complete(vec![])))),
            // Not a byte of it is read: the handler decides the status (auth comes first),
            // and the connection closes after the response.
            BodyLength::TooLarge(declared) => {
                // What is buffered already belongs to that body and goes with the buffer.
                let buffered = u64::try_from(buf.len()).unwrap_or(u64::MAX);
                let mut ready = ready(head, Body::TooLarge);
                ready.unread_body = declared.saturating_sub(buffered);
                return Step::Ready(Box::new(ready));
            }
            BodyLength::Fixed(n) => BodyKind::Length { left: n },
            BodyLength::Chunked => BodyKind::Chunked(Decoder::new(limits.max_header_bytes)),
        };
        self.state = State::Body(Box::new(BodyState {
            head,
            // Grown as bytes arrive, so a client that declares a large body and sends
            // nothing holds no memory for it.
            body: Vec::new(),
            kind,
            allowed: false,
        }));
        // SECURITY: not a byte of the body is taken, nor `100 Continue` sent, before the
        // connection has had its say on the head (authentication, room for the body).
        Step::CheckHead
    }
}

fn ready(head: Head, body: Body) -> Ready {
    // A body left unread (or read only in part) leaves the connection out of sync.
    let keep_alive = head.keep_alive && body != Body::TooLarge;
    let head_only = head.request.method == Method::Head;
    let announce_keep_alive = keep_alive && head.minor_version == 0;
    let mut request = head.request;
    request.body = body;
    Ready {
        request,
        keep_alive,
        announce_keep_alive,
        head_only,
        unread_body: 0,
    }
}

fn head_too_large(buf: &[u8], limits: &Limits) -> Rejection {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line_end = buf[start..].iter().position(|&b| b == b'\n');
    if line_end.is_some_and(|end| end <= limits.max_header_bytes) {
        Rejection::new(
            431,
            format!(
                "the request head is larger than {} bytes",
                limits.max_header_bytes
            ),
        )
    } else {
        // The request line alone is over the limit, which in practice is the target.
        Rejection::new(
            414,
            format!(
                "the request target is longer than {} bytes",
                limits.max_header_bytes
            ),
        )
    }
}

/// The index just past the empty line that ends the head, scanning only bytes not seen
/// before so a head trickling in byte by byte costs linear time. Empty lines before the
/// request line are skipped, as RFC 9112 §2.2 allows.
fn find_head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    let mut i = *scanned;
    // Empty lines before the request line belong to no head.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    while i < buf.len() {
        if buf[i] == b'\n' && i > start {
            // The line ending here is empty when the previous line ended just before it.
            let before = if i >= 1 && buf[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            if before > start && buf[before - 1] == b'\n' {
                *scanned = i + 1;
                return Some(i + 1);
            }
        }
        i += 1;
    }
    *scanned = i;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_header_bytes: 256,
        max_headers: 8,
        max_body_bytes: 32,
    };

    /// Feeds `chunks` one after the other and collects every step but `NeedMore`.
    fn feed(chunks: &[&[u8]]) -> (Vec<Step>, Vec<u8>) {
        let mut reader = Reader::default();
        let mut buf = Vec::new();
        let mut steps = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match reader.advance(&mut buf, &LIMITS) {
                    Step::NeedMore => break,
                    // Recorded only when a `100 Continue` is to be sent.
                    Step::CheckHead => {
                        if reader.allow_body(&buf) {
                            steps.push(Step::CheckHead);
                        }
                    }
                    step @ Step::Reject(_) => {
                        steps.push(step);
                        return (steps, buf);
                    }
                    step => steps.push(step),
                }
            }
        }
        (steps, buf)
    }

    fn ready(step: &Step) -> &Ready {
        match step {
            Step::Ready(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn status(step: &Step) -> u16 {
        match step {
            Step::Reject(r) => r.status,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn requests_come_out_in_order_when_pipelined_in_one_buffer() {
        let input = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nPOST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nHost: t\r\n\r\n";
        let (steps, rest) = feed(&[input]);
        let paths: Vec<_> = steps
            .iter()
            .map(|s| ready(s).request.path.clone())
            .collect();
        assert_eq!(paths, ["/a", "/b", "/c"]);
        assert_eq!(
            ready(&steps[1]).request.body,
            Body::Complete(b"xyz".to_vec())
        );
        assert!(rest.is_empty());
    }

    #[test]
    fn request_is_complete_when_it_arrives_one_byte_at_a_time() {
        let input =
            b"POST /x?q=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let (steps, _) = feed(&chunks);
        assert_eq!(steps.len(), 1);
        let r = ready(&steps[0]);
        assert_eq!(r.request.query.as_deref(), Some("q=1"));
        assert_eq!(r.request.body, Body::Complete(b"abc".to_vec()));
        assert!(r.keep_alive);
    }

    #[test]
    fn head_is_found_when_lines_end_in_bare_lf() {
        let (steps, _) = feed(&[b"GET / HTTP/1.1\nHost: a\n\n"]);
        assert_eq!(ready(&steps[0]).request.header("host"), Some("a"));
    }

    #[test]
    fn empty_lines_before_a_request_are_skipped_when_split_anywhere() {
        let (steps, _) = feed(&[b"\r\n", b"\r", b"\nGET / HTTP/1.1\r\nHost: t\r\n", b"\r\n"]);
        assert_eq!(steps.len(), 1);
        ready(&steps[0]);
    }

    #[test]
    fn body_is_too_large_and_connection_closes_when_content_length_passes_the_cap() {
        let (steps, _) = feed(&[b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 33\r\n\r\n"]);
        let r = ready(&steps[0]);
        assert_eq!(r.request.body, Body::TooLarge);
        assert!(!r.keep_alive);
        assert_eq!(r.unread_body, 33);
        let (steps, _) =
            feed(&[b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n0123456789"]);
        assert_eq!(
            ready(&steps[0]).unread_body,
            30,
            "what came with the head is counted"
        );
    }

    #[test]
    fn body_is_too_large_when_chunks_pass_the_cap() {
        let chunk = format!("20\r\n{}\r\n1\r\nx\r\n", "a".repeat(32));
        let (steps, _) = feed(&[
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunk.as_bytes(),
        ]);
        let r = ready(&steps[0]);
        assert_eq!(r.request.body, Body::TooLarge);
        assert!(!r.keep_alive);
    }

    #[test]
    fn continue_is_asked_for_when_the_body_will_be_read_and_not_sent_yet() {
        let head =
            b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let (steps, _) = feed(&[head, b"hi"]);
        assert!(matches!(steps[0], Step::CheckHead), "100 Continue first");
        assert_eq!(
            ready(&steps[1]).request.body,
            Body::Complete(b"hi".to_vec())
        );

        let (steps, _) = feed(&[&[head.as_slice(), b"hi"].concat()]);
        assert_eq!(steps.len(), 1, "the body came with the head: no 100");

        let big =
            b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 999\r\n\r\n";
        let (steps, _) = feed(&[big]);
        assert_eq!(steps.len(), 1);
        assert_eq!(ready(&steps[0]).request.body, Body::TooLarge);
    }

    #[test]
    fn head_is_refused_with_431_or_414_when_it_passes_the_byte_limit() {
        let long_header = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
            "a".repeat(300)
        );
        assert_eq!(status(&feed(&[long_header.as_bytes()]).0[0]), 431);
        let unfinished = format!("GET / HTTP/1.1\r\nHost: t\r\nX: {}", "a".repeat(300));
        assert_eq!(status(&feed(&[unfinished.as_bytes()]).0[0]), 431);
        let long_target = format!("GET /{}", "a".repeat(300));
        assert_eq!(status(&feed(&[long_target.as_bytes()]).0[0]), 414);
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(300));
        assert_eq!(status(&feed(&[long_line.as_bytes()]).0[0]), 414);
    }

    #[test]
    fn http10_keeps_alive_only_when_asked_and_then_announces_it() {
        let (steps, _) = feed(&[b"GET / HTTP/1.0\r\n\r\n"]);
        assert!(!ready(&steps[0]).keep_alive);
        let (steps, _) = feed(&[b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
        let r = ready(&steps[0]);
        assert!(r.keep_alive && r.announce_keep_alive);
        let (steps, _) = feed(&[b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"]);
        assert!(!ready(&steps[0]).keep_alive);
    }

    #[test]
    fn phase_tracks_idle_head_and_body_when_bytes_arrive() {
        let mut reader = Reader::default();
        let mut buf = Vec::new();
        assert_eq!(reader.phase(&buf), Phase::Idle);
        buf.extend_from_slice(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n");
        assert!(matches!(reader.advance(&mut buf, &LIMITS), Step::NeedMore));
        assert_eq!(reader.phase(&buf), Phase::Head);
        buf.extend_from_slice(b"\r\n");
        assert!(matches!(reader.advance(&mut buf, &LIMITS), Step::CheckHead));
        assert_eq!(reader.phase(&buf), Phase::Body);
        assert!(matches!(reader.advance(&mut buf, &LIMITS), Step::CheckHead));
        assert!(!reader.allow_body(&buf));
        assert!(matches!(reader.advance(&mut buf, &LIMITS), Step::NeedMore));
        assert_eq!(reader.pending_method(), Some(&Method::Post));
    }

    fn valid_request() -> impl Strategy<Value = (Vec<u8>, String)> {
        let method = prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("DELETE")];
        let path = "/[a-z0-9/]{0,12}";
        // Within LIMITS.max_body_bytes: these are requests the reader must deliver whole.
        let body = proptest::collection::vec(any::<u8>(), 0..=32);
        (method, path, body, any::<bool>()).prop_map(|(method, path, body, chunked)| {
            let request = Request::new(Method::parse(method), &path)
                .with_header("Host", "t")
                .with_body(body);
            (request.to_wire(chunked.then_some(7)), path)
        })
    }

    #[test]
    fn request_read_back_from_its_wire_form_is_the_same_when_chunked_or_not() {
        let sent = Request::new(Method::Post, "/a/b?x=1&y")
            .with_header("Host", "t")
            .with_header("X-Id", "7")
            .with_body(b"0123456789".to_vec());
        for chunk in [None, Some(1), Some(3), Some(100)] {
            let wire = sent.to_wire(chunk);
            let (steps, rest) = feed(&[&wire]);
            assert!(rest.is_empty(), "{chunk:?}");
            let got = &ready(&steps[0]).request;
            assert_eq!(
                (&got.method, &got.path, &got.query),
                (&sent.method, &sent.path, &sent.query)
            );
            assert_eq!(got.header("x-id"), Some("7"), "{chunk:?}");
            assert_eq!(got.body, sent.body, "{chunk:?}");
        }
    }

    proptest! {
        #[test]
        fn reader_never_panics_when_fed_arbitrary_bytes_in_arbitrary_pieces(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut from = 0;
            let pieces: Vec<&[u8]> = cuts.iter().map(|&to| { let p = &bytes[from..to]; from = to; p }).collect();
            let (steps, rest) = feed(&pieces);
            prop_assert!(rest.len() <= bytes.len());
            prop_assert!(steps.len() <= bytes.len());
        }

        #[test]
        fn reader_never_panics_when_fed_mutated_requests(
            (request, _) in valid_request(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = request;
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let _ = feed(&[&bytes]);
        }

        #[test]
        fn reader_yields_exactly_n_requests_when_given_n_pipelined_ones(
            requests in proptest::collection::vec(valid_request(), 1..6),
            piece in 1usize..64,
        ) {
            let stream: Vec<u8> = requests.iter().flat_map(|(r, _)| r.clone()).collect();
            let pieces: Vec<&[u8]> = stream.chunks(piece).collect();
            let (steps, rest) = feed(&pieces);
            let paths: Vec<String> = steps
                .iter()
                .filter_map(|s| match s { Step::Ready(r) => Some(r.request.path.clone()), _ => None })
                .collect();
            let want: Vec<String> = requests.iter().map(|(_, p)| p.clone()).collect();
            prop_assert_eq!(paths, want);
            prop_assert!(rest.is_empty());
        }
    }

    #[test]
    fn body_is_not_taken_until_allowed_when_the_head_is_complete() {
        let mut reader = Reader::default();
        let mut buf = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        assert!(matches!(reader.advance(&mut buf, &LIMITS), Step::CheckHead));
        assert_eq!(buf, b"abc", "the body stays in the buffer");
        assert_eq!(reader.pending_request().map(|r| r.path.as_str()), Some("/"));
        assert_eq!(reader.body_bound(32), 3);
        assert!(!reader.allow_body(&buf), "body bytes came: no 100 Continue");
        let step = reader.advance(&mut buf, &LIMITS);
        assert_eq!(ready(&step).request.body, Body::Complete(b"abc".to_vec()));
    }
}
