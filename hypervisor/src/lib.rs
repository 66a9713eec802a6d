//! Hypervisor abstraction: traits over a VM and its vCPUs, a KVM backend and a fake backend
//! that replays scripted exits and records calls, so callers are testable without /dev/kvm.

pub mod error;
pub mod exit;
pub mod fake;
pub mod kvm;
pub mod state;
pub mod traits;
pub mod x86;

pub use error::{HypervisorError, Result};
pub use exit::VmExit;
pub use state::SavedState;
pub use traits::{Hypervisor, IoEventAddress, IrqRoute, MemoryRegion, Vcpu, VcpuX86_64, Vm};
pub use x86::*;
