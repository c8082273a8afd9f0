//! A library logger that records what it is given.

use std::sync::{Arc, Mutex};

use gateway::{LogLevel, Logger};

/// The log lines a [`recording_logger`] received.
pub type LogLines = Arc<Mutex<Vec<(LogLevel, String)>>>;

/// A logger that keeps every line it is given.
pub fn recording_logger() -> (Logger, LogLines) {
    let lines: LogLines = Arc::default();
    let sink = Arc::clone(&lines);
    let logger = Logger::new(move |level, message| {
        sink.lock().unwrap().push((level, message.to_owned()));
    });
    (logger, lines)
}
