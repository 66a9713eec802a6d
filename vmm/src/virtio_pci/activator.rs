//! Device activation runs on the VMM thread, not on the vCPU thread that wrote DRIVER_OK:
//! activation spawns the device's worker thread (which inherits its creator's seccomp
//! filter) and registers ioeventfds, neither of which a vCPU thread's filter should allow.
//! A vCPU queues the work here and kicks an eventfd the event loop waits on. Notifications
//! the guest sends before the ioeventfds exist reach the transport as MMIO writes, which
//! signal the same queue eventfds, so nothing is lost.

use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

/// Work for the VMM thread.
pub type Job = Box<dyn FnOnce() + Send>;

pub struct Activator {
    jobs: Mutex<Vec<Job>>,
    pub evt: EventFd,
}

impl Activator {
    pub fn new() -> std::io::Result<Self> {
        Ok(Activator {
            jobs: Mutex::new(Vec::new()),
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    pub fn queue(&self, job: Job) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
        let _ = self.evt.write(1);
    }

    /// Run what is queued (on the VMM thread).
    pub fn run_pending(&self) {
        let _ = self.evt.read();
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
    use std::sync::Arc;

    #[test]
    fn queued_jobs_run_once_on_run_pending() {
        let a = Activator::new().unwrap();
        let n = Arc::new(AtomicU32::new(0));
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
}
