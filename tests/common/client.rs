//! A small blocking HTTP/1.1 client over `TcpStream`, written for the tests.
//!
//! It sends exactly what it is told (plus `Host` and `Content-Length`), treats every
//! status as data, frames bodies by `Content-Length` or chunked encoding (or the end of
//! the stream), reads no body for HEAD, 1xx, 204 and 304, and can reuse one connection
//! for several requests.

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

    /// Whether the server said it will close the connection.
    pub fn closes_connection(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// One client connection; requests on it are sent one after another (keep-alive).
pub struct HttpConnection {
    reader: BufReader<Stream>,
    host: String,
}

impl HttpConnection {
    pub fn open(addr: SocketAddr) -> io::Result<HttpConnection> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(HttpConnection {
            reader: BufReader::new(Stream::over(stream)?),
            host: addr.to_string(),
        })
    }

    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.reader.get_ref().tcp().set_read_timeout(Some(timeout))
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
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Reads one response (skipping interim 1xx ones).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<HttpResponse> {
        loop {
            let status_line = self.read_line()?;
            if status_line.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before a response",
                ));
            }
            let mut parts = status_line.splitn(3, ' ');
            let version = parts.next().unwrap_or_default();
            let status: u16 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .filter(|_| version.starts_with("HTTP/1."))
                .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let line = self.read_line()?;
                if line.is_empty() {
                    break;
                }
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
            if (100..200).contains(&status) {
                continue;
            }
            let mut response = HttpResponse {
                status,
                headers,
                body: Vec::new(),
            };
            if !head_request && status != 204 && status != 304 {
                response.body = self.read_body(&response)?;
            }
            return Ok(response);
        }
    }

    fn read_body(&mut self, response: &HttpResponse) -> io::Result<Vec<u8>> {
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return self.read_chunked();
        }
        let mut body = Vec::new();
        match response.header("content-length") {
            Some(len) => {
                let len: usize = len
                    .parse()
                    .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
                body.resize(len, 0);
                self.reader.read_exact(&mut body)?;
            }
            None => {
                self.reader.read_to_end(&mut body)?;
            }
        }
        Ok(body)
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            self.read_line()?;
        }
    }

    /// One line without its CRLF; empty at the end of the stream.
    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        String::from_utf8(line).map_err(|_| invalid("a response line is not UTF-8".into()))
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
