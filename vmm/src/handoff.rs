//! Handing work between the main thread and the VMM thread during boot, without paying a
//! wake-up where it can be avoided.
//!
//! Blocking on a channel puts the thread to sleep; waking it again costs the waker a futex
//! call and the sleeper the scheduler's latency, which in a virtual machine (the host of a
//! nested or PVM setup) includes waking an idle virtual CPU: seen here at 0.2–0.6 ms in
//! traces. The main thread builds the VM and runs vCPU 0 itself (no hand-off before the
//! first KVM_RUN); the VMM thread ([`WorkerThread`]) does setup jobs for it meanwhile, and
//! the main thread collects each result with [`recv`], which spins for a bounded time before
//! it blocks: the result is normally there or nearly so.
//!
//! The VMM thread's jobs are queued only after memory registration and the irqchip: a CPU
//! busy while the other thread registers memory or creates the irqchip made those ioctls
//! slower (they wait for grace periods, which a busy CPU delays). A receiver spins only when
//! the process may run on more than one CPU (on one CPU it would only delay its sender), and
//! never for longer than the budget.

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

/// A thread started early, before the work it will do exists, that runs the jobs it is
/// handed one after the other. Starting a thread costs ~0.05–0.2 ms; started first thing, it
/// takes setup work off the caller's path (the caller pays one wake-up per job), and the last
/// job it is handed can be long-lived (the VMM's event loop). Dropped with no job running, the
/// thread ends.
pub struct WorkerThread {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
    handle: std::thread::JoinHandle<()>,
}

impl WorkerThread {
    pub fn spawn(name: &str) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
        Ok(WorkerThread { jobs: tx, handle })
    }

    /// Queue `job`; its result arrives on the returned receiver (which says "disconnected"
    /// if the thread is gone or the job panicked).
    pub fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Receiver<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        // A send fails only if the thread is gone: the receiver then says so.
        let _ = self.jobs.send(Box::new(move || {
            let _ = tx.send(job());
        }));
        rx
    }

    /// Queue the last job: the thread ends after it. Join the handle once its result is in.
    pub fn finish<T: Send + 'static>(
        self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> (Receiver<T>, std::thread::JoinHandle<()>) {
        let rx = self.submit(job);
        (rx, self.handle)
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
    fn a_worker_runs_its_jobs_in_order_then_ends() {
        let w = WorkerThread::spawn("test-worker").unwrap();
        let (tx, rx) = mpsc::channel();
        let first = w.submit(move || rx.recv().unwrap() + 1);
        let name = w.submit(|| std::thread::current().name().map(String::from));
        tx.send(41).unwrap();
        assert_eq!(recv(&first, Duration::from_millis(1)), Ok(42));
        assert_eq!(name.recv().unwrap(), Some("test-worker".into()));
        let (last, handle) = w.finish(|| 7);
        assert_eq!(last.recv(), Ok(7));
        handle.join().unwrap();
        // Dropped unused: the thread ends.
        let WorkerThread { jobs, handle } = WorkerThread::spawn("test-dropped").unwrap();
        drop(jobs);
        handle.join().unwrap();
        // A job that panics: its receiver is disconnected.
        let w = WorkerThread::spawn("test-panic").unwrap();
        let bad = w.submit(|| -> u32 { panic!("job failed") });
        assert!(bad.recv().is_err());
    }

    #[test]
    fn the_budget_is_zero_or_the_spin() {
        let b = spin_budget();
        assert!(b == Duration::ZERO || b == SPIN);
    }
}
