//! Every `--device` of one VM, from open to teardown.
//!
//! [`Passthrough::open`] runs as soon as guest memory exists: it creates the KVM VFIO device
//! and the container, opens each device (nothing is mapped if one fails), and starts the
//! `vfio` thread, which resets the devices and DMA-maps guest RAM while the VMM goes on
//! loading the kernel and the guest boots (see [`super::dma`]). [`Passthrough::attach_all`]
//! puts the devices on the PCI segment. At the end [`Passthrough::shutdown`] hands the
//! teardown to the same thread — disable interrupts, reset, remove BAR slots, unmap DMA,
//! release the devices and the container — because that thread's own seccomp filter, which
//! it installs when it starts, allows exactly those calls (see [`super::seccomp`]).

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hypervisor::Vm;
use pci::vfio::{VfioDeviceOps, VfioIrqKind};
use pci::PciAddress;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::attach::{attach, AttachError, AttachParams};
use super::bar_map::BarMapper;
use super::dma::{self, DmaGate, DmaMapper, MappingJob, RamRegion};
use super::host::{HostDevice, HostError, VfioHost};
use super::preflight::{Backend, CheckedDevice};
use crate::config::DeviceConfig;
use crate::memory::SlotAllocator;
use crate::pci_setup::PciSegments;
use crate::timing::BootTimer;
use crate::vcpu::{ExitSignal, VmExitReason};

#[derive(Debug, thiserror::Error)]
pub enum PassthroughError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("starting the VFIO thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Seccomp(crate::seccomp::SeccompError),
    #[error("VFIO: {0}")]
    Iova(String),
    #[error("{0}")]
    Backend(String),
}

struct Device {
    checked: CheckedDevice,
    cfg: DeviceConfig,
    host: Arc<HostDevice>,
}

/// The passed-through devices of a VM.
pub struct Passthrough {
    vm: Arc<dyn Vm>,
    devices: Vec<Device>,
    mapper: Arc<BarMapper>,
    gate: Arc<DmaGate>,
    attached: Vec<PciAddress>,
    worker: Option<(Sender<Vec<PciAddress>>, JoinHandle<()>)>,
    /// Another handle on the container, for devices added while the VM runs.
    host: VfioHost,
    /// Devices added while the VM runs (not in the `vfio` thread's teardown list): torn down
    /// by [`Passthrough::remove_device`] or [`Passthrough::shutdown`] on the calling thread.
    added: Vec<(PciAddress, Arc<HostDevice>)>,
}

/// Stop one device's DMA and interrupts (before its DMA mappings or BAR slots go).
fn quiesce(d: &HostDevice) {
    for kind in [VfioIrqKind::Msix, VfioIrqKind::Msi, VfioIrqKind::Intx] {
        if d.irq_count(kind) > 0 {
            let _ = d.disable_irqs(kind);
        }
    }
    super::reset::report(d.name(), "as it is removed", d.reset());
}

/// The link of the host device at sysfs `path` (its `max_link_*` and `current_link_*`
/// files), for the root port above it; a Gen4 x16 link where sysfs does not say (a
/// conventional PCI device, or an emulated one that reports "Unknown").
pub fn host_link(path: &std::path::Path) -> pci::PcieLink {
    let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default();
    let speed = |f: &str| pci::PcieLink::speed_code(read(f).trim());
    let width = |f: &str| {
        read(f)
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|w| (1..=32).contains(w))
    };
    let d = pci::PcieLink::default();
    let max_speed = speed("max_link_speed").unwrap_or(d.max_speed);
    let max_width = width("max_link_width").unwrap_or(d.max_width);
    pci::PcieLink {
        max_speed,
        max_width,
        speed: speed("current_link_speed").unwrap_or(max_speed),
        width: width("current_link_width").unwrap_or(max_width),
    }
}

fn ram_regions(mem: &GuestMemoryMmap) -> Vec<RamRegion> {
    mem.iter()
        .map(|r| RamRegion {
            gpa: r.start_addr().0,
            size: r.len(),
            host: r.as_ptr(),
        })
        .collect()
}

/// Peer-to-peer DMA between the VM's devices: each device's BARs mapped for the others, in
/// the container. iommufd (Linux 6.12) cannot pin another device's MMIO, so there the
/// devices get none, and the user is told how to have it.
fn enable_peer_dma(mapper: &BarMapper, host: &VfioHost) {
    match host.backend() {
        Backend::Container => mapper.enable_peer_dma(host.dma()),
        Backend::Iommufd => log::warn!(
            "vfio: no peer-to-peer DMA between the passed devices: iommufd cannot map one \
             device's BARs for another; pass them with iommufd=off for that"
        ),
    }
}

/// How often the vfio thread checks whether peer-to-peer DMA mappings lag behind BAR moves.
const PEER_SYNC_PERIOD: Duration = Duration::from_millis(200);

/// What the vfio thread does while the VM runs: keep peer-to-peer DMA mappings (several
/// devices only) in line with the BAR slots, once a driver has enabled bus mastering (so the
/// guest's enumeration, which toggles decoding, costs no mapping). Returns the devices to
/// tear down when the VMM asks.
fn serve(rx: &Receiver<Vec<PciAddress>>, mapper: &BarMapper, gate: &DmaGate) -> Vec<PciAddress> {
    loop {
        match rx.recv_timeout(PEER_SYNC_PERIOD) {
            Ok(attached) => return attached,
            Err(RecvTimeoutError::Disconnected) => return Vec::new(),
            Err(RecvTimeoutError::Timeout) => {
                if gate.bus_master_seen() && mapper.peer_dma_stale() {
                    mapper.sync_peer_dma(&|| gate.cancelled());
                }
            }
        }
    }
}

/// What the vfio thread does once the VM is over.
fn teardown(
    devices: &[Arc<HostDevice>],
    mapper: &BarMapper,
    dma: &dyn DmaMapper,
    ram: &[RamRegion],
    attached: &[PciAddress],
    resets: &super::reset::ResetPool,
) {
    // (A device removed while the VM ran was torn down then, and is closed.) Interrupts off
    // on every device, then the resets, at once.
    let open: Vec<&Arc<HostDevice>> = devices.iter().filter(|d| !d.is_closed()).collect();
    for d in &open {
        for kind in [VfioIrqKind::Msix, VfioIrqKind::Msi, VfioIrqKind::Intx] {
            if d.irq_count(kind) > 0 {
                let _ = d.disable_irqs(kind);
            }
        }
    }
    let named: Vec<(String, Arc<dyn VfioDeviceOps>)> = open
        .iter()
        .map(|d| (d.name().to_string(), (*d).clone() as Arc<dyn VfioDeviceOps>))
        .collect();
    resets.reset_all(&named, "at VM stop");
    for a in attached {
        mapper.remove_device(*a);
    }
    dma::unmap_ram(dma, ram);
    for d in devices {
        d.close();
    }
}

/// What the `vfio` thread reports to and runs under.
pub struct VfioThreadContext {
    /// Boot phases (`vfio_opened`, `vfio_dma_mapped`).
    pub timer: Arc<BootTimer>,
    /// Where a failed mapping ends the VM.
    pub exit: Arc<ExitSignal>,
    /// The seccomp mode its filter is installed in.
    pub seccomp: crate::seccomp::SeccompMode,
    /// The guest's vCPUs: the CPUs they need are not given to prefault helpers.
    pub vcpus: u32,
}

impl Passthrough {
    /// Opens the devices preflight checked and starts mapping guest RAM for DMA.
    pub fn open(
        vm: &Arc<dyn Vm>,
        checked: &[CheckedDevice],
        cfgs: &[DeviceConfig],
        mem: &GuestMemoryMmap,
        ram_slots: u32,
        ctx: VfioThreadContext,
    ) -> Result<Option<Self>, PassthroughError> {
        let mapper = Arc::new(BarMapper::new(
            vm.clone(),
            Arc::new(SlotAllocator::new(ram_slots)),
        ));
        Self::open_with_mapper(vm, checked, cfgs, mem, mapper, ctx)
    }

    /// As [`open`](Self::open), with the BAR mapper the VM's PCI segment already uses (a
    /// device hot-added to a running VM: its own container, the VM's memory slots).
    pub fn open_with_mapper(
        vm: &Arc<dyn Vm>,
        checked: &[CheckedDevice],
        cfgs: &[DeviceConfig],
        mem: &GuestMemoryMmap,
        mapper: Arc<BarMapper>,
        ctx: VfioThreadContext,
    ) -> Result<Option<Self>, PassthroughError> {
        if checked.is_empty() {
            return Ok(None);
        }
        let VfioThreadContext {
            timer,
            exit,
            seccomp,
            vcpus,
        } = ctx;
        let filter = crate::seccomp::Confinement::new(seccomp)
            .compile(crate::seccomp::ThreadKind::Vfio)
            .map_err(PassthroughError::Seccomp)?;
        // Several devices are reset at once (reset.rs), by workers under the vfio filter.
        let workers = if checked.len() > 1 { checked.len() } else { 0 };
        let resets = Arc::new(super::reset::ResetPool::spawn(workers, filter.clone()));
        let backend = checked[0].backend;
        let host = VfioHost::open(vm.as_ref(), backend)?;
        let host_handle = host.clone();
        let mut devices = Vec::with_capacity(checked.len());
        for (c, cfg) in checked.iter().zip(cfgs) {
            devices.push(Device {
                checked: c.clone(),
                cfg: cfg.clone(),
                host: Arc::new(host.open_device(&c.path, c.backend)?),
            });
        }
        log::info!(
            "vfio: {} device(s) through the {}",
            devices.len(),
            backend.name()
        );
        timer.phase("vfio_opened");
        // Guest RAM is mapped at IOVA = GPA: it must lie where the host IOMMU allows.
        let ram = ram_regions(mem);
        match host.usable_iova() {
            Ok(Some(usable)) => {
                let ranges: Vec<(u64, u64)> = ram.iter().map(|r| (r.gpa, r.size)).collect();
                super::iova::check_ram(&ranges, &usable).map_err(PassthroughError::Iova)?;
                log::debug!("vfio: usable IOVA ranges {usable:x?}");
            }
            Ok(None) => log::debug!("vfio: the kernel reports no IOVA ranges; not checked"),
            Err(e) => log::debug!("vfio: VFIO_IOMMU_GET_INFO failed ({e}); IOVA not checked"),
        }
        let dma = host.dma();
        if devices.len() > 1 {
            // Several devices: each may DMA into the others' BARs (GPU peer-to-peer).
            enable_peer_dma(&mapper, &host);
        }
        let gate = Arc::new(DmaGate::default());
        let hosts: Vec<Arc<HostDevice>> = devices.iter().map(|d| d.host.clone()).collect();
        // Idle priority only where the mapper can come back from it; helper threads fault
        // RAM in ahead of it (prefault.rs), each under its own filter.
        let idle = super::dma::can_leave_idle();
        let total = ram.iter().map(|r| r.size).sum();
        let count = super::prefault::helper_count(vcpus);
        let helpers = if count > 0 {
            let plan = Arc::new(super::prefault::Plan::new(
                &ram,
                super::dma::dma_chunk(total),
            ));
            let filter = crate::seccomp::Confinement::new(seccomp)
                .compile(crate::seccomp::ThreadKind::Prefault)
                .map_err(PassthroughError::Seccomp)?;
            let helpers = super::prefault::Helpers::spawn(count, plan.clone(), filter, idle);
            Some((plan, helpers))
        } else {
            None
        };
        let job = MappingJob {
            mapper: dma.clone(),
            regions: ram.clone(),
            resets: hosts
                .iter()
                .map(|h| (h.name().to_string(), h.clone() as Arc<dyn VfioDeviceOps>))
                .collect(),
            gate: gate.clone(),
            on_done: Box::new(move |took, bytes| {
                timer.phase("vfio_dma_mapped");
                let gib = bytes as f64 / (1u64 << 30) as f64;
                log::info!(
                    "vfio: DMA-mapped {} of guest RAM in {:.1} ms ({:.0} ms/GiB)",
                    pci::format_size(bytes),
                    took.as_secs_f64() * 1e3,
                    took.as_secs_f64() * 1e3 / gib.max(1e-9)
                );
            }),
            on_error: {
                let exit = exit.clone();
                Box::new(move |e| exit.report(VmExitReason::Fatal(e)))
            },
            idle,
            helpers,
            pool: Some(resets.clone()),
        };
        let (tx, rx) = channel::<Vec<PciAddress>>();
        let m = mapper.clone();
        let g = gate.clone();
        let worker = std::thread::Builder::new()
            .name("vfio".into())
            .spawn(move || {
                // Confined for the VM's whole life (vfio/seccomp.rs). Should that fail, the
                // VM ends; the thread still does its part of the teardown.
                if let Err(e) = filter.install() {
                    exit.report(VmExitReason::Fatal(e.to_string()));
                }
                job.run();
                let attached = serve(&rx, &m, &g);
                teardown(&hosts, &m, dma.as_ref(), &ram, &attached, &resets);
                drop(resets);
                drop(hosts);
                drop(host);
            })
            .map_err(PassthroughError::Thread)?;
        Ok(Some(Passthrough {
            vm: vm.clone(),
            devices,
            mapper,
            gate,
            attached: Vec::new(),
            worker: Some((tx, worker)),
            host: host_handle,
            added: Vec::new(),
        }))
    }

    /// Add the checked device `c` to this VM's container while the VM runs: guest RAM is
    /// mapped there already (or being mapped: its driver's first bus-master enable waits for
    /// it through the same gate), so nothing more is mapped. Reset, then put on `pci`.
    pub fn add_device(
        &mut self,
        c: &CheckedDevice,
        cfg: &DeviceConfig,
        pci: &PciSegments,
    ) -> Result<PciAddress, PassthroughError> {
        let name = cfg.id.clone().unwrap_or_else(|| c.bdf.clone());
        // A root port or a NUMA node is for devices the VM boots with: refused before the
        // device is opened and reset.
        if cfg.root_port == Some(true) || cfg.numa_node.is_some() {
            return Err(AttachError::HotRootPort { name }.into());
        }
        // A device added later uses the VM's backend: refused if it asks for the other one.
        let backend = match cfg.iommufd {
            None => self.host.backend(),
            Some(true) => Backend::Iommufd,
            Some(false) => Backend::Container,
        };
        if backend == Backend::Iommufd && c.cdev.is_none() {
            return Err(PassthroughError::Backend(format!(
                "{name}: the VM's devices use iommufd and this one has no VFIO cdev (the host \
                 kernel needs CONFIG_VFIO_DEVICE_CDEV)"
            )));
        }
        let host = Arc::new(self.host.open_device(&c.path, backend)?);
        super::reset::report(host.name(), super::reset::BEFORE_USE, host.reset());
        let params = AttachParams {
            vm: self.vm.as_ref(),
            mapper: &self.mapper,
            gate: self.gate.clone(),
            gpudirect_clique: cfg.gpudirect_clique,
            root_port: cfg.root_port,
            link: host_link(&c.path),
            hot: true,
            expander: None,
            segment: cfg.pci_segment,
            slot: cfg.pci_device_id,
        };
        let a = match attach(&name, host.clone(), pci, params) {
            Ok(a) => a,
            Err(e) => {
                host.close();
                return Err(e.into());
            }
        };
        self.added.push((a.address, host.clone()));
        self.devices.push(Device {
            checked: c.clone(),
            cfg: cfg.clone(),
            host,
        });
        // Several devices in the container: each may DMA into the others' BARs (the vfio
        // thread maps them once a driver enables bus mastering, as at boot).
        if self.devices.len() > 1 {
            enable_peer_dma(&self.mapper, &self.host);
        }
        Ok(a.address)
    }

    /// Take the device at `address` (already off the PCI bus) out of the VM: interrupts off,
    /// reset, BAR slots removed, released from the container (its group is free again). The
    /// container's DMA mappings stay for the others. Returns whether any device is left (none:
    /// call [`shutdown`](Self::shutdown) to unmap guest RAM and close the container).
    pub fn remove_device(&mut self, address: PciAddress) -> bool {
        let host = if let Some(i) = self.added.iter().position(|(a, _)| *a == address) {
            Some(self.added.remove(i).1)
        } else if let Some(i) = self.attached.iter().position(|a| *a == address) {
            self.attached.remove(i);
            // The attached devices are in `devices` in the same order, after none of the
            // added ones (those come last).
            self.devices.get(i).map(|d| d.host.clone())
        } else {
            None
        };
        if let Some(h) = host {
            quiesce(&h);
            self.mapper.remove_device(address);
            h.close();
            self.devices.retain(|d| !Arc::ptr_eq(&d.host, &h));
        }
        !self.devices.is_empty()
    }

    /// The BAR mapper the PCI segment's relocator must use.
    pub fn bar_mapper(&self) -> Arc<BarMapper> {
        self.mapper.clone()
    }

    /// Puts every device on `pci`.
    pub fn attach_all(&mut self, pci: &PciSegments) -> Result<(), PassthroughError> {
        for d in &self.devices {
            let name = d.cfg.id.clone().unwrap_or_else(|| d.checked.bdf.clone());
            let params = AttachParams {
                vm: self.vm.as_ref(),
                mapper: &self.mapper,
                gate: self.gate.clone(),
                gpudirect_clique: d.cfg.gpudirect_clique,
                root_port: d.cfg.root_port,
                link: host_link(&d.checked.path),
                hot: false,
                expander: d.cfg.numa_node.and_then(|n| pci.expander_bus(n)),
                segment: d.cfg.pci_segment,
                slot: d.cfg.pci_device_id,
            };
            let a = attach(&name, d.host.clone(), pci, params)?;
            self.attached.push(a.address);
        }
        Ok(())
    }

    /// Where each attached device is on the guest's PCI bus, in `--device` order.
    pub fn addresses(&self) -> Vec<pci::PciAddress> {
        self.attached.clone()
    }

    /// Tears everything down (on the vfio thread) and waits for it; call once the vCPUs have
    /// stopped and before guest memory is unmapped. Runs at most once.
    pub fn shutdown(&mut self) {
        if let Some((tx, handle)) = self.worker.take() {
            self.gate.cancel();
            // Devices added while the VM ran stop before guest RAM is unmapped.
            let added = std::mem::take(&mut self.added);
            for (a, h) in &added {
                quiesce(h);
                self.mapper.remove_device(*a);
            }
            let _ = tx.send(std::mem::take(&mut self.attached));
            if handle.join().is_err() {
                log::warn!("vfio: the VFIO thread panicked during teardown");
            }
            for (_, h) in added {
                h.close();
            }
        }
    }
}

impl Drop for Passthrough {
    fn drop(&mut self) {
        self.shutdown();
    }
}
