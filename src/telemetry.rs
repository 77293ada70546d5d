//! Logging: simplelog to stderr, and optionally appended to `LOG_FILE`, one line per
//! record with an RFC 3339 UTC time.

use std::fs::OpenOptions;
use std::io::{self, LineWriter};
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
    // A LineWriter turns each record into one write(2), however simplelog pieces it.
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![WriteLogger::new(
        level,
        config.clone(),
        LineWriter::new(io::stderr()),
    )];
    if let Some(path) = file {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        loggers.push(WriteLogger::new(level, config, LineWriter::new(f)));
    }
    CombinedLogger::init(loggers).map_err(io::Error::other)
}
