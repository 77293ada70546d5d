//! Helpers for the connection-layer tests: a server on `127.0.0.1:0` running on its own
//! thread, the harness's HTTP client driven with raw bytes, and the dummy handlers.

#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::HttpConnection;
use user_api::http::server::{Server, ServerConfig, Stopper};
use user_api::http::{Body, Handler, Request, Response};

/// Longest any single read in a test may block before the test fails.
pub const READ_LIMIT: Duration = Duration::from_secs(5);

/// A config with short timeouts, so timeout tests run in well under a second.
pub fn quick_config() -> ServerConfig {
    ServerConfig {
        workers: 2,
        max_body_bytes: 1024,
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        keepalive_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(500),
        max_header_bytes: 1024,
        max_headers: 16,
        shutdown_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

/// A running server; stopped (and its thread joined) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stopper: Stopper,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    pub fn start(config: ServerConfig, handler: impl Handler) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let server = Server::new(listener, config, Arc::new(handler)).expect("server");
        let addr = server.local_addr();
        let stopper = server.stopper();
        let thread = thread::spawn(move || server.run());
        TestServer {
            addr,
            stopper,
            thread: Some(thread),
        }
    }

    pub fn echo() -> TestServer {
        TestServer::start(quick_config(), echo)
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server and waits for `run` to return, failing if it takes longer than
    /// `limit`.
    pub fn stop_within(mut self, limit: Duration) -> io::Result<()> {
        self.stopper.stop();
        join_within(self.thread.take().expect("running"), limit)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopper.stop();
            let _ = thread.join();
        }
    }
}

/// Joins a thread, failing the test if it has not finished within `limit`.
pub fn join_within<T: Send + 'static>(thread: JoinHandle<T>, limit: Duration) -> T {
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let out = thread.join();
        let _ = tx.send(());
        out
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("thread did not finish within {limit:?}"));
    match waiter.join() {
        Ok(Ok(v)) => v,
        _ => panic!("thread panicked"),
    }
}

/// A parsed response: the harness's (`tests/common/client.rs`).
pub use crate::common::HttpResponse as Resp;

/// The harness's HTTP client driven with raw bytes over one `TcpStream`: what a test
/// writes goes out as it is (pipelined, malformed, cut short), and each response is read
/// as it comes, an interim `100 Continue` included.
pub struct Client {
    /// The same socket, for its addresses and options, or to read from it directly.
    pub stream: TcpStream,
    conn: HttpConnection,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_LIMIT)).expect("timeout");
        Client::from_stream(stream)
    }

    /// A client over a stream connected elsewhere (from another local address, say).
    pub fn from_stream(stream: TcpStream) -> Client {
        Client {
            conn: HttpConnection::over(stream.try_clone().expect("clone the socket"))
                .expect("a connection over the socket"),
            stream,
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.conn.write_raw(bytes.as_ref()).expect("write");
    }

    /// Reads one response.
    pub fn response(&mut self) -> Resp {
        self.try_response(false).expect("response")
    }

    /// Reads one response to a HEAD request: its `Content-Length` sends no body.
    pub fn head_response(&mut self) -> Resp {
        self.try_response(true).expect("response")
    }

    pub fn try_response(&mut self, head_only: bool) -> io::Result<Resp> {
        self.conn.read_any_response(head_only)
    }

    /// Asserts the server closes the connection with nothing more to say.
    pub fn assert_closed(&mut self) {
        assert!(
            self.conn.closed_by_server_within(READ_LIMIT),
            "expected the connection to close with nothing more sent"
        );
    }

    /// How long until the server closes the connection, failing if it sends anything.
    pub fn time_until_closed(&mut self) -> Duration {
        let start = Instant::now();
        self.assert_closed();
        start.elapsed()
    }
}

/// The dummy application: echoes the request as JSON. `/slow` sleeps first, `/panic`
/// panics, `/empty` answers 204.
pub fn echo(req: Request) -> Response {
    match req.path.as_str() {
        "/slow" => thread::sleep(Duration::from_millis(200)),
        "/panic" => panic!("the test handler panics on purpose"),
        "/empty" => return Response::new(204),
        _ => {}
    }
    Response::json_bytes(200, describe(&req).to_string().into_bytes())
        .with_header("X-Handler", "echo")
}

pub fn describe(req: &Request) -> Value {
    let (body, too_large) = match &req.body {
        Body::Complete(b) => (String::from_utf8_lossy(b).into_owned(), false),
        Body::TooLarge => (String::new(), true),
    };
    json!({
        "method": req.method.as_str(),
        "path": req.path,
        "query": req.query,
        "headers": req.headers,
        "body": body,
        "too_large": too_large,
        "peer": req.peer.map(|p| p.to_string()),
        // How long ago the connection layer took the request up, when the handler saw it.
        "received_ms_ago": req.received.map(|t| t.elapsed().as_millis() as u64),
    })
}

/// A handler that blocks on `/gate` until the test lets it go, reporting each entry.
pub struct Gate {
    pub entered: Receiver<()>,
    release: Sender<()>,
}

impl Gate {
    pub fn handler() -> (Gate, impl Handler) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let entered_tx = Mutex::new(entered_tx);
        let release_rx = Mutex::new(release_rx);
        let handler = move |req: Request| -> Response {
            if req.path == "/gate" {
                let _ = entered_tx.lock().map(|tx| tx.send(()));
                let _ = release_rx.lock().map(|rx| rx.recv_timeout(READ_LIMIT));
            }
            echo(req)
        };
        (Gate { entered, release }, handler)
    }

    /// Waits until a request is inside the handler.
    pub fn wait_entered(&self) {
        self.entered
            .recv_timeout(READ_LIMIT)
            .expect("a request entered the handler");
    }

    /// Lets one blocked request go.
    pub fn release_one(&self) {
        self.release.send(()).expect("gate open");
    }
}
