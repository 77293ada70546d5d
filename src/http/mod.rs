//! The HTTP boundary: our own request and response types and the `Handler` trait.
//!
//! Handlers, the router and the tests see only these types. What sits underneath (the
//! connection layer that reads sockets and writes bytes) can be swapped without touching
//! them.

pub mod body;
pub mod client_addr;
pub mod https;
pub mod idempotency_key;
pub mod precondition;
pub mod query;
pub mod rejection;
pub mod request_id;
pub mod server;

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

pub use rejection::Rejection;

/// Seconds a client is asked to wait (`Retry-After`) after a 503, or a 409 for a request
/// still in progress.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A request method. Anything we do not route is kept as `Other` so a 405 can name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other(String),
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body as the connection layer delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// The complete body (empty when the request had none).
    Complete(Vec<u8>),
    /// The declared or received length passed `MAX_BODY_BYTES`; the rest was never read.
    TooLarge,
}

/// A complete request, as handed to a [`Handler`].
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    /// The path part of the target, without the query string, not percent-decoded.
    pub path: String,
    /// The raw query string after `?`, if there was one.
    pub query: Option<String>,
    /// Header names in lower case, values as sent (invalid UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// The TCP peer; `None` only for requests built in tests.
    pub peer: Option<SocketAddr>,
    /// What the handler made of the head ([`Handler::note`]), once the connection layer
    /// has asked; `None` before, and for requests built in tests.
    pub note: Option<Note>,
    /// When the connection layer took up the complete request (a pipelined one: once the
    /// one before it was answered), before it waited for a worker. A request's time is
    /// counted from here, so that a queue growing under load shows in its latency.
    /// `None` for requests built in tests.
    pub received: Option<Instant>,
}

/// A handler's own note about a request, made once from its head ([`Handler::note`]) on
/// the connection layer's thread and carried with the request to every later call, so
/// the handler need not work it out again (the application keeps its route in it).
/// Opaque to this layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note(pub u64);

impl Request {
    /// A request with no headers and no body, for tests and internal use.
    pub fn new(method: Method, target: &str) -> Request {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        Request {
            method,
            path,
            query,
            headers: Vec::new(),
            body: Body::Complete(Vec::new()),
            peer: None,
            note: None,
            received: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Body::Complete(body.into());
        self
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

/// The first value of the header `name` (case-insensitive) among `headers`: requests and
/// responses keep their headers alike but for who owns the names.
fn first_header<'a>(headers: &'a [(impl AsRef<str>, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response as plain data. The connection layer adds `Content-Length`, `Date`,
/// `Server` and `Connection`, and leaves the body out for HEAD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response from bytes already serialised, ending in a newline as JSON APIs
    /// meant for curl do (else the shell prompt runs on after the body). The connection
    /// layer counts `Content-Length` from the body, newline included.
    pub fn json_bytes(status: u16, mut body: Vec<u8>) -> Response {
        if body.last() != Some(&b'\n') {
            body.push(b'\n');
        }
        Response::new(status)
            .with_header("Content-Type", "application/json")
            .with_body(body)
    }

    /// `{"error": message}` with the given status: the shape of every error in API.md.
    /// The connection layer's own answers (408, 413, 431, 503, a handler's panic) use it,
    /// and so they end in a newline like every other JSON body.
    pub fn error(status: u16, message: &str) -> Response {
        let body = serde_json::to_vec(&serde_json::json!({ "error": message }))
            .unwrap_or_else(|_| b"{\"error\":\"error\"}".to_vec());
        Response::json_bytes(status, body)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

/// The standard reason phrase for the statuses this service sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// An answer the connection layer gave by itself, without the handler: a malformed or
/// oversized head, a timeout, a full queue or a connection cap.
#[derive(Clone, Copy, Debug)]
pub struct Refusal<'a> {
    pub status: u16,
    pub peer: SocketAddr,
    /// The request's method and path, when its head was read.
    pub request: Option<&'a Request>,
}

/// What the connection layer calls for every complete request. The whole application is
/// one of these.
///
/// The layer gives every request a sane `X-Request-Id` (the client's, or a fresh one)
/// before `handle` sees it, and catches a panic in `handle`, once per request: it logs
/// it with that id and answers 500, and the thread goes on. A handler that counts or
/// logs its requests does so for a panicking one while it unwinds. The other methods
/// run on the layer's own thread and must not panic.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Response;

    /// Called once per request, on the connection layer's thread, as soon as its head is
    /// read and before any other call for it: what it returns is kept in `req.note` for
    /// `refuse_head`, `is_immediate`, `refused` and `handle`. Must not wait on anything.
    fn note(&self, _req: &Request) -> Option<Note> {
        None
    }

    /// Whether `req` can be answered at once, without waiting on anything (no database,
    /// no lock held for long). The connection layer then answers it on its own thread
    /// instead of queueing it for a worker, so that a liveness probe answers even while
    /// every worker waits on a database that hangs.
    fn is_immediate(&self, _req: &Request) -> bool {
        false
    }

    /// Answers a request from its head alone, before its body is read or `100 Continue`
    /// is sent: `Some` refuses it (authentication, say), and the body is never read for
    /// anyone. `req` has an empty body. Called on the connection layer's own thread, so
    /// it must not wait on anything.
    fn refuse_head(&self, _req: &Request) -> Option<Response> {
        None
    }

    /// Told of every answer the connection layer gave by itself, so that it is counted
    /// and logged like the handler's own. Called on the layer's thread: must not wait.
    fn refused(&self, _refusal: &Refusal<'_>) {}
}

impl<F> Handler for F
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: Request) -> Response {
        self(req)
    }
}

#[cfg(test)]
mod tests {
    use super::Response;

    #[test]
    fn json_bodies_end_with_exactly_one_newline() {
        assert_eq!(Response::json_bytes(200, b"{}".to_vec()).body, b"{}\n");
        assert_eq!(Response::json_bytes(200, b"{}\n".to_vec()).body, b"{}\n");
    }
}
