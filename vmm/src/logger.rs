//! A lean logger: `[vmm LEVEL +seconds] message` to stderr or a file.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use log::{LevelFilter, Log, Metadata, Record};

struct Logger {
    start: Instant,
    level: LevelFilter,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        // vfio-ioctls warns about things that are normal here (a conventional PCI device has
        // no ERR/REQ interrupt index): its warnings show from -vv on; its errors always.
        let quiet = m.target().starts_with("vfio_ioctls") && m.level() == log::Level::Warn;
        if quiet && self.level < LevelFilter::Debug {
            return false;
        }
        m.level() <= self.level
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let t = self.start.elapsed();
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "[vmm {:<5} {:>4}.{:06}] {}",
            r.level(),
            t.as_secs(),
            t.subsec_micros(),
            r.args()
        );
    }

    fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }
}

/// Level from `-v` count: errors and warnings by default.
pub fn level_for(verbosity: u8) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Install the global logger. A log file is created (or truncated).
pub fn init(start: Instant, verbosity: u8, file: Option<&Path>) -> std::io::Result<()> {
    let out: Box<dyn Write + Send> = match file {
        Some(p) => Box::new(File::create(p)?),
        None => Box::new(std::io::stderr()),
    };
    let level = level_for(verbosity);
    let logger = Box::leak(Box::new(Logger {
        start,
        level,
        out: Mutex::new(out),
    }));
    // A second init (only possible in tests) keeps the first logger.
    let _ = log::set_logger(logger);
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for(0), LevelFilter::Warn);
        assert_eq!(level_for(1), LevelFilter::Info);
        assert_eq!(level_for(2), LevelFilter::Debug);
        assert_eq!(level_for(9), LevelFilter::Trace);
    }
}
