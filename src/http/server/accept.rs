//! Taking new connections: a bounded batch per loop turn, a pause when the process runs
//! out of descriptors or memory, the connection caps, and the canned 503 for a
//! connection over a cap.
//!
//! The listener is behind [`Listen`], so the batching and back-off are tested with a
//! scripted one instead of sockets.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};

use super::response::{self, Framing};
use crate::http::client_addr::Cidr;

/// Connections accepted per loop turn, so a connection storm cannot starve reads.
const ACCEPT_BATCH: usize = 128;
/// Pause before accepting again when the process is out of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Something connections are accepted from.
pub(crate) trait Listen {
    type Stream;
    fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        TcpListener::accept(self)
    }
}

/// When to accept: after the listener reports readiness, again at once after a batch
/// cut short, and not at all during a back-off.
#[derive(Debug, Default)]
pub(crate) struct Intake {
    /// Accepting is paused until then after running out of descriptors.
    resume: Option<Instant>,
    /// The last batch was cut short: accept again without waiting for an event.
    more: bool,
    /// A pause was logged; the next accepted connection logs the recovery.
    starved: bool,
}

impl Intake {
    /// Whether to accept this turn; `listener_ready`: the listener reported readiness.
    pub(crate) fn due(&mut self, listener_ready: bool, now: Instant) -> bool {
        if self.resume.is_some_and(|t| now >= t) {
            self.resume = None;
            return true;
        }
        (listener_ready || self.more) && self.resume.is_none()
    }

    /// Connections are waiting that no event will announce: poll without blocking.
    pub(crate) fn has_more(&self) -> bool {
        self.more
    }

    /// When a back-off ends, if one runs.
    pub(crate) fn resume_at(&self) -> Option<Instant> {
        self.resume
    }

    /// Accepts no more (a graceful stop began).
    pub(crate) fn stop(&mut self) {
        self.more = false;
        self.resume = None;
    }

    /// Accepts up to a batch of connections, handing each to `take`.
    pub(crate) fn accept<L: Listen>(
        &mut self,
        listener: &L,
        now: Instant,
        mut take: impl FnMut(L::Stream, SocketAddr),
    ) {
        self.more = false;
        for _ in 0..ACCEPT_BATCH {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.starved {
                        self.starved = false;
                        log::info!("accepting connections again");
                    }
                    take(stream, peer);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    // The client gave up before we got to it, or a signal: neither
                    // concerns the listener.
                    io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::PermissionDenied => continue,
                    _ => {
                        // Out of descriptors or memory (or anything unexpected): the
                        // pending connections stay in the backlog; pause, so closing
                        // connections can free resources, then try again.
                        if !self.starved {
                            self.starved = true;
                            let why = if is_exhaustion(&e) {
                                "out of file descriptors or memory"
                            } else {
                                "unexpected error"
                            };
                            log::warn!("accept failed ({why}: {e}); pausing new connections");
                        }
                        self.resume = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                },
            }
        }
        self.more = true;
    }
}

/// The connection caps.
#[derive(Clone, Debug)]
pub(crate) struct Caps {
    /// Open connections at most (at least 1).
    pub max_connections: usize,
    /// Open connections from one address at most; 0: no cap.
    pub max_per_peer: usize,
    /// Addresses the per-peer cap does not apply to (proxies that carry many clients).
    pub uncapped: Vec<Cidr>,
}

/// What the caps say of a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Admit,
    /// Its address has too many connections: refuse it.
    PeerFull,
    /// The table is full: make room by closing an idle connection, or refuse it.
    Full,
}

impl Caps {
    /// Whether a connection from `ip` may join, `from_peer` connections being open from
    /// it already and `live` in all.
    pub(crate) fn admit(&self, ip: IpAddr, from_peer: usize, live: usize) -> Admission {
        if self.max_per_peer > 0
            && from_peer >= self.max_per_peer
            && !self.uncapped.iter().any(|c| c.contains(ip))
        {
            Admission::PeerFull
        } else if live >= self.max_connections {
            Admission::Full
        } else {
            Admission::Admit
        }
    }
}

/// Over a connection cap: a fast canned 503 and close, never a silent hang.
pub(crate) fn answer_503(mut stream: TcpStream, scratch: &mut [u8]) {
    // Whatever the client sent already is read, so closing does not reset the
    // connection before it sees the answer.
    let _ = stream.read(scratch);
    let mut out = Vec::new();
    let resp = response::layer_error(503, "the server has too many connections; try again");
    response::append(&mut out, &resp, Framing::CLOSE);
    // Non-blocking: a fresh socket's buffer takes these few hundred bytes at once,
    // and if it does not, this client is not worth waiting for.
    let _ = stream.write(&out);
    let _ = stream.shutdown(Shutdown::Write);
}

/// EMFILE, ENFILE, ENOBUFS or ENOMEM: the kind of accept failure that clears up by itself.
fn is_exhaustion(e: &io::Error) -> bool {
    use rustix::io::Errno;
    Errno::from_io_error(e).is_some_and(|errno| {
        [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM].contains(&errno)
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use rustix::io::Errno;

    use super::*;

    /// A listener that answers from a script, then would block.
    #[derive(Default)]
    struct Scripted(RefCell<VecDeque<io::Result<u32>>>);

    impl Scripted {
        fn with(results: impl IntoIterator<Item = io::Result<u32>>) -> Scripted {
            Scripted(RefCell::new(results.into_iter().collect()))
        }

        fn left(&self) -> usize {
            self.0.borrow().len()
        }
    }

    impl Listen for Scripted {
        type Stream = u32;
        fn accept(&self) -> io::Result<(u32, SocketAddr)> {
            let next = self.0.borrow_mut().pop_front();
            let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
            next.unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into()))
                .map(|n| (n, peer))
        }
    }

    fn errno(e: Errno) -> io::Result<u32> {
        Err(io::Error::from_raw_os_error(e.raw_os_error()))
    }

    fn run(intake: &mut Intake, listener: &Scripted, now: Instant) -> Vec<u32> {
        let mut taken = Vec::new();
        intake.accept(listener, now, |n, _| taken.push(n));
        taken
    }

    #[test]
    fn accepting_stops_when_the_listener_would_block() {
        let listener = Scripted::with([Ok(1), Ok(2)]);
        let mut intake = Intake::default();
        assert_eq!(run(&mut intake, &listener, Instant::now()), [1, 2]);
        assert!(!intake.has_more());
        assert!(
            !intake.due(false, Instant::now()),
            "nothing to do until an event"
        );
    }

    #[test]
    fn batch_is_cut_at_128_and_accepting_goes_on_next_turn_without_an_event() {
        let listener = Scripted::with((0..200).map(Ok));
        let mut intake = Intake::default();
        let now = Instant::now();
        assert_eq!(run(&mut intake, &listener, now).len(), ACCEPT_BATCH);
        assert!(intake.has_more());
        assert!(intake.due(false, now));
        assert_eq!(run(&mut intake, &listener, now).len(), 200 - ACCEPT_BATCH);
        assert!(!intake.has_more());
    }

    #[test]
    fn client_giving_up_before_its_accept_is_skipped() {
        let listener = Scripted::with([
            Ok(1),
            Err(io::ErrorKind::ConnectionAborted.into()),
            Err(io::ErrorKind::Interrupted.into()),
            errno(Errno::PERM),
            Ok(2),
        ]);
        let mut intake = Intake::default();
        assert_eq!(run(&mut intake, &listener, Instant::now()), [1, 2]);
        assert_eq!(intake.resume_at(), None);
    }

    #[test]
    fn running_out_of_descriptors_pauses_accepting_for_the_back_off() {
        let listener = Scripted::with([Ok(1), errno(Errno::MFILE), Ok(2)]);
        let mut intake = Intake::default();
        let now = Instant::now();
        assert_eq!(run(&mut intake, &listener, now), [1]);
        assert_eq!(
            listener.left(),
            1,
            "the next connection stays in the backlog"
        );
        assert_eq!(intake.resume_at(), Some(now + ACCEPT_BACKOFF));
        let during = now + ACCEPT_BACKOFF / 2;
        assert!(
            !intake.due(true, during),
            "readiness does not end the pause"
        );
        assert!(
            intake.due(false, now + ACCEPT_BACKOFF),
            "the pause ends by itself"
        );
        assert_eq!(intake.resume_at(), None);
        assert_eq!(run(&mut intake, &listener, now + ACCEPT_BACKOFF), [2]);
    }

    #[test]
    fn graceful_stop_forgets_a_pause_and_a_cut_batch() {
        let listener = Scripted::with([errno(Errno::NFILE)]);
        let mut intake = Intake::default();
        let now = Instant::now();
        run(&mut intake, &listener, now);
        intake.stop();
        assert_eq!(intake.resume_at(), None);
        assert!(!intake.has_more());
        assert!(!intake.due(false, now + ACCEPT_BACKOFF));
    }

    #[test]
    fn exhaustion_is_told_apart_from_other_accept_failures() {
        for e in [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM] {
            assert!(is_exhaustion(&io::Error::from_raw_os_error(
                e.raw_os_error()
            )));
        }
        assert!(!is_exhaustion(&io::Error::from_raw_os_error(
            Errno::INVAL.raw_os_error()
        )));
        assert!(!is_exhaustion(&io::Error::other("no errno")));
    }

    fn caps(max_connections: usize, max_per_peer: usize) -> Caps {
        Caps {
            max_connections,
            max_per_peer,
            uncapped: vec!["10.0.0.0/8".parse().unwrap()],
        }
    }

    #[test]
    fn peer_at_its_cap_is_refused_unless_it_is_uncapped() {
        let caps = caps(100, 2);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(caps.admit(client, 1, 10), Admission::Admit);
        assert_eq!(caps.admit(client, 2, 10), Admission::PeerFull);
        assert_eq!(caps.admit(proxy, 50, 10), Admission::Admit);
    }

    #[test]
    fn no_per_peer_cap_when_it_is_zero() {
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(caps(100, 0).admit(client, 99, 99), Admission::Admit);
    }

    #[test]
    fn full_table_asks_for_room_after_the_peer_check() {
        let caps = caps(10, 2);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(caps.admit(client, 0, 10), Admission::Full);
        assert_eq!(caps.admit(client, 2, 10), Admission::PeerFull);
    }
}
