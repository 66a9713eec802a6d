//! vCPU threads. Each runs an explicit state machine:
//!
//! ```text
//! Created --start--> Running --guest reset/poweroff/fatal--> Exited(reason)
//!                       |  ^
//!                  kick |  | no stop requested
//!                       v  |
//!                   Interrupted --stop requested--> Exited(Stopped)
//! ```
//! A kick is a signal (`SIGRTMIN`) that makes KVM_RUN return; the stop flag says why.

pub mod exit;
pub mod pause;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use hypervisor::VcpuX86_64;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use exit::{dispatch, Buses, ExitAction};
pub use pause::PauseGate;

use crate::seccomp::Compiled;

/// Why the VM ended, as the first vCPU (or device) to know reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExitReason {
    Reset,
    PowerOff,
    Fatal(String),
    /// The VMM stopped the VM (`vm.shutdown`, `vm.delete`, `vmm.shutdown`, a reboot).
    Stopped,
}

/// Where vCPUs (and devices such as the i8042) report the end of the VM.
pub struct ExitSignal {
    reason: Mutex<Option<VmExitReason>>,
    pub evt: EventFd,
}

impl ExitSignal {
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitSignal {
            reason: Mutex::new(None),
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Record `reason` unless one was already recorded, and wake the main loop.
    pub fn report(&self, reason: VmExitReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        let _ = self.evt.write(1);
    }

    pub fn reason(&self) -> Option<VmExitReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The states of one vCPU thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VcpuState {
    Created,
    Running,
    Exited(Option<VmExitReason>),
}

/// Everything a vCPU thread shares with the VMM.
#[derive(Clone)]
pub struct VcpuShared {
    pub buses: Arc<Buses>,
    pub exit: Arc<ExitSignal>,
    pub stop: Arc<AtomicBool>,
    /// Raised while the VM is paused: vCPUs park instead of entering the guest.
    pub pause: Arc<PauseGate>,
}

impl VcpuShared {
    pub fn new(buses: Arc<Buses>, exit: Arc<ExitSignal>) -> Self {
        VcpuShared {
            buses,
            exit,
            stop: Arc::new(AtomicBool::new(false)),
            pause: Arc::new(PauseGate::default()),
        }
    }
}

/// Install the no-op kick handler once per process; its only job is to interrupt KVM_RUN.
/// Without it a kick would kill the process, so spawning a vCPU thread installs it.
pub fn install_kick_handler() -> std::io::Result<()> {
    extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    static ONCE: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| register_signal_handler(SIGRTMIN(), on_kick).map_err(|e| e.errno()))
        .map_err(std::io::Error::from_raw_os_error)
}

/// Run one vCPU until the guest or the VMM ends it. Returns the final state.
pub fn run_loop(
    vcpu: &mut dyn VcpuX86_64,
    shared: &VcpuShared,
    on_first_run: Option<Box<dyn FnOnce()>>,
) -> VcpuState {
    let mut state = VcpuState::Created;
    let mut first = on_first_run;
    // The last snapshot save round this vCPU served (see pause.rs).
    let mut served = 0u64;
    // An exit met while finishing an instruction for a snapshot: a plain access is handled
    // as usual; anything else (a reset, a failure) leaves the save to fail and the guest's
    // next run to meet it again.
    let handle = |exit: hypervisor::VmExit<'_>| match dispatch(&shared.buses, exit) {
        ExitAction::Continue | ExitAction::Interrupted => Ok(()),
        other => Err(format!(
            "the vCPU stopped on {other:?} while finishing an access"
        )),
    };
    loop {
        state = match state {
            VcpuState::Created => VcpuState::Running,
            VcpuState::Running => {
                if shared.stop.load(Ordering::Acquire) {
                    return VcpuState::Exited(None);
                }
                if shared.pause.is_raised() {
                    let saver = pause::Saver {
                        vcpu: &mut *vcpu,
                        handle: &handle,
                        served: &mut served,
                    };
                    shared.pause.park(&shared.stop, Some(saver));
                    continue;
                }
                if let Some(f) = first.take() {
                    f();
                }
                let exit = match vcpu.run() {
                    Ok(exit) => exit,
                    Err(e) => {
                        let r = VmExitReason::Fatal(format!("vCPU {}: {e}", vcpu.id()));
                        shared.exit.report(r.clone());
                        return VcpuState::Exited(Some(r));
                    }
                };
                match dispatch(&shared.buses, exit) {
                    ExitAction::Continue | ExitAction::Interrupted => VcpuState::Running,
                    action => {
                        let r = match action {
                            ExitAction::Reset => VmExitReason::Reset,
                            ExitAction::PowerOff => VmExitReason::PowerOff,
                            ExitAction::Fatal(m) => {
                                VmExitReason::Fatal(format!("vCPU {}: {m}", vcpu.id()))
                            }
                            ExitAction::Continue | ExitAction::Interrupted => unreachable!(),
                        };
                        shared.exit.report(r.clone());
                        return VcpuState::Exited(Some(r));
                    }
                }
            }
            exited @ VcpuState::Exited(_) => return exited,
        };
    }
}

/// A started vCPU thread.
pub struct VcpuHandle {
    pub id: u32,
    thread: JoinHandle<VcpuState>,
}

/// What a parked vCPU thread is handed when the VM is ready to run.
struct VcpuStart {
    vcpu: Box<dyn VcpuX86_64>,
    shared: VcpuShared,
    on_first_run: Option<Box<dyn FnOnce() + Send>>,
}

/// A vCPU thread started before its vCPU exists. Starting a thread and installing a seccomp
/// filter take hundreds of microseconds; a parked thread does both (and whatever setup work
/// `prepare` holds) while the VMM is still building the VM, so that once the vCPU is
/// configured only a channel send separates it from its first KVM_RUN.
pub struct ParkedVcpu {
    id: u32,
    start: mpsc::SyncSender<VcpuStart>,
    ready: mpsc::Receiver<Result<(), String>>,
    thread: JoinHandle<VcpuState>,
}

impl ParkedVcpu {
    /// Start the thread for vCPU `id`. It runs `prepare`, installs the filter `prepare`
    /// returns, says so to [`ParkedVcpu::wait_ready`] and waits for [`ParkedVcpu::start`].
    /// If `prepare` or the install failed, `wait_ready` says why (and a vCPU started anyway
    /// ends the VM as failed without entering the guest); if the `ParkedVcpu` is dropped
    /// unstarted (setup failed elsewhere), the thread just ends. (vCPU 0 runs on the thread
    /// that built the VM, see [`CallerVcpu`]; parked threads serve the others.)
    pub fn spawn<F>(id: u32, prepare: F) -> std::io::Result<Self>
    where
        F: FnOnce() -> Result<Compiled, String> + Send + 'static,
    {
        install_kick_handler()?;
        let (tx, rx) = mpsc::sync_channel::<VcpuStart>(1);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                crate::signals::block_shutdown_signals();
                let confined = prepare().and_then(|c| c.install().map_err(|e| e.to_string()));
                let _ = ready_tx.send(confined.clone());
                let Ok(VcpuStart {
                    mut vcpu,
                    shared,
                    on_first_run,
                }) = rx.recv()
                else {
                    return VcpuState::Exited(None);
                };
                if let Err(e) = confined {
                    let r = VmExitReason::Fatal(format!("vCPU {id}: {e}"));
                    shared.exit.report(r.clone());
                    return VcpuState::Exited(Some(r));
                }
                let first: Option<Box<dyn FnOnce()>> = on_first_run.map(|f| f as Box<dyn FnOnce()>);
                run_loop(vcpu.as_mut(), &shared, first)
            })?;
        Ok(ParkedVcpu {
            id,
            start: tx,
            ready: ready_rx,
            thread,
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Wait until the thread has done its setup and installed its filter (call it once);
    /// the error says what failed.
    pub fn wait_ready(&self) -> Result<(), String> {
        self.ready
            .recv()
            .unwrap_or_else(|_| Err("its thread ended during setup".into()))
    }

    /// Hand the thread its configured vCPU: it enters the guest at once.
    pub fn start(
        self,
        vcpu: Box<dyn VcpuX86_64>,
        shared: VcpuShared,
        on_first_run: Option<Box<dyn FnOnce() + Send>>,
    ) -> VcpuHandle {
        // A send fails only if the thread already ended (it could not have: it waits for
        // this message); joining the handle then tells what happened.
        let _ = self.start.send(VcpuStart {
            vcpu,
            shared,
            on_first_run,
        });
        VcpuHandle {
            id: self.id,
            thread: self.thread,
        }
    }
}

impl VcpuHandle {
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Interrupt KVM_RUN; the thread then sees the stop flag.
    pub fn kick(&self) {
        let _ = self.thread.kill(SIGRTMIN());
    }

    pub fn join(self) -> Option<VcpuState> {
        self.thread.join().ok()
    }
}

/// vCPU 0 runs on the thread that built the VM: no hand-off to another thread stands between
/// the configured vCPU and its first KVM_RUN. The VMM thread stops it with [`stop_all`].
#[derive(Clone)]
pub struct CallerVcpu {
    inner: Arc<CallerInner>,
}

struct CallerInner {
    /// The thread's `pthread_t`, as an integer: a pointer on musl, which is not `Send`.
    thread: usize,
    done: AtomicBool,
}

impl CallerVcpu {
    /// For the calling thread, which is about to run a vCPU.
    pub fn new() -> std::io::Result<Self> {
        install_kick_handler()?;
        Ok(CallerVcpu {
            inner: Arc::new(CallerInner {
                // SAFETY: pthread_self has no preconditions.
                thread: unsafe { libc::pthread_self() } as usize,
                done: AtomicBool::new(false),
            }),
        })
    }

    /// The calling thread has left its vCPU loop for good.
    pub fn done(&self) {
        self.inner.done.store(true, Ordering::Release);
    }

    fn is_done(&self) -> bool {
        self.inner.done.load(Ordering::Acquire)
    }

    /// Interrupt the thread's KVM_RUN.
    fn kick(&self) {
        // SAFETY: the thread outlives every kick: vm::run, running on it, joins the VMM
        // thread (the only one that kicks it) before it returns; a kick only interrupts a
        // blocking call.
        unsafe { libc::pthread_kill(self.inner.thread as libc::pthread_t, SIGRTMIN()) };
    }
}

/// Ask every vCPU to stop, kicking until each has left KVM_RUN (a kick can land just before a
/// thread re-enters the guest, so one is not enough), waiting at most `timeout`: the threads
/// of `handles` (joined), and `caller`, the thread running vCPU 0, if given.
pub fn stop_all(
    handles: Vec<VcpuHandle>,
    caller: Option<&CallerVcpu>,
    stop: &AtomicBool,
    timeout: std::time::Duration,
) {
    stop.store(true, Ordering::Release);
    let deadline = std::time::Instant::now() + timeout;
    let mut pending = handles;
    let caller_pending = || caller.is_some_and(|c| !c.is_done());
    while (!pending.is_empty() || caller_pending()) && std::time::Instant::now() < deadline {
        for h in &pending {
            h.kick();
        }
        if let Some(c) = caller.filter(|_| caller_pending()) {
            c.kick();
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|h| h.is_finished());
        for h in done {
            let _ = h.join();
        }
        pending = rest;
    }
    for h in &pending {
        log::warn!("vCPU {} did not stop in time", h.id);
    }
    if caller_pending() {
        log::warn!("vCPU 0 did not stop in time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::fake::{FakeHypervisor, ScriptedExit};
    use hypervisor::Hypervisor;

    fn shared() -> VcpuShared {
        VcpuShared::new(
            Arc::new(Buses::default()),
            Arc::new(ExitSignal::new().unwrap()),
        )
    }

    #[test]
    fn guest_poweroff_ends_the_loop_and_is_reported() {
        let hv = FakeHypervisor::new();
        hv.script(
            0,
            [
                ScriptedExit::IoOut {
                    port: 0x80,
                    data: vec![1],
                },
                ScriptedExit::Hlt,
                ScriptedExit::PowerOff,
            ],
        );
        let vm = hv.create_vm().unwrap();
        let mut vcpu = vm.create_vcpu(0).unwrap();
        let s = shared();
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = ran.clone();
        let state = run_loop(
            vcpu.as_mut(),
            &s,
            Some(Box::new(move || r2.store(true, Ordering::SeqCst))),
        );
        assert_eq!(state, VcpuState::Exited(Some(VmExitReason::PowerOff)));
        assert_eq!(s.exit.reason(), Some(VmExitReason::PowerOff));
        assert!(ran.load(Ordering::SeqCst));
        assert_eq!(s.exit.evt.read().unwrap(), 1);
    }

    #[test]
    fn a_kick_with_stop_requested_exits_without_a_reason() {
        let hv = FakeHypervisor::new();
        hv.script(0, [ScriptedExit::Interrupted, ScriptedExit::Reset]);
        let vm = hv.create_vm().unwrap();
        let mut vcpu = vm.create_vcpu(0).unwrap();
        let s = shared();
        s.stop.store(true, Ordering::SeqCst);
        assert_eq!(run_loop(vcpu.as_mut(), &s, None), VcpuState::Exited(None));
        assert_eq!(s.exit.reason(), None);
    }

    #[test]
    fn first_reason_wins() {
        let e = ExitSignal::new().unwrap();
        e.report(VmExitReason::Reset);
        e.report(VmExitReason::Fatal("late".into()));
        assert_eq!(e.reason(), Some(VmExitReason::Reset));
    }

    fn no_filter() -> Compiled {
        crate::seccomp::Confinement::new(crate::seccomp::SeccompMode::Off)
            .compile(crate::seccomp::ThreadKind::Vcpu)
            .unwrap()
    }

    #[test]
    fn a_parked_vcpu_does_its_setup_before_it_is_started_then_runs() {
        let hv = FakeHypervisor::new();
        hv.script(0, [ScriptedExit::Reset]);
        let vm = hv.create_vm().unwrap();
        let (tx, rx) = mpsc::channel();
        let parked = ParkedVcpu::spawn(0, move || {
            tx.send("prepared").unwrap();
            Ok(no_filter())
        })
        .unwrap();
        // The setup ran on the parked thread, with no vCPU handed to it yet.
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(5)),
            Ok("prepared")
        );
        assert_eq!(parked.wait_ready(), Ok(()));
        let s = shared();
        let h = parked.start(vm.create_vcpu(0).unwrap(), s.clone(), None);
        assert_eq!(h.join(), Some(VcpuState::Exited(Some(VmExitReason::Reset))));
        assert_eq!(s.exit.reason(), Some(VmExitReason::Reset));
    }

    #[test]
    fn a_parked_vcpu_whose_setup_failed_ends_the_vm_without_running() {
        let hv = FakeHypervisor::new();
        hv.script(0, [ScriptedExit::Reset]);
        let vm = hv.create_vm().unwrap();
        let parked = ParkedVcpu::spawn(0, || Err("no filter for you".into())).unwrap();
        assert_eq!(parked.wait_ready(), Err("no filter for you".to_string()));
        let s = shared();
        let h = parked.start(vm.create_vcpu(0).unwrap(), s.clone(), None);
        let want = VmExitReason::Fatal("vCPU 0: no filter for you".into());
        assert_eq!(h.join(), Some(VcpuState::Exited(Some(want.clone()))));
        assert_eq!(s.exit.reason(), Some(want));
    }

    #[test]
    fn a_parked_vcpu_dropped_unstarted_ends_its_thread() {
        let (tx, rx) = mpsc::channel::<()>();
        let parked = ParkedVcpu::spawn(0, move || {
            let _keep = tx;
            Ok(no_filter())
        })
        .unwrap();
        let ParkedVcpu {
            start,
            thread: handle,
            ..
        } = parked;
        // With the start sender gone (as when VM setup fails), the thread ends by itself.
        drop(start);
        assert_eq!(handle.join().ok(), Some(VcpuState::Exited(None)));
        // And its setup closure (holding `tx`) was dropped.
        assert!(rx.recv().is_err());
    }

    #[test]
    fn stop_all_joins_threads_of_a_finished_guest() {
        let hv = FakeHypervisor::new();
        hv.script(0, [ScriptedExit::Reset]);
        let vm = hv.create_vm().unwrap();
        let s = shared();
        let h = ParkedVcpu::spawn(0, || Ok(no_filter())).unwrap().start(
            vm.create_vcpu(0).unwrap(),
            s.clone(),
            None,
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while s.exit.reason().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        stop_all(vec![h], None, &s.stop, std::time::Duration::from_secs(5));
        assert_eq!(s.exit.reason(), Some(VmExitReason::Reset));
    }
}
