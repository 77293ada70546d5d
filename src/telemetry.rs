//! Logging: the `log` facade's records to stderr, and also appended to `LOG_FILE` when
//! set, one line each: `2026-12-06T11:55:51.173838Z [INFO] message` (UTC).
//!
//! Ours rather than simplelog (which the first version used): simplelog formats each
//! record while it holds its writer's lock, so sixteen workers writing the access log
//! queued on that lock, and it formats the record again for each destination. Here a
//! line is formatted once, on the calling thread, and a lock is held only to append it.
//! `GET /user/{id}` at `LOG_LEVEL=info` cost 4-5 us more server CPU per request with
//! simplelog (docs/performance.md), about a seventh of the request.

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::clock;

/// Installs the logger. Only our own records and the pool's are kept: the database
/// driver is chatty at debug level and says nothing an operator needs.
///
/// Records reach their destinations at once, except under load: a line that comes
/// within [`BATCH_WINDOW`] of the last write waits for the next one (at most that
/// long), so that a busy server writes its access log a batch at a time rather than
/// with a write(2) per request. Warnings and errors never wait, and take what waits
/// with them. Call `log::logger().flush()` before the process ends.
pub fn init(level: LevelFilter, file: Option<&Path>) -> io::Result<()> {
    let mut sinks: Vec<Arc<dyn Destination>> = vec![Arc::new(Sink::new(io::stderr()))];
    if let Some(path) = file {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        sinks.push(Arc::new(Sink::new(f)));
    }
    let logger = Logger {
        level,
        sinks: sinks.clone(),
    };
    log::set_logger(Box::leak(Box::new(logger))).map_err(io::Error::other)?;
    log::set_max_level(level);
    thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || flush_behind(&sinks))?;
    Ok(())
}

/// The crates whose records are kept (a target is a module path).
const KEPT: [&str; 2] = ["user_api", "r2d2"];

struct Logger {
    level: LevelFilter,
    sinks: Vec<Arc<dyn Destination>>,
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
            let (urgent, now) = (record.level() <= Level::Warn, Instant::now());
            for sink in &self.sinks {
                // Nowhere to report a failing log destination: the line is lost.
                let _ = sink.line(line, urgent, now);
            }
        };
        // One buffer per thread; a record logged while formatting another gets its own.
        let reused = LINE.try_with(|cell| cell.try_borrow_mut().map(|mut line| emit(&mut line)));
        if !matches!(reused, Ok(Ok(()))) {
            emit(&mut Vec::new());
        }
    }

    fn flush(&self) {
        for sink in &self.sinks {
            sink.flush_held();
        }
    }
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
    let _ = writeln!(line, " [{}] {}", record.level(), record.args());
}

/// How long a line may wait for others to be written with it.
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Lines waiting are written once more lines would fill this.
const BATCH_BYTES: usize = 16 * 1024;

/// Writes what the sinks hold back, each within `BATCH_WINDOW` of it being held.
fn flush_behind(sinks: &[Arc<dyn Destination>]) {
    loop {
        {
            let mut held = HELD.0.lock().unwrap_or_else(PoisonError::into_inner);
            while !*held {
                held = HELD.1.wait(held).unwrap_or_else(PoisonError::into_inner);
            }
            *held = false;
        }
        thread::sleep(BATCH_WINDOW);
        for sink in sinks {
            sink.flush_held();
        }
    }
}

/// Set (and signalled) when a sink starts holding lines back.
static HELD: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// Where lines go: stderr, or the file.
trait Destination: Send + Sync {
    /// Takes one complete line: written now (after whatever is held) or held back.
    fn line(&self, line: &[u8], urgent: bool, now: Instant) -> io::Result<()>;
    /// Writes whatever is held back.
    fn flush_held(&self);
}

struct Sink<W: Write> {
    state: Mutex<SinkState<W>>,
}

struct SinkState<W> {
    out: W,
    /// Complete lines not yet written.
    held: Vec<u8>,
    last_write: Option<Instant>,
}

impl<W: Write> Sink<W> {
    fn new(out: W) -> Sink<W> {
        Sink {
            state: Mutex::new(SinkState {
                out,
                held: Vec::with_capacity(BATCH_BYTES),
                last_write: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SinkState<W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W: Write + Send> Destination for Sink<W> {
    fn line(&self, line: &[u8], urgent: bool, now: Instant) -> io::Result<()> {
        let mut state = self.lock();
        let was_empty = state.held.is_empty();
        state.held.extend_from_slice(line);
        let busy = state
            .last_write
            .is_some_and(|t| now.saturating_duration_since(t) < BATCH_WINDOW);
        if !busy || urgent || state.held.len() >= BATCH_BYTES {
            return state.write_held(now);
        }
        if was_empty {
            drop(state);
            *HELD.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
            HELD.1.notify_one();
        }
        Ok(())
    }

    fn flush_held(&self) {
        let mut state = self.lock();
        if !state.held.is_empty() {
            let _ = state.write_held(Instant::now());
        }
    }
}

impl<W: Write> SinkState<W> {
    fn write_held(&mut self, now: Instant) -> io::Result<()> {
        self.last_write = Some(now);
        let result = self
            .out
            .write_all(&self.held)
            .and_then(|()| self.out.flush());
        // Lines that could not be written are dropped, not retried with the next ones.
        self.held.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> Sink<Vec<u8>> {
        Sink::new(Vec::new())
    }

    fn written(sink: &Sink<Vec<u8>>) -> String {
        String::from_utf8(sink.lock().out.clone()).unwrap()
    }

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
    fn lines_close_behind_a_write_wait_for_a_flush_and_keep_their_order() {
        let sink = sink();
        let t0 = Instant::now();
        sink.line(b"one\n", false, t0).unwrap();
        sink.line(b"two\n", false, t0).unwrap();
        sink.line(b"three\n", false, t0).unwrap();
        assert_eq!(written(&sink), "one\n", "the rest came within the window");
        sink.flush_held();
        assert_eq!(written(&sink), "one\ntwo\nthree\n");
    }

    #[test]
    fn a_warning_or_an_error_is_written_at_once_with_what_waited() {
        let sink = sink();
        let t0 = Instant::now();
        sink.line(b"one\n", false, t0).unwrap();
        sink.line(b"two\n", false, t0).unwrap();
        sink.line(b"warning\n", true, t0).unwrap();
        assert_eq!(written(&sink), "one\ntwo\nwarning\n");
    }

    #[test]
    fn a_line_after_a_quiet_spell_is_written_at_once() {
        let sink = sink();
        let t0 = Instant::now();
        sink.line(b"one\n", false, t0).unwrap();
        sink.line(b"two\n", false, t0 + BATCH_WINDOW / 2).unwrap();
        sink.line(b"three\n", false, t0 + BATCH_WINDOW * 2).unwrap();
        assert_eq!(written(&sink), "one\ntwo\nthree\n");
    }

    #[test]
    fn held_lines_are_written_once_they_would_fill_a_batch() {
        let sink = sink();
        let t0 = Instant::now();
        sink.line(b"first\n", false, t0).unwrap();
        let long = format!("{}\n", "x".repeat(BATCH_BYTES / 4));
        for _ in 0..3 {
            sink.line(long.as_bytes(), false, t0).unwrap();
        }
        assert_eq!(sink.lock().held.len(), 3 * long.len());
        sink.line(long.as_bytes(), false, t0).unwrap();
        assert!(sink.lock().held.is_empty());
        assert_eq!(sink.lock().out.len(), 6 + 4 * long.len());
    }

    #[test]
    fn the_flushing_thread_writes_what_was_held_back() {
        let sink = Arc::new(sink());
        let t0 = Instant::now();
        sink.line(b"one\n", false, t0).unwrap();
        sink.line(b"two\n", false, t0).unwrap();
        let sinks: Vec<Arc<dyn Destination>> = vec![sink.clone()];
        thread::spawn(move || flush_behind(&sinks));
        let deadline = Instant::now() + Duration::from_secs(5);
        while written(&sink) != "one\ntwo\n" {
            assert!(Instant::now() < deadline, "the held line was never written");
            thread::sleep(Duration::from_millis(1));
        }
    }
}
