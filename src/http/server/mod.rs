//! The connection layer: accepts connections, reads complete requests, runs them on the
//! worker pool and writes the responses.
//!
//! A synchronous thread-pool server. One reactor thread ([`reactor`]) owns the listener
//! and every connection that is idle or still sending its request, all non-blocking. It
//! parses heads with `httparse` ([`parse`], [`reader`], [`chunked`]) and hands only
//! complete requests to `workers` threads ([`worker`]) over a bounded queue. A worker runs
//! the handler, serialises the response into one buffer ([`response`]), writes what the
//! socket takes, and sends the connection back to the reactor, waking it. No thread per
//! connection; a slow client never holds a worker.
//!
//! Readiness comes from `mio` rather than `polling`: `mio` registers its own owned
//! `TcpListener`/`TcpStream` and ships a `Waker`, so the whole layer stays safe code under
//! the crate's `forbid(unsafe_code)`, whereas `polling` 3 makes registering a raw
//! descriptor an `unsafe` call. `mio` is also already in the dependency tree (through
//! tokio-postgres' tokio), so it costs no extra build.

mod accept;
mod chunked;
mod connection;
mod date;
mod deadlines;
mod exchange;
mod handoff;
mod parse;
mod reactor;
mod reader;
mod response;
mod sched;
mod slots;
mod transport;
mod worker;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Waker};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
/// For the application's tests: a handler called as the workers call it.
#[cfg(test)]
pub(crate) use worker::call_handler;

use super::Handler;
use super::client_addr::Cidr;
use super::https::Https;

/// Descriptors kept back from `max_connections` for everything else the process opens:
/// database connections, log files, the poller itself.
const FD_RESERVE: u64 = 64;

/// Limits and sizes of the connection layer. Its `Default` is the service's defaults,
/// implemented where the settings are declared (`config`), so each is written once.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Threads that run handlers (the blocking database work).
    pub workers: usize,
    /// Largest request body read. A larger one is not kept: the handler gets
    /// `Body::TooLarge` (and answers 413 once auth is checked), then what is declared of
    /// it is discarded up to `max_discard_bytes` and the connection closes.
    pub max_body_bytes: usize,
    /// A too-large declared body is still read, and thrown away, up to this many bytes
    /// after the 413 is sent, so that a client or a proxy still sending it gets the
    /// answer instead of a reset. At least what any proxy in front may forward (nginx
    /// forwards 1 MiB unless told otherwise).
    pub max_discard_bytes: u64,
    /// Request body bytes all connections together may hold at once: a body is given
    /// room (its declared length, or `max_body_bytes` when chunked) before a byte of it
    /// is read, and past the budget the request gets 503. Bounds memory whatever
    /// `max_connections` is.
    pub body_budget_bytes: usize,
    /// Open connections at most. At the cap a new connection takes the place of the
    /// connection idle the longest; with none idle it gets a fast 503 and is closed.
    pub max_connections: usize,
    /// Open connections from one peer address at most (0: no cap); past it a new one
    /// gets a fast 503. Peers in `uncapped_peers` (trusted proxies) are exempt.
    pub max_connections_per_peer: usize,
    /// Peers the per-address cap does not apply to: proxies that carry many clients.
    pub uncapped_peers: Vec<Cidr>,
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

/// Asks a running [`Server`] to stop gracefully. Cheap to clone; safe from any thread.
#[derive(Clone, Default)]
pub struct Stopper {
    shared: Arc<StopState>,
}

#[derive(Default)]
struct StopState {
    stopped: AtomicBool,
    /// Wakes the reactor out of `poll`; set by [`Server::new`].
    waker: OnceLock<Arc<Waker>>,
}

impl Stopper {
    /// Starts a graceful stop: no new connections, idle ones closed, requests in flight
    /// answered with `Connection: close`. Returns at once; [`Server::run`] returns when
    /// the drain is done.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        if let Some(waker) = self.shared.waker.get() {
            if let Err(e) = waker.wake() {
                // The reactor still sees the flag at its next timer tick.
                log::warn!("cannot wake the reactor to stop: {e}");
            }
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopper")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

/// A bound server, ready to run.
pub struct Server {
    poll: Poll,
    listener: mio::net::TcpListener,
    waker: Arc<Waker>,
    local_addr: SocketAddr,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    stopper: Stopper,
    https: Option<Arc<Https>>,
}

impl Server {
    /// Wraps a listener that is already bound (port 0 in tests, or one inherited from
    /// systemd).
    ///
    /// `max_connections` is lowered to what the descriptor limit allows (less a reserve
    /// for everything else), with a warning; call [`raise_nofile_limit`] first to get the
    /// most out of it.
    pub fn new(
        listener: TcpListener,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        // std listens with a backlog of 128, which a burst of connects overflows (a
        // dropped SYN costs the client a one-second retransmit). Listening again only
        // changes the backlog; the kernel caps it at net.core.somaxconn.
        rustix::net::listen(&listener, i32::MAX)?;
        listener.set_nonblocking(true)?;
        let mut listener = mio::net::TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, reactor::LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), reactor::WAKER)?);
        let stopper = Stopper::default();
        // A fresh `Stopper`'s cell is empty, so this cannot fail.
        let _ = stopper.shared.waker.set(Arc::clone(&waker));

        let mut config = config;
        let nofile = getrlimit(Resource::Nofile).current;
        if let Some(ceiling) = connection_ceiling(config.max_connections, nofile) {
            log::warn!(
                "max_connections lowered from {} to {ceiling}: the open-files limit is {} \
                 and {FD_RESERVE} descriptors are kept for other uses",
                config.max_connections,
                nofile.unwrap_or(u64::MAX),
            );
            config.max_connections = ceiling;
        }
        Ok(Server {
            poll,
            listener,
            waker,
            local_addr,
            config,
            handler,
            stopper,
            https: None,
        })
    }

    /// Serves HTTPS with `https`'s certificate (re-read by [`Https::reload`]) instead of
    /// plain HTTP, on the same listener.
    pub fn with_https(mut self, https: Arc<Https>) -> Server {
        self.https = Some(https);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Uses `stopper` (made before the server, e.g. by a signal handler installed at
    /// start-up) instead of the server's own. A stopper already stopped makes `run`
    /// drain and return at once.
    pub fn with_stopper(mut self, stopper: Stopper) -> io::Result<Server> {
        stopper
            .shared
            .waker
            .set(Arc::clone(&self.waker))
            .map_err(|_| io::Error::other("this stopper already belongs to a server"))?;
        self.stopper = stopper;
        Ok(self)
    }

    /// The configuration in force, after `max_connections` was fitted to the
    /// descriptor limit.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Serves until [`Stopper::stop`] is called, then lets the requests already received
    /// finish (up to `shutdown_timeout`) and returns.
    pub fn run(self) -> io::Result<()> {
        let Server {
            poll,
            listener,
            waker,
            config,
            handler,
            stopper,
            https,
            ..
        } = self;
        let (job_tx, job_rx) = handoff::jobs(config.queue_depth);
        let (back_tx, back_rx) = handoff::returns(waker);
        let (exit_tx, exit_rx) = mpsc::channel::<()>();
        let shared = Arc::new(worker::Shared {
            jobs: job_rx,
            handler: Arc::clone(&handler),
            stopper: stopper.clone(),
        });
        let workers = config.workers.max(1);
        for n in 0..workers {
            let shared = Arc::clone(&shared);
            let back = back_tx.clone();
            let exited = ExitSignal(exit_tx.clone());
            thread::Builder::new()
                .name(format!("http-worker-{n}"))
                .spawn(move || {
                    let _exited = exited;
                    // Only the first worker tells: they all fail alike.
                    match sched::batch_this_thread() {
                        Err(e) if n == 0 => log::info!(
                            "workers keep the normal scheduling policy (SCHED_BATCH: {e})"
                        ),
                        _ => {}
                    }
                    worker::run(&shared, &back);
                })?;
        }
        drop((back_tx, exit_tx));

        let channels = (job_tx, back_rx);
        let reactor =
            reactor::Reactor::new(poll, listener, &config, channels, handler, stopper, https)?;
        // The reactor owns the job queue's sender: once it returns, the workers finish
        // what is queued and exit.
        let deadline = reactor.run()?;
        for _ in 0..workers {
            let left = deadline.saturating_duration_since(Instant::now());
            if exit_rx.recv_timeout(left).is_err() {
                log::warn!("graceful stop timed out with requests still running");
                break;
            }
        }
        Ok(())
    }
}

/// Tells `run` a worker thread has ended, however it ended.
struct ExitSignal(mpsc::Sender<()>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// The lower `max_connections` the descriptor limit calls for, if it calls for one.
fn connection_ceiling(max_connections: usize, nofile: Option<u64>) -> Option<usize> {
    let ceiling = nofile?.saturating_sub(FD_RESERVE).max(1);
    let ceiling = usize::try_from(ceiling).unwrap_or(usize::MAX);
    (max_connections > ceiling).then_some(ceiling)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit
/// (`u64::MAX` for unlimited). Call it once at start-up, before [`Server::new`].
pub fn raise_nofile_limit() -> io::Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ceiling_clamps_when_the_descriptor_limit_is_lower() {
        assert_eq!(connection_ceiling(10_000, Some(1024)), Some(960));
        assert_eq!(connection_ceiling(100, Some(1024)), None);
        assert_eq!(connection_ceiling(10_000, None), None);
        assert_eq!(connection_ceiling(10, Some(3)), Some(1));
    }

    #[test]
    fn raise_nofile_limit_reaches_the_hard_limit_when_called() {
        let soft = raise_nofile_limit().unwrap();
        let hard = getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX);
        assert_eq!(soft, hard);
    }
}
