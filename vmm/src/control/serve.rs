//! `vmm --api-socket …`: a long-lived VMM driven through the REST API.
//!
//! At start it does what does not depend on any VM (the socket, /dev/kvm, KVM's CPUID, the
//! seccomp filters: `vm::Warm`), starts the API thread and runs the control loop on the main
//! thread until `vmm.shutdown` (or SIGTERM/SIGINT). With `--kernel` too, the command line's
//! VM is created and booted first, as Cloud Hypervisor does; with `--restore`, it is restored
//! from its snapshot.
//!
//! `vmm --restore …` without `--api-socket` runs the same control loop with no API: the
//! restored VM runs at once and the VMM ends with it, as a booted one does under the CLI.

use std::sync::mpsc;
use std::time::Instant;

use super::events::{EventMonitor, EventTarget};
use super::{Controller, KvmLauncher};
use crate::api::server::{ApiSocket, ApiSocketError, ApiSocketSpec, ApiThread};
use crate::api::vm_config::ApiVmConfig;
use crate::api::Request;
use crate::config::VmConfig;
use crate::seccomp::{Confinement, SeccompMode, ThreadKind};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Socket(#[from] ApiSocketError),
    #[error("--event-monitor: {0}")]
    Events(std::io::Error),
    #[error(transparent)]
    Vm(#[from] crate::vm::VmError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("starting the API thread: {0}")]
    Thread(std::io::Error),
    #[error("booting the command line's VM: {0}")]
    Boot(String),
    #[error("restoring the snapshot: {0}")]
    Restore(String),
}

pub struct ServeOptions {
    /// None: no API (`--restore` alone); the VMM ends with its VM.
    pub socket: Option<ApiSocketSpec>,
    pub events: Option<EventTarget>,
    pub seccomp: SeccompMode,
    /// The command line's VM, started at once.
    pub start: Option<Start>,
}

/// The VM the command line starts.
pub enum Start {
    /// `--kernel …`: created and booted.
    Boot(Box<VmConfig>),
    /// `--restore …`.
    Restore(crate::api::RestoreRequest),
}

/// Serve until `vmm.shutdown` (or, with no API, until the VM ends); the socket file (if the
/// VMM created it) is removed at the end. Returns the process's exit status.
pub fn serve(opts: ServeOptions, start: Instant) -> Result<u8, ServeError> {
    // Before any thread exists: the socket is created under a umask (api/server.rs).
    let socket = opts.socket.as_ref().map(ApiSocket::open).transpose()?;
    let path = socket
        .as_ref()
        .and_then(|s| s.path().map(|p| p.to_path_buf()));
    let result = serve_on(socket, opts, start);
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn serve_on(
    socket: Option<ApiSocket>,
    opts: ServeOptions,
    start: Instant,
) -> Result<u8, ServeError> {
    let events = match &opts.events {
        Some(t) => EventMonitor::open(t, start).map_err(ServeError::Events)?,
        None => EventMonitor::none(),
    };
    let kill = crate::signals::shutdown_events()
        .and_then(|e| e.try_clone())
        .map_err(ServeError::Thread)?;
    let warm = crate::vm::Warm::prepare(opts.seccomp)?;
    let (tx, rx) = mpsc::channel();
    let mut controller = Controller::new(KvmLauncher { warm }, tx.clone(), events);
    let compile = |kind| Confinement::new(opts.seccomp).compile(kind);
    let Some(socket) = socket else {
        // No API (`vmm --restore` alone): the VM is started first, as the plain CLI's is (its
        // setup is trusted host-side work before the guest runs, and its threads confine
        // themselves); then this thread confines itself and waits for the VM's end.
        controller.exit_with_vm();
        start_vm(&mut controller, opts.start)?;
        let _watcher =
            signal_watcher(kill, tx, compile(ThreadKind::Api)?).map_err(ServeError::Thread)?;
        compile(ThreadKind::Control)?.install()?;
        controller.run(&rx);
        return Ok(controller.exit_code());
    };
    let api = ApiThread {
        socket,
        control: tx,
        kill,
        filter: compile(ThreadKind::Api)?,
        seccomp: opts.seccomp,
    }
    .spawn()
    .map_err(ServeError::Thread)?;
    // From here this thread acts on requests (and starts the command line's VM): confined,
    // as every thread the VMs it builds will start under (seccomp/control.rs).
    compile(ThreadKind::Control)?.install()?;
    start_vm(&mut controller, opts.start)?;
    controller.run(&rx);
    let _ = api.join();
    Ok(controller.exit_code())
}

/// Start the command line's VM, if it names one.
fn start_vm(
    controller: &mut Controller<KvmLauncher>,
    start: Option<Start>,
) -> Result<(), ServeError> {
    match start {
        Some(Start::Boot(cfg)) => {
            let cfg = *cfg;
            let api_cfg = ApiVmConfig::from_config(&cfg);
            controller
                .handle(Request::Create(Box::new((api_cfg, cfg))))
                .and_then(|_| controller.handle(Request::Boot))
                .map_err(|e| ServeError::Boot(e.messages.join(": ")))?;
        }
        Some(Start::Restore(r)) => {
            controller
                .handle(Request::Restore(r))
                .map_err(|e| ServeError::Restore(e.messages.join(": ")))?;
        }
        None => {}
    }
    Ok(())
}

/// With no API thread, SIGTERM/SIGINT still end the VMM cleanly: a thread (under the API
/// thread's filter: it reads an eventfd and sends on a channel) asks the control loop to
/// shut down.
fn signal_watcher(
    kill: vmm_sys_util::eventfd::EventFd,
    control: mpsc::Sender<super::ControlMsg>,
    filter: crate::seccomp::Compiled,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("vmm-signals".into())
        .spawn(move || {
            use std::os::fd::AsRawFd;
            use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
            crate::signals::block_shutdown_signals();
            // The eventfd is non-blocking: wait for it with epoll (created before the filter,
            // which allows only epoll_ctl and epoll_wait).
            let Ok(epoll) = Epoll::new() else { return };
            let event = EpollEvent::new(EventSet::IN, 0);
            if epoll
                .ctl(ControlOperation::Add, kill.as_raw_fd(), event)
                .is_err()
                || filter.install().is_err()
            {
                return;
            }
            let mut events = [EpollEvent::default(); 1];
            loop {
                match epoll.wait(-1, &mut events) {
                    Ok(n) if n > 0 => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
            let _ = kill.read();
            let (reply, _answer) = mpsc::channel();
            let _ = control.send(super::ControlMsg::Api(Request::VmmShutdown, reply));
        })
}
