//! Host signals: SIGTERM and SIGINT ask the guest to shut down (the ACPI power button); a
//! second one stops the VM at once. The handler only writes to an eventfd, which the event
//! loop reads: nothing else is async-signal-safe enough to do in a handler.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::register_signal_handler;

static SHUTDOWN_EVT: OnceLock<EventFd> = OnceLock::new();
static SHUTDOWN_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_shutdown_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let fd = SHUTDOWN_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; the eventfd lives for the whole process.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Route SIGTERM and SIGINT to the returned eventfd (process-wide, once).
pub fn shutdown_events() -> std::io::Result<&'static EventFd> {
    if let Some(evt) = SHUTDOWN_EVT.get() {
        return Ok(evt);
    }
    let evt = SHUTDOWN_EVT.get_or_init(|| EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
    SHUTDOWN_FD.store(evt.as_raw_fd(), Ordering::Relaxed);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        register_signal_handler(sig, on_shutdown_signal).map_err(std::io::Error::from)?;
    }
    Ok(evt)
}

/// Keep SIGTERM/SIGINT off the calling thread (vCPU and device threads), so the handler
/// runs on the VMM thread.
pub fn block_shutdown_signals() {
    // SAFETY: sigset operations on a local set, then pthread_sigmask on this thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_signal_is_counted_on_the_eventfd() {
        let evt = shutdown_events().unwrap();
        // SAFETY: raising a signal whose handler we just installed.
        unsafe { libc::raise(libc::SIGTERM) };
        assert_eq!(evt.read().unwrap(), 1);
        assert!(shutdown_events().is_ok(), "installing twice is harmless");
    }
}
