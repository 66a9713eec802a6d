//! Seccomp confinement, end to end.
//!
//! Filter cases run in a child process: the test re-executes this test binary with
//! `VMM_SECCOMP_CASE` naming the test, and the child installs a thread kind's filter on a
//! fresh thread and makes one allowed and then one forbidden syscall. The parent checks how
//! the child ended and what it printed. No test hook lives in the `vmm` binary.
//!
//! The boot cases run the real `vmm` (or `$VMM_BIN`, e.g. the static-pie release build from
//! scripts/build.sh) on /dev/kvm with seccomp on.

mod common;
use common::{require_kvm, stderr, tmp};

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vmm::seccomp::{self, DeviceKind, SeccompMode, ThreadKind, VIOLATION_EXIT_CODE};

const CASE_ENV: &str = "VMM_SECCOMP_CASE";

/// In the child for `case`: run `body` on a new thread (the harness's threads stay
/// unfiltered) and return true. In the parent: return false.
fn child_case(case: &str, body: impl FnOnce() + Send + 'static) -> bool {
    if std::env::var(CASE_ENV).as_deref() != Ok(case) {
        return false;
    }
    std::thread::spawn(body)
        .join()
        .expect("the case body panicked");
    true
}

/// Re-run this binary for `case` alone.
fn run_child(case: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([case, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_ENV, case)
        // A backtrace would open /proc/self/exe and the debug info: not in any filter.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .expect("re-run the test binary")
}

fn confine(kind: ThreadKind, mode: SeccompMode) {
    seccomp::apply(kind, mode).expect("install the filter");
    eprintln!("confined");
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The child ran its allowed syscalls, then died on `name` in a `kind` thread.
fn assert_killed_by(o: &Output, nr: i64, name: &str, kind: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(VIOLATION_EXIT_CODE), "{err}");
    assert!(
        err.contains("allowed ok"),
        "allowed syscalls must work: {err}"
    );
    let line = format!("vmm: seccomp violation: syscall {nr} ({name}) in thread {kind}\n");
    assert!(err.contains(&line), "expected {line:?} in: {err}");
}

fn assert_clean_exit(o: &Output) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("seccomp violation"), "{err}");
}

#[test]
fn vmm_thread_is_killed_by_socket_but_runs_its_event_loop() {
    let case = "vmm_thread_is_killed_by_socket_but_runs_its_event_loop";
    if child_case(case, || {
        let evt = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        confine(ThreadKind::Vmm, SeccompMode::Enforce);
        let epoll = vmm_sys_util::epoll::Epoll::new().unwrap();
        evt.write(1).unwrap();
        assert_eq!(evt.read().unwrap(), 1);
        drop(epoll);
        // SAFETY: isatty on stdin (/dev/null): TCGETS is allowed and fails with ENOTTY.
        assert_eq!(unsafe { libc::isatty(0) }, 0);
        std::thread::sleep(Duration::from_millis(1));
        eprintln!("allowed ok");
        // SAFETY: a plain syscall; the filter ends the process here.
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        unreachable!("socket returned under the VMM filter");
    }) {
        return;
    }
    assert_killed_by(&run_child(case), libc::SYS_socket, "socket", "vmm");
}

#[test]
fn vmm_thread_is_killed_by_execve() {
    let case = "vmm_thread_is_killed_by_execve";
    if child_case(case, || {
        confine(ThreadKind::Vmm, SeccompMode::Enforce);
        eprintln!("allowed ok");
        let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        // SAFETY: NUL-terminated argv/envp arrays of C strings; the filter ends the process.
        unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
        unreachable!("execve returned under the VMM filter");
    }) {
        return;
    }
    assert_killed_by(&run_child(case), libc::SYS_execve, "execve", "vmm");
}

#[test]
fn control_thread_builds_and_starts_threads_but_is_killed_by_execve() {
    let case = "control_thread_builds_and_starts_threads_but_is_killed_by_execve";
    if child_case(case, || {
        confine(ThreadKind::Control, SeccompMode::Enforce);
        // What building a VM takes: files, KVM, a tap's configuration socket, a named thread
        // that narrows itself to a thread kind's filter.
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert!(status.contains("Seccomp:\t2"), "{status}");
        if let Ok(kvm) = std::fs::File::open("/dev/kvm") {
            use std::os::fd::AsRawFd;
            // SAFETY: KVM_GET_API_VERSION takes no argument.
            let v = unsafe { libc::ioctl(kvm.as_raw_fd(), 0xae00, 0) };
            assert_eq!(v, 12, "KVM_GET_API_VERSION");
        }
        // SAFETY: plain syscalls on fds this case owns.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            assert!(s >= 0, "socket: {}", errno());
            libc::close(s);
        }
        std::thread::Builder::new()
            .name("worker".into())
            .spawn(|| seccomp::apply(ThreadKind::Vcpu, SeccompMode::Enforce).unwrap())
            .unwrap()
            .join()
            .unwrap();
        eprintln!("allowed ok");
        let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        // SAFETY: NUL-terminated argv/envp arrays of C strings; the filter ends the process.
        unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
        unreachable!("execve returned under the control filter");
    }) {
        return;
    }
    assert_killed_by(&run_child(case), libc::SYS_execve, "execve", "control");
}

#[test]
fn control_thread_may_open_unix_sockets_for_vsock_but_no_other_kind() {
    let case = "control_thread_may_open_unix_sockets_for_vsock_but_no_other_kind";
    if child_case(case, || {
        confine(ThreadKind::Control, SeccompMode::Enforce);
        // A vsock device listens on a unix socket: created, bound and listening.
        let dir = std::env::temp_dir().join(format!("vmm-seccomp-ctl-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("v.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(listener);
        let _ = std::fs::remove_file(&path);
        eprintln!("allowed ok");
        // SAFETY: a plain syscall; the filter ends the process here.
        unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) };
        unreachable!("an AF_INET6 socket was created under the control filter");
    }) {
        return;
    }
    assert_killed_by(&run_child(case), libc::SYS_socket, "socket", "control");
}

#[test]
fn api_thread_serves_a_connection_but_is_killed_by_openat() {
    let case = "api_thread_serves_a_connection_but_is_killed_by_openat";
    if child_case(case, || {
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = std::env::temp_dir().join(format!("vmm-seccomp-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        client
            .write_all(b"GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n")
            .unwrap();
        let epoll = vmm_sys_util::epoll::Epoll::new().unwrap();
        let _ = std::collections::hash_map::RandomState::new();
        confine(ThreadKind::Api, SeccompMode::Enforce);
        // What the API thread does: accept, make non-blocking, wait, read, answer.
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_nonblocking(true).unwrap();
        epoll
            .ctl(
                vmm_sys_util::epoll::ControlOperation::Add,
                std::os::fd::AsRawFd::as_raw_fd(&conn),
                vmm_sys_util::epoll::EpollEvent::new(vmm_sys_util::epoll::EventSet::IN, 1),
            )
            .unwrap();
        let mut events = [vmm_sys_util::epoll::EpollEvent::default(); 2];
        assert_eq!(epoll.wait(1000, &mut events).unwrap(), 1);
        // micro_http reads with recvmsg (for the fds a client may pass).
        let mut buf = [0u8; 128];
        let mut fds = [0i32; 4];
        let mut iov = [libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        }];
        // SAFETY: the iovec points at `buf`, which outlives the call.
        let (n, _) = unsafe {
            vmm_sys_util::sock_ctrl_msg::ScmSocket::recv_with_fds(&conn, &mut iov, &mut fds)
        }
        .unwrap();
        assert!(n > 0);
        conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        eprintln!("allowed ok");
        // SAFETY: a plain syscall on a C string; the filter ends the process here.
        unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
        unreachable!("open returned under the API filter");
    }) {
        return;
    }
    assert_killed_by(&run_child(case), libc::SYS_openat, "openat", "api");
}

#[test]
fn vcpu_thread_is_killed_by_an_unknown_kvm_ioctl_but_may_run() {
    let case = "vcpu_thread_is_killed_by_an_unknown_kvm_ioctl_but_may_run";
    if child_case(case, || {
        confine(ThreadKind::Vcpu, SeccompMode::Enforce);
        // SAFETY: KVM_RUN on an invalid fd: allowed by the filter, refused by the kernel.
        assert_eq!(unsafe { libc::ioctl(-1, seccomp::KVM_RUN as _, 0) }, -1);
        assert_eq!(errno(), libc::EBADF);
        let v: Vec<u8> = vec![7; 1 << 20]; // malloc/mmap without PROT_EXEC
        assert_eq!(v[12345], 7);
        eprintln!("allowed ok");
        // SAFETY: a vCPU ioctl a running vCPU never issues: the filter ends the process.
        unsafe { libc::ioctl(-1, seccomp::KVM_GET_REGS as _, 0) };
        unreachable!("KVM_GET_REGS returned under the vCPU filter");
    }) {
        return;
    }
    assert_killed_by(&run_child(case), libc::SYS_ioctl, "ioctl", "vcpu");
}

#[test]
fn vcpu_thread_may_not_map_executable_memory() {
    let case = "vcpu_thread_may_not_map_executable_memory";
    if child_case(case, || {
        confine(ThreadKind::Vcpu, SeccompMode::Enforce);
        let map = |prot| {
            // SAFETY: an anonymous private mapping that we unmap (or never get).
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED);
                libc::munmap(p, 4096);
            }
        };
        map(libc::PROT_READ | libc::PROT_WRITE);
        eprintln!("allowed ok");
        map(libc::PROT_READ | libc::PROT_EXEC);
        unreachable!("an executable mapping was allowed");
    }) {
        return;
    }
    assert_killed_by(&run_child(case), libc::SYS_mmap, "mmap", "vcpu");
}

#[test]
fn device_thread_does_block_io_but_is_killed_by_any_ioctl() {
    let case = "device_thread_does_block_io_but_is_killed_by_any_ioctl";
    if child_case(case, || {
        use std::os::unix::fs::FileExt;
        let disk = vmm_tests::temp_file_with(&[0u8; 8192]).unwrap();
        let evt = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        confine(ThreadKind::Device(DeviceKind::Block), SeccompMode::Enforce);
        disk.write_all_at(b"sector", 512).unwrap();
        let mut buf = [0u8; 6];
        disk.read_exact_at(&mut buf, 512).unwrap();
        assert_eq!(&buf, b"sector");
        disk.sync_data().unwrap();
        disk.sync_all().unwrap();
        vmm_sys_util::fallocate::fallocate(
            &disk,
            vmm_sys_util::fallocate::FallocateMode::PunchHole,
            true,
            0,
            4096,
        )
        .unwrap();
        evt.write(1).unwrap();
        assert_eq!(evt.read().unwrap(), 1);
        let mut entropy = [0u8; 16];
        // SAFETY: fills a local buffer.
        let n = unsafe { libc::getrandom(entropy.as_mut_ptr().cast(), entropy.len(), 0) };
        assert_eq!(n, 16);
        eprintln!("allowed ok");
        // SAFETY: a harmless tty query; device workers issue no ioctl at all.
        unsafe { libc::isatty(0) };
        unreachable!("an ioctl returned under the device filter");
    }) {
        return;
    }
    assert_killed_by(&run_child(case), libc::SYS_ioctl, "ioctl", "device/block");
}

#[test]
fn activator_starts_a_worker_that_narrows_to_its_device_filter() {
    let case = "activator_starts_a_worker_that_narrows_to_its_device_filter";
    if child_case(case, || {
        let disk = vmm_tests::temp_file_with(&[0u8; 4096]).unwrap();
        confine(ThreadKind::Activator, SeccompMode::Enforce);
        // The activator creates eventfds and threads; the worker inherits its filter, then
        // installs its own (filters stack) and is held to the intersection.
        let evt = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let worker = std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                confine(ThreadKind::Device(DeviceKind::Block), SeccompMode::Enforce);
                use std::os::unix::fs::FileExt;
                disk.write_all_at(b"block", 0).unwrap();
                evt.write(1).unwrap();
                eprintln!("allowed ok");
                // Allowed to the activator, not to a device worker.
                let _ = vmm_sys_util::eventfd::EventFd::new(0);
                unreachable!("eventfd2 returned under the device filter");
            })
            .unwrap();
        let _ = worker.join();
    }) {
        return;
    }
    assert_killed_by(
        &run_child(case),
        libc::SYS_eventfd2,
        "eventfd2",
        "device/block",
    );
}

#[test]
fn vcpu_thread_with_passthrough_serves_vfio_but_nothing_more() {
    let case = "vcpu_thread_with_passthrough_serves_vfio_but_nothing_more";
    if child_case(case, || {
        use std::os::unix::fs::FileExt;
        let config_space = vmm_tests::temp_file_with(&[0x86, 0x80, 0, 0]).unwrap();
        let mut c = seccomp::Confinement::new(SeccompMode::Enforce);
        vmm::vfio::seccomp::add_vcpu_rules(&mut c.extra);
        c.apply(ThreadKind::Vcpu).unwrap();
        let mut id = [0u8; 2];
        config_space.read_exact_at(&mut id, 0).unwrap();
        assert_eq!(id, [0x86, 0x80]);
        let set_irqs = vmm::vfio::seccomp::VFIO_DEVICE_SET_IRQS;
        // SAFETY: an allowed VFIO ioctl on an invalid fd: refused by the kernel, not the filter.
        assert_eq!(unsafe { libc::ioctl(-1, set_irqs as _, 0) }, -1);
        assert_eq!(errno(), libc::EBADF);
        eprintln!("allowed ok");
        // SAFETY: still no setup-time KVM ioctl on a vCPU thread.
        unsafe { libc::ioctl(-1, seccomp::KVM_GET_REGS as _, 0) };
        unreachable!("KVM_GET_REGS returned under the vCPU filter");
    }) {
        return;
    }
    assert_killed_by(&run_child(case), libc::SYS_ioctl, "ioctl", "vcpu");
}

#[test]
fn log_mode_lets_a_forbidden_syscall_through() {
    let case = "log_mode_lets_a_forbidden_syscall_through";
    if child_case(case, || {
        confine(ThreadKind::Vcpu, SeccompMode::Log);
        // SAFETY: creates a socket we close at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0, "socket failed: errno {}", errno());
        // SAFETY: closes the fd we own.
        unsafe { libc::close(fd) };
        eprintln!("socket allowed in log mode");
    }) {
        return;
    }
    let o = run_child(case);
    assert_clean_exit(&o);
    assert!(
        stderr(&o).contains("socket allowed in log mode"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_panic_under_a_filter_prints_its_message_and_aborts() {
    let case = "a_panic_under_a_filter_prints_its_message_and_aborts";
    if child_case(case, || {
        confine(ThreadKind::Vcpu, SeccompMode::Enforce);
        let r = std::panic::catch_unwind(|| panic!("guest-facing bug"));
        assert!(r.is_err());
        // What a panic in the release build (panic = "abort") ends with.
        std::process::abort();
    }) {
        return;
    }
    let o = run_child(case);
    let err = stderr(&o);
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{err}");
    assert!(err.contains("guest-facing bug"), "{err}");
    assert!(!err.contains("seccomp violation"), "{err}");
}

// ---- the real vmm on /dev/kvm ----

fn vmm_bin() -> String {
    std::env::var("VMM_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vmm").to_string())
}

fn kernel(name: &str, code: &[u8]) -> String {
    let k = tmp(name, &vmm_tests::pvh_guest_elf(code));
    k.to_str().unwrap().to_string()
}

/// Hand-assembled 32-bit code: echo COM1 input back to COM1 until a 'q', then reset.
///
/// ```text
///  0 FA           cli
///  1 66 BA FD 03  mov dx, 0x3fd      ; LSR
///  5 EC           in al, dx          ; poll:
///  6 A8 01        test al, 1         ; data ready?
///  8 74 FB        jz poll
/// 10 66 BA F8 03  mov dx, 0x3f8
/// 14 EC           in al, dx          ; the byte
/// 15 EE           out dx, al         ; echo it
/// 16 3C 71        cmp al, 'q'
/// 18 74 06        je reset
/// 20 66 BA FD 03  mov dx, 0x3fd
/// 24 EB EB        jmp poll
/// 26 B0 FE E6 64  reset: mov al, 0xfe; out 0x64, al
/// 30 F4 EB FD     hlt; jmp hlt
/// ```
fn echo_until_q_code() -> Vec<u8> {
    vec![
        0xfa, 0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0x66, 0xba, 0xf8, 0x03, 0xec,
        0xee, 0x3c, b'q', 0x74, 0x06, 0x66, 0xba, 0xfd, 0x03, 0xeb, 0xeb, 0xb0, 0xfe, 0xe6, 0x64,
        0xf4, 0xeb, 0xfd,
    ]
}

#[test]
fn stdin_from_a_pipe_reaches_a_four_vcpu_guest_under_seccomp() {
    require_kvm();
    let k = kernel("echo-pipe", &echo_until_q_code());
    let mut child = Command::new(vmm_bin())
        .args(["--kernel", &k, "--cpus", "boot=4", "--memory", "size=128M"])
        .args(["--serial", "tty", "-vvv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"seccomp q").unwrap();
    let o = wait_with_timeout(child, Duration::from_secs(20));
    assert_clean_exit(&o);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "seccomp q");
    // -vvv: vCPU threads logged (first_kvm_run, first_serial_byte) under their filter.
    assert!(stderr(&o).contains("first_serial_byte"), "{}", stderr(&o));
}

#[test]
fn a_terminal_on_stdin_is_made_raw_and_restored_under_seccomp() {
    require_kvm();
    let (master, slave) = open_pty();
    let k = kernel("echo-tty", &echo_until_q_code());
    let child = Command::new(vmm_bin())
        .args(["--kernel", &k, "--memory", "size=64M", "--serial", "tty"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut m = std::fs::File::from(master.try_clone().unwrap());
    m.write_all(b"tty q\n").unwrap();
    let o = wait_with_timeout(child, Duration::from_secs(20));
    assert_clean_exit(&o);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "tty q");
    // SAFETY: tcgetattr into a zeroed termios on the pty we own.
    let lflag = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(
            libc::tcgetattr(std::os::fd::AsRawFd::as_raw_fd(&slave), &mut t),
            0
        );
        t.c_lflag
    };
    assert_ne!(lflag & libc::ICANON, 0, "canonical mode restored at exit");
}

#[test]
fn serial_and_log_files_are_written_under_seccomp() {
    require_kvm();
    let k = kernel("hello-files", &vmm_tests::serial_hello_code(b"filed\n"));
    let dir = std::env::temp_dir().join(format!("vmm-seccomp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (serial, log) = (dir.join("serial.out"), dir.join("vmm.log"));
    let o = Command::new(vmm_bin())
        .args([
            "--kernel", &k, "--cpus", "boot=2", "--memory", "size=64M", "-vvv",
        ])
        .arg(format!("--serial=file={}", serial.display()))
        .arg(format!("--log-file={}", log.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_clean_exit(&o);
    assert_eq!(std::fs::read_to_string(&serial).unwrap(), "filed\n");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("guest requested a reset"), "{log_text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A halted guest, so the process stays up for /proc to be read.
fn spawn_halted(mode: &str, extra: &[&str]) -> Child {
    let k = kernel(
        &format!("halt-{mode}"),
        &vmm_tests::serial_hello_then_halt_code(b"up\n"),
    );
    let mut child = Command::new(vmm_bin())
        .args(["--kernel", &k, "--cpus", "boot=2", "--memory", "size=64M"])
        .args(["--seccomp", mode])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut b = [0u8; 3];
    child.stdout.as_mut().unwrap().read_exact(&mut b).unwrap();
    assert_eq!(&b, b"up\n");
    child
}

/// The threads of a running 2-vCPU `vmm` with a virtio device (`--rng`), by name (sorted):
/// the main thread ("vmm") runs vCPU 0 once it has built the VM; "vmm-events" is the VMM's
/// event thread. The kernel keeps 15 bytes of a thread's name: "virtio-activator" reads as
/// "virtio-activato". (Device workers start only when a driver sets DRIVER_OK, which this
/// tiny guest never does; see `a_virtio_worker_runs_under_its_own_filter_and_the_activators`.)
const OWN_THREADS: [&str; 4] = ["vcpu1", "virtio-activato", "vmm", "vmm-events"];

/// One thread of a process, from /proc.
#[derive(Debug)]
struct ThreadInfo {
    name: String,
    /// "Seccomp:" (0 none, 2 filter).
    mode: String,
    /// "Seccomp_filters:" (how many filters are stacked on the thread).
    filters: String,
    /// A kernel worker living in the process (KVM's "kvm-nx-lpage-recovery"): it runs only
    /// kernel code and makes no system calls, so no filter applies to it.
    kernel: bool,
}

/// Kernel-side workers in the flags field of /proc/TID/stat: PF_KTHREAD, and PF_USER_WORKER
/// (a thread the kernel clones from the process that never returns to user space, as KVM's
/// NX huge page recovery worker is on recent kernels: it shows the filter of the thread it was
/// cloned from, and makes no system calls).
const KERNEL_WORKER: u64 = 0x0020_0000 | 0x0000_4000;

/// Every thread of `pid` (sorted by name), kernel workers included.
fn threads_of(pid: u32) -> Vec<ThreadInfo> {
    let mut v = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = t.unwrap().path();
        let (Ok(comm), Ok(status), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // ended while we looked
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        // The flags are the 9th field; the name (2nd) is in parentheses and may hold spaces.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let flags: u64 = after_name.split(' ').nth(6).unwrap().parse().unwrap();
        v.push(ThreadInfo {
            name: comm.trim().to_string(),
            mode: field("Seccomp:"),
            filters: field("Seccomp_filters:"),
            kernel: flags & KERNEL_WORKER != 0,
        });
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The user threads of `pid`; fails the test on a kernel worker that is not KVM's.
fn user_threads(pid: u32) -> Vec<ThreadInfo> {
    let (kernel, user): (Vec<_>, Vec<_>) = threads_of(pid).into_iter().partition(|t| t.kernel);
    for k in &kernel {
        assert!(k.name.starts_with("kvm"), "unknown kernel thread {k:?}");
    }
    user
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn every_vmm_thread_runs_under_exactly_one_filter_by_default() {
    require_kvm();
    let child = spawn_halted("true", &["--rng"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut threads = user_threads(child.id());
    // The VMM thread installs its filter just after the vCPUs start: allow it a moment.
    while threads.iter().any(|t| t.mode != "2") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        threads = user_threads(child.id());
    }
    stop(child);
    // Every thread is one we know: a new thread must be added here with its filter.
    let names: Vec<_> = threads.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, OWN_THREADS, "{threads:?}");
    for t in &threads {
        assert_eq!(t.mode, "2", "filter mode: {threads:?}");
        assert_eq!(t.filters, "1", "{threads:?}");
    }
}

/// Under `--api-socket` the main thread is the control loop: confined (one filter), as every
/// thread it starts (their own filter on top of its: two).
#[test]
fn every_thread_of_an_api_vmm_is_confined() {
    require_kvm();
    let k = kernel("halt-api", &vmm_tests::serial_hello_then_halt_code(b"up\n"));
    let sock = std::env::temp_dir().join(format!("vmm-seccomp-api-{}.sock", std::process::id()));
    let mut child = Command::new(vmm_bin())
        .arg("--api-socket")
        .arg(format!("path={}", sock.display()))
        .args([
            "--kernel", &k, "--cpus", "boot=2", "--memory", "size=64M", "--rng",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut b = [0u8; 3];
    child.stdout.as_mut().unwrap().read_exact(&mut b).unwrap();
    assert_eq!(&b, b"up\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut threads = user_threads(child.id());
    while threads.iter().any(|t| t.mode != "2") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        threads = user_threads(child.id());
    }
    stop(child);
    let _ = std::fs::remove_file(&sock);
    let names: Vec<_> = threads.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vcpu0",
            "vcpu1",
            "virtio-activato",
            "vmm",
            "vmm-api",
            "vmm-events"
        ],
        "{threads:?}"
    );
    for t in &threads {
        assert_eq!(t.mode, "2", "filter mode: {threads:?}");
        // Started by the control loop: its filter and their own.
        let want = if t.name.starts_with("vcpu") || t.name == "virtio-activato" {
            "2"
        } else {
            "1"
        };
        assert_eq!(t.filters, want, "{}: {threads:?}", t.name);
    }
}

#[test]
fn seccomp_false_installs_nothing() {
    require_kvm();
    let child = spawn_halted("false", &["--rng"]);
    // The guest already ran; give the VMM thread time to pass where it would install its filter.
    std::thread::sleep(Duration::from_millis(200));
    let threads = user_threads(child.id());
    stop(child);
    let names: Vec<_> = threads.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, OWN_THREADS, "{threads:?}");
    assert!(threads.iter().all(|t| t.mode == "0"), "{threads:?}");
}

#[test]
fn a_vm_without_virtio_devices_starts_no_activator_thread() {
    require_kvm();
    let child = spawn_halted("true", &[]);
    let threads = user_threads(child.id());
    stop(child);
    let names: Vec<_> = threads.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["vcpu1", "vmm", "vmm-events"], "{threads:?}");
}

/// A guest that sets DRIVER_OK on its virtio-rng (as a driver would): the activator starts
/// the device's worker thread, which installs its own filter on top of the activator's that
/// it inherits. Every thread is then one we know, and the worker runs under both filters.
#[test]
fn a_virtio_worker_runs_under_its_own_filter_and_the_activators() {
    require_kvm();
    // The rng is the first (and only) device after the host bridge: 00:01.0.
    let k = kernel(
        "virtio-driver-ok",
        &vmm_tests::virtio_driver_ok_then_hello_code(1, b"up\n"),
    );
    let mut child = Command::new(vmm_bin())
        .args(["--kernel", &k, "--memory", "size=64M", "--rng"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A guest that never prints must fail the test, not hang it: kill the vmm after 20 s.
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !done.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !done.load(std::sync::atomic::Ordering::Acquire) {
                // SAFETY: sends SIGKILL to our own child, which we have not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        })
    };
    let mut b = [0u8; 3];
    let read = child.stdout.as_mut().unwrap().read_exact(&mut b);
    done.store(true, std::sync::atomic::Ordering::Release);
    watchdog.join().unwrap();
    if read.is_err() {
        stop(child);
        panic!("the guest printed nothing within 20 s: {read:?}");
    }
    assert_eq!(&b, b"up\n", "the guest drove the device to DRIVER_OK");
    let known = ["virtio-activato", "vmm", "vmm-events"];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut threads = user_threads(child.id());
    while (threads.len() <= known.len() || threads.iter().any(|t| t.mode != "2"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
        threads = user_threads(child.id());
    }
    stop(child);
    let names: Vec<_> = threads.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["virtio-activato", "virtio-rng", "vmm", "vmm-events"],
        "{threads:?}"
    );
    for t in &threads {
        assert_eq!(t.mode, "2", "{threads:?}");
        let want = if t.name == "virtio-rng" { "2" } else { "1" };
        assert_eq!(t.filters, want, "{}: {threads:?}", t.name);
    }
}

fn wait_with_timeout(child: Child, timeout: Duration) -> Output {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        while !d.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !d.load(Ordering::SeqCst) {
            // SAFETY: kills our own child, which has not been reaped yet (done is unset).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let o = child.wait_with_output().unwrap();
    done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    o
}

fn open_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new fds into our locals; name/termios/winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: errno {}", errno());
    // SAFETY: both fds are new and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}
