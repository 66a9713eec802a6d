//! Pausing the vCPUs of a running VM (`vm.pause` / `vm.resume`).
//!
//! The VMM raises the gate and kicks each vCPU out of KVM_RUN; a vCPU thread that sees the
//! gate raised parks on it (counted) instead of re-entering the guest, until the gate is
//! lowered or the VM is stopped. The check on the vCPU's exit path is one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct PauseGate {
    raised: AtomicBool,
    parked: Mutex<u32>,
    changed: Condvar,
}

impl PauseGate {
    /// Ask the vCPUs to park at their next exit.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
    }

    /// Let parked vCPUs go back into the guest.
    pub fn lower(&self) {
        let _guard = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        self.raised.store(false, Ordering::Release);
        self.changed.notify_all();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// How many vCPU threads are parked now.
    pub fn parked(&self) -> u32 {
        *self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// vCPU side: park while the gate is raised and `stop` is not set. Returns at once when
    /// the gate is down.
    pub fn park(&self, stop: &AtomicBool) {
        if !self.is_raised() {
            return;
        }
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        *parked += 1;
        self.changed.notify_all();
        while self.is_raised() && !stop.load(Ordering::Acquire) {
            // A stop sets the flag and lowers the gate; the timeout is only a backstop.
            parked = self
                .changed
                .wait_timeout(parked, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *parked -= 1;
        self.changed.notify_all();
    }

    /// VMM side: wait until `done()` says every vCPU is parked (or gone), calling `nudge`
    /// (kick the vCPUs still in the guest) between checks. False if `timeout` passed first.
    pub fn wait_all_parked(
        &self,
        timeout: Duration,
        mut nudge: impl FnMut(),
        done: impl Fn(u32) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self.parked()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            nudge();
            let guard = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            let _ = self
                .changed
                .wait_timeout(guard, Duration::from_micros(500))
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lowered_gate_does_not_park() {
        let g = PauseGate::default();
        g.park(&AtomicBool::new(false));
        assert_eq!(g.parked(), 0);
    }

    #[test]
    fn parked_threads_are_counted_and_released_by_lower_or_stop() {
        let g = Arc::new(PauseGate::default());
        let stop = Arc::new(AtomicBool::new(false));
        g.raise();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (g, stop) = (g.clone(), stop.clone());
                std::thread::spawn(move || g.park(&stop))
            })
            .collect();
        assert!(g.wait_all_parked(Duration::from_secs(10), || {}, |n| n == 3));
        g.lower();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(g.parked(), 0);

        g.raise();
        let t = {
            let (g, stop) = (g.clone(), stop.clone());
            std::thread::spawn(move || g.park(&stop))
        };
        assert!(g.wait_all_parked(Duration::from_secs(10), || {}, |n| n == 1));
        stop.store(true, Ordering::Release);
        t.join().unwrap();
        assert!(
            g.is_raised(),
            "a stop releases the vCPU without lowering the gate"
        );
    }

    #[test]
    fn waiting_for_a_vcpu_that_never_parks_times_out_after_nudging() {
        let g = PauseGate::default();
        g.raise();
        let mut nudges = 0;
        assert!(!g.wait_all_parked(Duration::from_millis(20), || nudges += 1, |n| n == 1));
        assert!(nudges > 0);
    }
}
