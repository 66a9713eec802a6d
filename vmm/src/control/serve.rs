//! `vmm --api-socket …`: a long-lived VMM driven through the REST API.
//!
//! At start it does what does not depend on any VM (the socket, /dev/kvm, KVM's CPUID, the
//! seccomp filters: `vm::Warm`), starts the API thread and runs the control loop on the main
//! thread until `vmm.shutdown` (or SIGTERM/SIGINT). With `--kernel` too, the command line's
//! VM is created and booted first, as Cloud Hypervisor does; with `--restore`, it is restored
//! from its snapshot. (`vmm --restore …` without `--api-socket` is the plain CLI's path:
//! `vm::run_restored`.)

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
    pub socket: ApiSocketSpec,
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

/// Serve until `vmm.shutdown`; the socket file (if the VMM created it) is removed at the end.
pub fn serve(opts: ServeOptions, start: Instant) -> Result<(), ServeError> {
    // Before any thread exists: the socket is created under a umask (api/server.rs).
    let socket = ApiSocket::open(&opts.socket)?;
    let path = socket.path().map(|p| p.to_path_buf());
    let result = serve_on(socket, opts, start);
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn serve_on(socket: ApiSocket, opts: ServeOptions, start: Instant) -> Result<(), ServeError> {
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
    Ok(())
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
