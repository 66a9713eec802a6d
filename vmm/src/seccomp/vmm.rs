//! The VMM (main) thread once the guest runs: the event loop (epoll on the exit eventfd and
//! stdin), stdin to the UART, the console's raw mode, stopping and joining the vCPU threads,
//! freeing guest memory, logging and exiting. Installed right before the event loop; all
//! setup before it (opening files, /dev/kvm, mmap of guest RAM, loading the kernel) is trusted
//! host-side work done before the guest has run a single instruction.

use super::allowlist::{arg_eq, ioctl, Allowlist};
use super::common;
use super::ioctls::{TCGETS, TCSETS};

pub fn allowlist() -> Allowlist {
    let mut a = common::runtime();
    // The event loop: its epoll is created after the filter, stdin is removed from it at EOF.
    a.allow(libc::SYS_epoll_create1);
    a.allow(libc::SYS_epoll_ctl);
    a.allow(libc::SYS_epoll_wait);
    // Host stdin for the guest console; the exit eventfd's counter.
    a.allow(libc::SYS_read);
    // isatty/tcgetattr and tcsetattr(TCSANOW) on stdin: raw mode while the guest owns the
    // console, canonical mode again when it ends. No other tty ioctl (TIOCSTI!) and no KVM
    // ioctl: this thread issues none once the vCPUs run.
    a.allow_if(libc::SYS_ioctl, ioctl(TCGETS));
    a.allow_if(libc::SYS_ioctl, ioctl(TCSETS));
    // Kicking vCPUs out of KVM_RUN to stop them: pthread_kill with the kick signal only.
    a.allow_if(
        libc::SYS_tgkill,
        arg_eq(2, vmm_sys_util::signal::SIGRTMIN() as u64),
    );
    // The pause between kicks while waiting for the vCPUs to leave the guest.
    a.allow(libc::SYS_clock_nanosleep);
    a
}
