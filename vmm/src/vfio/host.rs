//! Real VFIO through vfio-ioctls: one IOMMU domain per VM registered with the KVM VFIO
//! device — a legacy container with the devices' groups, or an IOAS of an iommufd with the
//! devices' cdevs bound to it (see [`preflight::Backend`](super::preflight::Backend)) — and
//! one [`HostDevice`] per `--device`, implementing [`VfioDeviceOps`] for the device model and
//! [`DmaMapper`] for the domain.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use hypervisor::Vm;
use iommufd_ioctls::IommuFd;
use pci::vfio::{
    HostMapping, RegionInfo, ResetDone, VfioDeviceOps, VfioIrqKind, VFIO_PCI_CONFIG_REGION,
};
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_PCI_INTX_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioIommufd, VfioOps, VfioRegionInfoCap};
use vmm_sys_util::eventfd::EventFd;

use super::dma::DmaMapper;
use super::preflight::Backend;
use super::reset::{GroupFds, VFIO_DEVICE_FLAGS_RESET};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("creating the KVM VFIO device: {0}")]
    KvmDevice(hypervisor::HypervisorError),
    #[error("opening the VFIO container /dev/vfio/vfio: {0}")]
    Container(vfio_ioctls::VfioError),
    #[error("opening /dev/iommu: {0}")]
    Iommufd(String),
    #[error(
        "{name}: the VM's devices use the {have} and this one asks for the {want}: one VM's \
         devices share one VFIO backend"
    )]
    BackendMismatch {
        name: String,
        have: &'static str,
        want: &'static str,
    },
    #[error("opening {path} with VFIO: {source}")]
    Device {
        path: String,
        source: vfio_ioctls::VfioError,
    },
}

fn io_err(e: vfio_ioctls::VfioError) -> io::Error {
    io::Error::other(e.to_string())
}

/// An IO address space in an iommufd of the VM's own, and vfio-ioctls' handle on it. The
/// IOAS and its mappings go when the iommufd is closed, after the last holder (the
/// [`VfioHost`] handles and every device opened through them) lets go: no ioctl at the end,
/// so whichever thread drops the last handle (a vCPU thread's filter allows no IOMMU_DESTROY)
/// only closes a file.
pub struct Ioas {
    fd: Arc<IommuFd>,
    id: u32,
    ops: Arc<VfioIommufd>,
}

impl Ioas {
    fn open(vm: &dyn Vm) -> Result<Self, HostError> {
        let fd = Arc::new(IommuFd::new().map_err(|e| HostError::Iommufd(e.to_string()))?);
        let mut alloc = iommufd_bindings::iommufd::iommu_ioas_alloc {
            size: std::mem::size_of::<iommufd_bindings::iommufd::iommu_ioas_alloc>() as u32,
            flags: 0,
            out_ioas_id: 0,
        };
        fd.alloc_iommu_ioas(&mut alloc)
            .map_err(|e| HostError::Iommufd(format!("IOMMU_IOAS_ALLOC: {e}")))?;
        let id = alloc.out_ioas_id;
        let kvm_dev = vm.create_vfio_device().map_err(HostError::KvmDevice)?;
        let ops = VfioIommufd::new(fd.clone(), Some(id), Some(Arc::new(kvm_dev)))
            .map_err(|e| HostError::Iommufd(e.to_string()))?;
        Ok(Ioas {
            fd,
            id,
            ops: Arc::new(ops),
        })
    }
}

#[derive(Clone)]
enum Domain {
    Container(Arc<VfioContainer>),
    Iommufd(Arc<Ioas>),
}

/// The VM's VFIO IOMMU domain (a clone is another handle on the same one).
#[derive(Clone)]
pub struct VfioHost {
    domain: Domain,
    /// The container's groups' descriptors, for bus resets (see reset.rs).
    groups: Arc<GroupFds>,
}

impl VfioHost {
    /// The KVM VFIO device and a `backend` domain registered with it.
    pub fn open(vm: &dyn Vm, backend: Backend) -> Result<Self, HostError> {
        let domain = match backend {
            Backend::Container => {
                let kvm_dev = vm.create_vfio_device().map_err(HostError::KvmDevice)?;
                let container =
                    VfioContainer::new(Some(Arc::new(kvm_dev))).map_err(HostError::Container)?;
                Domain::Container(Arc::new(container))
            }
            Backend::Iommufd => Domain::Iommufd(Arc::new(Ioas::open(vm)?)),
        };
        Ok(VfioHost {
            domain,
            groups: Arc::default(),
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.domain {
            Domain::Container(_) => Backend::Container,
            Domain::Iommufd(_) => Backend::Iommufd,
        }
    }

    /// Opens the device at sysfs `path`: its group joins the container on first use, or its
    /// cdev is bound to the iommufd and attached to the IOAS. `backend` is what preflight
    /// chose for it: a device added later must use the VM's.
    pub fn open_device(&self, path: &Path, backend: Backend) -> Result<HostDevice, HostError> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        if backend != self.backend() {
            return Err(HostError::BackendMismatch {
                name,
                have: self.backend().name(),
                want: backend.name(),
            });
        }
        let (ops, ioas): (Arc<dyn VfioOps>, _) = match &self.domain {
            Domain::Container(c) => (c.clone(), None),
            Domain::Iommufd(i) => (i.ops.clone(), Some(i.clone())),
        };
        let dev = VfioDevice::new(path, ops).map_err(|source| HostError::Device {
            path: path.display().to_string(),
            source,
        })?;
        // The group (for a bus reset, when the device has no reset of its own); a cdev's bus
        // reset needs none (the kernel checks the other functions are in this iommufd).
        let group = if ioas.is_some() {
            None
        } else {
            std::fs::read_link(path.join("iommu_group"))
                .ok()
                .and_then(|g| g.file_name()?.to_str()?.parse::<u32>().ok())
        };
        let group = group.filter(|&g| match self.groups.acquire(g) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("vfio: {name}: group {g}'s descriptor not found ({e}); no bus reset");
                false
            }
        });
        Ok(HostDevice::new(dev, name, group, self.groups.clone(), ioas))
    }

    /// The IOVA ranges the host IOMMU lets this domain map (None: the kernel does not say).
    /// Ask after a device is open (it narrows the ranges to what its IOMMU allows).
    pub fn usable_iova(&self) -> io::Result<Option<Vec<(u64, u64)>>> {
        match &self.domain {
            Domain::Container(c) => super::iova::usable_ranges(c.as_raw_fd()),
            Domain::Iommufd(i) => super::iova::ioas_ranges(i.fd.as_raw_fd(), i.id).map(Some),
        }
    }

    /// The domain as a DMA mapper.
    pub fn dma(&self) -> Arc<dyn DmaMapper> {
        match &self.domain {
            Domain::Container(c) => Arc::new(ContainerDma(c.clone())),
            Domain::Iommufd(i) => Arc::new(IoasDma(i.clone())),
        }
    }
}

/// DMA mappings in the container's IOMMU domain.
pub struct ContainerDma(Arc<VfioContainer>);

impl DmaMapper for ContainerDma {
    unsafe fn map(&self, iova: u64, size: u64, host: *mut u8) -> io::Result<()> {
        // SAFETY: the caller keeps host..host+size mapped until unmap.
        unsafe { self.0.vfio_dma_map(iova, size as usize, host) }.map_err(io_err)
    }

    fn unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        self.0.vfio_dma_unmap(iova, size as usize).map_err(io_err)
    }
}

/// DMA mappings in the VM's IOAS (IOMMU_IOAS_MAP at a fixed IOVA, IOMMU_IOAS_UNMAP).
pub struct IoasDma(Arc<Ioas>);

impl DmaMapper for IoasDma {
    unsafe fn map(&self, iova: u64, size: u64, host: *mut u8) -> io::Result<()> {
        // SAFETY: the caller keeps host..host+size mapped until unmap.
        unsafe { self.0.ops.vfio_dma_map(iova, size as usize, host) }.map_err(io_err)
    }

    fn unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        self.0
            .ops
            .vfio_dma_unmap(iova, size as usize)
            .map_err(io_err)
    }
}

/// An open VFIO device. [`HostDevice::close`] releases it (from the thread allowed to make
/// the release's ioctls); later calls fail with EBADF.
pub struct HostDevice {
    dev: RwLock<Option<VfioDevice>>,
    regions: Vec<Option<(RegionInfo, u64)>>,
    /// Its sysfs name (`0000:41:00.0`), for messages.
    name: String,
    /// VFIO says VFIO_DEVICE_RESET works (vfio_device_info.flags).
    reset_works: bool,
    /// Its IOMMU group, referenced in `groups` while the device is open.
    group: Option<u32>,
    groups: Arc<GroupFds>,
    /// The IOAS it is attached to (iommufd): kept until the device is dropped, so the IOAS
    /// outlives it. Declared after `dev`, so dropped after it.
    _ioas: Option<Arc<Ioas>>,
}

fn region_info(dev: &VfioDevice, index: u32) -> Option<(RegionInfo, u64)> {
    let size = dev.get_region_size(index);
    let flags = dev.get_region_flags(index);
    if size == 0 || flags == 0 {
        return None;
    }
    let sparse = dev
        .get_region_caps(index)
        .into_iter()
        .find_map(|c| match c {
            VfioRegionInfoCap::SparseMmap(s) => {
                Some(s.areas.iter().map(|a| (a.offset, a.size)).collect())
            }
            _ => None,
        });
    let info = RegionInfo {
        size,
        readable: flags & VFIO_REGION_INFO_FLAG_READ != 0,
        writable: flags & VFIO_REGION_INFO_FLAG_WRITE != 0,
        mmappable: flags & VFIO_REGION_INFO_FLAG_MMAP != 0,
        sparse_areas: sparse,
    };
    Some((info, dev.get_region_offset(index)))
}

impl HostDevice {
    fn new(
        dev: VfioDevice,
        name: String,
        group: Option<u32>,
        groups: Arc<GroupFds>,
        ioas: Option<Arc<Ioas>>,
    ) -> Self {
        let regions = (0..=VFIO_PCI_CONFIG_REGION)
            .map(|i| region_info(&dev, i))
            .collect();
        let reset_works = super::reset::device_flags(dev.as_raw_fd())
            .is_ok_and(|f| f & VFIO_DEVICE_FLAGS_RESET != 0);
        HostDevice {
            dev: RwLock::new(Some(dev)),
            regions,
            name,
            reset_works,
            group,
            groups,
            _ioas: ioas,
        }
    }

    /// The device's sysfs name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn dev(&self) -> RwLockReadGuard<'_, Option<VfioDevice>> {
        self.dev.read().unwrap_or_else(|e| e.into_inner())
    }

    fn fd(&self) -> io::Result<RawFd> {
        self.dev()
            .as_ref()
            .map(|d| d.as_raw_fd())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// The file offset of `len` bytes at `offset` in region `index`, checked.
    fn at(&self, index: u32, offset: u64, len: u64) -> io::Result<u64> {
        let (info, base) = self
            .regions
            .get(index as usize)
            .cloned()
            .flatten()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        match offset.checked_add(len) {
            Some(end) if end <= info.size => Ok(base + offset),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    /// One pread/pwrite (`op`, given the device fd and the file offset) of `len` bytes at
    /// `offset` in region `index`, with the device held open; a short transfer is `short`.
    fn transfer(
        &self,
        index: u32,
        offset: u64,
        len: usize,
        short: io::ErrorKind,
        op: impl FnOnce(RawFd, i64) -> isize,
    ) -> io::Result<()> {
        let at = self.at(index, offset, len as u64)?;
        let guard = self.dev();
        let fd = guard
            .as_ref()
            .map(|d| d.as_raw_fd())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        match op(fd, at as i64) {
            n if n < 0 => Err(io::Error::last_os_error()),
            n if n as usize != len => Err(io::Error::from(short)),
            _ => Ok(()),
        }
    }

    /// Whether [`close`](Self::close) ran (the device was removed from the VM).
    pub fn is_closed(&self) -> bool {
        self.dev.read().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// Releases the device (its group leaves the container and the KVM device).
    pub fn close(&self) {
        let dev = self.dev.write().unwrap_or_else(|e| e.into_inner()).take();
        if dev.is_some() {
            drop(dev);
            // After vfio-ioctls let the group go: the last reference closes the duplicate.
            if let Some(g) = self.group {
                self.groups.release(g);
            }
        }
    }
}

impl Drop for HostDevice {
    fn drop(&mut self) {
        self.close();
    }
}

/// VFIO_DEVICE_SET_IRQS, INTx's unmask action: with `fd`, an eventfd that unmasks the line
/// whenever it is written; without, unmask it now. Made here rather than through vfio-ioctls,
/// which drops the errno: a driver that takes no unmask eventfd says so with ENOTTY (the
/// kernel's mtty sample), and the caller falls back on that.
fn intx_unmask(device: RawFd, fd: Option<RawFd>) -> io::Result<()> {
    // struct vfio_irq_set { argsz, flags, index, start, count, data[] }: one u32 fd of data.
    let mut set = [0u32; 6];
    let len = if fd.is_some() { 6 } else { 5 };
    set[0] = (len * std::mem::size_of::<u32>()) as u32;
    set[1] = VFIO_IRQ_SET_ACTION_UNMASK
        | match fd {
            Some(_) => VFIO_IRQ_SET_DATA_EVENTFD,
            None => VFIO_IRQ_SET_DATA_NONE,
        };
    set[2] = VFIO_PCI_INTX_IRQ_INDEX;
    set[4] = 1;
    set[5] = fd.map_or(0, |f| f as u32);
    // SAFETY: the kernel reads argsz bytes of `set`, which is at least that long.
    if unsafe {
        libc::ioctl(
            device,
            super::seccomp::VFIO_DEVICE_SET_IRQS as _,
            set.as_ptr(),
        )
    } == 0
    {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl VfioDeviceOps for HostDevice {
    fn region_info(&self, index: u32) -> Option<RegionInfo> {
        self.regions
            .get(index as usize)
            .cloned()
            .flatten()
            .map(|r| r.0)
    }

    fn read_region(&self, index: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let len = data.len();
        self.transfer(
            index,
            offset,
            len,
            io::ErrorKind::UnexpectedEof,
            |fd, at| {
                // SAFETY: pread writes at most len bytes into data; fd stays open (guard held).
                unsafe { libc::pread64(fd, data.as_mut_ptr().cast(), len, at) }
            },
        )
    }

    fn write_region(&self, index: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.transfer(
            index,
            offset,
            data.len(),
            io::ErrorKind::WriteZero,
            |fd, at| {
                // SAFETY: pwrite reads data.len() bytes from data; fd stays open (guard held).
                unsafe { libc::pwrite64(fd, data.as_ptr().cast(), data.len(), at) }
            },
        )
    }

    fn mmap_region(&self, index: u32, offset: u64, size: u64) -> io::Result<HostMapping> {
        let at = self.at(index, offset, size)?;
        let fd = self.fd()?;
        let writable = self.region_info(index).is_some_and(|r| r.writable);
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // Aligned like the BAR, so kernels with huge PFN mappings can use 2 MiB / 1 GiB pages.
        let addr = super::aligned_mmap::mmap_aligned(fd, at, size, prot, offset)?;
        // SAFETY: the mapping was just created and is owned by nothing else.
        Ok(unsafe { HostMapping::from_raw(addr, size as usize) })
    }

    fn irq_count(&self, kind: VfioIrqKind) -> u32 {
        self.dev()
            .as_ref()
            .and_then(|d| d.get_irq_info(kind.index()).map(|i| i.count))
            .unwrap_or(0)
    }

    fn enable_irqs(&self, kind: VfioIrqKind, fds: &[&EventFd]) -> io::Result<()> {
        let guard = self.dev();
        let dev = guard
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        dev.enable_irq(kind.index(), fds.to_vec()).map_err(io_err)
    }

    fn disable_irqs(&self, kind: VfioIrqKind) -> io::Result<()> {
        let guard = self.dev();
        let dev = guard
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        dev.disable_irq(kind.index()).map_err(io_err)
    }

    fn set_intx_unmask_fd(&self, fd: &EventFd) -> io::Result<()> {
        let guard = self.dev();
        let dev = guard
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        intx_unmask(dev.as_raw_fd(), Some(fd.as_raw_fd()))
    }

    fn unmask_intx(&self) -> io::Result<()> {
        let guard = self.dev();
        let dev = guard
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        intx_unmask(dev.as_raw_fd(), None)
    }

    fn reset(&self) -> io::Result<ResetDone> {
        let guard = self.dev();
        let fd = guard
            .as_ref()
            .map(|d| d.as_raw_fd())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        super::reset::reset(fd, self.reset_works, &self.groups)
    }
}
