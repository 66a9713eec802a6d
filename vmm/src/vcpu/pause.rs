//! Pausing the vCPUs of a running VM (`vm.pause` / `vm.resume`).
//!
//! The VMM raises the gate and kicks each vCPU out of KVM_RUN; a vCPU thread that sees the
//! gate raised parks on it (counted) instead of re-entering the guest, until the gate is
//! lowered or the VM is stopped. The check on the vCPU's exit path is one atomic load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use hypervisor::{SavedState, VcpuX86_64};

#[derive(Default)]
pub struct PauseGate {
    raised: AtomicBool,
    parked: Mutex<u32>,
    changed: Condvar,
    /// Snapshots: while parked, each vCPU saves its own state once per round (a vCPU's state
    /// is read on its own thread, which owns it).
    save: Mutex<SaveRound>,
    round: AtomicU64,
}

#[derive(Default)]
struct SaveRound {
    /// The round these MSRs and states belong to (a late answer to an earlier, timed-out
    /// round is dropped).
    round: u64,
    msrs: Vec<u32>,
    states: BTreeMap<u32, Result<SavedState, String>>,
}

/// What a parked vCPU thread brings to the gate for snapshots: its vCPU, how it handles an
/// exit (to finish the instruction it stopped on), and the last save round it served.
pub struct Saver<'a> {
    pub vcpu: &'a mut dyn VcpuX86_64,
    /// Handle one exit; an error ends the save (the exit was not a plain I/O or MMIO access).
    pub handle: &'a dyn Fn(hypervisor::VmExit<'_>) -> Result<(), String>,
    pub served: &'a mut u64,
}

impl Saver<'_> {
    fn save(&mut self, msrs: &[u32]) -> Result<SavedState, String> {
        while let Some(exit) = self.vcpu.complete_pending().map_err(|e| e.to_string())? {
            (self.handle)(exit)?;
        }
        self.vcpu.save_state(msrs).map_err(|e| e.to_string())
    }
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
    /// the gate is down. While parked, `saver` (when given) saves its vCPU's state for each
    /// save round the VMM starts ([`PauseGate::save_all`]) that it has not served yet, and
    /// when the gate is lowered the guest's clock is told it was stopped.
    pub fn park(&self, stop: &AtomicBool, mut saver: Option<Saver<'_>>) {
        if !self.is_raised() {
            return;
        }
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        *parked += 1;
        self.changed.notify_all();
        while self.is_raised() && !stop.load(Ordering::Acquire) {
            let round = self.round.load(Ordering::Acquire);
            if let Some(s) = saver.as_mut().filter(|s| *s.served != round) {
                *s.served = round;
                drop(parked);
                let msrs = self
                    .save
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .msrs
                    .clone();
                let state = s.save(&msrs);
                let mut r = self.save.lock().unwrap_or_else(|e| e.into_inner());
                if r.round == round {
                    r.states.insert(s.vcpu.id(), state);
                }
                drop(r);
                parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                self.changed.notify_all();
                continue;
            }
            // A stop sets the flag and lowers the gate; the timeout is only a backstop.
            parked = self
                .changed
                .wait_timeout(parked, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *parked -= 1;
        self.changed.notify_all();
        drop(parked);
        if let Some(s) = saver {
            if !stop.load(Ordering::Acquire) {
                if let Err(e) = s.vcpu.clock_paused() {
                    log::debug!("vCPU {}: {e}", s.vcpu.id());
                }
            }
        }
    }

    /// VMM side, with every vCPU parked: have each of `vcpus` save its state (its MSRs among
    /// `msrs`) and collect them in vCPU order. Fails if one could not, or did not answer
    /// within `timeout`.
    pub fn save_all(
        &self,
        vcpus: u32,
        msrs: &[u32],
        timeout: Duration,
    ) -> Result<Vec<SavedState>, String> {
        {
            // The new round's number and MSRs are in place before a vCPU can see the round.
            let _guard = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            let mut s = self.save.lock().unwrap_or_else(|e| e.into_inner());
            s.round = self.round.load(Ordering::Acquire) + 1;
            s.msrs = msrs.to_vec();
            s.states.clear();
            self.round.store(s.round, Ordering::Release);
            self.changed.notify_all();
        }
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut s = self.save.lock().unwrap_or_else(|e| e.into_inner());
                if s.states.len() as u32 >= vcpus {
                    let states = std::mem::take(&mut s.states);
                    return states
                        .into_iter()
                        .map(|(id, r)| r.map_err(|e| format!("vCPU {id}: {e}")))
                        .collect();
                }
            }
            if Instant::now() >= deadline {
                return Err("a vCPU did not save its state in time (is the VM paused?)".into());
            }
            let guard = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            let _ = self
                .changed
                .wait_timeout(guard, Duration::from_millis(2))
                .unwrap_or_else(|e| e.into_inner());
        }
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
        g.park(&AtomicBool::new(false), None);
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
                std::thread::spawn(move || g.park(&stop, None))
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
            std::thread::spawn(move || g.park(&stop, None))
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
