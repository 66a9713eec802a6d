//! A lean logger: `[vmm LEVEL +seconds] message` to stderr or a file.
//!
//! A guest controls much of what gets logged (malformed virtqueues, odd register accesses), so
//! warnings and errors are rate-limited per source module: at most [`BURST`] lines per second
//! each, and one line saying how many were suppressed. A hostile guest cannot flood the log
//! (or fill the disk under --log-file); debug and trace output, asked for with -vv, is not
//! limited.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{LevelFilter, Log, Metadata, Record};

/// Lines per module per second before warnings and errors are suppressed.
pub const BURST: u32 = 20;
const WINDOW: Duration = Duration::from_secs(1);

/// Per-module rate limit state: window start, lines in it, lines suppressed in it.
#[derive(Default)]
struct Limiter {
    windows: HashMap<String, (Option<Instant>, u32, u32)>,
}

impl Limiter {
    /// Whether a line from `target` may be written now; `Some(n)` also reports `n` lines
    /// suppressed in the window that just ended.
    fn admit(&mut self, target: &str, now: Instant) -> (bool, u32) {
        let w = self.windows.entry(target.to_string()).or_default();
        let mut reported = 0;
        if w.0.is_none_or(|start| now.duration_since(start) >= WINDOW) {
            reported = w.2;
            *w = (Some(now), 0, 0);
        }
        if w.1 < BURST {
            w.1 += 1;
            (true, reported)
        } else {
            w.2 += 1;
            (false, reported)
        }
    }
}

struct Logger {
    start: Instant,
    level: LevelFilter,
    out: Mutex<(Box<dyn Write + Send>, Limiter)>,
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
        // Each line is formatted first and written with one write(2): stderr is unbuffered,
        // and a line written piecemeal costs a syscall per piece and can interleave with
        // another thread's line.
        let mut line = String::with_capacity(128);
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let (out, limiter) = &mut *guard;
        if r.level() <= log::Level::Warn {
            let (admit, suppressed) = limiter.admit(r.target(), Instant::now());
            if suppressed > 0 {
                let _ = writeln!(
                    line,
                    "[vmm WARN  {:>4}.{:06}] {suppressed} more lines from {} suppressed",
                    t.as_secs(),
                    t.subsec_micros(),
                    r.target()
                );
            }
            if !admit {
                let _ = out.write_all(line.as_bytes());
                return;
            }
        }
        let _ = writeln!(
            line,
            "[vmm {:<5} {:>4}.{:06}] {}",
            r.level(),
            t.as_secs(),
            t.subsec_micros(),
            r.args()
        );
        let _ = out.write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(|e| e.into_inner()).0.flush();
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
        out: Mutex::new((out, Limiter::default())),
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
    fn a_flood_from_one_module_is_cut_to_the_burst_and_counted() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let admitted = (0..1000)
            .filter(|_| l.admit("devices::virtio", t0).0)
            .count();
        assert_eq!(admitted, BURST as usize);
        // Another module has its own budget.
        assert!(l.admit("vmm::vm", t0).0);
        // The next window admits again and reports what was suppressed.
        assert_eq!(
            l.admit("devices::virtio", t0 + WINDOW),
            (true, 1000 - BURST)
        );
    }

    /// Records each `write` call separately.
    #[derive(Clone, Default)]
    struct Writes(std::sync::Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_line_is_one_write_so_threads_cannot_interleave_inside_a_line() {
        let w = Writes::default();
        let logger = Logger {
            start: Instant::now(),
            level: LevelFilter::Info,
            out: Mutex::new((Box::new(w.clone()), Limiter::default())),
        };
        for n in 0..3 {
            logger.log(
                &Record::builder()
                    .level(log::Level::Info)
                    .target("vmm::vm")
                    .args(format_args!("boot-phase x{n} +{}ms", n * 7))
                    .build(),
            );
        }
        let writes = w.0.lock().unwrap();
        assert_eq!(writes.len(), 3, "{writes:?}");
        for (n, line) in writes.iter().enumerate() {
            let line = String::from_utf8_lossy(line);
            assert!(line.starts_with("[vmm INFO "), "{line}");
            assert!(
                line.ends_with(&format!("boot-phase x{n} +{}ms\n", n * 7)),
                "{line}"
            );
        }
    }

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for(0), LevelFilter::Warn);
        assert_eq!(level_for(1), LevelFilter::Info);
        assert_eq!(level_for(2), LevelFilter::Debug);
        assert_eq!(level_for(9), LevelFilter::Trace);
    }
}
