//! A KVM VM.

use kvm_bindings::{
    kvm_create_device, kvm_device_type_KVM_DEV_TYPE_VFIO, kvm_irq_routing_entry, kvm_pit_config,
    kvm_userspace_memory_region, KvmIrqRouting, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
    KVM_MEM_READONLY, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::vcpu::KvmVcpu;
use crate::error::{HypervisorError, Result};
use crate::traits::{IoEventAddress, IrqRoute, MemoryRegion, VcpuX86_64, Vm};

pub struct KvmVm {
    fd: VmFd,
}

impl KvmVm {
    pub(super) fn new(fd: VmFd) -> Self {
        KvmVm { fd }
    }
}

fn region_to_kvm(r: &MemoryRegion, size: u64) -> kvm_userspace_memory_region {
    kvm_userspace_memory_region {
        slot: r.slot,
        guest_phys_addr: r.guest_phys_addr,
        memory_size: size,
        userspace_addr: r.host_addr,
        flags: if r.readonly { KVM_MEM_READONLY } else { 0 },
    }
}

fn ioevent_addr(a: IoEventAddress) -> kvm_ioctls::IoEventAddress {
    match a {
        IoEventAddress::Pio(p) => kvm_ioctls::IoEventAddress::Pio(p),
        IoEventAddress::Mmio(m) => kvm_ioctls::IoEventAddress::Mmio(m),
    }
}

fn route_to_kvm(r: &IrqRoute) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry::default();
    match *r {
        IrqRoute::Irqchip { gsi, chip, pin } => {
            e.gsi = gsi;
            e.type_ = KVM_IRQ_ROUTING_IRQCHIP;
            e.u.irqchip.irqchip = chip;
            e.u.irqchip.pin = pin;
        }
        IrqRoute::Msi { gsi, address, data } => {
            e.gsi = gsi;
            e.type_ = KVM_IRQ_ROUTING_MSI;
            e.u.msi.address_lo = address as u32;
            e.u.msi.address_hi = (address >> 32) as u32;
            e.u.msi.data = data;
        }
    }
    e
}

impl Vm for KvmVm {
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn VcpuX86_64>> {
        let fd = self
            .fd
            .create_vcpu(u64::from(id))
            .map_err(|e| HypervisorError::ioctl("KVM_CREATE_VCPU", e))?;
        Ok(Box::new(KvmVcpu::new(fd, id)))
    }

    unsafe fn set_memory_region(&self, region: MemoryRegion) -> Result<()> {
        // SAFETY: the caller guarantees the host mapping outlives the slot.
        unsafe {
            self.fd
                .set_user_memory_region(region_to_kvm(&region, region.size))
        }
        .map_err(|e| HypervisorError::ioctl("KVM_SET_USER_MEMORY_REGION", e))
    }

    fn remove_memory_region(&self, region: MemoryRegion) -> Result<()> {
        // SAFETY: a zero-sized region deletes the slot; no host memory is referenced afterwards.
        unsafe { self.fd.set_user_memory_region(region_to_kvm(&region, 0)) }
            .map_err(|e| HypervisorError::ioctl("KVM_SET_USER_MEMORY_REGION (remove)", e))
    }

    fn set_tss_address(&self, addr: u64) -> Result<()> {
        self.fd
            .set_tss_address(addr as usize)
            .map_err(|e| HypervisorError::ioctl("KVM_SET_TSS_ADDR", e))?;
        self.fd
            .set_identity_map_address(addr + 0x3000)
            .map_err(|e| HypervisorError::ioctl("KVM_SET_IDENTITY_MAP_ADDR", e))
    }

    fn create_irqchip(&self) -> Result<()> {
        self.fd
            .create_irq_chip()
            .map_err(|e| HypervisorError::ioctl("KVM_CREATE_IRQCHIP", e))
    }

    fn create_pit(&self) -> Result<()> {
        let cfg = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        self.fd
            .create_pit2(cfg)
            .map_err(|e| HypervisorError::ioctl("KVM_CREATE_PIT2", e))
    }

    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()> {
        self.fd
            .set_irq_line(gsi, level)
            .map_err(|e| HypervisorError::ioctl("KVM_IRQ_LINE", e))
    }

    fn set_gsi_routing(&self, routes: &[IrqRoute]) -> Result<()> {
        let mut table = KvmIrqRouting::new(0).map_err(|_| HypervisorError::Ioctl {
            op: "KVM_SET_GSI_ROUTING",
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        })?;
        for r in routes {
            table
                .push(route_to_kvm(r))
                .map_err(|_| HypervisorError::Ioctl {
                    op: "KVM_SET_GSI_ROUTING",
                    source: std::io::Error::from_raw_os_error(libc::E2BIG),
                })?;
        }
        self.fd
            .set_gsi_routing(&table)
            .map_err(|e| HypervisorError::ioctl("KVM_SET_GSI_ROUTING", e))
    }

    fn signal_msi(&self, address: u64, data: u32) -> Result<()> {
        let msi = kvm_bindings::kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        // KVM answers how many LAPICs took it (0: none did, e.g. masked); an error is one.
        self.fd
            .signal_msi(msi)
            .map(|_| ())
            .map_err(|e| HypervisorError::ioctl("KVM_SIGNAL_MSI", e))
    }

    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()> {
        self.fd
            .register_irqfd(fd, gsi)
            .map_err(|e| HypervisorError::ioctl("KVM_IRQFD", e))
    }

    fn register_irqfd_with_resample(
        &self,
        fd: &EventFd,
        resample: &EventFd,
        gsi: u32,
    ) -> Result<()> {
        self.fd
            .register_irqfd_with_resample(fd, resample, gsi)
            .map_err(|e| HypervisorError::ioctl("KVM_IRQFD (resample)", e))
    }

    fn unregister_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()> {
        self.fd
            .unregister_irqfd(fd, gsi)
            .map_err(|e| HypervisorError::ioctl("KVM_IRQFD (deassign)", e))
    }

    fn register_ioevent(
        &self,
        fd: &EventFd,
        addr: IoEventAddress,
        datamatch: Option<u64>,
    ) -> Result<()> {
        let a = ioevent_addr(addr);
        match datamatch {
            Some(v) => self.fd.register_ioevent(fd, &a, v),
            None => self.fd.register_ioevent(fd, &a, NoDatamatch),
        }
        .map_err(|e| HypervisorError::ioctl("KVM_IOEVENTFD", e))
    }

    fn unregister_ioevent(&self, fd: &EventFd, addr: IoEventAddress) -> Result<()> {
        self.fd
            .unregister_ioevent(fd, &ioevent_addr(addr), NoDatamatch)
            .map_err(|e| HypervisorError::ioctl("KVM_IOEVENTFD (deassign)", e))
    }

    fn create_vfio_device(&self) -> Result<vfio_ioctls::VfioDeviceFd> {
        let mut dev = kvm_create_device {
            type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
            fd: 0,
            flags: 0,
        };
        let fd = self
            .fd
            .create_device(&mut dev)
            .map_err(|e| HypervisorError::ioctl("KVM_CREATE_DEVICE (VFIO)", e))?;
        Ok(vfio_ioctls::VfioDeviceFd::new_from_kvm(fd))
    }

    fn save_state(&self) -> Result<crate::SavedState> {
        super::state::save_vm(&self.fd)
    }

    fn restore_state(&self, state: &crate::SavedState) -> Result<()> {
        super::state::restore_vm(&self.fd, state)
    }
}
