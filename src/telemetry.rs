//! Logging: the `log` facade's records to stderr, and also appended to `LOG_FILE` when
//! set, one line each: `2026-12-06T11:55:51.173838Z [INFO] message` (UTC).
//!
//! Ours rather than simplelog (which the first version used): simplelog formats each
//! record while it holds its writer's lock, so sixteen workers writing the access log
//! queued on that lock, and it formats the record again for each destination. Here a
//! line is formatted once, on the calling thread. `GET /user/{id}` with the access log
//! on cost the static build 40-41 us of server CPU per request with simplelog and 35-36
//! with this (docs/design.md).
//!
//! Nor does a thread wait for another's write(2): a line that comes while another
//! thread is writing to the same destination joins what that thread writes next
//! ([`Combining`]). Waiting on a lock held across each write put the workers to sleep
//! and woke them again, and lengthened the tail (docs/performance.md).

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};

use crate::sync::lock;
use crate::{clock, short_copy};

/// Installs the logger. Only our own records and the pool's are kept: the database
/// driver is chatty at debug level and says nothing an operator needs.
pub fn init(level: LevelFilter, file: Option<&Path>) -> io::Result<()> {
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Combining::new(io::stderr()))];
    if let Some(path) = file {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        sinks.push(Box::new(Combining::new(f)));
    }
    let logger = Logger { level, sinks };
    log::set_logger(Box::leak(Box::new(logger))).map_err(io::Error::other)?;
    log::set_max_level(level);
    Ok(())
}

/// The crates whose records are kept (a target is a module path).
const KEPT: [&str; 2] = ["user_api", "r2d2"];

struct Logger {
    level: LevelFilter,
    sinks: Vec<Box<dyn Sink>>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level && kept(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let emit = |line: &mut Vec<u8>| {
            format_line(line, SystemTime::now(), record);
            for sink in &self.sinks {
                sink.line(line);
            }
        };
        // One buffer per thread; a record logged while formatting another gets its own.
        let reused = LINE.try_with(|cell| cell.try_borrow_mut().map(|mut line| emit(&mut line)));
        if !matches!(reused, Ok(Ok(()))) {
            emit(&mut Vec::new());
        }
    }

    /// Nothing to do: every line is written as it comes.
    fn flush(&self) {}
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

fn kept(target: &str) -> bool {
    KEPT.iter().any(|k| {
        target
            .strip_prefix(k)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// `time [LEVEL] message\n` into `line` (emptied first).
fn format_line(line: &mut Vec<u8>, time: SystemTime, record: &Record<'_>) {
    line.clear();
    line.extend_from_slice(&clock::rfc3339_micros_bytes(time));
    // Writing into a Vec fails only if a Display impl does; the line is then cut short.
    // A message comes as a dozen short pieces: `short_copy` appends each without a call
    // to `memcpy` where that call is slow. Straight into the `Vec`, with the access log
    // on, `memcpy` took 5.0 % of the static build's CPU on `GET`, and 2.4 % this way (`perf`).
    let _ = writeln!(
        short_copy::Writer(line),
        " [{}] {}",
        record.level(),
        record.args()
    );
}

/// Where lines go: stderr, or the file. Whole lines only (see [`write_lines`]), so that
/// lines from several threads (and processes writing to one file or pipe) never
/// interleave.
trait Sink: Send + Sync {
    fn line(&self, line: &[u8]);
}

/// A destination written by whichever thread finds it idle. A line that comes while
/// another thread is writing is appended to `pending`, and that thread writes it (with
/// whatever else came) as soon as its own write returns, before it goes back to its
/// request: no thread sleeps waiting for another's write(2), the lines keep the order in
/// which they came, and none waits longer than the write before it. Only when the
/// destination stalls (a full disk, a stopped reader of the pipe) and `limit` bytes are
/// pending do further lines wait for room, so a stall holds bounded memory.
struct Combining<W> {
    pending: Mutex<Pending>,
    /// Held by the one writing thread only.
    out: Mutex<W>,
    room: Condvar,
    limit: usize,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The last batch's buffer, kept for the next one.
    spare: Vec<u8>,
    /// A thread is writing: it will take `lines` when its write returns.
    writing: bool,
    /// Threads waiting for room.
    waiting: usize,
}

/// Pending bytes past which a line waits for the writer (about 10 000 access lines).
const PENDING_LIMIT: usize = 1 << 20;

/// The most a write(2) to a pipe carries in one piece (POSIX's `PIPE_BUF` on Linux): a
/// service manager's or a container's log pipe may have other writers.
const PIPE_BUF: usize = 4096;

/// Writes `lines` (whole lines) in writes of at most `PIPE_BUF` bytes, each ending at a
/// line's end, so that no line is split between writes; a longer line goes alone in one
/// write, as every line did before lines were batched.
fn write_lines(out: &mut impl Write, mut lines: &[u8]) -> io::Result<()> {
    while !lines.is_empty() {
        let cut = if lines.len() <= PIPE_BUF {
            lines.len()
        } else {
            match lines[..PIPE_BUF].iter().rposition(|&b| b == b'\n') {
                Some(end) => end + 1,
                None => lines
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(lines.len(), |end| end + 1),
            }
        };
        out.write_all(&lines[..cut])?;
        lines = &lines[cut..];
    }
    Ok(())
}

impl<W: Write + Send> Combining<W> {
    fn new(out: W) -> Combining<W> {
        Combining::with_limit(out, PENDING_LIMIT)
    }

    fn with_limit(out: W, limit: usize) -> Combining<W> {
        Combining {
            pending: Mutex::new(Pending::default()),
            out: Mutex::new(out),
            room: Condvar::new(),
            limit,
        }
    }
}

impl<W: Write + Send> Sink for Combining<W> {
    fn line(&self, line: &[u8]) {
        let mut p = lock(&self.pending);
        while p.writing && p.lines.len() >= self.limit {
            p.waiting += 1;
            p = self.room.wait(p).unwrap_or_else(PoisonError::into_inner);
            p.waiting -= 1;
        }
        p.lines.extend_from_slice(line);
        if p.writing {
            return;
        }
        p.writing = true;
        // Until nothing is pending: a line appended while this thread writes is written
        // by it, since its own thread has left it here.
        loop {
            let spare = std::mem::take(&mut p.spare);
            let mut batch = std::mem::replace(&mut p.lines, spare);
            drop(p);
            // Nowhere to report a failing log destination: the lines are lost.
            let _ = write_lines(&mut *lock(&self.out), &batch);
            batch.clear();
            p = lock(&self.pending);
            p.spare = batch;
            if p.waiting > 0 {
                self.room.notify_all();
            }
            if p.lines.is_empty() {
                p.writing = false;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};

    use log::Level;

    use super::*;

    #[test]
    fn a_line_is_time_level_and_message() {
        let mut line = Vec::new();
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_558_151_173_838);
        let args = format_args!("GET /x {}", 200);
        let record = Record::builder()
            .level(Level::Info)
            .target("user_api::service")
            .args(args)
            .build();
        format_line(&mut line, time, &record);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "2026-12-06T11:55:51.173838Z [INFO] GET /x 200\n"
        );
    }

    #[test]
    fn only_our_records_and_the_pools_are_kept() {
        for target in ["user_api", "user_api::service", "r2d2"] {
            assert!(kept(target), "{target}");
        }
        for target in [
            "tokio_postgres::prepare",
            "user_apix",
            "r2d2_postgres",
            "rustls",
        ] {
            assert!(!kept(target), "{target}");
        }
    }

    #[test]
    fn each_line_reaches_the_sink_whole() {
        let sink = Combining::new(Vec::new());
        sink.line(b"one\n");
        sink.line(b"two\n");
        assert_eq!(sink.out.into_inner().unwrap(), b"one\ntwo\n");
    }

    #[test]
    fn lines_from_many_threads_all_arrive_whole_and_in_each_threads_order() {
        let sink = Combining::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..8 {
                let sink = &sink;
                s.spawn(move || {
                    for i in 0..2000 {
                        sink.line(format!("t{t} {i} {}\n", "x".repeat(i % 50)).as_bytes());
                    }
                });
            }
        });
        let text = String::from_utf8(sink.out.into_inner().unwrap()).unwrap();
        let mut next = [0usize; 8];
        for line in text.lines() {
            let mut parts = line.split(' ');
            let t: usize = parts.next().unwrap()[1..].parse().unwrap();
            let i: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(
                i, next[t],
                "thread {t}'s lines out of order or cut: {line:?}"
            );
            assert_eq!(parts.next().unwrap().len(), i % 50, "{line:?}");
            next[t] += 1;
        }
        assert_eq!(next, [2000; 8]);
    }

    #[test]
    fn a_batch_goes_out_in_writes_of_whole_lines_within_pipe_buf() {
        /// Keeps each write(2) apart.
        #[derive(Default)]
        struct Writes(Vec<Vec<u8>>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut batch = Vec::new();
        for i in 0..200 {
            batch.extend_from_slice(format!("line {i} {}\n", "x".repeat(i % 70)).as_bytes());
        }
        let long = format!("{}\n", "y".repeat(2 * PIPE_BUF));
        batch.extend_from_slice(long.as_bytes());
        batch.extend_from_slice(b"last\n");
        let mut out = Writes::default();
        write_lines(&mut out, &batch).unwrap();
        assert_eq!(out.0.concat(), batch, "every byte, in order");
        assert!(out.0.len() > 2, "split into several writes");
        for w in &out.0 {
            assert!(w.ends_with(b"\n"), "a write ends at a line's end");
            assert!(
                w.len() <= PIPE_BUF || w == long.as_bytes(),
                "{} bytes",
                w.len()
            );
        }
        assert!(
            out.0.iter().any(|w| w == long.as_bytes()),
            "the long line alone"
        );
    }

    #[test]
    fn a_failing_destination_loses_its_lines_and_holds_up_no_one() {
        /// Fails its first write, then takes everything.
        #[derive(Default)]
        struct FailsOnce(bool, Vec<u8>);
        impl Write for FailsOnce {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if !self.0 {
                    self.0 = true;
                    return Err(io::Error::other("disk full"));
                }
                self.1.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Combining::new(FailsOnce::default());
        sink.line(b"lost\n");
        assert!(
            !lock(&sink.pending).writing,
            "the writer let go after the failure"
        );
        assert!(lock(&sink.pending).lines.is_empty());
        sink.line(b"kept\n");
        assert_eq!(sink.out.into_inner().unwrap().1, b"kept\n");
    }

    /// A destination whose first write blocks until the test lets it go.
    struct Gated {
        written: Written,
        entered: Option<mpsc::Sender<()>>,
        gate: Option<mpsc::Receiver<()>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let (Some(entered), Some(gate)) = (self.entered.take(), self.gate.take()) {
                let _ = entered.send(());
                let _ = gate.recv();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What was written to a [`Gated`] destination.
    type Written = Arc<Mutex<Vec<u8>>>;

    /// A sink whose first write (of `first\n`, by another thread) is held until the
    /// returned sender releases it, and what was written.
    fn held(limit: usize) -> (Arc<Combining<Gated>>, mpsc::Sender<()>, Written) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = mpsc::channel();
        let (release, gate) = mpsc::channel();
        let sink = Arc::new(Combining::with_limit(
            Gated {
                written: Arc::clone(&written),
                entered: Some(entered_tx),
                gate: Some(gate),
            },
            limit,
        ));
        let first = Arc::clone(&sink);
        std::thread::spawn(move || first.line(b"first\n"));
        entered
            .recv_timeout(Duration::from_secs(5))
            .expect("the first write began");
        (sink, release, written)
    }

    /// Runs `line` on another thread; whether it returned within `wait`.
    fn returns_within(
        sink: &Arc<Combining<Gated>>,
        line: &'static [u8],
        wait: Duration,
    ) -> (bool, mpsc::Receiver<()>) {
        let (done_tx, done) = mpsc::channel();
        let sink = Arc::clone(sink);
        std::thread::spawn(move || {
            sink.line(line);
            let _ = done_tx.send(());
        });
        let returned = done.recv_timeout(wait).is_ok();
        (returned, done)
    }

    #[test]
    fn a_line_never_waits_for_another_threads_write_and_is_written_right_after_it() {
        let (sink, release, written) = held(PENDING_LIMIT);
        // The destination is busy with the first line; the second goes on at once.
        let (returned, _) = returns_within(&sink, b"second\n", Duration::from_secs(5));
        assert!(returned, "a line waited for another thread's write");
        assert!(written.lock().unwrap().is_empty());
        release.send(()).unwrap();
        // The first thread writes the second line too, before it returns.
        let deadline = Instant::now() + Duration::from_secs(5);
        while written.lock().unwrap().as_slice() != b"first\nsecond\n" && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(written.lock().unwrap().as_slice(), b"first\nsecond\n");
        assert!(!lock(&sink.pending).writing);
    }

    #[test]
    fn past_the_limit_a_line_waits_for_room_while_the_destination_stalls() {
        let (sink, release, written) = held(8);
        // Nine bytes pending: the limit is reached, and the next line must wait.
        let (returned, _) = returns_within(&sink, b"12345678\n", Duration::from_secs(5));
        assert!(returned, "below the limit a line does not wait");
        let (returned, done) = returns_within(&sink, b"third\n", Duration::from_millis(200));
        assert!(
            !returned,
            "a line was taken past the limit while the destination stalled"
        );
        release.send(()).unwrap();
        done.recv_timeout(Duration::from_secs(5))
            .expect("room made once the write returned");
        let deadline = Instant::now() + Duration::from_secs(5);
        while written.lock().unwrap().len() < 21 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            written.lock().unwrap().as_slice(),
            b"first\n12345678\nthird\n"
        );
    }
}
