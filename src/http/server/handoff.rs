//! The two ways between the reactor and the workers: the job queue (reactor → workers)
//! and the way back (workers → reactor).
//!
//! Both are built to cost as few wake-ups as possible, since a request crosses each once.
//! `std::sync::mpsc` behind a mutex handed the mutex on to a second worker with each job,
//! woken only to block again in `recv`, and every returned connection wrote the reactor's
//! eventfd. Here a job wakes one worker, and only when one is idle; a busy worker takes
//! the next job without sleeping. On the way back, only the first connection returned
//! since the reactor last looked wakes it: the rest ride on that wake. One client at a
//! time (`strace -c`, 2 000 `GET`s): futex calls per request 4.3 -> 2.0, all syscalls
//! 11.9 -> 9.6. Under `wrk -c64` (`perf stat`): eventfd writes 1.00 -> 0.07, while futex
//! calls went 0.33 -> 1.52, as the old queue's receivers spun before they slept.
//!
//! A job for an idle worker now goes to the worker that went idle last, woken with
//! `Thread::unpark`, which makes no syscall when that worker has not parked yet. The
//! `Condvar` before it woke whichever worker had waited longest, with a futex call every
//! time. `GET` under `wrk -c64` (`perf stat`, two rounds each): futex calls per request
//! 1.19 and 1.34 -> 0.77 and 0.67; context switches per request did not move (1.53-1.64).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};

use mio::Waker;

use crate::sync::lock;

/// A bounded queue with one sender (the reactor) and many receivers (the workers):
/// `capacity` jobs may wait beyond those the idle receivers are about to take (so 0
/// queues a job only when a receiver is waiting for it). Dropping the sender closes it:
/// receivers take what is queued, then get `None`.
///
/// A job for an idle receiver is handed to the one that went idle last, and only that
/// thread is woken: the workers that keep up with the load stay warm while the rest
/// sleep, and a worker woken for a job always finds it.
pub(crate) fn jobs<T>(capacity: usize) -> (JobSender<T>, JobReceiver<T>) {
    let queue = Arc::new(Jobs {
        state: Mutex::new(JobState {
            items: VecDeque::with_capacity(capacity.min(1024)),
            idle: Vec::new(),
            closed: false,
        }),
        capacity,
    });
    (JobSender(Arc::clone(&queue)), JobReceiver(queue))
}

struct Jobs<T> {
    state: Mutex<JobState<T>>,
    capacity: usize,
}

struct JobState<T> {
    /// Jobs no receiver has taken yet. Never non-empty while a receiver is idle.
    items: VecDeque<T>,
    /// Receivers waiting for a job, the one that went idle last at the end.
    idle: Vec<Arc<Idle<T>>>,
    closed: bool,
}

/// One receiver waiting for a job: the sender puts the job in `job` (or sets `closed`)
/// and then unparks `thread`.
struct Idle<T> {
    thread: Thread,
    job: Mutex<Option<T>>,
    closed: AtomicBool,
}

pub(crate) struct JobSender<T>(Arc<Jobs<T>>);

impl<T> JobSender<T> {
    /// Hands `item` to the receiver that went idle last, or queues it, or gives it back
    /// when the queue is full.
    pub(crate) fn try_send(&self, item: T) -> Result<(), T> {
        let mut state = lock(&self.0.state);
        if let Some(idle) = state.idle.pop() {
            drop(state);
            *lock(&idle.job) = Some(item);
            // A syscall only when the receiver is parked already.
            idle.thread.unpark();
            return Ok(());
        }
        if state.items.len() >= self.0.capacity {
            return Err(item);
        }
        state.items.push_back(item);
        Ok(())
    }
}

impl<T> Drop for JobSender<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.closed = true;
        for idle in state.idle.drain(..) {
            idle.closed.store(true, Ordering::Release);
            idle.thread.unpark();
        }
    }
}

pub(crate) struct JobReceiver<T>(Arc<Jobs<T>>);

impl<T> Clone for JobReceiver<T> {
    fn clone(&self) -> Self {
        JobReceiver(Arc::clone(&self.0))
    }
}

impl<T> JobReceiver<T> {
    /// The next job, waiting for one; `None` once the sender is gone and the queue is
    /// empty.
    pub(crate) fn recv(&self) -> Option<T> {
        let me = {
            let mut state = lock(&self.0.state);
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            if state.closed {
                return None;
            }
            let me = Arc::new(Idle {
                thread: thread::current(),
                job: Mutex::new(None),
                closed: AtomicBool::new(false),
            });
            state.idle.push(Arc::clone(&me));
            me
        };
        loop {
            // Returns at once if the sender unparked us already; may return for no
            // reason at all, hence the loop.
            thread::park();
            if let Some(item) = lock(&me.job).take() {
                return Some(item);
            }
            if me.closed.load(Ordering::Acquire) {
                return None;
            }
        }
    }

    /// The next job if there is one now.
    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Option<T> {
        lock(&self.0.state).items.pop_front()
    }
}

/// The way back: many senders (the workers), one receiver (the reactor), which is woken
/// through `waker` when the first item arrives since it last took them.
pub(crate) fn returns<T>(waker: Arc<Waker>) -> (ReturnSender<T>, ReturnReceiver<T>) {
    let way = Arc::new(Returns {
        state: Mutex::new(ReturnState {
            items: Vec::new(),
            closed: false,
        }),
        waker,
    });
    (ReturnSender(Arc::clone(&way)), ReturnReceiver(way))
}

struct Returns<T> {
    state: Mutex<ReturnState<T>>,
    waker: Arc<Waker>,
}

struct ReturnState<T> {
    items: Vec<T>,
    closed: bool,
}

impl<T> Returns<T> {
    fn lock(&self) -> MutexGuard<'_, ReturnState<T>> {
        lock(&self.state)
    }
}

pub(crate) struct ReturnSender<T>(Arc<Returns<T>>);

impl<T> Clone for ReturnSender<T> {
    fn clone(&self) -> Self {
        ReturnSender(Arc::clone(&self.0))
    }
}

impl<T> ReturnSender<T> {
    /// Hands `item` to the reactor, or gives it back when the reactor is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let mut state = self.0.lock();
        if state.closed {
            return Err(item);
        }
        let first = state.items.is_empty();
        state.items.push(item);
        drop(state);
        // Later items find the list non-empty: the reactor is woken already and takes
        // them with this one. A failed wake means the reactor is going away.
        if first {
            let _ = self.0.waker.wake();
        }
        Ok(())
    }
}

pub(crate) struct ReturnReceiver<T>(Arc<Returns<T>>);

impl<T> ReturnReceiver<T> {
    /// Moves everything returned so far into `into` (emptied first).
    pub(crate) fn take_all(&self, into: &mut Vec<T>) {
        into.clear();
        std::mem::swap(&mut self.0.lock().items, into);
    }
}

impl<T> Drop for ReturnReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        // What was returned and never taken is dropped here (connections: closed).
        state.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use mio::{Events, Poll, Token};

    use super::*;

    #[test]
    fn a_full_queue_gives_the_job_back() {
        let (tx, rx) = jobs(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert_eq!(tx.try_send(3), Err(3));
        assert_eq!(rx.recv(), Some(1));
        assert!(tx.try_send(3).is_ok());
    }

    #[test]
    fn with_no_room_a_job_is_queued_only_for_a_waiting_receiver() {
        let (tx, rx) = jobs(0);
        assert_eq!(tx.try_send(1), Err(1), "nobody waits");
        let waiter = thread::spawn(move || rx.recv());
        while lock(&tx.0.state).idle.is_empty() {
            thread::yield_now();
        }
        assert!(tx.try_send(2).is_ok());
        assert_eq!(
            tx.try_send(3),
            Err(3),
            "the one waiting receiver is spoken for"
        );
        assert_eq!(waiter.join().unwrap(), Some(2));
    }

    #[test]
    fn receivers_take_what_is_queued_then_see_the_end_once_the_sender_is_gone() {
        let (tx, rx) = jobs(4);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        drop(tx);
        assert_eq!(rx.recv(), Some(1));
        assert_eq!(rx.clone().recv(), Some(2));
        assert_eq!(rx.recv(), None);
    }

    #[test]
    fn every_job_reaches_exactly_one_of_many_waiting_receivers() {
        let (tx, rx) = jobs(64);
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(n) = rx.recv() {
                        got.push(n);
                    }
                    got
                })
            })
            .collect();
        for n in 0..10_000 {
            let mut item = n;
            // Full: the receivers catch up.
            while let Err(back) = tx.try_send(item) {
                item = back;
                thread::yield_now();
            }
        }
        drop(tx);
        let mut all: Vec<i32> = receivers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_job_goes_to_the_receiver_that_went_idle_last() {
        let (tx, rx) = jobs(0);
        let idle = |n: usize| {
            while lock(&tx.0.state).idle.len() < n {
                thread::yield_now();
            }
        };
        let first = {
            let rx = rx.clone();
            thread::spawn(move || rx.recv())
        };
        idle(1);
        let last = thread::spawn(move || rx.recv());
        idle(2);

        tx.try_send("for the last").unwrap();
        assert_eq!(last.join().unwrap(), Some("for the last"));
        tx.try_send("for the first").unwrap();
        assert_eq!(first.join().unwrap(), Some("for the first"));
    }

    #[test]
    fn an_idle_receiver_sees_the_end_when_the_sender_goes() {
        let (tx, rx) = jobs::<u8>(4);
        let waiter = thread::spawn(move || rx.recv());
        while lock(&tx.0.state).idle.is_empty() {
            thread::yield_now();
        }
        drop(tx);
        assert_eq!(waiter.join().unwrap(), None);
    }

    #[test]
    fn a_waiting_receiver_wakes_for_a_job_sent_later() {
        let (tx, rx) = jobs(1);
        let waiter = thread::spawn(move || rx.recv());
        thread::sleep(Duration::from_millis(50));
        tx.try_send(7).unwrap();
        assert_eq!(waiter.join().unwrap(), Some(7));
    }

    const WAKER: Token = Token(1);

    fn woken(poll: &mut Poll) -> bool {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        events.iter().any(|e| e.token() == WAKER)
    }

    #[test]
    fn the_first_return_wakes_the_reactor_and_the_next_ones_ride_on_that_wake() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let (tx, rx) = returns(waker);
        let mut taken = Vec::new();

        tx.send(1).unwrap();
        tx.clone().send(2).unwrap();
        assert!(woken(&mut poll), "the first return wakes the reactor");
        assert!(!woken(&mut poll), "one wake for both");
        rx.take_all(&mut taken);
        assert_eq!(taken, [1, 2]);

        tx.send(3).unwrap();
        assert!(
            woken(&mut poll),
            "the first return after a take wakes it again"
        );
        rx.take_all(&mut taken);
        assert_eq!(taken, [3]);
    }

    #[test]
    fn a_return_after_the_reactor_is_gone_is_given_back() {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let (tx, rx) = returns(waker);
        drop(rx);
        assert_eq!(tx.send(1), Err(1));
    }
}
