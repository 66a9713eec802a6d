//! What a vCPU run returns: accesses borrow the run buffer, nothing backend-specific escapes.

/// Why `Vcpu::run` returned.
#[derive(Debug, PartialEq, Eq)]
pub enum VmExit<'a> {
    /// `in` from a port: fill `data` before the next run.
    IoIn { port: u16, data: &'a mut [u8] },
    /// `out` to a port.
    IoOut { port: u16, data: &'a [u8] },
    /// Read of unbacked guest-physical memory: fill `data` before the next run.
    MmioRead { addr: u64, data: &'a mut [u8] },
    /// Write to unbacked guest-physical memory.
    MmioWrite { addr: u64, data: &'a [u8] },
    /// The guest halted and the in-kernel LAPIC is not handling HLT.
    Hlt,
    /// Triple fault or similar: the guest is dead.
    Shutdown,
    /// The guest asked for a reset (e.g. through the in-kernel PIT/ACPI path).
    Reset,
    /// The guest asked to power off.
    PowerOff,
    /// The run was interrupted by a signal (a kick from another thread).
    Interrupted,
    /// Entry to the guest failed; `reason` is the hardware's.
    FailEntry { reason: u64 },
    /// The hypervisor's own emulator failed.
    InternalError { suberror: u32 },
    /// Anything else, with the backend's exit number.
    Unhandled { code: u32 },
}
