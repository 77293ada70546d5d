//! Logging: simplelog to stderr, and optionally appended to `LOG_FILE`, one line per
//! record with an RFC 3339 UTC time.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use log::LevelFilter;
use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};

/// Installs the logger. Only our own records and the pool's are kept: the database
/// driver is chatty at debug level and says nothing an operator needs.
pub fn init(level: LevelFilter, file: Option<&Path>) -> io::Result<()> {
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_allow_str("user_api")
        .add_filter_allow_str("r2d2")
        .build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![WriteLogger::new(
        level,
        config.clone(),
        Lines::new(io::stderr()),
    )];
    if let Some(path) = file {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        loggers.push(WriteLogger::new(level, config, Lines::new(f)));
    }
    CombinedLogger::init(loggers).map_err(io::Error::other)
}

/// Collects the pieces simplelog writes for one record and hands the finished line to
/// the file in one write(2). It does what `LineWriter` does, minus its search for a
/// newline in every piece (simplelog ends each record with one, and nothing else has
/// one): on the access-log path that search cost more than formatting the line.
struct Lines<W: Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: Write> Lines<W> {
    fn new(inner: W) -> Lines<W> {
        Lines {
            inner,
            line: Vec::with_capacity(256),
        }
    }
}

impl<W: Write> Write for Lines<W> {
    fn write(&mut self, piece: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(piece);
        if self.line.last() == Some(&b'\n') {
            self.flush()?;
        }
        Ok(piece.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.write_all(&self.line);
        // A line that could not be written is dropped, not retried with the next one.
        self.line.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_writes_each_record_once_it_ends() {
        let mut w = Lines::new(Vec::new());
        write!(w, "2026 [INFO] ").unwrap();
        write!(w, "GET /x").unwrap();
        assert!(w.inner.is_empty(), "nothing is written before the newline");
        writeln!(w).unwrap();
        writeln!(w, "second").unwrap();
        assert_eq!(w.inner, b"2026 [INFO] GET /x\nsecond\n");
    }
}
