//! The VFIO calls the device model makes, as a trait: the VMM implements it over a real VFIO
//! device file; [`super::FakeVfioDevice`] implements it for tests. Nothing here knows KVM.

use std::io;

use vmm_sys_util::eventfd::EventFd;

/// VFIO region index of the expansion ROM (BARs 0..=5 are regions 0..=5).
pub const VFIO_PCI_ROM_REGION: u32 = 6;
/// VFIO region index of the configuration space.
pub const VFIO_PCI_CONFIG_REGION: u32 = 7;

/// What VFIO says about one region (VFIO_DEVICE_GET_REGION_INFO).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    pub size: u64,
    pub readable: bool,
    pub writable: bool,
    /// The region (or the parts in `sparse_areas`) can be mmapped.
    pub mmappable: bool,
    /// `(offset, size)` of the only parts that may be mmapped, when the kernel restricts mmap
    /// (VFIO_REGION_INFO_CAP_SPARSE_MMAP, e.g. around an MSI-X table on older kernels).
    pub sparse_areas: Option<Vec<(u64, u64)>>,
}

/// VFIO interrupt indexes of a PCI device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VfioIrqKind {
    Intx,
    Msi,
    Msix,
}

impl VfioIrqKind {
    /// The VFIO_PCI_*_IRQ_INDEX value.
    pub fn index(self) -> u32 {
        match self {
            VfioIrqKind::Intx => 0,
            VfioIrqKind::Msi => 1,
            VfioIrqKind::Msix => 2,
        }
    }
}

/// The VFIO device operations the PCI device model needs.
pub trait VfioDeviceOps: Send + Sync {
    /// Region `index`, or `None` when the device does not have it.
    fn region_info(&self, index: u32) -> Option<RegionInfo>;
    /// Read `data.len()` bytes at `offset` of region `index`.
    fn read_region(&self, index: u32, offset: u64, data: &mut [u8]) -> io::Result<()>;
    /// Write `data` at `offset` of region `index`.
    fn write_region(&self, index: u32, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Map `size` bytes at `offset` of region `index` into this process.
    fn mmap_region(&self, index: u32, offset: u64, size: u64) -> io::Result<HostMapping>;
    /// How many vectors interrupt index `kind` has (0: none).
    fn irq_count(&self, kind: VfioIrqKind) -> u32;
    /// VFIO_DEVICE_SET_IRQS: vector `i` of `kind` signals `fds[i]` from now on.
    fn enable_irqs(&self, kind: VfioIrqKind, fds: &[&EventFd]) -> io::Result<()>;
    /// VFIO_DEVICE_SET_IRQS with no vectors: stop signalling `kind`.
    fn disable_irqs(&self, kind: VfioIrqKind) -> io::Result<()>;
    /// VFIO_DEVICE_SET_IRQS (INTx, unmask action): a write to `fd` unmasks the INTx line VFIO
    /// masked when it fired (the hypervisor's resample eventfd: the guest's EOI).
    fn set_intx_unmask_fd(&self, fd: &EventFd) -> io::Result<()>;
    /// VFIO_DEVICE_SET_IRQS (INTx, unmask action, no data): unmask the INTx line now (for a
    /// driver that takes no unmask eventfd, such as some mediated devices').
    fn unmask_intx(&self) -> io::Result<()>;
    /// Reset the device the way it allows (a function reset, else a bus reset when every
    /// function on the bus is this VM's); [`ResetDone::Unavailable`] says why neither was
    /// possible.
    fn reset(&self) -> io::Result<ResetDone>;
}

/// What [`VfioDeviceOps::reset`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetDone {
    /// VFIO_DEVICE_RESET: FLR or the kernel's other per-function methods.
    Function,
    /// VFIO_DEVICE_PCI_HOT_RESET: the bus or slot, with every function on it.
    Bus,
    /// Not reset, and why (for the warning, which names the device).
    Unavailable(String),
}

/// A region of a VFIO device (or, in tests, anonymous memory) mapped into this process;
/// unmapped when dropped. Whoever hands its address to the hypervisor must drop the guest
/// mapping first.
#[derive(Debug)]
pub struct HostMapping {
    addr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; the pointer is only used
// as an address (handed to the hypervisor or unmapped), never dereferenced here.
unsafe impl Send for HostMapping {}
// SAFETY: as above; no method mutates through the pointer.
unsafe impl Sync for HostMapping {}

impl HostMapping {
    /// Takes ownership of a mapping made with mmap.
    ///
    /// # Safety
    /// `addr..addr + len` must be a live mapping that nothing else unmaps.
    pub unsafe fn from_raw(addr: *mut u8, len: usize) -> Self {
        HostMapping { addr, len }
    }

    /// `len` bytes of anonymous, lazily allocated shared memory (for fakes and tests).
    pub fn anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; the kernel picks the address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping was just created and is owned by nothing else.
        Ok(unsafe { Self::from_raw(addr.cast(), len) })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.addr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for HostMapping {
    fn drop(&mut self) {
        // SAFETY: we own the mapping (see from_raw) and nobody uses it after drop.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// What a device's interrupts and DMA wait on before the guest may use them. The VMM resets
/// the device and DMA-maps guest RAM on a helper thread while the guest boots; the device
/// model asks here before the guest first touches the device and before its first
/// bus-master enable (a device cannot DMA before its driver sets Bus Master Enable).
pub trait DeviceGate: Send + Sync {
    /// Blocks until the device may be accessed (its start-of-VM reset is done).
    fn wait_ready(&self) -> Result<(), String>;
    /// Blocks until guest RAM is DMA-mapped.
    fn wait_dma_ready(&self) -> Result<(), String>;
    /// Whether guest RAM is DMA-mapped, without waiting: `None` while the mapping runs. (The
    /// default waits, for gates that are never pending for long.)
    fn dma_ready_now(&self) -> Option<Result<(), String>> {
        Some(self.wait_dma_ready())
    }
}

/// A gate that is always open.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenGate;

impl DeviceGate for OpenGate {
    fn wait_ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn wait_dma_ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn dma_ready_now(&self) -> Option<Result<(), String>> {
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_mappings_are_usable_and_unmapped_on_drop() {
        let m = HostMapping::anonymous(0x2000).unwrap();
        assert_eq!(m.len(), 0x2000);
        assert!(!m.is_empty());
        // SAFETY: the mapping is live, writable and 0x2000 bytes long.
        unsafe { m.as_ptr().add(0x1fff).write_volatile(7) };
        assert_eq!(VfioIrqKind::Msix.index(), 2);
        assert!(OpenGate.wait_ready().is_ok() && OpenGate.wait_dma_ready().is_ok());
    }
}
