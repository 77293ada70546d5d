//! Logging: the `log` facade's records to stderr, and also appended to `LOG_FILE` when
//! set, one line each: `2026-12-06T11:55:51.173838Z [INFO] message` (UTC).
//!
//! Ours rather than simplelog (which the first version used): simplelog formats each
//! record while it holds its writer's lock, so sixteen workers writing the access log
//! queued on that lock, and it formats the record again for each destination. Here a
//! line is formatted once, on the calling thread, and a lock is held only for its
//! write(2). `GET /user/{id}` with the access log on cost the static build 40-41 us of
//! server CPU per request with simplelog and 35-36 with this (docs/design.md).

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};

use crate::{clock, short_copy};

/// Installs the logger. Only our own records and the pool's are kept: the database
/// driver is chatty at debug level and says nothing an operator needs.
pub fn init(level: LevelFilter, file: Option<&Path>) -> io::Result<()> {
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Mutex::new(io::stderr()))];
    if let Some(path) = file {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        sinks.push(Box::new(Mutex::new(f)));
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

/// Where lines go: stderr, or the file. One write(2) a line, so that lines from
/// several threads (and processes appending to one file) never interleave.
trait Sink: Send + Sync {
    fn line(&self, line: &[u8]);
}

impl<W: Write + Send> Sink for Mutex<W> {
    fn line(&self, line: &[u8]) {
        let mut out = self.lock().unwrap_or_else(PoisonError::into_inner);
        // Nowhere to report a failing log destination: the line is lost.
        let _ = out.write_all(line);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        let sink = Mutex::new(Vec::new());
        sink.line(b"one\n");
        sink.line(b"two\n");
        assert_eq!(sink.into_inner().unwrap(), b"one\ntwo\n");
    }
}
