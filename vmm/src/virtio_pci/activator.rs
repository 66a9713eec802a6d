//! Device activation runs on a dedicated activator thread, not on the vCPU thread that wrote
//! DRIVER_OK: activation creates the device's worker thread (which starts under its
//! creator's seccomp filter) and registers ioeventfds, neither of which a vCPU (or the VMM
//! event loop) should be allowed. A vCPU queues the work here and kicks an eventfd the
//! activator waits on. Notifications the guest sends before the ioeventfds exist reach the
//! transport as MMIO writes, which signal the same queue eventfds, so nothing is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

/// Work for the VMM thread.
pub type Job = Box<dyn FnOnce() + Send>;

pub struct Activator {
    jobs: Mutex<Vec<Job>>,
    pub evt: EventFd,
    /// Set by [`Activator::stop`]: the thread ends at its next wake-up.
    stopped: AtomicBool,
}

impl Activator {
    pub fn new() -> std::io::Result<Self> {
        Ok(Activator {
            jobs: Mutex::new(Vec::new()),
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
            stopped: AtomicBool::new(false),
        })
    }

    /// An activator served by its own thread, confined by `seccomp` (ThreadKind::Activator).
    pub fn start(seccomp: crate::seccomp::SeccompMode) -> std::io::Result<Arc<Self>> {
        let a = Arc::new(Activator {
            jobs: Mutex::new(Vec::new()),
            // Blocking: each read on the activator thread waits for the next job.
            evt: EventFd::new(0)?,
            stopped: AtomicBool::new(false),
        });
        let worker = a.clone();
        std::thread::Builder::new()
            .name("virtio-activator".into())
            .spawn(move || {
                crate::signals::block_shutdown_signals();
                let kind = crate::seccomp::ThreadKind::Activator;
                if let Err(e) = crate::seccomp::apply(kind, seccomp) {
                    log::error!("virtio activator: {e}; virtio devices will not start");
                    return;
                }
                while worker.evt.read().is_ok() && !worker.stopped.load(Ordering::Acquire) {
                    worker.run_jobs();
                }
            })?;
        Ok(a)
    }

    pub fn queue(&self, job: Job) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
        let _ = self.evt.write(1);
    }

    /// End the activator thread (the VM is being torn down): jobs still queued are dropped
    /// unrun. Without this the thread, its eventfd and everything a queued job holds would
    /// outlive the VM in a VMM that boots one VM after another.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let _ = self.evt.write(1);
    }

    /// Run what is queued (tests; the activator thread calls `run_jobs` after its read).
    pub fn run_pending(&self) {
        let _ = self.evt.read();
        self.run_jobs();
    }

    fn run_jobs(&self) {
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()));
        for job in jobs {
            job();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn queued_jobs_run_once_on_run_pending() {
        let a = Activator::new().unwrap();
        let n = Arc::new(AtomicU32::new(0));
        // (The activator thread is exercised by the lab's virtio scenarios.)
        for _ in 0..3 {
            let n = n.clone();
            a.queue(Box::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }));
        }
        assert_eq!(a.evt.read().unwrap(), 3);
        a.run_pending();
        a.run_pending();
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn stop_ends_the_thread_and_drops_queued_jobs_unrun() {
        let a = Activator::start(crate::seccomp::SeccompMode::Off).unwrap();
        let weak = Arc::downgrade(&a);
        let ran = Arc::new(AtomicU32::new(0));
        a.stop();
        let r = ran.clone();
        a.queue(Box::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        a.stop();
        drop(a);
        // The thread held the other reference: it is gone once the thread has ended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while weak.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "activator thread still alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }
}
