//! A fake VFIO device for tests here and in the VMM: a config space in memory, regions
//! backed by sparse byte maps, and a log of the interrupt and reset calls.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Mutex, MutexGuard};

use vmm_sys_util::eventfd::EventFd;

use super::ops::{
    HostMapping, RegionInfo, ResetDone, VfioDeviceOps, VfioIrqKind, VFIO_PCI_CONFIG_REGION,
};

/// One call the fake recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeVfioCall {
    /// `enable_irqs` with this many eventfds.
    EnableIrqs(VfioIrqKind, usize),
    DisableIrqs(VfioIrqKind),
    /// `set_intx_unmask_fd`.
    IntxUnmaskFd,
    /// `unmask_intx`.
    IntxUnmask,
    Reset,
    /// A write to a region other than config space.
    RegionWrite {
        index: u32,
        offset: u64,
        data: Vec<u8>,
    },
    /// A write to config space.
    ConfigWrite {
        offset: u64,
        data: Vec<u8>,
    },
    Mmap {
        index: u32,
        offset: u64,
        size: u64,
    },
}

#[derive(Default)]
struct State {
    config: Vec<u8>,
    /// Region contents, byte by byte (regions may be huge).
    data: BTreeMap<(u32, u64), u8>,
    calls: Vec<FakeVfioCall>,
    /// The last eventfds handed to `enable_irqs`, per kind.
    fds: HashMap<VfioIrqKind, Vec<EventFd>>,
}

/// A VFIO device that exists only in memory.
#[derive(Default)]
pub struct FakeVfioDevice {
    regions: HashMap<u32, RegionInfo>,
    irqs: HashMap<VfioIrqKind, u32>,
    resettable: bool,
    /// The driver refuses an INTx unmask eventfd (ENOTTY), as the kernel's mtty sample does.
    no_unmask_fd: bool,
    state: Mutex<State>,
}

impl FakeVfioDevice {
    /// A device with config space `config` (256 bytes, or 4096 for PCIe).
    pub fn new(config: Vec<u8>) -> Self {
        let mut regions = HashMap::new();
        let cfg = RegionInfo {
            size: config.len() as u64,
            readable: true,
            writable: true,
            ..Default::default()
        };
        regions.insert(VFIO_PCI_CONFIG_REGION, cfg);
        FakeVfioDevice {
            regions,
            state: Mutex::new(State {
                config,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn with_region(mut self, index: u32, info: RegionInfo) -> Self {
        self.regions.insert(index, info);
        self
    }

    pub fn with_irqs(mut self, kind: VfioIrqKind, count: u32) -> Self {
        self.irqs.insert(kind, count);
        self
    }

    pub fn resettable(mut self) -> Self {
        self.resettable = true;
        self
    }

    /// Refuse an INTx unmask eventfd with ENOTTY (only an unmask without data works).
    pub fn without_unmask_fd(mut self) -> Self {
        self.no_unmask_fd = true;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The config space bytes now.
    pub fn config_snapshot(&self) -> Vec<u8> {
        self.lock().config.clone()
    }

    /// Sets config bytes from the device side.
    pub fn set_config(&self, offset: usize, bytes: &[u8]) {
        let mut s = self.lock();
        if let Some(dst) = s.config.get_mut(offset..offset + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }

    /// Every call so far, forgetting them.
    pub fn take_calls(&self) -> Vec<FakeVfioCall> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Signals vector `vector` of `kind` the way the hardware would (through the eventfd
    /// VFIO was given); false when none was given.
    pub fn fire(&self, kind: VfioIrqKind, vector: usize) -> bool {
        let s = self.lock();
        match s.fds.get(&kind).and_then(|f| f.get(vector)) {
            Some(fd) => fd.write(1).is_ok(),
            None => false,
        }
    }

    fn check(&self, index: u32, offset: u64, len: usize) -> io::Result<()> {
        let size = self.regions.get(&index).map_or(0, |r| r.size);
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(()),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
}

impl VfioDeviceOps for FakeVfioDevice {
    fn region_info(&self, index: u32) -> Option<RegionInfo> {
        self.regions.get(&index).cloned()
    }

    fn read_region(&self, index: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        self.check(index, offset, data.len())?;
        let s = self.lock();
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *b = if index == VFIO_PCI_CONFIG_REGION {
                s.config[at as usize]
            } else {
                s.data.get(&(index, at)).copied().unwrap_or(0)
            };
        }
        Ok(())
    }

    fn write_region(&self, index: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check(index, offset, data.len())?;
        let mut s = self.lock();
        for (i, b) in data.iter().enumerate() {
            let at = offset + i as u64;
            if index == VFIO_PCI_CONFIG_REGION {
                s.config[at as usize] = *b;
            } else {
                s.data.insert((index, at), *b);
            }
        }
        let data = data.to_vec();
        s.calls.push(if index == VFIO_PCI_CONFIG_REGION {
            FakeVfioCall::ConfigWrite { offset, data }
        } else {
            FakeVfioCall::RegionWrite {
                index,
                offset,
                data,
            }
        });
        Ok(())
    }

    fn mmap_region(&self, index: u32, offset: u64, size: u64) -> io::Result<HostMapping> {
        self.check(index, offset, size as usize)?;
        self.lock().calls.push(FakeVfioCall::Mmap {
            index,
            offset,
            size,
        });
        HostMapping::anonymous(size as usize)
    }

    fn irq_count(&self, kind: VfioIrqKind) -> u32 {
        self.irqs.get(&kind).copied().unwrap_or(0)
    }

    fn enable_irqs(&self, kind: VfioIrqKind, fds: &[&EventFd]) -> io::Result<()> {
        if fds.is_empty() || fds.len() > self.irq_count(kind) as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut s = self.lock();
        s.calls.push(FakeVfioCall::EnableIrqs(kind, fds.len()));
        let copies = fds.iter().filter_map(|f| f.try_clone().ok()).collect();
        s.fds.insert(kind, copies);
        Ok(())
    }

    fn disable_irqs(&self, kind: VfioIrqKind) -> io::Result<()> {
        let mut s = self.lock();
        s.calls.push(FakeVfioCall::DisableIrqs(kind));
        s.fds.remove(&kind);
        Ok(())
    }

    fn set_intx_unmask_fd(&self, _fd: &EventFd) -> io::Result<()> {
        if self.irq_count(VfioIrqKind::Intx) == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if self.no_unmask_fd {
            return Err(io::Error::from_raw_os_error(libc::ENOTTY));
        }
        self.lock().calls.push(FakeVfioCall::IntxUnmaskFd);
        Ok(())
    }

    fn unmask_intx(&self) -> io::Result<()> {
        if self.irq_count(VfioIrqKind::Intx) == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.lock().calls.push(FakeVfioCall::IntxUnmask);
        Ok(())
    }

    fn reset(&self) -> io::Result<ResetDone> {
        if self.resettable {
            self.lock().calls.push(FakeVfioCall::Reset);
            Ok(ResetDone::Function)
        } else {
            Ok(ResetDone::Unavailable(
                "the fake device has no reset".into(),
            ))
        }
    }
}
