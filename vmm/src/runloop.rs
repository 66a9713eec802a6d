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
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for ev in &events[..n] {
            match ev.data() {
                EXIT_TOKEN => {
                    let _ = exit.evt.read();
                    if let Some(r) = exit.reason() {
                        return Ok(r);
                    }
                }
                STDIN_TOKEN if !forward_stdin(stdin_target.as_ref()) => {
                    let _ = epoll.ctl(
                        ControlOperation::Delete,
                        libc::STDIN_FILENO,
                        EpollEvent::default(),
                    );
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

/// Move what stdin has to the guest (the serial FIFO or the virtio-console). Returns false
/// at end of input.
fn forward_stdin(target: Option<&StdinTarget>) -> bool {
    let Some(target) = target else { return false };
    let mut buf = [0u8; 256];
    // SAFETY: reads into a local buffer of the given length.
    let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
    }
    let input = &buf[..n as usize];
    let taken = match target {
        StdinTarget::Serial(s) => {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.enqueue_input(input).unwrap_or_else(|e| {
                log::debug!("serial input: {e}");
                input.len()
            })
        }
        StdinTarget::Console(c) => c.send(input),
    };
    if taken < input.len() {
        log::debug!(
            "guest console input full: dropped {} bytes",
            input.len() - taken
        );
    }
    true
}
