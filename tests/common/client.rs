//! A small blocking HTTP/1.1 client over `TcpStream`, written for the tests.
//!
//! It sends exactly what it is told (plus `Host` and `Content-Length`), treats every
//! status as data, frames bodies by `Content-Length` or chunked encoding (or the end of
//! the stream), reads no body for HEAD, 1xx, 204 and 304, and can reuse one connection
//! for several requests. A response cut off anywhere (in its head or its body) is an
//! `UnexpectedEof` error, never a shorter response, and the connection counts the bytes
//! that arrived, so a test can tell a cut-off response from one that never started.
//!
//! The one HTTP client of the test binaries: the API tests use it through `TestApp`, the
//! chaos tests wrap it in a keep-alive client that classifies failures, the
//! connection-layer tests drive it with raw bytes, and [`read_response_from`] parses a
//! response out of any buffered reader (a socket of their own, bytes already read).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// With `TEST_HTTPS=1` every app a test spawns serves HTTPS with this certificate (DER),
/// and every connection of this client speaks TLS trusting it: the API suite run over
/// HTTPS without changing a test.
pub static HTTPS_TRUST: OnceLock<Vec<u8>> = OnceLock::new();

/// The client's transport: plain TCP, or TLS when [`HTTPS_TRUST`] is set.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    fn over(tcp: TcpStream) -> io::Result<Stream> {
        let Some(der) = HTTPS_TRUST.get() else {
            return Ok(Stream::Plain(tcp));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(io::Error::other)?;
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        let conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

/// The transport and a count of the response bytes read since the last request.
struct Counted {
    stream: Stream,
    received: usize,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.received += n;
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// A response as plain data. Header names are lower case.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the status and body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the {} response body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts this is one of the connection layer's own errors (docs/API.md): `status`,
    /// a JSON body with an `error` that ends in a newline, a request id, and a close.
    pub fn assert_layer_error(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert!(self.header("x-request-id").is_some(), "{self:?}");
        assert_eq!(self.header("connection"), Some("close"), "{self:?}");
        assert!(self.json()["error"].is_string(), "{self:?}");
        assert_eq!(self.body.last(), Some(&b'\n'), "{self:?}");
    }

    /// Whether the server said it will close the connection.
    pub fn closes_connection(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// One client connection; requests on it are sent one after another (keep-alive).
pub struct HttpConnection {
    reader: BufReader<Counted>,
    host: String,
}

impl HttpConnection {
    /// Connects within 10 s; each read or write may then block for up to 30 s.
    pub fn open(addr: SocketAddr) -> io::Result<HttpConnection> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        HttpConnection::over(stream)
    }

    /// Connects, and then reads and writes, each within `timeout`.
    pub fn open_within(addr: SocketAddr, timeout: Duration) -> io::Result<HttpConnection> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        HttpConnection::over(stream)
    }

    /// A connection over a socket connected elsewhere (from another local address, say),
    /// keeping its timeouts.
    pub fn over(stream: TcpStream) -> io::Result<HttpConnection> {
        stream.set_nodelay(true)?;
        let host = stream.peer_addr()?.to_string();
        Ok(HttpConnection {
            reader: BufReader::new(Counted {
                stream: Stream::over(stream)?,
                received: 0,
            }),
            host,
        })
    }

    /// The socket underneath (for its addresses and options; reading from it directly
    /// bypasses what this connection has buffered).
    pub fn tcp(&self) -> &TcpStream {
        self.reader.get_ref().stream.tcp()
    }

    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.tcp().set_read_timeout(Some(timeout))
    }

    /// Bytes that arrived since the last request was written (what a cut-off response
    /// got through, say), counting any the buffer read ahead.
    pub fn bytes_received(&self) -> usize {
        self.reader.get_ref().received
    }

    /// Sends one request and reads its response. `Content-Length` is added for a body
    /// unless `headers` already frame it.
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<HttpResponse> {
        self.write_request(method, target, headers, body)?;
        self.read_response(method == "HEAD")
    }

    /// Writes one request without reading the response.
    pub fn write_request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<()> {
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if !has("host") {
            head.push_str(&format!("Host: {}\r\n", self.host));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            if !has("content-length") && !has("transfer-encoding") {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.write_raw(&bytes)
    }

    /// Writes bytes as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let counted = self.reader.get_mut();
        counted.received = 0;
        counted.stream.write_all(bytes)?;
        counted.stream.flush()
    }

    /// Reads one response (skipping interim 1xx ones).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<HttpResponse> {
        loop {
            let response = self.read_any_response(head_request)?;
            if !(100..200).contains(&response.status) {
                return Ok(response);
            }
        }
    }

    /// Reads the next response, an interim 1xx one included.
    pub fn read_any_response(&mut self, head_request: bool) -> io::Result<HttpResponse> {
        read_response_from(&mut self.reader, head_request)
    }

    /// Whether the server closes the connection (end of stream or reset) within `within`
    /// without sending anything more.
    pub fn closed_by_server_within(&mut self, within: Duration) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        let _ = self.set_read_timeout(within);
        let mut byte = [0u8; 1];
        match self.reader.get_mut().read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }
}

/// Reads the next response (an interim 1xx one included) from `reader`.
pub fn read_response_from(
    reader: &mut impl BufRead,
    head_request: bool,
) -> io::Result<HttpResponse> {
    let status_line = match read_line(reader)? {
        Line::End => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before a response",
            ));
        }
        Line::Text(line) => line,
    };
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.inside("the response head")?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let has_body = !head_request && status >= 200 && status != 204 && status != 304;
    if has_body {
        response.body = read_body(reader, &response)?;
    }
    Ok(response)
}

fn read_body(reader: &mut impl BufRead, response: &HttpResponse) -> io::Result<Vec<u8>> {
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return read_chunked(reader);
    }
    let mut body = Vec::new();
    match response.header("content-length") {
        Some(len) => {
            let len: usize = len
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
            body.resize(len, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.inside("a chunked body")?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(reader)?.inside("the trailers")?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?.inside("a chunked body")?;
    }
}

/// A line of a response, or the clean end of the stream before it.
enum Line {
    Text(String),
    End,
}

impl Line {
    /// The text; the end of the stream here means the response was cut off.
    fn inside(self, what: &str) -> io::Result<String> {
        match self {
            Line::Text(line) => Ok(line),
            Line::End => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the connection ended inside {what}"),
            )),
        }
    }
}

/// One line without its CRLF. A line the stream ends in the middle of is an error.
fn read_line(reader: &mut impl BufRead) -> io::Result<Line> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(Line::End);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection ended inside a line of the response",
        ));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line)
        .map(Line::Text)
        .map_err(|_| invalid("a response line is not UTF-8".into()))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Sends one request on a new connection.
pub fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    HttpConnection::open(addr)?.send(method, target, headers, body)
}

#[test]
fn a_response_cut_off_anywhere_is_an_error_and_never_a_shorter_response() {
    let whole = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
    let r = read_response_from(&mut whole.as_bytes(), false).expect("a whole response");
    assert_eq!(
        (r.status, r.header("x-a"), r.text().as_str()),
        (200, Some("b"), "hello")
    );
    for cut in 1..whole.len() {
        let result = read_response_from(&mut &whole.as_bytes()[..cut], false);
        let kind = result.as_ref().map_err(io::Error::kind);
        assert!(
            matches!(kind, Err(io::ErrorKind::UnexpectedEof)),
            "cut after {cut} bytes: {result:?}"
        );
    }
}

#[test]
fn an_interim_response_is_read_as_a_response_of_its_own() {
    let bytes = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    let mut reader = bytes.as_bytes();
    assert_eq!(read_response_from(&mut reader, false).unwrap().status, 100);
    assert_eq!(read_response_from(&mut reader, false).unwrap().status, 204);
}
