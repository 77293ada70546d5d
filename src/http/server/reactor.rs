//! The reactor: one thread that owns the listener and every connection not at a worker,
//! all non-blocking, driven by one `mio::Poll`.
//!
//! It accepts, reads until a request is complete, queues complete requests for the
//! workers, takes connections back when their response is written (or finishes the write
//! itself), and enforces every per-connection deadline. Because `mio` is edge-triggered,
//! whenever a connection enters a new stage the reactor tries its I/O at once instead of
//! waiting for an event that may already have fired while a worker held it.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::connection::{After, Connection, Gone, LINGER_BUDGET, Stage};
use super::parse::Limits;
use super::reader::{Phase, Ready, Step};
use super::response::{self, Framing};
use super::transport::Transport;
use super::worker::{self, Job, Returned};
use super::{ServerConfig, Stopper};
use crate::http::client_addr::Cidr;
use crate::http::https::Https;
use crate::http::{Handler, Method, Refusal, Response};

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// Readiness events taken per `poll`.
const EVENT_CAPACITY: usize = 1024;
/// Connections accepted per loop turn, so a connection storm cannot starve reads.
const ACCEPT_BATCH: usize = 128;
/// Pause before accepting again when the process is out of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long a closing connection may keep sending before it is simply closed.
const LINGER: Duration = Duration::from_secs(2);
/// One read buffer for every connection: reads land here and only what arrived is
/// copied to the connection, so idle connections hold no buffer at all.
const SCRATCH_BYTES: usize = 64 * 1024;
/// The most a read takes while no body is being read: a head arrives in a few reads, and
/// a client pipelining requests it does not read the answers to gets no more than this
/// read ahead of the request being served.
const READ_AHEAD: usize = 4 * 1024;
/// Connections the reactor answered itself that it goes on with per loop turn, so that
/// clients pipelining probes cannot keep it from everything else.
const ANSWER_BATCH: usize = 256;
/// At most this often is a busy or over-capacity refusal logged.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// The timeouts the reactor enforces.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    header: Duration,
    body: Duration,
    keepalive: Duration,
    write: Duration,
    linger: Duration,
}

impl Timeouts {
    fn shortest(&self) -> Duration {
        [
            self.header,
            self.body,
            self.keepalive,
            self.write,
            self.linger,
        ]
        .into_iter()
        .min()
        .unwrap_or(LINGER)
    }
}

/// A connection's place in the table.
#[derive(Debug)]
enum Slot {
    Free {
        next: Option<usize>,
    },
    Here(Connection),
    /// At a worker; the slot (and so the token) stays reserved until it comes back.
    /// `readable`: readiness was reported meanwhile.
    Away {
        readable: bool,
    },
}

/// Connections by token, with a free list so tokens are reused.
#[derive(Debug, Default)]
struct Table {
    slots: Vec<Slot>,
    free: Option<usize>,
    /// Connections open, here or away: what `max_connections` limits.
    live: usize,
    /// Each slot's peer address, kept while the connection is away too.
    peer_of: Vec<Option<IpAddr>>,
    /// Connections open per peer address: what `max_connections_per_peer` limits.
    per_peer: HashMap<IpAddr, usize>,
    /// Body bytes that connections here or away may hold, reserved when a body starts
    /// and released when its request is done: what `body_budget` limits.
    body_reserved: usize,
}

impl Table {
    fn insert(&mut self, conn: Connection) -> usize {
        self.live += 1;
        let ip = conn.peer.ip().to_canonical();
        *self.per_peer.entry(ip).or_insert(0) += 1;
        let i = self.place(conn);
        if self.peer_of.len() <= i {
            self.peer_of.resize(i + 1, None);
        }
        self.peer_of[i] = Some(ip);
        i
    }

    /// Connections open from `ip`.
    fn count_from(&self, ip: IpAddr) -> usize {
        self.per_peer.get(&ip).copied().unwrap_or(0)
    }

    fn peek(&self, i: usize) -> Option<&Connection> {
        match self.slots.get(i) {
            Some(Slot::Here(conn)) => Some(conn),
            _ => None,
        }
    }

    fn place(&mut self, conn: Connection) -> usize {
        match self.free {
            Some(i) => {
                self.free = match self.slots[i] {
                    Slot::Free { next } => next,
                    _ => None,
                };
                self.slots[i] = Slot::Here(conn);
                i
            }
            None => {
                self.slots.push(Slot::Here(conn));
                self.slots.len() - 1
            }
        }
    }

    fn get(&mut self, i: usize) -> Option<&mut Connection> {
        match self.slots.get_mut(i) {
            Some(Slot::Here(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Hands a connection out, keeping its slot.
    fn lend(&mut self, i: usize) -> Option<Connection> {
        match self.slots.get_mut(i) {
            Some(slot @ Slot::Here(_)) => {
                match std::mem::replace(slot, Slot::Away { readable: false }) {
                    Slot::Here(conn) => Some(conn),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn give_back(&mut self, i: usize, mut conn: Connection) {
        if let Some(slot @ Slot::Away { .. }) = self.slots.get_mut(i) {
            if let Slot::Away { readable: true } = slot {
                conn.maybe_readable = true;
            }
            *slot = Slot::Here(conn);
        }
    }

    /// Notes readiness reported for a connection that is away at a worker.
    fn mark_away_readable(&mut self, i: usize) {
        if let Some(Slot::Away { readable }) = self.slots.get_mut(i) {
            *readable = true;
        }
    }

    /// Frees a slot, here or away; dropping the connection closes its socket.
    fn remove(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            match slot {
                Slot::Free { .. } => return,
                Slot::Here(conn) => self.body_reserved -= std::mem::take(&mut conn.reserved),
                // Its reservation is released when it comes back.
                Slot::Away { .. } => {}
            }
            *slot = Slot::Free { next: self.free };
            self.free = Some(i);
            self.live -= 1;
            if let Some(ip) = self.peer_of.get_mut(i).and_then(Option::take) {
                if let Some(n) = self.per_peer.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_peer.remove(&ip);
                    }
                }
            }
        }
    }
}

pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    /// This turn's ready connections, and whether the peer's FIN came with the event.
    tokens: Vec<(Token, bool)>,
    listener: Option<TcpListener>,
    table: Table,
    max_connections: usize,
    max_connections_per_peer: usize,
    uncapped_peers: Vec<Cidr>,
    /// Connections with no request under way (just accepted, or idle between requests),
    /// oldest first, each with the idle spell it was queued for; entries whose
    /// connection moved on are skipped when met. At the cap the oldest is closed to make
    /// room, so that one client's idle connections cannot lock everyone else out.
    idle: VecDeque<(usize, u64)>,
    next_spell: u64,
    limits: Limits,
    timeouts: Timeouts,
    /// How much of a too-large declared body is discarded after the 413.
    max_discard_bytes: u64,
    /// Body bytes all connections together may hold (see `Table::body_reserved`).
    body_budget: usize,
    shutdown_timeout: Duration,
    jobs: SyncSender<Job>,
    returned: Receiver<Returned>,
    /// For requests it answers itself (`Handler::is_immediate`).
    handler: Arc<dyn Handler>,
    /// Connections holding such an answer, each once, for the loop to go on with: going
    /// on reads the next pipelined request, which may be answered here too, and doing
    /// that at once would recurse through a pipeline without bound.
    answered: VecDeque<usize>,
    stopper: Stopper,
    scratch: Vec<u8>,
    /// No deadline falls before this, so the table is only swept then.
    next_sweep: Instant,
    /// Sweeps are at least this far apart, bounding their cost with many connections.
    sweep_gap: Duration,
    /// Accepting is paused until then after running out of descriptors.
    accept_resume: Option<Instant>,
    /// The last accept batch was cut short: accept again without waiting for an event.
    accept_more: bool,
    starved: bool,
    last_refusal_log: Option<Instant>,
    /// Set once a graceful stop began: the time by which `run` returns.
    drain_deadline: Option<Instant>,
    /// The certificate when the listener speaks HTTPS.
    https: Option<Arc<Https>>,
}

impl Reactor {
    pub(crate) fn new(
        poll: Poll,
        listener: TcpListener,
        config: &ServerConfig,
        jobs: SyncSender<Job>,
        returned: Receiver<Returned>,
        handler: Arc<dyn Handler>,
        stopper: Stopper,
    ) -> Reactor {
        let timeouts = Timeouts {
            header: config.header_timeout,
            body: config.body_timeout,
            keepalive: config.keepalive_timeout,
            write: config.write_timeout,
            linger: LINGER.min(config.write_timeout),
        };
        let sweep_gap =
            (timeouts.shortest() / 64).clamp(Duration::from_millis(1), Duration::from_millis(100));
        Reactor {
            poll,
            events: Events::with_capacity(EVENT_CAPACITY),
            tokens: Vec::with_capacity(EVENT_CAPACITY),
            listener: Some(listener),
            table: Table::default(),
            max_connections: config.max_connections.max(1),
            max_connections_per_peer: config.max_connections_per_peer,
            uncapped_peers: config.uncapped_peers.clone(),
            idle: VecDeque::new(),
            next_spell: 0,
            limits: Limits {
                max_header_bytes: config.max_header_bytes,
                max_headers: config.max_headers,
                max_body_bytes: config.max_body_bytes,
            },
            timeouts,
            max_discard_bytes: config.max_discard_bytes,
            body_budget: config.body_budget_bytes.max(config.max_body_bytes),
            shutdown_timeout: config.shutdown_timeout,
            jobs,
            returned,
            handler,
            answered: VecDeque::new(),
            stopper,
            scratch: vec![0; SCRATCH_BYTES],
            next_sweep: Instant::now() + timeouts.shortest(),
            sweep_gap,
            accept_resume: None,
            accept_more: false,
            starved: false,
            last_refusal_log: None,
            drain_deadline: None,
            https: None,
        }
    }

    /// Speaks TLS with `https`'s certificate on every connection accepted.
    pub(crate) fn with_https(mut self, https: Option<Arc<Https>>) -> Reactor {
        self.https = https;
        self
    }

    /// Serves until a stop is requested and drained; returns the drain deadline, by which
    /// the workers too should be done.
    pub(crate) fn run(mut self) -> io::Result<Instant> {
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            self.tokens.clear();
            self.tokens.extend(
                self.events
                    .iter()
                    .map(|e| (e.token(), e.is_read_closed() || e.is_error())),
            );
            let mut listener_ready = false;
            for k in 0..self.tokens.len() {
                match self.tokens[k] {
                    (LISTENER, _) => listener_ready = true,
                    (WAKER, _) => {}
                    (Token(i), hup) => self.drive(i, hup, now),
                }
            }
            self.take_returned(now);
            self.flush_answered(now);
            if self.stopper.is_stopped() && self.drain_deadline.is_none() {
                self.begin_drain(now);
            }
            if self.accept_resume.is_some_and(|t| now >= t) {
                self.accept_resume = None;
                listener_ready = true;
            }
            if (listener_ready || self.accept_more) && self.accept_resume.is_none() {
                self.accept(now);
            }
            if now >= self.next_sweep {
                self.sweep(now);
            }
            if let Some(deadline) = self.drain_deadline {
                if self.table.live == 0 || now >= deadline {
                    return Ok(deadline);
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if self.accept_more || !self.answered.is_empty() {
            return Duration::ZERO;
        }
        let mut wake = self.next_sweep;
        if let Some(t) = self.accept_resume {
            wake = wake.min(t);
        }
        if let Some(t) = self.drain_deadline {
            wake = wake.min(t);
        }
        wake.saturating_duration_since(now)
    }

    /// Does whatever the connection's stage calls for. `hup`: the client's FIN (or an
    /// error) came with this event, so reading must go on to the end of the stream: with
    /// edge-triggered readiness nothing will be reported again.
    fn drive(&mut self, i: usize, hup: bool, now: Instant) {
        let Some(conn) = self.table.get(i) else {
            return self.table.mark_away_readable(i);
        };
        conn.hup |= hup;
        match conn.stage {
            Stage::Fresh | Stage::Reading(_) => self.drive_read(i, now),
            Stage::Writing(_) => {
                // The event may be input (a pipelined request): remember to look.
                conn.maybe_readable = true;
                self.drive_write(i, now);
            }
            Stage::Lingering => {
                if conn.discard_input(&mut self.scratch).is_err() {
                    self.table.remove(i);
                }
            }
        }
    }

    /// Parses what is buffered and reads more, until a request is complete, the client
    /// has nothing more for now, or the connection ends.
    fn drive_read(&mut self, i: usize, now: Instant) {
        // A read shorter than the scratch buffer emptied the socket: readiness is edge
        // triggered, so new input will be reported, and reading again now would only
        // meet EAGAIN.
        let mut drained = false;
        loop {
            // An interim `100 Continue` still partly unsent goes out before anything else.
            match self.flush(i) {
                Ok(true) => {}
                Ok(false) => return,
                Err(Gone) => return self.table.remove(i),
            }
            let Some(conn) = self.table.get(i) else {
                return;
            };
            match conn.reader.advance(&mut conn.buf, &self.limits) {
                Step::NeedMore => {}
                Step::CheckHead => {
                    if self.check_head(i, now) {
                        continue;
                    }
                    return;
                }
                Step::Ready(ready) => return self.schedule(i, ready, now),
                Step::Reject(rejection) => {
                    return self.reject(i, rejection.status, &rejection.message, false, now);
                }
            }
            let phase = conn.reader.phase(&conn.buf);
            self.enter_phase(i, phase, now);
            if self.drain_deadline.is_some() && phase != Phase::Body {
                // Draining: a connection with no complete head is not a request in flight.
                return self.table.remove(i);
            }
            let Some(conn) = self.table.get(i) else {
                return;
            };
            if drained {
                conn.maybe_readable = false;
                conn.trim();
                return self.flush_handshake(i);
            }
            // SECURITY: only a few KiB are read ahead of what the request being read can
            // use, so a connection holds little memory whatever its client sends.
            let cap = match phase {
                Phase::Body => conn.reader.body_bound(self.limits.max_body_bytes),
                Phase::Idle | Phase::Head => 0,
            }
            .clamp(READ_AHEAD, self.scratch.len());
            match conn.read_once(&mut self.scratch[..cap]) {
                Ok(Some(n)) => drained = n < cap && !conn.hup,
                Ok(None) => {
                    conn.maybe_readable = false;
                    conn.trim();
                    return self.flush_handshake(i);
                }
                Err(Gone) => {
                    if conn.stream.is_misdirected() {
                        return self.reject(
                            i,
                            400,
                            "this port speaks HTTPS: use an https:// URL",
                            false,
                            now,
                        );
                    }
                    return self.table.remove(i);
                }
            }
        }
    }

    /// A TLS handshake answers while it reads: records the socket did not take then wait
    /// for writability, or the client would wait for them until the head timeout.
    /// Plain connections never have any.
    fn flush_handshake(&mut self, i: usize) {
        if self.table.get(i).is_some_and(|c| c.stream.wants_write()) && self.flush(i).is_err() {
            self.table.remove(i);
        }
    }

    /// Writes what the connection has pending, asking for writability while the socket
    /// is full and no longer once it has drained: a connection registered for it all
    /// its life would wake the reactor after every response for nothing.
    fn flush(&mut self, i: usize) -> Result<bool, Gone> {
        let Some(conn) = self.table.get(i) else {
            return Err(Gone);
        };
        let done = conn.flush()?;
        if done == conn.wants_writable {
            let interest = if done {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(i), interest)
                .is_err()
            {
                return Err(Gone);
            }
            conn.wants_writable = !done;
        }
        Ok(done)
    }

    /// Moves a reading connection to `phase`, starting that phase's deadline if it is
    /// new. Deadlines are absolute: trickling bytes never extends them.
    fn enter_phase(&mut self, i: usize, phase: Phase, now: Instant) {
        let t = self.timeouts;
        let Some(conn) = self.table.get(i) else {
            return;
        };
        let deadline = match (conn.stage, phase) {
            // A new connection's header time runs from the accept.
            (Stage::Fresh, Phase::Idle) => return,
            (Stage::Fresh, Phase::Head) => conn.deadline,
            (Stage::Reading(old), new) if old == new => return,
            (_, Phase::Idle) => now + t.keepalive,
            (_, Phase::Head) => now + t.header,
            (_, Phase::Body) => now + t.body,
        };
        conn.stage = Stage::Reading(phase);
        conn.deadline = deadline;
    }

    /// A head with a body is complete: lets the handler refuse it from the head alone,
    /// then takes room for the body in the shared budget, then lets the body be read.
    /// Returns whether reading goes on.
    fn check_head(&mut self, i: usize, now: Instant) -> bool {
        let Some(conn) = self.table.get(i) else {
            return false;
        };
        let Some(pending) = conn.reader.pending_request() else {
            return true;
        };
        let mut request = pending.clone();
        let peer = conn.peer;
        request.peer = Some(peer);
        let bound = conn.reader.body_bound(self.limits.max_body_bytes);
        // What of a declared body is yet to come is drained after a refusal.
        let unread = match request.header("content-length") {
            Some(_) => u64::try_from(bound.saturating_sub(conn.buf.len())).unwrap_or(0),
            None => 0,
        };
        let head_only = request.method == Method::Head;
        if let Some(resp) = self.handler.refuse_head(&request) {
            self.refuse_head(i, &resp, head_only, unread, now);
            return false;
        }
        if self.table.body_reserved + bound > self.body_budget {
            if self.should_log_refusal(now) {
                log::warn!(
                    "request bodies in progress fill their budget of {} bytes: answering 503",
                    self.body_budget
                );
            }
            self.handler.refused(&Refusal {
                status: 503,
                peer,
                request: Some(&request),
            });
            let resp = response::layer_error(503, "the server is busy; try again");
            self.refuse_head(i, &resp, head_only, unread, now);
            return false;
        }
        let Some(conn) = self.table.get(i) else {
            return false;
        };
        conn.reserved = bound;
        if conn.reader.allow_body(&conn.buf) {
            conn.out.extend_from_slice(response::CONTINUE);
        }
        self.table.body_reserved += bound;
        true
    }

    /// Answers a request refused from its head, then closes, draining what is still to
    /// come of its declared body (within the discard bound) so the answer is not lost.
    fn refuse_head(
        &mut self,
        i: usize,
        resp: &Response,
        head_only: bool,
        unread: u64,
        now: Instant,
    ) {
        let Some(conn) = self.table.get(i) else {
            return;
        };
        conn.out.clear();
        conn.out_pos = 0;
        response::append(
            &mut conn.out,
            resp,
            Framing {
                head_only,
                ..Framing::CLOSE
            },
        );
        conn.buf = Vec::new();
        conn.unread_body = unread;
        conn.stage = Stage::Writing(After::Close);
        conn.deadline = now + self.timeouts.write;
        self.drive_write(i, now);
    }

    /// Queues a complete request for the workers, or answers 503 if the queue is full.
    /// A request the handler can answer at once is answered here instead.
    fn schedule(&mut self, i: usize, mut ready: Box<Ready>, now: Instant) {
        if self.handler.is_immediate(&ready.request) {
            return self.answer(i, *ready, now);
        }
        let Some(mut conn) = self.table.lend(i) else {
            return;
        };
        conn.trim();
        conn.unread_body = ready.unread_body;
        ready.request.peer = Some(conn.peer);
        let job = Job {
            token: Token(i),
            conn,
            ready,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                let head_only = job.ready.head_only;
                self.handler.refused(&Refusal {
                    status: 503,
                    peer: job.conn.peer,
                    request: Some(&job.ready.request),
                });
                self.table.give_back(i, job.conn);
                if self.should_log_refusal(now) {
                    log::warn!("all workers busy and the queue is full: answering 503");
                }
                self.answer_layer_error(i, 503, "the server is busy; try again", head_only, now);
            }
        }
    }

    /// Runs the handler on this thread and writes what the socket takes now; the loop
    /// goes on from there (to the next pipelined request), so answering never recurses.
    fn answer(&mut self, i: usize, mut ready: Ready, now: Instant) {
        let Some(conn) = self.table.get(i) else {
            return;
        };
        conn.trim();
        conn.unread_body = ready.unread_body;
        ready.request.peer = Some(conn.peer);
        let released = std::mem::take(&mut conn.reserved);
        worker::respond(self.handler.as_ref(), &self.stopper, conn, ready);
        conn.deadline = now + self.timeouts.write;
        self.table.body_reserved -= released;
        if self.flush(i).is_err() {
            return self.table.remove(i);
        }
        if let Some(conn) = self.table.get(i) {
            if !conn.answered {
                conn.answered = true;
                self.answered.push_back(i);
            }
        }
    }

    /// Goes on with the connections `answer` left, each at most once per turn: one
    /// client pipelining probes cannot push the others back.
    fn flush_answered(&mut self, now: Instant) {
        let turn = self.answered.len().min(ANSWER_BATCH);
        for _ in 0..turn {
            let Some(i) = self.answered.pop_front() else {
                return;
            };
            // The slot may have been closed (even reused) meanwhile, or written by an
            // event already: `drive_write` then finds nothing to do.
            if let Some(conn) = self.table.get(i) {
                conn.answered = false;
            }
            self.drive_write(i, now);
        }
    }

    /// Answers with an error of the layer's own and closes after it.
    fn reject(&mut self, i: usize, status: u16, message: &str, head_only: bool, now: Instant) {
        let Some(conn) = self.table.get(i) else {
            return;
        };
        self.handler.refused(&Refusal {
            status,
            peer: conn.peer,
            request: conn.reader.pending_request(),
        });
        self.answer_layer_error(i, status, message, head_only, now);
    }

    /// Writes one of the layer's own errors and closes after it, without reporting it.
    fn answer_layer_error(
        &mut self,
        i: usize,
        status: u16,
        message: &str,
        head_only: bool,
        now: Instant,
    ) {
        let Some(conn) = self.table.get(i) else {
            return;
        };
        let resp = response::layer_error(status, message);
        response::append(
            &mut conn.out,
            &resp,
            Framing {
                head_only,
                ..Framing::CLOSE
            },
        );
        conn.buf = Vec::new();
        conn.stage = Stage::Writing(After::Close);
        conn.deadline = now + self.timeouts.write;
        self.drive_write(i, now);
    }

    /// Writes pending output, then moves on to the next request or to closing.
    fn drive_write(&mut self, i: usize, now: Instant) {
        let Some(conn) = self.table.get(i) else {
            return;
        };
        let after = match conn.stage {
            Stage::Writing(after) => after,
            _ => return,
        };
        match self.flush(i) {
            Ok(true) => {}
            Ok(false) => return,
            Err(Gone) => return self.table.remove(i),
        }
        let Some(conn) = self.table.get(i) else {
            return;
        };
        if after == After::KeepAlive && self.drain_deadline.is_none() {
            conn.stage = Stage::Reading(Phase::Idle);
            conn.deadline = now + self.timeouts.keepalive;
            self.queue_idle(i);
            let Some(conn) = self.table.get(i) else {
                return;
            };
            // Pipelined bytes may be buffered already, or readiness may have been
            // reported while a worker held the connection: then look now. Otherwise
            // the next request will be reported, and a read now would only see EAGAIN.
            if conn.maybe_readable || !conn.buf.is_empty() {
                self.drive_read(i, now);
            } else {
                conn.trim();
            }
        } else {
            // A declared body within the discard bound is drained to its last byte, with
            // the body timeout to arrive in: a proxy that buffered it sends all of it and
            // fails (and marks this replica down) if the connection resets under it.
            let unread = std::mem::take(&mut conn.unread_body);
            let (mut deadline, budget) = if unread > 0 && unread <= self.max_discard_bytes {
                (now + self.timeouts.body, unread)
            } else {
                (now + self.timeouts.linger, LINGER_BUDGET)
            };
            if let Some(drain) = self.drain_deadline {
                deadline = deadline.min(drain);
            }
            conn.start_linger(deadline, budget);
            if conn.discard_input(&mut self.scratch).is_err() {
                self.table.remove(i);
            }
        }
    }

    /// Takes back connections whose response a worker wrote, in whole or in part.
    fn take_returned(&mut self, now: Instant) {
        while let Ok(Returned {
            token: Token(i),
            mut conn,
            broken,
        }) = self.returned.try_recv()
        {
            // The request and its body are done with.
            self.table.body_reserved -= std::mem::take(&mut conn.reserved);
            if broken {
                self.table.remove(i);
                continue;
            }
            conn.deadline = now + self.timeouts.write;
            self.table.give_back(i, conn);
            self.drive_write(i, now);
        }
    }

    fn accept(&mut self, now: Instant) {
        self.accept_more = false;
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.starved {
                        self.starved = false;
                        log::info!("accepting connections again");
                    }
                    let ip = peer.ip().to_canonical();
                    if self.max_connections_per_peer > 0
                        && self.table.count_from(ip) >= self.max_connections_per_peer
                        && !self.uncapped_peers.iter().any(|c| c.contains(ip))
                    {
                        self.refuse(stream, peer, now, "one address has too many connections");
                        continue;
                    }
                    if self.table.live >= self.max_connections && !self.close_oldest_idle() {
                        self.refuse(stream, peer, now, "the connection cap is reached");
                        continue;
                    }
                    // Responses leave in one write; Nagle would only delay them.
                    let _ = stream.set_nodelay(true);
                    let config = self.https.as_ref().map(|h| h.current());
                    let stream = match Transport::new(stream, config.as_ref()) {
                        Ok(s) => s,
                        Err(e) => {
                            log::warn!("cannot start TLS for a connection from {peer}: {e}");
                            continue;
                        }
                    };
                    let conn = Connection::new(stream, peer, now + self.timeouts.header);
                    let i = self.table.insert(conn);
                    let registered = match self.table.get(i) {
                        Some(conn) => self.poll.registry().register(
                            &mut conn.stream,
                            Token(i),
                            Interest::READABLE,
                        ),
                        None => Ok(()),
                    };
                    if let Err(e) = registered {
                        log::warn!("cannot watch a new connection from {peer}: {e}");
                        self.table.remove(i);
                    } else {
                        self.queue_idle(i);
                    }
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
                        self.accept_resume = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                },
            }
        }
        self.accept_more = true;
    }

    /// Queues a connection that just became idle (or was just accepted) for
    /// [`close_oldest_idle`](Self::close_oldest_idle).
    fn queue_idle(&mut self, i: usize) {
        let spell = self.next_spell;
        self.next_spell += 1;
        if let Some(conn) = self.table.get(i) {
            conn.idle_spell = spell;
            self.idle.push_back((i, spell));
        }
        // Stale entries are dropped lazily; this bounds how many can pile up.
        if self.idle.len() > 2 * self.max_connections + 64 {
            let table = &self.table;
            self.idle.retain(|&(i, spell)| is_idle_in(table, i, spell));
        }
    }

    /// Closes the connection idle the longest, if any: returns whether one was closed.
    fn close_oldest_idle(&mut self) -> bool {
        while let Some((i, spell)) = self.idle.pop_front() {
            if is_idle_in(&self.table, i, spell) {
                self.table.remove(i);
                return true;
            }
        }
        false
    }

    /// Over a connection cap: a fast canned 503 and close, never a silent hang.
    fn refuse(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant, why: &str) {
        if self.should_log_refusal(now) {
            log::warn!("{why}: answering 503");
        }
        self.handler.refused(&Refusal {
            status: 503,
            peer,
            request: None,
        });
        if self.https.is_some() {
            // A TLS client could not read a plain answer: the close alone tells it.
            return;
        }
        // Whatever the client sent already is read, so closing does not reset the
        // connection before it sees the answer.
        let _ = stream.read(&mut self.scratch);
        let mut out = Vec::new();
        let resp = response::layer_error(503, "the server has too many connections; try again");
        response::append(&mut out, &resp, Framing::CLOSE);
        // Non-blocking: a fresh socket's buffer takes these few hundred bytes at once,
        // and if it does not, this client is not worth waiting for.
        let _ = stream.write(&out);
        let _ = stream.shutdown(Shutdown::Write);
    }

    fn should_log_refusal(&mut self, now: Instant) -> bool {
        let due = self
            .last_refusal_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        if due {
            self.last_refusal_log = Some(now);
        }
        due
    }

    /// Stops accepting and closes every connection that has no request in flight.
    fn begin_drain(&mut self, now: Instant) {
        self.drain_deadline = Some(now + self.shutdown_timeout);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_more = false;
        self.accept_resume = None;
        for i in 0..self.table.slots.len() {
            let idle = self.table.get(i).is_some_and(|c| {
                matches!(
                    c.stage,
                    Stage::Fresh | Stage::Reading(Phase::Idle | Phase::Head)
                )
            });
            if idle {
                self.table.remove(i);
            }
        }
    }

    /// Acts on every deadline that has passed and finds the next one.
    fn sweep(&mut self, now: Instant) {
        // Any deadline set after this sweep is at least the shortest timeout away.
        let mut next = now + self.timeouts.shortest();
        for i in 0..self.table.slots.len() {
            if self.table.get(i).is_some_and(|c| c.deadline <= now) {
                self.expire(i, now);
            }
            if let Some(conn) = self.table.get(i) {
                next = next.min(conn.deadline);
            }
        }
        self.next_sweep = next.max(now + self.sweep_gap);
    }

    fn expire(&mut self, i: usize, now: Instant) {
        let Some(conn) = self.table.get(i) else {
            return;
        };
        match conn.stage {
            // Nothing asked, nothing to answer.
            Stage::Fresh | Stage::Reading(Phase::Idle) => self.table.remove(i),
            Stage::Reading(Phase::Head) => {
                self.reject(
                    i,
                    408,
                    "the request head took too long to arrive",
                    false,
                    now,
                );
            }
            Stage::Reading(Phase::Body) => {
                let head_only = conn.reader.pending_method() == Some(&Method::Head);
                self.reject(
                    i,
                    408,
                    "the request body took too long to arrive",
                    head_only,
                    now,
                );
            }
            // A client that does not read its response, or will not stop sending.
            Stage::Writing(_) | Stage::Lingering => self.table.remove(i),
        }
    }
}

/// Whether slot `i` holds a connection still in the idle spell `spell`: just accepted
/// or between requests, with nothing under way.
fn is_idle_in(table: &Table, i: usize, spell: u64) -> bool {
    table.peek(i).is_some_and(|c| {
        c.idle_spell == spell && matches!(c.stage, Stage::Fresh | Stage::Reading(Phase::Idle))
    })
}

/// EMFILE, ENFILE, ENOBUFS or ENOMEM: the kind of accept failure that clears up by itself.
fn is_exhaustion(e: &io::Error) -> bool {
    use rustix::io::Errno;
    Errno::from_io_error(e).is_some_and(|errno| {
        [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM].contains(&errno)
    })
}
