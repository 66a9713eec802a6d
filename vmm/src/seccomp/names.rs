//! x86_64 syscall names for the violation message: every syscall a filter allows and the ones
//! an attacker reaches for first. A plain static slice, so the SIGSYS handler can search it.

/// Name of syscall `nr`, if it is in the table.
pub fn name(nr: i64) -> Option<&'static str> {
    NAMES.iter().find(|&&(n, _)| n == nr).map(|&(_, s)| s)
}

const NAMES: &[(i64, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_open, "open"),
    (libc::SYS_close, "close"),
    (libc::SYS_stat, "stat"),
    (libc::SYS_fstat, "fstat"),
    (libc::SYS_lstat, "lstat"),
    (libc::SYS_poll, "poll"),
    (libc::SYS_lseek, "lseek"),
    (libc::SYS_mmap, "mmap"),
    (libc::SYS_mprotect, "mprotect"),
    (libc::SYS_munmap, "munmap"),
    (libc::SYS_brk, "brk"),
    (libc::SYS_rt_sigaction, "rt_sigaction"),
    (libc::SYS_rt_sigprocmask, "rt_sigprocmask"),
    (libc::SYS_rt_sigreturn, "rt_sigreturn"),
    (libc::SYS_ioctl, "ioctl"),
    (libc::SYS_pread64, "pread64"),
    (libc::SYS_pwrite64, "pwrite64"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_access, "access"),
    (libc::SYS_pipe, "pipe"),
    (libc::SYS_select, "select"),
    (libc::SYS_sched_yield, "sched_yield"),
    (libc::SYS_mremap, "mremap"),
    (libc::SYS_madvise, "madvise"),
    (libc::SYS_dup, "dup"),
    (libc::SYS_dup2, "dup2"),
    (libc::SYS_nanosleep, "nanosleep"),
    (libc::SYS_getpid, "getpid"),
    (libc::SYS_socket, "socket"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_accept, "accept"),
    (libc::SYS_accept4, "accept4"),
    (libc::SYS_sendto, "sendto"),
    (libc::SYS_recvfrom, "recvfrom"),
    (libc::SYS_sendmsg, "sendmsg"),
    (libc::SYS_recvmsg, "recvmsg"),
    (libc::SYS_bind, "bind"),
    (libc::SYS_listen, "listen"),
    (libc::SYS_socketpair, "socketpair"),
    (libc::SYS_clone, "clone"),
    (libc::SYS_fork, "fork"),
    (libc::SYS_vfork, "vfork"),
    (libc::SYS_execve, "execve"),
    (libc::SYS_exit, "exit"),
    (libc::SYS_wait4, "wait4"),
    (libc::SYS_kill, "kill"),
    (libc::SYS_uname, "uname"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_fsync, "fsync"),
    (libc::SYS_fdatasync, "fdatasync"),
    (libc::SYS_ftruncate, "ftruncate"),
    (libc::SYS_getcwd, "getcwd"),
    (libc::SYS_chdir, "chdir"),
    (libc::SYS_rename, "rename"),
    (libc::SYS_mkdir, "mkdir"),
    (libc::SYS_rmdir, "rmdir"),
    (libc::SYS_unlink, "unlink"),
    (libc::SYS_readlink, "readlink"),
    (libc::SYS_readlinkat, "readlinkat"),
    (libc::SYS_sched_setscheduler, "sched_setscheduler"),
    (libc::SYS_chmod, "chmod"),
    (libc::SYS_chown, "chown"),
    (libc::SYS_umask, "umask"),
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_getuid, "getuid"),
    (libc::SYS_setuid, "setuid"),
    (libc::SYS_setgid, "setgid"),
    (libc::SYS_sigaltstack, "sigaltstack"),
    (libc::SYS_prctl, "prctl"),
    (libc::SYS_arch_prctl, "arch_prctl"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_gettid, "gettid"),
    (libc::SYS_tkill, "tkill"),
    (libc::SYS_futex, "futex"),
    (libc::SYS_sched_getaffinity, "sched_getaffinity"),
    (libc::SYS_epoll_create, "epoll_create"),
    (libc::SYS_getdents64, "getdents64"),
    (libc::SYS_set_tid_address, "set_tid_address"),
    (libc::SYS_restart_syscall, "restart_syscall"),
    (libc::SYS_clock_gettime, "clock_gettime"),
    (libc::SYS_clock_nanosleep, "clock_nanosleep"),
    (libc::SYS_exit_group, "exit_group"),
    (libc::SYS_epoll_wait, "epoll_wait"),
    (libc::SYS_epoll_ctl, "epoll_ctl"),
    (libc::SYS_tgkill, "tgkill"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_newfstatat, "newfstatat"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_set_robust_list, "set_robust_list"),
    (libc::SYS_epoll_pwait, "epoll_pwait"),
    (libc::SYS_timerfd_create, "timerfd_create"),
    (libc::SYS_fallocate, "fallocate"),
    (libc::SYS_timerfd_settime, "timerfd_settime"),
    (libc::SYS_eventfd2, "eventfd2"),
    (libc::SYS_epoll_create1, "epoll_create1"),
    (libc::SYS_dup3, "dup3"),
    (libc::SYS_pipe2, "pipe2"),
    (libc::SYS_preadv, "preadv"),
    (libc::SYS_pwritev, "pwritev"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_prlimit64, "prlimit64"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_seccomp, "seccomp"),
    (libc::SYS_getrandom, "getrandom"),
    (libc::SYS_memfd_create, "memfd_create"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_execveat, "execveat"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_preadv2, "preadv2"),
    (libc::SYS_pwritev2, "pwritev2"),
    (libc::SYS_statx, "statx"),
    (libc::SYS_rseq, "rseq"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_pidfd_open, "pidfd_open"),
    (libc::SYS_clone3, "clone3"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_keyctl, "keyctl"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers_have_names_and_unknown_ones_do_not() {
        assert_eq!(name(0), Some("read"));
        assert_eq!(name(41), Some("socket"));
        assert_eq!(name(59), Some("execve"));
        assert_eq!(name(101), Some("ptrace"));
        assert_eq!(name(100_000), None);
    }

    #[test]
    fn numbers_are_unique() {
        let mut nrs: Vec<i64> = NAMES.iter().map(|&(n, _)| n).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), NAMES.len());
    }
}
