//! Boot phase timestamps, so first light can be measured like Cloud Hypervisor's boot timing.
//! Each phase is logged at info level with CLOCK_MONOTONIC nanoseconds, which a benchmark that
//! recorded the same clock before exec can subtract.

use std::time::Instant;

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Records the phases of one boot.
pub struct BootTimer {
    start: Instant,
}

impl BootTimer {
    pub fn new(start: Instant) -> Self {
        BootTimer { start }
    }

    /// Log `name` with its time since process start and the absolute monotonic clock.
    pub fn phase(&self, name: &str) {
        log::info!(
            "boot-phase {name} +{:.3}ms mono_ns={}",
            self.start.elapsed().as_secs_f64() * 1e3,
            monotonic_ns()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a && a > 0);
    }
}
