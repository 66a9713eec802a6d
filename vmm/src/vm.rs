//! Build a VM from its configuration, boot it, and wait for it to end.
//!
//! The order is chosen for first-light latency: files are opened (and checked) before any
//! KVM work; memory slots are registered before the in-kernel irqchip exists (registering
//! after KVM_CREATE_IRQCHIP costs several ms more on some hosts); nothing proportional to guest
//! memory is done eagerly.

use std::ffi::CStr;
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypervisor::kvm::KvmHypervisor;
use hypervisor::Hypervisor;

use crate::config::VmConfig;
use crate::interrupts::GsiRouter;
use crate::legacy;
use crate::memory;
use crate::pci_setup::{PciSegments, PciSetupError};
use crate::runloop;
use crate::seccomp::{self, SeccompError, ThreadKind};
use crate::timing::BootTimer;
use crate::vcpu::exit::Buses;
use crate::vcpu::{self, ExitSignal, ParkedVcpu, VcpuHandle, VcpuShared, VmExitReason};
use crate::vfio::{Passthrough, PassthroughError};
use crate::virtio_setup::{self, VirtioSetupError};

pub const KVM_PATH: &CStr = c"/dev/kvm";

/// An MSI to every LAPIC (physical destination 0xff: broadcast; x2APIC guests take it too,
/// KVM's broadcast quirk) in NMI delivery mode (4, data bits 8-10).
const NMI_MSI_ADDRESS: u64 = 0xfee0_0000 | (0xff << 12);
const NMI_MSI_DATA: u32 = 4 << 8;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open {what} {path}: {source}")]
    OpenFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{e}{hint}", e = .0, hint = kvm_hint(.0))]
    Hypervisor(#[from] hypervisor::HypervisorError),
    #[error("guest memory layout: {0}")]
    Layout(#[from] arch::layout::LayoutError),
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    #[error("loading the guest: {0}")]
    Boot(#[from] arch::BootError),
    #[error("building the ACPI tables: {0}")]
    Acpi(#[from] arch::AcpiError),
    #[error(transparent)]
    Smbios(#[from] arch::smbios::SmbiosError),
    #[error("setting up vCPU {id}: {source}")]
    Vcpu { id: u32, source: arch::RegsError },
    #[error("setting up vCPU {id}'s thread: {reason}")]
    VcpuThread { id: u32, reason: String },
    #[error(transparent)]
    Legacy(#[from] legacy::LegacyError),
    #[error(transparent)]
    Pci(#[from] PciSetupError),
    #[error(transparent)]
    Virtio(#[from] VirtioSetupError),
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
    #[error("event loop: {0}")]
    EventLoop(std::io::Error),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Preflight(#[from] crate::vfio::preflight::PreflightError),
    #[error(transparent)]
    Passthrough(#[from] PassthroughError),
    #[error("snapshot: {0}")]
    Snapshot(String),
    #[error("PCI hotplug: {0}")]
    Hotplug(#[from] crate::hotplug::HotplugError),
}

fn kvm_hint(e: &hypervisor::HypervisorError) -> &'static str {
    match e {
        hypervisor::HypervisorError::Open { source, .. } => match source.raw_os_error() {
            Some(libc::ENOENT) => " (is KVM enabled? load kvm_intel or kvm_amd)",
            Some(libc::EACCES) | Some(libc::EPERM) => {
                " (run as root or add the user to the 'kvm' group)"
            }
            _ => "",
        },
        _ => "",
    }
}

fn open(what: &'static str, path: &Path) -> Result<File, VmError> {
    let f = File::open(path).map_err(|source| VmError::OpenFile {
        what,
        path: path.display().to_string(),
        source,
    })?;
    match f.metadata() {
        Ok(m) if m.is_dir() => Err(VmError::OpenFile {
            what,
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory"),
        }),
        _ => Ok(f),
    }
}

/// KVM's supported CPUID, from the per-boot cache when it holds it (see cpuid_cache.rs).
fn supported_cpuid(hv: &KvmHypervisor) -> Result<Vec<hypervisor::CpuidEntry>, VmError> {
    use crate::cpuid_cache;
    let cache = cpuid_cache::default_dir().zip(cpuid_cache::CacheKey::current());
    if let Some((dir, key)) = &cache {
        if let Some(entries) = cpuid_cache::load(dir, key) {
            return Ok(entries);
        }
    }
    let entries = hv.supported_cpuid()?;
    if let Some((dir, key)) = &cache {
        if let Err(e) = cpuid_cache::store(dir, key, &entries) {
            log::debug!("not caching the supported CPUID in {}: {e}", dir.display());
        }
    }
    Ok(entries)
}

/// What a VMM started with `--api-socket` does before any VM configuration exists, so that
/// `vm.create` + `vm.boot` skip it: /dev/kvm opened, KVM's supported CPUID read, the seccomp
/// filters compiled, and the next VM's empty KVM VM and VMM thread created ahead
/// ([`Warm::prepare_next`], after each VM is gone).
pub struct Warm {
    hv: Arc<KvmHypervisor>,
    supported: Vec<hypervisor::CpuidEntry>,
    /// The vCPU filter, with passthrough's rules: a VM the API runs may get a passed-through
    /// device hot-added, and a filter cannot be widened once a thread runs under it.
    vcpu: seccomp::Compiled,
    vmm: seccomp::Compiled,
    spare: Option<(Arc<dyn hypervisor::Vm>, crate::handoff::WorkerThread)>,
}

impl Warm {
    pub fn prepare(mode: seccomp::SeccompMode) -> Result<Self, VmError> {
        let hv = Arc::new(KvmHypervisor::open(KVM_PATH)?);
        let supported = supported_cpuid(&hv)?;
        let vcpu = vcpu_filter(mode, true, true)?;
        let vmm = seccomp::Confinement::new(mode).compile(ThreadKind::Vmm)?;
        vcpu::install_kick_handler().map_err(VmError::Thread)?;
        let mut warm = Warm {
            hv,
            supported,
            vcpu,
            vmm,
            spare: None,
        };
        warm.prepare_next();
        Ok(warm)
    }

    /// Create the next VM's (empty) KVM VM and its VMM thread now, off the boot path. A
    /// failure here is not an error: the boot then creates them itself.
    pub fn prepare_next(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let thread = crate::handoff::WorkerThread::spawn("vmm-events");
        match (self.hv.create_vm(), thread) {
            (Ok(vm), Ok(t)) => self.spare = Some((vm, t)),
            (Err(e), _) => log::debug!("no VM created ahead: {e}"),
            (_, Err(e)) => log::debug!("no VMM thread started ahead: {e}"),
        }
    }
}

/// The vCPU filter; `snapshots`: with the ioctls a parked vCPU saves its state with (VMs
/// started through the API); `vfio`: with the rules passthrough adds.
fn vcpu_filter(
    mode: seccomp::SeccompMode,
    snapshots: bool,
    vfio: bool,
) -> Result<seccomp::Compiled, VmError> {
    let mut c = seccomp::Confinement::new(mode);
    if snapshots {
        crate::snapshot::seccomp::add_vcpu_rules(&mut c.extra);
    }
    if vfio {
        crate::vfio::seccomp::add_vcpu_rules(&mut c.extra);
    }
    Ok(c.compile(ThreadKind::Vcpu)?)
}

/// Guest RAM from a snapshot's memory file; its regions must be this VM's layout.
fn restored_memory(
    r: &Restore<'_>,
    layout: &arch::layout::MemoryLayout,
) -> Result<vm_memory::GuestMemoryMmap, VmError> {
    let want: Vec<(u64, u64)> = layout
        .ram_ranges()
        .iter()
        .map(|&(a, s)| (a.0, s as u64))
        .collect();
    let have: Vec<(u64, u64)> = r.state.memory.iter().map(|m| (m.gpa, m.size)).collect();
    if want != have {
        return Err(VmError::Snapshot(format!(
            "its memory regions {have:x?} are not this VM's {want:x?}"
        )));
    }
    let path = crate::snapshot::format::memory_file(r.dir);
    let file = open("snapshot memory file", &path)?;
    let ranges: Vec<_> = r
        .state
        .memory
        .iter()
        .map(|m| (vm_memory::GuestAddress(m.gpa), m.size as usize, m.offset))
        .collect();
    Ok(memory::from_file(&file, &ranges, r.prefault)?)
}

/// Where vCPU 0 runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vcpu0 {
    /// On the thread that built the VM, which becomes vCPU 0 (the CLI: no hand-off between
    /// the configured vCPU and its first KVM_RUN).
    Caller,
    /// On a thread of its own, like the others (the API: the building thread serves requests).
    Thread,
}

/// A VM built and ready to enter the guest: memory, devices and configured vCPUs (whose
/// threads are started and confined, waiting for their vCPU).
struct Built {
    hotplug: Option<crate::hotplug::Hotplug>,
    hv: Arc<KvmHypervisor>,
    vm: Arc<dyn hypervisor::Vm>,
    mem: vm_memory::GuestMemoryMmap,
    passthrough: Option<Passthrough>,
    devices: legacy::LegacyDevices,
    virtio: virtio_setup::VirtioDevices,
    /// vCPU 0 first.
    vcpus: Vec<Box<dyn hypervisor::VcpuX86_64>>,
    /// One per vCPU that runs on a thread of its own, in vCPU order.
    parked: Vec<ParkedVcpu>,
    shared: VcpuShared,
    vcpu_filter: seccomp::Compiled,
    vmm_filter: seccomp::Compiled,
    vmm_thread: crate::handoff::WorkerThread,
    timer: Arc<BootTimer>,
    serial: crate::config::SerialConfig,
}

/// Boot the VM described by `cfg` on /dev/kvm and run it to the end, vCPU 0 on this thread.
pub fn run(cfg: &VmConfig, start: Instant) -> Result<VmExitReason, VmError> {
    let built = build(cfg, start, None, Vcpu0::Caller, false, None)?;
    built.run_here()
}

/// Boot the VM described by `cfg` with what `warm` prepared, every vCPU on a thread of its
/// own; `on_end` is called (on the VMM thread) when the guest resets, powers off or fails.
/// `reboot`: the VM ran before (its serial file is appended to, not truncated).
pub fn start(
    cfg: &VmConfig,
    warm: &mut Warm,
    reboot: bool,
    on_end: Box<dyn FnOnce(Result<VmExitReason, VmError>) + Send>,
) -> Result<RunningVm, VmError> {
    build(cfg, Instant::now(), Some(warm), Vcpu0::Thread, reboot, None)?.start(on_end, false)
}

/// `vmm --restore …` without an API: build the VM `cfg` describes from the snapshot and run
/// it to its end with vCPU 0 on this thread, as [`run`] does a booted one (no hand-off to
/// another thread before the guest runs again).
pub fn run_restored(
    cfg: &VmConfig,
    restore: Restore<'_>,
    start: Instant,
) -> Result<VmExitReason, VmError> {
    build(cfg, start, None, Vcpu0::Caller, true, Some(restore))?.run_here()
}

/// A snapshot to build a VM from instead of booting its kernel (see snapshot/).
pub struct Restore<'a> {
    pub state: &'a crate::snapshot::State,
    /// The snapshot's directory (its memory file).
    pub dir: &'a std::path::Path,
    /// Read all of guest memory in now rather than as the guest touches it.
    pub prefault: bool,
}

/// Build the VM `cfg` describes from the snapshot `restore` with what `warm` prepared: guest
/// memory mapped from the snapshot's file, every vCPU and the VM's interrupt controllers, PIT,
/// clock and serial port as they were saved. It starts paused (its vCPUs parked) unless
/// `resume`.
pub fn start_restored(
    cfg: &VmConfig,
    warm: &mut Warm,
    restore: Restore<'_>,
    resume: bool,
    on_end: Box<dyn FnOnce(Result<VmExitReason, VmError>) + Send>,
) -> Result<RunningVm, VmError> {
    build(
        cfg,
        Instant::now(),
        Some(warm),
        Vcpu0::Thread,
        true,
        Some(restore),
    )?
    .start(on_end, !resume)
}

fn build(
    cfg: &VmConfig,
    start: Instant,
    mut warm: Option<&mut Warm>,
    vcpu0: Vcpu0,
    reboot: bool,
    restore: Option<Restore<'_>>,
) -> Result<Built, VmError> {
    let timer = Arc::new(BootTimer::new(start));
    // A VM the API runs can have devices added and removed (ACPI PCI hotplug); the command
    // line's cannot (nothing could ask), so its DSDT and port bus stay as they were.
    let hotplug = matches!(vcpu0, Vcpu0::Thread);
    if let Some(r) = &restore {
        if r.state.vcpus.len() != cfg.cpus.boot as usize {
            return Err(VmError::Snapshot(format!(
                "it holds {} vCPUs, its configuration says {}",
                r.state.vcpus.len(),
                cfg.cpus.boot
            )));
        }
    }
    // Passed-through devices are checked before anything is opened: a host that is not set
    // up for VFIO gets one line saying what to fix, with nothing bound, opened or mapped.
    // (No probing of host facts on the boot path of a VM without passthrough.)
    let passthrough = if cfg.devices.is_empty() {
        Vec::new()
    } else {
        crate::vfio::preflight::check(
            &cfg.devices,
            cfg.memory.size,
            &crate::vfio::preflight::HostFacts::probe(),
        )?
    };
    // A restored VM's kernel is in its memory already.
    let mut kernel = match restore {
        Some(_) => None,
        None => Some(open("kernel", &cfg.kernel)?),
    };
    let mut initramfs = match restore {
        Some(_) => None,
        None => cfg
            .initramfs
            .as_deref()
            .map(|p| open("initramfs", p))
            .transpose()?,
    };

    // SIGTERM/SIGINT from here on mean "shut the guest down" (see signals.rs); under the API
    // they mean "shut the VMM down" and the API thread watches them.
    if warm.is_none() {
        crate::signals::shutdown_events().map_err(VmError::EventLoop)?;
    }
    let hv = match warm.as_deref() {
        Some(w) => w.hv.clone(),
        None => Arc::new(KvmHypervisor::open(KVM_PATH)?),
    };
    // The VMM thread starts now. Until it is handed the running VM it takes setup work off
    // this thread's path: once the irqchip exists, it compiles the seccomp filters, reads
    // KVM's supported CPUID (from the per-boot cache) and loads the kernel, initramfs, boot
    // and ACPI tables into guest memory, while this thread creates the PIT, the devices and
    // vCPU 0; this thread collects each result where it needs it. The jobs are queued only
    // after memory registration and the irqchip: both wait for grace periods, and with a
    // thread busy on the other CPU they were several times slower (measured with
    // first_light's phases: the irqchip phase went from 0.06 to 0.23 ms with the kernel
    // loading next to it, memory registration from 0.16 to 0.29 ms with the filters).
    // (A warm VMM has the filters and the CPUID already.)
    let spin = crate::handoff::spin_budget();
    let spare = warm.as_mut().and_then(|w| w.spare.take());
    let (vm, vmm_thread) = match spare {
        Some((vm, thread)) => (Some(vm), thread),
        None => (
            None,
            crate::handoff::WorkerThread::spawn("vmm-events").map_err(VmError::Thread)?,
        ),
    };
    let warm = warm.map(|w| &*w);
    let phys_bits = arch::layout::host_phys_bits();
    let layout = Arc::new(arch::layout::MemoryLayout::new(cfg.memory.size, phys_bits)?);
    // PCI segments after 0 take their shares of the MMIO windows; on segment 0, passed-through
    // devices placed in a guest NUMA node sit under an expander host bridge per node, whose
    // windows are cut from the main bridge's.
    let (segment0, segments) = layout.split_for_segments(&cfg.segment_weights());
    let segments: Vec<_> = segments
        .into_iter()
        .map(|mut s| {
            s.node = cfg.segment_node(s.id);
            s.last_bus = root_port_buses(cfg, s.id, arch::pci_segments::SEGMENT_BUSES - 1);
            s
        })
        .collect();
    let (pci_layout, expanders) = segment0.split_for_expanders(&cfg.device_nodes());
    let vm = match vm {
        Some(vm) => vm,
        None => hv.create_vm()?,
    };
    timer.phase("vm_created");

    let mem = match &restore {
        None => memory::create(&layout.ram_ranges(), &cfg.memory)?,
        Some(r) => restored_memory(r, &layout)?,
    };
    // Guest RAM as zones (`--memory-zone`): each on its host NUMA node, before the guest
    // touches it.
    let ram: Vec<(u64, u64)> = layout
        .ram_ranges()
        .iter()
        .map(|&(a, l)| (a.0, l as u64))
        .collect();
    for (z, gpa, len) in crate::config::numa::zone_pieces(&cfg.memory_zones, &ram) {
        if let Some(node) = cfg.memory_zones[z].host_numa_node {
            memory::bind_to_host_node(&mem, gpa, len, node)?;
        }
    }
    let ram_slots = memory::register(vm.as_ref(), &mem)?.len() as u32;
    timer.phase("memory_mapped");

    // VFIO devices open now, and guest RAM starts being DMA-mapped on the vfio thread while
    // the rest of the VM is built and the guest boots (see vfio/dma.rs).
    let exit = Arc::new(ExitSignal::new().map_err(VmError::EventLoop)?);
    let mut passthrough = Passthrough::open(
        &vm,
        &passthrough,
        &cfg.devices,
        &mem,
        ram_slots,
        crate::vfio::VfioThreadContext {
            timer: timer.clone(),
            exit: exit.clone(),
            seccomp: cfg.seccomp,
            vcpus: cfg.cpus.boot,
        },
    )?;

    vm.set_tss_address(arch::layout::KVM_TSS_START)?;
    vm.create_irqchip()?;
    type Filters = (
        seccomp::Compiled,
        seccomp::Compiled,
        Vec<hypervisor::CpuidEntry>,
    );
    let filters: std::sync::mpsc::Receiver<Result<Filters, VmError>> = match warm {
        Some(w) => {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let _ = tx.send(Ok((w.vcpu.clone(), w.vmm.clone(), w.supported.clone())));
            rx
        }
        None => {
            let mode = cfg.seccomp;
            let vfio = !cfg.devices.is_empty();
            let hv = hv.clone();
            vmm_thread.submit(move || -> Result<_, VmError> {
                let vcpu = vcpu_filter(mode, false, vfio)?;
                let vmm = seccomp::Confinement::new(mode).compile(ThreadKind::Vmm)?;
                Ok((vcpu, vmm, supported_cpuid(&hv)?))
            })
        }
    };
    let loaded = kernel.take().map(|mut kernel| {
        let (mem, layout, timer) = (mem.clone(), layout.clone(), timer.clone());
        let (num_vcpus, cmdline, serial) = (cfg.cpus.boot, cfg.cmdline.clone(), cfg.serial.clone());
        let smbios = cfg.platform.smbios(num_vcpus);
        let numa = crate::config::numa::acpi_nodes(&cfg.memory_zones, &cfg.numa, &ram);
        let (expanders, segments) = (expanders.clone(), segments.clone());
        let segment0_node = cfg.segment_node(0);
        let pci_buses = root_port_buses(cfg, 0, u16::from(arch::layout::EXPANDER_FIRST_BUS - 1));
        vmm_thread.submit(move || -> Result<arch::EntryPoint, VmError> {
            let entry = arch::load_guest_with_rsdp(
                &mem,
                arch::BootSetup {
                    kernel: &mut kernel,
                    initramfs: initramfs.as_mut(),
                    cmdline: &cmdline,
                    num_vcpus,
                    layout: &layout,
                },
                Some(arch::AcpiTables::RSDP_ADDR),
            )?;
            arch::acpi::build_acpi_tables_numa(
                &arch::AcpiConfig {
                    segments: &segments,
                    segment0_node,
                    pci_buses,
                    num_vcpus,
                    layout: &pci_layout,
                    pm: legacy::acpi_pm_ports(),
                    serial: legacy::acpi_serial(&serial),
                    power_button_gsi: Some(legacy::POWER_BUTTON_GSI),
                    pci_hotplug: hotplug.then(crate::hotplug::acpi_config),
                },
                &numa,
                &expanders,
            )?
            .write(&mem)?;
            arch::smbios::setup_smbios(&mem, &smbios)?;
            timer.phase("kernel_loaded");
            Ok(entry)
        })
    });
    timer.phase("irqchip_created");
    vm.create_pit()?;
    // A restored VM's interrupt controllers, PIT and clock, before any vCPU exists.
    if let Some(r) = &restore {
        vm.restore_state(&r.state.vm.to_state().map_err(VmError::Snapshot)?)?;
    }
    let serial_state = restore
        .as_ref()
        .and_then(|r| r.state.serial.as_ref())
        .map(|s| s.to_state());

    let buses = Arc::new(Buses::default());
    let on_failure = crate::vcpu::exit::ClearOnDrop::new(&buses);
    let t = timer.clone();
    let devices = legacy::setup(
        vm.as_ref(),
        &buses,
        legacy::SerialSetup {
            cfg: &cfg.serial,
            append: reboot,
            state: serial_state.as_ref(),
        },
        (layout.ram_below_4g, layout.ram_above_4g),
        exit.clone(),
        start,
        Box::new(move || t.phase("first_serial_byte")),
    )?;
    if let Some(c) = restore.as_ref().and_then(|r| r.state.cmos.as_ref()) {
        devices
            .cmos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .restore(c.index, &c.data)
            .map_err(VmError::Snapshot)?;
    }
    let pci_hotplug = if hotplug {
        Some(crate::hotplug::PciHotplug::setup(vm.as_ref(), &buses)?)
    } else {
        None
    };
    let router = Arc::new(GsiRouter::new(vm.clone()));
    // A VM that can have devices hot-added maps passed-through BARs through one mapper from
    // the start (its memory slots come after guest RAM's).
    let mapper = match (&passthrough, hotplug) {
        (Some(p), _) => Some(p.bar_mapper()),
        (None, true) => Some(Arc::new(crate::vfio::BarMapper::new(
            vm.clone(),
            Arc::new(memory::SlotAllocator::new(ram_slots)),
        ))),
        (None, false) => None,
    };
    let hot_mapper = mapper.clone();
    let mut pci = PciSegments::with_bar_mapper(vm.clone(), router, &buses, &pci_layout, mapper)?;
    pci.add_segments(&buses, &segments)?;
    pci.add_expanders(&expanders);
    pci.reserve_slots(&cfg.pci_slots_asked())?;
    let virtio = virtio_setup::setup(cfg, &pci, vm.clone(), &mem)?;
    if let Some(r) = &restore {
        virtio_setup::restore(&virtio, &pci, &r.state.virtio).map_err(VmError::Snapshot)?;
    }
    if let Some(p) = passthrough.as_mut() {
        p.attach_all(&pci)?;
    }

    let gone = || VmError::Thread(std::io::Error::other("the VMM thread ended during setup"));
    let (vcpu_filter, vmm_filter, supported) =
        crate::handoff::recv(&filters, spin).map_err(|_| gone())??;
    // The vCPUs' threads start and confine themselves while this one configures the vCPUs;
    // under the CLI, vCPU 0 runs on this thread.
    let first_thread = match vcpu0 {
        Vcpu0::Caller => 1,
        Vcpu0::Thread => 0,
    };
    let mut parked = Vec::new();
    for id in first_thread..cfg.cpus.boot {
        let filter = vcpu_filter.clone();
        parked.push(ParkedVcpu::spawn(id, move || Ok(filter)).map_err(VmError::Thread)?);
    }
    type Loaded = std::sync::mpsc::Receiver<Result<arch::EntryPoint, VmError>>;
    let configure = |id: u32, entry: Option<&Loaded>| {
        let vcpu = vm.create_vcpu(id)?;
        if let Some(r) = &restore {
            let saved = r.state.vcpus.get(id as usize).ok_or_else(|| {
                VmError::Snapshot(format!("the snapshot has no state for vCPU {id}"))
            })?;
            let saved = saved.to_state().map_err(VmError::Snapshot)?;
            // The guest's features must be this host's: the table a boot here would set, as
            // this host's KVM presents it.
            let here = arch::cpuid::build_cpuid(
                &supported,
                &arch::cpuid::CpuidConfig {
                    vcpu_id: id,
                    num_vcpus: cfg.cpus.boot,
                    phys_bits: layout.phys_bits,
                },
            );
            // As this host's KVM presents it (it may adjust what is set).
            vcpu.set_cpuid(&here)?;
            match vcpu.get_cpuid() {
                Ok(here) => {
                    let had = hypervisor::kvm::saved_cpuid(&saved)?;
                    crate::snapshot::cpu::check_features(&had, &here).map_err(VmError::Snapshot)?;
                }
                Err(e) => log::debug!("snapshot: CPU features not checked: {e}"),
            }
            vcpu.restore_state(&saved)?;
            return Ok::<_, VmError>(vcpu);
        }
        // vCPU 0 needs the kernel's entry point: the VMM thread has normally found it by the
        // time the vCPU exists.
        let entry = match entry {
            Some(loaded) => Some(crate::handoff::recv(loaded, spin).map_err(|_| gone())??),
            None => None,
        };
        arch::configure_vcpu(
            vcpu.as_ref(),
            id,
            cfg.cpus.boot,
            layout.phys_bits,
            &supported,
            entry.as_ref(),
            &mem,
        )
        .map_err(|source| VmError::Vcpu { id, source })?;
        Ok::<_, VmError>(vcpu)
    };
    let mut vcpus = vec![configure(0, loaded.as_ref())?];
    for id in 1..cfg.cpus.boot {
        vcpus.push(configure(id, None)?);
    }
    timer.phase("vcpus_configured");

    // Every vCPU thread is confined before any enters the guest: a thread whose setup failed
    // ends the VM before a single guest instruction has run.
    for thread in &parked {
        thread.wait_ready().map_err(|reason| VmError::VcpuThread {
            id: thread.id(),
            reason,
        })?;
    }
    on_failure.disarm();
    Ok(Built {
        hotplug: pci_hotplug.map(|controller| crate::hotplug::Hotplug {
            controller,
            pci,
            seccomp: cfg.seccomp,
            activator: None,
            changed: false,
            mapper: hot_mapper,
        }),
        hv,
        vm,
        mem,
        passthrough,
        devices,
        virtio,
        vcpus,
        parked,
        shared: VcpuShared::new(buses, exit),
        vcpu_filter,
        vmm_filter,
        vmm_thread,
        timer,
        serial: cfg.serial.clone(),
    })
}

/// Buses segment `segment`'s host bridge describes beyond bus 0: one for each passed-through
/// device on it that may go behind a root port (asked for, or left to the device's class:
/// attach decides; a spare bus costs the guest a few config reads, a missing one its device),
/// at most `most`. Devices under an expander host bridge are on its buses instead.
fn root_port_buses(cfg: &VmConfig, segment: u16, most: u16) -> u8 {
    let n = cfg
        .devices
        .iter()
        .filter(|d| d.pci_segment == segment && d.root_port != Some(false) && d.numa_node.is_none())
        .count();
    n.min(usize::from(most)) as u8
}

/// The VMM thread's work once the guest runs: confine itself, then serve the guest's events
/// until the VM ends (`signals`: SIGTERM/SIGINT press the power button, the CLI's meaning).
fn serve_guest(
    filter: &seccomp::Compiled,
    exit: &Arc<ExitSignal>,
    devices: &legacy::LegacyDevices,
    virtio: &virtio_setup::VirtioDevices,
    serial: &crate::config::SerialConfig,
    signals: bool,
) -> Result<VmExitReason, VmError> {
    filter.install()?;
    runloop::wait_for_exit(exit, devices, virtio, serial, signals).map_err(VmError::EventLoop)
}

impl Built {
    /// Start each vCPU of `vcpus` on its parked thread (in order; vCPU 0's notes first light).
    fn start_threads(
        vcpus: impl Iterator<Item = Box<dyn hypervisor::VcpuX86_64>>,
        parked: Vec<ParkedVcpu>,
        shared: &VcpuShared,
        timer: &Arc<BootTimer>,
    ) -> Vec<VcpuHandle> {
        vcpus
            .zip(parked)
            .map(|(v, thread)| {
                let first: Option<Box<dyn FnOnce() + Send>> = if thread.id() == 0 {
                    let t = timer.clone();
                    Some(Box::new(move || t.phase("first_kvm_run")))
                } else {
                    None
                };
                thread.start(v, shared.clone(), first)
            })
            .collect()
    }

    /// The CLI: this thread becomes vCPU 0 and runs the guest to its end.
    fn run_here(self) -> Result<VmExitReason, VmError> {
        let Built {
            hotplug: _,
            hv: _,
            vm: _vm,
            mem,
            mut passthrough,
            devices,
            virtio,
            vcpus,
            parked,
            shared,
            vcpu_filter,
            vmm_filter,
            vmm_thread,
            timer,
            serial,
        } = self;
        let mut vcpus = vcpus.into_iter();
        let mut vcpu0 = vcpus.next().expect("a VM has at least one vCPU");
        let handles = Self::start_threads(vcpus, parked, &shared, &timer);

        // The VMM thread serves the running guest (stdin, signals, virtio activation, the
        // VM's end) under its own filter; this thread becomes vCPU 0.
        let caller = vcpu::CallerVcpu::new().map_err(VmError::Thread)?;
        let vmm_thread = {
            let (shared, caller) = (shared.clone(), caller.clone());
            vmm_thread.finish(move || {
                let reason =
                    serve_guest(&vmm_filter, &shared.exit, &devices, &virtio, &serial, true);
                // Whatever ended the event loop, the vCPUs leave the guest before memory goes.
                let timeout = Duration::from_secs(2);
                vcpu::stop_all(handles, Some(&caller), &shared.stop, timeout);
                reason
            })
        };
        crate::signals::block_shutdown_signals();
        let t = timer.clone();
        let first: Box<dyn FnOnce()> = Box::new(move || t.phase("first_kvm_run"));
        match vcpu_filter.install() {
            Ok(()) => {
                vcpu::run_loop(vcpu0.as_mut(), &shared, Some(first));
            }
            Err(e) => shared
                .exit
                .report(VmExitReason::Fatal(format!("vCPU 0: {e}"))),
        }
        caller.done();
        drop(vcpu0);
        let (events, events_thread) = vmm_thread;
        let reason = events.recv().unwrap_or_else(|_| {
            Err(VmError::Thread(std::io::Error::other(
                "the VMM thread ended abnormally",
            )))
        });
        let _ = events_thread.join();
        // Devices stop DMA (reset, unmapped) before guest memory goes away.
        if let Some(p) = passthrough.as_mut() {
            p.shutdown();
        }
        // Keep guest memory alive until every vCPU has left the guest.
        drop(mem);
        reason
    }

    /// The API: every vCPU on its own thread; the VMM thread serves the guest and calls
    /// `on_end` when it ends. The caller keeps control through the returned [`RunningVm`].
    fn start(
        self,
        on_end: Box<dyn FnOnce(Result<VmExitReason, VmError>) + Send>,
        paused: bool,
    ) -> Result<RunningVm, VmError> {
        let Built {
            mut hotplug,
            hv,
            vm,
            mem,
            passthrough,
            devices,
            virtio,
            vcpus,
            parked,
            shared,
            vcpu_filter: _,
            vmm_filter,
            vmm_thread,
            timer,
            serial,
        } = self;
        let num_vcpus = vcpus.len() as u32;
        let pci_addresses = virtio
            .addresses
            .iter()
            .copied()
            .chain(passthrough.iter().flat_map(Passthrough::addresses))
            .collect();
        let counters = virtio.counters.clone();
        let transports = virtio.transports.clone();
        if let Some(h) = hotplug.as_mut() {
            h.activator = virtio.activator.clone();
        }
        let serial_device = devices.serial.clone();
        let cmos = devices.cmos.clone();
        // A restored VM starts paused: its vCPUs park before their first KVM_RUN.
        if paused {
            shared.pause.raise();
        }
        let handles = Self::start_threads(vcpus.into_iter(), parked, &shared, &timer);
        let power_button = devices.power_button.clone();
        let events = {
            let exit = shared.exit.clone();
            vmm_thread.finish(move || {
                let reason = serve_guest(&vmm_filter, &exit, &devices, &virtio, &serial, false);
                on_end(reason);
                // The devices (and their threads) go with this thread; the vCPUs are
                // stopped by whoever holds the RunningVm.
                drop((devices, virtio));
            })
        };
        Ok(RunningVm {
            hotplug,
            _vm: vm,
            mem,
            passthrough,
            handles,
            shared,
            power_button,
            events: Some(events.1),
            num_vcpus,
            pci_addresses,
            counters,
            transports,
            serial: serial_device,
            cmos,
            hv,
        })
    }
}

fn no_hotplug() -> VmError {
    VmError::Hotplug(crate::hotplug::HotplugError::Unavailable)
}

/// A VM whose vCPUs run on their own threads, controlled by the thread holding it (the API's
/// control loop): pause, resume, the power button, stop.
pub struct RunningVm {
    /// Adding and removing devices (`vm.add-*`, `vm.remove-device`).
    hotplug: Option<crate::hotplug::Hotplug>,
    _vm: Arc<dyn hypervisor::Vm>,
    mem: vm_memory::GuestMemoryMmap,
    passthrough: Option<Passthrough>,
    handles: Vec<VcpuHandle>,
    shared: VcpuShared,
    power_button: Arc<dyn devices::Interrupt>,
    events: Option<std::thread::JoinHandle<()>>,
    num_vcpus: u32,
    /// Where the virtio devices (disks, nets, rng, console) and then the passed-through
    /// devices are on the PCI bus.
    pci_addresses: Vec<pci::PciAddress>,
    /// The devices' I/O counters, by device id.
    counters: Vec<(String, Arc<devices::virtio::counters::Counters>)>,
    /// The virtio transports, whose state a snapshot saves.
    transports: Vec<Arc<std::sync::Mutex<crate::virtio_pci::VirtioPciDevice>>>,
    /// COM1, whose registers a snapshot saves.
    serial: Option<Arc<std::sync::Mutex<devices::legacy::Serial>>>,
    /// For the MSR list a snapshot saves.
    hv: Arc<KvmHypervisor>,
    /// The RTC/CMOS registers a snapshot saves.
    cmos: Arc<std::sync::Mutex<devices::legacy::Cmos>>,
}

impl RunningVm {
    /// Stop every vCPU outside the guest; returns once all are parked (or gone).
    pub fn pause(&self) -> Result<(), VmError> {
        self.shared.pause.raise();
        let n = self.num_vcpus;
        let handles = &self.handles;
        let all = self.shared.pause.wait_all_parked(
            Duration::from_secs(2),
            || handles.iter().for_each(VcpuHandle::kick),
            |parked| parked + handles.iter().filter(|h| h.is_finished()).count() as u32 >= n,
        );
        if all {
            Ok(())
        } else {
            self.shared.pause.lower();
            Err(VmError::Thread(std::io::Error::other(
                "a vCPU did not leave the guest within 2 s: the VM was not paused",
            )))
        }
    }

    pub fn resume(&self) {
        self.shared.pause.lower();
    }

    /// Press the guest's ACPI power button.
    pub fn power_button(&self) -> Result<(), VmError> {
        self.power_button
            .trigger()
            .map_err(|e| VmError::EventLoop(std::io::Error::other(e.to_string())))
    }

    /// A non-maskable interrupt to every vCPU, as an MSI in NMI delivery mode to the
    /// broadcast destination: KVM's LAPICs take it whether or not a vCPU is in the guest (a
    /// parked one on its next entry), with no vCPU thread to stop. Linux reports one it did
    /// not expect ("NMI received for unknown reason") or panics on it (`unknown_nmi_panic`, a
    /// way to get a crash dump of a hung guest).
    pub fn nmi(&self) -> Result<(), VmError> {
        Ok(self._vm.signal_msi(NMI_MSI_ADDRESS, NMI_MSI_DATA)?)
    }

    /// Grow the `position`-th virtio device (in `DeviceIds::virtio` order: a disk) to
    /// `bytes`; the guest's driver is told with a config-change interrupt.
    pub fn resize_virtio(&self, position: usize, bytes: u64) -> Result<(), String> {
        let t = self
            .transports
            .get(position)
            .ok_or_else(|| format!("no virtio device at position {position}"))?;
        crate::virtio_setup::lock(t).resize(bytes)
    }

    /// Guest RAM in bytes.
    pub fn memory_size(&self) -> u64 {
        use vm_memory::GuestMemoryBackend;
        self.mem.iter().map(vm_memory::GuestMemoryRegion::len).sum()
    }

    /// Write this VM, which must be paused, to the snapshot directory `dir` (created if
    /// missing): `config` (its `vm.create` configuration), each vCPU's state (saved on its
    /// own parked thread), the VM's interrupt controllers, PIT and clock, COM1 and guest RAM.
    /// The caller refuses VMs with passed-through devices; virtio devices pause meanwhile.
    pub fn snapshot(
        &self,
        dir: &std::path::Path,
        config: serde_json::Value,
    ) -> Result<(), crate::snapshot::SnapshotError> {
        use crate::snapshot::format::SnapshotError;
        if !self.shared.pause.is_raised() {
            return Err(SnapshotError::Unsupported("it is not paused".into()));
        }
        // Guest RAM and CPU state are the guest's secrets: a new directory is the owner's only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SnapshotError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        // The virtio devices stop where they stand (their workers joined: no DMA into guest
        // memory and no interrupt while the vCPUs, interrupt controllers and memory are saved)
        // and carry on once all is written, whatever the outcome.
        let mut saved = Vec::new();
        let mut failed = None;
        for t in &self.transports {
            match crate::virtio_setup::lock(t).save() {
                Ok(s) => saved.push(s),
                Err(e) => {
                    failed = Some(SnapshotError::Save(format!("a virtio device: {e}")));
                    break;
                }
            }
        }
        let result = match failed {
            Some(e) => Err(e),
            None => self.write_snapshot(dir, config, &saved),
        };
        for (t, s) in self.transports.iter().zip(&saved) {
            crate::virtio_setup::lock(t).resume_after_save(s);
        }
        result
    }

    fn write_snapshot(
        &self,
        dir: &std::path::Path,
        config: serde_json::Value,
        virtio: &[crate::virtio_pci::state::VirtioPciState],
    ) -> Result<(), crate::snapshot::SnapshotError> {
        use crate::snapshot::format::{self, Parts, SnapshotError};
        use hypervisor::Hypervisor;
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        let msrs = self
            .hv
            .msr_index_list()
            .map_err(|e| SnapshotError::Save(e.to_string()))?;
        let vcpus = self
            .shared
            .pause
            .save_all(self.num_vcpus, &msrs, Duration::from_secs(5))
            .map_err(SnapshotError::Save)?;
        let vm = self
            ._vm
            .save_state()
            .map_err(|e| SnapshotError::Save(e.to_string()))?;
        let serial = self.serial.as_ref().map(|s| {
            format::SerialRegs::from(&s.lock().unwrap_or_else(|e| e.into_inner()).state())
        });
        // SAFETY: every region is a live mapping of its length, owned by `self.mem`; the
        // vCPUs are parked, the virtio devices paused and passed-through devices refused by
        // the caller, so nothing writes guest memory while it is read.
        let regions: Vec<format::Region<'_>> = self
            .mem
            .iter()
            .map(|r| {
                let bytes = unsafe { std::slice::from_raw_parts(r.as_ptr(), r.len() as usize) };
                // Private anonymous RAM: a page never backed was never written. Not so for a
                // restored VM's RAM (mapped from a file, whose pages hold data before they are
                // touched) nor for shared RAM (a swapped-out shmem page looks never backed in
                // pagemap): every page of those is read.
                let anonymous = r.file_offset().is_none() && r.flags() & libc::MAP_SHARED == 0;
                format::Region {
                    gpa: r.start_addr().0,
                    bytes,
                    touched: anonymous
                        .then(|| format::touched_pages(r.as_ptr(), bytes.len()))
                        .flatten(),
                }
            })
            .collect();
        let memory = format::write_memory(dir, &regions)?;
        format::State {
            format_version: format::FORMAT_VERSION,
            vmm_version: env!("CARGO_PKG_VERSION").into(),
            config,
            vm: Parts::from(&vm),
            vcpus: vcpus.iter().map(Parts::from).collect(),
            serial,
            cmos: {
                let (index, data) = self.cmos.lock().unwrap_or_else(|e| e.into_inner()).state();
                Some(format::CmosRegs { index, data })
            },
            virtio: virtio.to_vec(),
            memory,
        }
        .write(dir)
    }

    /// Each device's counters now (`vm.counters`), by device id.
    pub fn counters(&self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        self.counters
            .iter()
            .map(|(id, c)| (id.clone(), c.read()))
            .collect()
    }

    /// The PCI addresses of the virtio devices, then of the passed-through ones.
    pub fn pci_addresses(&self) -> &[pci::PciAddress] {
        &self.pci_addresses
    }

    /// Whether devices can be added and removed (a VM the API runs).
    pub fn can_hotplug(&self) -> bool {
        self.hotplug.is_some()
    }

    /// Hot-add a virtio device as the `position`-th virtio device (its place in
    /// `DeviceIds::virtio` order, which `pci_addresses` and the transports follow), with its
    /// counters under `id`, on bus 0 of PCI segment `segment`, in `slot` (`pci_device_id`) or
    /// the lowest free one; the guest is told. Returns where it is on the bus.
    pub fn hot_add_virtio(
        &mut self,
        position: usize,
        id: &str,
        (segment, slot): (u16, Option<u8>),
        device: Box<dyn devices::virtio::VirtioDevice>,
        kind: seccomp::DeviceKind,
    ) -> Result<pci::PciAddress, VmError> {
        let hp = self.hotplug.as_mut().ok_or_else(no_hotplug)?;
        let activator = hp.activator().map_err(VmError::Thread)?;
        let counters = device.counters();
        let (address, transport) = crate::virtio_setup::Attach {
            pci: &hp.pci,
            vm: self._vm.clone(),
            mem: &self.mem,
            activator,
            seccomp: hp.seccomp,
        }
        .attach(device, kind, (segment, slot))?;
        hp.changed = true;
        let position = position.min(self.transports.len());
        self.pci_addresses.insert(position, address);
        self.transports.insert(position, transport);
        if let Some(c) = counters {
            self.counters.push((id.to_string(), c));
        }
        hp.controller.announce_add(address)?;
        Ok(address)
    }

    /// Hot-remove the `position`-th virtio device (as in [`hot_add_virtio`]): the guest is
    /// asked to release it and given `timeout`; `Ok(false)` when it did not (the device stays
    /// as it was). Once ejected it leaves the bus, its BARs are freed and it is stopped.
    ///
    /// [`hot_add_virtio`]: Self::hot_add_virtio
    pub fn hot_remove_virtio(
        &mut self,
        position: usize,
        id: &str,
        timeout: Duration,
    ) -> Result<bool, VmError> {
        let hp = self.hotplug.as_mut().ok_or_else(no_hotplug)?;
        let (Some(&address), Some(transport)) = (
            self.pci_addresses.get(position),
            self.transports.get(position).cloned(),
        ) else {
            return Err(VmError::Hotplug(crate::hotplug::HotplugError::NotFound(
                id.to_string(),
            )));
        };
        if !hp.eject_and_unplug(address, timeout)? {
            return Ok(false);
        }
        crate::virtio_setup::lock(&transport).unplug();
        self.pci_addresses.remove(position);
        self.transports.remove(position);
        self.counters.retain(|(i, _)| i != id);
        log::info!("{id} at {address} removed");
        Ok(true)
    }

    /// Hot-add the passed-through device `cfg` (checked as `--device` is). The first one
    /// opens the VM's VFIO container and its `vfio` thread maps guest RAM for DMA while the
    /// guest runs (its driver's first bus-master enable waits for that, as at boot); later
    /// ones join that container and its mappings. It comes after every other device in
    /// `pci_addresses`.
    pub fn hot_add_vfio(
        &mut self,
        id: &str,
        cfg: &crate::config::DeviceConfig,
    ) -> Result<pci::PciAddress, VmError> {
        let ram = self.memory_size();
        let hp = self.hotplug.as_mut().ok_or_else(no_hotplug)?;
        let checked = crate::vfio::preflight::check(
            std::slice::from_ref(cfg),
            ram,
            &crate::vfio::preflight::HostFacts::probe(),
        )?;
        let address = match self.passthrough.as_mut() {
            Some(p) => p.add_device(&checked[0], cfg, &hp.pci)?,
            None => {
                let mapper = hp.mapper.clone().ok_or_else(no_hotplug)?;
                let mut p = Passthrough::open_with_mapper(
                    &self._vm,
                    &checked,
                    std::slice::from_ref(cfg),
                    &self.mem,
                    mapper,
                    crate::vfio::VfioThreadContext {
                        timer: Arc::new(BootTimer::new(Instant::now())),
                        exit: self.shared.exit.clone(),
                        seccomp: hp.seccomp,
                        vcpus: self.num_vcpus,
                    },
                )?
                .ok_or_else(no_hotplug)?;
                p.attach_all(&hp.pci)?;
                let a = p.addresses()[0];
                self.passthrough = Some(p);
                a
            }
        };
        hp.changed = true;
        self.pci_addresses.push(address);
        hp.controller.announce_add(address)?;
        log::info!("{id} added at {address}");
        Ok(address)
    }

    /// Hot-remove the passed-through device at `position` in `pci_addresses` (one passed
    /// through at boot, or added since): the guest is asked to release it (`Ok(false)`: it
    /// did not within `timeout`, the device stays); then it leaves the bus and is torn down
    /// (interrupts off, reset, BAR slots removed, released from the container: its group is
    /// free). With the last one gone, guest RAM is unmapped and the container closed.
    pub fn hot_remove_vfio(
        &mut self,
        position: usize,
        id: &str,
        timeout: Duration,
    ) -> Result<bool, VmError> {
        let hp = self.hotplug.as_mut().ok_or_else(no_hotplug)?;
        let (Some(&address), Some(p)) =
            (self.pci_addresses.get(position), self.passthrough.as_mut())
        else {
            return Err(VmError::Hotplug(crate::hotplug::HotplugError::NotFound(
                id.to_string(),
            )));
        };
        if address.bus != 0 {
            return Err(VmError::Hotplug(
                crate::hotplug::HotplugError::BehindRootPort(id.to_string()),
            ));
        }
        if !hp.eject_and_unplug(address, timeout)? {
            return Ok(false);
        }
        if !p.remove_device(address) {
            p.shutdown();
            self.passthrough = None;
        }
        self.pci_addresses.remove(position);
        log::info!("{id} at {address} removed");
        Ok(true)
    }

    /// How many virtio devices the VM has (they come first in `pci_addresses`).
    pub fn virtio_count(&self) -> usize {
        self.transports.len()
    }

    /// Whether a device was added or removed since boot.
    pub fn hotplugged(&self) -> bool {
        self.hotplug.as_ref().is_some_and(|h| h.changed)
    }

    /// Stop the vCPUs, end the VMM thread, stop passed-through devices, free guest memory.
    pub fn stop(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.pause.lower();
        let handles = std::mem::take(&mut self.handles);
        vcpu::stop_all(handles, None, &self.shared.stop, Duration::from_secs(2));
        // Wakes the VMM thread's loop if the guest has not ended it.
        self.shared.exit.report(VmExitReason::Stopped);
        if let Some(t) = self.events.take() {
            let _ = t.join();
        }
        // Devices stop DMA (reset, unmapped) before guest memory goes away.
        if let Some(p) = self.passthrough.as_mut() {
            p.shutdown();
        }
        // The buses hold every device, and the PCI segment on them holds the buses (to move
        // BARs): emptied, the devices go now (device workers joined, disk images unlocked,
        // files closed) rather than living on in a VMM that boots the next VM.
        self.shared.buses.clear();
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        if self.events.is_some() {
            self.teardown();
        }
    }
}
