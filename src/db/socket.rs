//! The socket under a database connection, and opening it.
//!
//! tokio-postgres reads and writes it through `AsyncRead`/`AsyncWrite`, but no runtime
//! runs it: a read or write that would block returns `Pending`, and the session
//! (`session::Driver`) then waits for the socket itself with one `poll(2)` bounded by the
//! statement's deadline. That is what a current-thread runtime per connection did, less
//! the runtime: its context, its timer wheel and its `epoll` instance, entered for every
//! statement (`examples/round_trip.rs`, interleaved: 11.2–13.7 µs of client CPU per query
//! with it, 8.8–12.5 without; 0.6 MiB less memory idle and at peak).
//!
//! Opening follows tokio-postgres' own `connect` (which needs its runtime): each host in
//! turn (shuffled with `load_balance_hosts=random`), by `hostaddr` when given, each
//! address a name resolves to, with the per-host `connect_timeout`, keepalives and
//! `tcp_user_timeout`; all within the caller's deadline.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::sockopt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, LoadBalanceHosts};

/// A connected, non-blocking socket. Clones share it: the connection reads and writes
/// through one, the session waits on another.
#[derive(Clone)]
pub struct Socket(Arc<Inner>);

struct Inner {
    stream: Stream,
    /// Whether a read may find data. A short read or a `WouldBlock` clears it (the
    /// socket is drained: the next read would only fail), and `wait` sets it again.
    /// Saves a failing `recvfrom` per statement, as tokio's readiness tracking did.
    readable: AtomicBool,
    /// A write found the send buffer full: `wait` also waits for room.
    blocked_write: AtomicBool,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }

    fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Socket {
    fn new(stream: Stream) -> Socket {
        Socket(Arc::new(Inner {
            stream,
            readable: AtomicBool::new(true),
            blocked_write: AtomicBool::new(false),
        }))
    }

    /// Waits until the socket can be read (or written, after a write that found no
    /// room), or `until`. `Ok(false)`: the time is up.
    pub fn wait(&self, until: Instant) -> io::Result<bool> {
        let mut flags = PollFlags::IN;
        if self.0.blocked_write.load(Ordering::Relaxed) {
            flags |= PollFlags::OUT;
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let timeout = Timespec::try_from(left).map_err(|_| io::ErrorKind::InvalidInput)?;
            let mut fds = [PollFd::from_borrowed_fd(self.0.stream.fd(), flags)];
            match poll(&mut fds, Some(&timeout)) {
                // Readable, writable, hung up or failed: the next read or write says which.
                Ok(n) if n > 0 => {
                    self.0.readable.store(true, Ordering::Relaxed);
                    self.0.blocked_write.store(false, Ordering::Relaxed);
                    return Ok(true);
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &self.0;
        if !inner.readable.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let room = buf.remaining();
        match inner.stream.read(buf.initialize_unfilled()) {
            Ok(n) => {
                buf.advance(n);
                if n > 0 && n < room {
                    inner.readable.store(false, Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                inner.readable.store(false, Ordering::Relaxed);
                Poll::Pending
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                // Read again on the next pass, without waiting.
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.stream.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.0.blocked_write.store(true, Ordering::Relaxed);
                Poll::Pending
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Poll::Pending,
            other => Poll::Ready(other),
        }
    }

    /// Nothing is buffered here: every write went to the kernel.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.stream.shutdown())
    }
}

/// One host of the connection settings, and the name TLS checks the server's
/// certificate against.
pub struct HostSpec {
    place: Place,
    port: u16,
    pub hostname: Option<String>,
}

enum Place {
    Ip(IpAddr),
    Name(String),
    /// The directory of the server's socket.
    Unix(PathBuf),
}

/// Where to connect.
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// The hosts to try, in order: what tokio-postgres' `connect` would try (`hostaddr`
/// before the host's name, ports matched by position, shuffled with
/// `load_balance_hosts=random`).
pub fn hosts(pg: &tokio_postgres::Config) -> Vec<HostSpec> {
    let (hosts, hostaddrs, ports) = (pg.get_hosts(), pg.get_hostaddrs(), pg.get_ports());
    let mut specs: Vec<HostSpec> = (0..hosts.len().max(hostaddrs.len()))
        .filter_map(|i| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            let hostname = match hosts.get(i) {
                Some(Host::Tcp(name)) => Some(name.clone()),
                _ => None,
            };
            let place = match (hostaddrs.get(i), hosts.get(i)) {
                (Some(ip), _) => Place::Ip(*ip),
                (None, Some(Host::Unix(dir))) => Place::Unix(dir.clone()),
                (None, Some(Host::Tcp(name))) => Place::Name(name.clone()),
                (None, None) => return None,
            };
            Some(HostSpec {
                place,
                port,
                hostname,
            })
        })
        .collect();
    if pg.get_load_balance_hosts() == LoadBalanceHosts::Random {
        shuffle(&mut specs);
    }
    specs
}

impl HostSpec {
    /// The addresses to try for this host, its name resolved (see `resolve`) by `until`.
    pub fn addresses(&self, pg: &tokio_postgres::Config, until: Instant) -> io::Result<Vec<Addr>> {
        Ok(match &self.place {
            Place::Ip(ip) => vec![Addr::Tcp(SocketAddr::new(*ip, self.port))],
            Place::Unix(dir) => vec![Addr::Unix(dir.join(format!(".s.PGSQL.{}", self.port)))],
            Place::Name(name) => {
                let mut addrs = resolve(name, self.port, until)?;
                if pg.get_load_balance_hosts() == LoadBalanceHosts::Random {
                    shuffle(&mut addrs);
                }
                addrs.into_iter().map(Addr::Tcp).collect()
            }
        })
    }
}

/// A host name's addresses. The resolver (`getaddrinfo`) has no timeout of its own, so
/// it runs on a thread of its own, which is left behind if it outlasts `until`. A
/// literal address needs no resolver.
fn resolve(name: &str, port: u16, until: Instant) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let host = name.to_owned();
    std::thread::Builder::new()
        .name("db-resolver".into())
        .spawn(move || {
            let _ = tx.send((host.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })?;
    match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        Ok(addrs) => addrs,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("resolving {name} took too long"),
        )),
    }
}

/// Connects to `addr` within `timeout`, and sets what `pg` asks of the socket.
pub fn open(addr: &Addr, timeout: Duration, pg: &tokio_postgres::Config) -> io::Result<Socket> {
    if timeout.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    let stream = match addr {
        Addr::Tcp(addr) => {
            let s = TcpStream::connect_timeout(addr, timeout)?;
            s.set_nodelay(true)?;
            tune_tcp(&s, pg)?;
            s.set_nonblocking(true)?;
            Stream::Tcp(s)
        }
        Addr::Unix(path) => {
            // A local socket connects at once or not at all.
            let s = UnixStream::connect(path)?;
            s.set_nonblocking(true)?;
            Stream::Unix(s)
        }
    };
    Ok(Socket::new(stream))
}

fn tune_tcp(s: &TcpStream, pg: &tokio_postgres::Config) -> io::Result<()> {
    let fd = s.as_fd();
    if let Some(t) = pg.get_tcp_user_timeout() {
        sockopt::set_tcp_user_timeout(fd, u32::try_from(t.as_millis()).unwrap_or(u32::MAX))?;
    }
    if pg.get_keepalives() {
        sockopt::set_socket_keepalive(fd, true)?;
        sockopt::set_tcp_keepidle(fd, pg.get_keepalives_idle())?;
        if let Some(interval) = pg.get_keepalives_interval() {
            sockopt::set_tcp_keepintvl(fd, interval)?;
        }
        if let Some(retries) = pg.get_keepalives_retries() {
            sockopt::set_tcp_keepcnt(fd, retries)?;
        }
    }
    Ok(())
}

/// Fisher-Yates with the system's random numbers (or in order, if it has none).
fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let Ok(r) = getrandom::u64() else { return };
        let j = usize::try_from(r % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(url: &str) -> Vec<(String, u16, Option<String>)> {
        let pg: tokio_postgres::Config = url.parse().unwrap();
        hosts(&pg)
            .into_iter()
            .map(|h| {
                let place = match h.place {
                    Place::Ip(ip) => format!("ip {ip}"),
                    Place::Name(n) => format!("name {n}"),
                    Place::Unix(d) => format!("unix {}", d.display()),
                };
                (place, h.port, h.hostname)
            })
            .collect()
    }

    #[test]
    fn hosts_are_tried_in_order_with_their_own_ports_and_hostaddr_before_the_name() {
        let name = |n: &str| Some(n.to_owned());
        assert_eq!(
            places("postgres://u@pg-1:5433,pg-2:5434/db"),
            [
                ("name pg-1".to_owned(), 5433, name("pg-1")),
                ("name pg-2".to_owned(), 5434, name("pg-2")),
            ]
        );
        // A hostaddr is where to connect; the host name is still what TLS checks.
        assert_eq!(
            places("host=db hostaddr=10.0.0.7 port=6432 user=u"),
            [("ip 10.0.0.7".to_owned(), 6432, name("db"))]
        );
        assert_eq!(
            places("host=/run/postgresql user=u"),
            [("unix /run/postgresql".to_owned(), 5432, None)]
        );
    }

    #[test]
    fn a_unix_host_is_its_directory_and_the_ports_socket_file() {
        let pg: tokio_postgres::Config = "host=/run/postgresql port=5433 user=u".parse().unwrap();
        let addrs = hosts(&pg)[0].addresses(&pg, Instant::now()).unwrap();
        let want = std::path::Path::new("/run/postgresql/.s.PGSQL.5433");
        assert!(matches!(&addrs[..], [Addr::Unix(p)] if p.as_path() == want));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_an_error_by_the_deadline() {
        let started = Instant::now();
        let r = resolve(
            "no-such-host.invalid",
            5432,
            started + Duration::from_secs(3),
        );
        assert!(r.is_err(), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_refused_connect_is_an_error_at_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        let r = open(
            &addr,
            Duration::from_secs(5),
            &tokio_postgres::Config::new(),
        );
        assert_eq!(
            r.err().map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionRefused)
        );
    }
}
