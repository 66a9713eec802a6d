//! Build the virtio devices the configuration asks for and put each on the PCI segment
//! behind a virtio-pci transport.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

use devices::virtio::{
    Block, Console, ConsoleInput, Fs, Net, Rng, VirtioDevice, Vsock, WorkerInit,
};
use hypervisor::Vm;
use vm_memory::GuestMemoryMmap;

use crate::config::{ConsoleConfig, VmConfig};
use crate::pci_setup::{PciSegments, PciSetupError};
use crate::seccomp::{self, DeviceKind, SeccompMode, ThreadKind};
use crate::virtio_pci::activator::Activator;
use crate::virtio_pci::{self, VirtioPciDevice, VirtioPciError, VirtioPciParams};

#[derive(Debug, thiserror::Error)]
pub enum VirtioSetupError {
    #[error("--disk {path}: {source}")]
    Disk {
        path: String,
        source: devices::virtio::BlockError,
    },
    #[error("--net: {0}")]
    Net(#[from] devices::virtio::NetError),
    #[error("--rng: {0}")]
    Rng(#[from] devices::virtio::RngError),
    #[error("--vsock: {0}")]
    Vsock(#[from] devices::virtio::VsockError),
    #[error("--fs: {0}")]
    Fs(#[from] devices::virtio::FsError),
    #[error("--console: {0}")]
    Console(String),
    #[error(transparent)]
    Pci(#[from] PciSetupError),
    #[error("starting the virtio activator thread: {0}")]
    Activator(std::io::Error),
    #[error("virtio-pci: {0}")]
    Transport(#[from] VirtioPciError),
}

impl VirtioSetupError {
    /// A device the configuration names cannot be opened as asked (a missing or locked
    /// image, a tap that cannot be had, an entropy source or console file): the request's
    /// fault (4xx), not the VMM's.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            VirtioSetupError::Disk { .. }
                | VirtioSetupError::Net(_)
                | VirtioSetupError::Rng(_)
                | VirtioSetupError::Vsock(_)
                | VirtioSetupError::Fs(_)
                | VirtioSetupError::Console(_)
                | VirtioSetupError::Pci(PciSetupError::SlotTaken { .. })
        )
    }
}

/// What the event loop keeps of the virtio devices.
pub struct VirtioDevices {
    /// Serves DRIVER_OK on its own thread; kept so the devices' transports outlive setup.
    /// None when the VM has no virtio device (no thread is started for nothing).
    pub activator: Option<Arc<Activator>>,
    /// Host input for the virtio-console, when it is the interactive console.
    pub console_input: Option<ConsoleInput>,
    /// Where each device is on the PCI bus, in the order of `DeviceIds::virtio`: disks, nets,
    /// rng, vsock, fs, console.
    pub addresses: Vec<pci::PciAddress>,
    /// The counters of the devices that keep some (disks, nets), with their ids.
    pub counters: Vec<(String, Arc<devices::virtio::counters::Counters>)>,
    /// The transports, in the order of `addresses` (a snapshot saves them).
    pub transports: Vec<Arc<Mutex<VirtioPciDevice>>>,
}

impl Drop for VirtioDevices {
    /// The VM is going: its activator thread ends with it.
    fn drop(&mut self) {
        if let Some(a) = &self.activator {
            a.stop();
        }
    }
}

/// The hook each device worker runs first: its own seccomp filter.
fn worker_init(kind: DeviceKind, mode: SeccompMode) -> WorkerInit {
    Arc::new(move |_name: &str| {
        seccomp::apply(ThreadKind::Device(kind), mode)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}

fn console_sink(cfg: &ConsoleConfig) -> Result<Option<Box<dyn Write + Send>>, VirtioSetupError> {
    Ok(match cfg {
        ConsoleConfig::Off => None,
        ConsoleConfig::Tty => Some(Box::new(std::io::stdout())),
        ConsoleConfig::Null => Some(Box::new(std::io::sink())),
        ConsoleConfig::File(p) => {
            Some(Box::new(File::create(p).map_err(|e| {
                VirtioSetupError::Console(format!("{}: {e}", p.display()))
            })?))
        }
    })
}

struct Builder<'a> {
    pci: &'a PciSegments,
    vm: Arc<dyn Vm>,
    mem: &'a GuestMemoryMmap,
    activator: Arc<Activator>,
    seccomp: SeccompMode,
    transports: std::cell::RefCell<Vec<Arc<Mutex<VirtioPciDevice>>>>,
}

/// What it takes to put a virtio device on the bus (at boot, or hot-added).
pub struct Attach<'a> {
    pub pci: &'a PciSegments,
    pub vm: Arc<dyn Vm>,
    pub mem: &'a GuestMemoryMmap,
    pub activator: Arc<Activator>,
    pub seccomp: SeccompMode,
}

impl Attach<'_> {
    /// `device` behind a virtio-pci transport on bus 0 of PCI segment `segment`, in `slot`
    /// (`pci_device_id`) or the next free one: its BAR placed, its MSI-X vectors, its worker's
    /// seccomp filter.
    pub fn attach(
        &self,
        device: Box<dyn VirtioDevice>,
        kind: DeviceKind,
        (segment, slot): (u16, Option<u8>),
    ) -> Result<(pci::PciAddress, Arc<Mutex<VirtioPciDevice>>), VirtioSetupError> {
        let address = self.pci.address_on(segment, slot)?;
        let bar = self
            .pci
            .allocate_bars(address, &[virtio_pci::bar_request()])?
            .remove(0);
        let placed = || -> Result<_, VirtioSetupError> {
            let msi = self
                .pci
                .msi_group(virtio_pci::msix_vectors(device.as_ref()))?;
            let transport = Arc::new(Mutex::new(VirtioPciDevice::new(VirtioPciParams {
                device,
                bar,
                msi,
                mem: self.mem.clone(),
                vm: self.vm.clone(),
                activator: self.activator.clone(),
                worker_init: Some(worker_init(kind, self.seccomp)),
            })?));
            self.pci.add(address, transport.clone())?;
            Ok(transport)
        };
        // A device that did not make it onto the bus gives its BAR placement back.
        let transport = placed().inspect_err(|_| self.pci.free_bars(address))?;
        log::info!("virtio {kind:?} at {address}");
        Ok((address, transport))
    }
}

impl Builder<'_> {
    fn add(
        &self,
        device: Box<dyn VirtioDevice>,
        kind: DeviceKind,
        place: (u16, Option<u8>),
    ) -> Result<pci::PciAddress, VirtioSetupError> {
        let (address, transport) = Attach {
            pci: self.pci,
            vm: self.vm.clone(),
            mem: self.mem,
            activator: self.activator.clone(),
            seccomp: self.seccomp,
        }
        .attach(device, kind, place)?;
        self.transports.borrow_mut().push(transport);
        Ok(address)
    }
}

/// Create every configured virtio device (disks first, so the first disk is /dev/vda).
pub fn setup(
    cfg: &VmConfig,
    pci: &PciSegments,
    vm: Arc<dyn Vm>,
    mem: &GuestMemoryMmap,
) -> Result<VirtioDevices, VirtioSetupError> {
    let any = !cfg.disks.is_empty()
        || !cfg.nets.is_empty()
        || cfg.rng.is_some()
        || cfg.vsock.is_some()
        || !cfg.fs.is_empty()
        || cfg.console != ConsoleConfig::Off;
    if !any {
        return Ok(VirtioDevices {
            activator: None,
            console_input: None,
            addresses: Vec::new(),
            counters: Vec::new(),
            transports: Vec::new(),
        });
    }
    let activator = Activator::start(cfg.seccomp).map_err(VirtioSetupError::Activator)?;
    let b = Builder {
        pci,
        vm,
        mem,
        activator: activator.clone(),
        seccomp: cfg.seccomp,
        transports: Default::default(),
    };
    let mut addresses = Vec::new();
    let mut counters = Vec::new();
    let ids = &cfg.device_ids;
    let mut count = |id: Option<&String>, dev: &dyn VirtioDevice| {
        if let (Some(id), Some(c)) = (id, dev.counters()) {
            counters.push((id.clone(), c));
        }
    };
    for (i, disk) in cfg.disks.iter().enumerate() {
        let dev = Block::new(disk).map_err(|source| VirtioSetupError::Disk {
            path: disk.path.display().to_string(),
            source,
        })?;
        count(ids.disks.get(i), &dev);
        addresses.push(b.add(
            Box::new(dev),
            DeviceKind::Block,
            (disk.pci_segment, disk.pci_device_id),
        )?);
    }
    for (i, net) in cfg.nets.iter().enumerate() {
        let dev = Net::new(net)?;
        count(ids.nets.get(i), &dev);
        addresses.push(b.add(
            Box::new(dev),
            DeviceKind::Net,
            (net.pci_segment, net.pci_device_id),
        )?);
    }
    if let Some(rng) = &cfg.rng {
        addresses.push(b.add(
            Box::new(Rng::new(rng)?),
            DeviceKind::Rng,
            (rng.pci_segment, rng.pci_device_id),
        )?);
    }
    if let Some(vsock) = &cfg.vsock {
        addresses.push(b.add(
            Box::new(Vsock::new(vsock)?),
            DeviceKind::Vsock,
            (vsock.pci_segment, vsock.pci_device_id),
        )?);
    }
    for fs in &cfg.fs {
        addresses.push(b.add(
            Box::new(Fs::new(fs)?),
            DeviceKind::Fs,
            (fs.pci_segment, fs.pci_device_id),
        )?);
    }
    let mut console_input = None;
    if let Some(sink) = console_sink(&cfg.console)? {
        let console = Console::new(sink).map_err(|e| VirtioSetupError::Console(e.to_string()))?;
        if cfg.console == ConsoleConfig::Tty {
            console_input = Some(console.input());
        }
        addresses.push(b.add(Box::new(console), DeviceKind::Console, (0, None))?);
    }
    Ok(VirtioDevices {
        activator: Some(activator),
        console_input,
        addresses,
        counters,
        transports: b.transports.take(),
    })
}

/// Lock a transport (a poisoned lock is still the device's state).
pub fn lock(t: &Mutex<VirtioPciDevice>) -> std::sync::MutexGuard<'_, VirtioPciDevice> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// A restore: put each virtio device, just built from the snapshot's configuration, back in
/// the state `saved` holds (in the same order), its registers written through `bus` as the
/// guest wrote them: the BARs first (moved, if the guest had moved them), then the rest,
/// command register and MSI-X enable included. Devices the driver had started are activated
/// at their saved queue places before the guest runs again.
pub fn restore(
    devices: &VirtioDevices,
    pci: &PciSegments,
    saved: &[crate::virtio_pci::state::VirtioPciState],
) -> Result<(), String> {
    if saved.len() != devices.transports.len() {
        return Err(format!(
            "the snapshot holds {} virtio devices, its configuration has {}",
            saved.len(),
            devices.transports.len()
        ));
    }
    let bars = 4..10;
    for ((t, s), address) in devices.transports.iter().zip(saved).zip(&devices.addresses) {
        lock(t)
            .restore_begin(s)
            .map_err(|e| format!("{address}: {e}"))?;
        let order = bars
            .clone()
            .chain((0..s.config.len()).filter(|r| !bars.contains(r)));
        let bus = pci.bus_of(address.segment).map_err(|e| e.to_string())?;
        for reg in order {
            let _ = bus.write_config(*address, reg, 0, &s.config[reg].to_le_bytes());
        }
        lock(t).restore_finish(s);
    }
    Ok(())
}
