//! Reporting a violation. In enforce mode a syscall outside the filter returns
//! `SECCOMP_RET_TRAP`: the kernel sends the thread SIGSYS with the syscall number in siginfo.
//! The handler writes one fixed line naming the syscall and the thread kind to stderr, then
//! ends the process with [`VIOLATION_EXIT_CODE`]. (`SECCOMP_RET_KILL_PROCESS` would kill it
//! without a word.)
//!
//! The handler is async-signal-safe: it formats into a stack buffer, reads a thread-local
//! `Cell` with a const initializer (a plain TLS load, no lazy registration), and calls only
//! write(2) and exit_group(2) — which every filter allows, so the report cannot itself trap.

use std::cell::Cell;
use std::sync::OnceLock;

use super::names;
use super::ThreadKind;

/// The status a violation exits with: SIGSYS's number, so it reads as "died of SIGSYS" without
/// the core dump a re-raised SIGSYS would leave.
pub const VIOLATION_EXIT_CODE: i32 = 31;

/// Byte offset of `si_syscall` in x86_64's `siginfo_t`. libc's `siginfo_t` hides the union
/// behind padding, so we read the kernel's layout (include/uapi/asm-generic/siginfo.h):
/// `si_signo`, `si_errno`, `si_code` (3 x int = 12 bytes) then 4 bytes of padding before the
/// 8-aligned `_sifields` union at 16, whose `_sigsys` member is
/// `{ void *_call_addr; int _syscall; unsigned int _arch; }`: `_syscall` is at 16 + 8 = 24.
const SI_SYSCALL_OFFSET: usize = 24;

/// `si_code` of a SIGSYS raised by seccomp (`SYS_SECCOMP` in the kernel's siginfo.h).
const SYS_SECCOMP: i32 = 1;

const _: () = assert!(SI_SYSCALL_OFFSET + 4 <= std::mem::size_of::<libc::siginfo_t>());

thread_local! {
    static KIND: Cell<Option<ThreadKind>> = const { Cell::new(None) };
}

/// Record which filter this thread runs under, for the message.
pub fn set_thread_kind(kind: ThreadKind) {
    KIND.with(|k| k.set(Some(kind)));
}

/// Install the SIGSYS handler (once per process; later calls return the first result).
pub fn install_handler() -> std::io::Result<()> {
    static ONCE: OnceLock<Result<(), i32>> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags) that we then fill.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_sigsys as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        // SAFETY: installs a handler that only formats on the stack, writes and exits.
        let rc = unsafe { libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    })
    .map_err(std::io::Error::from_raw_os_error)
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid siginfo_t; si_code is a
    // public field and si_syscall lies at SI_SYSCALL_OFFSET inside it (see above).
    let (code, nr) = unsafe {
        let code = (*info).si_code;
        let nr = info
            .cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read_unaligned();
        (code, nr)
    };
    let kind = KIND.with(Cell::get);
    let msg = if code == SYS_SECCOMP {
        violation_message(i64::from(nr), kind)
    } else {
        let mut m = Message::default();
        m.push(b"vmm: SIGSYS not raised by seccomp: exiting\n");
        m
    };
    // SAFETY: writes our stack buffer to stderr, then ends the process without running any
    // user-space code (no atexit handlers, no destructors) — both async-signal-safe.
    unsafe {
        libc::write(libc::STDERR_FILENO, msg.buf.as_ptr().cast(), msg.len);
        libc::_exit(VIOLATION_EXIT_CODE);
    }
}

/// A line formatted without allocating; input beyond the buffer is cut.
pub struct Message {
    buf: [u8; 128],
    len: usize,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            buf: [0; 128],
            len: 0,
        }
    }
}

impl Message {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_number(&mut self, n: i64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            self.push(b"-");
        }
        self.push(&digits[i..]);
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// `vmm: seccomp violation: syscall 41 (socket) in thread vcpu`
pub fn violation_message(nr: i64, kind: Option<ThreadKind>) -> Message {
    let mut m = Message::default();
    m.push(b"vmm: seccomp violation: syscall ");
    m.push_number(nr);
    if let Some(name) = names::name(nr) {
        m.push(b" (");
        m.push(name.as_bytes());
        m.push(b")");
    }
    m.push(b" in thread ");
    m.push(kind.map_or("unknown", ThreadKind::name).as_bytes());
    m.push(b"\n");
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::DeviceKind;

    fn text(m: &Message) -> &str {
        std::str::from_utf8(m.as_bytes()).unwrap()
    }

    #[test]
    fn the_message_names_the_syscall_and_the_thread_kind() {
        assert_eq!(
            text(&violation_message(41, Some(ThreadKind::Vcpu))),
            "vmm: seccomp violation: syscall 41 (socket) in thread vcpu\n"
        );
        assert_eq!(
            text(&violation_message(
                1234,
                Some(ThreadKind::Device(DeviceKind::Block))
            )),
            "vmm: seccomp violation: syscall 1234 in thread device/block\n"
        );
        assert_eq!(
            text(&violation_message(0, None)),
            "vmm: seccomp violation: syscall 0 (read) in thread unknown\n"
        );
    }

    #[test]
    fn numbers_format_in_decimal_and_long_input_is_cut_not_overflowed() {
        let mut m = Message::default();
        m.push_number(-7);
        m.push_number(i64::MIN);
        assert_eq!(text(&m), "-7-9223372036854775808");
        m.push(&[b'x'; 300]);
        assert_eq!(m.as_bytes().len(), 128);
    }

    #[test]
    fn the_thread_kind_is_per_thread() {
        set_thread_kind(ThreadKind::Vmm);
        let other = std::thread::spawn(|| KIND.with(Cell::get)).join().unwrap();
        assert_eq!(other, None);
        assert_eq!(KIND.with(Cell::get), Some(ThreadKind::Vmm));
    }
}
