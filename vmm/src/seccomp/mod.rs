//! Per-thread seccomp filters (`--seccomp true|false|log`, on by default).
//!
//! Each kind of thread gets its own allowlist (`vmm.rs`, `vcpu.rs`, `activator.rs`, `device.rs`),
//! built on the runtime list every thread needs (`common.rs`); every entry says why it is there.
//! Optional features widen a kind only for the VMs that use them ([`Confinement::extra`]:
//! VFIO passthrough adds vfio/seccomp.rs's rules to the vCPU filter).
//!
//! Where filters are installed — the line between trusted setup and guest-facing work:
//! - a vCPU thread installs its filter before its first KVM_RUN. vCPU 0 runs on the thread
//!   that built the VM (the process's main thread), which installs the vCPU filter once the VM
//!   is built; the other vCPUs' threads install theirs when they start. Everything before
//!   (parsing, opening the kernel and /dev/kvm, mapping guest RAM, loading the kernel,
//!   configuring vCPUs) is host-side setup that runs before the guest executes an
//!   instruction, so it is not filtered;
//! - the VMM event thread (`vmm-events`: console input, signals, the VM's end) is started
//!   first and does setup jobs for the main thread while the VM is built (filters, CPUID,
//!   loading the kernel, the PIT: vm.rs); it installs its filter when it is handed the
//!   running VM, before its event loop;
//! - the virtio activator thread installs its filter when it starts, before it serves any
//!   DRIVER_OK;
//! - a device worker thread calls [`apply`] with `ThreadKind::Device(..)` before it touches a
//!   queue (the devices crate cannot depend on this one: virtio_setup.rs hands it a
//!   `WorkerInit` closure). Workers are started by the activator, so they run under its
//!   filter too; the activator's list therefore includes every device's list.
//!
//! - the API thread (`vmm-api`, with `--api-socket`) installs its filter (api.rs) before it
//!   serves its first connection;
//! - the VFIO `vfio` thread (DMA mapping while the guest boots, peer-to-peer BAR mappings,
//!   teardown) installs its filter when it starts (vfio/seccomp.rs says what it may do).
//!
//! Filters stack: a thread started by a filtered thread runs under its parent's filter as well
//! as its own. Every thread of a running VM is confined; `vmm/tests/seccomp.rs` reads each
//! thread's filter count from /proc and fails on a thread it does not know.

mod activator;
mod allowlist;
mod api;
pub mod bpf;
mod common;
mod control;
mod device;
mod ioctls;
mod mode;
mod names;
mod sigsys;
mod vcpu;
mod vmm;

use seccompiler::{BpfProgram, SeccompAction};

pub use allowlist::{arg_eq, Allowlist};
pub use ioctls::{KVM_GET_REGS, KVM_RUN};
pub use mode::SeccompMode;
pub use sigsys::{violation_message, VIOLATION_EXIT_CODE};

/// The virtio device a worker thread serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Block,
    Net,
    Rng,
    Console,
    Vsock,
    Fs,
}

/// Which filter a thread runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread: event loop, console input, VM teardown.
    Vmm,
    /// A vCPU thread.
    Vcpu,
    /// A virtio device's worker thread.
    Device(DeviceKind),
    /// The virtio activator: starts device workers when drivers set DRIVER_OK.
    Activator,
    /// The VFIO thread of a VM with passthrough: DMA mapping, device resets, teardown.
    Vfio,
    /// A helper faulting guest RAM in ahead of the VFIO DMA mapping (vfio/prefault.rs).
    Prefault,
    /// The API thread: HTTP on the API socket (`--api-socket`).
    Api,
    /// The control loop (the main thread under `--api-socket`): builds and tears down VMs.
    Control,
}

impl ThreadKind {
    /// The name in violation messages and errors.
    pub const fn name(self) -> &'static str {
        match self {
            ThreadKind::Vmm => "vmm",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Device(DeviceKind::Block) => "device/block",
            ThreadKind::Device(DeviceKind::Net) => "device/net",
            ThreadKind::Device(DeviceKind::Rng) => "device/rng",
            ThreadKind::Device(DeviceKind::Console) => "device/console",
            ThreadKind::Device(DeviceKind::Vsock) => "device/vsock",
            ThreadKind::Device(DeviceKind::Fs) => "device/fs",
            ThreadKind::Activator => "virtio-activator",
            ThreadKind::Vfio => "vfio",
            ThreadKind::Prefault => "vfio-prefault",
            ThreadKind::Api => "api",
            ThreadKind::Control => "control",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("installing the SIGSYS handler: {0}")]
    Handler(std::io::Error),
    #[error("building the seccomp filter for the {kind} thread: {source}")]
    Build {
        kind: &'static str,
        source: bpf::BpfError,
    },
    #[error("installing the seccomp filter for the {kind} thread: {source}")]
    Install {
        kind: &'static str,
        source: seccompiler::Error,
    },
}

/// The syscalls a kind of thread may make.
pub fn allowlist(kind: ThreadKind) -> Allowlist {
    match kind {
        ThreadKind::Vmm => vmm::allowlist(),
        ThreadKind::Vcpu => vcpu::allowlist(),
        ThreadKind::Device(d) => device::allowlist(d),
        ThreadKind::Activator => activator::allowlist(),
        ThreadKind::Api => api::allowlist(),
        ThreadKind::Control => control::allowlist(),
        ThreadKind::Vfio => {
            let mut a = common::runtime();
            a.extend(&crate::vfio::seccomp::thread_rules());
            a
        }
        ThreadKind::Prefault => {
            let mut a = common::runtime();
            a.extend(&crate::vfio::seccomp::prefault_rules());
            a
        }
    }
}

/// Compile `kind`'s filter for `mode`; `None` when the mode installs nothing.
pub fn program(kind: ThreadKind, mode: SeccompMode) -> Result<Option<BpfProgram>, SeccompError> {
    Confinement::new(mode).program(kind)
}

/// Confine the calling thread to `kind`'s filter (nothing in `SeccompMode::Off`). Sets
/// no_new_privs, which the kernel requires of an unprivileged filter.
pub fn apply(kind: ThreadKind, mode: SeccompMode) -> Result<(), SeccompError> {
    Confinement::new(mode).apply(kind)
}

/// How a thread is confined: the mode, and the rules optional features add to its kind's
/// list when they are configured (VFIO passthrough: the vCPU-side VFIO calls of
/// vfio/seccomp.rs), so a VM without them keeps the narrow filter.
#[derive(Clone, Debug, Default)]
pub struct Confinement {
    pub mode: SeccompMode,
    pub extra: Allowlist,
}

impl Confinement {
    pub fn new(mode: SeccompMode) -> Self {
        Confinement {
            mode,
            extra: Allowlist::default(),
        }
    }

    /// Compile `kind`'s filter plus the extra rules; `None` when the mode installs nothing.
    pub fn program(&self, kind: ThreadKind) -> Result<Option<BpfProgram>, SeccompError> {
        let mismatch = match self.mode {
            SeccompMode::Off => return Ok(None),
            SeccompMode::Enforce => SeccompAction::Trap,
            SeccompMode::Log => SeccompAction::Log,
        };
        let mut rules = allowlist(kind);
        rules.extend(&self.extra);
        bpf::build(rules.into_rules(), mismatch, SeccompAction::Allow)
            .map(Some)
            .map_err(|source| SeccompError::Build {
                kind: kind.name(),
                source,
            })
    }

    /// Confine the calling thread (see [`apply`]).
    pub fn apply(&self, kind: ThreadKind) -> Result<(), SeccompError> {
        self.compile(kind)?.install()
    }

    /// Compile `kind`'s filter now (and install the SIGSYS handler), to install later with
    /// [`Compiled::install`]: building a BPF program takes about a millisecond, which must not
    /// sit between a vCPU thread's start and its first KVM_RUN.
    pub fn compile(&self, kind: ThreadKind) -> Result<Compiled, SeccompError> {
        let program = self.program(kind)?;
        if program.is_some() && self.mode == SeccompMode::Enforce {
            sigsys::install_handler().map_err(SeccompError::Handler)?;
        }
        Ok(Compiled { kind, program })
    }
}

/// A filter compiled ahead of time for one kind of thread.
#[derive(Clone, Debug)]
pub struct Compiled {
    kind: ThreadKind,
    program: Option<BpfProgram>,
}

impl Compiled {
    /// Confine the calling thread (a no-op when the mode is `false`).
    pub fn install(&self) -> Result<(), SeccompError> {
        let Some(program) = &self.program else {
            return Ok(());
        };
        sigsys::set_thread_kind(self.kind);
        seccompiler::apply_filter(program).map_err(|source| SeccompError::Install {
            kind: self.kind.name(),
            source,
        })
    }
}

#[cfg(test)]
mod tests;
