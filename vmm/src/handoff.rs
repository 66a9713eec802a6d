//! Handing work between the VMM thread and a vCPU thread during boot, without paying a
//! wake-up.
//!
//! Blocking on a channel puts the thread to sleep; waking it again costs the waker a futex
//! call and the sleeper the scheduler's latency, which in a virtual machine (the host of a
//! nested or PVM setup) includes waking an idle virtual CPU: seen here at 0.2–0.6 ms in
//! traces, as much as the whole VM setup after memory registration. So the last two hand-offs
//! of the first-light path spin for a bounded time before they block: the VMM thread waiting
//! for vCPU 0's thread to be ready, and vCPU 0's thread waiting to be started. Both waits are
//! short and overlap light work on the other thread.
//!
//! The earlier hand-offs (vCPU 0's thread waiting for the irqchip, the VMM thread waiting for
//! the CPUID and the compiled filters) do not spin: a CPU spinning while the other thread
//! registers memory or creates the irqchip made those ioctls slower (they wait for RCU grace
//! periods, which a busy CPU delays), and first light at 128 MiB went from ~1.08x to ~1.2x of
//! the floor (`first_light --vmm A --vmm B`, interleaved). A receiver spins only when the
//! process may run on more than one CPU (on one CPU it would only delay its sender), and never
//! for longer than the budget.

use std::sync::mpsc::{Receiver, RecvError, TryRecvError};
use std::time::{Duration, Instant};

/// How long a receiver on the boot path spins before it sleeps.
pub const SPIN: Duration = Duration::from_millis(2);

/// [`SPIN`] when this thread may run on more than one CPU, zero otherwise. Call it before the
/// thread's seccomp filter is installed (it asks the kernel for the affinity mask).
pub fn spin_budget() -> Duration {
    // SAFETY: cpu_set_t is plain data; the kernel fills at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` outlives the call.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    // SAFETY: CPU_COUNT only reads the set.
    if rc == 0 && unsafe { libc::CPU_COUNT(&set) } > 1 {
        SPIN
    } else {
        Duration::ZERO
    }
}

/// Receive from `rx`, spinning for at most `spin` before blocking.
pub fn recv<T>(rx: &Receiver<T>, spin: Duration) -> Result<T, RecvError> {
    if !spin.is_zero() {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            match rx.try_recv() {
                Ok(v) => return Ok(v),
                Err(TryRecvError::Disconnected) => return Err(RecvError),
                Err(TryRecvError::Empty) => {}
            }
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
            // Reading the clock costs more than a poll: look at it now and then.
            if polls.is_multiple_of(64) && start.elapsed() >= spin {
                break;
            }
        }
    }
    rx.recv()
}

/// A thread started early, before the work it will do exists, and parked until
/// [`ParkedThread::start`] hands it that work: starting a thread costs ~0.05–0.2 ms, which
/// then happens while the caller does work that does not wait for it, and the hand-off itself
/// costs the caller one wake-up call. Dropped unstarted, the thread just ends.
pub struct ParkedThread<T> {
    job: std::sync::mpsc::SyncSender<Box<dyn FnOnce() -> T + Send>>,
    handle: std::thread::JoinHandle<Option<T>>,
}

impl<T: Send + 'static> ParkedThread<T> {
    pub fn spawn(name: &str) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Box<dyn FnOnce() -> T + Send>>(1);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || rx.recv().ok().map(|job| job()))?;
        Ok(ParkedThread { job: tx, handle })
    }

    /// Run `job` on the thread; join the handle for its result (None if it never ran).
    pub fn start(
        self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<Option<T>> {
        // Fails only if the thread is gone; joining then says so (None).
        let _ = self.job.send(Box::new(job));
        self.handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_value_sent_while_spinning_or_after_the_spin_is_received() {
        for (delay, spin) in [
            (Duration::from_micros(200), Duration::from_millis(50)),
            (Duration::from_millis(20), Duration::from_millis(1)),
            (Duration::from_millis(5), Duration::ZERO),
        ] {
            let (tx, rx) = mpsc::channel();
            let t = std::thread::spawn(move || {
                std::thread::sleep(delay);
                tx.send(7u32).unwrap();
            });
            assert_eq!(recv(&rx, spin), Ok(7), "delay {delay:?} spin {spin:?}");
            t.join().unwrap();
        }
    }

    #[test]
    fn a_sender_gone_ends_the_wait_spinning_or_not() {
        for spin in [Duration::ZERO, Duration::from_secs(10)] {
            let (tx, rx) = mpsc::channel::<u32>();
            drop(tx);
            let t0 = Instant::now();
            assert_eq!(recv(&rx, spin), Err(RecvError));
            assert!(t0.elapsed() < Duration::from_secs(5));
        }
    }

    #[test]
    fn a_parked_thread_runs_its_job_once_started_and_ends_if_dropped() {
        let t = ParkedThread::spawn("test-parked").unwrap();
        let h = t.start(|| std::thread::current().name().map(String::from));
        assert_eq!(h.join().unwrap(), Some(Some("test-parked".to_string())));
        let t = ParkedThread::<u32>::spawn("test-dropped").unwrap();
        let ParkedThread { job, handle } = t;
        drop(job);
        assert_eq!(handle.join().unwrap(), None);
    }

    #[test]
    fn the_budget_is_zero_or_the_spin() {
        let b = spin_budget();
        assert!(b == Duration::ZERO || b == SPIN);
    }
}
