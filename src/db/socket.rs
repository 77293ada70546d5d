//! The socket under a database connection, and opening it.
//!
//! tokio-postgres reads and writes it through `AsyncRead`/`AsyncWrite`, but no runtime
//! runs it: a read or write that would block returns `Pending`, and the session
//! (`session::Driver`) then waits for the socket itself, bounded by the statement's
//! deadline. That is what a current-thread runtime per connection did, less the runtime:
//! its context, its timer wheel and its `epoll` instance, entered for every statement
//! (`examples/round_trip.rs`, interleaved: 11.2–13.7 µs of client CPU per query with it,
//! 8.8–12.5 without; 0.6 MiB less memory idle and at peak).
//!
//! The wait for an answer happens in the read itself: the descriptor blocks, with the
//! session's deadline as its receive timeout, and every other read and write passes
//! `MSG_DONTWAIT`. The kernel then wakes the worker with the answer read, one system
//! call per query fewer than `poll(2)` and a read (`Socket::wait`): under `wrk -c64`,
//! 5.5 -> 4.6 system calls per `GET` and 5.4 -> 4.5 per `POST`; `examples/round_trip`,
//! five interleaved rounds, 9.3 -> 8.6 µs of client CPU per query (medians).
//!
//! Opening follows tokio-postgres' own `connect` (which needs its runtime): each host in
//! turn (shuffled with `load_balance_hosts=random`), by `hostaddr` when given, each
//! address a name resolves to, with the per-host `connect_timeout`, keepalives and
//! `tcp_user_timeout`; all within the caller's deadline.

use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::sockopt::{self, Timeout};
use rustix::net::{RecvFlags, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, LoadBalanceHosts};

/// A connected socket, read and written without blocking, except for the one read
/// after `wait` chose to wait inside it (below). Clones share it: the connection reads
/// and writes through one, the session waits on another.
#[derive(Clone)]
pub struct Socket(Arc<Inner>);

/// A clock tick at the coarsest a Linux kernel is built with (`HZ=100`).
const TICK: Duration = Duration::from_millis(10);

/// The receive timeout for a read that waits, given the deadline it must end by. The
/// kernel keeps a receive timeout in ticks on its timer wheel, which fires late by up to
/// an eighth of the timeout and a tick (measured, `HZ=250`: 2.5 s -> 2.75 s, 5 s ->
/// 5.12 s), where `poll(2)`'s timer is exact. So the read is given 8/9 of the deadline
/// less two ticks, and ends a tick before the deadline at the latest; a statement still
/// unanswered then polls for the rest. `None` when the deadline is too short to share.
fn receive_timeout(deadline: Duration) -> Option<Duration> {
    deadline
        .checked_sub(2 * TICK)
        .map(|d| d * 8 / 9)
        .filter(|d| !d.is_zero())
}

struct Inner {
    stream: Stream,
    /// Whether a read may find data. A short read or a `WouldBlock` clears it (the
    /// socket is drained: the next read would only fail), and `wait` sets it again.
    /// Saves a failing `recvfrom` per statement, as tokio's readiness tracking did.
    readable: AtomicBool,
    /// A write found the send buffer full: `wait` also waits for room.
    blocked_write: AtomicBool,
    /// In nanoseconds, the deadline the socket's receive timeout (`SO_RCVTIMEO`) was
    /// set for (see `receive_timeout`); 0 for none.
    read_deadline: AtomicU64,
    /// `wait` left the waiting to the next read: it blocks, until the receive timeout.
    wait_in_read: AtomicBool,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// The descriptor itself blocks; each call says whether it may.
    fn read(&self, buf: &mut [u8], block: bool) -> io::Result<usize> {
        let flags = if block {
            RecvFlags::empty()
        } else {
            RecvFlags::DONTWAIT
        };
        // The count read, and (for MSG_TRUNC, not used) what the message held.
        let (read, _) = rustix::net::recv(self.fd(), buf, flags)?;
        Ok(read)
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        Ok(rustix::net::send(self.fd(), buf, flags)?)
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
            read_deadline: AtomicU64::new(0),
            wait_in_read: AtomicBool::new(false),
        }))
    }

    /// Lets a read wait for an answer due within `deadline` (a session's statement
    /// deadline), through the socket's receive timeout. A deadline too short for it, or
    /// a socket that refuses the timeout, leaves every wait to `poll(2)`.
    pub fn set_read_deadline(&self, deadline: Duration) {
        let set = receive_timeout(deadline).is_some_and(|timeout| {
            sockopt::set_socket_timeout(self.0.stream.fd(), Timeout::Recv, Some(timeout)).is_ok()
        });
        let nanos = if set {
            u64::try_from(deadline.as_nanos()).unwrap_or(0)
        } else {
            0
        };
        self.0.read_deadline.store(nanos, Ordering::Relaxed);
    }

    /// Waits until the socket can be read (or written, after a write that found no
    /// room), or `until`. `Ok(false)`: the time is up.
    ///
    /// Waiting for an answer with (nearly) all of the read deadline left, it waits in the
    /// next read instead: the kernel then wakes the thread with the answer already read,
    /// one system call where `poll(2)` and a read are two. A statement's first wait
    /// qualifies, as the read deadline is the session's statement deadline. The read
    /// gives up a tick before `until` at the latest (`receive_timeout`), and a later
    /// `wait` with less time left polls for the rest (with a deadline of a few ticks,
    /// another such read may fit first, and it too ends before `until`).
    pub fn wait(&self, until: Instant) -> io::Result<bool> {
        let mut flags = PollFlags::IN;
        if self.0.blocked_write.load(Ordering::Relaxed) {
            flags |= PollFlags::OUT;
        }
        let read_deadline = Duration::from_nanos(self.0.read_deadline.load(Ordering::Relaxed));
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            if flags == PollFlags::IN && !read_deadline.is_zero() && left + TICK >= read_deadline {
                self.0.wait_in_read.store(true, Ordering::Relaxed);
                self.0.readable.store(true, Ordering::Relaxed);
                return Ok(true);
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

    /// A pass is over: a read `wait` left to it that did not happen (the pass needed
    /// none) must not block a later one.
    pub fn end_pass(&self) {
        self.0.wait_in_read.store(false, Ordering::Relaxed);
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &self.0;
        let block = inner.wait_in_read.swap(false, Ordering::Relaxed);
        if !block && !inner.readable.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let room = buf.remaining();
        match inner.stream.read(buf.initialize_unfilled(), block) {
            Ok(n) => {
                buf.advance(n);
                if n > 0 && n < room {
                    inner.readable.store(false, Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            // Nothing there, or nothing came within the receive timeout.
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
            Stream::Tcp(s)
        }
        Addr::Unix(path) => {
            // A local socket connects at once or not at all.
            let s = UnixStream::connect(path)?;
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
pub(crate) mod tests {
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

    /// A socket connected to a listener on this machine, and the peer's end (the
    /// session's tests drive one too).
    pub(crate) fn pair() -> (Socket, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Addr::Tcp(listener.local_addr().unwrap());
        let ours = open(
            &addr,
            Duration::from_secs(5),
            &tokio_postgres::Config::new(),
        )
        .unwrap();
        (ours, listener.accept().unwrap().0)
    }

    /// One `poll_read` into a fresh buffer: what it read, or `None` for `Pending`.
    fn read_once(socket: &mut Socket) -> Option<Vec<u8>> {
        let mut bytes = [0u8; 64];
        let mut buf = ReadBuf::new(&mut bytes);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(socket).poll_read(&mut cx, &mut buf) {
            Poll::Ready(r) => {
                r.unwrap();
                Some(buf.filled().to_vec())
            }
            Poll::Pending => None,
        }
    }

    #[test]
    fn with_a_read_deadline_the_wait_happens_in_the_read_and_ends_with_the_answer() {
        let (mut socket, mut peer) = pair();
        socket.set_read_deadline(Duration::from_secs(10));
        assert_eq!(read_once(&mut socket), None, "nothing yet, and no waiting");

        let started = Instant::now();
        assert!(socket.wait(started + Duration::from_secs(10)).unwrap());
        // Half the deadline: a busy CI machine may hold the thread for a while, but not
        // for seconds.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "wait left it to the read"
        );
        let answer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            io::Write::write_all(&mut peer, b"answer").unwrap();
            peer
        });
        assert_eq!(read_once(&mut socket).as_deref(), Some(&b"answer"[..]));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200),
            "the read waited: {took:?}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        drop(answer.join());
    }

    #[test]
    fn a_read_that_waits_gives_up_before_the_deadline_and_the_wait_polls_for_the_rest() {
        for limit in [Duration::from_millis(200), Duration::from_millis(2500)] {
            let (mut socket, _peer) = pair();
            socket.set_read_deadline(limit);

            let started = Instant::now();
            let until = started + limit;
            assert!(socket.wait(until).unwrap());
            assert_eq!(read_once(&mut socket), None, "nothing came");
            let read_for = started.elapsed();
            assert!(read_for < limit, "the read gave up in time: {read_for:?}");
            assert!(!socket.wait(until).unwrap(), "the time is up");
            let took = started.elapsed();
            // Without the margin, the kernel's timer let a 2.5 s read run to 2.75 s.
            assert!(took >= limit, "{took:?}");
            assert!(took < limit + Duration::from_millis(100), "{took:?}");
        }
    }

    #[test]
    fn a_receive_timeout_leaves_room_for_the_kernels_late_timer() {
        for ms in [25, 200, 2500, 5000, 60_000] {
            let deadline = Duration::from_millis(ms);
            let timeout = receive_timeout(deadline).unwrap();
            // Late by an eighth and a tick at worst, it still ends a tick early.
            assert!(timeout + timeout / 8 + TICK <= deadline - TICK, "{ms} ms");
        }
        assert_eq!(receive_timeout(Duration::from_millis(20)), None);
    }

    #[test]
    fn a_wait_left_to_a_read_that_did_not_come_does_not_block_a_later_read() {
        let (mut socket, _peer) = pair();
        socket.set_read_deadline(Duration::from_secs(10));
        assert!(
            socket
                .wait(Instant::now() + Duration::from_secs(10))
                .unwrap()
        );
        socket.end_pass();

        let started = Instant::now();
        assert_eq!(read_once(&mut socket), None);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_read_deadline_too_short_to_share_leaves_every_wait_to_poll() {
        let (mut socket, _peer) = pair();
        let limit = Duration::from_millis(20);
        socket.set_read_deadline(limit);

        let started = Instant::now();
        assert!(!socket.wait(started + limit).unwrap(), "poll(2) ran out");
        assert!(started.elapsed() >= limit);
        assert_eq!(read_once(&mut socket), None, "and no read waits");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_deadline_sooner_than_the_read_deadline_is_waited_for_with_poll() {
        let (mut socket, _peer) = pair();
        socket.set_read_deadline(Duration::from_secs(10));
        let limit = Duration::from_millis(200);

        let started = Instant::now();
        assert!(!socket.wait(started + limit).unwrap(), "poll(2) ran out");
        let took = started.elapsed();
        assert!(took >= limit && took < Duration::from_secs(2), "{took:?}");
        // And it left nothing to the next read.
        assert_eq!(read_once(&mut socket), None);
        assert!(started.elapsed() < Duration::from_secs(2));
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
