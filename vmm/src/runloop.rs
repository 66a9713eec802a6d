//! The VMM thread's event loop: host stdin to the guest's console, virtio device activation,
//! host shutdown signals, and the VM's end.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use devices::legacy::Serial;
use devices::virtio::ConsoleInput;
use devices::Interrupt;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::terminal::Terminal;

use crate::config::SerialConfig;
use crate::legacy::LegacyDevices;
use crate::signals;
use crate::vcpu::{ExitSignal, VmExitReason};
use crate::virtio_setup::VirtioDevices;

const EXIT_TOKEN: u64 = 1;
const STDIN_TOKEN: u64 = 2;
const SHUTDOWN_TOKEN: u64 = 3;

/// Where host stdin goes: the serial port when it is the tty, else the virtio-console.
#[derive(Clone)]
enum StdinTarget {
    Serial(Arc<Mutex<Serial>>),
    Console(ConsoleInput),
}

/// Puts stdin in raw mode for the guest console and restores it when dropped.
struct RawStdin;

impl RawStdin {
    fn enable() -> Option<Self> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return None;
        }
        std::io::stdin()
            .lock()
            .set_raw_mode()
            .ok()
            .map(|_| RawStdin)
    }
}

impl Drop for RawStdin {
    fn drop(&mut self) {
        let _ = std::io::stdin().lock().set_canon_mode();
    }
}

/// Block until the VM ends, feeding stdin to the serial port when it is the console. With
/// `signals`, SIGTERM/SIGINT press the power button (the CLI); without, they are not this
/// loop's business (under the API they shut the VMM down).
pub fn wait_for_exit(
    exit: &Arc<ExitSignal>,
    devices: &LegacyDevices,
    virtio: &VirtioDevices,
    cfg: &SerialConfig,
    signals: bool,
) -> std::io::Result<VmExitReason> {
    let serial = devices.serial.as_ref();
    let mut shutdown_requests = 0u32;
    let epoll = Epoll::new()?;
    epoll.ctl(
        ControlOperation::Add,
        exit.evt.as_raw_fd(),
        EpollEvent::new(EventSet::IN, EXIT_TOKEN),
    )?;
    let target = match (serial, cfg, &virtio.console_input) {
        (Some(s), SerialConfig::Tty, _) => Some(StdinTarget::Serial(s.clone())),
        (_, _, Some(c)) => Some(StdinTarget::Console(c.clone())),
        _ => None,
    };
    // stdin may be /dev/null or closed (scripts, CI): then there is simply no input.
    let stdin_target = target.filter(|_| {
        epoll
            .ctl(
                ControlOperation::Add,
                libc::STDIN_FILENO,
                EpollEvent::new(EventSet::IN, STDIN_TOKEN),
            )
            .is_ok()
    });
    let _raw = stdin_target.as_ref().and_then(|_| RawStdin::enable());

    let shutdown = if signals {
        let shutdown = signals::shutdown_events()?;
        epoll.ctl(
            ControlOperation::Add,
            shutdown.as_raw_fd(),
            EpollEvent::new(EventSet::IN, SHUTDOWN_TOKEN),
        )?;
        Some(shutdown)
    } else {
        None
    };
    let mut events = vec![EpollEvent::default(); 4];
    // Input the guest's receive FIFO had no room for yet. While some waits, stdin is not
    // read (out of the epoll set) and the FIFO is offered it again every few milliseconds.
    let mut pending: Vec<u8> = Vec::new();
    let mut stdin_open = stdin_target.is_some();
    let stdin_event = || EpollEvent::new(EventSet::IN, STDIN_TOKEN);
    loop {
        let timeout = if pending.is_empty() {
            -1
        } else {
            INPUT_RETRY_MS
        };
        let n = match epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let (Some(target), false) = (stdin_target.as_ref(), pending.is_empty()) {
            let taken = target.offer(&pending);
            pending.drain(..taken);
            if pending.is_empty() && stdin_open {
                let _ = epoll.ctl(ControlOperation::Add, libc::STDIN_FILENO, stdin_event());
            }
        }
        for ev in &events[..n] {
            match ev.data() {
                EXIT_TOKEN => {
                    let _ = exit.evt.read();
                    if let Some(r) = exit.reason() {
                        return Ok(r);
                    }
                }
                STDIN_TOKEN => {
                    stdin_open =
                        forward_input(libc::STDIN_FILENO, stdin_target.as_ref(), &mut pending);
                    if !stdin_open || !pending.is_empty() {
                        let _ = epoll.ctl(
                            ControlOperation::Delete,
                            libc::STDIN_FILENO,
                            EpollEvent::default(),
                        );
                    }
                }
                SHUTDOWN_TOKEN => {
                    let Some(shutdown) = shutdown else { continue };
                    shutdown_requests += shutdown.read().map(|n| n as u32).unwrap_or(0);
                    if let Some(r) =
                        on_shutdown_request(shutdown_requests, devices.power_button.as_ref())
                    {
                        return Ok(r);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The first SIGTERM/SIGINT presses the guest's power button; a second stops the VM.
fn on_shutdown_request(count: u32, power_button: &dyn Interrupt) -> Option<VmExitReason> {
    if count >= 2 {
        return Some(VmExitReason::Fatal(
            "stopped by a second SIGTERM/SIGINT before the guest shut down".into(),
        ));
    }
    log::warn!("shutdown requested: pressing the ACPI power button (signal again to stop at once)");
    if let Err(e) = power_button.trigger() {
        log::error!("cannot press the power button: {e}");
    }
    None
}

/// How often input waiting for room in the guest's receive FIFO is offered again.
const INPUT_RETRY_MS: i32 = 2;

impl StdinTarget {
    /// Give the guest what it has room for; returns how many bytes it took.
    fn offer(&self, input: &[u8]) -> usize {
        match self {
            StdinTarget::Serial(s) => {
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.enqueue_input(input).unwrap_or_else(|e| {
                    // The byte went in; only raising its interrupt failed.
                    log::debug!("serial input: {e}");
                    input.len()
                })
            }
            StdinTarget::Console(c) => c.send(input),
        }
    }
}

/// Move what `fd` (stdin) has to the guest (the serial FIFO or the virtio-console); what the
/// guest has no room for yet is kept in `pending`, in order, never dropped (a paste or a
/// script writes faster than a guest reads a 64-byte FIFO). Returns false at end of input.
fn forward_input(fd: i32, target: Option<&StdinTarget>, pending: &mut Vec<u8>) -> bool {
    let Some(target) = target else { return false };
    let mut buf = [0u8; 256];
    // SAFETY: reads into a local buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        let e = std::io::Error::last_os_error().kind();
        return n < 0
            && matches!(
                e,
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
            );
    }
    let input = &buf[..n as usize];
    let taken = if pending.is_empty() {
        target.offer(input)
    } else {
        0
    };
    pending.extend_from_slice(&input[taken..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::BusDevice;

    struct NoIrq;
    impl Interrupt for NoIrq {
        fn trigger(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn input_faster_than_the_guest_reads_waits_and_arrives_whole_and_in_order() {
        let serial = Arc::new(Mutex::new(Serial::new(Arc::new(NoIrq), None)));
        let target = StdinTarget::Serial(serial.clone());
        let (r, w) = {
            let mut fds = [0; 2];
            // SAFETY: a two-int array for pipe(2).
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        let sent: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        // SAFETY: writes a live buffer to the pipe.
        assert_eq!(unsafe { libc::write(w, sent.as_ptr().cast(), 256) }, 256);
        let mut pending = Vec::new();
        assert!(forward_input(r, Some(&target), &mut pending));
        assert!(!pending.is_empty(), "more than the FIFO holds waits");
        let mut got = Vec::new();
        let read_fifo = |got: &mut Vec<u8>| {
            let mut s = serial.lock().unwrap();
            loop {
                let mut lsr = [0u8];
                s.read(5, &mut lsr);
                if lsr[0] & 1 == 0 {
                    break;
                }
                let mut b = [0u8];
                s.read(0, &mut b);
                got.push(b[0]);
            }
        };
        read_fifo(&mut got);
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::write(w, sent[256..].as_ptr().cast(), 44) },
            44
        );
        // New input queues behind what waits, even when the FIFO has room now.
        assert!(forward_input(r, Some(&target), &mut pending));
        while !pending.is_empty() {
            let taken = target.offer(&pending);
            pending.drain(..taken);
            read_fifo(&mut got);
        }
        read_fifo(&mut got);
        assert_eq!(got, sent);
        // SAFETY: closing the pipe's ends this test opened.
        unsafe {
            libc::close(w);
        }
        assert!(
            !forward_input(r, Some(&target), &mut pending),
            "end of input"
        );
        // SAFETY: as above.
        unsafe {
            libc::close(r);
        }
    }
}
