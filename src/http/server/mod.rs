//! The connection layer: accepts connections, reads complete requests, runs them on the
//! worker pool and writes the responses.
//!
//! This first version sits on `tiny_http`; it is meant to be replaced by our own reactor
//! with the same public surface (`ServerConfig`, `Server`, `Stopper`).

// Building blocks of the reactor that replaces tiny_http; unused until it lands.
#[allow(dead_code)]
mod chunked;
#[allow(dead_code)]
mod date;
#[allow(dead_code)]
mod parse;
#[allow(dead_code)]
mod reader;
#[allow(dead_code)]
mod response;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Body, Handler, Method, Request};

/// Limits and sizes of the connection layer.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Threads that run handlers (the blocking database work).
    pub workers: usize,
    /// Largest request body read; a larger one is answered 413 without being read.
    pub max_body_bytes: usize,
    /// Open connections at most; past it a new one gets a fast 503 and is closed.
    pub max_connections: usize,
    /// Time a client has to send a complete request head (408 after it).
    pub header_timeout: Duration,
    /// Time a client has to send the body once the head is in (408 after it).
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// How long writing one response may take before the connection is dropped.
    pub write_timeout: Duration,
    /// Largest request head (request line and headers), in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Most header fields in one request (431 past it).
    pub max_headers: usize,
    /// Complete requests waiting for a worker at most; past it, 503 with `Retry-After`.
    pub queue_depth: usize,
    /// How long a graceful stop waits for requests in flight.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workers: 8,
            max_body_bytes: 64 * 1024,
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            queue_depth: 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Asks a running [`Server`] to stop gracefully. Cheap to clone; safe from any thread.
#[derive(Clone, Debug, Default)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
}

impl Stopper {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A bound server, ready to run.
pub struct Server {
    inner: Arc<tiny_http::Server>,
    local_addr: SocketAddr,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    stopper: Stopper,
}

impl Server {
    /// Wraps a listener that is already bound (port 0 in tests, or one inherited from
    /// systemd).
    pub fn new(
        listener: TcpListener,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let inner = tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)?;
        Ok(Server {
            inner: Arc::new(inner),
            local_addr,
            config,
            handler,
            stopper: Stopper::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Serves until [`Stopper::stop`] is called, then lets the requests already received
    /// finish (up to `shutdown_timeout`) and returns.
    pub fn run(self) -> io::Result<()> {
        let workers: Vec<_> = (0..self.config.workers.max(1))
            .map(|i| {
                let server = Arc::clone(&self.inner);
                let handler = Arc::clone(&self.handler);
                let stopper = self.stopper.clone();
                let max_body = self.config.max_body_bytes;
                thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || work(&server, handler.as_ref(), &stopper, max_body))
            })
            .collect::<io::Result<_>>()?;
        while !self.stopper.is_stopped() {
            thread::sleep(Duration::from_millis(50));
        }
        let deadline = Instant::now() + self.config.shutdown_timeout;
        for w in workers {
            while !w.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if w.is_finished() {
                let _ = w.join();
            }
        }
        Ok(())
    }
}

fn work(server: &tiny_http::Server, handler: &dyn Handler, stopper: &Stopper, max_body: usize) {
    loop {
        let next = if stopper.is_stopped() {
            // Drain what was already received, then leave.
            match server.try_recv() {
                Ok(Some(r)) => r,
                _ => return,
            }
        } else {
            match server.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(_) => return,
            }
        };
        serve_one(next, handler, max_body);
    }
}

fn serve_one(mut raw: tiny_http::Request, handler: &dyn Handler, max_body: usize) {
    let url = raw.url().to_owned();
    let mut req = Request::new(Method::parse(raw.method().as_str()), &url);
    req.peer = raw.remote_addr().copied();
    req.headers = raw
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    req.body = match raw.body_length() {
        Some(n) if n > max_body => Body::TooLarge,
        _ => {
            let mut buf = Vec::new();
            let limit = u64::try_from(max_body)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            match raw.as_reader().take(limit).read_to_end(&mut buf) {
                Ok(_) if buf.len() > max_body => Body::TooLarge,
                Ok(_) => Body::Complete(buf),
                Err(_) => return,
            }
        }
    };
    let resp = handler.handle(req);
    let mut out = tiny_http::Response::from_data(resp.body).with_status_code(resp.status);
    for (name, value) in resp.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(h);
        }
    }
    // A client that went away is not our error.
    let _ = raw.respond(out);
}
