//! The reactor: one thread that owns the listener and every connection not at a worker,
//! all non-blocking, driven by one `mio::Poll`.
//!
//! This is the event loop only. It wires the parts: [`accept`] says when to accept and
//! what the caps allow, [`exchange`](super::exchange) drives each connection through
//! its request and response, [`deadlines`] says when to look for timeouts, and
//! [`handoff`](super::handoff) carries requests to the workers and their connections
//! back. A graceful stop closes the listener and the idle connections, and ends the
//! loop once the rest are done or the drain deadline passes.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Poll, Token};

use super::accept::{Admission, Caps, Intake};
use super::deadlines::{Sweeps, Timeouts};
use super::exchange::{Exchanges, Settings};
use super::handoff::{JobSender, ReturnReceiver};
use super::parse::Limits;
use super::worker::{Job, Returned};
use super::{ServerConfig, Stopper};
use crate::http::Handler;
use crate::http::https::Https;

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// Readiness events taken per `poll`.
const EVENT_CAPACITY: usize = 1024;

pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    /// This turn's ready connections, and whether the peer's FIN came with the event.
    tokens: Vec<(Token, bool)>,
    listener: Option<TcpListener>,
    intake: Intake,
    caps: Caps,
    exchanges: Exchanges,
    sweeps: Sweeps,
    shutdown_timeout: Duration,
    returned: ReturnReceiver<Returned>,
    /// The returns taken this turn (kept to reuse its allocation).
    taken: Vec<Returned>,
    stopper: Stopper,
    /// Set once a graceful stop began: the time by which `run` returns.
    drain_deadline: Option<Instant>,
}

impl Reactor {
    /// `jobs` and `returned`: the reactor's ends of the workers' queue and of the way
    /// back.
    pub(crate) fn new(
        poll: Poll,
        listener: TcpListener,
        config: &ServerConfig,
        (jobs, returned): (JobSender<Job>, ReturnReceiver<Returned>),
        handler: Arc<dyn Handler>,
        stopper: Stopper,
        https: Option<Arc<Https>>,
    ) -> io::Result<Reactor> {
        let timeouts = Timeouts::new(
            config.header_timeout,
            config.body_timeout,
            config.keepalive_timeout,
            config.write_timeout,
        );
        let settings = Settings {
            limits: Limits {
                max_header_bytes: config.max_header_bytes,
                max_headers: config.max_headers,
                max_body_bytes: config.max_body_bytes,
            },
            timeouts,
            max_discard_bytes: config.max_discard_bytes,
            body_budget: config.body_budget_bytes.max(config.max_body_bytes),
        };
        let registry = poll.registry().try_clone()?;
        let exchanges = Exchanges::new(registry, settings, jobs, handler, stopper.clone(), https);
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENT_CAPACITY),
            tokens: Vec::with_capacity(EVENT_CAPACITY),
            listener: Some(listener),
            intake: Intake::default(),
            caps: Caps {
                max_connections: config.max_connections.max(1),
                max_per_peer: config.max_connections_per_peer,
                uncapped: config.uncapped_peers.clone(),
            },
            exchanges,
            sweeps: Sweeps::new(&timeouts, Instant::now()),
            shutdown_timeout: config.shutdown_timeout,
            returned,
            taken: Vec::new(),
            stopper,
            drain_deadline: None,
        })
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
                    (Token(i), hup) => self.exchanges.drive(i, hup, now),
                }
            }
            self.returned.take_all(&mut self.taken);
            for returned in self.taken.drain(..) {
                self.exchanges.take_back(returned, now);
            }
            self.exchanges.flush_answered(now);
            if self.stopper.is_stopped() && self.drain_deadline.is_none() {
                self.begin_drain(now);
            }
            if self.intake.due(listener_ready, now) {
                self.accept(now);
            }
            if self.sweeps.due(now) {
                let left = self.exchanges.expire(now);
                self.sweeps.plan(now, left);
            }
            if let Some(deadline) = self.drain_deadline {
                if self.exchanges.live() == 0 || now >= deadline {
                    return Ok(deadline);
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if self.intake.has_more() || self.exchanges.has_answered() {
            return Duration::ZERO;
        }
        let wake = [self.intake.resume_at(), self.drain_deadline]
            .into_iter()
            .flatten()
            .fold(self.sweeps.next(), Instant::min);
        wake.saturating_duration_since(now)
    }

    /// Accepts a batch of connections, within the caps: at the connection cap a new one
    /// takes the place of the connection idle the longest, so that one client's idle
    /// connections cannot lock everyone else out.
    fn accept(&mut self, now: Instant) {
        let Some(listener) = &self.listener else {
            return;
        };
        let (caps, exchanges) = (&self.caps, &mut self.exchanges);
        self.intake.accept(listener, now, |stream, peer| {
            let ip = peer.ip().to_canonical();
            match caps.admit(ip, exchanges.count_from(ip), exchanges.live()) {
                Admission::PeerFull => {
                    exchanges.refuse(stream, peer, now, "one address has too many connections");
                }
                Admission::Full if !exchanges.close_oldest_idle() => {
                    exchanges.refuse(stream, peer, now, "the connection cap is reached");
                }
                Admission::Full | Admission::Admit => exchanges.open(stream, peer, now),
            }
        });
    }

    /// Stops accepting and closes every connection that has no request in flight.
    fn begin_drain(&mut self, now: Instant) {
        let deadline = now + self.shutdown_timeout;
        self.drain_deadline = Some(deadline);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.intake.stop();
        self.exchanges.drain(deadline);
    }
}
