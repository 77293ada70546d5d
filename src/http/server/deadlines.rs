//! Which connection times out when: the deadline each stage of an exchange starts, what
//! happens when it passes, and how often the reactor must look.
//!
//! Deadlines are absolute: trickling bytes never extends one, so a slow client gets the
//! same time as a fast one and no more. Everything here is arithmetic on `Instant`s.

use std::time::{Duration, Instant};

use super::connection::{LINGER_BUDGET, Stage};
use super::reader::Phase;

/// How long a closing connection may keep sending before it is simply closed.
const LINGER: Duration = Duration::from_secs(2);

/// The timeouts the reactor enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    pub keepalive: Duration,
    pub write: Duration,
    pub linger: Duration,
}

/// What becomes of a connection whose deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Nothing asked, nothing to answer; or a client that does not read its response,
    /// or will not stop sending: close.
    Close,
    /// A request under way: answer 408 with this message, then close.
    Answer408(&'static str),
}

impl Timeouts {
    /// The header, body, keep-alive and write timeouts as configured; lingering takes
    /// at most the write timeout.
    pub(crate) fn new(
        header: Duration,
        body: Duration,
        keepalive: Duration,
        write: Duration,
    ) -> Timeouts {
        Timeouts {
            header,
            body,
            keepalive,
            write,
            linger: LINGER.min(write),
        }
    }

    /// The shortest of them: no deadline set after a sweep falls sooner than this.
    pub(crate) fn shortest(&self) -> Duration {
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

    /// How far apart sweeps of the table are at least, which bounds their cost with
    /// many connections; a deadline is acted on at most this late.
    pub(crate) fn sweep_gap(&self) -> Duration {
        (self.shortest() / 64).clamp(Duration::from_millis(1), Duration::from_millis(100))
    }

    /// The deadline of a reading connection entering `phase` from `stage`, or `None`
    /// when its deadline stays as it is (the phase is not new, or a new connection's
    /// header time, which runs from the accept).
    pub(crate) fn entering(
        &self,
        stage: Stage,
        phase: Phase,
        deadline: Instant,
        now: Instant,
    ) -> Option<Instant> {
        match (stage, phase) {
            (Stage::Fresh, Phase::Idle) => None,
            (Stage::Fresh, Phase::Head) => Some(deadline),
            (Stage::Reading(old), new) if old == new => None,
            (_, Phase::Idle) => Some(now + self.keepalive),
            (_, Phase::Head) => Some(now + self.header),
            (_, Phase::Body) => Some(now + self.body),
        }
    }

    /// How long a connection that closes after its response is given to drain what the
    /// client still sends, and how many bytes it may discard: a declared body within
    /// the discard bound is drained to its last byte, with the body timeout to arrive
    /// in (a proxy that buffered it sends all of it, and fails, marking this replica
    /// down, if the connection resets under it); anything else lingers briefly. Never
    /// past the graceful stop's `drain` deadline.
    pub(crate) fn closing(
        &self,
        unread_body: u64,
        max_discard: u64,
        drain: Option<Instant>,
        now: Instant,
    ) -> (Instant, u64) {
        let (deadline, budget) = if unread_body > 0 && unread_body <= max_discard {
            (now + self.body, unread_body)
        } else {
            (now + self.linger, LINGER_BUDGET)
        };
        (drain.map_or(deadline, |d| deadline.min(d)), budget)
    }
}

/// What a passed deadline means for a connection in `stage`.
pub(crate) fn expiry(stage: Stage) -> Expiry {
    match stage {
        Stage::Fresh | Stage::Reading(Phase::Idle) => Expiry::Close,
        Stage::Reading(Phase::Head) => {
            Expiry::Answer408("the request head took too long to arrive")
        }
        Stage::Reading(Phase::Body) => {
            Expiry::Answer408("the request body took too long to arrive")
        }
        Stage::Writing(_) | Stage::Lingering => Expiry::Close,
    }
}

/// When the table must next be swept: the earliest deadline, but no sooner than a
/// sweep gap from now.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sweeps {
    next: Instant,
    gap: Duration,
    shortest: Duration,
}

impl Sweeps {
    pub(crate) fn new(timeouts: &Timeouts, now: Instant) -> Sweeps {
        Sweeps {
            next: now + timeouts.shortest(),
            gap: timeouts.sweep_gap(),
            shortest: timeouts.shortest(),
        }
    }

    /// When the reactor must wake to sweep.
    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    pub(crate) fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Plans the next sweep from the deadlines left after one at `now`.
    pub(crate) fn plan(&mut self, now: Instant, deadlines: impl IntoIterator<Item = Instant>) {
        // Any deadline set after this sweep is at least the shortest timeout away.
        let earliest = deadlines
            .into_iter()
            .fold(now + self.shortest, Instant::min);
        self.next = earliest.max(now + self.gap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::server::connection::After;

    const S: Duration = Duration::from_secs(1);

    fn timeouts() -> Timeouts {
        Timeouts::new(10 * S, 30 * S, 60 * S, 5 * S)
    }

    #[test]
    fn linger_is_two_seconds_at_most_and_never_longer_than_the_write_timeout() {
        assert_eq!(timeouts().linger, 2 * S);
        let short = Timeouts::new(S, S, S, Duration::from_millis(300));
        assert_eq!(short.linger, Duration::from_millis(300));
        assert_eq!(short.shortest(), Duration::from_millis(300));
    }

    #[test]
    fn sweep_gap_is_a_64th_of_the_shortest_timeout_within_1_to_100_ms() {
        assert_eq!(timeouts().sweep_gap(), Duration::from_micros(31_250));
        let tiny = Timeouts::new(Duration::from_millis(10), S, S, S);
        assert_eq!(tiny.sweep_gap(), Duration::from_millis(1));
        let huge = Timeouts::new(3600 * S, 3600 * S, 3600 * S, 3600 * S);
        assert_eq!(huge.linger, 2 * S);
        assert_eq!(huge.sweep_gap(), Duration::from_micros(31_250));
    }

    #[test]
    fn header_time_of_a_new_connection_runs_from_the_accept() {
        let t = timeouts();
        let accepted = Instant::now();
        let deadline = accepted + t.header;
        let later = accepted + 7 * S;
        assert_eq!(t.entering(Stage::Fresh, Phase::Idle, deadline, later), None);
        assert_eq!(
            t.entering(Stage::Fresh, Phase::Head, deadline, later),
            Some(deadline),
            "the first byte does not restart the header time"
        );
    }

    #[test]
    fn trickling_bytes_never_extend_a_deadline() {
        let t = timeouts();
        let now = Instant::now();
        for phase in [Phase::Idle, Phase::Head, Phase::Body] {
            assert_eq!(t.entering(Stage::Reading(phase), phase, now, now + S), None);
        }
    }

    #[test]
    fn each_new_phase_starts_its_own_timeout() {
        let t = timeouts();
        let now = Instant::now();
        let old = now - S;
        let idle = Stage::Reading(Phase::Idle);
        let head = Stage::Reading(Phase::Head);
        assert_eq!(
            t.entering(idle, Phase::Head, old, now),
            Some(now + t.header)
        );
        assert_eq!(t.entering(head, Phase::Body, old, now), Some(now + t.body));
        let after_write = Stage::Writing(After::KeepAlive);
        assert_eq!(
            t.entering(after_write, Phase::Idle, old, now),
            Some(now + t.keepalive)
        );
    }

    #[test]
    fn passed_deadline_answers_408_only_when_a_request_is_under_way() {
        assert_eq!(expiry(Stage::Fresh), Expiry::Close);
        assert_eq!(expiry(Stage::Reading(Phase::Idle)), Expiry::Close);
        assert!(matches!(
            expiry(Stage::Reading(Phase::Head)),
            Expiry::Answer408(m) if m.contains("head")
        ));
        assert!(matches!(
            expiry(Stage::Reading(Phase::Body)),
            Expiry::Answer408(m) if m.contains("body")
        ));
        assert_eq!(expiry(Stage::Writing(After::KeepAlive)), Expiry::Close);
        assert_eq!(expiry(Stage::Writing(After::Close)), Expiry::Close);
        assert_eq!(expiry(Stage::Lingering), Expiry::Close);
    }

    #[test]
    fn declared_body_within_the_discard_bound_is_drained_with_the_body_timeout() {
        let t = timeouts();
        let now = Instant::now();
        assert_eq!(t.closing(5000, 1 << 20, None, now), (now + t.body, 5000));
        assert_eq!(
            t.closing(1 << 20, 1 << 20, None, now),
            (now + t.body, 1 << 20)
        );
    }

    #[test]
    fn closing_lingers_briefly_when_no_body_or_too_large_a_body_is_declared() {
        let t = timeouts();
        let now = Instant::now();
        let linger = (now + t.linger, LINGER_BUDGET);
        assert_eq!(t.closing(0, 1 << 20, None, now), linger);
        assert_eq!(t.closing((1 << 20) + 1, 1 << 20, None, now), linger);
    }

    #[test]
    fn closing_never_outlasts_a_graceful_stop() {
        let t = timeouts();
        let now = Instant::now();
        let stop = now + S;
        assert_eq!(t.closing(5000, 1 << 20, Some(stop), now), (stop, 5000));
        let late_stop = now + 100 * S;
        assert_eq!(
            t.closing(0, 1 << 20, Some(late_stop), now).0,
            now + t.linger
        );
    }

    #[test]
    fn next_sweep_is_the_earliest_deadline_but_a_gap_away_at_least() {
        let t = timeouts();
        let now = Instant::now();
        let mut sweeps = Sweeps::new(&t, now);
        assert_eq!(sweeps.next(), now + t.shortest());
        assert!(!sweeps.due(now));
        let soon = now + Duration::from_millis(1500);
        sweeps.plan(now, [now + Duration::from_millis(1800), soon]);
        assert_eq!(sweeps.next(), soon);
        // A deadline set after the sweep is a shortest timeout away at least.
        sweeps.plan(now, [now + 3 * S]);
        assert_eq!(sweeps.next(), now + t.shortest());
        sweeps.plan(now, [now + Duration::from_millis(1)]);
        assert_eq!(sweeps.next(), now + t.sweep_gap());
        sweeps.plan(now, []);
        assert_eq!(sweeps.next(), now + t.shortest());
        assert!(sweeps.due(now + t.shortest()));
    }
}
