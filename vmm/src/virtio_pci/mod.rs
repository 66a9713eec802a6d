//! The virtio-pci modern transport (virtio 1.2 section 4.1): a PCI function whose BAR 0 holds
//! the common configuration, ISR, device configuration and notification areas plus the MSI-X
//! table. Queue notifications arrive through KVM ioeventfds, interrupts leave through MSI-X
//! vectors on irqfds, and the device's work runs on its own worker thread: a vCPU only ever
//! touches registers here.

pub mod activator;
pub mod caps;
pub mod common;
pub mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use devices::virtio::{
    ActivateContext, ActivatedQueue, QueuePosition, VirtioDevice, VirtioInterrupt,
    VirtioInterruptType, WorkerInit,
};
use hypervisor::{IoEventAddress, Vm};
use pci::{
    BarConfig, BarInfo, BarKind, ConfigWriteResult, MsiInterruptGroup, Msix, MsixParams,
    PciConfiguration, PciDevice, PciHeader,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::interrupts::KvmMsiGroup;
use activator::Activator;
use caps::*;
use common::{CommonConfig, StatusChange, NO_VECTOR, STATUS_DRIVER_OK, STATUS_NEEDS_RESET};
use state::{SavedQueue, VirtioPciState, CONFIG_REGS};

/// Bytes of the device configuration space a snapshot keeps to compare (every device's
/// config here is shorter).
const SAVED_DEVICE_CONFIG: usize = 64;

const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
const VIRTIO_PCI_SUBSYSTEM_ID: u16 = 0x40;

#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    #[error("declaring BAR 0: {0}")]
    Bar(#[from] pci::BarError),
    #[error("adding a virtio capability: {0}")]
    Capability(#[from] pci::CapabilityError),
    #[error("adding MSI-X: {0}")]
    Msix(#[from] pci::MsixError),
    #[error("creating a queue eventfd: {0}")]
    EventFd(std::io::Error),
}

/// PCI class code for a virtio device type.
fn class_code(device_type: u32) -> u32 {
    match device_type {
        1 => 0x02_0000, // network controller
        2 => 0x01_8000, // mass storage, other
        3 => 0x07_8000, // simple communication controller, other
        _ => 0xff_0000, // unassigned class
    }
}

/// Maps a device's interrupts to the MSI-X vectors the driver chose.
struct MsixInterrupt {
    group: Arc<KvmMsiGroup>,
    queue_vectors: Vec<u16>,
    config_vector: u16,
}

impl VirtioInterrupt for MsixInterrupt {
    fn trigger(&self, kind: VirtioInterruptType) -> std::io::Result<()> {
        let vector = match kind {
            VirtioInterruptType::Config => self.config_vector,
            VirtioInterruptType::Queue(i) => {
                *self.queue_vectors.get(usize::from(i)).unwrap_or(&NO_VECTOR)
            }
        };
        if vector == NO_VECTOR {
            return Ok(());
        }
        self.group.trigger(vector)
    }
}

/// What a transport is built from.
pub struct VirtioPciParams {
    pub device: Box<dyn VirtioDevice>,
    /// BAR 0 as placed by the PCI allocator (64-bit, [`BAR_SIZE`]).
    pub bar: BarConfig,
    pub msi: Arc<KvmMsiGroup>,
    pub mem: GuestMemoryMmap,
    pub vm: Arc<dyn Vm>,
    pub activator: Arc<Activator>,
    pub worker_init: Option<WorkerInit>,
}

/// The BAR request for a virtio-pci function.
pub fn bar_request() -> pci::BarRequest {
    pci::BarRequest {
        index: BAR_INDEX,
        size: BAR_SIZE,
        kind: BarKind::Mem64,
        prefetchable: false,
    }
}

/// Number of MSI-X vectors: one per queue plus the config vector.
pub fn msix_vectors(device: &dyn VirtioDevice) -> u16 {
    device.queue_max_sizes().len() as u16 + 1
}

pub struct VirtioPciDevice {
    config: PciConfiguration,
    msix: Msix,
    common: CommonConfig,
    device: Arc<Mutex<Box<dyn VirtioDevice>>>,
    /// One per queue; shared with the activation job, which clones them on the VMM thread.
    notifiers: Arc<Vec<EventFd>>,
    msi: Arc<KvmMsiGroup>,
    mem: GuestMemoryMmap,
    vm: Arc<dyn Vm>,
    activator: Arc<Activator>,
    worker_init: Option<WorkerInit>,
    /// Set by the VMM thread when activation failed: the status reads NEEDS_RESET.
    broken: Arc<AtomicBool>,
    /// ioeventfds registered at activation, removed on reset.
    ioevents: Arc<Mutex<Vec<(IoEventAddress, EventFd)>>>,
    /// Stopped by [`VirtioPciDevice::save`] and not activated again yet.
    paused: bool,
}

impl VirtioPciDevice {
    pub fn new(p: VirtioPciParams) -> Result<Self, VirtioPciError> {
        let device_type = p.device.device_type();
        let queue_sizes = p.device.queue_max_sizes().to_vec();
        let mut config = PciConfiguration::new(&PciHeader {
            vendor_id: VIRTIO_PCI_VENDOR_ID,
            device_id: VIRTIO_PCI_DEVICE_ID_BASE + device_type as u16,
            class_code: class_code(device_type),
            revision_id: 1,
            subsystem_vendor_id: VIRTIO_PCI_VENDOR_ID,
            subsystem_id: VIRTIO_PCI_SUBSYSTEM_ID,
            multi_function: false,
            interrupt_pin: 0,
        });
        config.add_bar(&p.bar)?;
        for cap in caps::all(queue_sizes.len()) {
            config.add_capability(&cap)?;
        }
        let vectors = queue_sizes.len() as u16 + 1;
        let group: Arc<dyn MsiInterruptGroup> = p.msi.clone();
        let msix = Msix::new(
            &mut config,
            MsixParams {
                vectors,
                table_bar: BAR_INDEX,
                table_offset: MSIX_TABLE_OFFSET,
                pba_bar: BAR_INDEX,
                pba_offset: MSIX_PBA_OFFSET,
            },
            group,
        )?;
        let notifiers = queue_sizes
            .iter()
            .map(|_| EventFd::new(libc::EFD_NONBLOCK))
            .collect::<Result<Vec<_>, _>>()
            .map_err(VirtioPciError::EventFd)?;
        Ok(VirtioPciDevice {
            config,
            msix,
            common: CommonConfig::new(p.device.features(), &queue_sizes),
            device: Arc::new(Mutex::new(p.device)),
            notifiers: Arc::new(notifiers),
            msi: p.msi,
            mem: p.mem,
            vm: p.vm,
            activator: p.activator,
            worker_init: p.worker_init,
            broken: Arc::new(AtomicBool::new(false)),
            ioevents: Arc::new(Mutex::new(Vec::new())),
            paused: false,
        })
    }

    fn lock_device(&self) -> std::sync::MutexGuard<'_, Box<dyn VirtioDevice>> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queues the driver enabled, as virtio-queue queues (index, queue), each at its
    /// place in `positions` (a restored or resumed device) or at the start.
    fn enabled_queues(&self, positions: &[QueuePosition]) -> Vec<(u16, Queue)> {
        let mut out = Vec::new();
        for (i, q) in self.common.queues.iter().enumerate() {
            if !q.enabled {
                continue;
            }
            let Ok(mut queue) = Queue::new(q.max_size) else {
                continue;
            };
            queue.set_size(q.size);
            queue.set_desc_table_address(Some(q.desc as u32), Some((q.desc >> 32) as u32));
            queue.set_avail_ring_address(Some(q.driver as u32), Some((q.driver >> 32) as u32));
            queue.set_used_ring_address(Some(q.device as u32), Some((q.device >> 32) as u32));
            queue.set_ready(true);
            if let Some(p) = positions.iter().find(|p| usize::from(p.index) == i) {
                queue.set_next_avail(p.next_avail);
                queue.set_next_used(p.next_used);
            }
            out.push((i as u16, queue));
        }
        out
    }

    /// DRIVER_OK: hand the activation to the VMM thread. Everything that needs a syscall
    /// beyond a lock or an eventfd write (cloning fds, ioeventfds, the worker thread) happens
    /// there, so the vCPU threads' seccomp filter stays narrow.
    fn activate(&mut self) {
        self.activate_at(&[], true)
    }

    /// Activation with the queues at `positions`; `register`: add the queues' ioeventfds
    /// (a device resumed after a snapshot still has them).
    fn activate_at(&mut self, positions: &[QueuePosition], register: bool) {
        let queues = self.enabled_queues(positions);
        log::debug!(
            "virtio-pci: DRIVER_OK, features {:#x}, queues {:?}, BAR0 {:x?}",
            self.common.driver_features,
            self.common.queues,
            self.config.bar_addr(BAR_INDEX)
        );
        let interrupt = Arc::new(MsixInterrupt {
            group: self.msi.clone(),
            queue_vectors: self.common.queues.iter().map(|q| q.vector).collect(),
            config_vector: self.common.config_vector,
        });
        let notify_base = register
            .then(|| self.config.bar_addr(BAR_INDEX).map(|a| a + NOTIFY_OFFSET))
            .flatten();
        let mem = self.mem.clone();
        let worker_init = self.worker_init.clone();
        let notifiers = self.notifiers.clone();
        let (device, vm, broken, registered) = (
            self.device.clone(),
            self.vm.clone(),
            self.broken.clone(),
            self.ioevents.clone(),
        );
        self.activator.queue(Box::new(move || {
            let mut activated = Vec::new();
            let mut reg = registered.lock().unwrap_or_else(|e| e.into_inner());
            for (index, queue) in queues {
                let fd = &notifiers[usize::from(index)];
                let (Ok(notifier), Ok(ioevent_fd)) = (fd.try_clone(), fd.try_clone()) else {
                    log::error!("virtio-pci: cannot clone the queue {index} eventfd");
                    broken.store(true, Ordering::Release);
                    return;
                };
                if let Some(base) = notify_base {
                    let addr = IoEventAddress::Mmio(base + u64::from(index) * u64::from(NOTIFY_MULTIPLIER));
                    match vm.register_ioevent(&ioevent_fd, addr, None) {
                        Ok(()) => reg.push((addr, ioevent_fd)),
                        Err(e) => log::warn!("virtio-pci: ioeventfd at {addr:?}: {e} (notifications take the slow path)"),
                    }
                }
                activated.push(ActivatedQueue { index, queue, notifier });
            }
            drop(reg);
            let ctx = ActivateContext { mem, queues: activated, interrupt, worker_init };
            let mut dev = device.lock().unwrap_or_else(|e| e.into_inner());
            match dev.activate(ctx) {
                Ok(()) => log::debug!("virtio device type {} activated", dev.device_type()),
                Err(e) => {
                    log::error!("virtio device type {} failed to activate: {e}", dev.device_type());
                    broken.store(true, Ordering::Release);
                }
            }
        }));
    }

    /// The device left the bus (hot-unplugged): stopped as a reset stops it (its worker
    /// joined, its ioeventfds unregistered on the activator thread) and its interrupt vectors
    /// unwired, so nothing of it stays in KVM.
    pub fn unplug(&mut self) {
        self.reset();
        use pci::MsiInterruptGroup;
        if let Err(e) = self.msi.disable() {
            log::warn!("virtio-pci: unwiring an unplugged device's vectors: {e}");
        }
    }

    /// Grow the device's backing to `bytes` (`vm.resize-disk`): the configuration generation
    /// moves, then the device updates its configuration and raises the config interrupt.
    pub fn resize(&mut self, bytes: u64) -> Result<(), String> {
        self.common.config_generation = self.common.config_generation.wrapping_add(1);
        self.lock_device().resize(bytes)
    }

    /// Status 0: stop the device and forget the driver's configuration.
    fn reset(&mut self) {
        if !self.lock_device().reset() {
            self.broken.store(true, Ordering::Release);
        } else {
            self.broken.store(false, Ordering::Release);
        }
        self.common.reset();
        let (vm, registered) = (self.vm.clone(), self.ioevents.clone());
        self.activator.queue(Box::new(move || {
            for (addr, fd) in registered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                let _ = vm.unregister_ioevent(&fd, addr);
            }
        }));
    }

    /// For a snapshot of a paused VM: stop the device where it stands (its worker joined, so
    /// nothing it does changes guest memory any more) and return the function's state. The
    /// device stays stopped until [`resume_after_save`](Self::resume_after_save).
    pub fn save(&mut self) -> Result<VirtioPciState, String> {
        let active =
            self.common.status & STATUS_DRIVER_OK != 0 && !self.broken.load(Ordering::Acquire);
        let positions = if active {
            self.lock_device().pause().map_err(|e| e.to_string())?
        } else {
            None
        };
        self.paused = positions.is_some();
        let mut queues: Vec<SavedQueue> = self
            .common
            .queues
            .iter()
            .map(|q| SavedQueue {
                size: q.size,
                vector: q.vector,
                enabled: q.enabled,
                desc: q.desc,
                driver: q.driver,
                device: q.device,
                next_avail: 0,
                next_used: 0,
            })
            .collect();
        for p in positions.iter().flatten() {
            if let Some(q) = queues.get_mut(usize::from(p.index)) {
                (q.next_avail, q.next_used) = (p.next_avail, p.next_used);
            }
        }
        let table = self.msix.table();
        let mut device_config = vec![0u8; SAVED_DEVICE_CONFIG];
        let device = self.lock_device();
        device.read_config(0, &mut device_config);
        let device_type = device.device_type();
        drop(device);
        Ok(VirtioPciState {
            device_type,
            config: (0..CONFIG_REGS)
                .map(|r| self.config.read_config_register(r))
                .collect(),
            msix_table: table
                .entries()
                .iter()
                .map(|e| [e.addr_lo, e.addr_hi, e.data, e.vector_control])
                .collect(),
            msix_pba: table.pba_words().to_vec(),
            device_feature_select: self.common.device_feature_select,
            driver_feature_select: self.common.driver_feature_select,
            driver_features: self.common.driver_features,
            status: self.common.status,
            config_vector: self.common.config_vector,
            queue_select: self.common.queue_select,
            queues,
            broken: self.broken.load(Ordering::Acquire),
            device_config,
        })
    }

    /// After [`save`](Self::save): the device carries on from where it stopped.
    pub fn resume_after_save(&mut self, saved: &VirtioPciState) {
        if std::mem::take(&mut self.paused) {
            self.activate_at(&saved.positions(), false);
        }
    }

    /// A restore, first step, on a device just built from the snapshot's configuration: check
    /// that it is the device that was saved and put back its MSI-X table. Next the caller
    /// writes the saved configuration registers through the PCI bus (BARs, command, the
    /// MSI-X enable bits), then calls [`restore_finish`](Self::restore_finish).
    pub fn restore_begin(&mut self, saved: &VirtioPciState) -> Result<(), String> {
        let device = self.lock_device();
        let (kind, queues) = (device.device_type(), device.queue_max_sizes().len());
        let mut config = vec![0u8; SAVED_DEVICE_CONFIG];
        device.read_config(0, &mut config);
        let fixed = device.config_fixed_across_restore();
        drop(device);
        if saved.device_type != kind || saved.queues.len() != queues {
            return Err(format!(
                "the snapshot has a virtio device of type {} with {} queues here, the \
                 configuration a type {kind} device with {queues}",
                saved.device_type,
                saved.queues.len()
            ));
        }
        if fixed && saved.device_config != config {
            return Err(format!(
                "the virtio device of type {kind} differs from the snapshot's in its \
                 configuration space (e.g. a disk image of another size)"
            ));
        }
        if saved.config.len() != CONFIG_REGS {
            return Err(format!(
                "{} PCI configuration registers saved, {CONFIG_REGS} expected",
                saved.config.len()
            ));
        }
        let entries: Vec<pci::MsixTableEntry> = saved
            .msix_table
            .iter()
            .map(|e| pci::MsixTableEntry {
                addr_lo: e[0],
                addr_hi: e[1],
                data: e[2],
                vector_control: e[3],
            })
            .collect();
        self.msix
            .restore_table(&entries, &saved.msix_pba)
            .map_err(|e| format!("MSI-X: {e}"))
    }

    /// A restore, last step: the driver's common configuration, and the device activated
    /// with its queues at the saved places if the driver had started it.
    pub fn restore_finish(&mut self, saved: &VirtioPciState) {
        let c = &mut self.common;
        c.device_feature_select = saved.device_feature_select;
        c.driver_feature_select = saved.driver_feature_select;
        c.driver_features = saved.driver_features;
        c.status = saved.status;
        c.config_vector = saved.config_vector;
        c.queue_select = saved.queue_select;
        for (q, s) in c.queues.iter_mut().zip(&saved.queues) {
            // A size the device cannot take is its maximum, as a hostile write would leave it.
            if s.size != 0 && s.size.is_power_of_two() && s.size <= q.max_size {
                q.size = s.size;
            }
            q.vector = s.vector;
            q.enabled = s.enabled;
            (q.desc, q.driver, q.device) = (s.desc, s.driver, s.device);
        }
        self.broken.store(saved.broken, Ordering::Release);
        self.lock_device().restored();
        if saved.status & common::STATUS_FEATURES_OK != 0 {
            self.lock_device().ack_features(saved.driver_features);
        }
        if saved.status & STATUS_DRIVER_OK != 0 && !saved.broken {
            self.activate_at(&saved.positions(), true);
        }
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        match self.common.write(offset, data) {
            StatusChange::None => {}
            StatusChange::Reset => self.reset(),
            StatusChange::FeaturesOk(f) => self.lock_device().ack_features(f),
            StatusChange::DriverOk => self.activate(),
        }
    }
}

impl PciDevice for VirtioPciDevice {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        self.config.read_config_register(reg)
    }

    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) -> ConfigWriteResult {
        let mut result = self.config.write_config_register(reg, offset, data);
        result.msix_changed = self.msix.handle_config_write(&self.config, reg);
        result
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != BAR_INDEX {
            data.fill(0xff);
            return;
        }
        if self.msix.read_bar(bar, offset, data) {
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + COMMON_LEN => {
                self.common.read(o - COMMON_OFFSET, data);
                if o - COMMON_OFFSET == 0x14
                    && data.len() == 1
                    && self.broken.load(Ordering::Acquire)
                {
                    data[0] |= STATUS_NEEDS_RESET;
                }
            }
            // ISR: with MSI-X nothing is ever pending here.
            o if (ISR_OFFSET..ISR_OFFSET + ISR_LEN).contains(&o) => data.fill(0),
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                self.lock_device().read_config(o - DEVICE_OFFSET, data)
            }
            _ => data.fill(0),
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != BAR_INDEX || self.msix.write_bar(bar, offset, data) {
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + COMMON_LEN => self.write_common(o - COMMON_OFFSET, data),
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                self.lock_device().write_config(o - DEVICE_OFFSET, data)
            }
            // A notification that did not go through an ioeventfd (before activation, or
            // after the guest moved the BAR): signal the queue's eventfd ourselves.
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + NOTIFY_LEN).contains(&o) => {
                let q = ((o - NOTIFY_OFFSET) / u64::from(NOTIFY_MULTIPLIER)) as usize;
                if let Some(fd) = self.notifiers.get(q) {
                    let _ = fd.write(1);
                }
            }
            _ => log::debug!("virtio-pci: ignored BAR write at {offset:#x}"),
        }
    }

    fn bars(&self) -> Vec<BarInfo> {
        self.config.bars()
    }
}

#[cfg(test)]
mod tests;
