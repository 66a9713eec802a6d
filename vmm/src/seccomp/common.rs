//! What every filtered thread needs from the Rust/glibc runtime, whatever its job: memory
//! allocation, locks, signals it receives, reporting a violation or a panic, and ending
//! (the thread or the process). Each thread kind's filter starts from this list.

use super::allowlist::{arg_eq, arg_lacks, Allowlist};

pub fn runtime() -> Allowlist {
    let mut a = Allowlist::default();
    // Logger lines (stderr or --log-file), panic messages and the SIGSYS report itself.
    a.allow(libc::SYS_write);
    // Dropping an OwnedFd (a vCPU fd, an epoll, a file) closes it.
    a.allow(libc::SYS_close);
    // Debug builds of std check with F_GETFD that an fd is open before closing it.
    a.allow_if(libc::SYS_fcntl, arg_eq(1, libc::F_GETFD as u64));
    // std's Mutex/Condvar/Once/thread::join park on futexes. The operations vary
    // (WAIT_BITSET with or without FUTEX_PRIVATE_FLAG, WAKE, REQUEUE), so none is singled out.
    a.allow(libc::SYS_futex);
    // glibc malloc: per-thread arenas are mmap'ed PROT_NONE and grown with mprotect(READ|WRITE);
    // large blocks get their own mapping. Never executable memory: no W^X bypass via a new
    // PROT_EXEC mapping or by flipping guest memory to executable.
    a.allow_if(libc::SYS_mmap, arg_lacks(2, libc::PROT_EXEC as u64));
    a.allow_if(libc::SYS_mprotect, arg_lacks(2, libc::PROT_EXEC as u64));
    // free() of large blocks and of guest memory, thread stacks, the signal stack and the
    // vCPU's kvm_run page.
    a.allow(libc::SYS_munmap);
    // glibc's main arena grows and trims with brk; any thread may fall back to it.
    a.allow(libc::SYS_brk);
    // glibc trims arenas and, at thread exit, the unused part of the stack with
    // MADV_DONTNEED. No other advice (MADV_HUGEPAGE etc. is setup-time).
    a.allow_if(libc::SYS_madvise, arg_eq(2, libc::MADV_DONTNEED as u64));
    // Instant::now and the logger's clock go through the vDSO, which falls back to the syscall
    // when the clocksource has no vDSO support (HPET, an unstable TSC under nested KVM).
    a.allow(libc::SYS_clock_gettime);
    // Returning from a signal handler (the vCPU kick handler).
    a.allow(libc::SYS_rt_sigreturn);
    // pthread_kill and abort() mask signals around their work; glibc masks all signals while
    // a thread exits.
    a.allow(libc::SYS_rt_sigprocmask);
    // std removes and frees each thread's alternate signal stack when the thread ends.
    a.allow(libc::SYS_sigaltstack);
    // The kernel resumes a futex wait or sleep that a stop signal (Ctrl-Z, SIGSTOP, a
    // debugger attaching) interrupted through restart_syscall.
    a.allow(libc::SYS_restart_syscall);
    // abort() (panic = "abort" in release) raises SIGABRT on its own thread: pthread_kill
    // takes the pid and tid and calls tgkill. Only SIGABRT; the VMM thread adds the kick signal.
    a.allow(libc::SYS_getpid);
    a.allow(libc::SYS_gettid);
    a.allow_if(libc::SYS_tgkill, arg_eq(2, libc::SIGABRT as u64));
    // A thread returning from its function ends with exit(2).
    a.allow(libc::SYS_exit);
    // process::exit, the end of main, and the SIGSYS report's _exit end the process.
    a.allow(libc::SYS_exit_group);
    a
}
