//! One client connection: its non-blocking socket, the bytes read but not yet parsed, the
//! bytes still to be written, and what it is waiting for.
//!
//! A `Connection` is owned by exactly one thread at a time: the reactor while it is idle,
//! reading a request or finishing a write; a worker while its request runs. It moves
//! between them by value, so no lock guards it.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use super::reader::{Phase, Reader};
use super::transport::Transport;

/// What the connection does once its pending output is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// Read the next request.
    KeepAlive,
    /// Half-close and drain what the client still sends, then close.
    Close,
}

/// What the reactor is waiting for on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Just accepted, not a byte received yet: the header timeout runs from the accept.
    Fresh,
    /// Reading a request; the reader phase tells which timeout applies.
    Reading(Phase),
    /// Writing `out`, then `After`.
    Writing(After),
    /// Response sent and write side shut: discarding input until the client closes, so
    /// unread request bytes do not turn our close into a reset that destroys the response.
    Lingering,
}

/// Bytes discarded while lingering before the connection is simply closed, when no
/// larger declared body is being drained.
pub(crate) const LINGER_BUDGET: u64 = 256 * 1024;

/// A read or write that ends the connection.
#[derive(Debug)]
pub(crate) struct Gone;

#[derive(Debug)]
pub(crate) struct Connection {
    pub stream: Transport,
    pub peer: SocketAddr,
    /// Read but not yet consumed by the reader. Empty (and unallocated) while idle.
    pub buf: Vec<u8>,
    pub reader: Reader,
    /// Output not yet written, from `out_pos` on. Unallocated when nothing is pending.
    pub out: Vec<u8>,
    pub out_pos: usize,
    pub stage: Stage,
    /// When the current stage times out.
    pub deadline: Instant,
    /// Bytes still to discard while lingering before closing.
    linger_left: u64,
    /// Bytes of a too-large declared body the client has yet to send (see
    /// [`Ready::unread_body`](super::reader::Ready)).
    pub unread_body: u64,
    /// Readiness may have been reported that nobody read on (it came while the
    /// connection was away at a worker or busy writing): read before waiting again.
    pub maybe_readable: bool,
    /// Registered for writability too, because output is waiting on the socket.
    pub wants_writable: bool,
    /// Waiting in the reactor's queue of its own answers (at most once).
    pub answered: bool,
    /// Body bytes reserved in the reactor's budget for the request being read or run.
    pub reserved: usize,
    /// The client's FIN (or an error) was reported: read on to the end of the stream.
    pub hup: bool,
}

impl Connection {
    pub(crate) fn new(stream: Transport, peer: SocketAddr, deadline: Instant) -> Connection {
        Connection {
            stream,
            peer,
            buf: Vec::new(),
            reader: Reader::default(),
            out: Vec::new(),
            out_pos: 0,
            stage: Stage::Fresh,
            deadline,
            linger_left: 0,
            unread_body: 0,
            maybe_readable: true,
            wants_writable: false,
            answered: false,
            reserved: 0,
            hup: false,
        }
    }

    /// One read into `scratch`, appended to `buf`: `Ok(Some(n))` for `n` bytes,
    /// `Ok(None)` when the socket would block, `Err(Gone)` on EOF or error.
    ///
    /// One scratch buffer serves every connection; `buf` grows only by what actually
    /// arrived, which keeps idle and slow connections small.
    pub(crate) fn read_once(&mut self, scratch: &mut [u8]) -> Result<Option<usize>, Gone> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Err(Gone),
                Ok(n) => {
                    self.buf.extend_from_slice(&scratch[..n]);
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(_) => return Err(Gone),
            }
        }
    }

    /// Writes pending output until done or the socket would block. `Ok(true)` when all
    /// of it is written (and its memory released).
    pub(crate) fn flush(&mut self) -> Result<bool, Gone> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(Gone),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(_) => return Err(Gone),
            }
        }
        self.out = Vec::new();
        self.out_pos = 0;
        // Over TLS, records the socket did not take yet are still to go.
        self.stream.flush_pending().map_err(|_| Gone)
    }

    /// Shuts the write side and drops buffers, entering the lingering stage, in which at
    /// most `budget` more bytes are discarded before closing.
    pub(crate) fn start_linger(&mut self, deadline: Instant, budget: u64) {
        // Sends our FIN after the response; failure means the peer is gone already.
        let _ = self.stream.shutdown_write();
        self.buf = Vec::new();
        self.reader = Reader::default();
        self.stage = Stage::Lingering;
        self.deadline = deadline;
        self.linger_left = budget;
    }

    /// Discards input while lingering. `Err(Gone)` once the client closed, the socket
    /// failed, or the budget is spent: time to close. A budget spent exactly (a declared
    /// body drained to its last byte) leaves nothing unread, so the close is a clean FIN.
    pub(crate) fn discard_input(&mut self, scratch: &mut [u8]) -> Result<(), Gone> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Err(Gone),
                Ok(n) => {
                    let n = u64::try_from(n).unwrap_or(u64::MAX);
                    if n >= self.linger_left {
                        return Err(Gone);
                    }
                    self.linger_left -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(Gone),
            }
        }
    }

    /// Gives back memory a finished request no longer needs.
    pub(crate) fn trim(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        } else if self.buf.capacity() > 4 * self.buf.len().max(1024) {
            self.buf.shrink_to_fit();
        }
    }
}
