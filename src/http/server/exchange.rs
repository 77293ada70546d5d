//! The exchange on each connection the reactor holds: read until a request is complete,
//! hand it to a worker (or answer it here), write the response, then read the next one
//! or close, answering by itself what it refuses (400/408/413/431/501/503/505).
//!
//! [`Exchanges`] owns every connection not at a worker, in a [`Slots`] table, and the
//! shared body budget. Because `mio` is edge-triggered, whenever a connection enters a
//! new stage its I/O is tried at once instead of waiting for an event that may already
//! have fired while a worker held it. Everything the layer answers by itself goes
//! through [`Handler::refused`], so it is counted and logged like the handler's own.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::Stopper;
use super::accept;
use super::connection::{After, Connection, Gone, Stage};
use super::deadlines::{self, Expiry, Timeouts};
use super::handoff::JobSender;
use super::parse::Limits;
use super::reader::{Phase, Ready, Step};
use super::response::{self, Framing};
use super::slots::Slots;
use super::transport::Transport;
use super::worker::{self, Job, Returned};
use crate::http::https::Https;
use crate::http::{Handler, Method, Refusal, Response};

/// One read buffer for every connection: reads land here and only what arrived is
/// copied to the connection, so idle connections hold no buffer at all.
const SCRATCH_BYTES: usize = 64 * 1024;
/// The most a read takes while no body is being read: a head arrives in a few reads, and
/// a client pipelining requests it does not read the answers to gets no more than this
/// read ahead of the request being served.
const READ_AHEAD: usize = 4 * 1024;
/// Connections the layer answered itself that it goes on with per loop turn, so that
/// clients pipelining probes cannot keep it from everything else.
const ANSWER_BATCH: usize = 256;
/// At most this often is a busy or over-capacity refusal logged.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What the exchanges need to know of the server's configuration.
pub(crate) struct Settings {
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// How much of a too-large declared body is discarded after the 413.
    pub max_discard_bytes: u64,
    /// Body bytes all connections together may hold (see [`Exchanges::body_reserved`]).
    pub body_budget: usize,
}

/// Every connection on the reactor's thread and the exchange under way on each.
pub(crate) struct Exchanges {
    registry: Registry,
    table: Slots<Connection>,
    settings: Settings,
    /// Body bytes that connections here or away may hold, reserved when a body starts
    /// and released when its request is done: what `body_budget` limits.
    body_reserved: usize,
    jobs: JobSender<Job>,
    /// For requests it answers itself (`Handler::is_immediate`) and for telling it of
    /// the layer's own answers (`Handler::refused`).
    handler: Arc<dyn Handler>,
    stopper: Stopper,
    /// Connections holding such an answer, each once, for the loop to go on with: going
    /// on reads the next pipelined request, which may be answered here too, and doing
    /// that at once would recurse through a pipeline without bound.
    answered: VecDeque<usize>,
    scratch: Vec<u8>,
    last_refusal_log: Option<Instant>,
    /// Set once a graceful stop began: no connection lingers past it.
    draining: Option<Instant>,
    /// The certificate when the listener speaks HTTPS.
    https: Option<Arc<Https>>,
}

impl Exchanges {
    pub(crate) fn new(
        registry: Registry,
        settings: Settings,
        jobs: JobSender<Job>,
        handler: Arc<dyn Handler>,
        stopper: Stopper,
        https: Option<Arc<Https>>,
    ) -> Exchanges {
        Exchanges {
            registry,
            table: Slots::default(),
            settings,
            body_reserved: 0,
            jobs,
            handler,
            stopper,
            answered: VecDeque::new(),
            scratch: vec![0; SCRATCH_BYTES],
            last_refusal_log: None,
            draining: None,
            https,
        }
    }

    /// Connections open, here or away.
    pub(crate) fn live(&self) -> usize {
        self.table.live()
    }

    /// Connections open from `ip`.
    pub(crate) fn count_from(&self, ip: std::net::IpAddr) -> usize {
        self.table.count_from(ip)
    }

    /// Answers are waiting to be gone on with: poll without blocking.
    pub(crate) fn has_answered(&self) -> bool {
        !self.answered.is_empty()
    }

    /// Takes a new connection, speaking TLS if the listener does.
    pub(crate) fn open(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        // Responses leave in one write; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let config = self.https.as_ref().map(|h| h.current());
        let stream = match Transport::new(stream, config.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot start TLS for a connection from {peer}: {e}");
                return;
            }
        };
        let conn = Connection::new(stream, peer, now + self.settings.timeouts.header);
        let i = self.table.insert(conn, peer.ip().to_canonical());
        let registered = match self.table.get(i) {
            Some(conn) => self
                .registry
                .register(&mut conn.stream, Token(i), Interest::READABLE),
            None => Ok(()),
        };
        if let Err(e) = registered {
            log::warn!("cannot watch a new connection from {peer}: {e}");
            self.close(i);
        } else {
            self.table.queue_idle(i, is_idle);
        }
    }

    /// Closes the connection idle the longest, if any: returns whether one was closed.
    pub(crate) fn close_oldest_idle(&mut self) -> bool {
        match self.table.close_oldest_idle(is_idle) {
            Some(conn) => {
                self.body_reserved -= conn.reserved;
                true
            }
            None => false,
        }
    }

    /// Over a connection cap: a fast canned 503 and close, never a silent hang.
    pub(crate) fn refuse(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant, why: &str) {
        if log_due(&mut self.last_refusal_log, now) {
            log::warn!("{why}: answering 503");
        }
        self.handler.refused(&Refusal {
            status: 503,
            peer,
            request: None,
        });
        // A TLS client could not read a plain answer: the close alone tells it.
        if self.https.is_none() {
            accept::answer_503(stream, &mut self.scratch);
        }
    }

    /// Frees a connection's slot (here or away) and what it reserved; dropping it
    /// closes its socket.
    fn close(&mut self, i: usize) {
        // One away releases its reservation when it comes back.
        if let Some(conn) = self.table.remove(i) {
            self.body_reserved -= conn.reserved;
        }
    }

    /// Does whatever the connection's stage calls for. `hup`: the client's FIN (or an
    /// error) came with this event, so reading must go on to the end of the stream: with
    /// edge-triggered readiness nothing will be reported again.
    pub(crate) fn drive(&mut self, i: usize, hup: bool, now: Instant) {
        let Some(conn) = self.table.get(i) else {
            return self.table.mark_away_readable(i, hup);
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
                    self.close(i);
                }
            }
        }
    }

    /// Writes what is pending: whether all of it is written. Closes the connection if
    /// the socket failed.
    fn flushed(&mut self, i: usize) -> bool {
        match self.flush(i) {
            Ok(done) => done,
            Err(Gone) => {
                self.close(i);
                false
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
            if !self.flushed(i) {
                return;
            }
            let Some(conn) = self.table.get(i) else {
                return;
            };
            match conn.reader.advance(&mut conn.buf, &self.settings.limits) {
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
            if let Some(deadline) =
                self.settings
                    .timeouts
                    .entering(conn.stage, phase, conn.deadline, now)
            {
                conn.stage = Stage::Reading(phase);
                conn.deadline = deadline;
            }
            if self.draining.is_some() && phase != Phase::Body {
                // Draining: a connection with no complete head is not a request in flight.
                return self.close(i);
            }
            if drained {
                conn.maybe_readable = false;
                conn.trim();
                return self.flush_handshake(i);
            }
            // SECURITY: only a few KiB are read ahead of what the request being read can
            // use, so a connection holds little memory whatever its client sends.
            let cap = match phase {
                Phase::Body => conn.reader.body_bound(self.settings.limits.max_body_bytes),
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
                    return self.close(i);
                }
            }
        }
    }

    /// A TLS handshake answers while it reads: records the socket did not take then wait
    /// for writability, or the client would wait for them until the head timeout.
    /// Plain connections never have any.
    fn flush_handshake(&mut self, i: usize) {
        if self.table.get(i).is_some_and(|c| c.stream.wants_write()) && self.flush(i).is_err() {
            self.close(i);
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
                .registry
                .reregister(&mut conn.stream, Token(i), interest)
                .is_err()
            {
                return Err(Gone);
            }
            conn.wants_writable = !done;
        }
        Ok(done)
    }

    /// A head with a body is complete: lets the handler refuse it from the head alone,
    /// then takes room for the body in the shared budget, then lets the body be read.
    /// Returns whether reading goes on.
    fn check_head(&mut self, i: usize, now: Instant) -> bool {
        let Some(conn) = self.table.get(i) else {
            return false;
        };
        let peer = conn.peer;
        let bound = conn.reader.body_bound(self.settings.limits.max_body_bytes);
        let buffered = conn.buf.len();
        // Checked where the reader keeps it: a copy of its head cost a `POST` more than
        // the checks themselves.
        let Some(request) = conn.reader.pending_request_mut() else {
            return true;
        };
        request.note = self.handler.note(request);
        request.peer = Some(peer);
        // What of a declared body is yet to come is drained after a refusal.
        let unread = match request.header("content-length") {
            Some(_) => u64::try_from(bound.saturating_sub(buffered)).unwrap_or(0),
            None => 0,
        };
        let head_only = request.method == Method::Head;
        let refusal = match self.handler.refuse_head(request) {
            Some(resp) => Some(resp),
            None if self.body_reserved + bound > self.settings.body_budget => {
                if log_due(&mut self.last_refusal_log, now) {
                    log::warn!(
                        "request bodies in progress fill their budget of {} bytes: answering 503",
                        self.settings.body_budget
                    );
                }
                self.handler.refused(&Refusal {
                    status: 503,
                    peer,
                    request: Some(request),
                });
                Some(response::layer_error(503, "the server is busy; try again"))
            }
            None => None,
        };
        if let Some(resp) = refusal {
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
        self.body_reserved += bound;
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
        conn.unread_body = unread;
        self.write_and_close(i, resp, head_only, now);
    }

    /// Queues a complete request for the workers, or answers 503 if the queue is full.
    /// A request the handler can answer at once is answered here instead.
    fn schedule(&mut self, i: usize, mut ready: Box<Ready>, now: Instant) {
        // This turn's clock: the request's last bytes were read in it (or, pipelined,
        // it waited in the buffer until this turn).
        ready.request.received = Some(now);
        if ready.request.note.is_none() {
            ready.request.note = self.handler.note(&ready.request);
        }
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
            Err(job) => {
                let head_only = job.ready.head_only;
                self.handler.refused(&Refusal {
                    status: 503,
                    peer: job.conn.peer,
                    request: Some(&job.ready.request),
                });
                self.table.give_back(i, job.conn);
                if log_due(&mut self.last_refusal_log, now) {
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
        conn.deadline = now + self.settings.timeouts.write;
        self.body_reserved -= released;
        if self.flush(i).is_err() {
            return self.close(i);
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
    pub(crate) fn flush_answered(&mut self, now: Instant) {
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
        let resp = response::layer_error(status, message);
        self.write_and_close(i, &resp, head_only, now);
    }

    /// Appends `resp` to what the connection has to write, then closes after it.
    fn write_and_close(&mut self, i: usize, resp: &Response, head_only: bool, now: Instant) {
        let Some(conn) = self.table.get(i) else {
            return;
        };
        let framing = Framing {
            head_only,
            ..Framing::CLOSE
        };
        response::append(&mut conn.out, resp, framing);
        conn.buf = Vec::new();
        conn.stage = Stage::Writing(After::Close);
        conn.deadline = now + self.settings.timeouts.write;
        self.drive_write(i, now);
    }

    /// Writes pending output, then moves on to the next request or to closing.
    fn drive_write(&mut self, i: usize, now: Instant) {
        let after = match self.table.get(i).map(|c| c.stage) {
            Some(Stage::Writing(after)) => after,
            _ => return,
        };
        if !self.flushed(i) {
            return;
        }
        let Some(conn) = self.table.get(i) else {
            return;
        };
        if after == After::KeepAlive && self.draining.is_none() {
            conn.stage = Stage::Reading(Phase::Idle);
            conn.deadline = now + self.settings.timeouts.keepalive;
            self.table.queue_idle(i, is_idle);
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
            let unread = std::mem::take(&mut conn.unread_body);
            let (deadline, budget) = self.settings.timeouts.closing(
                unread,
                self.settings.max_discard_bytes,
                self.draining,
                now,
            );
            conn.start_linger(deadline, budget);
            if conn.discard_input(&mut self.scratch).is_err() {
                self.close(i);
            }
        }
    }

    /// Takes back a connection whose response a worker wrote, in whole or in part.
    pub(crate) fn take_back(&mut self, returned: Returned, now: Instant) {
        let Returned {
            token: Token(i),
            mut conn,
            broken,
        } = returned;
        // The request and its body are done with.
        self.body_reserved -= std::mem::take(&mut conn.reserved);
        if broken {
            return self.close(i);
        }
        conn.deadline = now + self.settings.timeouts.write;
        let seen = self.table.give_back(i, conn);
        if let Some(conn) = self.table.get(i) {
            conn.maybe_readable |= seen.readable;
            conn.hup |= seen.hup;
        }
        self.drive_write(i, now);
    }

    /// A graceful stop began, to end by `deadline`: closes every connection that has no
    /// request in flight, and lets no other linger past it.
    pub(crate) fn drain(&mut self, deadline: Instant) {
        self.draining = Some(deadline);
        for i in 0..self.table.len() {
            let idle = self.table.get(i).is_some_and(|c| {
                matches!(
                    c.stage,
                    Stage::Fresh | Stage::Reading(Phase::Idle | Phase::Head)
                )
            });
            if idle {
                self.close(i);
            }
        }
    }

    /// Acts on every deadline passed by `now`; returns the earliest deadline left.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Instant> {
        let mut left: Option<Instant> = None;
        for i in 0..self.table.len() {
            let Some(conn) = self.table.get(i) else {
                continue;
            };
            if conn.deadline <= now {
                match deadlines::expiry(conn.stage) {
                    Expiry::Close => self.close(i),
                    Expiry::Answer408(message) => {
                        let head_only = conn.reader.pending_method() == Some(&Method::Head);
                        self.reject(i, 408, message, head_only, now);
                    }
                }
            }
            if let Some(conn) = self.table.get(i) {
                left = Some(left.map_or(conn.deadline, |t| t.min(conn.deadline)));
            }
        }
        left
    }
}

/// Whether a refusal is to be logged now (at most one line per `LOG_EVERY`), noting it
/// as logged if so.
fn log_due(last: &mut Option<Instant>, now: Instant) -> bool {
    let due = last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
    if due {
        *last = Some(now);
    }
    due
}

/// Whether a connection has no request under way: just accepted, or between requests.
fn is_idle(conn: &Connection) -> bool {
    matches!(conn.stage, Stage::Fresh | Stage::Reading(Phase::Idle))
}

#[cfg(test)]
mod tests {
    //! Each test drives one exchange over a 127.0.0.1 pair, calling what the reactor's
    //! loop would call, so nothing else runs.

    use std::io::{Read, Write};
    use std::sync::Mutex;

    use mio::{Events, Poll};

    use super::*;
    use crate::http::Request;
    use crate::http::server::handoff::{self, JobReceiver};

    const S: Duration = Duration::from_secs(1);

    /// Echoes the path with 200, answers `/now` on the layer's thread, and notes every
    /// refusal it is told of.
    #[derive(Default)]
    struct Probe {
        refused: Mutex<Vec<u16>>,
    }

    impl Handler for Arc<Probe> {
        fn handle(&self, req: Request) -> Response {
            Response::new(200).with_body(req.path.into_bytes())
        }

        fn is_immediate(&self, req: &Request) -> bool {
            req.path == "/now"
        }

        fn refused(&self, refusal: &Refusal<'_>) {
            if let Ok(mut seen) = self.refused.lock() {
                seen.push(refusal.status);
            }
        }
    }

    struct Rig {
        poll: Poll,
        exchanges: Exchanges,
        jobs: JobReceiver<Job>,
        probe: Arc<Probe>,
        client: std::net::TcpStream,
        start: Instant,
    }

    /// One connection accepted into fresh exchanges (slot 0), with a job queue of
    /// `queue_depth`.
    fn rig(queue_depth: usize) -> Rig {
        let poll = Poll::new().unwrap();
        let (job_tx, jobs) = handoff::jobs(queue_depth);
        let probe = Arc::new(Probe::default());
        let config = super::super::ServerConfig::default();
        let settings = Settings {
            limits: Limits {
                max_header_bytes: config.max_header_bytes,
                max_headers: config.max_headers,
                max_body_bytes: config.max_body_bytes,
            },
            timeouts: Timeouts::new(10 * S, 30 * S, 60 * S, 10 * S),
            max_discard_bytes: config.max_discard_bytes,
            body_budget: config.body_budget_bytes,
        };
        let handler: Arc<dyn Handler> = Arc::new(Arc::clone(&probe));
        let registry = poll.registry().try_clone().unwrap();
        let mut exchanges = Exchanges::new(
            registry,
            settings,
            job_tx,
            handler,
            Stopper::default(),
            None,
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(5 * S)).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let start = Instant::now();
        exchanges.open(TcpStream::from_std(stream), peer, start);
        assert_eq!(exchanges.live(), 1);
        Rig {
            poll,
            exchanges,
            jobs,
            probe,
            client,
            start,
        }
    }

    impl Rig {
        /// Sends `bytes` and drives the connection once they are readable.
        fn send(&mut self, bytes: &[u8]) {
            self.client.write_all(bytes).unwrap();
            let mut events = Events::with_capacity(4);
            self.poll.poll(&mut events, Some(5 * S)).unwrap();
            assert!(events.iter().any(|e| e.token() == Token(0)), "no readiness");
            self.exchanges.drive(0, false, self.start);
        }

        /// What the client receives until the server closes the connection.
        fn received_until_close(&mut self) -> String {
            let mut out = Vec::new();
            let _ = self.client.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        }

        fn refused(&self) -> Vec<u16> {
            self.probe.refused.lock().unwrap().clone()
        }
    }

    #[test]
    fn complete_request_is_queued_for_a_worker_with_its_peer() {
        let mut rig = rig(4);
        rig.send(b"GET /users/7 HTTP/1.1\r\nHost: t\r\n\r\n");
        let job = rig.jobs.try_recv().expect("a job");
        assert_eq!(job.token, Token(0));
        assert_eq!(job.ready.request.path, "/users/7");
        assert_eq!(job.ready.request.peer, Some(job.conn.peer));
        assert_eq!(rig.exchanges.live(), 1, "away at a worker, still open");
        assert!(rig.refused().is_empty());
    }

    #[test]
    fn head_past_its_deadline_is_answered_408_and_reported_once() {
        let mut rig = rig(4);
        rig.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n");
        assert!(rig.jobs.try_recv().is_none());
        let before = rig.start + 10 * S - Duration::from_millis(1);
        assert!(rig.exchanges.expire(before).is_some());
        assert!(rig.refused().is_empty(), "not yet");
        rig.exchanges.expire(rig.start + 10 * S);
        let received = rig.received_until_close();
        assert!(received.starts_with("HTTP/1.1 408 "), "{received}");
        assert_eq!(rig.refused(), [408]);
    }

    #[test]
    fn idle_connection_past_its_deadline_is_closed_without_an_answer() {
        let mut rig = rig(4);
        assert_eq!(rig.exchanges.expire(rig.start + 10 * S), None);
        assert_eq!(rig.exchanges.live(), 0);
        assert_eq!(rig.received_until_close(), "");
        assert!(rig.refused().is_empty());
    }

    #[test]
    fn full_queue_answers_503_and_reports_it() {
        let mut rig = rig(0);
        rig.send(b"GET /users HTTP/1.1\r\nHost: t\r\n\r\n");
        let received = rig.received_until_close();
        assert!(received.starts_with("HTTP/1.1 503 "), "{received}");
        assert!(received.contains("Retry-After"), "{received}");
        assert_eq!(rig.refused(), [503]);
    }

    #[test]
    fn immediate_request_is_answered_here_and_the_connection_kept() {
        let mut rig = rig(4);
        rig.send(b"GET /now HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(rig.jobs.try_recv().is_none(), "no worker involved");
        assert!(rig.exchanges.has_answered());
        rig.exchanges.flush_answered(rig.start);
        assert!(!rig.exchanges.has_answered());
        let mut head = [0u8; 17];
        rig.client.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200 OK\r\n");
        // Idle again: the keep-alive deadline, not the write one, now applies.
        assert!(rig.exchanges.expire(rig.start + 59 * S).is_some());
        assert_eq!(rig.exchanges.live(), 1);
        rig.exchanges.expire(rig.start + 60 * S);
        assert_eq!(rig.exchanges.live(), 0);
    }

    #[test]
    fn graceful_stop_closes_a_connection_with_no_request_in_flight() {
        let mut rig = rig(4);
        rig.send(b"GET /half");
        rig.exchanges.drain(rig.start + S);
        assert_eq!(rig.exchanges.live(), 0);
        assert_eq!(rig.received_until_close(), "");
    }
}
